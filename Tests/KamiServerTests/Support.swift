import Foundation
import Glibc
import KamiCore
import KamiProtocol
import XCTest

/// A real kamid process on a free loopback port and a temp data directory.
final class Kamid: @unchecked Sendable {
    // @unchecked: `stderrLines` is guarded by `lock`; the rest is set before the handler runs.
    let directory: String
    let process = Process()
    private(set) var port: UInt16 = 0
    private let stderrPipe = Pipe()
    private var stderrLines: [String] = []
    /// The two-loop config file this helper wrote (removed with it).
    private var writtenConfig: String?
    private let lock = NSLock()
    var socketPath: String { directory + "/kamid.sock" }
    var token: String {
        (try? String(contentsOfFile: directory + "/default.token", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
    }

    /// The config line tests add so that kamid runs several loops on any machine.
    static let twoLoops = "loop_threads = 2\n"

    static var binary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("kamid").path
    }

    /// `twoLoops`: without a `--config` argument, kamid gets a config of its own that asks
    /// for two loops; false runs it on its embedded default config.
    init(directory: String? = nil, arguments: [String] = [], environment: [String: String] = [:],
         twoLoops: Bool = true) throws {
        self.directory = directory ?? NSTemporaryDirectory() + "kamid-\(UUID().uuidString)"
        try start(arguments: arguments, environment: environment, twoLoops: twoLoops)
    }

    private func start(arguments: [String], environment: [String: String], twoLoops: Bool) throws {
        process.executableURL = URL(fileURLWithPath: Kamid.binary)
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        var arguments = arguments
        if twoLoops && !arguments.contains("--config") {
            // Two loops, as on a 4-core host, even where the default gives one: the tests
            // then cover connections spread over several loops and their shared state.
            let config = directory + ".conf"
            try FileManager.default.createDirectory(
                atPath: (directory as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Kamid.twoLoops.write(toFile: config, atomically: true, encoding: .utf8)
            writtenConfig = config
            arguments = ["--config", config] + arguments
        }
        process.arguments = ["--data-dir", directory, "--listen", "127.0.0.1:0", "--durability", "full", "--metrics-listen", "off"]
            + arguments
        process.standardError = stderrPipe
        try process.run()
        let handle = stderrPipe.fileHandleForReading
        let deadline = Date().addingTimeInterval(20)
        var buffer = Data()
        while Date() < deadline {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            buffer.append(chunk)
            let text = String(decoding: buffer, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.contains(">ready") }),
               let field = line.split(separator: " ").first(where: { $0.hasPrefix("tcp=") }) {
                port = UInt16(field.dropFirst(4).split(separator: ",").first ?? "") ?? 0
                break
            }
        }
        lock.withLock { stderrLines = String(decoding: buffer, as: UTF8.self).split(separator: "\n").map(String.init) }
        guard port != 0 else {
            throw NSError(domain: "kamid", code: 1, userInfo: [NSLocalizedDescriptionKey: "kamid did not start: \(stderrLines)"])
        }
        // Keep draining stderr so kamid never blocks on a full pipe.
        handle.readabilityHandler = { [weak self] h in
            let data = h.availableData
            guard let self, !data.isEmpty else { return }
            let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
            self.lock.withLock { self.stderrLines += lines }
        }
    }

    /// Everything kamid logged so far.
    var log: [String] { lock.withLock { stderrLines } }

    /// SIGTERM, and the exit status.
    @discardableResult
    func stop() -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        stderrPipe.fileHandleForReading.readabilityHandler = nil
        return process.terminationStatus
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        stderrPipe.fileHandleForReading.readabilityHandler = nil
    }

    deinit {
        if process.isRunning { kill9() }
        if let writtenConfig { try? FileManager.default.removeItem(atPath: writtenConfig) }
    }
}

/// A blocking test client over a raw socket.
final class RawClient: @unchecked Sendable {
    // @unchecked: one thread at a time uses a client (tests hand it to a thread and leave it there).
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: UInt16, timeoutMs: Int = 10_000) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw NSError(domain: "connect", code: Int(errno)) }
        setTimeout(timeoutMs)
    }

    /// Connects to [::1]:port.
    init(ipv6Port port: UInt16, timeoutMs: Int = 10_000) throws {
        fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        addr.sin6_port = port.bigEndian
        inet_pton(AF_INET6, "::1", &addr.sin6_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        guard rc == 0 else { throw NSError(domain: "connect6", code: Int(errno)) }
        setTimeout(timeoutMs)
    }

    init(unixPath: String, timeoutMs: Int = 10_000) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(unixPath.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw NSError(domain: "connect", code: Int(errno)) }
        setTimeout(timeoutMs)
    }

    private func setTimeout(_ ms: Int) {
        var tv = timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    /// Reads more bytes; false on EOF, error or timeout.
    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return false }
        buffer += chunk[0..<n]
        return true
    }

    /// The next JSON reply line, decoded; nil on EOF or timeout.
    func readJSONReply() -> Reply? {
        while true {
            let result: DecodeResult<Reply> = buffer.withUnsafeBytes { JSONCodec.decodeReply($0) }
            switch result {
            case .item(let reply, let consumed):
                buffer.removeFirst(consumed)
                return reply
            case .failure(_, _, let consumed, _):
                buffer.removeFirst(consumed)
                return nil
            case .needMore:
                if !fill() { return nil }
            }
        }
    }

    /// The next raw line (without the newline); nil on EOF or timeout.
    func readLine() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeFirst(newline + 1)
                return line
            }
            if !fill() { return nil }
        }
    }

    /// The next binary reply frame, decoded; nil on EOF or timeout.
    func readBinaryReply() -> (Reply, KamiProtocol.Operation)? {
        while true {
            let result: DecodeResult<(Reply, KamiProtocol.Operation)> = buffer.withUnsafeBytes { BinaryCodec.decodeReply($0) }
            switch result {
            case .item(let reply, let consumed):
                buffer.removeFirst(consumed)
                return reply
            case .failure(_, _, let consumed, _):
                buffer.removeFirst(consumed)
                return nil
            case .needMore:
                if !fill() { return nil }
            }
        }
    }

    /// True when the server closed the connection (EOF) within the timeout.
    func isClosedByPeer() -> Bool {
        while true {
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    /// Sends a JSON request built from key/values and reads the reply.
    func call(_ fields: String) -> Reply? {
        send("{" + fields + "}\n")
        return readJSONReply()
    }
}

extension Reply {
    var error: KamiError? { if case .failure(let e) = result { return e } else { return nil } }
    var order: WireOrder? { if case .success(.order(let o)) = result { return o } else { return nil } }
    var isOK: Bool { if case .success = result { return true } else { return false } }
}

extension Kamid {
    /// Creates `sku` and imports `count` generated codes through the Unix socket.
    func stock(sku: String, count: Int) throws {
        let admin = try RawClient(unixPath: socketPath)
        let sku = sku.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        guard admin.call(#""id":1,"op":"sku_set","sku":"\#(sku)","name":"\#(sku)""#)?.isOK == true else {
            throw NSError(domain: "sku_set", code: 1)
        }
        let csv = directory + "/codes-\(UUID().uuidString.prefix(6)).csv"
        let rows = (0..<count).map { "CODE-SECRET-\($0)-\(UUID().uuidString.prefix(8))" }
        try ("secret\n" + rows.joined(separator: "\n") + "\n").write(toFile: csv, atomically: true, encoding: .utf8)
        guard admin.call(#""id":2,"op":"import","sku":"\#(sku)","path":"\#(csv)""#)?.isOK == true else {
            throw NSError(domain: "import", code: 1)
        }
    }

    /// A TCP client that said hello as `default`.
    func storefront() throws -> RawClient {
        let client = try RawClient(port: port)
        guard client.call(#""id":0,"op":"hello","client":"default","token":"\#(token)""#)?.isOK == true else {
            throw NSError(domain: "hello", code: 1)
        }
        return client
    }

    /// Runs kamictl against this kamid; its exit status and its output and errors together.
    func kamictl(_ arguments: [String], directory: String? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Kamid.binary).deletingLastPathComponent().appendingPathComponent("kamictl")
        process.arguments = ["--socket", socketPath] + arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Runs `verify` over the Unix socket; the violations (empty when clean).
    func violations() throws -> [String] {
        let reply = try RawClient(unixPath: socketPath).call(#""id":1,"op":"verify""#)
        guard case .success(.fields(let fields)) = reply?.result else { return ["verify failed: \(String(describing: reply))"] }
        guard case .array(let list)? = fields.first(where: { $0.0 == "violations" })?.1 else { return ["no violations field"] }
        return list.map { "\($0)" }
    }
}
