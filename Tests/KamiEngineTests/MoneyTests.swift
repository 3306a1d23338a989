import KamiCore
import KamiEngine
import KamiLedger
import KamiStore
import XCTest

/// Money on every order and the ledger written with each change (docs/money.md).
final class MoneyTests: XCTestCase {
    /// Stocks `count` codes of `key` costing `cost` each; returns the SKU id.
    @discardableResult
    private func stock(_ h: Harness, _ key: String, count: Int, cost: Int64, price: Int64 = 990, label: String = "codes.csv") throws -> SkuID {
        let sku = try h.engine.admin.setSku(SkuDefinition(key: key, name: key, priceCents: price, perUserLimit: 0))
        let rows = (0..<count).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("\(key)-\(label)-\($0)"), costCents: cost)) }
        _ = try h.engine.admin.importCodes(sku: key, source: ArrayRowSource(rows), label: label)
        return sku.id
    }

    private func lines(_ h: Harness, _ order: String) throws -> [JournalLine] {
        h.engine.admin.barrier()
        let seq = try XCTUnwrap(h.engine.storage.loadSnapshot().orders.first { $0.orderID == order }?.seq)
        return try h.engine.storage.journal(orderSeq: seq)
    }

    func testADeliveredOrderBooksItsSaleAndItsCodesCostARefundReversesTheSale() throws {
        let h = Harness()
        let vip = try stock(h, "vip", count: 5, cost: 400, price: 990)
        let labels = OrderLabels(currency: "CNY", channel: "taobao", campaign: nil, coupon: nil, distributor: "d1")
        let sold = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", units: 2, paymentRef: "p",
                                                     terms: OrderTerms(amountCents: 1_500, labels: labels)).get()
        XCTAssertEqual(sold.state, .committed)
        var seq = try XCTUnwrap(h.engine.storage.loadSnapshot().orders.first { $0.orderID == "o1" }?.seq)
        XCTAssertEqual(try lines(h, "o1"), [
            JournalLine(kind: .sale, orderSeq: seq, sku: vip, debit: .clearing, credit: .revenue, amountCents: 1_500, currency: "CNY"),
            JournalLine(kind: .cost, orderSeq: seq, sku: vip, debit: .cogs, credit: .inventory, amountCents: 800),
        ])
        // Without an amount: the SKU's price × units. A hold moves no money until it is paid.
        _ = try h.engine.storefront.reserveSync(order: "o2", user: "u2", sku: "vip").get()
        XCTAssertEqual(try lines(h, "o2"), [])
        _ = try h.engine.storefront.commitSync(order: "o2", paymentRef: "p2").get()
        seq = try XCTUnwrap(h.engine.storage.loadSnapshot().orders.first { $0.orderID == "o2" }?.seq)
        XCTAssertEqual(try lines(h, "o2").map(\.amountCents), [990, 400])
        // The order keeps its money and labels across a restart.
        h.reopen()
        let order = try XCTUnwrap(h.engine.storage.loadSnapshot().orders.first { $0.orderID == "o1" })
        XCTAssertEqual(order.amountCents, 1_500)
        XCTAssertEqual(order.labels, labels)
        // A refund reverses the sale exactly; the codes' cost stays spent.
        _ = try h.engine.storefront.refundSync(order: "o1").get()
        let after = try lines(h, "o1")
        XCTAssertEqual(after.last, JournalLine(kind: .refund, orderSeq: order.seq, sku: vip, debit: .revenue, credit: .clearing,
                                               amountCents: 1_500, currency: "CNY"))
        let balance = TrialBalance(try h.engine.storage.journal(limit: 1_000))
        XCTAssertEqual(balance.total, 0)
        XCTAssertEqual(balance[.revenue], -990, "o1 refunded, o2's sale stands")
        XCTAssertEqual(balance[.inventory], 2_000 - 1_200, "5 codes stocked at 400, 3 sold")
        XCTAssertEqual(balance[.purchases], -2_000)
        h.assertInvariants()
    }

    func testStockInVoidsAndQuarantinesMoveTheInventory() throws {
        let h = Harness()
        let vip = try stock(h, "vip", count: 4, cost: 250)
        try stock(h, "vip", count: 2, cost: 100, label: "upstream:fulu")
        var balance = TrialBalance(try h.engine.storage.journal())
        XCTAssertEqual(balance[.inventory], 1_200)
        XCTAssertEqual(balance[.payable(supplier: "fulu")], -200, "a buy-ahead is owed to its supplier")
        let report = try h.engine.admin.void(code: 1)
        XCTAssertEqual(report.voided, 1)
        balance = TrialBalance(try h.engine.storage.journal())
        XCTAssertEqual(balance[.inventory], 950)
        XCTAssertEqual(balance[.writeOff], 250)
        XCTAssertTrue(try h.engine.storage.journal().contains { $0.kind == .writeOff && $0.sku == vip })
        h.assertInvariants()
    }

    func testBadAmountsAndLabelsAreRefusedAndARepeatMustMatch() throws {
        let h = Harness()
        try stock(h, "vip", count: 3, cost: 100, price: Limits.costCentsMax)
        func refused(_ terms: OrderTerms, units: Int = 1, _ words: String, line: UInt = #line) {
            let error = h.engine.storefront.issueSync(order: "bad", user: "u", sku: "vip", units: units, paymentRef: "p", terms: terms).failure
            XCTAssertEqual(error?.code, .badRequest, line: line)
            XCTAssertTrue(error?.message.contains(words) ?? false, error?.message ?? "", line: line)
        }
        refused(OrderTerms(amountCents: -5), "negative")
        XCTAssertThrowsError(try h.engine.admin.setSku(SkuDefinition(key: "vip", priceCents: Limits.costCentsMax + 1)),
                             "a price past the limit, which price × units could overflow")
        refused(OrderTerms(amountCents: Limits.amountCentsMax + 1), "over the limit")
        refused(OrderTerms(amountCents: 1, labels: OrderLabels(currency: "RMB1", channel: nil, campaign: nil, coupon: nil, distributor: nil)),
                "currency")
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").available, 3, "nothing was taken")
        _ = try h.engine.storefront.issueSync(order: "o1", user: "u", sku: "vip", paymentRef: "p", terms: OrderTerms(amountCents: 700)).get()
        XCTAssertEqual(h.engine.storefront.issueSync(order: "o1", user: "u", sku: "vip", paymentRef: "p",
                                                     terms: OrderTerms(amountCents: 800)).failure?.code, .conflict)
        XCTAssertEqual(try h.engine.storefront.issueSync(order: "o1", user: "u", sku: "vip", paymentRef: "p").get().state, .committed,
                       "a repeat that leaves the amount out answers the order")
        h.assertInvariants()
    }

    func testVerifyFindsALedgerEditedBehindKamidsBack() throws {
        let h = Harness()
        try stock(h, "vip", count: 3, cost: 300)
        _ = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p", terms: OrderTerms(amountCents: 990)).get()
        _ = try h.engine.storefront.issueSync(order: "o2", user: "u2", sku: "vip", paymentRef: "p").get()
        h.assertInvariants()
        h.close()
        let db = try Connection(path: h.directory + "/" + Store.fileName)
        // A sale shaved, and a cost line deleted.
        try db.execute("UPDATE ledger SET amount_cents = 10 WHERE kind = 1 AND amount_cents = 990 AND id = (SELECT MIN(id) FROM ledger WHERE kind = 1)")
        try db.execute("DELETE FROM ledger WHERE id = (SELECT MAX(id) FROM ledger WHERE kind = 2)")
        // A movement no event makes, a negative stock line, a line for an order that never was.
        try db.execute("""
            INSERT INTO ledger(kind, order_seq, sku_id, debit, credit, amount_cents, at_ms) VALUES
                (1, 1, 1, 'cogs', 'revenue', 5, 0), (4, NULL, 1, 'inventory', 'purchases', -7, 0),
                (6, 999, 1, 'subsidy', 'revenue', 0, 0)
            """)
        h.reopen()
        let found = try h.engine.admin.verify().filter { $0.invariant == "ledger" }.map(\.detail)
        XCTAssertTrue(found.contains { $0.contains("order o1 (committed, amount 990) has sale lines") }, "\(found)")
        XCTAssertTrue(found.contains { $0.contains("order o2's cost lines add up to 0, its codes cost 300") }, "\(found)")
        XCTAssertTrue(found.contains { $0.contains("inventory account holds") }, "\(found)")
        XCTAssertTrue(found.contains { $0.contains("kind 1 move revenue to cogs for an order: no such movement") }, "\(found)")
        XCTAssertTrue(found.contains { $0.contains("kind 4 (purchases to inventory) have a negative amount") }, "\(found)")
        XCTAssertTrue(found.contains { $0.contains("1 lines name an order that does not exist") }, "\(found)")
    }
}

