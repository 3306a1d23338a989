import KamiLedger
import KamiCore
import KamiPool
import KamiStore

/// Orders fulfilled by suppliers: the engine's side. The upstream module decides where an
/// order goes and talks to suppliers; every fact it learns is journaled here, through the
/// group-commit writer and the audit chain, before anyone acts on it.
extension EngineCore {
    // MARK: storefront paths into pending_upstream

    /// A paid hold with no pool codes (or an expired one the pool can no longer fill) goes to
    /// a supplier. The caller holds the order in flight and, for a late commit, the user's
    /// units again.
    func commitToUpstream(
        _ order: Order, sku: Sku, paymentRef: String, client: String?, completion: @escaping OrderCompletion
    ) {
        let late = order.state == .expired
        var pending = order.moved(to: .pendingUpstream, atMs: clock.nowMs())
        pending.paymentRef = paymentRef
        // The hold's own codes (if any) go back: they were never the order's to keep.
        let returned = late ? [] : order.codes
        pending.codes = []
        let changes = returned.map { CodeChange(codeID: $0.codeID, from: .reserved, to: .available, orderSeq: nil) }
        let event = AuditEvent(
            "commit-upstream", subject: "order:\(order.orderID)",
            detail: "seq=\(order.seq) payment=\(paymentRef)" + EngineCore.clientField(client))
        let published = pending
        store.writer.submit(.writeOrder(pending, codes: changes, audit: event)) { [self] result in
            switch result {
            case .failure(let error):
                if late { userLimits.release(user: order.user, sku: order.sku, units: order.units) }
                orders.end(order.orderID)
                completion(.failure(error))
            case .success:
                if !returned.isEmpty {
                    count(returned, from: .reserved, to: .available)
                    returnToPool(returned)
                }
                if !late { endHold(order) }
                orders.publish(published)
                completion(.success(reply(published)))
                upstream.sink?.orderPending(published, sku: sku)
            }
        }
    }

    /// Refunds an order every supplier failed (the dead-letter list): nothing was delivered,
    /// its units were released when it failed.
    func refundFailed(_ order: Order, client: String?, completion: @escaping OrderCompletion) {
        let refunded = order.moved(to: .refunded, atMs: clock.nowMs())
        let event = AuditEvent(
            "refund", subject: "order:\(order.orderID)", detail: "seq=\(order.seq) codes=" + EngineCore.clientField(client))
        store.writer.submit(.writeOrder(refunded, codes: [], audit: event)) { [self] result in
            switch result {
            case .failure(let error):
                orders.end(order.orderID)
                completion(.failure(error))
            case .success:
                releasePromotion(order)
                orders.publish(refunded)
                completion(.success(reply(refunded)))
            }
        }
    }

    // MARK: what the upstream module journals

    /// Every order waiting for a supplier, with its SKU (at boot: resume them).
    func pendingUpstreamOrders() -> [(order: Order, sku: Sku)] {
        orders.all().filter { $0.state == .pendingUpstream }.sorted { $0.seq < $1.seq }.compactMap { order in
            sku(id: order.sku).map { (order, $0) }
        }
    }

    /// Journals an attempt (before its request leaves, and at every change of its state).
    func recordAttempt(_ attempt: UpstreamAttempt, completion: @escaping @Sendable (Result<Void, KamiError>) -> Void) {
        let event = AuditEvent(
            "upstream-attempt", subject: "order-seq:\(attempt.orderSeq)",
            detail: "supplier=\(attempt.supplier) state=\(attempt.state) sends=\(attempt.sends) cost=\(attempt.costCents)"
                + (attempt.supplierRef.map { " ref=\($0)" } ?? "") + (attempt.detail.isEmpty ? "" : " detail=\(attempt.detail)"))
        store.writer.submit(.writeAttempt(attempt, order: nil, audit: event)) { result in
            completion(result.map { _ in () })
        }
    }

