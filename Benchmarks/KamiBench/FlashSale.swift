public import Foundation
import Glibc

/// The flash-sale scenario: one hot SKU, every request a new order of a new user (per-user
/// limit 1), a burst of requests far larger than the stock. Run against each peer in turn
/// with the same client pattern, audited after each run.
public struct FlashSale: Sendable {
    public struct Options: Sendable {
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

        public init() {}
    }

    /// One peer's run.
    public struct PeerResult: Sendable {
        public var peer: PeerKind
        public var result: RunResult
        /// Empty when the audit passed.
        public var problems: [String]
        /// Whether an audit applies (not to echo).
        public var audited: Bool
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
        RunPlan(port: port, connections: options.connections, pacing: options.pacing, requests: options.requests,
                seconds: options.seconds, threads: options.threads)
    }

    private func runOne(_ peer: PeerKind) throws -> PeerResult {
        switch peer {
        case .kamid:
            let (process, token) = try Peers.startKamid(stock: options.stock, perUserLimit: 1, binDirectory: options.binDirectory)
            let result = try Driver.run(plan(port: process.port), adapter: KamiAdapter(token: token, sku: "hot"))
            let (ledger, verify) = try Peers.kamidLedger(process, acknowledged: result.acknowledged, stock: options.stock,
                                                         perUserLimit: 1)
            var problems = ledger.audit()
            if verify != "clean" { problems.insert("kamid verify: \(verify)", at: 0) }
            if result.droppedConnections > 0 { problems.append("\(result.droppedConnections) connections dropped") }
            try? FileManager.default.removeItem(atPath: process.directory)
            return PeerResult(peer: peer, result: result, problems: problems, audited: true)
        case .redisLuaAlways, .redisLuaEverysec, .redisLMoveAlways:
            let fsync = peer == .redisLuaEverysec ? "everysec" : "always"
            let (process, sha) = try Peers.startRedis(stock: options.stock, fsync: fsync)
            let lua = peer != .redisLMoveAlways
            let adapter = RedisAdapter(mode: lua ? .lua(sha: sha) : .lmove)
            let result = try Driver.run(plan(port: process.port), adapter: adapter)
            let ledger = try Peers.redisLedger(process, lua: lua, acknowledged: result.acknowledged, stock: options.stock,
                                               perUserLimit: 1)
            var problems = ledger.audit()
            if result.droppedConnections > 0 { problems.append("\(result.droppedConnections) connections dropped") }
            try? FileManager.default.removeItem(atPath: process.directory)
            return PeerResult(peer: peer, result: result, problems: problems, audited: true)
        case .echo:
            let process = try Peers.startEcho(binDirectory: options.binDirectory)
            defer { process.stop() }
            let result = try Driver.run(plan(port: process.port), adapter: EchoAdapter())
            return PeerResult(peer: peer, result: result, problems: [], audited: false)
        }
    }
}

/// The comparison table, for stdout and `Benchmarks/results/`.
public enum Report {
    static func ms(_ ns: UInt64) -> String { String(format: "%.3f", Double(ns) / 1e6) }

    /// A Markdown table of every peer, then the ratios of kamid to Redis (Lua, always) and
    /// to the echo ceiling.
    public static func table(_ results: [FlashSale.PeerResult]) -> String {
        var out = "| peer | durability | replies | issued | errors | replies/s | issued/s (until sold out) "
            + "| p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | audit |\n"
        out += "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
        for r in results {
            let h = r.result.latency
            let errors = r.result.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            let audit = !r.audited ? "n/a" : (r.problems.isEmpty ? "clean" : "FAILED (\(r.problems.count))")
            out += "| \(r.peer.rawValue) | \(r.peer.durable) | \(r.result.replies) | \(r.result.acknowledged.count) "
                + "| \(errors.isEmpty ? "-" : errors) | \(Int(r.result.repliesPerSecond)) | \(Int(r.result.okPerSecond)) "
                + "| \(ms(h.value(atPercentile: 50))) | \(ms(h.value(atPercentile: 90))) | \(ms(h.value(atPercentile: 99))) "
                + "| \(ms(h.value(atPercentile: 99.9))) | \(ms(h.max)) | \(audit) |\n"
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
    public static func document(scenario: String, command: String, options: FlashSale.Options,
                                results: [FlashSale.PeerResult], date: Date = Date()) -> String {
        var text = "# kami-bench \(scenario), \(ISO8601DateFormatter().string(from: date))\n\n"
        text += "- machine: \(machine())\n"
        text += "- command: `\(command)`\n"
        text += "- load: \(options.connections) connections, \(options.pacing), \(options.threads) client thread(s) "
            + "on the same machine; \(options.requests) requests for \(options.stock) codes (one hot SKU, "
            + "every request a new order of a new user, per-user limit 1)\n\n"
        text += table(results)
        let failed = results.filter { !$0.problems.isEmpty }
        if !failed.isEmpty {
            text += "\nAudit failures:\n"
            for r in failed { for p in r.problems { text += "- \(r.peer.rawValue): \(p)\n" } }
        }
        return text
    }
}