/// Distributors (分销): commission accrued on delivery, reversed exactly on refund.
final class CommissionTests: XCTestCase {
    func testACommissionIsAccruedOnDeliveryAndReversedExactlyOnRefund() throws {
        let h = Harness()
        h.stockSku("vip", count: 10)
        h.stockSku("game", count: 10)
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", priceCents: 1_000))
        _ = try h.engine.admin.setSku(SkuDefinition(key: "game", priceCents: 3_333))
        try h.engine.admin.setDistributor("d7", rateBps: 500)
        let d7 = try h.engine.admin.setDistributor("d7", rateBps: 1_000, sku: "game")
        XCTAssertEqual(d7.rateBps, 500)
        func labels(_ distributor: String) -> OrderLabels? {
            OrderLabels.make(currency: nil, channel: nil, campaign: nil, coupon: nil, distributor: distributor)
        }
        _ = try h.engine.storefront.issueSync(order: "a", user: "u1", sku: "vip", units: 2, paymentRef: "p",
                                              terms: OrderTerms(labels: labels("d7"))).get()
        _ = try h.engine.storefront.issueSync(order: "b", user: "u2", sku: "game", paymentRef: "p",
                                              terms: OrderTerms(labels: labels("d7"))).get()
        _ = try h.engine.storefront.issueSync(order: "c", user: "u3", sku: "vip", paymentRef: "p",
                                              terms: OrderTerms(labels: labels("stranger"))).get()
        h.engine.admin.barrier()
        var statement = try h.engine.admin.distributorStatement("d7", sinceMs: 0, untilMs: Int64.max)
        XCTAssertEqual(statement.accruedCents, 100 + 333, "5% of 2,000 and 10% of 3,333 (rounded down)")
        XCTAssertEqual(statement.orders, 2)
        XCTAssertEqual(statement.owedCents, 433)
        // The rate changes; a refund still reverses what was booked.
        try h.engine.admin.setDistributor("d7", rateBps: 2_000)
        _ = try h.engine.storefront.refundSync(order: "a").get()
        h.engine.admin.barrier()
        statement = try h.engine.admin.distributorStatement("d7", sinceMs: 0, untilMs: Int64.max)
        XCTAssertEqual(statement.reversedCents, 100)
        XCTAssertEqual(statement.reversals, 1)
        XCTAssertEqual(statement.owedCents, 333)
        XCTAssertEqual(try h.engine.admin.distributors().map(\.owedCents), [333])
        let balance = TrialBalance(try h.engine.storage.journal(limit: 1_000))
        XCTAssertEqual(balance[.commission], 333)
        XCTAssertEqual(balance[.commissionPayable(distributor: "d7")], -333)
        XCTAssertEqual(balance.total, 0)
        XCTAssertThrowsError(try h.engine.admin.setDistributor("d7", rateBps: 10_001))
        XCTAssertThrowsError(try h.engine.admin.distributorStatement("nobody", sinceMs: 0, untilMs: 1))
        h.assertInvariants()
        h.reopen()
        XCTAssertEqual(try h.engine.admin.distributors().first?.distributor.rateBps, 2_000)
        h.assertInvariants()
    }
}

