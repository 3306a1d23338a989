public import Foundation
import Glibc
import KamiWebhookReceiver

/// The load scenarios.
public enum Scenario: String, Sendable, CaseIterable {
    /// One hot SKU, every request a new order of a new user (per-user limit 1), a burst far
    /// larger than the stock.
    case flashSale = "flash-sale"
    /// Many SKUs, requests spread uniformly over them, every request a new order.
    case steady
    /// reserve, then commit (70%), release (20%) or abandon to the hold TTL (10%); kamid only.
    case checkout
    /// flash-sale where clients drop their connections with requests in flight and re-send
    /// the same order ids: an idempotent server hands out each order's code once.
    case retryStorm = "retry-storm"

    /// What one line of the report says about the load.
    func describe(_ options: ScenarioBench.Options) -> String {
        switch self {
        case .flashSale:
            "\(options.requests) requests for \(options.stock) codes (one hot SKU, every request a new order of a new user, "
                + "per-user limit 1)"
        case .steady:
            "\(options.requests) requests over \(options.skus) SKUs holding \(options.stock) codes, every request a new order"
        case .checkout:
            "\(options.requests) requests in reserve/commit pairs (70% commit, 20% release, 10% abandoned to a "
                + "\(options.holdTTLMs) ms hold) on one SKU of \(options.stock) codes"
        case .retryStorm:
            "flash-sale, every \(options.dropEvery)th request the connection is dropped with its requests in flight "
                + "and they are re-sent with the same order ids"
        }
    }
}

/// Runs a scenario against each peer in turn with the same client pattern, and audits each
/// run against the peer's storage.
public struct ScenarioBench: Sendable {
    public struct Options: Sendable {
        public var scenario = Scenario.flashSale
        /// SKUs (steady).
        public var skus = 100
        /// Hold of a checkout reserve, ms (at least 1000).
        public var holdTTLMs: Int64 = 1_000
        /// Retry storm: drop a connection every this many of its requests.
        public var dropEvery = 25
        public var connections = 64
        public var pacing = Pacing.closed(depth: 1)
        /// Codes in stock.
        public var stock = 100_000
        /// Requests in the burst (far more than the stock: most are answered SOLD_OUT).
        public var requests = 300_000
        /// Longest a run may take.
        public var seconds = 60.0
        public var threads = 1
        public var peers: [PeerKind] = PeerKind.allCases
        public var binDirectory = Peers.binDirectory
        /// A kamid config file (`--config`) for the kamid peer, e.g. to set `loop_threads`.
        public var kamidConfig: String?
        /// The rules file of the kamid-risk peer (nil: Config/risk.rules above the binaries).
        public var riskRules: String?
        /// Whether kamid's requests carry risk signals (IP, device, payment account, account
        /// age): on whenever kamid-risk runs, for kamid too, so both see the same bytes.
        public var signals: Bool { peers.contains(.kamidRisk) }

        public init() {}
    }

    /// The peers that can run `scenario`.
    public static func supported(_ scenario: Scenario) -> [PeerKind] {
        switch scenario {
        case .checkout: [.kamid]
        case .retryStorm: [.kamid, .redisLuaAlways, .redisLuaEverysec, .redisLMoveAlways]
        case .flashSale, .steady: PeerKind.allCases.filter { $0 != .kamidRisk && $0 != .kamidWebhooks }
        }
    }

    /// One peer's run.
    public struct PeerResult: Sendable {
        public var peer: PeerKind
        public var result: RunResult
        /// Empty when the audit passed.
        public var problems: [String]
        /// Whether an audit applies (not to echo).
        public var audited: Bool
        /// CPU the server process and the load generator used during the load, nanoseconds.
        public var serverCPUNs: UInt64 = 0
        public var clientCPUNs: UInt64 = 0
        /// What else the run measured (webhook delivery), for the report.
        public var note: String?

        /// Server CPU per reply, microseconds.
        public var serverCPUPerReplyUs: Double {
            result.replies == 0 ? 0 : Double(serverCPUNs) / 1_000 / Double(result.replies)
        }
        /// Server CPU in cores (CPU seconds per second of the run).
        public var serverCores: Double {
            result.elapsedNs == 0 ? 0 : Double(serverCPUNs) / Double(result.elapsedNs)
        }
        public var clientCores: Double {
            result.elapsedNs == 0 ? 0 : Double(clientCPUNs) / Double(result.elapsedNs)
        }
    }

