import Foundation
public import KamiCore
import KamiEngine
import KamiHTTP
import KamiStore

/// The life of an order fulfilled upstream: routing (candidates, strategy, margin guard,
/// breakers), attempts journaled before each request, replies and their meaning, queries of
/// unknown outcomes, failover, the dead-letter list.
extension UpstreamService {
    // MARK: UpstreamSink

    public func orderPending(_ order: Order, sku: Sku) {
        // An order just created has no attempts: nothing to read back (a retried or resumed one may).
        let fresh = order.createdAtMs == order.updatedAtMs
        loop.execute { [self] in begin(order, sku: sku, fresh: fresh) }
    }

    func begin(_ order: Order, sku: Sku, fresh: Bool = false) {
        guard work[order.orderID] == nil else { return }
        let item = OrderWork(order: order, sku: sku, startedMs: nowMs())
        work[order.orderID] = item
        if fresh { route(item) } else { load(item) }
    }

    /// Reads the order's attempts (after a restart, or a retry of a failed order) and
    /// resolves any that is open before anything new is bought. A read that fails is tried
    /// again: routing without knowing the attempts could buy twice.
    func load(_ item: OrderWork) {
        let attempts: [UpstreamAttempt]
        do throws(KamiError) { attempts = try engine.upstream.attempts(orderSeq: item.order.seq) } catch {
            log("warning", "upstream-journal", [("order", item.order.orderID), ("error", error.message)])
            item.timer = loop.schedule(afterMs: 1_000) { [weak self, weak item] in
                guard let self, let item else { return }
                self.load(item)
            }
            return
        }
        for attempt in attempts { item.attempts[attempt.supplier] = attempt }
        // A retried failed order starts afresh: the refusals may have been stock or price.
        route(item)
    }

    // MARK: routing

    func route(_ item: OrderWork) {
        guard work[item.order.orderID] === item, item.current == nil, !item.settling else { return }
        // Never a purchase elsewhere while any attempt's outcome is open: resolve it first.
        if let open = item.attempts.values.filter({ !$0.state.isFinal }).sorted(by: { $0.createdAtMs < $1.createdAtMs }).first {
            item.current = open.supplier
            item.lastSendMs = max(item.lastSendMs, open.updatedAtMs)
            log("notice", "upstream-resume", [("order", item.order.orderID), ("supplier", open.supplier),
                                              ("state", "\(open.state)")])
            return query(item)
        }
        let sourcing = engine.upstream.sourcing(item.sku.id)
        let mappings = engine.upstream.mappings()[item.sku.id] ?? []
        let paused = engine.upstream.pausedSuppliers()
        // The margin guard sells at what the buyer paid a unit (after a campaign or coupon),
        // not the list price.
        let unitPrice = item.order.amountCents.map { $0 / Int64(max(1, item.order.units)) } ?? item.sku.priceCents
        let limit = Router.costLimit(priceCents: unitPrice, sourcing: sourcing)
        let now = nowMs()
        var candidates: [Candidate] = []
        var excluded: [(String, Exclusion)] = []
        for mapping in mappings {
            let id = mapping.supplier
            if suppliers[id] == nil { excluded.append((id, .unconfigured)); continue }
            if paused.contains(id) { excluded.append((id, .paused)); continue }
            if item.refused.contains(id) { excluded.append((id, .triedAndRefused)); continue }
            if mapping.costCents > limit {
                excluded.append((id, .marginGuard(costCents: mapping.costCents, limitCents: limit)))
                counters.marginGuard += 1
                log("warning", "成本倒挂 margin-guard", [
                    ("sku", item.sku.key), ("supplier", id), ("cost_cents", String(mapping.costCents)),
                    ("price_cents", String(unitPrice)), ("min_margin_cents", String(sourcing.minMarginCents)),
                    ("order", item.order.orderID)])
                continue
            }
            if mapping.stock == 0 { excluded.append((id, .outOfStock)); continue }
            if !(breakers[id]?.wouldAllow(nowMs: now) ?? true) { excluded.append((id, .breakerOpen)); continue }
            let stat = stats[id] ?? SupplierStats()
            candidates.append(Candidate(mapping: mapping, p95Ms: stat.p95Ms, successRate: stat.successRate))
        }
        let ranked = Router.rank(candidates, strategy: sourcing.strategy, random: Double.random(in: 0..<1, using: &random))
        for candidate in ranked {
            let id = candidate.mapping.supplier
            guard breakers[id]!.allows(nowMs: now) else {
                excluded.append((id, .breakerOpen))
                continue
            }
            return place(item, mapping: candidate.mapping)
        }
        let reason = excluded.isEmpty ? "no supplier is mapped to \(item.sku.key)"
            : "no supplier can take it: " + excluded.map { "\($0.0) \($0.1)" }.joined(separator: "; ")
        // An open breaker is a pause, not a refusal: a paid order waits for its probe (under
        // any policy) rather than fail because a supplier had a bad minute.
        let transient = excluded.contains { $0.1 == .breakerOpen }
        if (transient || sourcing.noCandidate == .wait) && now - item.startedMs < settings.waitMaxMs {
            if !item.waitLogged {
                item.waitLogged = true
                log("notice", "upstream-waiting", [("order", item.order.orderID), ("reason", reason)])
            }
            let delay = transient ? min(settings.rerouteMs, 250) : settings.rerouteMs
            item.timer = loop.schedule(afterMs: delay) { [weak self, weak item] in
                guard let self, let item else { return }
                self.route(item)
            }
            return
        }
        fail(item, reason: reason, attempt: nil)
    }

