import Foundation
import KamiCore
import KamiEngine
import KamiStore
import Synchronization
import XCTest

/// Records the orders the engine hands to its upstream sink.
final class RecordingSink: UpstreamSink, @unchecked Sendable {
    private let lock = NSLock()
    private var pending: [String] = []
    func orderPending(_ order: Order, sku: Sku) { lock.withLock { pending.append(order.orderID) } }
    func take() -> [String] { lock.withLock { defer { pending = [] }; return pending } }
}

/// A seeded random walk over the upstream half of the engine: orders on pool, upstream and
/// mixed SKUs; attempts journaled in every state; deliveries, failures, retries, refunds,
/// late deliveries and reopenings (a crash as the engine sees one: everything durable is
/// reloaded). Invariants, the upstream ones included, are checked after every round, and at
/// the end every order pending upstream is back in `pendingOrders()`.
final class UpstreamSimulationTests: XCTestCase {

    func testRandomUpstreamWalksKeepEveryInvariant() throws {
        let seeds = Int(ProcessInfo.processInfo.environment["KAMI_UPSTREAM_SIM_SEEDS"] ?? "") ?? 20
        let base = UInt64(ProcessInfo.processInfo.environment["KAMI_SEED"] ?? "") ?? UInt64.random(in: 1...1_000_000)
        print("upstream simulation: \(seeds) seeds from \(base)")
        for seed in base..<(base + UInt64(seeds)) {
            try walk(seed: seed, steps: 300)
        }
    }

