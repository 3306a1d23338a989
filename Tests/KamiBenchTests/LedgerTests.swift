import Foundation
import KamiBench
import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore
import XCTest

/// The audit every benchmark run ends with: clean on an honest run, failing on a doctored
/// one.
final class LedgerTests: XCTestCase {
    private func honest() -> Ledger {
        var ledger = Ledger()
        ledger.stock = 4
        ledger.available = 1
        ledger.perUserLimit = 1
        ledger.loaded = ["1", "2", "3", "4"]
        for (order, code) in [("a", "1"), ("b", "2"), ("c", "3")] {
            ledger.acknowledged[order] = [code]
            ledger.stored[order] = Ledger.StoredOrder(user: "u-\(order)", committed: true, codes: [code])
        }
        return ledger
    }

    func testAnHonestRunIsClean() {
        XCTAssertEqual(honest().audit(), [])
    }

    func testEachKindOfCheatingIsCaught() {
        var lost = honest()
        lost.stored["a"] = nil
        lost.available = 2
        XCTAssertTrue(lost.audit().contains { $0.contains("acknowledged order a is not stored") }, "\(lost.audit())")

        var duplicated = honest()
        duplicated.stored["c"]?.codes = ["1"]
        duplicated.acknowledged["c"] = ["1"]
        XCTAssertTrue(duplicated.audit().contains { $0.contains("code 1 is on orders") }, "\(duplicated.audit())")

        var oversold = honest()
        oversold.stored["d"] = Ledger.StoredOrder(user: "u-d", committed: true, codes: ["4"])
        oversold.acknowledged["d"] = ["4"]
        oversold.stored["e"] = Ledger.StoredOrder(user: "u-e", committed: true, codes: ["5"])
        oversold.acknowledged["e"] = ["5"]
        oversold.available = 0
        let oversoldProblems = oversold.audit()
        XCTAssertTrue(oversoldProblems.contains { $0.hasPrefix("oversold: 5 codes issued from a stock of 4") }, "\(oversoldProblems)")
        XCTAssertTrue(oversoldProblems.contains { $0.contains("code 5 that was never loaded") })

        var untold = honest()
        untold.acknowledged["c"] = nil
        XCTAssertTrue(untold.audit().contains { $0.contains("clients were told of 2") }, "\(untold.audit())")

        var greedy = honest()
        greedy.stored["b"]?.user = "u-a"
        XCTAssertTrue(greedy.audit().contains { $0.contains("user u-a holds 2 codes, over the limit of 1") })

        var leaky = honest()
        leaky.available = 0
        XCTAssertTrue(leaky.audit().contains { $0.hasPrefix("conservation") })
    }

    /// The same audit over a real kamid database that was doctored after the run: a code
    /// copied onto a second order, and an order holding a code that was never imported.
    func testAuditFailsOnADoctoredDatabase() throws {
        let directory = NSTemporaryDirectory() + "ledger-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var acknowledged: [String: [String]] = [:]
        do {
            let engine = try Engine(config: EngineConfig(directory: directory, sealer: Sealer(key: MasterKey.random())))
            defer { engine.close() }
            _ = try engine.admin.setSku(SkuDefinition(key: "hot", name: "Hot", priceCents: nil, perUserLimit: 1,
                                                activationURLTemplate: nil))
            let rows = (0..<5).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("S-\($0)"), cardNumber: nil,
                                                            costCents: nil, expiresAtMs: nil, batch: nil)) }
            _ = try engine.admin.importCodes(sku: "hot", source: ArrayRowSource(rows), label: "test")
            for n in 0..<3 {
                let order = try engine.storefront.issueSync(order: "o\(n)", user: "u\(n)", sku: "hot", units: 1, paymentRef: "p").get()
                acknowledged["o\(n)"] = order.codeIDs.map(String.init)
            }
        }
        func ledger() throws -> Ledger {
            let store = try Store(directory: directory)
            defer { store.close() }
            var ledger = Ledger()
            ledger.acknowledged = acknowledged
            ledger.stock = 5
            ledger.perUserLimit = 1
            ledger.available = try store.stateCounts().states.values.reduce(0) { $0 + $1[0] }
            for order in try store.loadSnapshot().orders {
                ledger.stored[order.orderID] = Ledger.StoredOrder(
                    user: order.user, committed: order.state == .committed, codes: order.codes.map { String($0.codeID) })
            }
            ledger.loaded = Set((1...5).map(String.init))
            return ledger
        }
        XCTAssertEqual(try ledger().audit(), [], "the honest database audits clean")

        let db = try Connection(path: directory + "/" + Store.fileName)
        try db.execute("UPDATE orders SET codes = (SELECT codes FROM orders WHERE order_id = 'o0') WHERE order_id = 'o1'")
        let duplicated = try ledger().audit()
        XCTAssertTrue(duplicated.contains { $0.contains("is on orders") }, "\(duplicated)")

        // Oversell: a fourth issued order whose code was never imported.
        try db.execute("""
            INSERT INTO orders(seq, order_id, user_id, sku_id, units, state, payment_ref, codes, ttl_ms, expires_at_ms,
                               created_at_ms, updated_at_ms)
            SELECT seq + 100, 'o9', 'u9', sku_id, 1, state, payment_ref, codes, 0, 0, 0, 0 FROM orders WHERE order_id = 'o2'
            """)
        let oversold = try ledger().audit()
        XCTAssertTrue(oversold.contains { $0.contains("clients were told of 3") || $0.hasPrefix("oversold") }, "\(oversold)")
    }
}