/// Reports from the ledger's summary, checked against figures computed here.
final class ReportTests: XCTestCase {
    func testSalesByEveryGroupMatchTheOrdersAndTheSummaryMatchesTheLedger() throws {
        let h = Harness()
        for (key, cost) in [("vip", Int64(400)), ("game", Int64(1_000))] {
            _ = try h.engine.admin.setSku(SkuDefinition(key: key, name: key, priceCents: key == "vip" ? 990 : 3_000))
            let rows = (0..<20).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("\(key)-\($0)"), costCents: cost)) }
            _ = try h.engine.admin.importCodes(sku: key, source: ArrayRowSource(rows), label: "upstream:fulu")
        }
        let vip = try XCTUnwrap(h.engine.queries.skus().first { $0.key == "vip" }?.id)
        try h.engine.admin.setCampaign(Campaign(key: "618", sku: vip, priceCents: nil, discountCents: 190, startsAtMs: 0,
                                                endsAtMs: Int64.max, budgetCents: 10_000, perUserUses: 0))
        try h.engine.admin.setDistributor("d1", rateBps: 1_000)
        func issue(_ id: String, _ sku: String, channel: String, campaign: String? = nil, distributor: String? = nil) throws {
            _ = try h.engine.storefront.issueSync(
                order: id, user: id, sku: sku, paymentRef: "pay-\(id)",
                terms: OrderTerms(labels: OrderLabels.make(currency: nil, channel: channel, campaign: campaign, coupon: nil,
                                                           distributor: distributor))).get()
        }
        try issue("a", "vip", channel: "app", campaign: "618")        // paid 800, subsidy 190, cost 400
        try issue("b", "vip", channel: "h5")                          // paid 990, cost 400
        try issue("c", "game", channel: "app", distributor: "d1")     // paid 3,000, cost 1,000, commission 300
        try issue("d", "game", channel: "h5", distributor: "d1")      // refunded: all reversed
        _ = try h.engine.storefront.refundSync(order: "d").get()
        h.engine.admin.barrier()

        let bySku = try h.engine.admin.salesReport(group: .sku, sinceMs: 0, untilMs: Int64.max, sku: nil, channel: nil, campaign: nil)
        let game = try XCTUnwrap(bySku.first { $0.key == "game" })
        XCTAssertEqual(game.orders, 2)
        XCTAssertEqual(game.paidCents, 6_000)
        XCTAssertEqual(game.refundedCents, 3_000)
        XCTAssertEqual(game.costCents, 2_000, "the refunded order's codes were consumed")
        XCTAssertEqual(game.commissionCents, 300)
        XCTAssertEqual(game.profitCents, 6_000 - 3_000 - 2_000 - 300)
        let vipRow = try XCTUnwrap(bySku.first { $0.key == "vip" })
        XCTAssertEqual([vipRow.orders, vipRow.paidCents, vipRow.subsidyCents, vipRow.costCents, vipRow.profitCents],
                       [2, 1_790, 190, 800, 990])
        let byChannel = try h.engine.admin.salesReport(group: .channel, sinceMs: 0, untilMs: Int64.max, sku: nil, channel: nil, campaign: nil)
        XCTAssertEqual(byChannel.map(\.key), ["app", "h5"])
        XCTAssertEqual(byChannel.map(\.paidCents), [3_800, 3_990])
        let campaign = try h.engine.admin.salesReport(group: .campaign, sinceMs: 0, untilMs: Int64.max, sku: nil, channel: nil,
                                                      campaign: "618")
        XCTAssertEqual(campaign.map(\.subsidyCents), [190])
        let appOnly = try h.engine.admin.salesReport(group: .day, sinceMs: 0, untilMs: Int64.max, sku: "game", channel: "app", campaign: nil)
        XCTAssertEqual(appOnly.map(\.paidCents), [3_000])
        XCTAssertEqual(try h.engine.admin.salesReport(group: .month, sinceMs: 0, untilMs: 1, sku: nil, channel: nil, campaign: nil), [],
                       "nothing in 1970")
        let bySource = try h.engine.admin.salesReport(group: .source, sinceMs: 0, untilMs: Int64.max, sku: nil, channel: nil, campaign: nil)
        let pool = try XCTUnwrap(bySource.first { $0.key == "pool" }, "\(bySource)")
        XCTAssertEqual([pool.orders, pool.paidCents, pool.costCents, pool.subsidyCents], [4, 7_790, 2_800, 190],
                       "every code came from the pool (bought ahead from fulu: fulu is owed, see payables)")
        XCTAssertEqual(try h.engine.admin.payables().map(\.account), ["payable:fulu"])
        XCTAssertEqual(try h.engine.admin.payables().first?.owedCents, 20 * 400 + 20 * 1_000)
        h.assertInvariants()
        // A summary edited behind kamid's back no longer adds up to the ledger.
        h.close()
        let db = try Connection(path: h.directory + "/" + Store.fileName)
        try db.execute("UPDATE ledger_summary SET cents = cents + 1 WHERE kind = 1")
        h.reopen()
        let found = try h.engine.admin.verify().filter { $0.invariant == "ledger" }.map(\.detail)
        XCTAssertTrue(found.contains { $0.hasPrefix("the report summary of kind 1") }, "\(found)")
    }
}

