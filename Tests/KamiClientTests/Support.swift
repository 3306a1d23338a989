import Foundation
import Glibc
import KamiClient
import KamiCtl
import KamiCore
import KamiProtocol
import Synchronization
import XCTest

/// Where the package's executables were built: next to the test bundle.
enum Binaries {
    static var directory: URL {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent()
    }

    static var kamid: String { directory.appendingPathComponent("kamid").path }
    static var kamictl: String { directory.appendingPathComponent("kamictl").path }
}

/// A real kamid process on a loopback port and a temporary data directory (after the server
/// tests' `Kamid`, plus restarts on the same directory and port).
final class Kamid: @unchecked Sendable {
    // @unchecked: `stderrText` is guarded by `lock`; `process`, `pipe` and `port` change only
    // in `start`, on the test's thread, while no handler runs.
    let directory: String
    private(set) var port: UInt16 = 0
    private var process = Process()
    private var pipe = Pipe()
    private var stderrText = ""
    private let lock = NSLock()

    var socketPath: String { directory + "/kamid.sock" }
    var tcp: KamiEndpoint { .tcp(host: "127.0.0.1", port: port) }
    var unix: KamiEndpoint { .unix(path: socketPath) }
    var credentials: KamiCredentials {
        get throws { try KamiCredentials.load(dataDirectory: directory) }
    }

    private var config: [String]