    // MARK: attempts

    func place(_ item: OrderWork, mapping: SupplierMapping) {
        let id = mapping.supplier
        let now = nowMs()
        let attempt: UpstreamAttempt
        if let previous = item.attempts[id] {
            // The same number again: the supplier's idempotency makes it the same purchase.
            attempt = UpstreamAttempt(
                orderSeq: previous.orderSeq, supplier: id, sends: previous.sends + 1, customerOrderNo: previous.customerOrderNo,
                state: .placing, supplierRef: previous.supplierRef, costCents: mapping.costCents, detail: "resend",
                createdAtMs: previous.createdAtMs, updatedAtMs: now)
            counters.resent += 1
        } else {
            attempt = UpstreamAttempt(
                orderSeq: item.order.seq, supplier: id, sends: 1, customerOrderNo: item.order.orderID, state: .placing,
                costCents: mapping.costCents, createdAtMs: now, updatedAtMs: now)
        }
        item.current = id
        item.attempts[id] = attempt
        // Durable before the request leaves: after a crash the attempt is found and resolved.
        engine.upstream.recordAttempt(attempt) { [self] result in
            loop.execute { [self] in
                guard work[item.order.orderID] === item, item.current == id else { return }
                switch result {
                case .success:
                    item.lastSendMs = nowMs()
                    send(item, .place(PlaceOrder(
                        customerOrderNo: attempt.customerOrderNo, productID: mapping.productID, quantity: item.order.units,
                        notifyURL: notifyURL(id), account: suppliers[id]?.config.directTopUp == true ? item.order.user : nil)))
                case .failure(let error):
                    // Nothing left kamid: try again shortly (the journal may be busy or full).
                    // The attempt as it was on disk stays the one known (a resend was not journaled).
                    log("warning", "upstream-journal", [("order", item.order.orderID), ("error", error.message)])
                    breakers[id]?.releaseProbe()
                    if attempt.sends > 1 {
                        item.attempts[id] = attempt.moved(to: .unknown, detail: "resend not journaled", atMs: nowMs())
                    } else {
                        item.attempts[id] = nil
                    }
                    item.current = nil
                    item.timer = loop.schedule(afterMs: 1_000) { [weak self, weak item] in
                        guard let self, let item else { return }
                        self.route(item)
                    }
                }
            }
        }
    }