/// After-sales (售后): cases opened, replaced, refunded, rejected; counted per SKU and source.
final class AfterSalesTests: XCTestCase {
    func testABadCodeIsReplacedFromThePoolItsCostBookedAndTheCaseClosed() throws {
        let h = Harness()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", name: "vip", priceCents: 990))
        let rows = (0..<3).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("VIP-\($0)"), costCents: 400)) }
        _ = try h.engine.admin.importCodes(sku: "vip", source: ArrayRowSource(rows), label: "upstream:fulu")
        let sold = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", units: 2, paymentRef: "p").get()
        let bad = try XCTUnwrap(sold.codeIDs.first)
        XCTAssertEqual(h.engine.storefront.issueSync(order: "o2", user: "u2", sku: "vip", paymentRef: "p").value?.state, .committed)
        _ = try h.engine.storefront.reserveSync(order: "held", user: "u3", sku: "vip").failure  // sold out: nothing held
        let opened = try h.engine.admin.openCase(order: "o1", code: bad, reason: .invalidCode, note: "buyer says used")
        XCTAssertEqual(opened.source, "upstream:fulu", "the supplier whose codes fail is visible")
        XCTAssertThrowsError(try h.engine.admin.openCase(order: "o1", code: bad, reason: .invalidCode)) { error in
            XCTAssertEqual((error as? KamiError)?.code, .conflict, "one open case per code")
        }
        // Nothing left in the pool: the replacement says so and the case stays open.
        XCTAssertThrowsError(try h.engine.admin.replaceCase(opened.id)) { error in
            XCTAssertEqual((error as? KamiError)?.code, .soldOut)
        }
        let more = [ImportItem.row(CodeRow(line: 2, secret: Secret("VIP-new"), costCents: 450))]
        _ = try h.engine.admin.importCodes(sku: "vip", source: ArrayRowSource(more), label: "codes.csv")
        let replaced = try h.engine.admin.replaceCase(opened.id)
        XCTAssertEqual(replaced.state, .committed)
        XCTAssertFalse(replaced.codeIDs.contains(bad))
        XCTAssertEqual(replaced.codeIDs.count, 2)
        XCTAssertEqual(try h.engine.queries.order("o1").codes.map { $0.secret.reveal() }.contains("VIP-new"), true)
        XCTAssertEqual(try h.engine.admin.cases().first?.state, .replaced)
        XCTAssertThrowsError(try h.engine.admin.replaceCase(opened.id), "a case is resolved once")
        let stock = try h.engine.queries.stock(sku: "vip")
        XCTAssertEqual([stock.available, stock.issued, stock.voided], [0, 3, 1])
        h.engine.admin.barrier()
        let costs = try h.engine.storage.journal(limit: 100).filter { $0.kind == .cost }.map(\.amountCents)
        XCTAssertEqual(costs, [800, 400, 450], "the replacement's cost is booked")
        // A case refunded, a case rejected.
        let second = try h.engine.admin.openCase(order: "o2", code: nil, reason: .notReceived)
        XCTAssertEqual(try h.engine.admin.refundCase(second.id).state, .refunded)
        XCTAssertEqual(try h.engine.queries.order("o2").state, .refunded)
        XCTAssertThrowsError(try h.engine.admin.openCase(order: "o2", code: nil, reason: .other), "only delivered orders")
        let third = try h.engine.admin.openCase(order: "o1", code: nil, reason: .other, note: "asks for a discount")
        XCTAssertEqual(try h.engine.admin.rejectCase(third.id).state, .rejected)
        XCTAssertEqual(try h.engine.admin.cases(openOnly: true), [])
        h.assertInvariants()
        h.reopen()
        XCTAssertEqual(try h.engine.admin.cases().map(\.state), [.rejected, .refunded, .replaced])
        h.assertInvariants()
    }
}