    /// Starts kamid on a fresh directory and a free port, with these config lines
    /// (`key = value`) in a config file when any are given.
    init(config lines: [String] = []) throws {
        directory = NSTemporaryDirectory() + "kamiclient-\(UUID().uuidString.prefix(8))"
        config = []
        if !lines.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let path = directory + "/kamid.conf"
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            config = ["--config", path]
        }
        try start(listen: "127.0.0.1:0")
    }

    /// Starts kamid again on the same directory and port (after `kill9` or `stop`).
    func restart() throws {
        try start(listen: "127.0.0.1:\(port)")
    }

    private func start(listen: String) throws {
        process = Process()
        pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: Binaries.kamid)
        process.arguments = config + ["--data-dir", directory, "--listen", listen, "--durability", "full", "--metrics-listen", "off"]
        process.standardError = pipe
        try process.run()
        let handle = pipe.fileHandleForReading
        var text = ""
        var found: UInt16 = 0
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && found == 0 {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.contains(">ready") }),
                let field = line.split(separator: " ").first(where: { $0.hasPrefix("tcp=") })
            {
                found = UInt16(field.dropFirst(4).split(separator: ",").first ?? "") ?? 0
            }
        }
        lock.withLock { stderrText += text }
        guard found != 0 else { throw TestFailure("kamid did not start: \(text)") }
        port = found
        // Keep draining stderr so kamid never blocks on a full pipe.
        handle.readabilityHandler = { [weak self] h in
            let data = h.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { self.stderrText += String(decoding: data, as: UTF8.self) }
        }
    }

    /// Everything kamid logged so far.
    var log: String { lock.withLock { stderrText } }

    /// SIGTERM, and the exit status.
    @discardableResult
    func stop() -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        pipe.fileHandleForReading.readabilityHandler = nil
        return process.terminationStatus
    }

    /// SIGKILL: no draining, no goodbye.
    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        pipe.fileHandleForReading.readabilityHandler = nil
    }

    deinit {
        if process.isRunning { kill9() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Creates `sku` and imports `count` codes into it over the Unix socket, with this
    /// package's own client; returns the secrets imported.
    @discardableResult
    func stock(sku: String = "vip", count: Int, perUserLimit: Int = 0) throws -> [String] {
        let admin = try KamiConnection(endpoint: unix)
        defer { admin.close() }
        var set = Request(id: .number(1), op: .skuSet)
        set.sku = sku
        set.name = "VIP"
        set.priceCents = 990
        set.perUserLimit = perUserLimit
        _ = try admin.send(set).successBody()
        let secrets = (0..<count).map { "\(sku)-SECRET-\($0)-\(UUID().uuidString.prefix(8))" }
        let csv = directory + "/\(sku)-\(UUID().uuidString.prefix(8)).csv"
        try ("secret\n" + secrets.joined(separator: "\n") + "\n").write(toFile: csv, atomically: true, encoding: .utf8)
        var load = Request(id: .number(2), op: .importCSV)
        load.sku = sku
        load.path = csv
        guard case .fields(let fields) = try admin.send(load).successBody(),
            fields.first(where: { $0.0 == "imported" })?.1 == .int(Int64(count))
        else { throw TestFailure("import of \(count) codes failed") }
        return secrets
    }
}

/// A thrown test failure with a message.
struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A loopback port with a listening socket that never accepts: connects succeed (the
/// kernel completes the handshake into the backlog) and nothing is ever answered.
/// With `backlogFull`, the backlog is filled first, so that a further connect hangs in
/// the handshake.
final class SilentListener {
    let fd: Int32
    let port: UInt16
    private var fillers: [Int32] = []

    init(backlogFull: Bool = false) throws {
        (fd, port) = try loopbackListener(backlog: backlogFull ? 0 : 64)
        if backlogFull {
            // listen(0) leaves room for one connection; the second attempt stays half-open.
            for _ in 0..<2 {
                let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
                var target = sockaddr_in()
                target.sin_family = sa_family_t(AF_INET)
                target.sin_addr.s_addr = inet_addr("127.0.0.1")
                target.sin_port = port.bigEndian
                _ = withUnsafePointer(to: &target) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(filler, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                fillers.append(filler)
            }
            usleep(50_000)
        }
    }

    static func localPort(_ fd: Int32) -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }

    deinit {
        for filler in fillers { close(filler) }
        close(fd)
    }
}

/// A listening TCP socket on a free loopback port, and the port.
func loopbackListener(backlog: Int32) throws -> (Int32, UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard bound == 0, listen(fd, backlog) == 0 else {
        close(fd)
        throw TestFailure("bind/listen: errno \(errno)")
    }
    return (fd, SilentListener.localPort(fd))
}

/// A free loopback port with nothing listening on it: connects are refused.
func refusedPort() throws -> UInt16 {
    let listener = try SilentListener()
    return listener.port  // closed when `listener` goes away at the end of this function
}

/// A TCP proxy in front of kamid that can lose a reply: on the connection numbered
/// `cutConnection` (0 = the first accepted), it forwards requests as usual but, when the
/// reply numbered `cutReply` (0 = the first) arrives from kamid, drops it and closes both
/// sides. kamid did the request; the client never hears of it. That is the lost reply a
/// storefront's retry must survive.
final class LossyProxy: @unchecked Sendable {
    // @unchecked: counters live in `Atomic`s; `listener` and the ports never change.
    let port: UInt16
    private let upstreamPort: UInt16
    private let listener: Int32
    private let cutConnection: Int
    private let cutReply: Int
    private let accepted = Atomic<Int>(0)
    private let requestsSeen = Atomic<Int>(0)
    private let repliesDropped = Atomic<Int>(0)

    /// Connections accepted so far.
    var connections: Int { accepted.load(ordering: .relaxed) }
    /// Requests forwarded to kamid so far, over every connection.
    var requests: Int { requestsSeen.load(ordering: .relaxed) }
    /// Replies dropped.
    var dropped: Int { repliesDropped.load(ordering: .relaxed) }

    init(upstreamPort: UInt16, cutConnection: Int = 0, cutReply: Int) throws {
        self.upstreamPort = upstreamPort
        self.cutConnection = cutConnection
        self.cutReply = cutReply
        (listener, port) = try loopbackListener(backlog: 16)
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Stops accepting. Connections in progress end when their peers close.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
    }

    deinit {
        // The accept thread holds the proxy until `stop` ends it, so nothing accepts here.
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            let number = accepted.wrappingAdd(1, ordering: .relaxed).oldValue
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = upstreamPort.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else {
                close(client)
                close(upstream)
                continue
            }
            let cutAt = number == cutConnection ? cutReply : nil
            Thread.detachNewThread { [self] in pumpRequests(from: client, to: upstream) }
            Thread.detachNewThread { [self] in pumpReplies(from: upstream, to: client, cutAt: cutAt) }
        }
    }

    /// Client to kamid, counting whole requests.
    private func pumpRequests(from client: Int32, to upstream: Int32) {
        var framer = Framer(requests: true)
        while let chunk = readChunk(client) {
            requestsSeen.wrappingAdd(framer.feed(chunk).count, ordering: .relaxed)
            guard writeAll(upstream, chunk) else { break }
        }
        shutdown(upstream, Int32(SHUT_WR))
    }

    /// kamid to client, reply by reply, dropping reply number `cutAt`.
    private func pumpReplies(from upstream: Int32, to client: Int32, cutAt: Int?) {
        var framer = Framer(requests: false)
        var forwarded = 0
        defer {
            close(client)
            close(upstream)
        }
        while let chunk = readChunk(upstream) {
            for reply in framer.feed(chunk) {
                if forwarded == cutAt {
                    repliesDropped.wrappingAdd(1, ordering: .relaxed)
                    shutdown(client, Int32(SHUT_RDWR))
                    return
                }
                guard writeAll(client, reply) else { return }
                forwarded += 1
            }
        }
    }

    private func readChunk(_ fd: Int32) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return Array(buffer[0..<count])
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            guard count > 0 else { return false }
            offset += count
        }
        return true
    }

    /// Cuts a byte stream into whole requests or replies with the protocol's decoders.
    private struct Framer {
        let requests: Bool
        var buffer: [UInt8] = []

        mutating func feed(_ chunk: [UInt8]) -> [[UInt8]] {
            buffer += chunk
            var items: [[UInt8]] = []
            while let first = buffer.first {
                let binary = first == BinaryFrame.magic
                let consumed: Int? = buffer.withUnsafeBytes { raw in
                    switch (requests, binary) {
                    case (true, true): Framer.consumed(BinaryCodec.decodeRequest(raw))
                    case (true, false): Framer.consumed(JSONCodec.decodeRequest(raw))
                    case (false, true): Framer.consumed(BinaryCodec.decodeReply(raw))
                    case (false, false): Framer.consumed(JSONCodec.decodeReply(raw))
                    }
                }
                guard let consumed else { break }
                items.append(Array(buffer[0..<consumed]))
                buffer.removeFirst(consumed)
            }
            return items
        }

        static func consumed<T>(_ result: DecodeResult<T>) -> Int? {
            switch result {
            case .needMore: nil
            case .item(_, let consumed): consumed
            case .failure(_, _, let consumed, _): consumed
            }
        }
    }
}

