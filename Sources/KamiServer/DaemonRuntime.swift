import Foundation
import Glibc
import KamiCore
import KamiCrypto
import KamiEngine
import KamiHTTP
import KamiStore
import KamiUpstream
import KamiWebhooks
import KamiRisk
import Synchronization

/// A running kamid: owns the engine, the server and the config in effect, and applies
/// reloads. Reloads (SIGHUP and `kamictl reload`) and token minting are serialised by
/// `lock`; each reload parses and validates the whole new config, and reads every token,
/// before it changes anything.
final class DaemonRuntime: @unchecked Sendable {
    // @unchecked: `running`, `generation`, `lastReload`, `health`, `engine` and `server` are
    // read and written only under `lock` once any other thread exists (`running` is read
    // without it only at the top of `run`, before the first thread starts).
    private let source: Daemon.ConfigSource
    private let lock = NSLock()
    /// The config in effect: live keys as last applied, restart keys as started.
    private var running: DaemonConfig
    private var generation = 1
    private var lastReload = "none"
    private let logger: Logger
    private let notifier: Notifier?
    private var engine: Engine?
    private var server: Server?
    private var upstream: UpstreamService?
    /// Delivers the webhook outbox (always running; with no endpoint it has nothing to do).
    private var webhooks: WebhookDispatcher?
    /// The endpoints in force, secrets read (a reload reports a changed secret).
    private var webhookEndpoints: [WebhookEndpoint] = []
    /// The risk gate: its counters are sized once, here; its rules follow the config.
    private var risk: RiskGate?
    /// Who may see the dashboard; its token follows the config (`dashboard_token_file`).
    private let dashboardGate = DashboardGate(token: nil)

    init(source: Daemon.ConfigSource, config: DaemonConfig) {
        self.source = source
        self.running = config
        self.logger = Logger(level: config.logLevel)
        self.notifier = Notifier.fromEnvironment()
    }

