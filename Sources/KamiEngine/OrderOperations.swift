import KamiLedger
import KamiCore
import KamiPool
import Synchronization
import KamiStore

extension EngineCore {
    // MARK: reserve

    /// Holds `units` of `skuKey` for an unpaid order until `ttlMs` passes.
    ///
    /// Repeating it with the same order id, user, SKU and units returns the order as it is now
    /// (reserved, or committed with its codes); other arguments under the same order id are a
    /// CONFLICT. Errors: SOLD_OUT, LIMIT_REACHED (per-user limit or too many unpaid holds),
    /// NOT_FOUND (SKU), BAD_REQUEST, BUSY/UNAVAILABLE (disk).
    func reserve(
        order orderID: String, user: String, sku skuKey: String, units: Int, ttlMs: Int64? = nil,
        client: String? = nil, risk: String? = nil, review: Bool = false, terms: OrderTerms = .none,
        unscreened: Bool = false, completion: @escaping OrderCompletion
    ) {
        let ttl = ttlMs ?? holdTTLDefault.load(ordering: .relaxed)
        let ttlMax = holdTTLMax.load(ordering: .relaxed)
        let sku: Sku
        do throws(KamiError) {
            try EngineCore.validate(orderID: orderID, user: user, units: units)
            guard ttl >= Limits.holdTTLMsMin && ttl <= ttlMax else {
                throw KamiError(.badRequest, "ttl_ms \(ttl) is outside \(Limits.holdTTLMsMin)...\(ttlMax)")
            }
            sku = try self.sku(key: skuKey)
            try EngineCore.validate(codesOf: sku, units: units)
            try terms.labels?.validate()
            if terms.labels?.campaign == nil && terms.labels?.coupon == nil {
                _ = try terms.amount(priceCents: sku.priceCents, units: units)
            }
        } catch {
            return completion(.failure(error))
        }
        let retry: @Sendable () -> Void = { [self] in
            reserve(order: orderID, user: user, sku: skuKey, units: units, ttlMs: ttlMs, client: client, risk: risk,
                    review: review, terms: terms, completion: completion)
        }
        switch orders.begin(orderID, create: true, retry: retry) {
        case .queued, .missing:
            return
        case .existing(let order):
            orders.end(orderID)
            guard order.user == user && order.sku == sku.id && order.units == units && terms.matches(order) else {
                return completion(.failure(EngineCore.conflict(order)))
            }
            return completion(answerExisting(order))
        case .created:
            break
        }
        let priced: (amount: Int64, subsidy: Int64)
        do throws(KamiError) { priced = try price(orderID, user: user, sku: sku, units: units, terms: terms) } catch {
            orders.end(orderID)
            return completion(.failure(error))
        }
        let now = clock.nowMs()
        var order = Order(
            seq: 0, orderID: orderID, user: user, sku: sku.id, units: units, state: review ? .review : .reserved, paymentRef: nil,
            codes: [], ttlMs: ttl, expiresAtMs: now + (review ? reviewTTL(sku) : ttl), createdAtMs: now, updatedAtMs: now,
            amountCents: priced.amount, labels: terms.labels)
        order.subsidyCents = priced.subsidy
        let promoted = terms.labels?.campaign != nil || terms.labels?.coupon != nil
        create(order, sku: sku, client: client, risk: risk, unscreened: unscreened,
               completion: promoted ? releasingClaim(orderID, completion) : completion)
    }

    // MARK: issue