/// Runs the built kamictl and returns what it printed and its exit status.
struct KamictlRun {
    var stdout: String
    var stderr: String
    var status: Int32

    init(_ arguments: [String], environment: [String: String] = [:], directory: String? = nil) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.kamictl)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: KamiCtl.socketEnvironmentVariable)
        for (key, value) in environment { env[key] = value }
        process.environment = env
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // kamictl prints a few kilobytes at most, which the pipe buffers hold: reading
        // one pipe to its end and then the other cannot block.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        stdout = String(decoding: outData, as: UTF8.self)
        stderr = String(decoding: errData, as: UTF8.self)
        status = process.terminationStatus
    }
}

/// Milliseconds `body` took.
func elapsedMs(_ body: () throws -> Void) rethrows -> Int {
    let start = ContinuousClock.now
    try body()
    let (seconds, attoseconds) = start.duration(to: .now).components
    return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
}

/// The KamiError `body` threw, or a test failure when it threw nothing or something else.
func kamiError<T>(_ body: () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> KamiError? {
    do {
        _ = try body()
        XCTFail("expected a KamiError, got a result", file: file, line: line)
    } catch let error as KamiError {
        return error
    } catch {
        XCTFail("expected a KamiError, got \(error)", file: file, line: line)
    }
    return nil
}
