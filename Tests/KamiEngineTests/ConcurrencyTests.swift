import Dispatch
import Foundation
import KamiCore
import KamiEngine
import KamiStore
import Synchronization
import XCTest

final class ConcurrencyTests: XCTestCase {
    func testFlashSaleOnOneHotSkuNeverOversellsOrDoubleIssues() throws {
        for pool in [PoolKind.lockFree, .mutex] {
            let h = Harness(pool: pool)
            h.stockSku("hot", count: 500, limit: 1)
            let engine = h.engine!
            let winners = Locked<[String: [CodeID]]>([:])
            let outcomes = Locked<[ErrorCode: Int]>([:])
            // 4,000 buyers (some of them twice, as retries and as greedy users) for 500 codes.
            DispatchQueue.concurrentPerform(iterations: 8) { thread in
                for n in 0..<500 {
                    let user = "u\((thread * 500 + n) % 3_000)"
                    let order = "o\(thread)-\(n)"
                    switch engine.storefront.issueSync(order: order, user: user, sku: "hot", paymentRef: "p") {
                    case .success(let reply): winners.withLock { $0[order] = reply.codeIDs }
                    case .failure(let error): outcomes.withLock { $0[error.code, default: 0] += 1 }
                    }
                }
            }
            let sold = winners.withLock { $0 }
            let codes = sold.values.flatMap { $0 }
            XCTAssertEqual(codes.count, 500, "\(pool): every code sold, none oversold")
            XCTAssertEqual(Set(codes).count, codes.count, "\(pool): no code issued twice")
            XCTAssertEqual(outcomes.withLock { $0[.soldOut, default: 0] + $0[.limitReached, default: 0] }, 3_500)
            XCTAssertEqual(try h.engine.queries.stock(sku: "hot").available, 0)
            h.assertInvariants()
        }
    }

    func testConcurrentImportsIntoOneSkuAndCatalogChanges() throws {
        let h = Harness()
        h.stockSku("vip", count: 1)
        let engine = h.engine!
        DispatchQueue.concurrentPerform(iterations: 6) { thread in
            if thread % 2 == 0 {
                let rows = (0..<200).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("t\(thread)-\($0)"))) }
                XCTAssertEqual(try? engine.admin.importCodes(sku: "vip", source: ArrayRowSource(rows), label: "t").imported, 200)
            } else {
                // Two threads create the same new SKU at once: one creates it, the other updates it.
                XCTAssertNotNil(try? engine.admin.setSku(SkuDefinition(key: "new", name: "N\(thread)")))
            }
        }
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").available, 601)
        XCTAssertEqual(h.engine.queries.skus().filter { $0.key == "new" }.count, 1)
        h.assertInvariants()
    }

    func testVerifySeesOneConsistentDatabaseUnderLoad() throws {
        let h = Harness()
        h.stockSku("vip", count: 400)
        let engine = h.engine!
        let stop = Flag()
        let traffic = Thread {
            var n = 0
            while !stop.isSet {
                _ = engine.storefront.reserveSync(order: "t-\(n)", user: "u\(n % 50)", sku: "vip")
                _ = engine.storefront.releaseSync(order: "t-\(n)")
                n += 1
            }
        }
        traffic.start()
        var dbViolations: [Violation] = []
        for _ in 0..<30 {
            // Memory is compared at rest only; everything read from the database must agree.
            dbViolations += try h.engine.admin.verify().filter { $0.invariant != "memory" }
        }
        stop.set()
        XCTAssertEqual(dbViolations, [])
        Thread.sleep(forTimeInterval: 0.2)
        h.assertInvariants()
    }
}

/// A flag shared between threads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