    /// Reserves and commits at once, for an order already paid. Repeating it returns the same
    /// codes; an existing reserved order with the same arguments is committed.
    func issue(
        order orderID: String, user: String, sku skuKey: String, units: Int, paymentRef: String,
        client: String? = nil, risk: String? = nil, review: Bool = false, terms: OrderTerms = .none,
        unscreened: Bool = false, completion: @escaping OrderCompletion
    ) {
        let sku: Sku
        do throws(KamiError) {
            try EngineCore.validate(orderID: orderID, user: user, units: units)
            try EngineCore.validate(paymentRef: paymentRef)
            sku = try self.sku(key: skuKey)
            try EngineCore.validate(codesOf: sku, units: units)
            try terms.labels?.validate()
            if terms.labels?.campaign == nil && terms.labels?.coupon == nil {
                _ = try terms.amount(priceCents: sku.priceCents, units: units)
            }
        } catch {
            return completion(.failure(error))
        }
        let retry: @Sendable () -> Void = { [self] in
            issue(order: orderID, user: user, sku: skuKey, units: units, paymentRef: paymentRef, client: client, risk: risk,
                  review: review, terms: terms, unscreened: unscreened, completion: completion)
        }
        switch orders.begin(orderID, create: true, retry: retry) {
        case .queued, .missing:
            return
        case .existing(let order):
            guard order.user == user && order.sku == sku.id && order.units == units && terms.matches(order) else {
                orders.end(orderID)
                return completion(.failure(EngineCore.conflict(order)))
            }
            return commitExisting(order, paymentRef: paymentRef, client: client, completion: completion)
        case .created:
            break
        }
        let priced: (amount: Int64, subsidy: Int64)
        do throws(KamiError) { priced = try price(orderID, user: user, sku: sku, units: units, terms: terms) } catch {
            orders.end(orderID)
            return completion(.failure(error))
        }
        let now = clock.nowMs()
        // Held for an operator: the risk gate said review, or the SKU is delivered by hand.
        let held = review || sku.manualDelivery
        var order = Order(
            seq: 0, orderID: orderID, user: user, sku: sku.id, units: units, state: held ? .review : .committed,
            paymentRef: paymentRef, codes: [], ttlMs: 0, expiresAtMs: held ? now + reviewTTL(sku) : 0, createdAtMs: now,
            updatedAtMs: now, amountCents: priced.amount, labels: terms.labels)
        order.subsidyCents = priced.subsidy
        let promoted = terms.labels?.campaign != nil || terms.labels?.coupon != nil
        create(order, sku: sku, client: client, risk: risk, unscreened: unscreened,
               completion: promoted ? releasingClaim(orderID, completion) : completion)
    }

