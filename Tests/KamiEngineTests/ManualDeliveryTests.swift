import Foundation
import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore
import XCTest

/// Manual delivery (手动发货): a SKU whose paid orders wait in the review queue until an
/// operator hands out their codes, by hand or from the pool.
final class ManualDeliveryTests: XCTestCase {
    private func deliver(_ h: Harness, _ order: String, _ items: [DeliveredItem], cost: Int64 = 0) -> Result<OrderReply, KamiError> {
        let box = ResultBox<OrderReply>()
        h.engine.deliver(order: order, items: items, costCents: cost, client: "operator") { box.set($0) }
        return box.wait()
    }

    private func approve(_ h: Harness, _ order: String) -> Result<OrderReply, KamiError> {
        let box = ResultBox<OrderReply>()
        h.engine.approve(order: order) { box.set($0) }
        return box.wait()
    }

    private func manualSku(_ h: Harness, _ key: String = "gift", stock: Int = 0, reviewTTLMs: Int64? = nil) {
        h.stockSku(key, count: stock)
        _ = try! h.engine.admin.setSku(SkuDefinition(key: key, manualDelivery: true, reviewTTLMs: reviewTTLMs))
    }

    func testAPaidOrderWaitsForTheOperatorAndTheBuyerGetsWhatWasDelivered() throws {
        let h = Harness()
        manualSku(h, stock: 3)
        let queued = try h.engine.storefront.issueSync(order: "m1", user: "u1", sku: "gift", units: 2, paymentRef: "pay-1").get()
        XCTAssertEqual(queued.state, .review)
        XCTAssertEqual(queued.codeIDs, [], "a manual-delivery order takes nothing from the pool")
        XCTAssertEqual(queued.expiresAtMs, h.clock.nowMs() + h.engine.reviewTTLMs)
        XCTAssertEqual(try h.engine.queries.stock(sku: "gift").available, 3)
        XCTAssertEqual(h.engine.reviewQueue().map(\.orderID), ["m1"])
        // A retry of the payment answers the waiting order; another payment conflicts.
        XCTAssertEqual(try h.engine.storefront.issueSync(order: "m1", user: "u1", sku: "gift", units: 2, paymentRef: "pay-1").get().state,
                       .review)
        XCTAssertEqual(h.engine.storefront.issueSync(order: "m1", user: "u1", sku: "gift", units: 2, paymentRef: "pay-2").failure?.code,
                       .conflict)

        let items = [DeliveredItem(secret: Secret("HAND-A"), cardNumber: "C-1"), DeliveredItem(secret: Secret("HAND-B"))]
        let delivered = try deliver(h, "m1", items, cost: 420).get()
        XCTAssertEqual(delivered.state, .committed)
        XCTAssertEqual(delivered.codeIDs.count, 2)
        let seen = try h.engine.queries.order("m1")
        XCTAssertEqual(seen.state, .committed)
        XCTAssertEqual(Set(seen.codes.map { $0.secret.reveal() }), ["HAND-A", "HAND-B"])
        XCTAssertEqual(seen.codes.first { $0.secret.reveal() == "HAND-A" }?.cardNumber, "C-1")
        XCTAssertEqual(try h.engine.queries.stock(sku: "gift").available, 3, "the pool was not touched")
        XCTAssertEqual(h.engine.reviewQueue(), [])
        // Delivered once: a second delivery, or an approve, finds nothing waiting.
        XCTAssertEqual(deliver(h, "m1", [DeliveredItem(secret: Secret("HAND-C")), DeliveredItem(secret: Secret("HAND-D"))])
            .failure?.code, .invalidState)
        XCTAssertEqual(approve(h, "m1").failure?.code, .invalidState)
        h.assertInvariants()

        // It is all durable: after a restart the buyer still sees the same codes.
        h.reopen()
        XCTAssertEqual(try h.engine.queries.order("m1").codes.map { $0.secret.reveal() }.sorted(), ["HAND-A", "HAND-B"])
        h.assertInvariants()
        let audit = try h.engine.storage.auditEntries(event: "deliver-manual", user: nil, limit: 10)
        XCTAssertEqual(audit.count, 1)
        XCTAssertTrue(audit[0].detail.contains("cost=420"), audit[0].detail)
        XCTAssertFalse(audit[0].detail.contains("HAND-"), "the audit never holds a secret")
    }

