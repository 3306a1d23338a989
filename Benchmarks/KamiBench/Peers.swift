import CKamiLinux
import Foundation
import Glibc
import KamiCore
import KamiStore

/// A server process the harness started for one run, on a loopback port in a temp dir.
public final class PeerProcess: @unchecked Sendable {
    // @unchecked: set up in `start`, then read-only; the log is guarded by `lock`.
    public let name: String
    let process = Process()
    /// The process id (for /proc readings).
    public var pid: Int32 { process.processIdentifier }
    public let directory: String
    public private(set) var port: UInt16 = 0
    private let lock = NSLock()
    private var logText = ""

    init(name: String, directory: String) {
        self.name = name
        self.directory = directory
    }

    /// Starts `executable` and waits (up to 60 s) until `ready(log)` returns a port.
    func start(_ executable: String, _ arguments: [String], stdout: Bool = false,
               ready: (String) -> UInt16?) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        if stdout { process.standardOutput = pipe } else { process.standardError = pipe; process.standardOutput = FileHandle.nullDevice }
        try process.run()
        let handle = pipe.fileHandleForReading
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            logText += String(decoding: chunk, as: UTF8.self)
            if let found = ready(logText) {
                port = found
                break
            }
        }
        guard port != 0 else {
            process.terminate()
            throw Driver.DriverError("\(name) did not start: \(logText.suffix(2_000))")
        }
        handle.readabilityHandler = { [weak self] h in
            let data = h.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { self.logText += String(decoding: data, as: UTF8.self) }
        }
    }

    public var log: String { lock.withLock { logText } }

    /// CPU time the process (all its threads) has used so far, nanoseconds.
    public var cpuNs: UInt64 { CPUTime.process(process.processIdentifier) }

    /// SIGTERM and wait; the exit status.
    @discardableResult
    public func stop() -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// A fresh temp directory.
    public static func tempDirectory(_ tag: String) -> String {
        let path = NSTemporaryDirectory() + "kami-bench-\(tag)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func firstPort(in log: String, after key: String) -> UInt16? {
        guard let range = log.range(of: key) else { return nil }
        return UInt16(log[range.upperBound...].prefix { $0.isNumber })
    }
}

/// CPU time from /proc and getrusage, to put a CPU cost on each request.
public enum CPUTime {
    /// utime + stime of process `pid` (all threads), nanoseconds (clock-tick resolution).
    public static func process(_ pid: Int32) -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return 0 }
        // After "(comm)": field 3 is the state, so utime (14) and stime (15) are at 11 and 12.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return 0 }
        let ticks = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        return (user + system) * 1_000_000_000 / ticks
    }

    /// CPU time of this process (the load generator), nanoseconds.
    public static func this() -> UInt64 {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func ns(_ t: timeval) -> UInt64 { UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_usec) * 1_000 }
        return ns(usage.ru_utime) + ns(usage.ru_stime)
    }
}

/// A blocking RESP client for setup and the audit (not for the measured load).
public final class RedisClient {
    let fd: Int32
    private var buffer: [UInt8] = []

    public init(port: UInt16) throws {
        fd = try Driver.connect(port: port)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
    }

    deinit { close(fd) }

    /// Sends commands in one write and reads their replies.
    public func pipeline(_ commands: [[String]]) throws -> [RESP.Value] {
        var out: [UInt8] = []
        for command in commands { RESP.command(command, into: &out) }
        var offset = 0
        while offset < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Driver.DriverError("redis send failed: errno \(errno)") }
            offset += n
        }
        var values: [RESP.Value] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while values.count < commands.count {
            if let (value, consumed) = try buffer.withUnsafeBytes({ try RESP.parse($0) }) {
                buffer.removeFirst(consumed)
                values.append(value)
                continue
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw Driver.DriverError("redis closed the connection") }
            buffer += chunk[0..<n]
        }
        return values
    }

    public func call(_ command: String...) throws -> RESP.Value { try pipeline([command])[0] }
}

/// Which peer a run measures.
public enum PeerKind: String, Sendable, CaseIterable {
    case kamid
    /// kamid with the risk gate on: `risk_rules` names a rules file (Config/risk.rules unless
    /// `--risk-rules`). Compare it with `kamid` in one run: both send the same signals.
    case kamidRisk = "kamid-risk"
    /// kamid with a webhook endpoint: every delivered order is an event POSTed, signed, to a
    /// receiver in kami-bench that refuses every other request (retried). Compare with `kamid`.
    case kamidWebhooks = "kamid-webhooks"
    case redisLuaAlways = "redis-lua-always"
    case redisLuaEverysec = "redis-lua-everysec"
    case redisLMoveAlways = "redis-lmove-always"
    case echo