    /// Creates a new order (reserved or committed) whose placeholder is in flight.
    /// `risk` is the gate's verdict when rules fired, recorded in the order's audit event.
    ///
    /// `unscreened`: the server skipped the risk gate because the SKU looked sold out. Such an
    /// order may only end SOLD_OUT (or be refused for a limit): anything that would hold or
    /// take something — a code the pool has after all, a supplier, an operator — answers
    /// `KamiError.screeningNeeded` with everything given back, and the server screens it.
    private func create(_ draft: Order, sku: Sku, client: String?, risk: String?, unscreened: Bool = false,
                        completion: @escaping OrderCompletion) {
        precondition(OrderState.starts.contains(draft.state), "order \(draft.orderID) cannot start \(draft.state)")
        if unscreened && (sku.manualDelivery || (!sku.isBundle && upstream.sourcing(sku.id).policy != .pool)) {
            orders.end(draft.orderID)
            return completion(.failure(.screeningNeeded))
        }
        // A hold: reserved, or held for review (paid or not); its codes are reserved.
        let reserving = draft.state.isHold
        // Only an unpaid hold counts toward the user's unpaid holds: a paid order waiting for
        // an operator (risk review, manual delivery) must never be refused for it.
        let unpaidHold = reserving && draft.paymentRef == nil
        if unpaidHold && !userLimits.tryAddPendingHold(user: draft.user, limit: Limits.pendingHoldsPerUserMax) {
            orders.end(draft.orderID)
            return completion(.failure(KamiError(
                .limitReached, "user has \(Limits.pendingHoldsPerUserMax) unpaid holds; pay or release one first")))
        }
        guard userLimits.tryAcquire(user: draft.user, sku: sku.id, units: draft.units, limit: sku.perUserLimit) else {
            if unpaidHold { userLimits.removePendingHold(user: draft.user) }
            orders.end(draft.orderID)
            rejects.add(Int(sku.id) * 3 + 1)
            return completion(.failure(KamiError(
                .limitReached, "per-user limit of \(sku.perUserLimit) for \(sku.key) reached")))
        }
        // Where the codes come from: the pool, (per the SKU's sourcing) a supplier later, or
        // an operator's hand (a manual-delivery SKU: nothing is taken now).
        let policy = sku.isBundle ? SourcePolicy.pool : upstream.sourcing(sku.id).policy
        var taken: [OrderCode]? = sku.manualDelivery ? [] : policy == .upstream ? nil : takeCodes(sku, units: draft.units)
        if unscreened, let found = taken {
            returnToPool(found)
            userLimits.release(user: draft.user, sku: sku.id, units: draft.units)
            if unpaidHold { userLimits.removePendingHold(user: draft.user) }
            orders.end(draft.orderID)
            return completion(.failure(.screeningNeeded))
        }
        let viaUpstream = taken == nil && policy != .pool
        if viaUpstream { taken = [] }
        guard let codes = taken else {
            userLimits.release(user: draft.user, sku: sku.id, units: draft.units)
            if unpaidHold { userLimits.removePendingHold(user: draft.user) }
            orders.end(draft.orderID)
            rejects.add(Int(sku.id) * 3)
            return completion(.failure(KamiError(.soldOut, "\(sku.key) is sold out")))
        }
        var numbered = draft
        if viaUpstream && !reserving { numbered.state = .pendingUpstream }
        numbered.seq = nextSeq.wrappingAdd(1, ordering: .relaxed).oldValue
        numbered.codes = codes
        let order = numbered
        // Undo of the memory effects when the write fails.
        let undo: @Sendable ([OrderCode]) -> Void = { [self] giveBack in
            returnToPool(giveBack)
            userLimits.release(user: order.user, sku: order.sku, units: order.units)
            if unpaidHold { userLimits.removePendingHold(user: order.user) }
            orders.end(order.orderID)
        }
        var revealed: [IssuedCode] = []
        if !reserving && !viaUpstream {
            // Secrets are immutable rows: read and open them before the commit, beside the
            // writer, so the reply is ready the moment the batch is durable.
            let opened: (revealed: [IssuedCode], bad: [OrderCode])
            do throws(KamiError) { opened = try openSecrets(codes) } catch {
                undo(codes)
                return completion(.failure(error))
            }
            if !opened.bad.isEmpty {
                quarantine(opened.bad)
                undo(codes.filter { !opened.bad.contains($0) })
                return completion(.failure(EngineCore.integrityFailure(opened.bad)))
            }
            revealed = opened.revealed
        }
        let codeState: CodeState = reserving ? .reserved : .issued
        let changes = codes.map { CodeChange(codeID: $0.codeID, from: .available, to: codeState, orderSeq: order.seq) }
        let event = AuditEvent(
            order.state == .review ? (sku.manualDelivery ? "manual-hold" : "review-hold") : reserving ? "reserve" : viaUpstream ? "issue-upstream" : "issue",
            subject: "order:\(order.orderID)",
            detail: "seq=\(order.seq) user=\(order.user) sku=\(order.sku) units=\(order.units) codes=\(EngineCore.codeIDList(codes))"
                + (order.paymentRef.map { " payment=\($0)" } ?? "") + EngineCore.clientField(client)
                + (risk.map { " risk=(\($0))" } ?? "") + EngineCore.moneyField(order))
        let published = order
        let secrets = revealed
        // Delivered from the pool now: its sale and its codes' cost (a hold or an order for a
        // supplier moves no money yet).
        let ledger = !reserving && !viaUpstream ? deliveredFromPool(order, sku: sku, codes: codes, revealed: revealed) : []
        store.writer.submit(.writeOrder(order, codes: changes, audit: event, ledger: ledger)) { [self] result in
            switch result {
            case .failure(let error):
                undo(codes)
                completion(.failure(error))
            case .success:
                count(codes, from: .available, to: codeState)
                userOrders.add(user: published.user, orderID: published.orderID)
                if reserving {
                    holdIDs.withLock { $0[published.seq] = published.orderID }
                    holds.schedule(order: published.seq, deadlineMs: published.expiresAtMs)
                }
                orders.publish(published)
                completion(.success(reply(published, codes: secrets)))
                if published.state == .pendingUpstream { upstream.sink?.orderPending(published, sku: sku) }
            }
        }
    }

    // MARK: commit

