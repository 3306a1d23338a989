import Foundation
import KamiCore
import KamiEngine
import KamiLedger
import KamiStore
import XCTest

/// An order's labels naming a campaign or a coupon.
private func promo(campaign: String? = nil, coupon: String? = nil) -> OrderLabels? {
    OrderLabels.make(currency: nil, channel: nil, campaign: campaign, coupon: coupon, distributor: nil)
}

/// Campaigns and coupons: budgets never overspent, coupons never used twice, under any
/// concurrency, across restarts (invariant 9).
final class CampaignTests: XCTestCase {
    private func setUpSale(_ h: Harness, stock: Int = 500, budget: Int64, price: Int64 = 1_000, discount: Int64 = 300,
                           perUser: Int = 0) throws -> SkuID {
        let sku = h.stockSku("vip", count: stock)
        _ = sku
        let id = try XCTUnwrap(h.engine.queries.skus().first { $0.key == "vip" }?.id)
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", priceCents: price))
        try h.engine.admin.setCampaign(Campaign(key: "618", sku: id, priceCents: nil, discountCents: discount,
                                                startsAtMs: 0, endsAtMs: Int64.max, budgetCents: budget, perUserUses: perUser))
        return id
    }

    func testABudgetForExactlyNOrdersGivesExactlyNUnderConcurrency() throws {
        let h = Harness()
        // 300 off each: a budget of 30,000 covers exactly 100 discounted orders.
        try setUpSale(h, budget: 30_000)
        let results = Locked<[Result<OrderReply, KamiError>]>([])
        let engine = h.engine!
        DispatchQueue.concurrentPerform(iterations: 16) { worker in
            for n in 0..<20 {
                let result = engine.storefront.issueSync(order: "o\(worker)-\(n)", user: "u\(worker)-\(n)", sku: "vip",
                                                           paymentRef: "p", terms: OrderTerms(labels: promo(campaign: "618")))
                results.withLock { $0.append(result) }
            }
        }
        let all = results.withLock { $0 }
        XCTAssertEqual(all.filter { $0.value != nil }.count, 100, "exactly the budget's worth of discounted orders")
        let refused = all.compactMap(\.failure)
        XCTAssertEqual(refused.count, 220)
        XCTAssertTrue(refused.allSatisfy { $0.code == .limitReached && $0.message.contains("budget is spent") }, "\(refused.first!)")
        XCTAssertEqual(h.engine.admin.campaigns().first?.spentCents, 30_000)
        let balance = TrialBalance(try h.engine.storage.journal(limit: 10_000))
        XCTAssertEqual(balance[.subsidy], 30_000)
        XCTAssertEqual(balance[.revenue], -100_000, "revenue at list price: 700 paid + 300 subsidy, 100 times")
        h.assertInvariants()
        // A refund gives its subsidy back to the budget: one more discounted order fits.
        _ = try h.engine.storefront.refundSync(order: all.compactMap(\.value).first!.orderID).get()
        XCTAssertNotNil(h.engine.storefront.issueSync(order: "late", user: "late", sku: "vip", paymentRef: "p",
                                                      terms: OrderTerms(labels: promo(campaign: "618"))).value)
        XCTAssertEqual(h.engine.storefront.issueSync(order: "late2", user: "late2", sku: "vip", paymentRef: "p",
                                                     terms: OrderTerms(labels: promo(campaign: "618"))).failure?.code, .limitReached)
        // The spend is rebuilt from the orders at start.
        h.reopen()
        XCTAssertEqual(h.engine.admin.campaigns().first?.spentCents, 30_000)
        XCTAssertEqual(h.engine.storefront.issueSync(order: "late3", user: "late3", sku: "vip", paymentRef: "p",
                                                     terms: OrderTerms(labels: promo(campaign: "618"))).failure?.code, .limitReached)
        h.assertInvariants()
    }

