import Dispatch
import Foundation
import KamiCore
import KamiEngine
import KamiStore
import Synchronization
import XCTest

/// Seeded randomized simulation: many threads fire every operation at once, with colliding
/// order ids, conflicting arguments, retries, expiries, voids and refunds, and invariants are
/// checked after every round. Prints the seed; `KAMI_SEED` replays it, `KAMI_SIM_OPS` runs more.
final class SimulationTests: XCTestCase {
    static let opsDefault = 1_000_000
    static let threads = 4
    static let inFlightPerThread = 64
    static let opsPerRound = 100_000

    /// Everything the simulation saw acknowledged.
    final class Ledger: @unchecked Sendable {
        // Protected by `lock`.
        private let lock = NSLock()
        private var committed: [String: [CodeID]] = [:]
        private(set) var problems: [String] = []
        private(set) var outcomes: [String: Int] = [:]

        func record(_ op: String, _ result: Result<OrderReply, KamiError>) {
            lock.lock()
            defer { lock.unlock() }
            switch result {
            case .success(let reply):
                outcomes["\(op) ok", default: 0] += 1
                guard reply.state == .committed else { return }
                if let previous = committed[reply.orderID], previous != reply.codeIDs {
                    problems.append("order \(reply.orderID) answered \(previous) then \(reply.codeIDs)")
                }
                committed[reply.orderID] = reply.codeIDs
                // Secrets come for the order's codes only (fewer when one was voided as leaked).
                if !Set(reply.codes.map(\.codeID)).isSubset(of: reply.codeIDs) {
                    problems.append("order \(reply.orderID) revealed codes it does not hold")
                }
            case .failure(let error):
                outcomes["\(op) \(error.code.rawValue)", default: 0] += 1
                if error.code == .integrity || error.code == .unavailable {
                    problems.append("\(op): unexpected \(error)")
                }
            }
        }

        func snapshot() -> [String: [CodeID]] { lock.lock(); defer { lock.unlock() }; return committed }
    }

