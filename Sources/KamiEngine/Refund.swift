import KamiLedger
import KamiCore
import KamiPool
import Synchronization
import KamiStore

/// Refunds: a committed order's codes (issued or already activated) are voided for good.
extension EngineCore {
    /// Refunds a committed order: its codes are voided (they were revealed, so they can never
    /// be sold again) and the units no longer count against the user's limit.
    func refund(order orderID: String, client: String? = nil, completion: @escaping OrderCompletion) {
        do throws(KamiError) { try EngineCore.validate(orderID: orderID) } catch { return completion(.failure(error)) }
        let retry: @Sendable () -> Void = { [self] in refund(order: orderID, client: client, completion: completion) }
        switch orders.begin(orderID, create: false, retry: retry) {
        case .queued:
            return
        case .missing, .created:
            return completion(.failure(KamiError(.notFound, "no order \(orderID)")))
        case .existing(let order):
            switch order.state {
            case .refunded:
                orders.end(orderID)
                return completion(.success(reply(order)))
            case .reserved, .released, .expired, .review:
                orders.end(orderID)
                return completion(.failure(KamiError(.invalidState, "order \(orderID) is \(order.state), not committed")))
            case .pendingUpstream:
                orders.end(orderID)
                return completion(.failure(KamiError(
                    .invalidState, "order \(orderID) is waiting for a supplier; refund it once it is delivered or failed")))
            case .failed:
                return refundFailed(order, client: client, completion: completion)
            case .committed:
                break
            }
            // Codes voided one by one before (a leak) are already counted as voided; issued and
            // activated ones are voided now.
            let stillIssued: [OrderCode]
            let stillUsed: [OrderCode]
            do throws(KamiError) {
                stillIssued = try codes(order.codes, in: .issued)
                stillUsed = try codes(order.codes, in: .used)
            } catch {
                orders.end(orderID)
                return completion(.failure(error))
            }
            let refunded = order.moved(to: .refunded, atMs: clock.nowMs())
            let changes = stillIssued.map { CodeChange(codeID: $0.codeID, from: .issued, to: .voided, orderSeq: order.seq) }
                + stillUsed.map { CodeChange(codeID: $0.codeID, from: .used, to: .voided, orderSeq: order.seq) }
            let event = AuditEvent(
                "refund", subject: "order:\(orderID)",
                detail: "seq=\(order.seq) codes=\(EngineCore.codeIDList(order.codes))" + EngineCore.clientField(client))
            let published = refunded
            let ledger: [JournalLine]
            do throws(KamiError) { ledger = try refundLines(order) } catch {
                orders.end(orderID)
                return completion(.failure(error))
            }
            store.writer.submit(.writeOrder(refunded, codes: changes, audit: event, ledger: ledger)) { [self] result in
                switch result {
                case .failure(let error):
                    orders.end(orderID)
                    completion(.failure(error))
                case .success:
                    count(stillIssued, from: .issued, to: .voided)
                    count(stillUsed, from: .used, to: .voided)
                    userLimits.release(user: order.user, sku: order.sku, units: order.units)
                    releasePromotion(order)
                    orders.publish(published)
                    completion(.success(reply(published)))
                }
            }
        }
    }
}