    func testHoldsClaimTheBudgetUntilTheyEndAndALateCommitClaimsAgain() throws {
        let h = Harness()
        try setUpSale(h, budget: 600, perUser: 1)
        _ = try h.engine.storefront.reserveSync(order: "r1", user: "a", sku: "vip", ttlMs: 1_000,
                                                terms: OrderTerms(labels: promo(campaign: "618"))).get()
        _ = try h.engine.storefront.reserveSync(order: "r2", user: "b", sku: "vip", ttlMs: 60_000,
                                                terms: OrderTerms(labels: promo(campaign: "618"))).get()
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "r3", user: "c", sku: "vip",
                                                       terms: OrderTerms(labels: promo(campaign: "618"))).failure?.code, .limitReached)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "r4", user: "a", sku: "vip",
                                                       terms: OrderTerms(labels: promo(campaign: "618"))).failure?.message
                        .contains("used campaign 618 1 times"), true, "one use per user")
        // r1 expires: its 300 go back; c takes them; r1 paid late finds the budget spent.
        h.clock.advance(ms: 1_000)
        XCTAssertEqual(h.engine.storefront.expireDue(), 1)
        h.engine.admin.barrier()
        _ = try h.engine.storefront.reserveSync(order: "r3", user: "c", sku: "vip", terms: OrderTerms(labels: promo(campaign: "618"))).get()
        let late = h.engine.storefront.commitSync(order: "r1", paymentRef: "p").failure
        XCTAssertEqual(late?.code, .expired)
        XCTAssertTrue(late?.message.contains("budget is spent") ?? false, late?.message ?? "")
        _ = try h.engine.storefront.releaseSync(order: "r2").get()
        XCTAssertEqual(try h.engine.storefront.commitSync(order: "r1", paymentRef: "p").get().state, .committed,
                       "paid late with the budget back: delivered at the campaign's price")
        let r1 = try XCTUnwrap(h.engine.storage.loadSnapshot().orders.first { $0.orderID == "r1" })
        XCTAssertEqual(r1.amountCents, 700)
        XCTAssertEqual(r1.subsidyCents, 300)
        h.assertInvariants()
    }

    func testACouponIsUsedOnceEvenWhenManyRaceForIt() throws {
        let h = Harness()
        h.stockSku("vip", count: 100)
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", priceCents: 1_000))
        XCTAssertEqual(try h.engine.admin.addCoupons(CouponBatch(key: "welcome", discountCents: 250, perUserUses: 1),
                                                     codes: ["C-1", "C-2", "C-3", "C-1"]), 3, "a code given twice is added once")
        let winners = Locked<[String]>([])
        let engine = h.engine!
        DispatchQueue.concurrentPerform(iterations: 12) { worker in
            let result = engine.storefront.issueSync(order: "o\(worker)", user: "u\(worker)", sku: "vip", paymentRef: "p",
                                                       terms: OrderTerms(labels: promo(coupon: "C-1")))
            if let reply = result.value { winners.withLock { $0.append(reply.orderID) } } else {
                XCTAssertEqual(result.failure?.code, .limitReached)
            }
        }
        XCTAssertEqual(winners.withLock { $0 }.count, 1, "one order holds coupon C-1")
        let winner = try XCTUnwrap(h.engine.storage.loadSnapshot().orders.first { $0.orderID == winners.withLock { $0 }[0] })
        XCTAssertEqual(winner.amountCents, 750)
        XCTAssertEqual(winner.subsidyCents, 250)
        // One coupon of the batch per user; unknown coupons refused.
        _ = try h.engine.storefront.issueSync(order: "x1", user: "ann", sku: "vip", paymentRef: "p",
                                              terms: OrderTerms(labels: promo(coupon: "C-2"))).get()
        XCTAssertEqual(h.engine.storefront.issueSync(order: "x2", user: "ann", sku: "vip", paymentRef: "p",
                                                     terms: OrderTerms(labels: promo(coupon: "C-3"))).failure?.code, .limitReached)
        XCTAssertEqual(h.engine.storefront.issueSync(order: "x3", user: "bob", sku: "vip", paymentRef: "p",
                                                     terms: OrderTerms(labels: promo(coupon: "NOPE"))).failure?.code, .badRequest)
        // A released hold frees its coupon; the restart keeps who holds what.
        _ = try h.engine.storefront.reserveSync(order: "h1", user: "cat", sku: "vip", terms: OrderTerms(labels: promo(coupon: "C-3"))).get()
        XCTAssertEqual(h.engine.storefront.issueSync(order: "x4", user: "dan", sku: "vip", paymentRef: "p",
                                                     terms: OrderTerms(labels: promo(coupon: "C-3"))).failure?.code, .limitReached)
        h.reopen()
        XCTAssertEqual(h.engine.storefront.issueSync(order: "x4", user: "dan", sku: "vip", paymentRef: "p",
                                                     terms: OrderTerms(labels: promo(coupon: "C-3"))).failure?.code, .limitReached)
        _ = try h.engine.storefront.releaseSync(order: "h1").get()
        XCTAssertEqual(try h.engine.storefront.issueSync(order: "x4", user: "dan", sku: "vip", paymentRef: "p",
                                                         terms: OrderTerms(labels: promo(coupon: "C-3"))).get().state, .committed)
        XCTAssertEqual(h.engine.admin.couponBatches().first?.held, 3)
        h.assertInvariants()
    }

    func testCampaignSettingsAreCheckedAndVerifyCatchesAnOverspentBudget() throws {
        let h = Harness()
        let id = try setUpSale(h, budget: 600)
        func refused(_ campaign: Campaign, _ words: String, line: UInt = #line) {
            do { try h.engine.admin.setCampaign(campaign); XCTFail("accepted", line: line) } catch {
                XCTAssertEqual(error.code, .badRequest, line: line)
                XCTAssertTrue(error.message.contains(words), error.message, line: line)
            }
        }
        refused(Campaign(key: "x", sku: id, priceCents: nil, discountCents: -1, startsAtMs: 0, endsAtMs: 1, budgetCents: 0, perUserUses: 0), "discount")
        refused(Campaign(key: "x", sku: id, priceCents: nil, discountCents: 1, startsAtMs: 5, endsAtMs: 5, budgetCents: 0, perUserUses: 0), "end")
        refused(Campaign(key: "has space", sku: id, priceCents: nil, discountCents: 1, startsAtMs: 0, endsAtMs: 9, budgetCents: 0, perUserUses: 0), "campaign")
        for n in 0..<2 {
            _ = try h.engine.storefront.issueSync(order: "o\(n)", user: "u\(n)", sku: "vip", paymentRef: "p",
                                                  terms: OrderTerms(labels: promo(campaign: "618"))).get()
        }
        refused(Campaign(key: "618", sku: id, priceCents: nil, discountCents: 300, startsAtMs: 0, endsAtMs: Int64.max, budgetCents: 599,
                         perUserUses: 0), "already given away 600")
        h.assertInvariants()
        h.close()
        let db = try Connection(path: h.directory + "/" + Store.fileName)
        try db.execute("UPDATE campaigns SET budget_cents = 300 WHERE key = '618'")
        h.reopen()
        let found = try h.engine.admin.verify().filter { $0.invariant == "ledger" }.map(\.detail)
        XCTAssertEqual(found, ["campaign 618 gave away 600, over its budget of 300"])
    }

    func testALateCommitClaimsWhatTheOrderKeptEvenAfterAPriceChange() throws {
        let h = Harness()
        try setUpSale(h, budget: 300)
        _ = try h.engine.storefront.reserveSync(order: "r1", user: "a", sku: "vip", ttlMs: 1_000,
                                                terms: OrderTerms(labels: promo(campaign: "618"))).get()
        h.clock.advance(ms: 1_000)
        XCTAssertEqual(h.engine.storefront.expireDue(), 1)
        h.engine.admin.barrier()
        // The list price falls: the order keeps the subsidy it was placed with (300), and the
        // budget (300) still holds exactly it.
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", priceCents: 800))
        let paid = try h.engine.storefront.commitSync(order: "r1", paymentRef: "p").get()
        XCTAssertEqual(paid.state, .committed)
        XCTAssertEqual(h.engine.admin.campaigns().first?.spentCents, 300)
        h.assertInvariants()
        h.reopen()
        XCTAssertEqual(h.engine.admin.campaigns().first?.spentCents, 300, "the same after a restart")
        h.assertInvariants()
    }
}
