import Foundation
import KamiCore
import KamiEngine
import KamiStore
import XCTest

/// The webhook outbox as the engine writes it: one row per event and endpoint, in the
/// transaction of the change, filtered per endpoint, checked by verify (docs/webhooks.md).
final class OutboxTests: XCTestCase {
    private func rows(_ h: Harness) -> [OutboxRow] {
        h.engine.admin.barrier()
        return try! h.engine.storage.outboxAll()
    }

    private func object(_ row: OutboxRow) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(row.data.utf8))) as? [String: Any] ?? [:]
    }

    func testEachEventGetsOneRowPerEndpointThatTakesIt() throws {
        let h = Harness()
        let secrets = h.stockSku("vip", count: 10)
        XCTAssertTrue(rows(h).isEmpty, "no endpoint configured: events cost nothing")
        h.engine.webhooks.setRoutes([WebhookRoute(name: "shop"), WebhookRoute(name: "ops", events: [.orderRefunded])])

        let issued = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", units: 2, paymentRef: "p1").get()
        _ = try h.engine.storefront.reserveSync(order: "o2", user: "u2", sku: "vip").get()
        var all = rows(h)
        XCTAssertEqual(all.map(\.type), ["order.delivered"], "a reserve is not an event; an issue is")
        XCTAssertEqual(all.map(\.endpoint), ["shop"], "ops takes refunds only")
        let data = object(all[0])
        XCTAssertEqual(data["order"] as? String, "o1")
        XCTAssertEqual(data["sku"] as? String, "vip")
        XCTAssertEqual(data["units"] as? Int, 2)
        XCTAssertEqual(Set((data["code_ids"] as? [Int64]) ?? []), Set(issued.codes.map(\.codeID)))
        for secret in secrets.values { XCTAssertFalse(all[0].data.contains(secret), "a secret in an event") }
        XCTAssertEqual(all[0].state, .pending)
        XCTAssertEqual(all[0].attempts, 0)

        _ = try h.engine.storefront.commitSync(order: "o2", paymentRef: "p2").get()
        _ = try h.engine.storefront.refundSync(order: "o1").get()
        all = rows(h)
        XCTAssertEqual(all.map { "\($0.endpoint) \($0.type) \(object($0)["order"] as? String ?? "")" }, [
            "shop order.delivered o1", "shop order.delivered o2", "shop order.refunded o1", "ops order.refunded o1",
        ])
        XCTAssertEqual(Set(all.map(\.id)).count, all.count, "ids are unique")
        h.assertInvariants()

        // A repeat of a finished operation writes nothing (the reply is the first one's).
        _ = h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", units: 2, paymentRef: "p1")
        XCTAssertEqual(rows(h).count, 4)
    }

    func testAFailedChangeWritesNoEvent() throws {
        let h = Harness()
        h.stockSku("vip", count: 3)
        h.engine.webhooks.setRoutes([WebhookRoute(name: "shop")])
        // The disk refuses the next batch: the issue fails, and its event with it.
        h.engine.storage.writer.injectFailures(count: 1)
        XCTAssertNotNil(h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").failure)
        XCTAssertTrue(rows(h).isEmpty, "\(rows(h))")
        _ = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").get()
        XCTAssertEqual(rows(h).count, 1)
        h.assertInvariants()
    }

    func testResultsRetriesDeadLettersReplayAndPrune() throws {
        let h = Harness()
        h.stockSku("vip", count: 5)
        h.engine.webhooks.setRoutes([WebhookRoute(name: "shop")])
        for n in 0..<3 { _ = try h.engine.storefront.issueSync(order: "o\(n)", user: "u\(n)", sku: "vip", paymentRef: "p").get() }
        let now = h.clock.nowMs()
        let due = try h.engine.webhooks.due(endpoint: "shop", nowMs: now, limit: 10)
        XCTAssertEqual(due.count, 3)
        XCTAssertTrue(try h.engine.webhooks.due(endpoint: "other", nowMs: now, limit: 10).isEmpty)
        let done = DispatchSemaphore(value: 0)
        h.engine.webhooks.record([
            WebhookResult(id: due[0].id, outcome: .delivered),
            WebhookResult(id: due[1].id, outcome: .retry(atMs: now + 5_000), error: "HTTP 503"),
            WebhookResult(id: due[2].id, outcome: .dead, error: "connect: refused"),
        ]) { _ in done.signal() }
        done.wait()
        XCTAssertTrue(try h.engine.webhooks.due(endpoint: "shop", nowMs: now, limit: 10).isEmpty, "nothing due before the retry time")
        XCTAssertEqual(try h.engine.webhooks.due(endpoint: "shop", nowMs: now + 5_000, limit: 10).map(\.id), [due[1].id])
        let dead = try h.engine.webhooks.rows(state: .dead)
        XCTAssertEqual(dead.map(\.id), [due[2].id])
        XCTAssertEqual(dead[0].lastError, "connect: refused")
        XCTAssertEqual(dead[0].attempts, 1)
        // A late result for a row already delivered changes nothing.
        h.engine.webhooks.record([WebhookResult(id: due[0].id, outcome: .dead, error: "late")]) { _ in done.signal() }
        done.wait()
        XCTAssertEqual(try h.engine.webhooks.rows(state: .delivered).map(\.id), [due[0].id])
        h.assertInvariants()

        XCTAssertEqual(try h.engine.webhooks.replay(ids: [due[2].id, due[0].id], endpoint: nil, who: "test"), 1,
                       "only dead rows are replayed")
        let replayed = try h.engine.webhooks.due(endpoint: "shop", nowMs: h.clock.nowMs(), limit: 10)
        XCTAssertEqual(replayed.map(\.id), [due[2].id])
        XCTAssertEqual(replayed[0].attempts, 0, "a fresh retry budget")
        XCTAssertEqual(replayed[0].createdAtMs, due[2].createdAtMs, "the event's time stays: one id, one body")
        XCTAssertGreaterThanOrEqual(replayed[0].retryFromMs, h.clock.nowMs())
        XCTAssertEqual(try h.engine.webhooks.replay(ids: [], endpoint: nil, who: "test"), 0)

        h.clock.advance(ms: 10_000)
        XCTAssertEqual(try h.engine.webhooks.prune(beforeMs: h.clock.nowMs(), limit: 100), 1, "the delivered row")
        XCTAssertEqual(rows(h).count, 2)
        // Ids are never reused, even after the newest row is pruned.
        _ = try h.engine.storefront.issueSync(order: "o9", user: "u9", sku: "vip", paymentRef: "p").get()
        XCTAssertGreaterThan(rows(h).last!.id, due[2].id)
        let audit = try h.engine.storage.auditEntries(event: "webhook-results", limit: 10)
        XCTAssertTrue(audit.contains { $0.detail.contains("delivered=\(due[0].id) retry=\(due[1].id) dead=\(due[2].id)") },
                      "\(audit.map(\.detail))")
        h.assertInvariants()
    }

    func testVerifyFindsAnEventThatIsNotTrue() throws {
        let h = Harness()
        h.stockSku("vip", count: 3)
        h.engine.webhooks.setRoutes([WebhookRoute(name: "shop")])
        _ = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").get()
        _ = try h.engine.storefront.reserveSync(order: "o2", user: "u2", sku: "vip").get()
        h.engine.admin.barrier()
        h.close()
        // Doctored behind kamid's back: a refund event for an order that was never refunded,
        // and a delivery event for an order that is only reserved.
        let db = try Connection(path: h.directory + "/" + Store.fileName)
        try db.execute("""
            INSERT INTO webhook_outbox(endpoint, type, data, created_ms, retry_from_ms, state, attempts, next_ms, last_error)
            VALUES('shop', 'order.refunded', '{"order":"o1","sku":"vip","units":1,"state":"refunded","code_ids":[]}', 1, 1, 0, 0, 1, ''),
                  ('shop', 'order.delivered', '{"order":"o2","sku":"vip","units":1,"state":"committed","code_ids":[]}', 1, 1, 0, 0, 1, ''),
                  ('shop', 'order.delivered', '{"order":"o1","sku":"vip","units":1,"state":"committed","code_ids":[]}', 1, 1, 1, 0, 1, '')
            """)
        h.reopen()
        let problems = try h.engine.admin.verify().filter { $0.invariant == "outbox" }.map(\.detail)
        XCTAssertEqual(problems.count, 5, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("delivered after 0 attempts") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("order o1 is committed") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("order o2 is reserved") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("a second order.delivered event for order o1") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("delivered without a done time") }, "\(problems)")
    }

    func testAPaidOrderHeldForAnOperatorAndReleasedUnfilledIsToldSoTheShopRefunds() throws {
        let h = Harness()
        h.webhookRoutes = [WebhookRoute(name: "shop")]
        h.reopen()
        h.stockSku("gift", count: 3)
        _ = try h.engine.admin.setSku(SkuDefinition(key: "gift", manualDelivery: true))
        _ = try h.engine.storefront.issueSync(order: "m1", user: "u1", sku: "gift", paymentRef: "pay").get()
        let denied = ResultBox<OrderReply>()
        h.engine.deny(order: "m1") { denied.set($0) }
        XCTAssertEqual(try denied.wait().get().state, .released)
        let types = rows(h).map { "\($0.type) \(object($0)["order"] as? String ?? "")" }
        XCTAssertEqual(types, ["order.held m1", "order.released m1"])
        h.assertInvariants()
    }

    func testOrderDataIsJSONWhateverTheIdsHold() throws {
        for id in ["o-1", #"o"1"#, #"o\1"#, "订单-1", "o\u{1}x"] {
            let order = Order(seq: 7, orderID: id, user: "u", sku: 1, units: 2, state: .committed, paymentRef: "p",
                              codes: [], ttlMs: 0, expiresAtMs: 0, createdAtMs: 0, updatedAtMs: 0)
            let text = OutboxData.order(order, skuKey: #"v"ip"#, codes: [3, 4])
            let object = try XCTUnwrap((try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any], text)
            XCTAssertEqual(object["order"] as? String, id, text)
            XCTAssertEqual(object["sku"] as? String, #"v"ip"#)
            XCTAssertEqual(object["units"] as? Int, 2)
            XCTAssertEqual(object["state"] as? String, "committed")
            XCTAssertEqual(object["code_ids"] as? [Int], [3, 4])
        }
    }
}
