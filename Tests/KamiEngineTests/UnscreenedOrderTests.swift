import Foundation
import KamiCore
import KamiEngine
import KamiStore
import XCTest

/// An order tried without the risk gate (its SKU looked sold out) may only end SOLD_OUT or
/// refused for a limit: one that finds stock, or would go to a supplier or an operator, comes
/// back as `screeningNeeded` with nothing held, taken or written.
final class UnscreenedOrderTests: XCTestCase {
    private func issue(_ h: Harness, _ order: String, sku: String, unscreened: Bool) -> Result<OrderReply, KamiError> {
        let box = ResultBox<OrderReply>()
        h.engine.storefront.issue(order: order, user: "u-\(order)", sku: sku, units: 1, paymentRef: "p", unscreened: unscreened) {
            box.set($0)
        }
        return box.wait()
    }

    func testAnUnscreenedOrderThatFindsStockComesBackUntouched() throws {
        let h = Harness()
        h.stockSku("vip", count: 2, limit: 1)
        XCTAssertFalse(h.engine.storefront.looksSoldOut(sku: "vip"))
        let back = issue(h, "o1", sku: "vip", unscreened: true)
        XCTAssertEqual(back.failure?.needsScreening, true)
        XCTAssertNil(h.engine.upstream.order("o1"), "no order was made")
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").available, 2, "the code went back")
        // The user's limit of 1 was given back too: the screened order goes through.
        XCTAssertEqual(issue(h, "o1", sku: "vip", unscreened: false).value?.state, .committed)
        _ = issue(h, "o2", sku: "vip", unscreened: false)
        XCTAssertTrue(h.engine.storefront.looksSoldOut(sku: "vip"))
        XCTAssertEqual(issue(h, "o3", sku: "vip", unscreened: true).failure?.code, .soldOut)
        // A repeat of a delivered order is answered as it stands, gate or not.
        XCTAssertEqual(issue(h, "o1", sku: "vip", unscreened: true).value?.state, .committed)
        h.assertInvariants()
    }

    func testOrdersForASupplierOrAnOperatorAreAlwaysScreened() throws {
        let h = Harness()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "hand", name: "Hand", manualDelivery: true))
        XCTAssertEqual(issue(h, "m1", sku: "hand", unscreened: true).failure?.needsScreening, true)
        _ = try h.engine.admin.setSku(SkuDefinition(key: "up", name: "Up"))
        _ = try h.engine.upstream.setSourcing(sku: "up", policy: .poolThenUpstream)
        XCTAssertEqual(issue(h, "u1", sku: "up", unscreened: true).failure?.needsScreening, true)
        XCTAssertNil(h.engine.upstream.order("m1"))
        XCTAssertNil(h.engine.upstream.order("u1"))
        h.assertInvariants()
    }
}