    /// The order is paid: its held codes become issued and their secrets are returned. A
    /// commit after the hold expired takes fresh codes if stock remains, else fails with
    /// EXPIRED so the storefront can refund. Repeating it with the same payment reference
    /// returns the same codes; another payment reference is a CONFLICT.
    ///
    /// `owner`: only this user's order may be paid (a storefront naming its buyer); another
    /// user's order is NOT_FOUND, like an unknown one. Checked here, once the order is no
    /// longer in flight, so a commit pipelined behind its reserve is checked too.
    func commit(
        order orderID: String, paymentRef: String, client: String? = nil, owner: String? = nil,
        completion: @escaping OrderCompletion
    ) {
        do throws(KamiError) {
            try EngineCore.validate(orderID: orderID)
            try EngineCore.validate(paymentRef: paymentRef)
        } catch {
            return completion(.failure(error))
        }
        let retry: @Sendable () -> Void = { [self] in
            commit(order: orderID, paymentRef: paymentRef, client: client, owner: owner, completion: completion)
        }
        switch orders.begin(orderID, create: false, retry: retry) {
        case .queued:
            return
        case .missing, .created:
            return completion(.failure(KamiError(.notFound, "no order \(orderID)")))
        case .existing(let order):
            if let owner, order.user != owner {
                orders.end(orderID)
                return completion(.failure(KamiError(.notFound, "no order \(orderID)")))
            }
            commitExisting(order, paymentRef: paymentRef, client: client, completion: completion)
        }
    }

