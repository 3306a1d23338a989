import Foundation
public import KamiCore
public import KamiEngine
public import KamiHTTP
import KamiStore
import Synchronization

/// A configured supplier, ready to talk to: its config, credentials, URL and TLS context.
public struct SupplierEndpoint: Sendable {
    public var config: SupplierConfig
    public var credentials: SupplierCredentials
    public var url: HTTPURL
    public var tls: TLSContext?

    /// Loads the credentials files and the CA file named by `config`; the error names the
    /// supplier and the file.
    public init(config: SupplierConfig, resolve: (String) -> String = { $0 }) throws(ConfigValueError) {
        if let missing = config.missing { throw ConfigValueError("supplier \(config.id): \(missing) is not set") }
        let kami = config.url.hasPrefix("kami://")
        guard kami == (config.style == .kami) else {
            throw ConfigValueError("supplier \(config.id): style kami goes with a kami://HOST:PORT url, the others with http(s)://")
        }
        guard let url = HTTPURL(kami ? "http://" + config.url.dropFirst(7) : config.url) else {
            throw ConfigValueError("supplier \(config.id): bad url \(config.url)")
        }
        let loopback = url.host == "localhost" || url.host == "::1" || url.host.hasPrefix("127.")
        guard url.secure || loopback || config.allowPlainHTTP || kami else {
            throw ConfigValueError("supplier \(config.id): \(config.url) is plain http to a host that is not loopback; "
                + "use https, or set supplier.\(config.id).allow_plain_http = true on a network you trust")
        }
        let key = try SecretFile.read(resolve(config.credentialsFile))
        let callbackKey = try config.callbackSecretFile.map { path throws(ConfigValueError) in try SecretFile.read(resolve(path)) }
        self.config = config
        self.url = url
        credentials = SupplierCredentials(merchantID: config.merchantID.isEmpty ? "upstream" : config.merchantID, key: key,
                                          callbackKey: callbackKey, digest: config.signDigest)
        if url.secure {
            do { tls = try TLSContext.client(caFile: config.caFile.map(resolve)) } catch {
                throw ConfigValueError("supplier \(config.id): \(error.message)")
            }
        }
    }

    /// An endpoint from parts (tests).
    public init(config: SupplierConfig, credentials: SupplierCredentials, url: HTTPURL, tls: TLSContext?) {
        self.config = config
        self.credentials = credentials
        self.url = url
        self.tls = tls
    }
}

/// Settings of the upstream service as a whole.
public struct UpstreamSettings: Sendable {
    /// Where suppliers send callbacks (our listener's public URL base), nil: no callbacks.
    public var callbackBase: HTTPURL?
    /// An order with no candidate under the `wait` policy gives up after this long.
    public var waitMaxMs: Int64 = 600_000
    /// How often an order with no candidate under `wait` is routed again.
    public var rerouteMs: Int64 = 5_000
    /// Price and stock sync period (0: never).
    public var syncMs: Int64 = 60_000
    /// How often SKUs are checked against their low-water marks (buy-ahead).
    public var buyAheadTickMs: Int64 = 2_000

    public init() {}
}

/// Counters of the upstream service (for metrics and tests).
public struct UpstreamCounters: Sendable, Hashable {
    public var delivered = 0
    public var failedOrders = 0
    public var marginGuard = 0
    public var placed = 0
    public var resent = 0
    public var queries = 0
    public var unknownOutcomes = 0
    public var failovers = 0
    public var callbacksAccepted = 0
    public var callbacksRejected = 0
    public var callbacksReplayed = 0
    public var inFlight = 0
}

/// Where a supplier stands, for `kamictl supplier list` and metrics.
public struct SupplierStatus: Sendable, Hashable {
    public var id: String
    public var style: SupplierStyle
    public var url: String
    public var breaker: CircuitBreaker.State
    public var breakerOpenings: Int
    public var paused: Bool
    public var inFlight: Int
    public var attempts: Int
    public var failures: Int
    public var p95Ms: Int64?
    public var successRate: Double
}

/// Fulfils orders pending upstream: routes each to the best supplier, journals every
/// attempt through the engine before its request leaves, resolves unknown outcomes by
/// query before anything else is bought, fails over on proven refusals, and takes
/// suppliers' callbacks. Everything runs on one `IOLoop` thread; the engine's completions
/// hop onto it.
public final class UpstreamService: UpstreamSink, @unchecked Sendable {
    // @unchecked: every var below is touched only on `loop`'s thread.
    public typealias Log = @Sendable (_ level: String, _ event: String, _ fields: [(String, String)]) -> Void

