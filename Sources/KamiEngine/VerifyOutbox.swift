import Foundation
import KamiCore
import KamiLedger
import KamiStore

extension EngineCore {
    /// What is wrong with the webhook outbox: a row of an unknown type or state, times or
    /// attempts that disagree with its state, data that is not a JSON object, or an order event
    /// that is not true of its order (delivered codes the order never held, a refund of an
    /// order that is not refunded, an order that does not exist).
    func outboxProblems(orders: [String: Order]) throws(KamiError) -> [String] {
        var problems: [String] = []
        // A case's replacement takes a code out of its order: an earlier delivery named it.
        var replaced: [String: Set<CodeID>] = [:]
        for item in try store.cases() where item.state == .replaced {
            if let code = item.codeID { replaced[item.orderID, default: []].insert(code) }
        }
        var seen = Set<String>()
        for row in try store.outboxAll() {
            let name = "outbox row \(row.id) (\(row.endpoint), \(row.type))"
            guard let type = WebhookEventType(rawValue: row.type) else {
                problems.append("\(name): unknown event type")
                continue
            }
            switch row.state {
            case .pending:
                if row.doneAtMs != nil { problems.append("\(name): pending but has a done time") }
            case .delivered, .dead:
                if row.doneAtMs == nil { problems.append("\(name): \(row.state) without a done time") }
                if row.attempts < 1 { problems.append("\(name): \(row.state) after \(row.attempts) attempts") }
            }
            if row.attempts < 0 || row.nextAtMs < row.createdAtMs || row.retryFromMs < row.createdAtMs {
                problems.append("\(name): attempts \(row.attempts), next \(row.nextAtMs) or retry window \(row.retryFromMs) before created \(row.createdAtMs)")
            }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(row.data.utf8))) as? [String: Any] else {
                problems.append("\(name): data is not a JSON object")
                continue
            }
            guard type.rawValue.hasPrefix("order.") else { continue }
            guard let orderID = object["order"] as? String, let order = orders[orderID] else {
                problems.append("\(name): names no known order")
                continue
            }
            // One delivery and one refund per order and endpoint: a crash never repeats one.
            // (An operator's upstream retry may fail, wait and be held again: those repeat.)
            if type == .orderDelivered || type == .orderRefunded || type == .orderReleased,
               !seen.insert("\(row.endpoint) \(row.type) \(orderID)").inserted {
                problems.append("\(name): a second \(row.type) event for order \(orderID)")
            }
            let codes = Set((object["code_ids"] as? [NSNumber] ?? []).map { $0.int64Value })
            let held = Set(order.codes.map(\.codeID)).union(replaced[orderID] ?? [])
            switch type {
            case .orderDelivered:
                if !(order.state == .committed || order.state == .refunded) || !codes.isSubset(of: held) {
                    problems.append("\(name): order \(orderID) is \(order.state) with codes \(held.sorted()), "
                        + "the event says delivered \(codes.sorted())")
                }
            case .orderRefunded where order.state != .refunded,
                 .orderFailed where ![.failed, .pendingUpstream, .committed, .refunded].contains(order.state),
                 .orderPendingUpstream where ![.pendingUpstream, .committed, .failed, .refunded].contains(order.state),
                 .orderReleased where order.state != .released && order.state != .expired:
                problems.append("\(name): order \(orderID) is \(order.state)")
            default:
                break
            }
        }
        return problems
    }
}