    public var durable: String {
        switch self {
        case .kamid: "fsync before reply (durability full)"
        case .kamidRisk: "fsync before reply (durability full), risk rules on"
        case .kamidWebhooks: "fsync before reply (durability full), a signed webhook per order, receiver failing half"
        case .redisLuaAlways, .redisLMoveAlways: "fsync before reply (appendfsync always)"
        case .redisLuaEverysec: "up to 1 s of replies lost on power loss (appendfsync everysec)"
        case .echo: "none (no storage)"
        }
    }
}

/// Starts peers, loads their stock, and reads their ledger back after a run.
public enum Peers {
    /// The directory of the running executable (kamid and kami-echo are built next to it).
    public static var binDirectory: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().path
    }

    /// kamid with durability full on a temp data dir, one hot SKU of `stock` codes with a
    /// per-user limit; returns the process and the adapter's token.
    public static func startKamid(stock: Int, perUserLimit: Int, skus: [String] = ["hot"],
                                  binDirectory: String = binDirectory, config: String? = nil)
        throws -> (PeerProcess, token: String)
    {
        let directory = PeerProcess.tempDirectory("kamid")
        let peer = PeerProcess(name: "kamid", directory: directory)
        try peer.start(binDirectory + "/kamid", (config.map { ["--config", $0] } ?? []) + [
            "--data-dir", directory + "/data", "--listen", "127.0.0.1:0", "--durability", "full", "--metrics-listen", "off",
        ]) { log in log.contains(">ready") ? PeerProcess.firstPort(in: log, after: "ready tcp=") : nil }
        let token = try String(contentsOfFile: directory + "/data/default.token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let socket = directory + "/data/kamid.sock"
        var next = 0
        for (index, sku) in skus.enumerated() {
            let share = stock / skus.count + (index < stock % skus.count ? 1 : 0)
            let csv = directory + "/codes-\(index).csv"
            var text = "secret\n"
            text.reserveCapacity(share * 24)
            for _ in 0..<share {
                text += "CODE-\(next)-\(String(next &* 2_654_435_761 % 999_983, radix: 36))\n"
                next += 1
            }
            try text.write(toFile: csv, atomically: true, encoding: .utf8)
            for line in [#"{"id":1,"op":"sku_set","sku":"\#(sku)","name":"Bench","per_user_limit":\#(perUserLimit)}"#,
                         #"{"id":2,"op":"import","sku":"\#(sku)","path":"\#(csv)"}"#] {
                let reply = try operatorCall(socket: socket, line)
                guard reply.contains("\"ok\":true") else { throw Driver.DriverError("kamid setup failed: \(reply)") }
            }
        }
        return (peer, token)
    }

    /// One JSON line over kamid's Unix socket; the reply line.
    public static func operatorCall(socket path: String, _ line: String) throws -> String {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw Driver.DriverError("cannot connect to \(path)") }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while !reply.contains(10) {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            reply += chunk[0..<n]
        }
        return String(decoding: reply, as: UTF8.self)
    }

    /// kamid's side of the ledger: `verify` through kamid, then (after it stopped) every
    /// order and the stock from its database.
    public static func kamidLedger(_ peer: PeerProcess, acknowledged: [String: [String]], stock: Int, perUserLimit: Int)
        throws -> (Ledger, verify: String)
    {
        let verify = try operatorCall(socket: peer.directory + "/data/kamid.sock", #"{"id":1,"op":"verify"}"#)
        let status = peer.stop()
        guard status == 0 else { throw Driver.DriverError("kamid exited \(status) on SIGTERM") }
        let store = try Store(directory: peer.directory + "/data")
        defer { store.close() }
        let snapshot = try store.loadSnapshot()
        let counts = try store.stateCounts()
        var ledger = Ledger()
        ledger.acknowledged = acknowledged
        ledger.stock = stock
        ledger.perUserLimit = perUserLimit
        ledger.available = counts.states.values.reduce(0) { $0 + $1[0] }
        ledger.held = counts.states.values.reduce(0) { $0 + $1[1] }
        for order in snapshot.orders {
            ledger.stored[order.orderID] = Ledger.StoredOrder(
                user: order.user, committed: order.state == .committed, codes: order.codes.map { String($0.codeID) })
        }
        ledger.loaded = Set((1...max(1, stock)).map(String.init))
        return (ledger, verify.contains("\"clean\":true") ? "clean" : verify)
    }

    /// redis-server with AOF (`appendfsync` always or everysec), the stock in list `codes`,
    /// the script loaded; returns the process and the script's sha.
    public static func startRedis(stock: Int, fsync: String, lists: [String] = ["codes"]) throws -> (PeerProcess, sha: String) {
        let directory = PeerProcess.tempDirectory("redis")
        let peer = PeerProcess(name: "redis", directory: directory)
        let port = try freePort()
        try peer.start("/usr/bin/redis-server", [
            "--port", String(port), "--bind", "127.0.0.1", "--dir", directory, "--appendonly", "yes",
            "--appendfsync", fsync, "--save", "", "--daemonize", "no", "--protected-mode", "yes",
            "--io-threads", "1", "--loglevel", "notice",
        ], stdout: true) { log in log.contains("Ready to accept connections") ? port : nil }
        let client = try RedisClient(port: port)
        var batch: [[String]] = []
        for n in 0..<stock {
            batch.append(["RPUSH", lists[n % lists.count], "CODE-\(n)"])
            if batch.count == 1_000 || n == stock - 1 {
                _ = try client.pipeline(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        guard case .bulk(let sha?) = try client.call("SCRIPT", "LOAD", RedisAdapter.script) else {
            throw Driver.DriverError("SCRIPT LOAD failed")
        }
        return (peer, sha)
    }

    /// Redis's side of the ledger, read from its keys (then it is stopped).
    public static func redisLedger(_ peer: PeerProcess, lua: Bool, acknowledged: [String: [String]], stock: Int,
                                   perUserLimit: Int, lists: [String] = ["codes"]) throws -> Ledger {
        let client = try RedisClient(port: peer.port)
        var ledger = Ledger()
        ledger.acknowledged = acknowledged
        ledger.stock = stock
        ledger.perUserLimit = lua ? perUserLimit : 0
        for list in lists {
            guard case .integer(let left) = try client.call("LLEN", list) else { throw Driver.DriverError("LLEN failed") }
            ledger.available += Int(left)
        }
        if lua {
            guard case .array(let pairs?) = try client.call("HGETALL", "orders"),
                  case .array(let users?) = try client.call("HGETALL", "users") else {
                throw Driver.DriverError("HGETALL failed")
            }
            var userOf: [String: String] = [:]
            for index in stride(from: 0, to: users.count - 1, by: 2) {
                if case .bulk(let user?) = users[index], case .bulk(let order?) = users[index + 1] { userOf[order] = user }
            }
            for index in stride(from: 0, to: pairs.count - 1, by: 2) {
                if case .bulk(let order?) = pairs[index], case .bulk(let code?) = pairs[index + 1] {
                    ledger.stored[order] = Ledger.StoredOrder(user: userOf[order] ?? "?", committed: true, codes: [code])
                }
            }
        } else {
            // Bare LMOVE keeps no order ids: each issued code stands for the reply that took it.
            guard case .array(let issued?) = try client.call("LRANGE", "issued", "0", "-1") else {
                throw Driver.DriverError("LRANGE failed")
            }
            var byCode: [String: String] = [:]
            for (order, codes) in acknowledged { for code in codes { byCode[code] = order } }
            for (index, item) in issued.enumerated() {
                guard case .bulk(let code?) = item else { continue }
                let order = byCode[code] ?? "unacknowledged-\(index)"
                ledger.stored[order, default: Ledger.StoredOrder(user: order, committed: true, codes: [])].codes.append(code)
            }
        }
        ledger.loaded = Set((0..<stock).map { "CODE-\($0)" })
        peer.stop()
        return ledger
    }

    /// kami-echo on a free port.
    public static func startEcho(binDirectory: String = binDirectory) throws -> PeerProcess {
        let peer = PeerProcess(name: "echo", directory: PeerProcess.tempDirectory("echo"))
        try peer.start(binDirectory + "/kami-echo", []) { log in PeerProcess.firstPort(in: log, after: "ready port=") }
        return peer
    }

    /// A port nobody listens on now (bind to 0, read it, close).
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: bound.sin_port)
    }
}