    func notifyURL(_ supplier: String) -> String? {
        settings.callbackBase.map { base in
            base.with(target: (base.path == "/" ? "" : base.path) + "/upstream/callback/" + supplier).description
        }
    }

    /// Sends a request for the order's current attempt, within the supplier's rate.
    func send(_ item: OrderWork, _ call: SupplierWire.Call) {
        guard let id = item.current, let endpoint = suppliers[id] else { return }
        if endpoint.config.requestsPerSecond > 0 {
            let now = IOLoop.nowNs()
            let slot = max(now, nextSlotNs[id] ?? 0)
            nextSlotNs[id] = slot + 1_000_000_000 / UInt64(endpoint.config.requestsPerSecond)
            if slot > now + 1_000_000 {
                item.requestInFlight = true
                item.sendTimer = loop.schedule(afterMs: Int64((slot - now) / 1_000_000)) { [weak self, weak item] in
                    guard let self, let item else { return }
                    self.transmit(item, call, endpoint: endpoint)
                }
                return
            }
        }
        transmit(item, call, endpoint: endpoint)
    }

    func transmit(_ item: OrderWork, _ call: SupplierWire.Call, endpoint: SupplierEndpoint) {
        let id = endpoint.config.id
        var options = HTTPClientOptions()
        options.connectTimeoutMs = endpoint.config.connectTimeoutMs
        options.timeoutMs = endpoint.config.timeoutMs
        options.maxConnections = endpoint.config.maxConcurrent
        item.requestInFlight = true
        item.sentAtNs = IOLoop.nowNs()
        item.requestToken &+= 1
        let token = item.requestToken
        inFlight[id, default: 0] += 1
        if case .place = call { counters.placed += 1 } else { counters.queries += 1 }
        let isPlace: Bool = if case .place = call { true } else { false }
        let number = item.attempts[id]?.customerOrderNo ?? item.order.orderID
        let firstSend = (item.attempts[id]?.sends ?? 1) == 1
        if endpoint.config.style == .kami {
            // Another kamid: its storefront protocol, the delivery in the reply.
            let waitMs = max(0, min(Limits.waitMsMax, endpoint.config.timeoutMs - 500))
            guard let line = KamiPeerWire.request(call, merchant: endpoint.credentials.merchantID, waitMs: waitMs) else {
                return received(item, call, endpoint: endpoint, isPlace: isPlace, token: token,
                                result: .success(.unknown("another kamid has no operation for this")))
            }
            peer(endpoint, options: options).send(line) { [weak self] result in
                self?.received(item, call, endpoint: endpoint, isPlace: isPlace, token: token, result: result.map {
                    KamiPeerWire.parse($0, isPlace: isPlace, customerOrderNo: number, merchant: endpoint.credentials.merchantID,
                                       firstSend: firstSend)
                })
            }
            return
        }
        let request = SupplierWire.request(call, style: endpoint.config.style, base: endpoint.url,
                                           credentials: endpoint.credentials, nowSeconds: nowMs() / 1_000)
        let units = item.order.units
        client.send(request, to: endpoint.url, tls: endpoint.tls, options: options) { [weak self] result in
            self?.received(item, call, endpoint: endpoint, isPlace: isPlace, token: token, result: result.map {
                SupplierWire.parse($0, style: endpoint.config.style, quantity: units, customerOrderNo: number)
            })
        }
    }

    /// The line client of a kamid supplier, made at its first use (on the loop).
    func peer(_ endpoint: SupplierEndpoint, options: HTTPClientOptions) -> LineClient {
        let id = endpoint.config.id
        if let existing = peers[id] { return existing }
        let made = LineClient(
            loop: loop, host: endpoint.url.host, port: endpoint.url.port,
            handshake: KamiPeerWire.hello(client: endpoint.credentials.merchantID, token: endpoint.credentials.key),
            options: options, check: KamiPeerWire.checkHello)
        peers[id] = made
        return made
    }

