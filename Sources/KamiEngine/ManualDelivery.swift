import KamiLedger
import KamiCore
import KamiStore
import KamiPool
import KamiCrypto

/// Manual delivery (手动发货): a SKU whose codes an operator hands out. A paid order of such
/// a SKU takes nothing from the pool; it waits in the review queue (state `review`, no
/// codes) until the operator delivers it, by hand (`deliver`: the codes are stored, sealed,
/// as issued codes of the order) or from the pool (`approve`), denies it, or its review
/// time runs out (released: the storefront refunds). An unpaid `reserve` of such a SKU is an
/// ordinary hold with no codes; paying it queues the order.
extension EngineCore {
    /// How long an order of `sku` may wait in the review queue.
    func reviewTTL(_ sku: Sku) -> Int64 { sku.reviewTTLMs > 0 ? sku.reviewTTLMs : reviewTTLMs }

    /// A hold of a manual-delivery SKU is paid (`commit`, or `issue` on an existing hold):
    /// the order joins the review queue. The caller holds the order in flight. A late payment
    /// (the hold expired) takes the user's units again; a paid order is no unpaid hold.
    func queueForOperator(
        _ order: Order, sku: Sku, paymentRef: String, client: String?, completion: @escaping OrderCompletion
    ) {
        let late = order.state == .expired
        if late {
            guard userLimits.tryAcquire(user: order.user, sku: sku.id, units: order.units, limit: sku.perUserLimit) else {
                orders.end(order.orderID)
                return completion(.failure(KamiError(
                    .limitReached, "hold expired and the per-user limit of \(sku.key) is now reached; refund the payment")))
            }
        }
        let now = clock.nowMs()
        var queued = order.moved(to: .review, atMs: now)
        queued.paymentRef = paymentRef
        // An expired hold's code list is a record of codes long back in the pool.
        queued.codes = []
        queued.expiresAtMs = now + reviewTTL(sku)
        let event = AuditEvent(
            "manual-queue", subject: "order:\(order.orderID)",
            detail: "seq=\(order.seq) payment=\(paymentRef) expires_at_ms=\(queued.expiresAtMs)" + EngineCore.clientField(client))
        let published = queued
        store.writer.submit(.writeOrder(queued, codes: [], audit: event)) { [self] result in
            switch result {
            case .failure(let error):
                if late { userLimits.release(user: order.user, sku: order.sku, units: order.units) }
                orders.end(order.orderID)
                completion(.failure(error))
            case .success:
                // Paid now: no longer one of the user's unpaid holds (an expired one was not).
                if !late { userLimits.removePendingHold(user: order.user) }
                holdIDs.withLock { $0[published.seq] = published.orderID }
                holds.schedule(order: published.seq, deadlineMs: published.expiresAtMs)
                orders.publish(published)
                completion(.success(reply(published)))
            }
        }
    }

    /// The operator delivers a paid order waiting in the review queue by hand: `items` (one
    /// per unit) are sealed and stored as codes issued to it, and it is committed, in one
    /// transaction. A secret kamid already has (stocked, sold or delivered before) is refused:
    /// a code is handed out once. `costCents` is what each code cost the shop.
    func deliver(
        order orderID: String, items: [DeliveredItem], costCents: Int64, client: String?,
        completion: @escaping OrderCompletion
    ) {
        let retry: @Sendable () -> Void = { [self] in
            deliver(order: orderID, items: items, costCents: costCents, client: client, completion: completion)
        }
        do throws(KamiError) { try EngineCore.validate(orderID: orderID) } catch { return completion(.failure(error)) }
        switch orders.begin(orderID, create: false, retry: retry) {
        case .queued:
            return
        case .missing, .created:
            return completion(.failure(KamiError(.notFound, "no order \(orderID)")))
        case .existing(let order):
            do throws(KamiError) {
                let sku = try checkDeliverable(order, items: items, costCents: costCents)
                let committed = order.moved(to: .committed, atMs: clock.nowMs())
                let event = AuditEvent(
                    "deliver-manual", subject: "order:\(orderID)",
                    detail: "seq=\(order.seq) cost=\(costCents)" + EngineCore.clientField(client))
                var delivery = UpstreamDelivery(
                    manual: committed, items: items.map { (sku.id, $0) }, sealer: sealer, audit: event,
                    source: "manual:\(client ?? "operator")", costCents: costCents)
                delivery.ledger = deliveredFrom(source: delivery.source, committed, items: delivery.items, costCents: costCents)
                store.writer.submit(.deliverUpstream(delivery)) { [self] result in
                    switch result {
                    case .failure(let error):
                        orders.end(orderID)
                        completion(.failure(error))
                    case .success(let outcome):
                        guard case .codes(let codes) = outcome else { preconditionFailure("deliverUpstream without codes") }
                        var published = committed
                        published.codes = codes
                        count(codes, from: nil, to: .issued)
                        endHold(order)
                        orders.publish(published)
                        completion(.success(reply(published)))
                    }
                }
            } catch {
                orders.end(orderID)
                completion(.failure(error))
            }
        }
    }

    /// The order's SKU when `items` may be delivered to it by hand, else the error naming why.
    private func checkDeliverable(_ order: Order, items: [DeliveredItem], costCents: Int64) throws(KamiError) -> Sku {
        guard order.state == .review else {
            throw KamiError(.invalidState, "order \(order.orderID) is \(order.state), not waiting in the review queue")
        }
        guard order.paymentRef != nil else {
            throw KamiError(.invalidState, "order \(order.orderID) is not paid; approve it (it becomes a hold) or deny it")
        }
        guard order.codes.isEmpty else {
            throw KamiError(.invalidState, "order \(order.orderID) holds \(order.codes.count) codes from the pool; "
                + "approve it to deliver those (kamictl review approve)")
        }
        guard let sku = sku(id: order.sku) else {
            throw KamiError(.notFound, "SKU of order \(order.orderID) no longer exists")
        }
        guard !sku.isBundle else {
            throw KamiError(.badRequest, "order \(order.orderID) is for bundle \(sku.key): approve it to deliver from the pool")
        }
        guard items.count == order.units else {
            throw KamiError(.badRequest, "order \(order.orderID) is for \(order.units) units; \(items.count) codes were given")
        }
        guard costCents >= 0 && costCents <= Limits.costCentsMax else { throw KamiError(.badRequest, "cost \(costCents) is outside 0...\(Limits.costCentsMax)") }
        var seen = Set<[UInt8]>()
        var fingerprints: [[UInt8]] = []
        for (index, item) in items.enumerated() {
            guard !item.secret.bytes.isEmpty, item.secret.bytes.count <= Limits.secretBytesMax else {
                throw KamiError(.badRequest, "code \(index + 1) must be 1...\(Limits.secretBytesMax) bytes")
            }
            if let card = item.cardNumber, card.isEmpty || card.utf8.count > Limits.cardNumberBytesMax {
                throw KamiError(.badRequest, "card number of code \(index + 1) must be 1...\(Limits.cardNumberBytesMax) bytes")
            }
            let fingerprint = sealer.fingerprint(item.secret)
            guard seen.insert(fingerprint).inserted else {
                throw KamiError(.badRequest, "code \(index + 1) repeats an earlier code of this delivery")
            }
            fingerprints.append(fingerprint)
        }
        for (index, known) in try store.codes(withFingerprints: fingerprints).enumerated() {
            if let known {
                throw KamiError(.conflict, "code \(index + 1) is already stored as code \(known); a code is handed out once")
            }
        }
        return sku
    }
}
