import Foundation
import Glibc
import KamiCore
import KamiProtocol
import KamiWebhookReceiver
import XCTest

/// Signed webhooks from a live kamid to a receiver on a loopback port: configured in the
/// config file, delivered through a receiver that fails half the time, dead-lettered and
/// replayed with kamictl, and neither lost nor invented across a SIGKILL (docs/webhooks.md).
final class WebhookDaemonTests: XCTestCase {
    let secret = "whsec_daemon_test_9f8e7d6c5b4a"

    private func configure(_ directory: String, port: UInt16, extra: String = "") throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let secretFile = directory + "/shop.whsec"
        try (secret + "\n").write(toFile: secretFile, atomically: true, encoding: .utf8)
        chmod(secretFile, 0o600)
        let config = directory + "/kamid.conf"
        try """
            loop_threads = 2
            webhook_url.shop = http://127.0.0.1:\(port)/hooks/kami
            webhook_secret_file.shop = \(secretFile)
            webhook_backoff_ms = 20
            webhook_backoff_max_ms = 200
            \(extra)
            """.write(toFile: config, atomically: true, encoding: .utf8)
        return config
    }

    /// `threads` storefront connections each issue `perThread` orders named `<prefix><t>-<n>`;
    /// the ids acknowledged as committed.
    private static func sell(_ kamid: Kamid, prefix: String, threads: Int, perThread: Int) -> Set<String> {
        let acknowledged = Locked<Set<String>>([])
        let group = DispatchGroup()
        for t in 0..<threads {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                guard let client = try? kamid.storefront() else { return }
                for n in 0..<perThread {
                    let id = "\(prefix)\(t)-\(n)"
                    let reply = client.call(#""id":\#(n + 1),"op":"issue","order":"\#(id)","user":"u\#(t)-\#(n)","sku":"vip","qty":1,"payment_ref":"p""#)
                    if reply?.order?.state == .committed { acknowledged.withLock { _ = $0.insert(id) } }
                }
            }
        }
        group.wait()
        return acknowledged.withLock { $0 }
    }

    func testASaleIsToldToTheStorefrontSignedThroughAReceiverThatFailsHalfTheTime() throws {
        let directory = NSTemporaryDirectory() + "kamid-hooks-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let receiver = try WebhookReceiver(secret: secret, failEvery: 2)
        defer { receiver.stop() }
        let config = try configure(directory, port: receiver.port)
        let kamid = try Kamid(directory: directory + "/data", arguments: ["--config", config])
        try kamid.stock(sku: "vip", count: 400)
        let sold = Self.sell(kamid, prefix: "s", threads: 8, perThread: 40)
        XCTAssertEqual(sold.count, 320)
        for id in ["s0-0", "s1-1", "s2-2"] {
            let refund = try kamid.kamictl(["refund", id])
            XCTAssertEqual(refund.status, 0, refund.output)
        }
        XCTAssertTrue(receiver.wait(seconds: 30) { seen in Set(seen.map(\.id)).count >= 323 }, "\(receiver.accepted.count)")
        let accepted = receiver.accepted
        let delivered = Set(accepted.filter { $0.type == "order.delivered" }.compactMap { $0.body["order"] })
        XCTAssertEqual(delivered, sold)
        XCTAssertEqual(Set(accepted.filter { $0.type == "order.refunded" }.compactMap { $0.body["order"] }), ["s0-0", "s1-1", "s2-2"])
        XCTAssertEqual(receiver.badSignatures, 0)
        XCTAssertFalse(accepted.contains { $0.raw.contains("CODE-SECRET") }, "a code's secret in a webhook")
        XCTAssertFalse(kamid.log.joined(separator: "\n").contains(secret), "the signing secret in kamid's log")

        // kamictl sees the outbox: nothing dead, everything delivered.
        var failed = try kamid.kamictl(["webhooks", "failed"])
        XCTAssertEqual(failed.status, 0, failed.output)
        XCTAssertTrue(failed.output.hasPrefix("no failed events\n"), failed.output)
        let deadline = Date().addingTimeInterval(10)
        repeat {
            failed = try kamid.kamictl(["webhooks", "delivered", "--limit", "1"])
            if failed.output.contains("shop delivered 323") { break }
            usleep(50_000)
        } while Date() < deadline
        XCTAssertTrue(failed.output.contains("outbox: shop delivered 323"), failed.output)
        XCTAssertEqual(try kamid.violations(), [])
        XCTAssertEqual(kamid.stop(), 0)
    }

    func testDeadLettersAreListedAndReplayedWithKamictl() throws {
        let directory = NSTemporaryDirectory() + "kamid-hooks-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let receiver = try WebhookReceiver(secret: secret, failEvery: 1)
        defer { receiver.stop() }
        let config = try configure(directory, port: receiver.port, extra: "webhook_retry_for_ms = 1000")
        let kamid = try Kamid(directory: directory + "/data", arguments: ["--config", config])
        try kamid.stock(sku: "vip", count: 10)
        XCTAssertEqual(Self.sell(kamid, prefix: "d", threads: 1, perThread: 2).count, 2)
        var listed = (status: Int32(0), output: "")
        let deadline = Date().addingTimeInterval(15)
        repeat {
            listed = try kamid.kamictl(["webhooks", "failed"])
            if listed.output.contains("shop dead 2") { break }
            usleep(100_000)
        } while Date() < deadline
        XCTAssertTrue(listed.output.contains("order.delivered"), listed.output)
        XCTAssertTrue(listed.output.contains("HTTP 500"), listed.output)
        XCTAssertTrue(listed.output.contains("outbox: shop dead 2"), listed.output)
        XCTAssertTrue(kamid.log.contains { $0.contains("webhook-dead") }, "a dead letter is logged")
        XCTAssertEqual(try kamid.kamictl(["webhooks", "replay"]).status, 2, "ids or --all")
        XCTAssertEqual(try kamid.kamictl(["webhooks", "replay", "x1"]).status, 2)

        receiver.setFailEvery(0)
        let replay = try kamid.kamictl(["webhooks", "replay", "--all"])
        XCTAssertEqual(replay.output, "2 events queued again\n")
        XCTAssertTrue(receiver.wait(seconds: 10) { $0.count == 2 })
        XCTAssertEqual(Set(receiver.accepted.compactMap { $0.body["order"] }), ["d0-0", "d0-1"])
        XCTAssertEqual(try kamid.violations(), [])
        let audit = try kamid.kamictl(["audit", "verify"])
        XCTAssertEqual(audit.status, 0, audit.output)
        XCTAssertEqual(kamid.stop(), 0)
    }

    func testAKillNeitherLosesNorInventsAnEvent() throws {
        let directory = NSTemporaryDirectory() + "kamid-hooks-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The receiver is down (refuses everything) while kamid sells and is killed.
        let receiver = try WebhookReceiver(secret: secret, failEvery: 1)
        defer { receiver.stop() }
        let config = try configure(directory, port: receiver.port)
        var kamid = try Kamid(directory: directory + "/data", arguments: ["--config", config])
        try kamid.stock(sku: "vip", count: 2_000)
        let acknowledged = Locked<Set<String>>([])
        let first = kamid
        let selling = Thread {
            let sold = WebhookDaemonTests.sell(first, prefix: "k", threads: 4, perThread: 400)
            acknowledged.withLock { $0.formUnion(sold) }
        }
        selling.start()
        usleep(400_000)
        kamid.kill9()
        usleep(300_000)  // the sellers see their connections close
        kamid = try Kamid(directory: directory + "/data", arguments: ["--config", config])
        receiver.setFailEvery(0)
        let acked = acknowledged.withLock { $0 }
        XCTAssertFalse(acked.isEmpty)
        XCTAssertEqual(try kamid.violations(), [])
        // Every acknowledged delivery is told, once per event id, and nothing else is.
        XCTAssertTrue(receiver.wait(seconds: 30) { seen in acked.isSubset(of: Set(seen.compactMap { $0.body["order"] })) })
        usleep(500_000)
        let accepted = receiver.accepted
        var idsByOrder: [String: Set<Int64>] = [:]
        for event in accepted { idsByOrder[event.body["order"] ?? "", default: []].insert(event.id) }
        XCTAssertTrue(idsByOrder.values.allSatisfy { $0.count == 1 }, "one event per order: \(idsByOrder.filter { $0.value.count > 1 })")
        let client = try kamid.storefront()
        for order in idsByOrder.keys.sorted().prefix(2_000) where !acked.contains(order) {
            // Committed but its reply was lost in the kill: kamid has it, so the event is true.
            let user = "u" + order.dropFirst()
            XCTAssertEqual(client.call(#""id":1,"op":"order","order":"\#(order)","user":"\#(user)""#)?.order?.state, .committed, order)
        }
        XCTAssertEqual(kamid.stop(), 0)
    }

    func testAReloadChangesTheEventsAnEndpointTakes() throws {
        let directory = NSTemporaryDirectory() + "kamid-hooks-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let receiver = try WebhookReceiver(secret: secret, failEvery: 0)
        defer { receiver.stop() }
        let config = try configure(directory, port: receiver.port, extra: "webhook_events.shop = order.refunded")
        let kamid = try Kamid(directory: directory + "/data", arguments: ["--config", config])
        try kamid.stock(sku: "vip", count: 10)
        XCTAssertEqual(Self.sell(kamid, prefix: "a", threads: 1, perThread: 1).count, 1)
        usleep(600_000)
        XCTAssertTrue(receiver.accepted.isEmpty, "the endpoint takes refunds only")
        _ = try configure(directory, port: receiver.port, extra: "webhook_events.shop = order.refunded, order.delivered")
        let reload = try kamid.kamictl(["reload"])
        XCTAssertEqual(reload.status, 0, reload.output)
        XCTAssertTrue(reload.output.contains("webhooks"), reload.output)
        XCTAssertEqual(Self.sell(kamid, prefix: "b", threads: 1, perThread: 1).count, 1)
        XCTAssertTrue(receiver.wait(seconds: 10) { $0.count == 1 })
        XCTAssertEqual(receiver.accepted.first?.body["order"], "b0-0")

        // A new secret in the file is reported by the reload, and the next delivery is signed with it.
        let secretFile = directory + "/shop.whsec"
        try "whsec_rotated_0123456789abcdef\n".write(toFile: secretFile, atomically: true, encoding: .utf8)
        chmod(secretFile, 0o600)
        let rotated = try kamid.kamictl(["reload"])
        XCTAssertTrue(rotated.output.contains("webhook_secrets"), rotated.output)
        XCTAssertFalse(rotated.output.contains("whsec_rotated"), "the secret in kamictl's output")
        // An unreadable secret file keeps the whole old config (no half-applied reload).
        chmod(secretFile, 0o644)
        let loose = try kamid.kamictl(["reload"])
        XCTAssertNotEqual(loose.status, 0)
        XCTAssertTrue(loose.output.contains("readable by group or others"), loose.output)
        chmod(secretFile, 0o600)
        try (secret + "\n").write(toFile: secretFile, atomically: true, encoding: .utf8)
        chmod(secretFile, 0o600)
        XCTAssertEqual(try kamid.kamictl(["reload"]).status, 0)

        // A bad event name is refused and the old settings stay.
        _ = try configure(directory, port: receiver.port, extra: "webhook_events.shop = order.shipped")
        let bad = try kamid.kamictl(["reload"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("unknown event `order.shipped`"), bad.output)
        XCTAssertEqual(kamid.stop(), 0)
    }
}