    func testADeliveryIsCheckedBeforeAnythingIsStored() throws {
        let h = Harness()
        let stocked = h.stockSku("vip", count: 1)
        manualSku(h)
        _ = try h.engine.storefront.issueSync(order: "m1", user: "u1", sku: "gift", units: 2, paymentRef: "p").get()
        func refused(_ items: [DeliveredItem], _ code: ErrorCode, _ words: String, line: UInt = #line) {
            let error = deliver(h, "m1", items).failure
            XCTAssertEqual(error?.code, code, "\(String(describing: error))", line: line)
            XCTAssertTrue(error?.message.contains(words) ?? false, error?.message ?? "", line: line)
            for item in items where !item.secret.bytes.isEmpty {
                XCTAssertFalse(error?.message.contains(item.secret.reveal()) ?? true, "errors never echo a secret", line: line)
            }
        }
        refused([DeliveredItem(secret: Secret("ONLY-ONE"))], .badRequest, "2 units")
        refused([DeliveredItem(secret: Secret("SAME")), DeliveredItem(secret: Secret("SAME"))], .badRequest, "repeats")
        refused([DeliveredItem(secret: Secret("FRESH")), DeliveredItem(secret: Secret(stocked.values.first!))], .conflict,
                "already stored")
        refused([DeliveredItem(secret: Secret("")), DeliveredItem(secret: Secret("X"))], .badRequest, "code 1")
        refused([DeliveredItem(secret: Secret(String(repeating: "s", count: Limits.secretBytesMax + 1))),
                 DeliveredItem(secret: Secret("X"))], .badRequest, "code 1")
        refused([DeliveredItem(secret: Secret("A"), cardNumber: String(repeating: "c", count: Limits.cardNumberBytesMax + 1)),
                 DeliveredItem(secret: Secret("B"))], .badRequest, "card number")
        XCTAssertEqual(deliver(h, "nope", [DeliveredItem(secret: Secret("A"))]).failure?.code, .notFound)
        XCTAssertEqual(deliver(h, "m1", [DeliveredItem(secret: Secret("A")), DeliveredItem(secret: Secret("B"))], cost: -1)
            .failure?.code, .badRequest)
        XCTAssertEqual(try h.engine.queries.order("m1").state, .review, "a refused delivery changes nothing")

        // A code delivered once can never be delivered again, to anyone.
        _ = try deliver(h, "m1", [DeliveredItem(secret: Secret("ONCE-1")), DeliveredItem(secret: Secret("ONCE-2"))]).get()
        _ = try h.engine.storefront.issueSync(order: "m2", user: "u2", sku: "gift", paymentRef: "p").get()
        XCTAssertEqual(deliver(h, "m2", [DeliveredItem(secret: Secret("ONCE-2"))]).failure?.code, .conflict)
        // An unpaid hold cannot be delivered: it is not in the review queue.
        _ = try h.engine.storefront.reserveSync(order: "m3", user: "u3", sku: "gift").get()
        XCTAssertEqual(deliver(h, "m3", [DeliveredItem(secret: Secret("Z"))]).failure?.code, .invalidState)
        // An ordinary SKU's committed order neither.
        _ = try h.engine.storefront.issueSync(order: "v1", user: "u1", sku: "vip", paymentRef: "p").get()
        XCTAssertEqual(deliver(h, "v1", [DeliveredItem(secret: Secret("Z"))]).failure?.code, .invalidState)
        h.assertInvariants()
    }

    func testAReservedHoldTakesNothingAndJoinsTheQueueWhenPaid() throws {
        let h = Harness()
        manualSku(h, stock: 2)
        let held = try h.engine.storefront.reserveSync(order: "r1", user: "u1", sku: "gift", ttlMs: 60_000).get()
        XCTAssertEqual(held.state, .reserved)
        XCTAssertEqual(held.codeIDs, [])
        XCTAssertEqual(try h.engine.queries.stock(sku: "gift").reserved, 0)
        let paid = try h.engine.storefront.commitSync(order: "r1", paymentRef: "pay").get()
        XCTAssertEqual(paid.state, .review)
        XCTAssertEqual(paid.paymentRef, "pay")
        // The operator chooses the pool this time.
        let approved = try approve(h, "r1").get()
        XCTAssertEqual(approved.state, .committed)
        XCTAssertEqual(approved.codeIDs.count, 1)
        XCTAssertEqual(try h.engine.queries.stock(sku: "gift").issued, 1)
        XCTAssertEqual(try h.engine.queries.order("r1").codes.count, 1)
        h.assertInvariants()

        // A hold that expired before payment is queued all the same when paid late.
        _ = try h.engine.storefront.reserveSync(order: "r2", user: "u2", sku: "gift", ttlMs: 1_000).get()
        h.clock.advance(ms: 1_000)
        XCTAssertEqual(h.engine.storefront.expireDue(), 1)
        h.engine.admin.barrier()
        XCTAssertEqual(try h.engine.storefront.commitSync(order: "r2", paymentRef: "late").get().state, .review)
        _ = try deliver(h, "r2", [DeliveredItem(secret: Secret("LATE-1"))]).get()
        XCTAssertEqual(try h.engine.queries.order("r2").codes.map { $0.secret.reveal() }, ["LATE-1"])
        h.assertInvariants()
    }