    /// A supplier delivered `items` for the order: they are stored as issued codes of the
    /// order, which becomes committed, and the attempt succeeded, in one transaction. An
    /// order that is no longer pending (delivered already: a duplicate callback) changes
    /// nothing and fails with INVALID_STATE naming its state.
    func deliverUpstream(
        orderID: String, attempt: UpstreamAttempt, items: [DeliveredItem], completion: @escaping OrderCompletion
    ) {
        let retry: @Sendable () -> Void = { [self] in
            deliverUpstream(orderID: orderID, attempt: attempt, items: items, completion: completion)
        }
        switch orders.begin(orderID, create: false, retry: retry) {
        case .queued:
            return
        case .missing, .created:
            return completion(.failure(KamiError(.notFound, "no order \(orderID)")))
        case .existing(let order):
            guard order.state == .pendingUpstream, order.seq == attempt.orderSeq else {
                orders.end(orderID)
                return completion(.failure(KamiError(.invalidState, "order \(orderID) is \(order.state), not pending upstream")))
            }
            guard items.count == order.units, items.allSatisfy({ !$0.secret.bytes.isEmpty && $0.secret.bytes.count <= Limits.secretBytesMax }) else {
                orders.end(orderID)
                return completion(.failure(KamiError(
                    .badRequest, "supplier \(attempt.supplier) delivered \(items.count) items for \(order.units) units "
                        + "(or an empty or oversized secret)")))
            }
            let committed = order.moved(to: .committed, atMs: clock.nowMs())
            let event = AuditEvent(
                "deliver-upstream", subject: "order:\(orderID)",
                detail: "seq=\(order.seq) supplier=\(attempt.supplier) cost=\(attempt.costCents)"
                    + (attempt.supplierRef.map { " ref=\($0)" } ?? ""))
            var delivery = UpstreamDelivery(
                order: committed, attempt: attempt, items: items.map { (order.sku, $0) }, sealer: sealer, audit: event)
            delivery.ledger = deliveredFrom(source: delivery.source, committed, items: delivery.items, costCents: attempt.costCents)
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
                    orders.publish(published)
                    completion(.success(reply(published)))
                }
            }
        }
    }

    /// Every candidate failed (or none may be used): the order goes to the dead-letter list
    /// with `reason`, its units released. `attempt`, when given, is journaled with it.
    func failUpstream(
        orderID: String, attempt: UpstreamAttempt?, reason: String, completion: @escaping OrderCompletion
    ) {
        let retry: @Sendable () -> Void = { [self] in
            failUpstream(orderID: orderID, attempt: attempt, reason: reason, completion: completion)
        }
        switch orders.begin(orderID, create: false, retry: retry) {
        case .queued:
            return
        case .missing, .created:
            return completion(.failure(KamiError(.notFound, "no order \(orderID)")))
        case .existing(let order):
            guard order.state == .pendingUpstream else {
                orders.end(orderID)
                return completion(.failure(KamiError(.invalidState, "order \(orderID) is \(order.state), not pending upstream")))
            }
            let failed = order.moved(to: .failed, atMs: clock.nowMs())
            let event = AuditEvent("upstream-failed", subject: "order:\(orderID)", detail: "seq=\(order.seq) reason=\(reason)")
            let mutation: Mutation = attempt.map { .writeAttempt($0, order: failed, audit: event) }
                ?? .writeOrder(failed, codes: [], audit: event)
            store.writer.submit(mutation) { [self] result in
                switch result {
                case .failure(let error):
                    orders.end(orderID)
                    completion(.failure(error))
                case .success:
                    userLimits.release(user: order.user, sku: order.sku, units: order.units)
                    orders.publish(failed)
                    completion(.success(reply(failed)))
                }
            }
        }
    }

    /// The operator retries a failed order: it is pending upstream again and routed anew
    /// (suppliers that refused it before are tried again too: their refusal may have been
    /// stock or price that has changed).
    func retryUpstream(orderID: String, completion: @escaping OrderCompletion) {
        do throws(KamiError) { try EngineCore.validate(orderID: orderID) } catch { return completion(.failure(error)) }
        let retry: @Sendable () -> Void = { [self] in retryUpstream(orderID: orderID, completion: completion) }
        switch orders.begin(orderID, create: false, retry: retry) {
        case .queued:
            return
        case .missing, .created:
            return completion(.failure(KamiError(.notFound, "no order \(orderID)")))
        case .existing(let order):
            guard order.state == .failed, let sku = sku(id: order.sku) else {
                orders.end(orderID)
                return completion(.failure(KamiError(.invalidState, "order \(orderID) is \(order.state), not failed")))
            }
            // The units count against the user's limit again (they were released when it
            // failed): a user who has bought up to the limit since gets a refund instead.
            guard userLimits.tryAcquire(user: order.user, sku: order.sku, units: order.units, limit: sku.perUserLimit) else {
                orders.end(orderID)
                return completion(.failure(KamiError(
                    .limitReached, "user \(order.user) now holds the per-user limit of \(sku.key); refund order \(orderID) instead")))
            }
            let pending = order.moved(to: .pendingUpstream, atMs: clock.nowMs())
            let event = AuditEvent("upstream-retry", subject: "order:\(orderID)", detail: "seq=\(order.seq) client=operator")
            store.writer.submit(.writeOrder(pending, codes: [], audit: event)) { [self] result in
                switch result {
                case .failure(let error):
                    userLimits.release(user: order.user, sku: order.sku, units: order.units)
                    orders.end(orderID)
                    completion(.failure(error))
                case .success:
                    orders.publish(pending)
                    completion(.success(reply(pending)))
                    upstream.sink?.orderPending(pending, sku: sku)
                }
            }
        }
    }

    /// Waits until the order is no longer pending upstream, or `timeoutMs` passes; answers
    /// the order as `order` does (with secrets once committed).
    func waitForOrder(_ orderID: String, timeoutMs: Int64, completion: @escaping OrderCompletion) {
        do throws(KamiError) {
            try EngineCore.validate(orderID: orderID)
            guard timeoutMs >= 0 && timeoutMs <= Limits.waitMsMax else {
                throw KamiError(.badRequest, "wait_ms \(timeoutMs) is outside 0...\(Limits.waitMsMax)")
            }
        } catch {
            return completion(.failure(error))
        }
        guard let current = orders.get(orderID) else { return completion(.failure(KamiError(.notFound, "no order \(orderID)"))) }
        orders.watchers.watch(orderID, current: { [self] in orders.get(orderID) }, timeoutMs: timeoutMs,
                              satisfied: { $0.state != .pendingUpstream && $0.state != .review }) {
            [self] order in
            completion(answerExisting(order ?? orders.get(orderID) ?? current))
        }
    }

    /// `completion`, or when the reply is pending upstream and `waitMs` > 0, the answer once
    /// the order settles or the wait runs out (whichever is first).
    func waiting(_ waitMs: Int64?, _ completion: @escaping OrderCompletion) -> OrderCompletion {
        guard let waitMs, waitMs > 0 else { return completion }
        return { [self] result in
            guard case .success(let reply) = result, reply.state == .pendingUpstream || reply.state == .review else {
                return completion(result)
            }
            waitForOrder(reply.orderID, timeoutMs: min(waitMs, Limits.waitMsMax), completion: completion)
        }
    }

    // MARK: the operator's sourcing

    /// Sets a SKU's sourcing (nil fields keep their value).
    func setSourcing(
        skuKey: String, policy: SourcePolicy?, strategy: RoutingStrategy?, minMarginCents: Int64?,
        noCandidate: NoCandidatePolicy?, lowWater: Int?, buyAheadUnits: Int?, buyAheadBudgetCents: Int64?
    ) throws(KamiError) -> SkuSourcing {
        let sku = try self.sku(key: skuKey)
        var sourcing = upstream.sourcing(sku.id)
        if let policy {
            guard !sku.isBundle || policy == .pool else {
                throw KamiError(.badRequest, "\(sku.key) is a bundle; map suppliers to its components instead")
            }
            sourcing.policy = policy
        }
        if let strategy { sourcing.strategy = strategy }
        if let minMarginCents {
            guard minMarginCents >= 0 else { throw KamiError(.badRequest, "min_margin_cents \(minMarginCents) is negative") }
            sourcing.minMarginCents = minMarginCents
        }
        if let noCandidate { sourcing.noCandidate = noCandidate }
        if let lowWater {
            guard lowWater >= 0 && lowWater <= 1_000_000 else { throw KamiError(.badRequest, "low_water \(lowWater) out of range") }
            sourcing.lowWater = lowWater
        }
        if let buyAheadUnits {
            guard buyAheadUnits >= 0 && buyAheadUnits <= Limits.codesPerOrderMax else {
                throw KamiError(.badRequest, "buy_ahead_units \(buyAheadUnits) is outside 0...\(Limits.codesPerOrderMax)")
            }
            sourcing.buyAheadUnits = buyAheadUnits
        }
        if let buyAheadBudgetCents {
            guard buyAheadBudgetCents >= 0 else { throw KamiError(.badRequest, "budget \(buyAheadBudgetCents) is negative") }
            sourcing.buyAheadBudgetCents = buyAheadBudgetCents
        }
        let stored = sourcing
        let event = AuditEvent(
            "sku-sourcing", subject: "sku:\(sku.key)",
            detail: "policy=\(stored.policy) strategy=\(stored.strategy) min_margin=\(stored.minMarginCents) "
                + "no_candidate=\(stored.noCandidate) low_water=\(stored.lowWater) buy_ahead=\(stored.buyAheadUnits) "
                + "budget=\(stored.buyAheadBudgetCents)")
        _ = try submitAndWait(.writeSourcing(stored, audit: event))
        upstream.data.withLock { $0.sourcing[sku.id] = stored }
        return stored
    }

    /// Maps a supplier to a SKU (or changes the mapping). `knownSuppliers` are the ids in
    /// the config: a mapping to any other is refused.
    func mapSupplier(
        skuKey: String, supplier: String, productID: String, costCents: Int64, priority: Int, weight: Int,
        knownSuppliers: Set<String>
    ) throws(KamiError) -> SupplierMapping {
        let sku = try self.sku(key: skuKey)
        guard !sku.isBundle else { throw KamiError(.badRequest, "\(sku.key) is a bundle; map its components instead") }
        guard knownSuppliers.contains(supplier) else {
            throw KamiError(.notFound, "no supplier \(supplier) in the config (known: \(knownSuppliers.sorted().joined(separator: ", ")))")
        }
        if let problem = IdentifierRules.problem(productID, field: "product", maxBytes: Limits.skuKeyBytesMax) {
            throw KamiError(.badRequest, problem)
        }
        guard costCents >= 0 && costCents <= Limits.costCentsMax else { throw KamiError(.badRequest, "cost_cents \(costCents) is outside 0...\(Limits.costCentsMax)") }
        guard weight >= 0 && weight <= 1_000_000, priority >= -1_000_000 && priority <= 1_000_000 else {
            throw KamiError(.badRequest, "weight or priority out of range")
        }
        let existing = upstream.data.withLock { $0.mappings[sku.id]?.first { $0.supplier == supplier } }
        let mapping = SupplierMapping(
            sku: sku.id, supplier: supplier, productID: productID, costCents: costCents, priority: priority, weight: weight,
            stock: existing?.stock, updatedAtMs: clock.nowMs())
        let event = AuditEvent(
            "supplier-map", subject: "sku:\(sku.key)",
            detail: "supplier=\(supplier) product=\(productID) cost=\(costCents) priority=\(priority) weight=\(weight)")
        _ = try submitAndWait(.writeMapping(mapping, audit: event))
        storeMapping(mapping)
        return mapping
    }

    /// Removes a supplier's mapping to a SKU; false when there was none.
    func unmapSupplier(skuKey: String, supplier: String) throws(KamiError) -> Bool {
        let sku = try self.sku(key: skuKey)
        let existed = upstream.data.withLock { $0.mappings[sku.id]?.contains { $0.supplier == supplier } ?? false }
        guard existed else { return false }
        _ = try submitAndWait(.deleteMapping(
            sku: sku.id, supplier: supplier,
            audit: AuditEvent("supplier-unmap", subject: "sku:\(sku.key)", detail: "supplier=\(supplier)")))
        upstream.data.withLock { $0.mappings[sku.id]?.removeAll { $0.supplier == supplier } }
        return true
    }

    /// Pauses or resumes a supplier (no new orders go to a paused one; attempts in flight
    /// are still resolved).
    func setSupplierPaused(_ supplier: String, paused: Bool) throws(KamiError) {
        _ = try submitAndWait(.writeSupplierState(
            supplier: supplier, paused: paused,
            audit: AuditEvent(paused ? "supplier-pause" : "supplier-resume", subject: "supplier:\(supplier)",
                              detail: "client=operator")))
        upstream.data.withLock { data in
            if paused { data.paused.insert(supplier) } else { data.paused.remove(supplier) }
        }
    }

    /// A supplier's price or stock for a SKU changed (sync, or a reply that names a price):
    /// journaled with its time when it differs from what is known, so the cost history is
    /// complete. Asynchronous; the in-memory mapping changes once durable.
    func updateSupplierCost(sku: SkuID, supplier: String, costCents: Int64, stock: Int?) {
        guard var mapping = upstream.data.withLock({ $0.mappings[sku]?.first { $0.supplier == supplier } }),
              mapping.costCents != costCents || mapping.stock != stock else { return }
        let before = mapping.costCents
        mapping.costCents = costCents
        mapping.stock = stock
        mapping.updatedAtMs = clock.nowMs()
        let updated = mapping
        let event = AuditEvent(
            "supplier-cost", subject: "sku:\(skuKey(sku))",
            detail: "supplier=\(supplier) cost=\(before)->\(costCents) stock=\(stock.map(String.init) ?? "unknown")")
        store.writer.submit(.writeMapping(updated, audit: event)) { [self] result in
            if case .success = result { storeMapping(updated) }
        }
    }

    private func storeMapping(_ mapping: SupplierMapping) {
        upstream.data.withLock { data in
            var list = data.mappings[mapping.sku] ?? []
            list.removeAll { $0.supplier == mapping.supplier }
            list.append(mapping)
            data.mappings[mapping.sku] = list.sorted { $0.supplier < $1.supplier }
        }
    }
}
