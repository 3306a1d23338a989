import Foundation
import Glibc
import KamiCore
import KamiCrypto
import KamiEngine
@testable import KamiServer
import XCTest

/// Plays systemd: a datagram socket at `$NOTIFY_SOCKET` that records what kamid says.
final class NotifyReceiver: @unchecked Sendable {
    // @unchecked: `messages` is guarded by `lock`; the reader thread owns `fd` reads.
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [(atMs: Int64, text: String)] = []
    private var running = true
    private var thread: Thread?

    init(directory: String) throws {
        path = directory + "/notify.sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw NSError(domain: "bind", code: Int(errno)) }
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while lock.withLock({ running }) {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { continue }
                let text = String(decoding: buffer[0..<n], as: UTF8.self)
                lock.withLock { received.append((NotifyReceiver.nowMs(), text)) }
            }
        }
        thread.start()
        self.thread = thread
    }

    static func nowMs() -> Int64 { Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000) }

    var messages: [(atMs: Int64, text: String)] { lock.withLock { received } }

    /// Waits until a message containing `line` arrives after index `from`; returns its index.
    func wait(for line: String, from: Int = 0, timeoutMs: Int64 = 10_000) -> Int? {
        let deadline = NotifyReceiver.nowMs() + timeoutMs
        while NotifyReceiver.nowMs() < deadline {
            let all = messages
            if from < all.count, let index = all[from...].firstIndex(where: { $0.text.split(separator: "\n").contains(Substring(line)) }) {
                return index
            }
            usleep(10_000)
        }
        return nil
    }

    func watchdogTimes(from: Int64, to: Int64) -> [Int64] {
        messages.filter { $0.text == "WATCHDOG=1\n" && $0.atMs >= from && $0.atMs < to }.map(\.atMs)
    }

    func stop() {
        lock.withLock { running = false }
        while thread?.isFinished == false { usleep(10_000) }
        close(fd)
        unlink(path)
    }
}