    /// A reply (or the lack of one) to a request at a supplier; on the loop.
    func received(
        _ item: OrderWork, _ call: SupplierWire.Call, endpoint: SupplierEndpoint, isPlace: Bool, token: UInt64,
        result: Result<SupplierReply, HTTPClientError>
    ) {
        let id = endpoint.config.id
        inFlight[id, default: 1] -= 1
        // A reply to a request the order has moved on from (another supplier took over, a
        // newer request went out) changes nothing.
        guard token == item.requestToken, item.current == id else { return }
        item.requestInFlight = false
        let latencyMs = Int64((IOLoop.nowNs() - item.sentAtNs) / 1_000_000)
        switch result {
        case .success(var reply):
            // A refusal of the request itself (signature, timestamp, malformed) proves no
            // sale only for the first send of a place; for a query or a resend it says
            // nothing about the order.
            if case .failed(let code, let message) = reply, SupplierWire.isRequestRefusal(code),
               !(isPlace && (item.attempts[id]?.sends ?? 1) == 1) {
                reply = .unknown("the supplier refused the request (\(code): \(message.prefix(100)))")
            }
            let healthy: Bool = switch reply {
            case .unknown: false
            case .failed(let code, _): !SupplierWire.isRequestRefusal(code)
            default: true
            }
            stats[id]?.record(latencyMs: latencyMs, success: healthy)
            recordBreaker(id, success: healthy)
            handle(item, supplier: id, reply: reply, fromPlace: isPlace)
        case .failure(let error) where !error.sent && (error.kind == .overloaded || error.kind == .timeout):
            // Our own queue was full or slow: the supplier never saw it and is not to
            // blame. Send it again shortly.
            stats[id]?.record(latencyMs: latencyMs, success: true)
            if let timer = item.timer { loop.cancel(timer) }
            item.timer = loop.schedule(afterMs: 200) { [weak self, weak item] in
                guard let self, let item, item.current == id else { return }
                self.send(item, call)
            }
        case .failure(let error):
            stats[id]?.record(latencyMs: latencyMs, success: false)
            recordBreaker(id, success: false)
            if !error.sent && isPlace && (item.attempts[id]?.sends ?? 1) == 1 {
                // The first send provably never reached the supplier: nothing was sold.
                handle(item, supplier: id, reply: .failed(code: "not_sent", message: error.description), fromPlace: true)
            } else {
                handle(item, supplier: id, reply: .unknown(error.description), fromPlace: isPlace)
            }
        }
        publish()
    }

