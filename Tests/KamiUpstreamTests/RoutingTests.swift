import KamiCore
import KamiUpstream
import XCTest

/// The routing strategies and the circuit breaker, on their own.
final class RoutingTests: XCTestCase {
    func candidate(_ supplier: String, cost: Int64, priority: Int = 0, weight: Int = 1, p95: Int64? = nil,
                   success: Double = 1) -> Candidate {
        Candidate(mapping: SupplierMapping(sku: 1, supplier: supplier, productID: "P", costCents: cost, priority: priority,
                                           weight: weight),
                  p95Ms: p95, successRate: success)
    }

    func testEachStrategyRanksAsSpecified() {
        let a = candidate("a", cost: 500, priority: 2, weight: 1, p95: 80)
        let b = candidate("b", cost: 400, priority: 3, weight: 3, p95: 200)
        let c = candidate("c", cost: 450, priority: 1, weight: 0, p95: 40)
        let all = [a, b, c]
        XCTAssertEqual(Router.rank(all, strategy: .cheapest, random: 0).map(\.mapping.supplier), ["b", "c", "a"])
        XCTAssertEqual(Router.rank(all, strategy: .priority, random: 0).map(\.mapping.supplier), ["c", "a", "b"])
        XCTAssertEqual(Router.rank(all, strategy: .fastest, random: 0).map(\.mapping.supplier), ["c", "a", "b"])
        // A supplier never measured goes first under fastest, so it gets measured.
        let fresh = candidate("d", cost: 900)
        XCTAssertEqual(Router.rank(all + [fresh], strategy: .fastest, random: 0).first?.mapping.supplier, "d")
        // Ties on cost fall back to priority.
        let tie = [candidate("x", cost: 100, priority: 5), candidate("y", cost: 100, priority: 1)]
        XCTAssertEqual(Router.rank(tie, strategy: .cheapest, random: 0).map(\.mapping.supplier), ["y", "x"])
    }

    func testWeightedPicksInProportionToWeightTimesSuccessRate() {
        // a: weight 1, b: weight 3 at a 100% success rate, c: weight 0 never first.
        let all = [candidate("a", cost: 1, weight: 1), candidate("b", cost: 1, weight: 3), candidate("c", cost: 1, weight: 0)]
        var firsts: [String: Int] = [:]
        for step in 0..<1_000 {
            let first = Router.rank(all, strategy: .weighted, random: (Double(step) + 0.5) / 1_000).first!.mapping.supplier
            firsts[first, default: 0] += 1
        }
        XCTAssertEqual(firsts["a"], 250)
        XCTAssertEqual(firsts["b"], 750)
        XCTAssertNil(firsts["c"])
        // A supplier that fails half its attempts counts half its weight.
        let flaky = [candidate("a", cost: 1, weight: 1), candidate("b", cost: 1, weight: 2, success: 0.5)]
        var a = 0
        for step in 0..<1_000 where Router.rank(flaky, strategy: .weighted, random: (Double(step) + 0.5) / 1_000).first!.mapping.supplier == "a" {
            a += 1
        }
        XCTAssertEqual(a, 500)
    }

    func testTheMarginGuardLimit() {
        let sourcing = SkuSourcing(sku: 1, policy: .upstream, minMarginCents: 150)
        XCTAssertEqual(Router.costLimit(priceCents: 1_000, sourcing: sourcing), 850)
    }

    func testTheBreakerOpensHalfOpensAndCloses() {
        var breaker = CircuitBreaker(window: 4, errorRate: 0.75, openMs: 1_000)
        XCTAssertTrue(breaker.allows(nowMs: 0))
        breaker.record(success: true, nowMs: 0)
        breaker.record(success: false, nowMs: 1)
        breaker.record(success: false, nowMs: 1)
        XCTAssertEqual(breaker.state, .closed, "two failures of three are under 75%")
        breaker.record(success: false, nowMs: 2)
        XCTAssertEqual(breaker.state, .open, "three of four reach it")
        XCTAssertFalse(breaker.allows(nowMs: 500))
        // After the open period one probe goes through, and only one.
        XCTAssertTrue(breaker.allows(nowMs: 1_100))
        XCTAssertEqual(breaker.state, .halfOpen)
        XCTAssertFalse(breaker.allows(nowMs: 1_101))
        breaker.record(success: false, nowMs: 1_200)
        XCTAssertEqual(breaker.state, .open, "a failed probe opens it again")
        XCTAssertEqual(breaker.openings, 2)
        XCTAssertTrue(breaker.allows(nowMs: 2_300))
        breaker.record(success: true, nowMs: 2_400)
        XCTAssertEqual(breaker.state, .closed)
        // A probe whose request never went out is given back.
        var other = CircuitBreaker(window: 2, errorRate: 0.5, openMs: 10)
        other.record(success: false, nowMs: 0)
        other.record(success: false, nowMs: 0)
        XCTAssertTrue(other.allows(nowMs: 20))
        XCTAssertFalse(other.allows(nowMs: 21))
        other.releaseProbe()
        XCTAssertTrue(other.allows(nowMs: 22))
    }

    func testStatsKeepTheRecentWindow() {
        var stats = SupplierStats(capacity: 10)
        for value in 1...20 { stats.record(latencyMs: Int64(value), success: value > 15) }
        XCTAssertEqual(stats.total, 20)
        XCTAssertEqual(stats.p95Ms, 20)
        XCTAssertEqual(stats.successRate, 0.5, accuracy: 0.001, "the last 10: 11...20, of which 16...20 succeeded")
    }
}
