import Foundation
import KamiCore
import KamiCrypto
import KamiEngine
import KamiLedger
import KamiStore
import XCTest

/// Activation: an issued code moves to `used` (never back), by its buyer's storefront or by a
/// brand's page holding the link's signed token; entitlements show what a buyer's page needs.
final class ActivationTests: XCTestCase {
    func testTheBuyerActivatesACodeOnceAndNeverBack() throws {
        let h = Harness()
        h.stockSku("vip", count: 5)
        h.engine.webhooks.setRoutes([WebhookRoute(name: "shop", events: [.codeActivated])])
        let order = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", units: 2, paymentRef: "p").get()
        let first = order.codeIDs[0]

        XCTAssertEqual(h.engine.storefront.activateSync(order: "o1", user: "u2").failure?.code, .notFound,
                       "another user's order is NOT_FOUND, like an unknown one")
        XCTAssertEqual(h.engine.storefront.activateSync(order: "o1", user: "u1", codeIDs: [999_999]).failure?.code, .notFound)
        XCTAssertEqual(h.engine.storefront.activateSync(order: "nope", user: "u1").failure?.code, .notFound)

        h.clock.advance(ms: 1_000)
        let activated = try h.engine.storefront.activateSync(order: "o1", user: "u1", codeIDs: [first]).get()
        XCTAssertEqual(activated.items.map(\.codeID), [first])
        XCTAssertEqual(activated.items[0].usedAtMs, h.clock.nowMs())
        XCTAssertTrue(activated.items[0].now)
        let again = try h.engine.storefront.activateSync(order: "o1", user: "u1", codeIDs: [first]).get()
        XCTAssertFalse(again.items[0].now, "a repeat is not an error, and changes nothing")
        XCTAssertEqual(again.items[0].usedAtMs, activated.items[0].usedAtMs)

        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").used, 1)
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").issued, 1)
        // The move back does not exist.
        XCTAssertFalse(CodeState.used.canMove(to: .issued))
        XCTAssertFalse(CodeState.used.canMove(to: .available))
        h.assertInvariants()

        // Every code of the order when none is named; the used one keeps its time.
        let all = try h.engine.storefront.activateSync(order: "o1", user: "u1").get()
        XCTAssertEqual(all.items.map(\.now), [false, true])
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").used, 2)
        let audit = try h.engine.storage.auditEntries(event: "activate", limit: 10)
        XCTAssertEqual(audit.count, 2)
        h.engine.admin.barrier()
        XCTAssertEqual(try h.engine.storage.outboxAll().map(\.type), ["code.activated", "code.activated"])

        // A refund voids used codes too; the activations stay on record and verify agrees.
        _ = try h.engine.storefront.refundSync(order: "o1").get()
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").used, 0)
        XCTAssertEqual(h.engine.storefront.activateSync(order: "o1", user: "u1").failure?.code, .invalidState)
        h.assertInvariants()
        h.reopen()
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").voided, 2, "counts rebuilt from disk")
        h.assertInvariants()
    }

    func testABrandRedeemsTheSignedTokenOfTheLinkAndAForgedOrStaleOneIsRefused() throws {
        let h = Harness()
        h.stockSku("card", count: 3)
        _ = try h.engine.admin.setSku(SkuDefinition(key: "card", activationURLTemplate: "https://brand.example/redeem?t={token}&o={order}"))
        let order = try h.engine.storefront.issueSync(order: "o#1", user: "u1", sku: "card", paymentRef: "p").get()
        let link = try XCTUnwrap(order.codes.first?.activationURL)
        XCTAssertTrue(link.hasPrefix("https://brand.example/redeem?t=\(order.codeIDs[0])."), link)
        XCTAssertTrue(link.hasSuffix("&o=o%231"), link)
        let token = String(link.dropFirst("https://brand.example/redeem?t=".count).prefix { $0 != "&" })
        XCTAssertFalse(link.contains("card-secret"), "the secret never goes in a link")

        // Forged: another code's id under this MAC, a flipped MAC digit, garbage.
        let parts = token.split(separator: ".")
        let otherCode = "\(order.codeIDs[0] + 1).\(parts[1]).\(parts[2])"
        var flipped = Array(token)
        flipped[flipped.count - 1] = flipped.last == "0" ? "1" : "0"
        for forged in [otherCode, String(flipped), "x", "", "1.2.3", String(repeating: "9", count: 200)] {
            XCTAssertEqual(h.engine.storefront.activateSync(token: forged).failure?.code, .notFound, forged)
        }
        // The real one activates exactly its code; a second use finds it used.
        let done = try h.engine.storefront.activateSync(token: token).get()
        XCTAssertEqual(done.items.map(\.codeID), [order.codeIDs[0]])
        XCTAssertEqual(done.orderID, "o#1")
        XCTAssertTrue(done.items[0].now)
        XCTAssertEqual(done.items[0].via, "token")
        XCTAssertFalse(try h.engine.storefront.activateSync(token: token).get().items[0].now)

        // A token outlives its TTL: EXPIRED (and says how to get a fresh one).
        let second = try h.engine.storefront.issueSync(order: "o2", user: "u1", sku: "card", paymentRef: "p").get()
        let fresh = String(try XCTUnwrap(second.codes.first?.activationURL).dropFirst("https://brand.example/redeem?t=".count).prefix { $0 != "&" })
        h.clock.advance(ms: Limits.activationTokenTTLMs + 1_000)
        XCTAssertEqual(h.engine.storefront.activateSync(token: fresh).failure?.code, .expired)
        h.assertInvariants()
    }