    /// What a supplier said (a reply, or a callback) about the order's attempt there.
    func handle(_ item: OrderWork, supplier id: String, reply: SupplierReply, fromPlace: Bool) {
        guard work[item.order.orderID] === item, !item.settling, item.current == id,
              var attempt = item.attempts[id], !attempt.state.isFinal else { return }
        let now = nowMs()
        if case .notFound = reply {} else { item.notFoundInARow = 0 }
        switch reply {
        case .delivered(let ref, let answered):
            var receipts = answered
            if answered.isEmpty, suppliers[id]?.config.directTopUp == true {
                // A direct top-up: the supplier credited the buyer's account; its receipt is
                // what the buyer gets, one per unit.
                let receipt = "TOPUP \(ref ?? attempt.customerOrderNo) account \(item.order.user)"
                receipts = (0..<item.order.units).map { WireItem(secret: "\(receipt) #\($0 + 1)", cardNumber: ref) }
            }
            let items = receipts
            guard items.count == item.order.units else {
                return keepOpen(item, &attempt, .unknown, "delivered \(items.count) of \(item.order.units); asking again", ref: ref)
            }
            attempt.supplierRef = ref ?? attempt.supplierRef
            let done = attempt.moved(to: .succeeded, detail: "delivered", atMs: now)
            item.settling = true
            engine.upstream.deliver(
                orderID: item.order.orderID, attempt: done,
                items: items.map { DeliveredItem(secret: Secret($0.secret), cardNumber: $0.cardNumber, expiresAtMs: $0.expiresAtMs) }
            ) { [self] result in
                loop.execute { [self] in
                    item.settling = false
                    switch result {
                    case .success:
                        item.attempts[id] = done
                        finish(item)
                        counters.delivered += 1
                    case .failure(let error) where error.code == .invalidState:
                        // Settled already: a duplicate, or (if another supplier delivered) a
                        // second purchase, which is journaled and logged.
                        finish(item)
                        lateDelivery(item.order.orderID, supplier: id, ref: ref, items: items)
                    case .failure(let error):
                        // A disk problem, or a delivery kamid cannot store (an oversized secret):
                        // the supplier sold, so never fail over; keep trying, slower each time.
                        log(error.code == .badRequest ? "error" : "warning", "upstream-deliver",
                            [("order", item.order.orderID), ("supplier", id), ("error", error.message)])
                        item.pollMs = item.pollMs == 0 ? 1_000 : min(item.pollMs * 2, 60_000)
                        item.timer = loop.schedule(afterMs: item.pollMs) { [weak self, weak item] in
                            guard let self, let item else { return }
                            self.handle(item, supplier: id, reply: reply, fromPlace: false)
                        }
                    }
                    publish()
                }
            }
        case .processing(let ref):
            keepOpen(item, &attempt, .processing, "processing", ref: ref)
        case .partial(let ref, let delivered):
            keepOpen(item, &attempt, .processing, "partial \(delivered) of \(item.order.units)", ref: ref)
        case .unknown(let why):
            counters.unknownOutcomes += 1
            keepOpen(item, &attempt, .unknown, why, ref: nil)
        case .notFound:
            guard let endpoint = suppliers[id] else { return keepOpen(item, &attempt, .unknown, "not found", ref: nil) }
            item.notFoundInARow += 1
            // Once the supplier acknowledged the order (processing, or a reference) a
            // not-found proves nothing; before, it means not sold only after the grace period
            // from the last send, and twice in a row.
            let acknowledged = attempt.state == .processing || attempt.supplierRef != nil
            if acknowledged {
                return keepOpen(item, &attempt, attempt.state == .processing ? .processing : .unknown,
                                "the supplier acknowledged this order but now says not found", ref: nil)
            }
            let since = max(item.lastSendMs, attempt.updatedAtMs)
            if item.notFoundInARow >= 2 && now - since >= endpoint.config.notSoldAfterMs {
                refuse(item, attempt.moved(to: .failed, detail: "not found after \(endpoint.config.notSoldAfterMs) ms: not sold", atMs: now))
            } else {
                // It never arrived: send it again under the same number (never while another
                // supplier's attempt is open too: only queries then).
                if item.attempts.values.contains(where: { $0.supplier != id && !$0.state.isFinal }) {
                    return keepOpen(item, &attempt, .unknown, "not found; another attempt is open", ref: nil)
                }
                guard let mapping = engine.upstream.mappings()[item.sku.id]?.first(where: { $0.supplier == id }) else {
                    return keepOpen(item, &attempt, .unknown, "not found, and no longer mapped", ref: nil)
                }
                item.current = nil
                place(item, mapping: mapping)
            }
        case .failed(let code, let message):
            refuse(item, attempt.moved(to: .failed, detail: "\(code): \(message)", atMs: now))
        }
    }