    /// Starts, serves until SIGTERM/SIGINT, stops; returns the exit status.
    func run() -> Int32 {
        let config = running
        // Signals are taken by sigwait on this thread; block them before any thread starts so
        // every thread inherits the mask.
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        notifier?.status("recovering \(config.dataDirectory)")
        let engine: Engine
        let tokens: [String: String]
        do {
            try createDataDirectory(config.dataDirectory)
            let key = try loadOrCreateKey(config)
            tokens = try loadOrCreateTokens(config)
            dashboardGate.setToken(try DaemonRuntime.dashboardToken(config))
            var engineConfig = EngineConfig(directory: config.dataDirectory, sealer: Sealer(key: key))
            engineConfig.durability = config.durability
            engineConfig.commit = CommitSettings(batchMax: config.commitBatchMax, delayUs: config.commitDelayUs)
            let started = monotonicNs()
            engine = try Engine(config: engineConfig)
            engine.setHoldTTL(defaultMs: config.holdTTLDefaultMs, maxMs: config.holdTTLMaxMs)
            engine.setReviewTTL(ms: config.reviewTTLMs)
            logger.log(.notice, "recovered", [
                "data_dir": config.dataDirectory, "durability": config.durability.rawValue,
                "ms": String((monotonicNs() - started) / 1_000_000),
            ])
        } catch {
            logger.log(.error, "startup-failed", ["error": "\(error)"])
            notifier?.status("startup failed: \(error)")
            return 1
        }
        lock.withLock { self.engine = engine }
        // Webhook routes before anything can commit an event: every event from here on gets
        // its outbox rows, and the rows the last run left are delivered.
        let webhooks: WebhookDispatcher
        do {
            let endpoints = try DaemonRuntime.webhookEndpoints(config)
            lock.withLock { webhookEndpoints = endpoints }
            webhooks = WebhookDispatcher(
                engine: engine, endpoints: endpoints,
                settings: DaemonRuntime.webhookSettings(config)
            ) { [logger] event, fields in
                logger.log(event == "webhook-dead" ? .warning : .info, event, pairs: fields.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
            }
        } catch {
            logger.log(.error, "startup-failed", ["error": "\(error)"])
            notifier?.status("startup failed: \(error)")
            engine.close()
            return 1
        }
        webhooks.start()
        lock.withLock { self.webhooks = webhooks }
        // Suppliers before the listeners: orders pending upstream from before a restart are
        // resumed (their open attempts queried) before new orders arrive.
        if !config.suppliers.isEmpty {
            do {
                let service = try startUpstream(config, engine: engine)
                service.onBreakerOpened = { [weak webhooks] supplier in webhooks?.breakerOpened(supplier: supplier) }
                lock.withLock { self.upstream = service }
            } catch {
                logger.log(.error, "startup-failed", ["error": "\(error)"])
                notifier?.status("startup failed: \(error)")
                webhooks.stop()
                engine.close()
                return 1
            }
        }
        var serverConfig = ServerConfig()
        serverConfig.tcp = config.listen
        serverConfig.unixSocket = config.socketPath
        serverConfig.unixSocketMode = mode_t(config.unixSocketMode)
        serverConfig.loopThreads = config.loopThreads
        serverConfig.maxConnections = config.maxConnections
        serverConfig.idleTimeoutMs = config.idleTimeoutMs
        serverConfig.requestTimeoutMs = config.requestTimeoutMs
        serverConfig.shutdownDrainMs = config.shutdownTimeoutMs
        serverConfig.requestBytesMax = config.maxRequestBytes
        serverConfig.tokens = tokens
        serverConfig.notifier = notifier
        let controls = DaemonControls(
            reload: { [self] in reload(trigger: "kamictl") },
            newToken: { [self] client in newToken(client: client) },
            upstream: { [self] in lock.withLock { upstream } })
        let gate: RiskGate
        do {
            gate = RiskGate(limits: DaemonRuntime.riskLimits(config), rules: try DaemonRuntime.riskRules(config))
        } catch {
            logger.log(.error, "startup-failed", ["error": "\(error)"])
            notifier?.status("startup failed: \(error)")
            engine.close()
            return 1
        }
        lock.withLock { self.risk = gate }
        let server = Server(engine: engine, config: serverConfig, logger: logger, controls: controls, risk: gate,
                            lookups: LookupGuard(perMinute: config.riskLookupFailuresPerMinute))
        do { try server.dispatcher.risk.refreshLists() } catch {
            logger.log(.error, "startup-failed", ["error": "\(error)"])
            engine.close()
            return 1
        }
        let holdsCounted = server.dispatcher.risk.rebuildHolds()
        logger.log(.notice, "risk-rules", [
            "file": config.riskRules.map(config.resolve) ?? "none", "rules": String(gate.rules.rules.count),
            "memory_bytes": String(gate.memoryBytes), "holds_counted": String(holdsCounted),
        ])
        // Published before it starts: the first connection (a `kamictl reload` racing the
        // start-up) may call back into `reload` at once, and must find the server.
        lock.withLock { self.server = server }
        do { try server.start() } catch {
            logger.log(.error, "listen-failed", ["error": "\(error)"])
            notifier?.status("listen failed: \(error)")
            lock.withLock { self.server = nil }
            engine.close()
            return 1
        }
        DaemonRuntime.testPauseAfterListen()
        var metricsServer: MetricsServer?
        if let address = config.metricsListen {
            let ready: MetricsServer.Readiness = { [self] in readiness(engine: engine, dataDirectory: config.dataDirectory) }
            let figures = DashboardFigures(server: server, engine: engine, version: Daemon.version, readiness: ready,
                                           upstream: { [self] in lock.withLock { upstream } })
            let dashboard = DashboardEndpoint(gate: dashboardGate, logger: logger, clockMs: { engine.nowMs },
                                              tick: { figures.tick() }, snapshot: { figures.snapshot() })
            let endpoint = MetricsServer(
                address: address, logger: logger, readiness: ready, dashboard: dashboard,
                render: { [self] in
                    server.metrics.render(server: server, engine: engine, version: Daemon.version,
                                          upstream: lock.withLock { upstream })
                })
            do { try endpoint.start() } catch {
                logger.log(.error, "metrics-listen-failed", ["address": "\(address)", "error": "\(error)"])
                notifier?.status("metrics listen failed: \(error)")
                server.stop()
                engine.close()
                return 1
            }
            metricsServer = endpoint
        }
        let tcp = server.boundPorts.map(String.init).joined(separator: ",")
        logger.log(.notice, "ready", [
            "tcp": tcp, "unix": config.socketPath, "metrics": metricsServer.map { String($0.port) } ?? "off",
            "version": Daemon.version,
        ])
        serving.store(true, ordering: .relaxed)
        notifier?.ready(status: lock.withLock { statusLine() })
        let monitor = Thread { [self] in watchHealth(engine: engine, dataDirectory: config.dataDirectory) }
        monitor.name = "kami-health"
        monitor.start()

        while true {
            var received: Int32 = 0
            sigwait(&signals, &received)
            if received == SIGHUP {
                _ = reload(trigger: "SIGHUP")
                continue
            }
            logger.log(.notice, "stopping", ["signal": received == SIGTERM ? "SIGTERM" : "SIGINT",
                                              "connections": String(server.connections)])
            break
        }
        serving.store(false, ordering: .relaxed)
        stopping.store(true, ordering: .relaxed)
        notifier?.stopping(status: "stopping: finishing \(server.connections) connections")
        let deadlineMs = lock.withLock { running.shutdownTimeoutMs } + DaemonRuntime.closeGraceMs
        let watchdog = ShutdownGuard(afterMs: deadlineMs, logger: logger)
        // An import in progress holds the writer thread: cancel it first (it is rolled back
        // and its caller told so), or the drain and the close would wait for all of it.
        engine.cancelJobs()
        server.stop()
        metricsServer?.stop()
        lock.withLock { upstream }?.stop()
        webhooks.stop()
        engine.close()
        watchdog.cancel()
        logger.log(.notice, "stopped")
        return 0
    }

    /// Test hook: `KAMID_TEST_PAUSE_AFTER_LISTEN_MS` holds the start-up between the listeners
    /// opening and READY, so a test can send requests into that window. Unset in production.
    private static func testPauseAfterListen() {
        guard let text = ProcessInfo.processInfo.environment["KAMID_TEST_PAUSE_AFTER_LISTEN_MS"],
              let ms = UInt32(text), ms > 0 else { return }
        usleep(min(ms, 10_000) * 1_000)
    }

    /// Starts the upstream service over `engine`, its callback listener, and resumes the
    /// orders still pending.
    private func startUpstream(_ config: DaemonConfig, engine: Engine) throws -> UpstreamService {
        var settings = UpstreamSettings()
        settings.callbackBase = config.upstreamCallbackURL.flatMap(HTTPURL.init)
        settings.syncMs = config.upstreamSyncMs
        settings.waitMaxMs = config.upstreamWaitMaxMs
        let logger = self.logger
        let service = UpstreamService(engine: engine, suppliers: try DaemonRuntime.endpoints(config), settings: settings) {
            level, event, fields in
            let priority: LogLevel = switch level {
            case "error": .error
            case "warning": .warning
            case "notice": .notice
            default: .info
            }
            logger.log(priority, event, pairs: fields)
        }
        var listen: (host: String, port: UInt16)?
        if case .tcp(let host, let port) = config.upstreamCallbackListen { listen = (host, port) }
        try service.start(callbackListen: listen)
        logger.log(.notice, "upstream-started", [
            "suppliers": config.suppliers.keys.sorted().joined(separator: ","),
            "callbacks": listen.map { "\($0.host):\(service.callbackPort)" } ?? "off",
            "pending": String(engine.upstream.pendingOrders().count),
        ])
        return service
    }

    /// Time allowed after the drain for the database to close before kamid exits anyway.
    static let closeGraceMs: Int64 = 20_000

    // MARK: Reload

    /// Reads the config again and applies what can change live. Never leaves a half-applied
    /// config: everything is parsed, validated and read first.
    func reload(trigger: String) -> Result<ReloadReport, KamiError> {
        lock.lock()
        defer { lock.unlock() }
        let started = monotonicNs()
        notifier?.reloading(status: "reloading (\(trigger))")
        let result = prepareAndApply()
        let durationUs = Int64((monotonicNs() - started) / 1_000)
        if case .success = result { server?.metrics.recordReload(applied: true) } else {
            server?.metrics.recordReload(applied: false)
        }
        switch result {
        case .success(let (applied, restart)):
            if !applied.isEmpty { generation += 1 }
            lastReload = "applied" + (restart.isEmpty ? "" : ", restart needed for \(restart.joined(separator: ","))")
            logger.log(.notice, "reload-applied", [
                "trigger": trigger, "applied": applied.joined(separator: ","),
                "restart_required": restart.joined(separator: ","), "generation": String(generation),
                "us": String(durationUs),
            ])
            notifier?.ready(status: statusLine())
            return .success(ReloadReport(applied: applied, restartRequired: restart, durationUs: durationUs))
        case .failure(let error):
            lastReload = "rejected: \(error.message); running on the previous config"
            logger.log(.error, "reload-rejected", ["trigger": trigger, "error": error.message, "us": String(durationUs)])
            notifier?.ready(status: statusLine())
            return .failure(KamiError(error.code, "config rejected, still running on the previous one: \(error.message)"))
        }
    }

    /// Under `lock`: builds the new config and tokens, then applies them.
    private func prepareAndApply() -> Result<([String], [String]), KamiError> {
        let loaded: DaemonConfig
        do { loaded = try source.load() } catch { return .failure(KamiError(.badRequest, error.description)) }
        // Restart-only keys keep their running values (data_dir above all: token_dir and the
        // token files resolve against the directory kamid runs on, not one it will use later).
        let next = loaded.keepingRestartKeys(of: running)
        let tokens: [String: String]
        do { tokens = try TokenStore.load(next) } catch { return .failure(error) }
        let dashboardToken: String?
        do { dashboardToken = try DaemonRuntime.dashboardToken(next) } catch { return .failure(error) }
        guard let engine, let server else { return .failure(KamiError(.unavailable, "kamid is still starting")) }
        // The rules file is read and checked before anything changes: a bad one keeps the old rules.
        let rules: RiskRules
        do { rules = try DaemonRuntime.riskRules(next) } catch { return .failure(KamiError(.badRequest, error.description)) }

        let old = running
        var applied = DaemonRuntime.changedKeys(old, next)
        let restart = DaemonRuntime.changedKeys(old, loaded).filter { DaemonConfig.restartKeys.contains($0) }
        if tokens != server.authenticator.currentTokens { applied.append("tokens") }

        // Webhook secrets are read before anything changes: a bad file keeps the old config whole.
        let hookEndpoints: [WebhookEndpoint]
        do { hookEndpoints = try DaemonRuntime.webhookEndpoints(next) } catch { return .failure(error) }
        if !next.suppliers.isEmpty || upstream != nil {
            let endpoints: [SupplierEndpoint]
            do { endpoints = try DaemonRuntime.endpoints(next) } catch { return .failure(KamiError(.badRequest, error.description)) }
            if let upstream {
                upstream.reload(endpoints)
            } else if !endpoints.isEmpty {
                return .failure(KamiError(.badRequest, "suppliers were added: restart kamid to start the upstream service"))
            }
        }
        if old.suppliers != next.suppliers { applied.append("suppliers") }
        let secrets = { (list: [WebhookEndpoint]) in Dictionary(list.map { ($0.name, $0.secret) }, uniquingKeysWith: { $1 }) }
        if secrets(hookEndpoints) != secrets(webhookEndpoints) { applied.append("webhook_secrets") }
        webhookEndpoints = hookEndpoints
        webhooks?.reload(endpoints: hookEndpoints, settings: DaemonRuntime.webhookSettings(next))
        if let risk, rules != risk.rules {
            risk.load(rules)
            applied.append("risk_rules")
        }
        dashboardGate.setToken(dashboardToken)
        logger.setLevel(next.logLevel)
        engine.setHoldTTL(defaultMs: next.holdTTLDefaultMs, maxMs: next.holdTTLMaxMs)
        engine.setReviewTTL(ms: next.reviewTTLMs)
        engine.storage.writer.setSettings(CommitSettings(batchMax: next.commitBatchMax, delayUs: next.commitDelayUs))
        server.apply(Server.LiveSettings(
            maxConnections: next.maxConnections, idleTimeoutMs: next.idleTimeoutMs,
            requestTimeoutMs: next.requestTimeoutMs, shutdownDrainMs: next.shutdownTimeoutMs, requestBytesMax: next.maxRequestBytes, tokens: tokens))
        // Restart keys kept their running values, so each reload reports them until restarted.
        running = next
        return .success((applied, restart))
    }

    // MARK: Readiness

    /// Set once listening, cleared when stopping.
    private let serving = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    /// The last readiness the health thread saw: nil while ready, else why not.
    private var health: String?

    /// How often the health thread looks at readiness.
    static let healthCheckMs: UInt32 = 1_000

    /// Watches readiness once a second; when it changes, logs it and tells systemd through
    /// `STATUS=` (a full disk, a failing commit, and their end).
    private func watchHealth(engine: Engine, dataDirectory: String) {
        while !stopping.load(ordering: .relaxed) {
            usleep(DaemonRuntime.healthCheckMs * 1_000)
            if stopping.load(ordering: .relaxed) { break }
            let (ready, reason) = readiness(engine: engine, dataDirectory: dataDirectory)
            let changed: Bool = lock.withLock {
                let now: String? = ready ? nil : reason
                defer { health = now }
                return now != health
            }
            guard changed else { continue }
            if ready {
                logger.log(.notice, "ready-again")
            } else {
                logger.log(.warning, "not-ready", ["reason": reason])
            }
            notifier?.status(lock.withLock { statusLine() })
        }
    }

    /// Free bytes below which the data directory's disk is reported not ready: room for a
    /// few checkpoints of a busy WAL.
    static let diskFreeBytesMin: UInt64 = 64 << 20

    /// `/readyz`: recovered and listening, not stopping, the last commit did not fail on
    /// the disk, and the disk has room.
    private func readiness(engine: Engine, dataDirectory: String) -> (ready: Bool, reason: String) {
        guard serving.load(ordering: .relaxed) else { return (false, "not serving (starting or stopping)") }
        if engine.storage.writer.diskFailing { return (false, "the last commit failed on the disk") }
        var info = statvfs()
        guard statvfs(dataDirectory, &info) == 0 else {
            return (false, "cannot statvfs \(dataDirectory): \(String(cString: strerror(errno)))")
        }
        let free = UInt64(info.f_bavail) * UInt64(info.f_frsize)
        if free < DaemonRuntime.diskFreeBytesMin {
            return (false, "only \(free >> 20) MiB free on the disk of \(dataDirectory)")
        }
        return (true, "ready")
    }

    // MARK: Tokens

    func newToken(client: String) -> Result<NewToken, KamiError> {
        lock.lock()
        defer { lock.unlock() }
        guard let server else { return .failure(KamiError(.unavailable, "kamid is still starting")) }
        if running.tokenFiles[client] != nil {
            return .failure(KamiError(.conflict,
                "client \(client)'s token comes from token_file.\(client) in the config; replace that file and reload"))
        }
        do throws(KamiError) {
            var tokens = server.authenticator.currentTokens
            let replaced = tokens[client] != nil
            let (token, path) = try TokenStore.mint(client: client, config: running)
            tokens[client] = token
            server.authenticator.setTokens(tokens)
            logger.log(.notice, "token-created", ["client": Logger.untrusted(client), "path": path, "replaced": String(replaced)])
            return .success(NewToken(client: client, token: Secret(token), path: path, replaced: replaced))
        } catch {
            return .failure(error)
        }
    }

    // MARK: Start-up

    private func statusLine() -> String {
        guard let server else { return "starting" }
        let ports = server.boundPorts.map(String.init).joined(separator: ",")
        return "serving tcp=\(ports.isEmpty ? "off" : ports) connections=\(server.connections) "
            + "health=\(health.map { "NOT READY: \($0)" } ?? "ready") "
            + "config_generation=\(generation) last_reload=\(lastReload)"
    }

    private func createDataDirectory(_ path: String) throws(KamiError) {
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw KamiError(.unavailable, "cannot create data_dir \(path): \((error as NSError).localizedDescription)")
        }
    }

