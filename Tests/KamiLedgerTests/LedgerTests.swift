import KamiCore
import KamiLedger
import XCTest

final class LedgerTests: XCTestCase {
    func testAccountsRoundTripTheirNames() {
        let accounts: [Account] = [.clearing, .revenue, .cogs, .inventory, .purchases, .payable(supplier: "fulu"), .writeOff]
        for account in accounts { XCTAssertEqual(Account(name: account.description), account) }
        XCTAssertNil(Account(name: "payable:"))
        XCTAssertNil(Account(name: "cash"))
        XCTAssertEqual(Account.creditor(source: "upstream:fulu"), .payable(supplier: "fulu"))
        XCTAssertEqual(Account.creditor(source: "/srv/codes.csv"), .purchases)
        XCTAssertEqual(Account.creditor(source: "manual:operator"), .purchases)
        XCTAssertEqual(Account.creditor(source: nil), .purchases)
    }

    func testADeliveryIsASaleAndItsCostPerComponentAndCreditor() {
        let lines = Journal.delivered(
            orderSeq: 7, sku: 9, amountCents: 3_000, currency: "CNY",
            costs: [(sku: 1, costCents: 500, fromPool: true, source: nil), (sku: 2, costCents: 300, fromPool: true, source: nil),
                    (sku: 2, costCents: 300, fromPool: true, source: nil), (sku: 2, costCents: 400, fromPool: false, source: "upstream:a")])
        XCTAssertEqual(lines, [
            JournalLine(kind: .sale, orderSeq: 7, sku: 9, debit: .clearing, credit: .revenue, amountCents: 3_000, currency: "CNY"),
            JournalLine(kind: .cost, orderSeq: 7, sku: 1, debit: .cogs, credit: .inventory, amountCents: 500),
            JournalLine(kind: .cost, orderSeq: 7, sku: 2, debit: .cogs, credit: .inventory, amountCents: 600),
            JournalLine(kind: .cost, orderSeq: 7, sku: 2, debit: .cogs, credit: .payable(supplier: "a"), amountCents: 400),
        ])
        let balance = TrialBalance(lines)
        XCTAssertEqual(balance.total, 0)
        XCTAssertEqual(balance[.revenue], -3_000)
        XCTAssertEqual(balance[.cogs], 1_500)
        XCTAssertEqual(balance[.inventory], -1_100)
        // Placed before money was recorded: the cost still leaves the inventory, no sale is invented.
        XCTAssertEqual(Journal.delivered(orderSeq: 1, sku: 1, amountCents: nil, currency: nil,
                                         costs: [(sku: 1, costCents: 5, fromPool: true, source: nil)]).map(\.kind), [.cost])
    }

    func testARefundReversesTheSaleExactly() {
        let delivered = Journal.delivered(orderSeq: 3, sku: 1, amountCents: 990, currency: nil,
                                          costs: [(sku: 1, costCents: 400, fromPool: true, source: nil)])
        let refund = Journal.refund(of: delivered)
        XCTAssertEqual(refund, [JournalLine(kind: .refund, orderSeq: 3, sku: 1, debit: .revenue, credit: .clearing, amountCents: 990)])
        let balance = TrialBalance(delivered + refund)
        XCTAssertEqual(balance[.revenue], 0)
        XCTAssertEqual(balance[.clearing], 0)
        XCTAssertEqual(balance[.cogs], 400, "the code was consumed: its cost stays")
        XCTAssertEqual(balance.total, 0)
    }

    func testSumsHoldAtTheLimitInsteadOfTrapping() {
        XCTAssertEqual(Money.sum(Int64.max - 1, 5), Int64.max)
        XCTAssertEqual(Money.sum(2, 3), 5)
        let lines = Journal.delivered(orderSeq: 1, sku: 1, amountCents: 1, currency: nil,
                                      costs: [(sku: 1, costCents: Int64.max, fromPool: true, source: nil),
                                              (sku: 1, costCents: Int64.max, fromPool: true, source: nil)])
        XCTAssertEqual(lines.last?.amountCents, Int64.max)
    }