    /// Runs the load against `process`, measuring the CPU both sides used meanwhile.
    private func measured(_ process: PeerProcess, _ load: () throws -> RunResult) rethrows
        -> (RunResult, server: UInt64, client: UInt64)
    {
        let server0 = process.cpuNs, client0 = CPUTime.this()
        let result = try load()
        // A server that died meanwhile has no /proc entry left (0): report 0, not a wrapped value.
        let server1 = process.cpuNs, client1 = CPUTime.this()
        return (result, server1 >= server0 ? server1 - server0 : 0, client1 >= client0 ? client1 - client0 : 0)
    }

    public let options: Options

    public init(options: Options) { self.options = options }

    /// Runs every peer; `progress` hears a line as each starts and ends.
    public func run(progress: (String) -> Void = { _ in }) throws -> [PeerResult] {
        var results: [PeerResult] = []
        for peer in options.peers {
            progress("\(peer.rawValue): starting")
            let result = try runOne(peer)
            progress("\(peer.rawValue): \(Int(result.result.repliesPerSecond)) replies/s, audit "
                + (result.problems.isEmpty ? (result.audited ? "clean" : "n/a") : "FAILED: \(result.problems.first!)"))
            results.append(result)
        }
        return results
    }

    private func plan(port: UInt16) -> RunPlan {
        var plan = RunPlan(port: port, connections: options.connections, pacing: options.pacing,
                           requests: options.requests, seconds: options.seconds, threads: options.threads)
        if options.scenario == .retryStorm { plan.dropEvery = options.dropEvery }
        return plan
    }

    private var skuKeys: [String] {
        options.scenario == .steady ? (0..<max(1, options.skus)).map { "s\($0)" } : ["hot"]
    }