    func walk(seed: UInt64, steps: Int) throws {
        var rng = SplitMix64(seed: seed)
        // On the fault VFS with durability full: some reopenings are power cuts.
        let harness = Harness(durability: .full, open: false)
        FaultDisk.reset(watching: harness.directory, seed: seed)
        harness.vfs = FaultDisk.vfsName
        // Webhook rows for every event: verify checks them after each step's power cut.
        harness.webhookRoutes = [WebhookRoute(name: "shop")]
        harness.reopen()
        let sink = RecordingSink()
        harness.stockSku("pool", count: 40)
        harness.stockSku("mix", count: 10)
        _ = try harness.engine.admin.setSku(SkuDefinition(key: "up", name: "Up", priceCents: 1_000, perUserLimit: 3))
        _ = try harness.engine.upstream.setSourcing(sku: "up", policy: .upstream)
        _ = try harness.engine.upstream.setSourcing(sku: "mix", policy: .poolThenUpstream)
        for sku in ["up", "mix"] {
            for supplier in ["a", "b"] {
                _ = try harness.engine.upstream.map(sku: sku, supplier: supplier, productID: "P", costCents: 500,
                                                    knownSuppliers: ["a", "b"])
            }
        }
        harness.engine.upstream.setSink(sink)
        var delivered = 0
        var powerCuts = 0
        var secretsSeen = Set<String>()
        for step in 0..<steps {
            let upstream = harness.engine.upstream
            let pendingNow = upstream.pendingOrders().map(\.order)
            switch rng.below(10) {
            case 0, 1, 2:
                // A new order: issue, or a hold then (maybe) a commit.
                let sku = ["pool", "up", "mix"][rng.below(3)]
                let order = "s\(seed)-\(step)"
                let user = "u\(rng.below(6))"
                if rng.below(2) == 0 {
                    _ = harness.engine.storefront.issueSync(order: order, user: user, sku: sku, units: 1 + rng.below(2), paymentRef: "p")
                } else if let hold = harness.engine.storefront.reserveSync(order: order, user: user, sku: sku, units: 1).value,
                          rng.below(3) > 0 {
                    _ = harness.engine.storefront.commitSync(order: hold.orderID, paymentRef: "p")
                }
            case 3, 4:
                // A supplier is tried for a pending order (an attempt in some open state).
                guard let order = pendingNow.randomElement(using: &rng) else { continue }
                let attempts = try upstream.attempts(orderSeq: order.seq)
                if attempts.contains(where: { !$0.state.isFinal }) { continue }  // one open attempt at a time
                let supplier = ["a", "b"][rng.below(2)]
                let previous = attempts.first { $0.supplier == supplier }
                let now = harness.engine.nowMs
                let attempt = UpstreamAttempt(
                    orderSeq: order.seq, supplier: supplier, sends: (previous?.sends ?? 0) + 1, customerOrderNo: order.orderID,
                    state: [.placing, .processing, .unknown][rng.below(3)], costCents: 500,
                    createdAtMs: previous?.createdAtMs ?? now, updatedAtMs: now)
                try record(attempt, upstream)
            case 5, 6:
                // An open attempt settles: delivered, or refused.
                guard let order = pendingNow.randomElement(using: &rng),
                      let open = try upstream.attempts(orderSeq: order.seq).first(where: { !$0.state.isFinal }) else { continue }
                if rng.below(3) > 0 {
                    let items = (0..<order.units).map { DeliveredItem(secret: Secret("up-\(seed)-\(step)-\($0)")) }
                    let result = box { upstream.deliver(orderID: order.orderID, attempt: open.moved(to: .succeeded, detail: "ok",
                                                                                                    atMs: harness.engine.nowMs),
                                                        items: items, completion: $0) }
                    if let reply = result.value {
                        XCTAssertEqual(reply.state, .committed)
                        delivered += 1
                    }
                } else {
                    try record(open.moved(to: .failed, detail: "refused", atMs: harness.engine.nowMs), upstream)
                }
            case 7:
                // Every candidate refused: the order fails (only with no open attempt).
                guard let order = pendingNow.randomElement(using: &rng),
                      try upstream.attempts(orderSeq: order.seq).allSatisfy({ $0.state.isFinal }) else { continue }
                _ = box { upstream.fail(orderID: order.orderID, attempt: nil, reason: "no candidate", completion: $0) }
            case 8:
                // The operator retries or refunds a failed order.
                guard let failed = upstream.failedOrders().randomElement(using: &rng) else { continue }
                if rng.below(2) == 0 {
                    let retried = box { upstream.retry(orderID: failed.orderID, completion: $0) }
                    // Pending again, or refused because the user has bought up to the limit since.
                    XCTAssertTrue(retried.value?.state == .pendingUpstream || retried.failure?.code == .limitReached, "\(retried)")
                } else {
                    XCTAssertEqual(harness.engine.storefront.refundSync(order: failed.orderID).value?.state, .refunded)
                }
            case 9 where rng.below(2) == 0:
                // The power goes off, now or a few writes into the next attempt's batch: every
                // acknowledged attempt, delivery and pending order survives it.
                let pending = upstream.pendingOrders().map(\.order)
                var attemptsBefore: [String: [UpstreamAttempt]] = [:]
                for order in pending { attemptsBefore[order.orderID] = try upstream.attempts(orderSeq: order.seq) }
                let committed = (0..<step).compactMap { index -> OrderReply? in
                    guard let reply = try? harness.engine.queries.order("s\(seed)-\(index)"), reply.state == .committed else { return nil }
                    return reply
                }
                var doubtful: String?
                if let order = pending.randomElement(using: &rng),
                   let attempts = attemptsBefore[order.orderID], attempts.allSatisfy(\.state.isFinal) {
                    // An attempt journaled as the power fails: it may or may not be on disk.
                    doubtful = order.orderID
                    FaultDisk.freeze(afterWrites: UInt32(rng.below(6)))
                    let now = harness.engine.nowMs
                    try? record(UpstreamAttempt(
                        orderSeq: order.seq, supplier: "a", sends: (attempts.first { $0.supplier == "a" }?.sends ?? 0) + 1,
                        customerOrderNo: order.orderID, state: .placing, costCents: 500,
                        createdAtMs: attempts.first { $0.supplier == "a" }?.createdAtMs ?? now, updatedAtMs: now), upstream)
                }
                FaultDisk.freeze()
                harness.close()
                XCTAssertTrue(FaultDisk.powerCut(.tear), "seed \(seed) step \(step): the power cut failed")
                harness.reopen()
                harness.engine.upstream.setSink(sink)
                powerCuts += 1
                let after = harness.engine.upstream
                XCTAssertEqual(Set(after.pendingOrders().map(\.order.orderID)), Set(pending.map(\.orderID)),
                               "seed \(seed) step \(step): pending orders after a power cut")
                for order in pending where order.orderID != doubtful {
                    XCTAssertEqual(try after.attempts(orderSeq: order.seq), attemptsBefore[order.orderID],
                                   "seed \(seed) step \(step): attempts of \(order.orderID) after a power cut")
                }
                for reply in committed {
                    let found = try? harness.engine.queries.order(reply.orderID)
                    XCTAssertEqual(found?.state, .committed, "seed \(seed) step \(step): \(reply.orderID) after a power cut")
                    XCTAssertEqual(found?.codeIDs, reply.codeIDs, "seed \(seed) step \(step): \(reply.orderID)'s codes")
                }
                harness.assertInvariants()
            default:
                // A crash as the engine sees it: reopen from disk.
                let before = Set(upstream.pendingOrders().map(\.order.orderID))
                harness.reopen()
                harness.engine.upstream.setSink(sink)
                XCTAssertEqual(Set(harness.engine.upstream.pendingOrders().map(\.order.orderID)), before,
                               "seed \(seed) step \(step): pending orders after reopening")
            }
            if step % 25 == 24 { harness.assertInvariants() }
        }
        harness.assertInvariants()
        // Every upstream-delivered secret is served once, to its order only.
        for order in harness.engine.upstream.pendingOrders() { _ = order }
        for index in 0..<steps {
            guard let reply = try? harness.engine.queries.order("s\(seed)-\(index)"), reply.state == .committed else { continue }
            for code in reply.codes {
                XCTAssertTrue(secretsSeen.insert(code.secret.reveal()).inserted, "seed \(seed): a secret served to two orders")
            }
        }
        XCTAssertGreaterThan(delivered + secretsSeen.count, 0)
        XCTAssertGreaterThan(powerCuts, 0, "seed \(seed): the walk cut the power")
        harness.close()
        _ = sink.take()
    }

    private func record(_ attempt: UpstreamAttempt, _ upstream: Upstream) throws {
        let waiter = ResultBox<Bool>()
        upstream.recordAttempt(attempt) { result in waiter.set(result.map { true }) }
        _ = try waiter.wait().get()
    }

    private func box(_ call: (@escaping OrderCompletion) -> Void) -> Result<OrderReply, KamiError> {
        let waiter = ResultBox<OrderReply>()
        call { waiter.set($0) }
        return waiter.wait()
    }
}
