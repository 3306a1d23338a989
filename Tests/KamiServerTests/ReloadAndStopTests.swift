import Foundation
import Glibc
import KamiCore
import KamiProtocol
import Synchronization
import XCTest

/// Reloads under load change what they should and nothing else; SIGTERM under load loses
/// nothing acknowledged.
final class ReloadAndStopTests: XCTestCase {
    /// Storefront threads issuing one code per request until told to stop; every reply is
    /// recorded (order → code ids) and anything else is counted as a failure.
    final class IssueLoad: @unchecked Sendable {
        // @unchecked: the arrays are guarded by `lock`.
        private let lock = NSLock()
        private(set) var acknowledged: [String: [Int64]] = [:]
        private(set) var failures: [String] = []
        private let stopFlag = Atomic<Bool>(false)
        private var threads: [Thread] = []

        /// `tolerateClose`: a closed connection ends that thread quietly (shutdown tests).
        init(kamid: Kamid, sku: String, threads count: Int, tolerateClose: Bool) throws {
            for t in 0..<count {
                let client = try kamid.storefront()
                let thread = Thread { [self] in
                    var n = 0
                    while !stopFlag.load(ordering: .relaxed) {
                        n += 1
                        let order = "t\(t)-\(n)"
                        client.send(#"{"id":\#(n),"op":"issue","order":"\#(order)","user":"u\#(t)-\#(n)","sku":"\#(sku)","qty":1,"payment_ref":"p"}"# + "\n")
                        guard let reply = client.readJSONReply() else {
                            if !tolerateClose { lock.withLock { failures.append("\(order): connection dropped") } }
                            return
                        }
                        if let wire = reply.order, wire.state == .committed {
                            lock.withLock { acknowledged[order] = wire.codes.map(\.codeID) }
                        } else if !(tolerateClose && reply.error?.code == .unavailable) {
                            lock.withLock { failures.append("\(order): \(String(describing: reply.result))") }
                        }
                    }
                    // Still connected and served.
                    if client.call(#""id":"end","op":"ping""#)?.isOK != true && !tolerateClose {
                        lock.withLock { failures.append("thread \(t): ping after the run failed") }
                    }
                }
                threads.append(thread)
                thread.start()
            }
        }

        func stop() {
            stopFlag.store(true, ordering: .relaxed)
            while threads.contains(where: { !$0.isFinished }) { usleep(5_000) }
        }

        var snapshot: (acknowledged: [String: [Int64]], failures: [String]) { lock.withLock { (acknowledged, failures) } }
    }

