import KamiCore
import XCTest

final class PackedOrdersTests: XCTestCase {
    /// Orders exercising every field: absent and present payment refs, amounts and labels,
    /// no codes and many, codes of other SKUs (a bundle), negative and huge values, long
    /// and non-ASCII strings.
    private func sampleOrders(_ count: Int, seed: UInt64) -> [Order] {
        var rng = SplitMix64(seed: seed)
        let labelChoices: [OrderLabels?] = [
            nil, OrderLabels.make(currency: "CNY", channel: "app", campaign: nil, coupon: nil, distributor: nil),
            OrderLabels.make(currency: nil, channel: "淘宝", campaign: "双十一", coupon: "C-1", distributor: "d7"),
        ]
        return (0..<count).map { n in
            let state = OrderState.allCases[Int(rng.next() % UInt64(OrderState.allCases.count))]
            let sku = SkuID(truncatingIfNeeded: rng.next() % 5) - 1
            let codes = (0..<Int(rng.next() % 4)).map { index in
                OrderCode(codeID: Int64(rng.next() % 10_000_000) - (index == 2 ? 20_000_000 : 0),
                          sku: index == 1 ? SkuID.max : sku + SkuID(index))
            }
            let created = Int64(1_700_000_000_000) + Int64(rng.next() % 1_000_000)
            var order = Order(
                seq: Int64(n + 1) * (n % 7 == 0 ? 1_000_000_007 : 1),
                orderID: n % 3 == 0 ? "order-\(n)-with-a-long-id-from-the-shop-订单" : "o\(n)",
                user: n % 5 == 0 ? "用户-\(n % 50)" : "u\(n % 50)", sku: sku, units: Int(rng.next() % 9) + 1, state: state,
                paymentRef: n % 4 == 0 ? nil : "pay-\(rng.next())", codes: codes, ttlMs: n % 2 == 0 ? 0 : 900_000,
                expiresAtMs: n % 2 == 0 ? 0 : created + 900_000, createdAtMs: created,
                updatedAtMs: created + Int64(rng.next() % 5_000) - (n % 11 == 0 ? 10 : 0),
                amountCents: n % 6 == 0 ? nil : (n % 13 == 0 ? Int64.max : Int64(rng.next() % 100_000)),
                labels: labelChoices[n % labelChoices.count])
            order.subsidyCents = n % 8 == 0 ? -5 : Int64(rng.next() % 1_000)
            return order
        }
    }

    func testEveryFieldOfEveryOrderReadsBackAsStored() {
        var table = PackedOrders()
        let orders = sampleOrders(5_000, seed: 1)
        for order in orders { table.store(order) }
        XCTAssertEqual(table.count, orders.count)
        for order in orders {
            XCTAssertEqual(table.order(order.orderID), order)
            XCTAssertTrue(table.contains(order.orderID))
        }
        XCTAssertNil(table.order("no-such-order"))
        XCTAssertFalse(table.contains("no-such-order"))
        var seen: [String: Order] = [:]
        table.forEach { seen[$0.orderID] = $0 }
        XCTAssertEqual(seen, Dictionary(uniqueKeysWithValues: orders.map { ($0.orderID, $0) }))
        XCTAssertLessThan(table.byteCount / orders.count, 80, "orders are packed, not stored as values")
    }

    /// Ids that are prefixes of each other, or differ in one byte, are different orders; the
    /// table grows (from 16 slots) without losing any, and a reserve keeps them all too.
    func testIdsThatArePrefixesOrDifferInOneByteAreDifferentOrders() {
        var table = PackedOrders()
        var ids = (1...64).map { String(repeating: "x", count: $0) }
        ids += (0..<1_000).map { "order-\($0 % 10)\($0 / 10)" } + ["order-", "order-0", "y"]
        let template = sampleOrders(1, seed: 3)[0]
        for (index, id) in ids.enumerated() {
            var order = template
            order.orderID = id
            order.seq = Int64(index + 1)
            table.store(order)
            if index == 500 { table.reserve(20_000) }
        }
        XCTAssertEqual(table.count, ids.count)
        for (index, id) in ids.enumerated() { XCTAssertEqual(table.order(id)?.seq, Int64(index + 1), id) }
        for missing in ["", "x" + String(repeating: "x", count: 64), "order-00000", "z", "order"] {
            XCTAssertFalse(table.contains(missing), missing)
            XCTAssertNil(table.order(missing), missing)
        }
    }

    func testAnOrderStoredAgainReplacesItAndSupersededBytesAreReclaimed() {
        var table = PackedOrders(compactAfterBytes: 4_096)
        var orders = sampleOrders(200, seed: 2)
        for order in orders { table.store(order) }
        let firstSize = table.byteCount
        var peak = firstSize
        for round in 0..<50 {
            for index in orders.indices {
                orders[index].updatedAtMs += 1
                orders[index].paymentRef = "round-\(round)"
                orders[index].state = round % 2 == 0 ? .committed : .refunded
                table.store(orders[index])
            }
            peak = max(peak, table.byteCount)
        }
        XCTAssertEqual(table.count, orders.count, "a store of a known id adds no order")
        for order in orders { XCTAssertEqual(table.order(order.orderID), order, "the latest store is what reads back") }
        XCTAssertLessThan(peak, firstSize * 3, "superseded encodings are reclaimed, not kept for ever")
        XCTAssertLessThan(table.byteCount, firstSize * 3)
    }
}