/// The inventory and repeat-buyer reports, against figures computed here.
final class StockReportTests: XCTestCase {
    func testInventoryValueAgeAndExpiryAndRepeatBuyers() throws {
        let h = Harness()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", name: "vip", priceCents: 990))
        let soon = h.clock.nowMs() + 2 * 86_400_000
        let rows = (0..<5).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("V-\($0)"), costCents: 300,
                                                         expiresAtMs: $0 < 2 ? soon : nil)) }
        _ = try h.engine.admin.importCodes(sku: "vip", source: ArrayRowSource(rows), label: "old.csv")
        h.clock.advance(ms: 40 * 86_400_000)
        let newer = (0..<3).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("N-\($0)"), costCents: 500)) }
        _ = try h.engine.admin.importCodes(sku: "vip", source: ArrayRowSource(newer), label: "new.csv")
        // Two buyers: one buys twice, 12 hours apart.
        _ = try h.engine.storefront.issueSync(order: "a1", user: "ann", sku: "vip", paymentRef: "p").get()
        h.clock.advance(ms: 12 * 3_600_000)
        _ = try h.engine.storefront.issueSync(order: "a2", user: "ann", sku: "vip", paymentRef: "p").get()
        _ = try h.engine.storefront.issueSync(order: "b1", user: "bob", sku: "vip", paymentRef: "p").get()
        let inventory = try XCTUnwrap(try h.engine.admin.inventoryReport(expiringWithinMs: 30 * 86_400_000).first)
        XCTAssertEqual(inventory.sku, "vip")
        XCTAssertEqual(inventory.row.codes, 5, "8 stocked, 3 sold")
        let soldCost = try h.engine.storage.journal(limit: 100).filter { $0.kind == .cost }.reduce(0) { $0 + $1.amountCents }
        XCTAssertEqual(inventory.row.costCents, 5 * 300 + 3 * 500 - soldCost)
        XCTAssertEqual(inventory.row.ageBuckets.reduce(0, +), 5)
        XCTAssertEqual(inventory.row.ageBuckets[0] + inventory.row.ageBuckets[2], 5, "under a week or 30 to 90 days old")
        // A SKU none of whose codes is sold: two expire within the window, one after it, one never.
        _ = try h.engine.admin.setSku(SkuDefinition(key: "exp", name: "exp", priceCents: 100))
        let now = h.clock.nowMs()
        let expiring = [now + 86_400_000, now - 1, now + 90 * 86_400_000, nil].enumerated().map {
            ImportItem.row(CodeRow(line: $0.offset + 2, secret: Secret("E-\($0.offset)"), costCents: 10, expiresAtMs: $0.element))
        }
        _ = try h.engine.admin.importCodes(sku: "exp", source: ArrayRowSource(expiring), label: "exp.csv")
        let exp = try XCTUnwrap(try h.engine.admin.inventoryReport(expiringWithinMs: 30 * 86_400_000).first { $0.sku == "exp" })
        XCTAssertEqual([exp.row.codes, exp.row.costCents, exp.row.expiringSoon], [4, 40, 2])
        XCTAssertEqual(exp.row.ageBuckets, [4, 0, 0, 0])
        let repeats = h.engine.admin.repeatBuyers()
        XCTAssertEqual(repeats.count, 1)
        XCTAssertEqual(repeats[0].buyers, 2)
        XCTAssertEqual(repeats[0].repeat, 1)
        XCTAssertEqual(repeats[0].meanIntervalDays ?? 0, 0.5, accuracy: 0.001)
        h.assertInvariants()
    }
}