    func testTwoHundredReloadsHalfInvalidUnderLoad() throws {
        let directory = NSTemporaryDirectory() + "kamid-reload-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = directory + "/kamid.conf"
        func write(ttlMinutes: Int, valid: Bool) throws {
            var text = "log_level = \(ttlMinutes % 2 == 0 ? "info" : "notice")\nhold_ttl_default_ms = \(ttlMinutes * 60_000)\n"
            text += "max_connections = \(1_000 + ttlMinutes)\n" + Kamid.twoLoops
            if !valid { text += "idle_timeout_ms = soon\n" }
            try text.write(toFile: config, atomically: true, encoding: .utf8)
        }
        try write(ttlMinutes: 1, valid: true)
        let kamid = try Kamid(directory: directory + "/data", arguments: ["--config", config, "--metrics-listen", "off"])
        defer { XCTAssertEqual(kamid.stop(), 0) }
        try kamid.stock(sku: "vip", count: 20_000)
        let admin = try RawClient(unixPath: kamid.socketPath)
        let probe = try kamid.storefront()
        let load = try IssueLoad(kamid: kamid, sku: "vip", threads: 4, tolerateClose: false)

        var currentMinutes = 1
        var reloadUs: [Int64] = []
        for i in 0..<200 {
            let valid = i % 2 == 0
            let minutes = 2 + (i % 20)
            try write(ttlMinutes: minutes, valid: valid)
            let reply = admin.call(#""id":\#(i),"op":"reload""#)
            if valid {
                guard case .success(.fields(let fields))? = reply?.result else {
                    XCTFail("valid reload \(i) failed: \(String(describing: reply))")
                    continue
                }
                if case .int(let us)? = fields.first(where: { $0.0 == "duration_us" })?.1 { reloadUs.append(us) }
                if minutes != currentMinutes {
                    XCTAssertTrue("\(fields)".contains("hold_ttl_default_ms"), "\(fields)")
                }
                currentMinutes = minutes
            } else {
                XCTAssertEqual(reply?.error?.code, .badRequest, "\(String(describing: reply))")
                XCTAssertTrue(reply?.error?.message.contains("kamid.conf:5: idle_timeout_ms") ?? false,
                              reply?.error?.message ?? "no reply")
            }
            // The hold a reserve gets without ttl_ms is the last valid config's, whatever came after.
            if i % 10 == 0 || i % 10 == 1 {
                let before = Int64(Date().timeIntervalSince1970 * 1000)
                let held = probe.call(#""id":\#(i),"op":"reserve","order":"probe-\#(i)","user":"probe-\#(i)","sku":"vip","qty":1"#)
                let expires = try XCTUnwrap(held?.order?.expiresAtMs, "\(String(describing: held))")
                XCTAssertEqual(Double(expires - before), Double(currentMinutes * 60_000), accuracy: 5_000, "reload \(i)")
                _ = probe.call(#""id":\#(i),"op":"release","order":"probe-\#(i)""#)
            }
        }
        load.stop()
        let (acknowledged, failures) = load.snapshot
        XCTAssertEqual(failures, [], "no request failed and no connection dropped because of a reload")
        XCTAssertGreaterThan(acknowledged.count, 100, "the load ran during the reloads")
        let codes = acknowledged.values.flatMap { $0 }
        XCTAssertEqual(Set(codes).count, codes.count, "no code issued twice")
        XCTAssertEqual(try kamid.violations(), [])
        XCTAssertEqual(kamid.log.filter { $0.hasPrefix("<5>reload-applied") }.count, 100)
        XCTAssertEqual(kamid.log.filter { $0.hasPrefix("<3>reload-rejected") }.count, 100)
        let sorted = reloadUs.sorted()
        print("reload latency over \(sorted.count) valid reloads: p50 \(sorted[sorted.count / 2]) us, "
            + "max \(sorted.last ?? 0) us; \(acknowledged.count) issues meanwhile")
    }

    func testSigtermUnderLoadLosesNothingAcknowledged() throws {
        let directory = NSTemporaryDirectory() + "kamid-term-\(UUID().uuidString.prefix(8))"
        let data = directory + "/data"
        var kamid = try Kamid(directory: data, arguments: ["--metrics-listen", "off"])
        // Enough stock that 8 threads never sell out before the stop (an idle machine issued
        // 20,000 in the 0.7 s before it, and SOLD_OUT counts as a failure here).
        try kamid.stock(sku: "vip", count: 100_000)
        let load = try IssueLoad(kamid: kamid, sku: "vip", threads: 8, tolerateClose: true)
        usleep(700_000)
        let started = Date()
        XCTAssertEqual(kamid.stop(), 0, "SIGTERM under load exits 0")
        let stopSeconds = Date().timeIntervalSince(started)
        XCTAssertLessThan(stopSeconds, 12, "stopped within shutdown_timeout_ms and the close grace")
        load.stop()
        let (acknowledged, failures) = load.snapshot
        XCTAssertEqual(failures, [], "every request completed or saw a clean close/UNAVAILABLE")
        XCTAssertGreaterThan(acknowledged.count, 20)
        XCTAssertTrue(kamid.log.contains { $0.hasPrefix("<5>stopped") }, "\(kamid.log.suffix(5))")

        kamid = try Kamid(directory: data, arguments: ["--metrics-listen", "off"])
        defer { XCTAssertEqual(kamid.stop(), 0) }
        let client = try kamid.storefront()
        for (order, codes) in acknowledged {
            let reply = client.call(#""id":1,"op":"order","order":"\#(order)","user":"u\#(order.dropFirst())""#)
            XCTAssertEqual(reply?.order?.state, .committed, order)
            XCTAssertEqual(reply?.order?.codes.map(\.codeID), codes, "\(order) kept its codes")
        }
        XCTAssertEqual(try kamid.violations(), [])
        print("SIGTERM under load: \(acknowledged.count) acknowledged issues all present after restart; stop took "
            + String(format: "%.2f", stopSeconds) + " s")
    }

    /// A device or a fifo is refused at once; an import of a file that is too big to finish
    /// does not hold up SIGTERM: it is cancelled (and rolled back) and kamid exits 0 within
    /// shutdown_timeout_ms, not after the stop guard's grace.
    func testNonRegularImportsAreRefusedAndSigtermCancelsARunningImport() throws {
        let directory = NSTemporaryDirectory() + "kamid-import-stop-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = directory + "/kamid.conf"
        try "shutdown_timeout_ms = 2000\n".write(toFile: config, atomically: true, encoding: .utf8)
        let kamid = try Kamid(directory: directory + "/data", arguments: ["--config", config, "--metrics-listen", "off"])
        try kamid.stock(sku: "vip", count: 10)
        let admin = try RawClient(unixPath: kamid.socketPath)
        let fifo = directory + "/codes.fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        for (path, kind) in [("/dev/zero", "a character device"), (fifo, "a fifo"), (directory, "a directory")] {
            let reply = admin.call(#""id":1,"op":"import","sku":"vip","path":"\#(path)""#)
            XCTAssertEqual(reply?.error?.code, .badRequest, "\(path): \(String(describing: reply))")
            let message = reply?.error?.message ?? ""
            XCTAssertTrue(message.contains(path) && message.contains(kind) && message.contains("not a regular file"), message)
        }
        let storefront = try kamid.storefront()
        let issued = storefront.call(#""id":2,"op":"issue","order":"o1","user":"u1","sku":"vip","qty":1,"payment_ref":"p""#)
        XCTAssertEqual(issued?.order?.state, .committed, "issuing goes on after the refused imports")

        // A sparse terabyte: a regular file whose reading would take far longer than the test.
        let huge = directory + "/huge.csv"
        let fd = open(huge, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(ftruncate(fd, 1 << 40), 0)
        close(fd)
        let importer = try RawClient(unixPath: kamid.socketPath, timeoutMs: 60_000)
        let importReply = Locked<Reply?>(nil)
        let importDone = DispatchSemaphore(value: 0)
        let thread = Thread {
            let reply = importer.call(#""id":3,"op":"import","sku":"vip","path":"\#(huge)""#)
            importReply.withLock { $0 = reply }
            importDone.signal()
        }
        thread.start()
        usleep(1_000_000)
        XCTAssertEqual(importDone.wait(timeout: .now()), .timedOut, "the import is still running")
        let started = Date()
        XCTAssertEqual(kamid.stop(), 0, "SIGTERM during an import exits 0")
        let stopSeconds = Date().timeIntervalSince(started)
        XCTAssertLessThan(stopSeconds, 5, "stopped within shutdown_timeout_ms (2 s) and a little")
        XCTAssertEqual(importDone.wait(timeout: .now() + 10), .success)
        let reply = importReply.withLock { $0 }
        XCTAssertEqual(reply?.error?.code, .unavailable, "\(String(describing: reply))")
        XCTAssertTrue(reply?.error?.message.contains("cancelled") == true, "\(String(describing: reply))")
        XCTAssertFalse(kamid.log.contains { $0.contains("stop-timeout") }, "\(kamid.log.suffix(5))")
    }

    /// A `kamictl reload` that arrives as soon as the Unix socket accepts (before READY) is
    /// applied, not answered "still starting": the server is published before it starts.
    func testReloadRacingStartUpIsApplied() throws {
        let directory = NSTemporaryDirectory() + "kamid-early-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let data = directory + "/data"
        let started = Locked<Kamid?>(nil)
        let failure = Locked<String?>(nil)
        let thread = Thread {
            do {
                let kamid = try Kamid(directory: data, arguments: ["--metrics-listen", "off"],
                                      environment: ["KAMID_TEST_PAUSE_AFTER_LISTEN_MS": "3000"])
                started.withLock { $0 = kamid }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
        }
        thread.start()
        var admin: RawClient?
        let deadline = Date().addingTimeInterval(20)
        while admin == nil && Date() < deadline {
            admin = try? RawClient(unixPath: data + "/kamid.sock")
            if admin == nil { usleep(5_000) }
        }
        let reply = admin?.call(#""id":1,"op":"reload""#)
        XCTAssertNil(started.withLock { $0 }, "the reload went in before READY")
        XCTAssertEqual(reply?.isOK, true, "\(String(describing: reply))")
        while started.withLock({ $0 }) == nil && failure.withLock({ $0 }) == nil && Date() < deadline { usleep(10_000) }
        XCTAssertNil(failure.withLock { $0 })
        let kamid = try XCTUnwrap(started.withLock { $0 })
        XCTAssertTrue(kamid.log.contains { $0.contains("reload-applied") && $0.contains("trigger=kamictl") }, "\(kamid.log)")
        XCTAssertEqual(kamid.stop(), 0)
    }

    func testRestartKeysAreReportedAndTokensRotateByReload() throws {
        let directory = NSTemporaryDirectory() + "kamid-keys-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = directory + "/kamid.conf"
        let shopToken = directory + "/shop.token"
        try "shop-token-one-0123456789\n".write(toFile: shopToken, atomically: true, encoding: .utf8)
        chmod(shopToken, 0o600)
        try "token_file.shop = \(shopToken)\n".write(toFile: config, atomically: true, encoding: .utf8)
        let kamid = try Kamid(directory: directory + "/data", arguments: ["--config", config, "--metrics-listen", "off"])
        defer { XCTAssertEqual(kamid.stop(), 0) }
        func hello(_ client: String, _ token: String) throws -> Reply? {
            try RawClient(port: kamid.port).call(#""id":0,"op":"hello","client":"\#(client)","token":"\#(token)""#)
        }
        XCTAssertEqual(try hello("shop", "shop-token-one-0123456789")?.isOK, true)
        let kept = try RawClient(port: kamid.port)
        XCTAssertEqual(kept.call(#""id":0,"op":"hello","client":"shop","token":"shop-token-one-0123456789""#)?.isOK, true)
        let admin = try RawClient(unixPath: kamid.socketPath)

        // Rotate the token and change keys that need a restart in the same edit (listen and
        // data_dir come from the command line here, which overrides the file).
        try "shop-token-two-9876543210\n".write(toFile: shopToken + ".new", atomically: true, encoding: .utf8)
        chmod(shopToken + ".new", 0o600)
        rename(shopToken + ".new", shopToken)
        try """
            token_file.shop = \(shopToken)
            loop_threads = 3
            unix_socket_mode = 0600
            data_dir = /elsewhere
            max_connections = 77
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let reply = admin.call(#""id":1,"op":"reload""#)
        guard case .success(.fields(let fields))? = reply?.result else { return XCTFail("\(String(describing: reply))") }
        func strings(_ key: String) -> [String] {
            guard case .array(let items)? = fields.first(where: { $0.0 == key })?.1 else { return [] }
            return items.compactMap { if case .string(let s) = $0 { s } else { nil } }
        }
        // data_dir comes from the command line here, which wins over the file.
        XCTAssertEqual(strings("restart_required"), ["unix_socket_mode", "loop_threads"], "reported, not applied")
        XCTAssertEqual(strings("applied"), ["max_connections", "tokens"])
        XCTAssertEqual(try hello("shop", "shop-token-one-0123456789")?.error?.code, .unauthorized, "old token refused")
        XCTAssertEqual(try hello("shop", "shop-token-two-9876543210")?.isOK, true, "new token accepted")
        XCTAssertEqual(kept.call(#""id":1,"op":"ping""#)?.isOK, true, "an authenticated connection stays")
        XCTAssertEqual(try RawClient(port: kamid.port).call(#""id":1,"op":"ping""#)?.error?.code, .unauthorized,
                       "still listening on the old port")

        // A token file that became world-readable is refused, and nothing changes.
        chmod(shopToken, 0o644)
        let refused = admin.call(#""id":2,"op":"reload""#)
        XCTAssertEqual(refused?.error?.code, .badRequest)
        XCTAssertTrue(refused?.error?.message.contains("chmod 600") ?? false, "\(String(describing: refused))")
        XCTAssertEqual(try hello("shop", "shop-token-two-9876543210")?.isOK, true, "previous tokens still in force")
        XCTAssertFalse(kamid.log.joined().contains("shop-token-two"), "tokens never reach the log")
    }
}
