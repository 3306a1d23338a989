import Foundation
import Glibc
import KamiCore
import KamiProtocol
import Synchronization
import XCTest

/// A sale on a data directory whose disk fills up: clients get UNAVAILABLE (never a success
/// that is not durable), kamid neither crashes nor lies, /readyz and STATUS= say why, and it
/// serves again by itself once space is freed.
final class DiskFullTests: XCTestCase {
    private func run(_ tool: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Fills the file system holding `directory` with a file until writes fail.
    private func fill(_ path: String) -> Int {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer { close(fd) }
        var total = 0
        for size in [1 << 20, 64 << 10, 4 << 10, 512] {
            let chunk = [UInt8](repeating: 0x5A, count: size)
            while true {
                let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                total += n
            }
        }
        fsync(fd)
        return total
    }

    func testASaleOnAFullDiskFailsCleanlyAndRecoversWhenSpaceReturns() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a small tmpfs needs root") }
        let directory = NSTemporaryDirectory() + "kamid-full-\(UUID().uuidString.prefix(8))"
        let mountPoint = directory + "/mnt"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        guard run("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=96m", "tmpfs", mountPoint]) == 0 else {
            throw XCTSkip("cannot mount a tmpfs here")
        }
        defer { _ = run("/usr/bin/umount", ["-l", mountPoint]) }
        let receiver = try NotifyReceiver(directory: directory)
        defer { receiver.stop() }
        let kamid = try Kamid(directory: mountPoint + "/data", arguments: ["--metrics-listen", "127.0.0.1:0"],
                              environment: ["NOTIFY_SOCKET": receiver.path])
        defer { kamid.kill9() }
        let metrics = try XCTUnwrap(kamid.log.first { $0.contains(">ready") }?.split(separator: " ")
            .first { $0.hasPrefix("metrics=") }.flatMap { UInt16($0.dropFirst(8)) })
        try kamid.stock(sku: "vip", count: 3_000)
        XCTAssertEqual(try httpExchange(port: metrics, "GET /readyz HTTP/1.1\r\n\r\n").status, "HTTP/1.1 200 OK")

        // One storefront issuing all along, recording every outcome.
        final class Outcomes: @unchecked Sendable {
            let lock = NSLock()
            var acknowledged: [String: [Int64]] = [:]
            var unavailable = 0
            var other: [String] = []
            var lastOK = Date.distantPast
        }
        let outcomes = Outcomes()
        let stop = Atomic<Bool>(false)
        let client = try kamid.storefront()
        let load = Thread {
            var n = 0
            while !stop.load(ordering: .relaxed) && n < 100_000 {
                n += 1
                let order = "full-\(n)"
                guard let reply = client.call(#""id":\#(n),"op":"issue","order":"\#(order)","user":"u\#(n)","sku":"vip","qty":1,"payment_ref":"p""#) else {
                    outcomes.lock.withLock { outcomes.other.append("\(order): no reply") }
                    return
                }
                outcomes.lock.withLock {
                    if let wire = reply.order, wire.state == .committed {
                        outcomes.acknowledged[order] = wire.codes.map(\.codeID)
                        outcomes.lastOK = Date()
                    } else if reply.error?.code == .unavailable {
                        outcomes.unavailable += 1
                    } else {
                        outcomes.other.append("\(order): \(String(describing: reply.result))")
                    }
                }
                usleep(2_000)
            }
        }
        load.start()
        usleep(500_000)

        // Fill the disk: issues start failing with UNAVAILABLE, readiness says why.
        let filled = fill(mountPoint + "/filler")
        XCTAssertGreaterThan(filled, 1 << 20)
        var deadline = Date().addingTimeInterval(30)
        while outcomes.lock.withLock({ outcomes.unavailable }) == 0 && Date() < deadline { usleep(50_000) }
        XCTAssertGreaterThan(outcomes.lock.withLock { outcomes.unavailable }, 0, "a full disk answers UNAVAILABLE")
        let notReady = try httpExchange(port: metrics, "GET /readyz HTTP/1.1\r\n\r\n")
        XCTAssertEqual(notReady.status, "HTTP/1.1 503 Service Unavailable")
        XCTAssertTrue(notReady.body.contains("disk") || notReady.body.contains("MiB free"), notReady.body)
        deadline = Date().addingTimeInterval(5)
        while !receiver.messages.contains(where: { $0.text.contains("health=NOT READY") }) && Date() < deadline {
            usleep(50_000)
        }
        XCTAssertTrue(receiver.messages.contains { $0.text.contains("health=NOT READY") }, "STATUS= says why")
        XCTAssertTrue(kamid.log.contains { $0.hasPrefix("<4>not-ready") }, "\(kamid.log.suffix(5))")

        // Free the space: kamid serves again by itself.
        let freedAt = Date()
        unlink(mountPoint + "/filler")
        deadline = Date().addingTimeInterval(30)
        while outcomes.lock.withLock({ outcomes.lastOK }) < freedAt && Date() < deadline { usleep(50_000) }
        XCTAssertGreaterThan(outcomes.lock.withLock { outcomes.lastOK }, freedAt, "issues succeed again")
        deadline = Date().addingTimeInterval(5)
        while try httpExchange(port: metrics, "GET /readyz HTTP/1.1\r\n\r\n").status != "HTTP/1.1 200 OK" && Date() < deadline {
            usleep(100_000)
        }
        XCTAssertEqual(try httpExchange(port: metrics, "GET /readyz HTTP/1.1\r\n\r\n").status, "HTTP/1.1 200 OK")
        stop.store(true, ordering: .relaxed)
        while !load.isFinished { usleep(10_000) }

        let (acknowledged, other) = outcomes.lock.withLock { (outcomes.acknowledged, outcomes.other) }
        XCTAssertEqual(other, [], "every reply was a success or UNAVAILABLE")
        XCTAssertEqual(try kamid.violations(), [])
        // Nothing acknowledged is lost, across a restart too.
        XCTAssertEqual(kamid.stop(), 0)
        let again = try Kamid(directory: mountPoint + "/data", arguments: ["--metrics-listen", "off"])
        defer { again.stop() }
        let check = try again.storefront()
        for (order, codes) in acknowledged {
            XCTAssertEqual(check.call(#""id":1,"op":"order","order":"\#(order)","user":"u\#(order.dropFirst(5))""#)?.order?.codes.map(\.codeID), codes, order)
        }
        XCTAssertEqual(try again.violations(), [])
        print("disk full: \(acknowledged.count) issues acknowledged, \(outcomes.unavailable) UNAVAILABLE while full, "
            + "filler \(filled >> 20) MiB")
    }
}
