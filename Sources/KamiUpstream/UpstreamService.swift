import Foundation
import KamiCore
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
    var stats: [String: SupplierStats] = [:]
    var inFlight: [String: Int] = [:]
    var nextSlotNs: [String: UInt64] = [:]
    var work: [String: OrderWork] = [:]
    var seenCallbacks: [String: Int64] = [:]
    var counters = UpstreamCounters()
    let countersBox = Mutex(UpstreamCounters())
    let statusBox = Mutex<[SupplierStatus]>([])
    var callbackServer: HTTPServer?
    var random = SystemRandomNumberGenerator()
    var peers: [String: LineClient] = [:]
    var lastPublishNs: UInt64 = 0
    var publishScheduled = false

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

    /// Told (on the service's loop) each time a supplier's breaker opens; set before `start`.
    public nonisolated(unsafe) var onBreakerOpened: (@Sendable (String) -> Void)?

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

    func prepare(_ config: SupplierConfig) {
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

    func refresh() {
        guard !stopped.load(ordering: .acquiring), !loop.onLoop else { return }
        _ = onLoop { [self] in
            publish(force: true)
            return true
        }
    }

    let stopped = Atomic<Bool>(false)

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
    func publish(force: Bool = false) {
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
}