final class SystemdTests: XCTestCase {
    func testKamidSpeaksTheNotifyProtocolThroughItsLife() throws {
        let directory = NSTemporaryDirectory() + "kamid-notify-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let receiver = try NotifyReceiver(directory: directory)
        defer { receiver.stop() }
        let config = directory + "/kamid.conf"
        try "log_level = info\n".write(toFile: config, atomically: true, encoding: .utf8)
        let kamid = try Kamid(
            directory: directory + "/data", arguments: ["--config", config, "--metrics-listen", "off"],
            environment: ["NOTIFY_SOCKET": receiver.path, "WATCHDOG_USEC": "200000"])

        // READY=1 once listening: by the time it arrives the port accepts a request.
        let ready = try XCTUnwrap(receiver.wait(for: "READY=1"), "\(receiver.messages)")
        XCTAssertTrue(receiver.messages[ready].text.contains("STATUS=serving"), receiver.messages[ready].text)
        XCTAssertEqual(try RawClient(port: kamid.port).call(#""id":1,"op":"ping""#)?.error?.code, .unauthorized)
        XCTAssertTrue(receiver.messages[..<ready].contains { $0.text.contains("STATUS=recovering") },
                      "status while recovering, before ready")

        // Watchdog: pings every WATCHDOG_USEC/2 = 100 ms, from the loop.
        let start = NotifyReceiver.nowMs()
        usleep(1_500_000)
        let pings = receiver.watchdogTimes(from: start, to: start + 1_500)
        XCTAssertGreaterThanOrEqual(pings.count, 8, "\(pings)")
        XCTAssertLessThanOrEqual(pings.count, 20, "\(pings)")
        let gaps = zip(pings.dropFirst(), pings).map { $0 - $1 }
        XCTAssertLessThan(gaps.max() ?? 0, 400, "no ping gap near the 200 ms watchdog timeout: \(gaps)")

        // Reload: RELOADING=1 with MONOTONIC_USEC (near our own clock), then READY=1.
        var mark = receiver.messages.count
        try "log_level = debug\n".write(toFile: config, atomically: true, encoding: .utf8)
        kill(kamid.process.processIdentifier, SIGHUP)
        let reloading = try XCTUnwrap(receiver.wait(for: "RELOADING=1", from: mark))
        let fields = receiver.messages[reloading].text.split(separator: "\n")
        let usec = try XCTUnwrap(fields.first { $0.hasPrefix("MONOTONIC_USEC=") }.flatMap { UInt64($0.dropFirst(15)) })
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nowUs = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
        XCTAssertLessThan(nowUs - usec, 5_000_000, "MONOTONIC_USEC is CLOCK_MONOTONIC")
        let readyAgain = try XCTUnwrap(receiver.wait(for: "READY=1", from: reloading + 1))
        XCTAssertTrue(receiver.messages[readyAgain].text.contains("last_reload=applied"), receiver.messages[readyAgain].text)
        // The new log level is in force: debug events appear only now.
        XCTAssertFalse(kamid.log.contains { $0.hasPrefix("<7>") }, "no debug lines at log_level info")
        _ = try RawClient(port: kamid.port).call(#""id":1,"op":"ping""#)
        let deadline = Date().addingTimeInterval(5)
        while !kamid.log.contains(where: { $0.hasPrefix("<7>connection-open") }) && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(kamid.log.contains { $0.hasPrefix("<7>connection-open") && $0.contains("kind=tcp") }, "\(kamid.log)")

        // A broken config: still RELOADING then READY, and STATUS says it was rejected.
        mark = receiver.messages.count
        try "log_level = loud\n".write(toFile: config, atomically: true, encoding: .utf8)
        kill(kamid.process.processIdentifier, SIGHUP)
        let rejected = try XCTUnwrap(receiver.wait(for: "READY=1", from: mark))
        XCTAssertTrue(receiver.messages[rejected].text.contains("rejected"), receiver.messages[rejected].text)
        XCTAssertTrue(receiver.messages[rejected].text.contains("kamid.conf:1"), receiver.messages[rejected].text)
        XCTAssertTrue(kamid.log.contains { $0.hasPrefix("<3>reload-rejected") && $0.contains("log_level") }, "\(kamid.log)")

        // Stop: STOPPING=1, exit 0.
        mark = receiver.messages.count
        XCTAssertEqual(kamid.stop(), 0)
        XCTAssertNotNil(receiver.wait(for: "STOPPING=1", from: mark, timeoutMs: 2_000))
    }

    func testWatchdogPingsStopWhileALoopIsStalled() throws {
        let directory = NSTemporaryDirectory() + "kamid-wd-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let receiver = try NotifyReceiver(directory: directory)
        defer { receiver.stop() }
        let engine = try Engine(config: EngineConfig(directory: directory + "/data", sealer: Sealer(key: MasterKey.random())))
        defer { engine.close() }
        var config = ServerConfig()
        config.tcp = [.tcp(host: "127.0.0.1", port: 0)]
        config.loopThreads = 2
        config.notifier = Notifier(path: receiver.path, watchdogIntervalMs: 50)
        let server = Server(engine: engine, config: config, logger: Logger(level: .error))
        try server.start()
        defer { server.stop() }

        usleep(500_000)
        let healthyStart = NotifyReceiver.nowMs()
        usleep(500_000)
        XCTAssertGreaterThanOrEqual(receiver.watchdogTimes(from: healthyStart, to: healthyStart + 500).count, 5)

        // Loop 1 stuck: loop 0 is fine but must not vouch for it.
        for stalled in [1, 0] {
            let stallStart = NotifyReceiver.nowMs()
            server.stallLoop(stalled, forMs: 1_000)
            usleep(1_600_000)
            let during = receiver.watchdogTimes(from: stallStart + 200, to: stallStart + 900)
            XCTAssertEqual(during, [], "no ping while loop \(stalled) is stalled")
            let after = receiver.watchdogTimes(from: stallStart + 1_100, to: stallStart + 1_600)
            XCTAssertGreaterThanOrEqual(after.count, 3, "pings resume once loop \(stalled) runs again")
        }
    }

    /// The unit file passes `systemd-analyze verify` and scores 1.2 or lower on
    /// `systemd-analyze security --offline=true`.
    func testUnitFileVerifiesAndIsHardened() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else {
            throw XCTSkip("systemd-analyze is not installed")
        }
        let unit = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("systemd/kamid.service").path
        let text = try String(contentsOfFile: unit, encoding: .utf8)
        for needed in ["Type=notify", "ExecReload=", "StateDirectory=", "ConfigurationDirectory=", "LoadCredential=",
                       "LimitNOFILE=", "WatchdogSec="] {
            XCTAssertTrue(text.contains("\n" + needed), "unit has \(needed)")
        }
        // verify checks that ExecStart's binary exists: point it at the one just built.
        let directory = NSTemporaryDirectory() + "kamid-unit-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let copy = directory + "/kamid.service"
        try text.replacingOccurrences(of: "/usr/local/bin/kamid", with: Kamid.binary)
            .write(toFile: copy, atomically: true, encoding: .utf8)
        let verify = run("/usr/bin/systemd-analyze", ["verify", copy])
        XCTAssertEqual(verify.status, 0, verify.output)
        XCTAssertEqual(verify.output.trimmingCharacters(in: .whitespacesAndNewlines), "", "verify is clean")

        let security = run("/usr/bin/systemd-analyze", ["security", "--offline=true", "--no-pager", unit])
        let line = try XCTUnwrap(security.output.split(separator: "\n").first { $0.contains("Overall exposure level") })
        let score = try XCTUnwrap(line.split(separator: " ").compactMap { Double($0) }.first, String(line))
        XCTAssertLessThanOrEqual(score, 1.2, String(line))
    }

    private func run(_ tool: String, _ arguments: [String]) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return (-1, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