    func testEntitlementsShowWhatTheBuyersPageNeeds() throws {
        let h = Harness()
        h.stockSku("vip", count: 10)
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", name: "VIP 月卡", usageGuide: "打开 App → 我的 → 兑换\n输入卡密"))
        _ = try h.engine.admin.setSku(SkuDefinition(key: "slow", name: "Slow", manualDelivery: true))
        for n in 0..<3 {
            h.clock.advance(ms: 1_000)
            _ = try h.engine.storefront.issueSync(order: "o\(n)", user: "u", sku: "vip", paymentRef: "p").get()
        }
        h.clock.advance(ms: 1_000)
        _ = try h.engine.storefront.issueSync(order: "waiting", user: "u", sku: "slow", paymentRef: "p").get()
        _ = try h.engine.storefront.activateSync(order: "o1", user: "u").get()
        _ = try h.engine.storefront.refundSync(order: "o0").get()

        let items = try h.engine.queries.entitlements(user: "u")
        XCTAssertEqual(items.map(\.orderID), ["waiting", "o2", "o1", "o0"], "newest first")
        XCTAssertEqual(items.map(\.status), [.pending, .delivered, .used, .refunded])
        XCTAssertEqual(items[1].skuName, "VIP 月卡")
        XCTAssertEqual(items[1].usageGuide, "打开 App → 我的 → 兑换\n输入卡密")
        XCTAssertEqual(items[0].codeID, 0, "nothing delivered yet")
        XCTAssertNotNil(items[2].usedAtMs)
        XCTAssertNil(items[1].usedAtMs)
        XCTAssertTrue(items[1].orderedAtMs > items[2].orderedAtMs)
        XCTAssertNotNil(items[1].activationURL)
        XCTAssertNil(items[2].activationURL, "a used code has no link to click")

        // Pages of a user with thousands of codes, in order, with no repeats.
        h.stockSku("bulk", count: 1_200)
        for n in 0..<12 { _ = try h.engine.storefront.issueSync(order: "b\(n)", user: "whale", sku: "bulk", units: 100, paymentRef: "p").get() }
        var seen: [CodeID] = []
        var cursor: String?
        repeat {
            let page = try h.engine.queries.entitlements(user: "whale", withSecrets: false, limit: 500, cursor: cursor)
            seen += page.items.map(\.codeID)
            cursor = page.nextCursor
        } while cursor != nil
        XCTAssertEqual(seen.count, 1_200)
        XCTAssertEqual(Set(seen).count, 1_200)

        XCTAssertThrowsError(try h.engine.admin.setSku(SkuDefinition(key: "vip", usageGuide: String(repeating: "x", count: 2_000))))
        XCTAssertThrowsError(try h.engine.admin.setSku(SkuDefinition(key: "vip", usageGuide: "bell\u{07}")))
        h.assertInvariants()
    }

    func testVerifyFindsAUsedCodeWithoutItsActivation() throws {
        let h = Harness()
        h.stockSku("vip", count: 3)
        _ = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").get()
        _ = try h.engine.storefront.activateSync(order: "o1", user: "u1").get()
        h.engine.admin.barrier()
        h.close()
        let db = try Connection(path: h.directory + "/" + Store.fileName)
        try db.execute("DELETE FROM activations")
        h.reopen()
        let problems = try h.engine.admin.verify().filter { $0.invariant == "activation" }
        XCTAssertEqual(problems.count, 1, "\(problems)")
        XCTAssertTrue(problems[0].detail.contains("is used but has no activation"))
    }

    func testACostedActivatedCodeKeepsTheLedgerTrueAndCanBeReplaced() throws {
        let h = Harness()
        h.webhookRoutes = [WebhookRoute(name: "shop")]
        h.reopen()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", name: "VIP", priceCents: 1_000))
        let rows = (0..<4).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("vip-cost-\($0)"), costCents: 600)) }
        _ = try h.engine.admin.importCodes(sku: "vip", source: ArrayRowSource(rows), label: "costed")
        let order = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p",
                                                       terms: OrderTerms(amountCents: 1_000)).get()
        _ = try h.engine.storefront.activateSync(order: "o1", user: "u1").get()
        h.assertInvariants()
        // "It was used before I got it": an activated code is replaced like an issued one.
        let item = try h.engine.admin.openCase(order: "o1", code: order.codeIDs[0], reason: .invalidCode)
        let replaced = try h.engine.admin.replaceCase(item.id)
        XCTAssertNotEqual(replaced.codeIDs, order.codeIDs)
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").used, 0)
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").voided, 1)
        h.assertInvariants()
    }
}