    /// Commits an order that is in flight for the caller.
    ///
    /// `approving`: the operator approves an order held for review (paid: it is committed now).
    func commitExisting(
        _ order: Order, paymentRef: String, client: String?, approving: Bool = false, completion: @escaping OrderCompletion
    ) {
        switch order.state {
        case .review where approving:
            break
        case .review:
            orders.end(order.orderID)
            // A paid order under review answers as it is; an unpaid one waits for the operator.
            guard order.paymentRef != nil else {
                return completion(.failure(KamiError(.invalidState, "order \(order.orderID) is held for review; wait for it")))
            }
            guard order.paymentRef == paymentRef else {
                return completion(.failure(KamiError(
                    .conflict, "order \(order.orderID) was already paid with another payment reference")))
            }
            return completion(answerExisting(order))
        case .committed, .pendingUpstream, .failed:
            orders.end(order.orderID)
            guard order.paymentRef == paymentRef else {
                return completion(.failure(KamiError(
                    .conflict, "order \(order.orderID) was already paid with another payment reference")))
            }
            return completion(answerExisting(order))
        case .released:
            orders.end(order.orderID)
            return completion(.failure(KamiError(.invalidState, "order \(order.orderID) was released; place a new order")))
        case .refunded:
            orders.end(order.orderID)
            return completion(.failure(KamiError(.invalidState, "order \(order.orderID) was refunded")))
        case .reserved, .expired:
            break
        }
        guard let sku = sku(id: order.sku) else {
            orders.end(order.orderID)
            return completion(.failure(KamiError(.notFound, "SKU of order \(order.orderID) no longer exists")))
        }
        let late = order.state == .expired
        var reclaimed: OrderCompletion?
        if late {
            // The claim on its campaign and coupon went back at expiry: claimed again, or the
            // storefront refunds.
            do throws(KamiError) { reclaimed = try reclaim(order, sku: sku, completion: completion) } catch {
                orders.end(order.orderID)
                return completion(.failure(KamiError(
                    .expired, "hold on order \(order.orderID) expired and \(error.message); refund the payment")))
            }
        }
        let completion = reclaimed ?? completion
        if !approving && sku.manualDelivery && (late || order.codes.isEmpty) {
            return queueForOperator(order, sku: sku, paymentRef: paymentRef, client: client, completion: completion)
        }
        let policy = sku.isBundle ? SourcePolicy.pool : upstream.sourcing(sku.id).policy
        // A paid order that holds nothing and did not lapse: a manual one the operator
        // approves (the operator chose the pool), a hold of a SKU switched off manual
        // delivery since, or a hold a supplier was to fill: the pool first wherever the
        // SKU's sourcing allows it, a supplier only for pool_then_upstream with the pool short.
        let tryPool = !late && order.codes.isEmpty && (sku.manualDelivery ? approving : policy != .upstream)
        var fromPoolNow = false
        var chosen = order.codes
        if tryPool {
            if let codes = takeCodes(sku, units: order.units) {
                chosen = codes
                fromPoolNow = true
            } else if sku.manualDelivery || policy == .pool {
                orders.end(order.orderID)
                return completion(.failure(KamiError(
                    .soldOut, sku.manualDelivery
                        ? "\(sku.key) has no codes in the pool for order \(order.orderID); deliver it by hand "
                            + "(kamictl deliver \(order.orderID) --secret-file F)"
                        : "\(sku.key) is sold out and order \(order.orderID) holds no codes; refund the payment")))
            }
        }
        let fresh = late || fromPoolNow
        if fromPoolNow {
            // Taken above.
        } else if late {
            // The hold lapsed and its codes went back to the pool: take fresh ones if any remain.
            guard userLimits.tryAcquire(user: order.user, sku: sku.id, units: order.units, limit: sku.perUserLimit) else {
                orders.end(order.orderID)
                return completion(.failure(KamiError(
                    .limitReached, "hold expired and the per-user limit of \(sku.key) is now reached; refund the payment")))
            }
            let fresh = policy == .upstream ? nil : takeCodes(sku, units: order.units)
            guard let fresh else {
                if policy != .pool {
                    return commitToUpstream(order, sku: sku, paymentRef: paymentRef, client: client, completion: completion)
                }
                userLimits.release(user: order.user, sku: sku.id, units: order.units)
                orders.end(order.orderID)
                return completion(.failure(KamiError(
                    .expired, "hold on order \(order.orderID) expired and \(sku.key) is sold out; refund the payment")))
            }
            chosen = fresh
        } else if chosen.isEmpty {
            // A hold placed with nothing from the pool: a supplier fulfils it now it is paid.
            return commitToUpstream(order, sku: sku, paymentRef: paymentRef, client: client, completion: completion)
        }
        // Open the secrets. A code that fails authentication is replaced by a fresh code of its
        // SKU and quarantined (voided) in the same commit, so a paid order still gets what it
        // paid for and the bad code never circulates again.
        let own = fresh ? [] : chosen
        var taken = fresh ? chosen : []
        var secrets: [IssuedCode] = []
        var quarantined: [OrderCode] = []
        var pending = chosen
        var failure: KamiError?
        for _ in 0..<EngineCore.replacementRoundsMax where !pending.isEmpty {
            let opened: (revealed: [IssuedCode], bad: [OrderCode])
            do throws(KamiError) { opened = try openSecrets(pending) } catch {
                failure = error
                break
            }
            secrets += opened.revealed
            quarantined += opened.bad
            pending = []
            for code in opened.bad {
                guard let id = pool.take(sku: code.sku, count: 1)?.first else {
                    failure = KamiError(.integrity, "code \(code.codeID) failed authentication and \(skuKey(code.sku)) "
                        + "has no replacement in stock; refund the payment")
                    break
                }
                pending.append(OrderCode(codeID: id, sku: code.sku))
            }
            taken += pending
            if failure != nil { break }
        }
        if failure == nil && !pending.isEmpty {
            failure = KamiError(.integrity, "replacement codes keep failing authentication; check the master key")
        }
        let takenCodes = taken
        let badCodes = quarantined
        let cleanup: @Sendable () -> Void = { [self] in
            quarantine(takenCodes.filter { badCodes.contains($0) })
            returnToPool(takenCodes.filter { !badCodes.contains($0) })
            if late { userLimits.release(user: order.user, sku: order.sku, units: order.units) }
            orders.end(order.orderID)
        }
        if let failure {
            cleanup()
            return completion(.failure(failure))
        }
        let codes = (chosen + takenCodes.filter { !chosen.contains($0) }).filter { !badCodes.contains($0) }
        var committed = order.moved(to: .committed, atMs: clock.nowMs())
        committed.paymentRef = paymentRef
        committed.codes = codes
        func held(_ code: OrderCode) -> CodeState { own.contains(code) ? .reserved : .available }
        let changes = codes.map { CodeChange(codeID: $0.codeID, from: held($0), to: .issued, orderSeq: order.seq) }
            + badCodes.map { CodeChange(codeID: $0.codeID, from: held($0), to: .voided, orderSeq: nil) }
        let event = AuditEvent(
            approving ? "review-approve" : late ? "commit-late" : "commit", subject: "order:\(order.orderID)",
            detail: "seq=\(order.seq) payment=\(paymentRef) codes=\(EngineCore.codeIDList(codes))"
                + (badCodes.isEmpty ? "" : " quarantined=\(EngineCore.codeIDList(badCodes))") + EngineCore.clientField(client)
                + EngineCore.moneyField(order))
        let published = committed
        let replies = secrets
        let ledger: [JournalLine]
        do throws(KamiError) { ledger = deliveredFromPool(committed, sku: sku, codes: codes, revealed: secrets) + (try writeOffs(badCodes)) } catch {
            cleanup()
            return completion(.failure(error))
        }
        store.writer.submit(.writeOrder(committed, codes: changes, audit: event, ledger: ledger)) { [self] result in
            switch result {
            case .failure(let error):
                cleanup()
                completion(.failure(error))
            case .success:
                count(codes.filter { own.contains($0) }, from: .reserved, to: .issued)
                count(codes.filter { !own.contains($0) }, from: .available, to: .issued)
                count(badCodes.filter { own.contains($0) }, from: .reserved, to: .voided)
                count(badCodes.filter { !own.contains($0) }, from: .available, to: .voided)
                if !late { endHold(order) }
                orders.publish(published)
                completion(.success(reply(published, codes: replies)))
            }
        }
    }