/// A bundle's revenue is booked per component.
final class BundleMoneyTests: XCTestCase {
    func testABundleOrderBooksEachComponentsShareAndItsCost() throws {
        let h = Harness()
        for (key, price, cost) in [("video", Int64(990), Int64(300)), ("music", Int64(3_000), Int64(1_000))] {
            _ = try h.engine.admin.setSku(SkuDefinition(key: key, name: key, priceCents: price))
            let rows = (0..<3).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("\(key)-\($0)"), costCents: cost)) }
            _ = try h.engine.admin.importCodes(sku: key, source: ArrayRowSource(rows), label: "codes.csv")
        }
        _ = try h.engine.admin.setSku(SkuDefinition(key: "pack", priceCents: 3_500, components: [(key: "video", units: 1), (key: "music", units: 1)]))
        _ = try h.engine.storefront.issueSync(order: "b1", user: "u1", sku: "pack", paymentRef: "p").get()
        h.engine.admin.barrier()
        let rows = try h.engine.admin.salesReport(group: .sku, sinceMs: 0, untilMs: Int64.max, sku: nil, channel: nil, campaign: nil)
        XCTAssertEqual(rows.map(\.key), ["video", "music"])
        XCTAssertEqual(rows.map(\.paidCents), [868, 2_632], "3,500 split 990 : 3,000")
        XCTAssertEqual(rows.map(\.costCents), [300, 1_000])
        XCTAssertEqual(rows.map(\.orders), [1, 0], "one order, counted once (under its first component)")
        let byDay = try h.engine.admin.salesReport(group: .day, sinceMs: 0, untilMs: Int64.max, sku: nil, channel: nil, campaign: nil)
        XCTAssertEqual(byDay.map(\.orders), [1])
        _ = try h.engine.storefront.refundSync(order: "b1").get()
        h.assertInvariants()
    }
}