    func testFromThePoolWhenEmptySaysSoAndTheOrderKeepsWaiting() throws {
        let h = Harness()
        manualSku(h)
        _ = try h.engine.storefront.issueSync(order: "m1", user: "u1", sku: "gift", paymentRef: "p").get()
        let error = approve(h, "m1").failure
        XCTAssertEqual(error?.code, .soldOut)
        XCTAssertTrue(error?.message.contains("kamictl deliver m1") ?? false, error?.message ?? "")
        XCTAssertEqual(try h.engine.queries.order("m1").state, .review)
        _ = try deliver(h, "m1", [DeliveredItem(secret: Secret("AFTER-ALL"))]).get()
        h.assertInvariants()
    }

    func testAnOrderNobodyDeliversIsReleasedAfterTheSkusReviewTime() throws {
        let h = Harness()
        manualSku(h, reviewTTLMs: 5_000)
        XCTAssertEqual(h.engine.reviewTTLMs(sku: "gift"), 5_000)
        XCTAssertEqual(h.engine.reviewTTLMs(sku: "nope"), h.engine.reviewTTLMs)
        let queued = try h.engine.storefront.issueSync(order: "m1", user: "u1", sku: "gift", paymentRef: "p").get()
        XCTAssertEqual(queued.expiresAtMs, h.clock.nowMs() + 5_000)
        h.clock.advance(ms: 4_999)
        XCTAssertEqual(h.engine.storefront.expireDue(), 0)
        h.clock.advance(ms: 1)
        XCTAssertEqual(h.engine.storefront.expireDue(), 1)
        h.engine.admin.barrier()
        XCTAssertEqual(try h.engine.queries.order("m1").state, .released, "the storefront refunds it")
        XCTAssertEqual(deliver(h, "m1", [DeliveredItem(secret: Secret("TOO-LATE"))]).failure?.code, .invalidState)
        // The user's limit and hold slot came back: the same user can order again.
        _ = try h.engine.storefront.issueSync(order: "m2", user: "u1", sku: "gift", paymentRef: "p2").get()
        h.assertInvariants()
    }