    // MARK: release and expiry

    /// Gives the held codes back. Repeating it (or releasing an expired hold) is fine; a
    /// committed order cannot be released (refund it).
    func release(order orderID: String, client: String? = nil, completion: @escaping OrderCompletion) {
        do throws(KamiError) { try EngineCore.validate(orderID: orderID) } catch { return completion(.failure(error)) }
        let retry: @Sendable () -> Void = { [self] in release(order: orderID, client: client, completion: completion) }
        switch orders.begin(orderID, create: false, retry: retry) {
        case .queued:
            return
        case .missing, .created:
            return completion(.failure(KamiError(.notFound, "no order \(orderID)")))
        case .existing(let order):
            switch order.state {
            case .released, .expired:
                orders.end(orderID)
                return completion(.success(reply(order)))
            case .committed, .refunded, .pendingUpstream, .failed:
                orders.end(orderID)
                return completion(.failure(KamiError(.invalidState, "order \(orderID) is \(order.state); refund it instead")))
            case .reserved, .review:
                endReservation(order, to: .released, client: client, completion: completion)
            }
        }
    }

    /// Expires every hold whose deadline has passed. The expiry thread calls it; tests with
    /// a manual clock call it directly. Returns how many holds it began to expire.
    @discardableResult
    func expireDue() -> Int {
        let due = holds.popExpired(nowMs: clock.nowMs())
        for seq in due {
            guard let orderID = holdIDs.withLock({ $0[seq] }) else { continue }
            expire(orderID: orderID, seq: seq)
        }
        return due.count
    }

    private func expire(orderID: String, seq: OrderSeq) {
        switch orders.begin(orderID, create: false, retry: {}) {
        case .queued:
            // An operation on it is in flight (a commit, most likely); look again shortly.
            holds.schedule(order: seq, deadlineMs: clock.nowMs() + ExpiryDriver.tickMsMax)
        case .missing, .created:
            holdIDs.withLock { $0[seq] = nil }
        case .existing(let order):
            guard order.state.isHold, order.seq == seq else {
                orders.end(orderID)
                return
            }
            if order.expiresAtMs > clock.nowMs() {
                orders.end(orderID)
                holds.schedule(order: seq, deadlineMs: order.expiresAtMs)
                return
            }
            // Not approved in time is denied: its codes go back, the storefront refunds.
            endReservation(order, to: order.state == .review ? .released : .expired, client: nil) { _ in }
        }
    }