/// The flash-sale summary: orders, the busiest second, sold-out time, refusals by reason.
final class FlashSaleSummaryTests: XCTestCase {
    func testTheSummaryCountsWhatHappened() throws {
        let h = Harness()
        h.stockSku("hot", count: 5, limit: 1)
        let start = h.clock.nowMs()
        for n in 0..<3 { _ = h.engine.storefront.issueSync(order: "a\(n)", user: "u\(n)", sku: "hot", paymentRef: "p") }
        h.clock.advance(ms: 1_500)
        _ = h.engine.storefront.issueSync(order: "dup", user: "u0", sku: "hot", paymentRef: "p")  // limit 1
        for n in 3..<9 { _ = h.engine.storefront.issueSync(order: "a\(n)", user: "u\(n)", sku: "hot", paymentRef: "p") }
        let summary = try h.engine.admin.flashSaleSummary(sku: "hot", sinceMs: 0, untilMs: Int64.max)
        XCTAssertEqual(summary.orders, 5)
        XCTAssertEqual(summary.peakPerSecond, 3)
        XCTAssertEqual(summary.firstMs, start)
        XCTAssertEqual(summary.soldOutMs, start + 1_500)
        XCTAssertEqual(summary.soldOut, 4)
        XCTAssertEqual(summary.limitReached, 1)
        XCTAssertEqual(summary.denied, 0)
        h.engine.admin.noteDenied(sku: "hot")
        XCTAssertEqual(try h.engine.admin.flashSaleSummary(sku: "hot", sinceMs: start + 1_000, untilMs: Int64.max).orders, 2)
        XCTAssertEqual(try h.engine.admin.flashSaleSummary(sku: "hot", sinceMs: 0, untilMs: Int64.max).denied, 1)
    }
}