    /// The attempt stays open: journal its new state (when it changed) and ask again later.
    func keepOpen(_ item: OrderWork, _ attempt: inout UpstreamAttempt, _ state: AttemptState, _ why: String, ref: String?) {
        let id = attempt.supplier
        if attempt.state != state || (ref != nil && attempt.supplierRef != ref) {
            var next = attempt.moved(to: state, detail: String(why.prefix(300)), atMs: nowMs())
            next.supplierRef = ref ?? attempt.supplierRef
            item.attempts[id] = next
            engine.upstream.recordAttempt(next) { _ in }
        }
        let endpoint = suppliers[id]
        let base = endpoint?.config.pollMs ?? 1_000
        item.pollMs = item.pollMs == 0 ? base : min(item.pollMs * 2, endpoint?.config.pollMaxMs ?? 30_000)
        if let timer = item.timer { loop.cancel(timer) }
        item.timer = loop.schedule(afterMs: item.pollMs) { [weak self, weak item] in
            guard let self, let item else { return }
            self.query(item)
        }
    }

    func query(_ item: OrderWork) {
        guard work[item.order.orderID] === item, let id = item.current, !item.requestInFlight, !item.settling else { return }
        guard suppliers[id] != nil else {
            // The supplier left the config: keep the order pending (never buy elsewhere while
            // its outcome is open) and say so.
            log("warning", "upstream-orphan", [("order", item.order.orderID), ("supplier", id)])
            item.timer = loop.schedule(afterMs: 60_000) { [weak self, weak item] in
                guard let self, let item else { return }
                self.query(item)
            }
            return
        }
        send(item, .query(customerOrderNo: item.attempts[id]?.customerOrderNo ?? item.order.orderID))
    }

    /// The supplier proved it did not sell: journal it, then the next candidate.
    func refuse(_ item: OrderWork, _ failed: UpstreamAttempt) {
        item.attempts[failed.supplier] = failed
        item.refused.insert(failed.supplier)
        item.current = nil
        item.pollMs = 0
        counters.failovers += 1
        log("notice", "upstream-refused", [("order", item.order.orderID), ("supplier", failed.supplier), ("detail", failed.detail)])
        item.settling = true
        journalRefusal(item, failed)
    }

    /// The refusal is durable before anything else is tried: otherwise a restart would find
    /// this attempt still open beside the next one.
    func journalRefusal(_ item: OrderWork, _ failed: UpstreamAttempt) {
        engine.upstream.recordAttempt(failed) { [self] result in
            loop.execute { [self] in
                if case .failure(let error) = result {
                    log("warning", "upstream-journal", [("order", item.order.orderID), ("error", error.message)])
                    loop.schedule(afterMs: 1_000) { [weak self] in self?.journalRefusal(item, failed) }
                    return
                }
                item.settling = false
                route(item)
            }
        }
    }

    func fail(_ item: OrderWork, reason: String, attempt: UpstreamAttempt?) {
        item.settling = true
        log("warning", "upstream-failed", [("order", item.order.orderID), ("sku", item.sku.key), ("reason", reason)])
        engine.upstream.fail(orderID: item.order.orderID, attempt: attempt, reason: String(reason.prefix(500))) { [self] result in
            loop.execute { [self] in
                item.settling = false
                if case .failure(let error) = result, error.code != .invalidState {
                    item.timer = loop.schedule(afterMs: 1_000) { [weak self, weak item] in
                        guard let self, let item else { return }
                        self.fail(item, reason: reason, attempt: attempt)
                    }
                    return
                }
                counters.failedOrders += 1
                finish(item)
                publish()
            }
        }
    }

    func finish(_ item: OrderWork) {
        if let timer = item.timer { loop.cancel(timer) }
        if work[item.order.orderID] === item { work[item.order.orderID] = nil }
    }
}

extension UpstreamService {
    /// Records an outcome in `id`'s breaker, and tells `onBreakerOpened` when it opens.
    func recordBreaker(_ id: String, success: Bool) {
        let before = breakers[id]?.openings ?? 0
        breakers[id]?.record(success: success, nowMs: nowMs())
        if (breakers[id]?.openings ?? 0) > before { onBreakerOpened?(id) }
    }
}
