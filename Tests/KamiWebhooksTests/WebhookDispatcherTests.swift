import Foundation
import KamiCore
import KamiCrypto
import KamiEngine
import KamiHTTP
import KamiStore
import KamiWebhooks
import KamiWebhookReceiver
import XCTest

/// The dispatcher against a real receiver on a loopback port: signed deliveries, retries of
/// the ones the receiver refused, dead letters and their replay, stock-low events.
final class WebhookDispatcherTests: XCTestCase {
    let secret = "whsec_dispatcher_test_0123456789"

    private func engine(_ directory: String) throws -> Engine {
        try Engine(config: EngineConfig(directory: directory, sealer: Sealer(key: .random())))
    }

    private func stock(_ engine: Engine, sku: String, count: Int, batch: Int = 0) throws {
        _ = try engine.admin.setSku(SkuDefinition(key: sku, name: sku, priceCents: 990))
        let rows = (0..<count).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("SECRET-\(sku)-\(batch)-\($0)-x9"))) }
        let report = try engine.admin.importCodes(sku: sku, source: ArrayRowSource(rows), label: "test")
        XCTAssertEqual(report.imported, count)
    }

    private func settings(retryForMs: Int64 = 60_000) -> WebhookSettings {
        var settings = WebhookSettings()
        settings.backoffMs = 10
        settings.backoffMaxMs = 100
        settings.retryForMs = retryForMs
        settings.pollMs = 20
        return settings
    }

    func testEveryDeliveryArrivesSignedOnceAcceptedThoughTheReceiverFailsHalfTheTime() throws {
        let directory = NSTemporaryDirectory() + "kami-webhooks-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try engine(directory)
        defer { engine.close() }
        let orders = 2_000
        try stock(engine, sku: "vip", count: orders)
        let receiver = try WebhookReceiver(secret: secret, failEvery: 2)
        defer { receiver.stop() }
        let url = HTTPURL("http://127.0.0.1:\(receiver.port)/hooks")!
        let dispatcher = WebhookDispatcher(
            engine: engine, endpoints: [WebhookEndpoint(name: "shop", url: url, secret: Array(secret.utf8))],
            settings: settings()) { _, _ in }
        dispatcher.start()
        defer { dispatcher.stop() }

        let started = Date()
        let group = DispatchGroup()
        for n in 0..<orders {
            group.enter()
            engine.storefront.issue(order: "o\(n)", user: "u\(n)", sku: "vip", units: 1, paymentRef: "p\(n)") { _ in group.leave() }
        }
        group.wait()
        let issuedIn = Date().timeIntervalSince(started)
        XCTAssertTrue(receiver.wait(seconds: 60) { Set($0.map(\.id)).count >= orders }, "\(Set(receiver.accepted.map(\.id)).count) of \(orders)")
        let elapsed = Date().timeIntervalSince(started)
        let accepted = receiver.accepted
        XCTAssertEqual(Set(accepted.compactMap { $0.body["order"] }), Set((0..<orders).map { "o\($0)" }))
        XCTAssertEqual(Set(accepted.map(\.type)), ["order.delivered"])
        XCTAssertEqual(receiver.badSignatures, 0)
        XCTAssertGreaterThanOrEqual(receiver.requests, orders * 2 - 2, "every other request was refused and retried")
        XCTAssertFalse(accepted.contains { $0.raw.contains("SECRET-") }, "a secret in a webhook")
        // Their outcomes reach the outbox: every row delivered, none dead.
        var counts: [OutboxRow.State: Int] = [:]
        let deadline = Date().addingTimeInterval(10)
        repeat {
            counts = [:]
            for row in try engine.webhooks.counts() { counts[row.state, default: 0] += row.count }
            if counts[.delivered] == orders { break }
            usleep(20_000)
        } while Date() < deadline
        XCTAssertEqual(counts, [.delivered: orders])
        XCTAssertEqual(dispatcher.counters.delivered, orders)
        XCTAssertEqual(dispatcher.counters.dead, 0)
        XCTAssertGreaterThanOrEqual(dispatcher.counters.failed, orders - 1)
        engine.admin.barrier()
        XCTAssertEqual(try engine.admin.verify(), [])
        print("webhooks: \(orders) orders issued in \(String(format: "%.2f", issuedIn)) s, all delivered in "
            + "\(String(format: "%.2f", elapsed)) s (\(Int(Double(orders) / elapsed)) events/s) through a receiver failing "
            + "every other request (\(receiver.requests) requests)")
    }

    func testDeadLettersAfterTheRetryWindowAndAReplayDeliversThem() throws {
        let directory = NSTemporaryDirectory() + "kami-webhooks-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try engine(directory)
        defer { engine.close() }
        try stock(engine, sku: "vip", count: 10)
        let receiver = try WebhookReceiver(secret: secret, failEvery: 1)
        defer { receiver.stop() }
        let logged = Locked<[String]>([])
        let url = HTTPURL("http://127.0.0.1:\(receiver.port)/hooks")!
        let dispatcher = WebhookDispatcher(
            engine: engine, endpoints: [WebhookEndpoint(name: "shop", url: url, secret: Array(secret.utf8))],
            settings: settings(retryForMs: 1_000)) { event, fields in
            logged.withLock { $0.append(event + " " + fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")) }
        }
        dispatcher.start()
        defer { dispatcher.stop() }
        for n in 0..<3 { _ = try engine.storefront.issueSync(order: "o\(n)", user: "u\(n)", sku: "vip", paymentRef: "p").get() }
        var dead: [OutboxRow] = []
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            dead = try engine.webhooks.rows(state: .dead)
            if dead.count == 3 { break }
            usleep(50_000)
        }
        XCTAssertEqual(dead.count, 3)
        XCTAssertTrue(dead.allSatisfy { $0.attempts >= 2 && $0.lastError == "HTTP 500" }, "\(dead.map { ($0.attempts, $0.lastError) })")
        XCTAssertTrue(receiver.accepted.isEmpty)
        XCTAssertEqual(logged.withLock { $0 }.filter { $0.hasPrefix("webhook-dead") }.count, 3)
        XCTAssertFalse(logged.withLock { $0 }.joined().contains(secret), "the signing secret in a log line")

        receiver.setFailEvery(0)
        XCTAssertEqual(try engine.webhooks.replay(ids: [], endpoint: "shop", who: "test"), 3)
        XCTAssertTrue(receiver.wait(seconds: 10) { $0.count == 3 })
        XCTAssertEqual(Set(receiver.accepted.map(\.id)), Set(dead.map(\.id)), "the same event ids: receivers dedupe on them")
        engine.admin.barrier()
        XCTAssertEqual(try engine.admin.verify(), [])
    }

    func testStockUnderTheLowWaterMarkIsOneEventUntilItIsBackOver() throws {
        let directory = NSTemporaryDirectory() + "kami-webhooks-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try engine(directory)
        defer { engine.close() }
        try stock(engine, sku: "vip", count: 6)
        _ = try engine.upstream.setSourcing(sku: "vip", lowWater: 5)
        let receiver = try WebhookReceiver(secret: secret, failEvery: 0)
        defer { receiver.stop() }
        let url = HTTPURL("http://127.0.0.1:\(receiver.port)/hooks")!
        let dispatcher = WebhookDispatcher(
            engine: engine,
            endpoints: [WebhookEndpoint(name: "ops", url: url, secret: Array(secret.utf8), events: [.stockLow])],
            settings: settings()) { _, _ in }
        dispatcher.start()
        defer { dispatcher.stop() }
        for n in 0..<3 { _ = try engine.storefront.issueSync(order: "o\(n)", user: "u\(n)", sku: "vip", paymentRef: "p").get() }
        XCTAssertTrue(receiver.wait(seconds: 10) { !$0.isEmpty })
        usleep(1_500_000)  // more than one watch period: no second event while it stays low
        let events = receiver.accepted
        XCTAssertEqual(events.map(\.type), ["stock.low"], "orders are not sent to an endpoint that takes stock.low only")
        XCTAssertEqual(events.first?.body["sku"], "vip")
        XCTAssertEqual(events.first?.body["low_water"], "5")
        XCTAssertTrue(["2", "3", "4"].contains(events.first?.body["available"] ?? ""), "\(events.first?.body ?? [:])")
        // Restocked over the mark and down again: a second event.
        try stock(engine, sku: "vip", count: 5, batch: 1)
        usleep(1_200_000)
        for n in 3..<8 { _ = try engine.storefront.issueSync(order: "o\(n)", user: "u\(n)", sku: "vip", paymentRef: "p").get() }
        XCTAssertTrue(receiver.wait(seconds: 10) { $0.count == 2 }, "\(receiver.accepted.map(\.body))")
    }

    func testABreakerOpeningIsAnEvent() throws {
        let directory = NSTemporaryDirectory() + "kami-webhooks-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try engine(directory)
        defer { engine.close() }
        let receiver = try WebhookReceiver(secret: secret, failEvery: 0)
        defer { receiver.stop() }
        let url = HTTPURL("http://127.0.0.1:\(receiver.port)/hooks")!
        let dispatcher = WebhookDispatcher(
            engine: engine, endpoints: [WebhookEndpoint(name: "ops", url: url, secret: Array(secret.utf8))],
            settings: settings()) { _, _ in }
        dispatcher.start()
        defer { dispatcher.stop() }
        dispatcher.breakerOpened(supplier: "acme")
        XCTAssertTrue(receiver.wait(seconds: 10) { !$0.isEmpty })
        XCTAssertEqual(receiver.accepted.first?.type, "supplier.breaker_opened")
        XCTAssertEqual(receiver.accepted.first?.body["supplier"], "acme")
        let audit = try engine.storage.auditEntries(event: "webhook-event", limit: 5)
        XCTAssertEqual(audit.map(\.subject), ["supplier:acme"])
    }
}