    /// Loads the master key; generates it only at the default place and only for a new
    /// database (a missing key next to existing data must be restored, not replaced).
    private func loadOrCreateKey(_ config: DaemonConfig) throws -> MasterKey {
        let path = config.keyPath
        guard !FileManager.default.fileExists(atPath: path) else { return try MasterKey.load(path: path) }
        let database = config.dataDirectory + "/" + Store.fileName
        guard !FileManager.default.fileExists(atPath: database) else {
            throw KamiError(.unavailable, "master key \(path) is missing but the database \(database) exists: "
                + "restore the key from its backup (a new key could not read any code)")
        }
        guard config.masterKeyFile == DaemonConfig().masterKeyFile else {
            throw KamiError(.unavailable, "master_key_file \(path) does not exist")
        }
        let key = try MasterKey.generate(path: path)
        logger.log(.notice, "master-key-created", ["path": path, "note": "back this file up: without it no code can be read"])
        return key
    }

    /// Loads every token; on a first start with no client anywhere, makes `default`'s.
    private func loadOrCreateTokens(_ config: DaemonConfig) throws(KamiError) -> [String: String] {
        let tokens = try TokenStore.load(config)
        if !tokens.isEmpty { return tokens }
        let (token, path) = try TokenStore.mint(client: "default", config: config)
        logger.log(.notice, "token-created", ["client": "default", "path": path])
        return ["default": token]
    }
}

/// Ends the process if a graceful stop hangs past its bound (a disk that never returns from
/// fsync): better a logged exit than a stop that never finishes.
final class ShutdownGuard: Sendable {
    private let cancelled = Atomic<Bool>(false)

    init(afterMs: Int64, logger: Logger) {
        let thread = Thread { [self] in
            let deadline = monotonicNs() + UInt64(afterMs) * 1_000_000
            while monotonicNs() < deadline {
                if cancelled.load(ordering: .relaxed) { return }
                usleep(50_000)
            }
            if cancelled.load(ordering: .relaxed) { return }
            logger.log(.error, "stop-timeout", ["ms": String(afterMs)])
            _exit(1)
        }
        thread.name = "kami-stop-guard"
        thread.start()
    }

    func cancel() { cancelled.store(true, ordering: .relaxed) }
}