    /// A config for the kamid-risk peer: the kamid config's lines plus `risk_rules`.
    private func riskConfig() throws -> String {
        var rules = options.riskRules
        if rules == nil {
            var folder = URL(fileURLWithPath: options.binDirectory)
            for _ in 0..<6 {
                let candidate = folder.appendingPathComponent("Config/risk.rules").path
                if FileManager.default.fileExists(atPath: candidate) { rules = candidate; break }
                folder = folder.deletingLastPathComponent()
            }
        }
        guard let rules else { throw Driver.DriverError("no rules file for kamid-risk: pass --risk-rules FILE") }
        let base = try options.kamidConfig.map { try String(contentsOfFile: $0, encoding: .utf8) } ?? ""
        let path = PeerProcess.tempDirectory("kamid-risk-config") + ".conf"
        try (base + "\nrisk_rules = \(URL(fileURLWithPath: rules).standardizedFileURL.path)\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Per-user limit of the scenario's SKUs (every order has its own user anyway).
    private var perUserLimit: Int { options.scenario == .steady || options.scenario == .checkout ? 0 : 1 }

    private func runOne(_ peer: PeerKind) throws -> PeerResult {
        switch peer {
        case .kamidWebhooks:
            return try runWithWebhooks()
        case .kamid, .kamidRisk:
            var config = options.kamidConfig
            if peer == .kamidRisk {
                config = try riskConfig()
            }
            let (process, token) = try Peers.startKamid(stock: options.stock, perUserLimit: perUserLimit, skus: skuKeys,
                                                        binDirectory: options.binDirectory, config: config)
            let mode: KamiAdapter.Mode = options.scenario == .checkout
                ? .checkout(sku: "hot", ttlMs: options.holdTTLMs) : .issue(skus: skuKeys)
            var adapter = KamiAdapter(token: token, mode: mode)
            adapter.signals = options.signals
            let (result, serverCPU, clientCPU) = try measured(process) {
                try Driver.run(plan(port: process.port), adapter: adapter)
            }
            if options.scenario == .checkout {
                // Let the abandoned holds expire, so that verify sees kamid at rest.
                usleep(UInt32(options.holdTTLMs + 1_500) * 1_000)
            }
            let (ledger, verify) = try Peers.kamidLedger(process, acknowledged: result.acknowledged, stock: options.stock,
                                                         perUserLimit: perUserLimit)
            var problems = ledger.audit()
            if verify != "clean" { problems.insert("kamid verify: \(verify)", at: 0) }
            problems += common(result)
            try? FileManager.default.removeItem(atPath: process.directory)
            return PeerResult(peer: peer, result: result, problems: problems, audited: true,
                              serverCPUNs: serverCPU, clientCPUNs: clientCPU)
        case .redisLuaAlways, .redisLuaEverysec, .redisLMoveAlways:
            let fsync = peer == .redisLuaEverysec ? "everysec" : "always"
            let lists = skuKeys.map { "codes:\($0)" }
            let (process, sha) = try Peers.startRedis(stock: options.stock, fsync: fsync, lists: lists)
            let lua = peer != .redisLMoveAlways
            let adapter = RedisAdapter(mode: lua ? .lua(sha: sha) : .lmove, lists: lists)
            let (result, serverCPU, clientCPU) = try measured(process) { try Driver.run(plan(port: process.port), adapter: adapter) }
            let ledger = try Peers.redisLedger(process, lua: lua, acknowledged: result.acknowledged, stock: options.stock,
                                               perUserLimit: perUserLimit, lists: lists)
            var problems = ledger.audit()
            problems += common(result)
            try? FileManager.default.removeItem(atPath: process.directory)
            return PeerResult(peer: peer, result: result, problems: problems, audited: true,
                              serverCPUNs: serverCPU, clientCPUNs: clientCPU)
        case .echo:
            let process = try Peers.startEcho(binDirectory: options.binDirectory)
            defer { process.stop() }
            let (result, serverCPU, clientCPU) = try measured(process) {
                try Driver.run(plan(port: process.port), adapter: EchoAdapter())
            }
            return PeerResult(peer: peer, result: result, problems: [], audited: false,
                              serverCPUNs: serverCPU, clientCPUNs: clientCPU)
        }
    }

    /// The webhook signing secret of the kamid-webhooks peer (a bench's, not a shop's).
    static let webhookSecret = "whsec_kami_bench_0123456789abcdef"

    /// kamid with a webhook endpoint at a receiver here that refuses every other request: the
    /// load as for kamid, then the wait until every acknowledged order's event was accepted.
    private func runWithWebhooks() throws -> PeerResult {
        let receiver = try WebhookReceiver(secret: ScenarioBench.webhookSecret, failEvery: 2, nice: true)
        defer { receiver.stop() }
        let base = try options.kamidConfig.map { try String(contentsOfFile: $0, encoding: .utf8) } ?? ""
        let path = PeerProcess.tempDirectory("kamid-webhooks-config")
        try (ScenarioBench.webhookSecret + "\n").write(toFile: path + ".whsec", atomically: true, encoding: .utf8)
        chmod(path + ".whsec", 0o600)
        try (base + "\nwebhook_url.bench = http://127.0.0.1:\(receiver.port)/hooks\nwebhook_secret_file.bench = \(path).whsec\n"
            + "webhook_backoff_ms = 10\nwebhook_backoff_max_ms = 1000\n").write(toFile: path + ".conf", atomically: true, encoding: .utf8)
        defer {
            try? FileManager.default.removeItem(atPath: path + ".conf")
            try? FileManager.default.removeItem(atPath: path + ".whsec")
        }
        let (process, token) = try Peers.startKamid(stock: options.stock, perUserLimit: perUserLimit, skus: skuKeys,
                                                    binDirectory: options.binDirectory, config: path + ".conf")
        var adapter = KamiAdapter(token: token, mode: .issue(skus: skuKeys))
        adapter.signals = options.signals
        let started = Date()
        let (result, serverCPU, clientCPU) = try measured(process) {
            try Driver.run(plan(port: process.port), adapter: adapter)
        }
        let expected = result.acknowledged.count
        let delivered = receiver.wait(seconds: 300) { Set($0.map(\.id)).count >= expected }
        let seconds = Date().timeIntervalSince(started)
        let accepted = receiver.accepted
        let unique = Set(accepted.map(\.id)).count
        let (ledger, verify) = try Peers.kamidLedger(process, acknowledged: result.acknowledged, stock: options.stock,
                                                     perUserLimit: perUserLimit)
        var problems = ledger.audit()
        if verify != "clean" { problems.insert("kamid verify: \(verify)", at: 0) }
        if !delivered { problems.append("webhooks: \(unique) of \(expected) events delivered in 300 s") }
        if receiver.badSignatures > 0 { problems.append("webhooks: \(receiver.badSignatures) bad signatures") }
        let told = Set(accepted.compactMap { $0.body["order"] })
        let untold = result.acknowledged.keys.filter { !told.contains($0) }
        if delivered && !untold.isEmpty { problems.append("webhooks: \(untold.count) acknowledged orders never told, e.g. \(untold[0])") }
        problems += common(result)
        try? FileManager.default.removeItem(atPath: process.directory)
        var peerResult = PeerResult(peer: .kamidWebhooks, result: result, problems: problems, audited: true,
                                    serverCPUNs: serverCPU, clientCPUNs: clientCPU)
        peerResult.note = "webhooks: \(unique) events accepted \(String(format: "%.2f", seconds)) s after the load began "
            + "(\(Int(Double(unique) / max(seconds, 0.001))) events/s; the load took "
            + "\(String(format: "%.2f", Double(result.elapsedNs) / 1e9)) s), \(receiver.requests) POSTs, every other one refused "
            + "with 500 and retried"
        return peerResult
    }

    /// Problems any peer can have: connections the server dropped, retries that got other codes.
    private func common(_ result: RunResult) -> [String] {
        var problems: [String] = []
        if result.droppedConnections > 0 { problems.append("\(result.droppedConnections) connections dropped by the server") }
        for conflict in result.conflicts.prefix(5) { problems.append("a retry got other codes: \(conflict)") }
        return problems
    }
}

/// The comparison table, for stdout and `Benchmarks/results/`.
public enum Report {
    static func ms(_ ns: UInt64) -> String { String(format: "%.3f", Double(ns) / 1e6) }

    /// A Markdown table of every peer, then the ratios of kamid to Redis (Lua, always) and
    /// to the echo ceiling.
    public static func table(_ results: [ScenarioBench.PeerResult]) -> String {
        var out = "| peer | durability | replies | issued | errors | replies/s | issued/s (until sold out) "
            + "| p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | server CPU µs/reply | server cores | client cores | audit |\n"
        out += "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
        for r in results {
            let h = r.result.latency
            let errors = r.result.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            let audit = !r.audited ? "n/a" : (r.problems.isEmpty ? "clean" : "FAILED (\(r.problems.count))")
            out += "| \(r.peer.rawValue) | \(r.peer.durable) | \(r.result.replies) | \(r.result.acknowledged.count) "
                + "| \(errors.isEmpty ? "-" : errors) | \(Int(r.result.repliesPerSecond)) | \(Int(r.result.okPerSecond)) "
                + "| \(ms(h.value(atPercentile: 50))) | \(ms(h.value(atPercentile: 90))) | \(ms(h.value(atPercentile: 99))) "
                + "| \(ms(h.value(atPercentile: 99.9))) | \(ms(h.max)) "
                + "| \(String(format: "%.1f", r.serverCPUPerReplyUs)) | \(String(format: "%.2f", r.serverCores)) "
                + "| \(String(format: "%.2f", r.clientCores)) | \(audit) |\n"
        }
        if let kamid = results.first(where: { $0.peer == .kamid }) {
            out += "\n"
            for (peer, label) in [(PeerKind.redisLuaAlways, "Redis Lua, appendfsync always"),
                                  (.redisLuaEverysec, "Redis Lua, appendfsync everysec"),
                                  (.redisLMoveAlways, "Redis LMOVE, appendfsync always"), (.echo, "the echo ceiling")] {
                guard let other = results.first(where: { $0.peer == peer }), other.result.repliesPerSecond > 0 else { continue }
                let ratio = kamid.result.repliesPerSecond / other.result.repliesPerSecond
                out += "- kamid / \(label): **\(String(format: "%.2f", ratio))x** replies/s"
                if other.peer != .echo, other.result.okPerSecond > 0 {
                    out += ", \(String(format: "%.2f", kamid.result.okPerSecond / other.result.okPerSecond))x issued/s"
                }
                out += "\n"
            }
        }
        return out
    }

    /// CPU model, cores and kernel.
    public static func machine() -> String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "?" } ?? "?"
        var name = utsname()
        uname(&name)
        let kernel = withUnsafeBytes(of: &name.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return "\(cpu), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores, Linux \(kernel)"
    }

    /// The whole report: what ran, on what, and the table.
    public static func document(scenario: String, command: String, options: ScenarioBench.Options,
                                results: [ScenarioBench.PeerResult], date: Date = Date()) -> String {
        var text = "# kami-bench \(scenario), \(ISO8601DateFormatter().string(from: date))\n\n"
        text += "- machine: \(machine())\n"
        text += "- command: `\(command)`\n"
        text += "- load: \(options.connections) connections, \(options.pacing), \(options.threads) client thread(s) "
            + "on the same machine; \(options.scenario.describe(options))\n\n"
        text += table(results)
        let storms = results.filter { $0.result.clientDrops > 0 }
        if !storms.isEmpty {
            text += "\nRetry storm: " + storms.map {
                "\($0.peer.rawValue) \($0.result.clientDrops) drops, \($0.result.resent) requests re-sent, "
                    + "\($0.result.conflicts.count) conflicting replies"
            }.joined(separator: "; ") + "\n"
        }
        for note in results.compactMap(\.note) { text += "\n- \(note)\n" }
        let failed = results.filter { !$0.problems.isEmpty }
        if !failed.isEmpty {
            text += "\nAudit failures:\n"
            for r in failed { for p in r.problems { text += "- \(r.peer.rawValue): \(p)\n" } }
        }
        return text
    }
}