    public let loop: IOLoop
    let client: HTTPClient
    let engine: Engine
    var settings: UpstreamSettings
    let log: Log
    var suppliers: [String: SupplierEndpoint]
    var breakers: [String: CircuitBreaker] = [:]
    /// Buy-ahead purchases open now, by SKU (one at a time per SKU).
    var buying: [SkuID: BuyAheadWork] = [:]
    /// The day a SKU's exhausted budget was last logged.
    var budgetLogged: [SkuID: Int64] = [:]
    private var stats: [String: SupplierStats] = [:]
    private var inFlight: [String: Int] = [:]
    private var nextSlotNs: [String: UInt64] = [:]
    private var work: [String: OrderWork] = [:]
    private var seenCallbacks: [String: Int64] = [:]
    private var counters = UpstreamCounters()
    private let countersBox = Mutex(UpstreamCounters())
    private let statusBox = Mutex<[SupplierStatus]>([])
    private var callbackServer: HTTPServer?
    private var random = SystemRandomNumberGenerator()
    private var peers: [String: LineClient] = [:]
    private var lastPublishNs: UInt64 = 0
    private var publishScheduled = false

    /// One order being fulfilled. @unchecked Sendable: closures that other threads run only
    /// carry it back to the loop, where every use happens.
    final class OrderWork: @unchecked Sendable {
        var order: Order
        let sku: Sku
        var attempts: [String: UpstreamAttempt] = [:]
        /// The supplier whose attempt is open (placing, processing, unknown), if any.
        var current: String?
        var refused: Set<String> = []
        var pollMs: Int64 = 0
        var timer: IOLoop.TimerID?
        var requestInFlight = false
        var settling = false
        var waitLogged = false
        /// When the current attempt's request was last sent (ms), and not-found answers since.
        var lastSendMs: Int64 = 0
        var notFoundInARow = 0
        /// Tags the request in flight; a reply with another tag is stale.
        var requestToken: UInt64 = 0
        var sendTimer: IOLoop.TimerID?
        let startedMs: Int64
        var sentAtNs: UInt64 = 0

        init(order: Order, sku: Sku, startedMs: Int64) {
            self.order = order
            self.sku = sku
            self.startedMs = startedMs
        }
    }

    /// A service over `engine` with `suppliers`; call `start` to resume pending orders.
    public init(engine: Engine, suppliers: [SupplierEndpoint], settings: UpstreamSettings, log: @escaping Log) {
        self.engine = engine
        self.settings = settings
        self.log = log
        loop = IOLoop(name: "kami-upstream")
        client = HTTPClient(loop: loop)
        self.suppliers = Dictionary(suppliers.map { ($0.config.id, $0) }, uniquingKeysWith: { $1 })
        for endpoint in suppliers { prepare(endpoint.config) }
    }

    private func prepare(_ config: SupplierConfig) {
        if breakers[config.id] == nil || breakers[config.id]!.window != config.breakerWindow {
            breakers[config.id] = CircuitBreaker(window: config.breakerWindow, errorRate: config.breakerErrorRate,
                                                 openMs: config.breakerOpenMs)
        }
        if stats[config.id] == nil { stats[config.id] = SupplierStats() }
    }

    /// The ids of the configured suppliers.
    public var supplierIDs: Set<String> { onLoop { [self] in Set(suppliers.keys) } }

    /// Registers with the engine and resumes every order still pending (after a restart:
    /// each open attempt is resolved by query first). Starts the callback listener at
    /// `callbackListen` (host, port) when given; without a configured `callbackBase`,
    /// suppliers are told the listener's own address.
    public func start(callbackListen: (host: String, port: UInt16)? = nil) throws(HTTPServerError) {
        if let listen = callbackListen {
            let server = HTTPServer(host: listen.host, port: listen.port, loop: loop) { [weak self] request, responder in
                self?.callback(request, responder: responder)
            }
            try server.start()
            callbackServer = server
            if settings.callbackBase == nil {
                // Suppliers call back to the listener itself (loopback setups, tests).
                let host = listen.host.contains(":") ? "[\(listen.host)]" : listen.host
                settings.callbackBase = HTTPURL("http://\(host):\(server.port)")
            }
        }
        engine.upstream.setSink(self)
        let pending = engine.upstream.pendingOrders()
        loop.execute { [self] in
            for (order, sku) in pending { begin(order, sku: sku) }
            startBuyAhead()
            scheduleSync()
            publish()
        }
    }