    func testRandomizedSimulationKeepsEveryInvariant() throws {
        let env = ProcessInfo.processInfo.environment
        let totalOps = env["KAMI_SIM_OPS"].flatMap(Int.init) ?? SimulationTests.opsDefault
        let seed = env["KAMI_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...1_000_000_000)
        print("simulation seed \(seed) (replay with KAMI_SEED=\(seed)), \(totalOps) operations")
        let h = Harness(pool: seed % 2 == 0 ? .lockFree : .mutex)
        let skus = ["a", "b", "c", "d", "e", "f"]
        for (index, sku) in skus.enumerated() {
            h.stockSku(sku, count: 3_000, limit: index < 2 ? 1 : 0, batch: "batch-\(sku)")
        }
        _ = try h.engine.admin.setSku(SkuDefinition(key: "pack", name: "Pack", perUserLimit: 2, components: [("a", 1), ("c", 2)]))
        let allSkus = skus + ["pack"]
        let ledger = Ledger()
        let opsDone = Counter()
        var round = 0
        var rng = SplitMix64(seed: seed)
        while opsDone.value < totalOps {
            let roundSeed = rng.next()
            let opsThisRound = min(SimulationTests.opsPerRound, totalOps - opsDone.value)
            runRound(h, round: round, seed: roundSeed, ops: opsThisRound, skus: allSkus, ledger: ledger, done: opsDone)
            h.engine.admin.barrier()
            let violations = try h.engine.admin.verify()
            XCTAssertEqual(Array(violations.prefix(5)), [], "round \(round), seed \(seed)")
            XCTAssertEqual(Array(ledger.problems.prefix(5)), [], "round \(round), seed \(seed)")
            if !violations.isEmpty || !ledger.problems.isEmpty { break }
            // Every acknowledged commit is still there, with its codes, on no other order.
            var owner: [CodeID: String] = [:]
            for (orderID, codes) in ledger.snapshot() {
                let order = try h.engine.queries.order(orderID)
                XCTAssertTrue(order.state == .committed || order.state == .refunded, "\(orderID) seed \(seed)")
                XCTAssertEqual(order.codeIDs, codes, "\(orderID) seed \(seed)")
                for code in codes {
                    XCTAssertNil(owner[code], "code \(code) on two orders, seed \(seed)")
                    owner[code] = orderID
                }
            }
            // Top the stock up now and then so later rounds still sell.
            if round % 3 == 2 { for sku in skus { h.stockSku(sku, count: 1_000) } }
            round += 1
        }
        // And all of it survives a restart.
        h.reopen()
        XCTAssertEqual(try h.engine.admin.verify(), [], "after restart, seed \(seed)")
        print("simulation: \(opsDone.value) operations in \(round) rounds; outcomes \(ledger.outcomes.sorted { $0.key < $1.key })")
        XCTAssertGreaterThan(ledger.outcomes["issue ok", default: 0], 1_000, "the simulation sold something")
        XCTAssertGreaterThan(ledger.outcomes["issue CONFLICT", default: 0] + ledger.outcomes["reserve CONFLICT", default: 0], 0)
    }

    private func runRound(
        _ h: Harness, round: Int, seed: UInt64, ops: Int, skus: [String], ledger: Ledger, done: Counter
    ) {
        let engine = h.engine!
        let clock = h.clock
        let perThread = ops / SimulationTests.threads
        DispatchQueue.concurrentPerform(iterations: SimulationTests.threads) { thread in
            var rng = SplitMix64(seed: seed &+ UInt64(thread) &* 0x9E37)
            let window = DispatchSemaphore(value: SimulationTests.inFlightPerThread)
            let group = DispatchGroup()
            for _ in 0..<perThread {
                window.wait()
                group.enter()
                let finish: @Sendable () -> Void = {
                    done.increment()
                    window.signal()
                    group.leave()
                }
                // Order ids collide on purpose: retries, races on one order, conflicts.
                let n = rng.next() % 6_000
                let orderID = "r\(round)-\(n)"
                var argsRng = SplitMix64(seed: n &+ UInt64(round) &* 7919)
                var user = "u\(argsRng.next() % 800)"
                var sku = skus[Int(argsRng.next() % UInt64(skus.count))]
                let units = sku == "a" || sku == "b" || sku == "pack" ? 1 : Int(1 + argsRng.next() % 3)
                if rng.next() % 50 == 0 { user = "intruder"; sku = skus[0] }  // a conflicting retry
                let roll = rng.next() % 100
                switch roll {
                case 0..<30:
                    engine.storefront.issue(order: orderID, user: user, sku: sku, units: units, paymentRef: "pay-\(orderID)") {
                        ledger.record("issue", $0); finish()
                    }
                case 30..<60:
                    engine.storefront.reserve(order: orderID, user: user, sku: sku, units: units, ttlMs: 1_000 + Int64(n % 5) * 1_000) {
                        ledger.record("reserve", $0); finish()
                    }
                case 60..<80:
                    engine.storefront.commit(order: orderID, paymentRef: "pay-\(orderID)") { ledger.record("commit", $0); finish() }
                case 80..<90:
                    engine.storefront.release(order: orderID) { ledger.record("release", $0); finish() }
                case 90..<93:
                    engine.storefront.refund(order: orderID) { ledger.record("refund", $0); finish() }
                case 93..<98:
                    clock.advance(ms: 250)
                    engine.storefront.expireDue()
                    finish()
                default:
                    if let reply = try? engine.queries.order(orderID), let code = reply.codeIDs.first, rng.next() % 4 == 0 {
                        _ = try? engine.admin.void(code: code)
                    }
                    _ = try? engine.queries.stock(sku: sku)
                    finish()
                }
            }
            group.wait()
        }
    }
}

/// A shared counter.
final class Counter: Sendable {
    private let atomic = Atomic<Int>(0)
    var value: Int { atomic.load(ordering: .relaxed) }
    func increment() { atomic.add(1, ordering: .relaxed) }
}