    /// Moves a reserved order (in flight for the caller) to released or expired.
    func endReservation(
        _ order: Order, to state: OrderState, client: String?, event name: String? = nil, completion: @escaping OrderCompletion
    ) {
        let ended = order.moved(to: state, atMs: clock.nowMs())
        let changes = order.codes.map { CodeChange(codeID: $0.codeID, from: .reserved, to: .available, orderSeq: nil) }
        let event = AuditEvent(
            name ?? (order.state == .review ? (client == nil ? "review-expire" : "review-release") : state == .expired ? "expire" : "release"),
            subject: "order:\(order.orderID)",
            detail: "seq=\(order.seq) codes=\(EngineCore.codeIDList(order.codes))" + EngineCore.clientField(client))
        let published = ended
        store.writer.submit(.writeOrder(ended, codes: changes, audit: event)) { [self] result in
            switch result {
            case .failure(let error):
                if state == .expired || (order.state == .review && client == nil) {
                    // Try again later; the hold stays until its expiry is durable.
                    holds.schedule(order: order.seq, deadlineMs: clock.nowMs() + ExpiryDriver.tickMsMax)
                }
                orders.end(order.orderID)
                completion(.failure(error))
            case .success:
                // Only now, with "available" on disk, may the codes be sold again.
                count(order.codes, from: .reserved, to: .available)
                returnToPool(order.codes)
                userLimits.release(user: order.user, sku: order.sku, units: order.units)
                endHold(order)
                releasePromotion(order)
                orders.publish(published)
                completion(.success(reply(published)))
            }
        }
    }

    /// `order` (as it was, a hold) no longer holds: its deadline is cancelled, and an unpaid
    /// one no longer counts toward the user's unpaid holds.
    func endHold(_ order: Order) {
        _ = holds.cancel(order: order.seq)
        holdIDs.withLock { $0[order.seq] = nil }
        if order.paymentRef == nil { userLimits.removePendingHold(user: order.user) }
    }

    // MARK: shared

    /// The answer to a repeated call: the order as it is, with its secrets once committed.
    func answerExisting(_ order: Order) -> Result<OrderReply, KamiError> {
        guard order.state == .committed else { return .success(reply(order)) }
        do throws(KamiError) {
            // States and rows in one statement, whatever the order's size.
            let rows = try store.codesWithState(order.codes.map(\.codeID))
            // An activated code stays the buyer's: shown like an issued one.
            let issued = order.codes.compactMap { rows[$0.codeID] }.filter { $0.state == .issued || $0.state == .used }.map(\.code)
            var revealed = try reveal(rows: issued)
            // A used code has no link left to click (and no fresh activation token).
            for index in revealed.indices where rows[revealed[index].codeID]?.state == .used {
                revealed[index].activationTemplate = nil
            }
            return .success(reply(order, codes: revealed))
        } catch {
            return .failure(error)
        }
    }

    /// ` client=<name>` for an order event's audit detail: which storefront client sent it
    /// (its hello name; `operator` on the Unix socket). Empty when the engine acted alone
    /// (expiry) or the caller did not say.
    static func clientField(_ client: String?) -> String {
        client.map { " client=\($0)" } ?? ""
    }

    static func conflict(_ order: Order) -> KamiError {
        KamiError(.conflict, "order \(order.orderID) exists with other arguments (user, SKU, units, amount or labels)")
    }

    static func validate(orderID: String, user: String? = nil, units: Int? = nil) throws(KamiError) {
        if let problem = IdentifierRules.problem(orderID, field: "order", maxBytes: Limits.orderIDBytesMax) {
            throw KamiError(.badRequest, problem)
        }
        if let user, let problem = IdentifierRules.problem(user, field: "user", maxBytes: Limits.userIDBytesMax) {
            throw KamiError(.badRequest, problem)
        }
        if let units, units < 1 || units > Limits.unitsPerOrderMax {
            throw KamiError(.badRequest, "qty \(units) is outside 1...\(Limits.unitsPerOrderMax)")
        }
    }

    /// An order's codes in all: units x codes per unit (a bundle's components). Checked before
    /// anything is taken, so no order ever holds more codes than a reply can carry.
    static func validate(codesOf sku: Sku, units: Int) throws(KamiError) {
        let codes = units * sku.codesPerUnit
        guard codes <= Limits.codesPerOrderMax else {
            throw KamiError(.badRequest, "qty \(units) of \(sku.key) takes \(codes) codes (\(sku.codesPerUnit) per unit); "
                + "one order takes at most \(Limits.codesPerOrderMax) codes (codes_per_order_max)")
        }
    }

    static func validate(paymentRef: String) throws(KamiError) {
        if let problem = IdentifierRules.problem(paymentRef, field: "payment_ref", maxBytes: Limits.paymentRefBytesMax) {
            throw KamiError(.badRequest, problem)
        }
    }
}