    /// The callback listener's port (0 when none).
    public var callbackPort: UInt16 { callbackServer?.port ?? 0 }

    /// Stops the callback listener and the loop. Orders in flight stay pending on disk and
    /// are resumed at the next start.
    public func stop() {
        engine.upstream.setSink(nil)
        callbackServer?.stop()
        refresh()
        stopped.store(true, ordering: .releasing)
        loop.stop()
    }

    /// Replaces the supplier set (a config reload). Orders in flight at a removed supplier
    /// keep being resolved with its old settings.
    public func reload(_ endpoints: [SupplierEndpoint]) {
        loop.execute { [self] in
            for endpoint in endpoints {
                let old = suppliers[endpoint.config.id]
                if old?.config != endpoint.config || old?.credentials != endpoint.credentials {
                    peers[endpoint.config.id] = nil  // reconnects with the new settings and token
                }
                suppliers[endpoint.config.id] = endpoint
                prepare(endpoint.config)
            }
            let kept = Set(endpoints.map(\.config.id))
            for id in suppliers.keys where !kept.contains(id) && !work.values.contains(where: { $0.current == id })
                && !buying.values.contains(where: { $0.purchase.supplier == id && !$0.purchase.state.isFinal }) {
                suppliers[id] = nil
            }
            publish()
        }
    }

    /// Counters now (brought up to date on the loop first, unless it stopped).
    public var snapshot: UpstreamCounters {
        refresh()
        return countersBox.withLock { $0 }
    }

    /// Every supplier's state now.
    public var statuses: [SupplierStatus] {
        refresh()
        return statusBox.withLock { $0 }
    }

    private func refresh() {
        guard !stopped.load(ordering: .acquiring), !loop.onLoop else { return }
        _ = onLoop { [self] in
            publish(force: true)
            return true
        }
    }

