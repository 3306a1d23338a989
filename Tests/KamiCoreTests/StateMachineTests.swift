import KamiCore
import XCTest

final class StateMachineTests: XCTestCase {
    func testCodeTransitionsAreExactlyTheBriefs() {
        let legal: Set<String> = [
            "available>reserved", "reserved>issued", "reserved>available", "issued>voided", "available>voided",
            "available>issued", "reserved>voided", "issued>used", "used>voided",
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
            "reserved>pending_upstream", "expired>pending_upstream", "pending_upstream>committed", "pending_upstream>failed",
            "failed>pending_upstream", "failed>refunded",
            "review>committed", "review>reserved", "review>released", "review>pending_upstream",
            // A paid hold of a manual-delivery SKU waits for the operator (late too).
            "reserved>review", "expired>review",
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
        XCTAssertFalse(OrderState.refunded.holdsCodes)
        XCTAssertEqual(OrderState.starts, [.reserved, .committed, .pendingUpstream, .review])
        XCTAssertTrue(OrderState.review.holdsCodes, "an order held for review keeps its codes reserved")
        XCTAssertTrue(OrderState.review.isHold)
        XCTAssertEqual(OrderState(name: "review"), .review)
        XCTAssertTrue(OrderState.pendingUpstream.holdsCodes, "an order pending upstream counts against the user's limit")
        XCTAssertFalse(OrderState.failed.holdsCodes)
        XCTAssertEqual(OrderState(name: "pending_upstream"), .pendingUpstream)
    }

    /// What each order state implies about its codes: every state an order can reach names
    /// its codes' states or says it gave them back, and every code state it names is one a
    /// code reaches by a move from a state the order's predecessors allowed.
    func testOrderStatesDeclareTheirCodesStates() {
        XCTAssertEqual(OrderState.reserved.codeStates, [.reserved])
        XCTAssertEqual(OrderState.committed.codeStates, [.issued, .used, .voided])
        XCTAssertEqual(OrderState.refunded.codeStates, [.voided])
        XCTAssertNil(OrderState.released.codeStates)
        XCTAssertNil(OrderState.expired.codeStates)
        XCTAssertEqual(OrderState.failed.codeStates, [])
        for move in OrderState.moves {
            // A state that holds no codes (failed) moves none: codes an upstream order gets
            // are inserted by its delivery, never moved from another state.
            guard let before = move.from.codeStates, let after = move.to.codeStates, !before.isEmpty else { continue }
            // A code state the order reaches at its move, or later by a move its codes make
            // while it stays (issued → used while committed).
            let reached = after.filter { code in before.contains(code) || before.contains { $0.canMove(to: code) } }
            for code in after where !reached.contains(code) {
                XCTAssertTrue(reached.contains { $0.canMove(to: code) }, "\(move.from)>\(move.to): no code move to \(code)")
            }
        }
        XCTAssertEqual(CodeState.zeroCounts.count, CodeState.allCases.count)
        XCTAssertEqual(CodeState.allCases.filter(\.isHeld), [.reserved, .issued, .used])
    }

    func testOrderMovesOnlyThroughTheTable() {
        var order = Order(seq: 1, orderID: "o1", user: "u", sku: 1, units: 1, state: .reserved, paymentRef: nil,
                          codes: [], ttlMs: 1_000, expiresAtMs: 2_000, createdAtMs: 1_000, updatedAtMs: 1_000)
        order.move(to: .expired, atMs: 2_500)
        XCTAssertEqual(order.state, .expired)
        XCTAssertEqual(order.updatedAtMs, 2_500)
        let late = order.moved(to: .committed, atMs: 3_000)
        XCTAssertEqual(late.state, .committed)
        XCTAssertEqual(order.state, .expired, "moved(to:) leaves the original alone")
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
