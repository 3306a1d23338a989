import KamiCore
import KamiStore
import KamiPool
import Synchronization

/// The review queue: orders the risk gate held for an operator. A held order keeps its
/// codes reserved until the operator approves it (a paid order is committed and delivered
/// then; an unpaid one becomes an ordinary hold the buyer can pay), denies it (its codes go
/// back: the storefront refunds a paid one), or its review time runs out (the same as a
/// deny). The storefront sees the outcome through `order` and `wait`.
extension EngineCore {
    func setReviewTTL(_ ms: Int64) { reviewTTL.store(ms, ordering: .relaxed) }

    /// Orders held for review, oldest first.
    func reviewQueue() -> [Order] {
        orders.all().filter { $0.state == .review }.sorted { $0.seq < $1.seq }
    }

    /// Approves a held order.
    /// The held order `orderID`, in flight for the caller; nil when the caller was answered
    /// (queued behind another operation, unknown, not held).
    private func beginReview(_ orderID: String, retry: @escaping @Sendable () -> Void, completion: OrderCompletion) -> Order? {
        switch orders.begin(orderID, create: false, retry: retry) {
        case .queued:
            return nil
        case .missing, .created:
            completion(.failure(KamiError(.notFound, "no order \(orderID)")))
            return nil
        case .existing(let order):
            guard order.state == .review else {
                orders.end(orderID)
                completion(.failure(KamiError(.invalidState, "order \(orderID) is \(order.state), not held for review")))
                return nil
            }
            return order
        }
    }

    func approve(order orderID: String, client: String?, completion: @escaping OrderCompletion) {
        let retry: @Sendable () -> Void = { [self] in approve(order: orderID, client: client, completion: completion) }
        guard let order = beginReview(orderID, retry: retry, completion: completion) else { return }
        if let paymentRef = order.paymentRef {
            return commitExisting(order, paymentRef: paymentRef, client: client, approving: true, completion: completion)
        }
        // Unpaid: an ordinary hold from now, with the default hold time to pay.
        var held = order.moved(to: .reserved, atMs: clock.nowMs())
        held.expiresAtMs = clock.nowMs() + holdTTLDefault.load(ordering: .relaxed)
        let event = AuditEvent("review-approve", subject: "order:\(orderID)",
                               detail: "seq=\(order.seq) unpaid expires_at_ms=\(held.expiresAtMs)" + EngineCore.clientField(client))
        let published = held
        store.writer.submit(.writeOrder(held, codes: [], audit: event)) { [self] result in
            switch result {
            case .failure(let error):
                orders.end(orderID)
                completion(.failure(error))
            case .success:
                holds.schedule(order: published.seq, deadlineMs: published.expiresAtMs)
                orders.publish(published)
                completion(.success(reply(published)))
            }
        }
    }

    /// Denies a held order: its codes go back to the pool.
    func deny(order orderID: String, client: String?, completion: @escaping OrderCompletion) {
        let retry: @Sendable () -> Void = { [self] in deny(order: orderID, client: client, completion: completion) }
        guard let order = beginReview(orderID, retry: retry, completion: completion) else { return }
        endReservation(order, to: .released, client: client, event: "review-deny", completion: completion)
    }
}
