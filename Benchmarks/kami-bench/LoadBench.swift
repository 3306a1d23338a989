import CKamiLinux
import Foundation
import Glibc
import KamiCore
import KamiProtocol
import KamiStore
import Synchronization

/// A simple closed-loop load against a kamid it starts itself: C connections, each with D
/// binary `issue` requests in flight, for S seconds, durability full. Every issue is a new
/// order of a new user on one hot SKU. Prints requests/s and latency percentiles, then
/// verifies through the Unix socket that nothing was issued twice.
enum LoadBench {
    static func run(connections: Int, depth: Int, seconds: Double, codes: Int) {
        let directory = EngineBench.tempDirectory("load")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let kamidPath = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("kamid").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: kamidPath)
        process.arguments = ["--data-dir", directory + "/data", "--listen", "127.0.0.1:0", "--durability", "full", "--metrics-listen", "off"]
        let stderrPipe = Pipe()
        process.standardError = stderrPipe
        try! process.run()
        defer {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
        var port: UInt16 = 0
        var log = Data()
        while port == 0 {
            let chunk = stderrPipe.fileHandleForReading.availableData
            if chunk.isEmpty { fatalError("kamid exited: \(String(decoding: log, as: UTF8.self))") }
            log.append(chunk)
            if let match = String(decoding: log, as: UTF8.self).split(separator: " ").first(where: { $0.hasPrefix("tcp=") }) {
                port = UInt16(match.dropFirst(4).prefix { $0.isNumber }) ?? 0
            }
        }
        stderrPipe.fileHandleForReading.readabilityHandler = { _ = $0.availableData }
        let socket = directory + "/data/kamid.sock"
        let token = (try! String(contentsOfFile: directory + "/data/default.token", encoding: .utf8))
            .trimmingCharacters(in: .whitespacesAndNewlines)
        // Stock: one hot SKU, imported through the operator socket.
        let csv = directory + "/codes.csv"
        var text = "secret\n"
        for n in 0..<codes { text += "LOAD-\(n)-5e3b\n" }
        try! text.write(toFile: csv, atomically: true, encoding: .utf8)
        print(admin(socket, #"{"id":1,"op":"sku_set","sku":"hot","name":"Hot"}"#))
        print(admin(socket, #"{"id":2,"op":"import","sku":"hot","path":"\#(csv)"}"#).prefix(120))

        let stop = Box()
        let completed = Box()
        let errors = Box()
        let latencies = LatencyLog()
        let boundPort = port
        let group = DispatchGroup()
        let start = monotonicNs()
        for connection in 0..<connections {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                let fd = connectTCP(boundPort)
                var out: [UInt8] = []
                var hello = Request(id: .number(0), op: .hello)
                hello.client = "default"
                hello.token = token
                try! BinaryCodec.encode(hello, into: &out)
                var input = Input(fd: fd)
                sendAll(fd, out)
                guard case .success = input.next()?.result else { fatalError("hello refused") }
                var sent: [Int64: UInt64] = [:]
                var local: [UInt64] = []
                local.reserveCapacity(200_000)
                var n: Int64 = 1
                func send() {
                    var request = Request(id: .number(n), op: .issue)
                    request.order = "c\(connection)-\(n)"
                    request.user = "u\(connection)-\(n)"
                    request.sku = "hot"
                    request.qty = 1
                    request.paymentRef = "p"
                    out.removeAll(keepingCapacity: true)
                    try! BinaryCodec.encode(request, into: &out)
                    sent[n] = monotonicNs()
                    sendAll(fd, out)
                    n += 1
                }
                for _ in 0..<depth { send() }
                while !sent.isEmpty {
                    guard let reply = input.next() else { break }
                    guard case .number(let id) = reply.id, let at = sent.removeValue(forKey: id) else { continue }
                    local.append(monotonicNs() - at)
                    completed.add()
                    if case .failure = reply.result { errors.add() }
                    if stop.value == 0 { send() }
                }
                close(fd)
                latencies.append(local)
            }
        }
        usleep(UInt32(seconds * 1_000_000))
        stop.add()
        group.wait()
        let elapsed = Double(monotonicNs() - start) / 1e9
        var all = latencies.all
        all.sort()
        func pct(_ p: Double) -> Double {
            all.isEmpty ? 0 : Double(all[min(all.count - 1, Int(Double(all.count) * p))]) / 1e6
        }
        print(String(format: "| connections | depth | requests | errors | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"))
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(String(format: "| %d | %d | %d | %d | %.0f | %.3f | %.3f | %.3f | %.3f | %.3f |", connections, depth,
                     completed.value, errors.value,
                     Double(completed.value) / elapsed, pct(0.5), pct(0.9), pct(0.99), pct(0.999),
                     Double(all.last ?? 0) / 1e6))
        print("verify:", admin(socket, #"{"id":3,"op":"verify"}"#).prefix(200))
        print("stats:", admin(socket, #"{"id":4,"op":"stats"}"#).prefix(300))
    }

    struct Input {
        let fd: Int32
        var buffer: [UInt8] = []
        init(fd: Int32) { self.fd = fd }

        mutating func next() -> Reply? {
            while true {
                let result = buffer.withUnsafeBytes { BinaryCodec.decodeReply($0) }
                switch result {
                case .item(let (reply, _), let consumed):
                    buffer.removeFirst(consumed)
                    return reply
                case .failure(_, _, let consumed, _):
                    buffer.removeFirst(consumed)
                    return nil
                case .needMore:
                    var chunk = [UInt8](repeating: 0, count: 65_536)
                    let got = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    if got <= 0 { return nil }
                    buffer += chunk[0..<got]
                }
            }
        }
    }

    static func connectTCP(_ port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        precondition(rc == 0, "connect failed: \(errno)")
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// One JSON request on the Unix socket; the raw reply line.
    static func admin(_ path: String, _ line: String) -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        defer { close(fd) }
        sendAll(fd, Array((line + "\n").utf8))
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while !reply.contains(0x0A) {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            reply += chunk[0..<n]
        }
        return String(decoding: reply, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A counter shared by the load threads.
final class Box: Sendable {
    private let atomic = Atomic<Int>(0)
    var value: Int { atomic.load(ordering: .relaxed) }
    func add() { atomic.add(1, ordering: .relaxed) }
}

/// Latency samples gathered from the load threads.
final class LatencyLog: Sendable {
    private let samples = Mutex<[UInt64]>([])
    func append(_ more: [UInt64]) { samples.withLock { $0 += more } }
    var all: [UInt64] { samples.withLock { $0 } }
}
