
public import Glibc
public import KamiCore
public import KamiEngine
import KamiProtocol
public import KamiStore
import Synchronization
public import KamiRisk

/// Everything `kamid` needs to listen.
public struct ServerConfig: Sendable {
    public var tcp: [ListenAddress] = [.tcp(host: "127.0.0.1", port: 7420)]
    /// The Unix socket (operator operations, and storefronts on the same host).
    public var unixSocket: String?
    /// Mode of the Unix socket file.
    public var unixSocketMode: mode_t = 0o660
    /// Event loop threads; 0 means one per core.
    public var loopThreads = 0
    public var maxConnections = 10_000
    public var idleTimeoutMs: Int64 = 300_000
    /// Longest a request may take to arrive once its first byte did.
    public var requestTimeoutMs: Int64 = 10_000
    /// Longest a SIGTERM waits for replies in flight before closing anyway.
    public var shutdownDrainMs: Int64 = 10_000
    /// client → token.
    public var tokens: [String: String] = [:]
    public var listenBacklog: Int32 = 1024
    /// Largest request frame or JSON line (`max_request_bytes`).
    public var requestBytesMax = ProtocolLimits.frameBytesMax
    /// Where to send systemd notifications; its watchdog interval makes loop 0 ping.
    public var notifier: Notifier?

    public init() {}
}

/// The network server: event loops over the engine.
///
/// State machine: `created` → `running` (`start`) → `stopping` (`stop`: no new connections,
/// replies in flight finish) → `stopped` (terminal).
public final class Server: @unchecked Sendable {
    // @unchecked: `loops` is written once in `start` before any loop thread runs, then read-only.
    let dispatcher: Dispatcher
    let authenticator: Authenticator
    let logger: Logger
    let clock: any Clock
    private let config: ServerConfig
    private let maxConnections: Atomic<Int>
    private let idleTimeout: Atomic<Int64>
    private let requestTimeout: Atomic<Int64>
    private let shutdownDrain: Atomic<Int64>
    private let requestLimit: Atomic<Int>
    let notifier: Notifier?
    /// Counters for `/metrics`.
    public let metrics = Metrics()
    private var loops: [EventLoop] = []
    private let connectionCount = Atomic<Int>(0)
    private let connectionIDs = Atomic<UInt64>(1)
    private let drainDeadlineMs = Atomic<Int64>(Int64.max)
    /// TCP ports actually bound (useful with port 0), in `config.tcp` order.
    public private(set) var boundPorts: [UInt16] = []

    /// Makes a server over `engine`; nothing listens until `start`.
    public init(
        engine: Engine, config: ServerConfig, logger: Logger, clock: any Clock = SystemClock(),
        controls: DaemonControls = .unavailable, risk: RiskGate = RiskGate(), lookups: LookupGuard = LookupGuard(perMinute: 30)
    ) {
        ServerLimits.check()
        self.dispatcher = Dispatcher(engine: engine, controls: controls,
                                     risk: RiskDesk(engine: engine, gate: risk, lookups: lookups, logger: logger))
        self.authenticator = Authenticator(tokens: config.tokens)
        self.logger = logger
        self.clock = clock
        self.config = config
        self.maxConnections = Atomic(config.maxConnections)
        self.idleTimeout = Atomic(config.idleTimeoutMs)
        self.requestTimeout = Atomic(config.requestTimeoutMs)
        self.shutdownDrain = Atomic(config.shutdownDrainMs)
        self.requestLimit = Atomic(min(config.requestBytesMax, ProtocolLimits.frameBytesMax))
        self.notifier = config.notifier
    }

    /// The settings a reload may change while connections stay open.
    public struct LiveSettings: Sendable, Equatable {
        public var maxConnections: Int
        public var idleTimeoutMs: Int64
        public var requestTimeoutMs: Int64
        public var shutdownDrainMs: Int64
        public var requestBytesMax: Int
        public var tokens: [String: String]

        public init(maxConnections: Int, idleTimeoutMs: Int64, requestTimeoutMs: Int64, shutdownDrainMs: Int64,
                    requestBytesMax: Int, tokens: [String: String]) {
            self.maxConnections = maxConnections
            self.idleTimeoutMs = idleTimeoutMs
            self.requestTimeoutMs = requestTimeoutMs
            self.shutdownDrainMs = shutdownDrainMs
            self.requestBytesMax = requestBytesMax
            self.tokens = tokens
        }
    }

    /// Applies new live settings: each takes effect for the next request or check (open
    /// connections stay; a lower connection limit refuses new ones only).
    public func apply(_ live: LiveSettings) {
        maxConnections.store(live.maxConnections, ordering: .relaxed)
        idleTimeout.store(live.idleTimeoutMs, ordering: .relaxed)
        requestTimeout.store(live.requestTimeoutMs, ordering: .relaxed)
        shutdownDrain.store(live.shutdownDrainMs, ordering: .relaxed)
        requestLimit.store(min(live.requestBytesMax, ProtocolLimits.frameBytesMax), ordering: .relaxed)
        authenticator.setTokens(live.tokens)
    }

