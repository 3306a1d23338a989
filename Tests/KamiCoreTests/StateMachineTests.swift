import KamiCore
import XCTest

final class StateMachineTests: XCTestCase {
    func testCodeTransitionsAreExactlyTheBriefs() {
        let legal: Set<String> = [
            "available>reserved", "reserved>issued", "reserved>available", "issued>voided", "available>voided",
        ]
        for from in CodeState.allCases {
            for to in CodeState.allCases {
                let key = "\(from)>\(to)"
                XCTAssertEqual(from.canMove(to: to), legal.contains(key), key)
                do {
                    let next = try from.moving(to: to, code: 42)
                    XCTAssertTrue(legal.contains(key), "illegal \(key) accepted")
                    XCTAssertEqual(next, to)
                } catch {
                    XCTAssertFalse(legal.contains(key), "legal \(key) rejected")
                    XCTAssertEqual(error.code, .invalidState)
                    XCTAssertTrue(error.message.contains("code 42"), error.message)
                }
            }
        }
    }

    func testOrderTransitionsAreExactlyTheBriefs() {
        let legal: Set<String> = [
            "reserved>committed", "reserved>released", "reserved>expired", "committed>refunded", "expired>committed",
        ]
        for from in OrderState.allCases {
            for to in OrderState.allCases {
                let key = "\(from)>\(to)"
                XCTAssertEqual(from.canMove(to: to), legal.contains(key), key)
                XCTAssertEqual((try? from.moving(to: to)) != nil, legal.contains(key), key)
            }
        }
        XCTAssertEqual(OrderState(name: "expired"), .expired)
        XCTAssertNil(OrderState(name: "paid"))
        XCTAssertTrue(OrderState.committed.holdsCodes)
        XCTAssertFalse(OrderState.released.holdsCodes)
    }

    func testSecretNeverPrints() {
        let secret = Secret("ABCD-1234-SECRET")
        XCTAssertEqual("\(secret)", "<redacted>")
        XCTAssertEqual(String(reflecting: secret), "<redacted>")
        var dumped = ""
        dump(secret, to: &dumped)
        XCTAssertFalse(dumped.contains("ABCD"), dumped)
        XCTAssertEqual(secret.reveal(), "ABCD-1234-SECRET")
    }

    func testIdentifierRules() {
        XCTAssertNil(IdentifierRules.problem("ORD-1_a.b", field: "order", maxBytes: 64))
        XCTAssertEqual(IdentifierRules.problem("", field: "order", maxBytes: 64), "order is empty")
        XCTAssertNotNil(IdentifierRules.problem(String(repeating: "a", count: 65), field: "order", maxBytes: 64))
        XCTAssertNotNil(IdentifierRules.problem("a b", field: "user", maxBytes: 64))
        XCTAssertNotNil(IdentifierRules.problem("a,b", field: "user", maxBytes: 64))
        XCTAssertNotNil(IdentifierRules.problem("订单", field: "user", maxBytes: 64))
    }

    func testSkuComposition() {
        let plain = Sku(id: 3, key: "a", name: "A", priceCents: 100, perUserLimit: 1, activationURLTemplate: nil)
        XCTAssertEqual(plain.unitComposition, [BundleComponent(sku: 3, units: 1)])
        let bundle = Sku(
            id: 4, key: "b", name: "B", priceCents: 100, perUserLimit: 1, activationURLTemplate: nil,
            components: [BundleComponent(sku: 1, units: 1), BundleComponent(sku: 2, units: 2)])
        XCTAssertTrue(bundle.isBundle)
        XCTAssertEqual(bundle.unitComposition.count, 2)
    }

    func testLimitsAreConsistent() {
        Limits.check()
        XCTAssertGreaterThanOrEqual(Limits.codesPerOrderMax, Limits.unitsPerOrderMax)
    }
}