    func testStockInAndWriteOffMoveTheInventory() {
        let lines = [Journal.stocked(sku: 1, costCents: 10_000, source: "codes.csv"),
                     Journal.stocked(sku: 1, costCents: 2_000, source: "upstream:b"),
                     Journal.writtenOff(sku: 1, costCents: 700)]
        let balance = TrialBalance(lines)
        XCTAssertEqual(balance[.inventory], 11_300)
        XCTAssertEqual(balance[.purchases], -10_000)
        XCTAssertEqual(balance[.payable(supplier: "b")], -2_000)
        XCTAssertEqual(balance[.writeOff], 700)
        XCTAssertEqual(balance.total, 0)
    }

    func testOrderTermsAmountsAndLabelsAreChecked() throws {
        XCTAssertEqual(try OrderTerms.none.amount(priceCents: 990, units: 3), 2_970)
        XCTAssertEqual(try OrderTerms(amountCents: 0).amount(priceCents: 990, units: 3), 0, "free is allowed")
        XCTAssertThrowsError(try OrderTerms(amountCents: -1).amount(priceCents: 990, units: 1)) { error in
            XCTAssertTrue((error as? KamiError)?.message.contains("negative") ?? false)
        }
        XCTAssertThrowsError(try OrderTerms.none.amount(priceCents: Int64.max / 2, units: 3)) { error in
            XCTAssertTrue((error as? KamiError)?.message.contains("overflows") ?? false)
        }
        XCTAssertNil(OrderLabels.make(currency: nil, channel: nil, campaign: nil, coupon: nil, distributor: nil))
        for (labels, field) in [
            (OrderLabels(currency: "cny", channel: nil, campaign: nil, coupon: nil, distributor: nil), "currency"),
            (OrderLabels(currency: nil, channel: "", campaign: nil, coupon: nil, distributor: nil), "channel"),
            (OrderLabels(currency: nil, channel: nil, campaign: String(repeating: "c", count: 65), coupon: nil, distributor: nil), "campaign"),
            (OrderLabels(currency: nil, channel: nil, campaign: nil, coupon: "a\u{1F}b", distributor: nil), "coupon"),
        ] {
            XCTAssertThrowsError(try labels.validate(), field) { error in
                XCTAssertTrue((error as? KamiError)?.message.hasPrefix(field) ?? false, "\(error)")
            }
        }
        XCTAssertNoThrow(try OrderLabels(currency: "CNY", channel: "taobao", campaign: "618", coupon: "C-1", distributor: "d7").validate())
    }
}

final class BundleSplitTests: XCTestCase {
    func testABundlesSaleIsSplitByListPriceAndAddsUpExactly() {
        XCTAssertEqual(Journal.split(1_000, over: [(sku: 1, weight: 300), (sku: 2, weight: 700)], whole: 9).map(\.1), [300, 700])
        XCTAssertEqual(Journal.split(100, over: [(sku: 1, weight: 1), (sku: 2, weight: 1), (sku: 3, weight: 1)], whole: 9).map(\.1),
                       [33, 33, 34], "the last part takes what rounding leaves")
        XCTAssertEqual(Journal.split(500, over: [], whole: 9).map(\.0), [9], "a plain SKU: one line")
        XCTAssertEqual(Journal.split(500, over: [(sku: 1, weight: 0), (sku: 2, weight: 0)], whole: 9).map(\.0), [9], "no weights")
        let lines = Journal.delivered(orderSeq: 1, sku: 9, amountCents: 3_500, currency: nil,
                                      parts: [(sku: 1, weight: 990), (sku: 2, weight: 3_000)], costs: [])
        XCTAssertEqual(lines.map(\.sku), [1, 2])
        XCTAssertEqual(lines.map(\.amountCents), [868, 2_632])
        XCTAssertEqual(Journal.refund(of: lines).map(\.amountCents), [868, 2_632])
    }
}