    var idleTimeoutMs: Int64 { idleTimeout.load(ordering: .relaxed) }
    var requestTimeoutMs: Int64 { requestTimeout.load(ordering: .relaxed) }
    var requestBytesMax: Int { requestLimit.load(ordering: .relaxed) }

    /// Loops when `loop_threads = 0`: one per core but one, which the commit writer (busy
    /// with every issue) needs; at least one, at most what the config allows (64). On the
    /// 2-core benchmark machine 1 loop served the flash sale 4–17% faster than 2
    /// (Benchmarks/README.md).
    public static func defaultLoopThreads(cores: Int) -> Int {
        min(DaemonConfig.Range.loopThreads.upperBound, max(1, cores - 1))
    }

    /// Opens the listeners and starts the loop threads.
    public func start() throws(SystemError) {
        // A peer that vanishes mid-write must cost an EPIPE, not the process.
        signal(SIGPIPE, SIG_IGN)
        let count = config.loopThreads > 0
            ? config.loopThreads : Server.defaultLoopThreads(cores: sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        for index in 0..<count { loops.append(try EventLoop(index: index, server: self)) }
        var ports: [UInt16] = []
        for address in config.tcp {
            var port: UInt16?
            for loop in loops {
                // With port 0 the first socket picks a port and the others join it.
                var bound = address
                if case .tcp(let host, let configured) = address, configured == 0, let chosen = port {
                    bound = .tcp(host: host, port: chosen)
                }
                let fd = try Sockets.listen(bound, backlog: config.listenBacklog)
                if port == nil { port = Sockets.boundPort(fd) }
                try loop.addListener(fd: fd, kind: .tcp)
            }
            ports.append(port ?? 0)
            logger.log(.notice, "listening", ["address": "\(address)", "port": String(port ?? 0)])
        }
        boundPorts = ports
        if let path = config.unixSocket {
            let fd = try Sockets.listen(.unix(path: path), backlog: config.listenBacklog, unixMode: config.unixSocketMode)
            try loops[0].addListener(fd: fd, kind: .unix)
            logger.log(.notice, "listening", ["address": "unix:\(path)"])
        }
        for loop in loops { loop.start() }
    }

    // MARK: Watchdog

    /// The systemd watchdog is fed by loop 0 only while every loop has come round recently,
    /// so a loop stuck in a handler (or in a system call) stops the pings and systemd
    /// restarts kamid.
    var watchdogIntervalMs: Int64? { notifier?.watchdogIntervalMs }

    /// Called by loop 0 on each pass; pings when due and every loop is alive.
    func feedWatchdog(nowMs: Int64) {
        guard let notifier, let interval = notifier.watchdogIntervalMs else { return }
        guard nowMs >= nextWatchdogMs else { return }
        nextWatchdogMs = nowMs + interval
        let stale = loops.filter { nowMs - $0.heartbeatMs > interval }
        if stale.isEmpty {
            notifier.watchdog()
            watchdogWarned = false
        } else if !watchdogWarned {
            watchdogWarned = true
            logger.log(.error, "watchdog-withheld", [
                "stuck_loops": stale.map { String($0.index) }.joined(separator: ","),
                "since_ms": String(nowMs - (stale.map(\.heartbeatMs).min() ?? nowMs)),
            ])
        }
    }

    /// Touched only by loop 0's thread.
    private var nextWatchdogMs: Int64 = 0
    private var watchdogWarned = false

    /// For tests: blocks loop `index`'s thread for `ms`, as a handler stuck in a system call
    /// would.
    func stallLoop(_ index: Int, forMs ms: Int64) { loops[index].stall(forMs: ms) }

    /// Stops accepting, lets replies in flight finish (at most `shutdownDrainMs`), closes every
    /// connection and waits for the loop threads.
    public func stop() {
        drainDeadlineMs.store(clock.nowMs() + shutdownDrain.load(ordering: .relaxed), ordering: .relaxed)
        for loop in loops { loop.stop() }
        for loop in loops { loop.join() }
        if let path = config.unixSocket { unlink(path) }
    }

    var drainExpired: Bool { clock.nowMs() > drainDeadlineMs.load(ordering: .relaxed) }

    func admitConnection() -> Bool {
        let now = connectionCount.wrappingAdd(1, ordering: .relaxed).newValue
        if now > maxConnections.load(ordering: .relaxed) {
            connectionCount.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func releaseConnection() { connectionCount.wrappingSubtract(1, ordering: .relaxed) }

    func nextConnectionID() -> UInt64 { connectionIDs.wrappingAdd(1, ordering: .relaxed).oldValue }

    /// Open connections now.
    public var connections: Int { connectionCount.load(ordering: .relaxed) }
}