    private let stopped = Atomic<Bool>(false)

    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        if loop.onLoop { return body() }
        let box = Mutex<T?>(nil)
        loop.execute { let value = body(); box.withLock { $0 = value } }
        while true {
            if let value = box.withLock({ $0 }) { return value }
            usleep(200)
        }
    }

    /// Publishes counters and supplier states for readers on other threads, at most every
    /// 50 ms (`force` at once).
    private func publish(force: Bool = false) {
        let nowNs = IOLoop.nowNs()
        guard force || nowNs - lastPublishNs >= 50_000_000 else {
            if !publishScheduled {
                publishScheduled = true
                loop.schedule(afterMs: 50) { [weak self] in
                    self?.publishScheduled = false
                    self?.publish(force: true)
                }
            }
            return
        }
        lastPublishNs = nowNs
        counters.inFlight = work.count
        let copy = counters
        countersBox.withLock { $0 = copy }
        let paused = engine.upstream.pausedSuppliers()
        let now = nowMs()
        let list = suppliers.values.sorted { $0.config.id < $1.config.id }.map { endpoint -> SupplierStatus in
            let id = endpoint.config.id
            let breaker = breakers[id]!
            let stat = stats[id]!
            var state = breaker.state
            if state == .open && breaker.wouldAllow(nowMs: now) { state = .halfOpen }
            return SupplierStatus(id: id, style: endpoint.config.style, url: endpoint.url.description, breaker: state,
                                  breakerOpenings: breaker.openings, paused: paused.contains(id), inFlight: inFlight[id] ?? 0,
                                  attempts: stat.total, failures: stat.failures, p95Ms: stat.p95Ms, successRate: stat.successRate)
        }
        statusBox.withLock { $0 = list }
    }

    func nowMs() -> Int64 { engine.nowMs }

    // MARK: UpstreamSink

    public func orderPending(_ order: Order, sku: Sku) {
        // An order just created has no attempts: nothing to read back (a retried or resumed one may).
        let fresh = order.createdAtMs == order.updatedAtMs
        loop.execute { [self] in begin(order, sku: sku, fresh: fresh) }
    }

    private func begin(_ order: Order, sku: Sku, fresh: Bool = false) {
        guard work[order.orderID] == nil else { return }
        let item = OrderWork(order: order, sku: sku, startedMs: nowMs())
        work[order.orderID] = item
        if fresh { route(item) } else { load(item) }
    }

    /// Reads the order's attempts (after a restart, or a retry of a failed order) and
    /// resolves any that is open before anything new is bought. A read that fails is tried
    /// again: routing without knowing the attempts could buy twice.
    private func load(_ item: OrderWork) {
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

    private func route(_ item: OrderWork) {
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
        let limit = Router.costLimit(priceCents: item.sku.priceCents, sourcing: sourcing)
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
                    ("price_cents", String(item.sku.priceCents)), ("min_margin_cents", String(sourcing.minMarginCents)),
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

    private func place(_ item: OrderWork, mapping: SupplierMapping) {
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

    private func notifyURL(_ supplier: String) -> String? {
        settings.callbackBase.map { base in
            base.with(target: (base.path == "/" ? "" : base.path) + "/upstream/callback/" + supplier).description
        }
    }

    /// Sends a request for the order's current attempt, within the supplier's rate.
    private func send(_ item: OrderWork, _ call: SupplierWire.Call) {
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

    private func transmit(_ item: OrderWork, _ call: SupplierWire.Call, endpoint: SupplierEndpoint) {
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
    private func received(
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
            breakers[id]?.record(success: healthy, nowMs: nowMs())
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
            breakers[id]?.record(success: false, nowMs: nowMs())
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
    private func handle(_ item: OrderWork, supplier id: String, reply: SupplierReply, fromPlace: Bool) {
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
    private func keepOpen(_ item: OrderWork, _ attempt: inout UpstreamAttempt, _ state: AttemptState, _ why: String, ref: String?) {
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

    private func query(_ item: OrderWork) {
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
    private func refuse(_ item: OrderWork, _ failed: UpstreamAttempt) {
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
    private func journalRefusal(_ item: OrderWork, _ failed: UpstreamAttempt) {
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

    private func fail(_ item: OrderWork, reason: String, attempt: UpstreamAttempt?) {
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

    private func finish(_ item: OrderWork) {
        if let timer = item.timer { loop.cancel(timer) }
        if work[item.order.orderID] === item { work[item.order.orderID] = nil }
    }

    // MARK: callbacks

    private func callback(_ request: HTTPRequest, responder: HTTPResponder) {
        let parts = request.path.split(separator: "/").map(String.init)
        guard request.method == "POST", parts.count == 3, parts[0] == "upstream", parts[1] == "callback" else {
            return responder.respond(HTTPResponse(status: 404, text: "no such path\n"))
        }
        let id = parts[2]
        guard let endpoint = suppliers[id] else {
            counters.callbacksRejected += 1
            return responder.respond(HTTPResponse(status: 404, text: "no supplier \(id)\n"))
        }
        let now = nowMs()
        switch SupplierWire.verifyCallback(request, style: endpoint.config.style, credentials: endpoint.credentials,
                                           nowSeconds: now / 1_000) {
        case .failure(let problem):
            counters.callbacksRejected += 1
            publish()
            log("warning", "upstream-callback-refused", [("supplier", id), ("reason", problem.description)])
            responder.respond(HTTPResponse(status: 401, text: "refused: \(problem.description)\n"))
        case .success(let callback):
            // Replays within the window are answered as before and change nothing.
            let window = SupplierWire.windowSeconds(endpoint.config.style) * 2_000
            seenCallbacks = seenCallbacks.count > 100_000 ? seenCallbacks.filter { now - $0.value < window } : seenCallbacks
            if let seen = seenCallbacks[callback.replayKey], now - seen < window {
                counters.callbacksReplayed += 1
                publish()
                return responder.respond(SupplierWire.callbackAck(endpoint.config.style))
            }
            seenCallbacks[callback.replayKey] = now
            counters.callbacksAccepted += 1
            responder.respond(SupplierWire.callbackAck(endpoint.config.style))
            if let item = work[callback.customerOrderNo], item.current == id {
                if case .notFound = callback.reply { return }
                if let timer = item.timer { loop.cancel(timer) }
                handle(item, supplier: id, reply: callback.reply, fromPlace: false)
            } else if case .delivered(let ref, let items) = callback.reply {
                if let item = work[callback.customerOrderNo], item.current == nil, !item.settling,
                   !item.attempts.values.contains(where: { !$0.state.isFinal }), let attempt = item.attempts[id],
                   attempt.state == .failed, items.count == item.order.units {
                    // Refused, then delivered after all, while nothing else is open: the
                    // order takes these codes rather than buy again.
                    if let timer = item.timer { loop.cancel(timer) }
                    item.attempts[id] = attempt.moved(to: .unknown, detail: "delivered after a refusal", atMs: nowMs())
                    item.refused.remove(id)
                    item.current = id
                    handle(item, supplier: id, reply: callback.reply, fromPlace: false)
                } else {
                    lateDelivery(callback.customerOrderNo, supplier: id, ref: ref, items: items)
                }
            }
            publish()
        }
    }

    /// A supplier says it delivered an order kamid no longer waits on it for (settled
    /// already, or failed over after an answer that proved no sale). Its attempt is journaled
    /// as succeeded, so `verify` and reconciliation show the purchase; the codes it delivered
    /// (paid for) are kept in the SKU's pool as available, never thrown away; and it is logged
    /// (never the codes) for the operator to take up with the supplier.
    private func lateDelivery(_ orderID: String, supplier id: String, ref: String?, items: [WireItem]) {
        guard let order = engine.upstream.order(orderID),
              let attempt = (try? engine.upstream.attempts(orderSeq: order.seq))?.first(where: { $0.supplier == id }),
              attempt.state != .succeeded else { return }
        var late = attempt.moved(to: .succeeded, detail: "late delivery of \(items.count) item(s) after kamid moved on", atMs: nowMs())
        late.supplierRef = ref ?? late.supplierRef
        engine.upstream.recordAttempt(late) { _ in }
        let skuKey = engine.queries.skus().first { $0.id == order.sku }?.key
        let delivered = items.map { DeliveredItem(secret: Secret($0.secret), cardNumber: $0.cardNumber, expiresAtMs: $0.expiresAtMs) }
        // The import blocks on the writer thread: off the loop.
        DispatchQueue.global().async { [self] in
            var kept = 0
            if let skuKey, !delivered.isEmpty {
                kept = (try? engine.upstream.addToPool(sku: skuKey, items: delivered, supplier: id).imported) ?? 0
            }
            log("error", "upstream-late-delivery", [("order", orderID), ("supplier", id), ("ref", ref ?? "-"),
                                                    ("order_state", "\(order.state)"), ("items", String(items.count)),
                                                    ("kept_in_pool", String(kept))])
        }
    }

    // MARK: sync

    private func scheduleSync() {
        guard settings.syncMs > 0 else { return }
        loop.schedule(afterMs: settings.syncMs) { [weak self] in
            guard let self else { return }
            self.syncNow()
            self.scheduleSync()
        }
    }

    /// Asks every supplier for its products' prices and stock now; each change of a mapped
    /// product is journaled (the cost history).
    public func sync() { loop.execute { [self] in syncNow() } }

    private func syncNow() {
        let mappings = engine.upstream.mappings()
        for endpoint in suppliers.values where endpoint.config.style != .kami {
            let id = endpoint.config.id
            let request = SupplierWire.request(.products, style: endpoint.config.style, base: endpoint.url,
                                               credentials: endpoint.credentials, nowSeconds: nowMs() / 1_000)
            var options = HTTPClientOptions()
            options.timeoutMs = endpoint.config.timeoutMs
            options.maxConnections = endpoint.config.maxConcurrent
            client.send(request, to: endpoint.url, tls: endpoint.tls, options: options) { [weak self] result in
                guard let self else { return }
                guard case .success(let response) = result,
                      let products = SupplierWire.parseProducts(response, style: endpoint.config.style) else {
                    self.log("warning", "upstream-sync", [("supplier", id), ("error", "no product list")])
                    return
                }
                let byProduct = Dictionary(products.map { ($0.productID, $0) }, uniquingKeysWith: { $1 })
                for (sku, list) in mappings {
                    for mapping in list where mapping.supplier == id {
                        guard let product = byProduct[mapping.productID] else { continue }
                        self.engine.upstream.updateCost(sku: sku, supplier: id, costCents: product.priceCents, stock: product.stock)
                    }
                }
            }
        }
    }
}