    func testTheSettingIsValidatedAndSurvivesARestart() throws {
        let h = Harness()
        manualSku(h, reviewTTLMs: 120_000)
        func refused(_ definition: SkuDefinition, _ words: String, line: UInt = #line) {
            do {
                _ = try h.engine.admin.setSku(definition)
                XCTFail("accepted", line: line)
            } catch {
                XCTAssertEqual(error.code, .badRequest, line: line)
                XCTAssertTrue(error.message.contains(words), error.message, line: line)
            }
        }
        refused(SkuDefinition(key: "gift", reviewTTLMs: 10), "review")
        refused(SkuDefinition(key: "gift", reviewTTLMs: Limits.reviewTTLMsMax + 1), "review")
        h.stockSku("a", count: 1)
        h.stockSku("b", count: 1)
        _ = try h.engine.admin.setSku(SkuDefinition(key: "pair", components: [(key: "a", units: 1), (key: "b", units: 1)]))
        refused(SkuDefinition(key: "pair", manualDelivery: true), "bundle")
        // Other changes keep the setting; 0 goes back to the daemon's review time.
        XCTAssertEqual(try h.engine.admin.setSku(SkuDefinition(key: "gift", priceCents: 1)).manualDelivery, true)
        h.reopen()
        let sku = try XCTUnwrap(h.engine.queries.skus().first { $0.key == "gift" })
        XCTAssertEqual(sku.manualDelivery, true)
        XCTAssertEqual(sku.reviewTTLMs, 120_000)
        XCTAssertEqual(try h.engine.admin.setSku(SkuDefinition(key: "gift", reviewTTLMs: 0)).reviewTTLMs, 0)
        XCTAssertEqual(h.engine.reviewTTLMs(sku: "gift"), h.engine.reviewTTLMs)
        XCTAssertEqual(try h.engine.admin.setSku(SkuDefinition(key: "gift", manualDelivery: false)).manualDelivery, false)
        // Off again: an order is fulfilled from the pool at once.
        h.stockSku("gift", count: 1)
        XCTAssertEqual(try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "gift", paymentRef: "p").get().state,
                       .committed)
        let events = try h.engine.storage.auditEntries(event: "sku-update", user: nil, limit: 100).map(\.detail)
        XCTAssertTrue(events.contains { $0.contains("manual=true") }, "\(events)")
        h.assertInvariants()
    }

    func testASecretStoredSinceTheCheckIsRefusedInTheWrite() throws {
        let h = Harness()
        let stocked = h.stockSku("vip", count: 1)
        manualSku(h)
        let queued = try h.engine.storefront.issueSync(order: "m1", user: "u1", sku: "gift", paymentRef: "p").get()
        // The write itself, as if the check had passed just before a supplier stored the code.
        var order = try XCTUnwrap(h.engine.storage.loadSnapshot().orders.first { $0.orderID == "m1" })
        order = order.moved(to: .committed, atMs: h.clock.nowMs())
        let gift = try XCTUnwrap(h.engine.queries.skus().first { $0.key == "gift" })
        let delivery = UpstreamDelivery(
            manual: order, items: [(gift.id, DeliveredItem(secret: Secret(stocked.values.first!)))],
            sealer: h.config().sealer, audit: AuditEvent("deliver-manual", subject: "order:m1", detail: "state=\(queued.state)"),
            source: "manual:test", costCents: 0)
        let box = ResultBox<MutationOutcome>()
        h.engine.storage.writer.submit(.deliverUpstream(delivery)) { box.set($0) }
        let error = box.wait().failure
        XCTAssertEqual(error?.code, .conflict, "\(String(describing: error))")
        XCTAssertFalse(error?.message.contains(stocked.values.first!) ?? true)
        XCTAssertEqual(try h.engine.queries.order("m1").state, .review, "nothing was written")
        XCTAssertEqual(try h.engine.queries.stock(sku: "gift").imported, 0)
        h.assertInvariants()
    }

    func testPaidOrdersWaitingForTheOperatorAreNotUnpaidHolds() throws {
        let h = Harness()
        manualSku(h, stock: 5)
        // More paid manual orders than a user may have unpaid holds: all accepted.
        for n in 0..<(Limits.pendingHoldsPerUserMax + 5) {
            XCTAssertEqual(try h.engine.storefront.issueSync(order: "m\(n)", user: "u1", sku: "gift", paymentRef: "p\(n)").get().state,
                           .review)
        }
        // Unpaid holds still count, and paying one frees its place.
        for n in 0..<Limits.pendingHoldsPerUserMax {
            _ = try h.engine.storefront.reserveSync(order: "r\(n)", user: "u1", sku: "gift").get()
        }
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "r-over", user: "u1", sku: "gift").failure?.code, .limitReached)
        XCTAssertEqual(try h.engine.storefront.commitSync(order: "r0", paymentRef: "paid").get().state, .review)
        _ = try h.engine.storefront.reserveSync(order: "r-over", user: "u1", sku: "gift").get()
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "r-over2", user: "u1", sku: "gift").failure?.code, .limitReached)
        // Delivering or denying paid ones never frees an unpaid place it did not take.
        _ = try deliver(h, "m0", [DeliveredItem(secret: Secret("PAID-0"))]).get()
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "r-over2", user: "u1", sku: "gift").failure?.code, .limitReached)
        h.assertInvariants()
        h.reopen()
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "r-over2", user: "u1", sku: "gift").failure?.code, .limitReached,
                       "rebuilt at start the same way")
        XCTAssertEqual(try h.engine.storefront.issueSync(order: "m-after", user: "u1", sku: "gift", paymentRef: "p").get().state,
                       .review)
        h.assertInvariants()
    }

    func testAHoldTakenWhileManualIsPaidFromThePoolOnceManualIsOff() throws {
        let h = Harness()
        manualSku(h, stock: 1)
        _ = try h.engine.storefront.reserveSync(order: "r1", user: "u1", sku: "gift").get()
        _ = try h.engine.storefront.reserveSync(order: "r2", user: "u2", sku: "gift").get()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "gift", manualDelivery: false))
        let paid = try h.engine.storefront.commitSync(order: "r1", paymentRef: "pay").get()
        XCTAssertEqual(paid.state, .committed)
        XCTAssertEqual(paid.codes.count, 1, "from the pool, not sent to a supplier")
        let error = h.engine.storefront.commitSync(order: "r2", paymentRef: "pay").failure
        XCTAssertEqual(error?.code, .soldOut)
        XCTAssertTrue(error?.message.contains("refund") ?? false, error?.message ?? "")
        XCTAssertEqual(try h.engine.queries.order("r2").state, .reserved)
        h.assertInvariants()
    }
}
