import CKamiFaultVFS
import Foundation
import KamiCore
import KamiCrypto
import KamiEngine
import KamiLedger
import KamiStore
import XCTest

/// Deterministic simulation of the engine and its commit writer: one thread, a manual clock,
/// and the fault VFS as the disk (seeded write errors, fsync errors, power cuts that tear the
/// batch in flight, and crashes between a commit and its reply). Every step is checked against
/// a model; every crash is followed by recovery checks and `verify()`. A seed fixes the
/// operations and the faults, so a failing seed replays exactly:
/// `KAMI_SIM_SEED=S swift test --filter DeterministicSimulationTests` (set
/// `SWIFT_DETERMINISTIC_HASHING=1` as well to get the very same trace in another process).
/// `KAMI_SIM_SEEDS` and `KAMI_SIM_STEPS` change the size of the run.
final class DeterministicSimulationTests: XCTestCase {
    static let seedsDefault = 1_000
    static let stepsDefault = 1_000

    func testSeededSimulationsKeepEveryInvariant() throws {
        let env = ProcessInfo.processInfo.environment
        let seeds = env["KAMI_SIM_SEEDS"].flatMap(Int.init) ?? Self.seedsDefault
        let steps = env["KAMI_SIM_STEPS"].flatMap(Int.init) ?? Self.stepsDefault
        let first = env["KAMI_SIM_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...1_000_000_000)
        let only = env["KAMI_SIM_SEED"] != nil
        print("deterministic simulation: seeds \(first)..<\(first + UInt64(only ? 1 : seeds)), \(steps) steps each")
        var totals = Simulation.Totals()
        let started = Date()
        for seed in first..<(first + UInt64(only ? 1 : seeds)) {
            let sim = Simulation(seed: seed, steps: steps)
            sim.run()
            totals.add(sim.totals)
            if !sim.problems.isEmpty {
                XCTFail("seed \(seed) (replay: KAMI_SIM_SEED=\(seed)): \(sim.problems.prefix(5).joined(separator: "; "))")
                break
            }
        }
        print("deterministic simulation: \(totals.seeds) seeds, \(totals.operations) operations, "
              + "\(totals.crashes) crashes (\(totals.lostReplies) replies lost after their commit), "
              + "\(totals.injectedWriteErrors) write errors and \(totals.injectedSyncErrors) fsync errors injected, "
              + "\(totals.unavailable) UNAVAILABLE replies, \(totals.handDelivered) delivered by hand, \(totals.torn) torn and \(totals.dropped) dropped writes at cuts, "
              + String(format: "%.1f s", Date().timeIntervalSince(started)))
        XCTAssertEqual(totals.seeds, only ? 1 : seeds)
        XCTAssertGreaterThan(totals.crashes, 0)
        if !only { XCTAssertGreaterThan(totals.handDelivered, 0, "the walk delivers by hand") }
    }

    func testASeedReplaysExactly() {
        let seed = UInt64.random(in: 1...1_000_000_000)
        let first = Simulation(seed: seed, steps: 600)
        first.keepLog = true
        first.run()
        let second = Simulation(seed: seed, steps: 600)
        second.keepLog = true
        second.run()
        XCTAssertEqual(first.problems, [], "seed \(seed)")
        if let index = zip(first.log, second.log).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            XCTFail("seed \(seed): the runs part at step \(index): \(first.log[max(0, index - 3)...index]) vs \(second.log[max(0, index - 3)...index])")
        }
        XCTAssertEqual(first.trace, second.trace, "seed \(seed) gave two different traces")
        XCTAssertEqual(first.totals.operations, second.totals.operations)
        let other = Simulation(seed: seed &+ 1, steps: 600)
        other.run()
        XCTAssertNotEqual(first.trace, other.trace, "the trace does not depend on the seed")
    }
}

/// One seeded run.
final class Simulation {
    /// Two webhook endpoints: one takes every event, one only refunds and cases.
    static let webhookRoutes = [WebhookRoute(name: "shop"), WebhookRoute(name: "ops", events: [.orderRefunded, .caseOpened])]
    struct Totals {
        var seeds = 0
        var operations = 0
        var crashes = 0
        var lostReplies = 0
        var unavailable = 0
        var injectedWriteErrors: UInt64 = 0
        var injectedSyncErrors: UInt64 = 0
        var torn: UInt64 = 0
        var dropped: UInt64 = 0
        /// Manual-delivery orders delivered by hand.
        var handDelivered = 0

        mutating func add(_ other: Totals) {
            seeds += other.seeds
            operations += other.operations
            crashes += other.crashes
            lostReplies += other.lostReplies
            unavailable += other.unavailable
            injectedWriteErrors += other.injectedWriteErrors
            injectedSyncErrors += other.injectedSyncErrors
            torn += other.torn
            dropped += other.dropped
            handDelivered += other.handDelivered
        }
    }

    /// What the model knows of an order.
    struct ModelOrder {
        var user: String
        var sku: String
        var units: Int
        var state: OrderState
        var codes: [CodeID]
    }

    let seed: UInt64
    let steps: Int
    private var rng: SplitMix64
    private(set) var problems: [String] = []
    private(set) var totals = Totals()
    /// FNV-1a over every step's outcome.
    private(set) var trace: UInt64 = 0xcbf2_9ce4_8422_2325

    private let h: Harness
    private let skus = ["free", "lim", "hand"]
    private var orders: [String: ModelOrder] = [:]
    private var orderIDs: [String] = []
    private var owner: [CodeID: String] = [:]
    /// Codes the model knows activated (of committed orders; a refund voids them).
    private var used: Set<CodeID> = []
    /// Orders whose last write failed: after a crash the disk may hold either outcome.
    private var failedSinceCrash: [String] = []
    private var writePPM: UInt32 = 0
    private var syncPPM: UInt32 = 0
    private var fullDisk = false
    private var nextOrder = 0

    init(seed: UInt64, steps: Int) {
        self.seed = seed
        self.steps = steps
        rng = SplitMix64(seed: seed)
        // The key from the seed: fingerprints are keyed, so with a random key the B-tree of
        // fingerprints (and the pages a commit writes, which the fault disk counts) differs
        // from run to run once codes are stored mid-walk (delivered by hand).
        var keyBytes: [UInt8] = []
        var mixed = seed
        for _ in 0..<32 {
            mixed = mixed &* 6364136223846793005 &+ 1442695040888963407
            keyBytes.append(UInt8(truncatingIfNeeded: mixed >> 33))
        }
        h = Harness(pool: seed % 2 == 0 ? .lockFree : .mutex, durability: .full, open: false, key: MasterKey(bytes: keyBytes))
        // One mutation per transaction: how expiries (queued together) fall into batches
        // would otherwise depend on thread timing, and so would the faults that hit them.
        h.commit = CommitSettings(batchMax: 1)
        // Derivation only at points the sequence of writes fixes, not when the writer happens
        // to be idle: a seed must replay exactly.
        h.commit?.deriveWhenIdle = false
    }

    private func random(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }

    private var recent: [String] = []
    /// Every step's outcome, when asked for (to show where two runs part).
    var keepLog = false
    private(set) var log: [String] = []

    private func mix(_ text: String) {
        if keepLog { log.append(text + " rng=\(rng.state % 10_000)") }
        recent.append(text)
        if recent.count > 8 { recent.removeFirst() }
        for byte in text.utf8 {
            trace ^= UInt64(byte)
            trace = trace &* 0x100_0000_01b3
        }
    }

    private func fail(_ message: String) {
        if problems.count < 20 { problems.append(message + " [last steps: \(recent.joined(separator: " | "))]") }
    }

    func run() {
        FaultDisk.reset(watching: h.directory, seed: seed)
        h.vfs = FaultDisk.vfsName
        h.reopen()
        h.engine.webhooks.setRoutes(Simulation.webhookRoutes)
        h.engine.setHoldTTL(defaultMs: 1_000, maxMs: 60_000)
        h.stockSku("free", count: 300)
        h.stockSku("lim", count: 300, limit: 1)
        // Manual delivery: paid orders wait for the operator, who delivers by hand or from the pool.
        h.stockSku("hand", count: 40)
        _ = try? h.engine.admin.setSku(SkuDefinition(key: "hand", manualDelivery: true))
        // Money: a campaign on "free" whose budget runs out, coupons that are taken and freed.
        if let free = h.engine.queries.skus().first(where: { $0.key == "free" }) {
            _ = try? h.engine.admin.setSku(SkuDefinition(key: "free", priceCents: 1_000))
            try? h.engine.admin.setCampaign(Campaign(key: "sim", sku: free.id, priceCents: nil, discountCents: 100, startsAtMs: 0,
                                                     endsAtMs: Int64.max, budgetCents: 4_000, perUserUses: 0))
            _ = try? h.engine.admin.addCoupons(CouponBatch(key: "simc", discountCents: 50, perUserUses: 0),
                                               codes: (0..<12).map { "SIMC\($0)" })
        }
        // Fault rates for this seed: none, light or heavy, write errors as EIO or ENOSPC.
        let rates: [(UInt32, UInt32)] = [(0, 0), (300, 1_000), (2_000, 10_000), (0, 30_000), (10_000, 0)]
        (writePPM, syncPPM) = rates[random(rates.count)]
        fullDisk = random(2) == 0
        FaultDisk.setFaults(writePPM: writePPM, syncPPM: syncPPM, full: fullDisk)
        totals.seeds = 1
        for step in 0..<steps {
            guard problems.isEmpty else { break }
            self.step(step)
            checkCounts(step)
        }
        if problems.isEmpty { crash(step: steps, tear: true) }
        let stats = FaultDisk.stats
        totals.injectedWriteErrors += stats.failed_writes
        totals.injectedSyncErrors += stats.failed_syncs
        h.close()
    }

    // MARK: steps

    private func step(_ step: Int) {
        totals.operations += 1
        let roll = random(1_000)
        switch roll {
        case 0..<2:
            // A crash between a commit and its reply: the operation completes, its reply is lost.
            crashAfterLostReply(step)
        case 2..<4:
            // The power goes off in the middle of the next batch.
            FaultDisk.freeze(afterWrites: UInt32(random(12)))
            issueNew(step)
            crash(step: step, tear: true)
        case 4..<380:
            issueNew(step)
        case 380..<480:
            retryExisting(step)
        case 480..<650:
            reserveNew(step)
        case 650..<760:
            commitReserved(step)
        case 760..<830:
            releaseReserved(step)
        case 830..<880:
            refundCommitted(step)
        case 880..<905:
            conflicting(step)
        case 905..<930:
            decideReview(step)
        case 930..<945:
            deliverWebhooks(step)
        case 945..<965:
            activateSome(step)
        default:
            h.clock.advance(ms: Int64(100 + random(1_500)))
            let faults = faultCount()
            _ = h.engine.storefront.expireDue()
            h.engine.admin.barrier() // the expiries are queued writes: wait for them
            mix("expire")
            if faultCount() != faults {
                // A failed expiry write may still reach the disk: those holds are in doubt.
                failedSinceCrash += orderIDs.filter { orders[$0]?.state.isHold == true }
            }
            refreshReserved(step)
        }
    }

    private func newOrder() -> (id: String, user: String, sku: String) {
        nextOrder += 1
        return ("o\(nextOrder)", "u\(random(40))", skus[random(skus.count)])
    }

    private func call(_ body: (@escaping OrderCompletion) -> Void) -> Result<OrderReply, KamiError> {
        let box = ReplyBox()
        let done = DispatchSemaphore(value: 0)
        body { result in
            box.result = result
            done.signal()
        }
        done.wait()
        return box.result!
    }

    private func issueNew(_ step: Int) {
        let (id, user, sku) = newOrder()
        let units = 1 + (random(4) == 0 ? 1 : 0)
        let faults = faultCount()
        // One in ten is held for review by the risk gate.
        let review = random(10) == 0
        let terms = promotion(sku: sku)
        let result = call { h.engine.storefront.issue(order: id, user: user, sku: sku, units: units, paymentRef: "p", review: review,
                                                      terms: terms, completion: $0) }
        apply(result, id: id, user: user, sku: sku, units: units, op: "issue", faultsBefore: faults, step: step)
    }

    private func reserveNew(_ step: Int) {
        let (id, user, sku) = newOrder()
        let faults = faultCount()
        let review = random(10) == 0
        let terms = promotion(sku: sku)
        let result = call { h.engine.storefront.reserve(order: id, user: user, sku: sku, units: 1, ttlMs: Int64(1_000 + random(3_000)),
                                             review: review, terms: terms, completion: $0) }
        apply(result, id: id, user: user, sku: sku, units: 1, op: "reserve", faultsBefore: faults, step: step)
    }

    /// Orders of "free" name the campaign one time in three and a coupon one time in four
    /// (verify checks no budget is overspent and no coupon held twice, across every crash).
    private func promotion(sku: String) -> OrderTerms {
        guard sku == "free" else { return .none }
        let campaign = random(3) == 0 ? "sim" : nil
        let coupon = random(4) == 0 ? "SIMC\(random(12))" : nil
        return OrderTerms(labels: OrderLabels.make(currency: nil, channel: "sim", campaign: campaign, coupon: coupon, distributor: nil))
    }

    /// An order id the model knows, in a given state (deterministic: picked from the list).
    private func pick(_ states: Set<OrderState>) -> String? {
        guard !orderIDs.isEmpty else { return nil }
        for _ in 0..<8 {
            let id = orderIDs[random(orderIDs.count)]
            if let order = orders[id], states.contains(order.state) { return id }
        }
        return nil
    }

    private func retryExisting(_ step: Int) {
        guard let id = pick([.committed, .reserved]), let order = orders[id] else { return issueNew(step) }
        let faults = faultCount()
        let result = call { h.engine.storefront.issue(order: id, user: order.user, sku: order.sku, units: order.units, paymentRef: "p",
                                           completion: $0) }
        if order.state == .committed, let reply = result.value, reply.codeIDs != order.codes {
            fail("step \(step): retry of \(id) answered \(reply.codeIDs), first \(order.codes)")
        }
        apply(result, id: id, user: order.user, sku: order.sku, units: order.units, op: "retry", faultsBefore: faults, step: step)
    }

    private func commitReserved(_ step: Int) {
        guard let id = pick([.reserved]), let order = orders[id] else { return reserveNew(step) }
        let faults = faultCount()
        let result = call { h.engine.storefront.commit(order: id, paymentRef: "p", completion: $0) }
        if let reply = result.value, reply.state == .committed, reply.codeIDs != order.codes {
            fail("step \(step): commit of \(id) gave \(reply.codeIDs), held \(order.codes)")
        }
        apply(result, id: id, user: order.user, sku: order.sku, units: order.units, op: "commit", faultsBefore: faults, step: step)
    }

    private func releaseReserved(_ step: Int) {
        guard let id = pick([.reserved]), let order = orders[id] else { return }
        let faults = faultCount()
        let result = call { h.engine.storefront.release(order: id, completion: $0) }
        apply(result, id: id, user: order.user, sku: order.sku, units: order.units, op: "release", faultsBefore: faults, step: step)
    }

    private func refundCommitted(_ step: Int) {
        guard let id = pick([.committed]), let order = orders[id] else { return }
        let faults = faultCount()
        let result = call { h.engine.storefront.refund(order: id, completion: $0) }
        apply(result, id: id, user: order.user, sku: order.sku, units: order.units, op: "refund", faultsBefore: faults, step: step)
    }

    /// The buyer activates one code or all of a committed order (by its owner; a stranger is
    /// refused). A failed write may or may not have reached the disk: the disk's state is taken.
    private func activateSome(_ step: Int) {
        guard let id = pick([.committed]), let order = orders[id], !order.codes.isEmpty else { return issueNew(step) }
        if random(10) == 0 {
            let stranger = h.engine.storefront.activateSync(order: id, user: order.user + "x")
            if stranger.failure?.code != .notFound { fail("step \(step): another user activated \(id): \(stranger)") }
        }
        let one = random(2) == 0 ? [order.codes[random(order.codes.count)]] : []
        let faults = faultCount()
        switch h.engine.storefront.activateSync(order: id, user: order.user, codeIDs: one) {
        case .success(let reply):
            let named = Set(reply.items.map(\.codeID))
            if named != Set(one.isEmpty ? order.codes : one) { fail("step \(step): activate \(id) \(one) answered \(named.sorted())") }
            if reply.items.contains(where: { $0.usedAtMs == 0 }) { fail("step \(step): activate \(id) has no time") }
            used.formUnion(named)
            mix("activate \(id) \(named.sorted())")
        case .failure(let error):
            mix("activate \(id) \(error.code.rawValue)")
            guard error.code == .unavailable else { return fail("step \(step): activate \(id): \(error)") }
            totals.unavailable += 1
            if faultCount() == faults && !FaultDisk.isFrozen { fail("step \(step): activate UNAVAILABLE with no fault injected") }
            failedSinceCrash.append(id)
            adoptActivations(order.codes)
        }
    }

    /// Takes the disk's word on which of `codes` are used.
    private func adoptActivations(_ codes: [CodeID]) {
        guard let states = try? h.engine.storage.codeStates(codes) else { return }
        for code in codes {
            if states[code]?.state == .used { used.insert(code) } else { used.remove(code) }
        }
    }

    /// The webhook dispatcher's part: due rows delivered, retried or dead-lettered, dead ones
    /// replayed (journaled through the writer like every other change, faults and all).
    private func deliverWebhooks(_ step: Int) {
        guard let due = try? h.engine.webhooks.due(endpoint: "shop", nowMs: h.clock.nowMs(), limit: 1 + random(6)) else { return }
        var results: [WebhookResult] = []
        for row in due {
            switch random(4) {
            case 0: results.append(WebhookResult(id: row.id, outcome: .retry(atMs: h.clock.nowMs() + Int64(random(2_000))), error: "HTTP 500"))
            case 1: results.append(WebhookResult(id: row.id, outcome: .dead, error: "timeout"))
            default: results.append(WebhookResult(id: row.id, outcome: .delivered))
            }
        }
        let done = DispatchSemaphore(value: 0)
        h.engine.webhooks.record(results) { _ in done.signal() }
        done.wait()
        if random(5) == 0 { _ = try? h.engine.webhooks.replay(ids: [], endpoint: "shop", who: "sim") }
        mix("webhooks \(results.count)")
    }

    /// The operator approves or denies an order held for review, or delivers a manual
    /// SKU's order by hand.
    private func decideReview(_ step: Int) {
        guard let id = pick([.review]), let order = orders[id] else { return issueNew(step) }
        let faults = faultCount()
        if order.sku == "hand" && order.codes.isEmpty && random(3) == 0 {
            let items = (0..<order.units).map { DeliveredItem(secret: Secret("H\(seed)-\(id)-\($0)")) }
            let result = call { h.engine.deliver(order: id, items: items, completion: $0) }
            if result.value != nil { totals.handDelivered += 1 }
            if let reply = result.value, reply.state != .committed || reply.codeIDs.count != order.units {
                fail("step \(step): delivering \(id) by hand left it \(reply.state) with \(reply.codeIDs)")
            }
            return apply(result, id: id, user: order.user, sku: order.sku, units: order.units, op: "deliver",
                         faultsBefore: faults, step: step)
        }
        let approving = random(2) == 0
        let result = call { approving ? h.engine.approve(order: id, completion: $0) : h.engine.deny(order: id, completion: $0) }
        if approving, let reply = result.value, reply.state == .committed, !order.codes.isEmpty, reply.codeIDs != order.codes {
            fail("step \(step): approving \(id) gave \(reply.codeIDs), held \(order.codes)")
        }
        if let reply = result.value, approving ? !(reply.state == .committed || reply.state == .reserved) : reply.state != .released {
            fail("step \(step): \(approving ? "approve" : "deny") of \(id) left it \(reply.state)")
        }
        apply(result, id: id, user: order.user, sku: order.sku, units: order.units, op: approving ? "approve" : "deny",
              faultsBefore: faults, step: step)
    }

    private func conflicting(_ step: Int) {
        guard let id = pick([.committed, .reserved]), let order = orders[id] else { return }
        let result = call { h.engine.storefront.issue(order: id, user: order.user + "x", sku: order.sku, units: order.units,
                                           paymentRef: "p", completion: $0) }
        mix("conflict \(id) \(result.failure?.code.rawValue ?? "ok")")
        if result.failure?.code != .conflict { fail("step \(step): other arguments under \(id) answered \(result)") }
    }

    /// After an expiry pass: reserved orders may have expired.
    private func refreshReserved(_ step: Int) {
        for id in orderIDs where orders[id]?.state.isHold == true {
            adopt(id, step: step)
        }
    }

    // MARK: checking

    private func faultCount() -> UInt64 {
        let stats = FaultDisk.stats
        return stats.failed_writes + stats.failed_syncs
    }

    private func apply(
        _ result: Result<OrderReply, KamiError>, id: String, user: String, sku: String, units: Int, op: String,
        faultsBefore: UInt64, step: Int
    ) {
        switch result {
        case .success(let reply):
            mix("\(op) \(id) \(reply.state) \(reply.codeIDs)")
            record(reply, user: user, sku: sku, units: units, step: step)
        case .failure(let error):
            mix("\(op) \(id) \(error.code.rawValue)")
            switch error.code {
            case .soldOut, .limitReached, .invalidState, .notFound:
                if orders[id] != nil { adopt(id, step: step) }
            case .unavailable:
                totals.unavailable += 1
                if faultCount() == faultsBefore && !FaultDisk.isFrozen {
                    fail("step \(step): \(op) \(id) UNAVAILABLE with no fault injected: \(error)")
                }
                failedSinceCrash.append(id)
                adopt(id, step: step)
            default:
                fail("step \(step): \(op) \(id) unexpected \(error)")
            }
        }
    }

    /// Takes the engine's view of `id` (after a failed write or an expiry pass, or after a crash
    /// for orders whose outcome the client does not know), checking that it is consistent.
    private func adopt(_ id: String, step: Int) {
        do {
            let reply = try h.engine.queries.order(id)
            let previous = orders[id]
            record(reply, user: previous?.user ?? reply.user, sku: previous?.sku ?? reply.skuKey,
                   units: previous?.units ?? reply.units, step: step)
        } catch {
            if error.code != .notFound { return fail("step \(step): order \(id): \(error)") }
            if let previous = orders[id] {
                if previous.state == .committed || previous.state == .refunded {
                    return fail("step \(step): committed order \(id) vanished")
                }
                release(previous.codes, from: id)
                orders[id] = nil
            }
        }
    }

    private func release(_ codes: [CodeID], from id: String) {
        for code in codes where owner[code] == id { owner[code] = nil }
    }

    private func record(_ reply: OrderReply, user: String, sku: String, units: Int, step: Int) {
        let id = reply.orderID
        let previous = orders[id]
        if previous == nil { orderIDs.append(id) }
        if let previous, previous.state == .committed || previous.state == .refunded, reply.codeIDs != previous.codes {
            fail("step \(step): \(id) was \(previous.state) with \(previous.codes), now \(reply.state) with \(reply.codeIDs)")
        }
        switch reply.state {
        case .reserved, .committed, .refunded, .review:
            // A manual-delivery order holds nothing until it is delivered.
            let held = sku == "hand" && (reply.state == .reserved || reply.state == .review) ? 0 : units
            if reply.codeIDs.count != held { fail("step \(step): \(id) holds \(reply.codeIDs.count) codes for \(units) units") }
            for code in reply.codeIDs {
                if let holder = owner[code], holder != id {
                    fail("step \(step): code \(code) given to \(id) while \(holder) holds it")
                }
                owner[code] = id
            }
            if reply.state == .committed {
                let revealed = Set(reply.codes.map(\.codeID))
                if !revealed.isSubset(of: Set(reply.codeIDs)) { fail("step \(step): \(id) revealed codes it does not own") }
            }
        case .released, .expired:
            release(previous?.codes ?? reply.codeIDs, from: id)
        case .pendingUpstream, .failed:
            fail("step \(step): \(id) is \(reply.state), but this simulation maps no supplier")
        }
        orders[id] = ModelOrder(user: user, sku: sku, units: units, state: reply.state, codes: reply.codeIDs)
        if sku == "lim" {
            let held = orderIDs.reduce(0) { sum, other in
                guard let o = orders[other], o.user == user, o.sku == "lim", o.state == .reserved || o.state == .committed || o.state == .review
                else { return sum }
                return sum + o.units
            }
            if held > 1 { fail("step \(step): user \(user) holds \(held) units of a limit-1 SKU") }
        }
    }

    /// Stock counts against the model, after every step.
    private func checkCounts(_ step: Int) {
        for sku in skus {
            guard let stock = try? h.engine.queries.stock(sku: sku) else { return fail("step \(step): no stock for \(sku)") }
            if stock.available + stock.reserved + stock.issued + stock.used + stock.voided != stock.imported {
                fail("step \(step): \(sku) conservation broken: \(stock)")
            }
            var reserved = 0, issued = 0, usedCount = 0, voided = 0
            for order in orders.values where order.sku == sku {
                switch order.state {
                case .reserved, .review: reserved += order.codes.count
                case .committed:
                    let activated = order.codes.filter { used.contains($0) }.count
                    usedCount += activated
                    issued += order.codes.count - activated
                case .refunded: voided += order.codes.count
                default: break
                }
            }
            if (stock.reserved, stock.issued, stock.used, stock.voided) != (reserved, issued, usedCount, voided) {
                fail("step \(step): \(sku) stock \(stock) but the model has reserved \(reserved) issued \(issued) "
                    + "used \(usedCount) voided \(voided)")
            }
        }
    }

    // MARK: crashes

    /// The next issue completes on disk but its reply never reaches the client; then the
    /// machine dies. After recovery the client retries and must get the same codes.
    private func crashAfterLostReply(_ step: Int) {
        let (id, user, sku) = newOrder()
        let result = call { h.engine.storefront.issue(order: id, user: user, sku: sku, units: 1, paymentRef: "p", completion: $0) }
        mix("lost-reply \(id)")
        if result.failure?.code == .unavailable { failedSinceCrash.append(id) }
        crash(step: step, tear: true)
        let faults = faultCount()
        let retry = call { h.engine.storefront.issue(order: id, user: user, sku: sku, units: 1, paymentRef: "p", completion: $0) }
        if let first = result.value, first.state == .committed {
            totals.lostReplies += 1
            guard let again = retry.value else { return fail("step \(step): retry of committed \(id) failed: \(retry)") }
            if again.codeIDs != first.codeIDs {
                fail("step \(step): retry after the crash gave \(again.codeIDs), the lost reply had \(first.codeIDs)")
            }
        }
        apply(retry, id: id, user: user, sku: sku, units: 1, op: "retry-after-crash", faultsBefore: faults, step: step)
    }

    /// Power off, unsynced writes torn, reopen, and check what survived.
    private func crash(step: Int, tear: Bool) {
        totals.crashes += 1
        FaultDisk.freeze()
        h.close()
        if FaultDisk.stats.open_files != 0 { return fail("step \(step): files still open at the crash") }
        if !FaultDisk.powerCut(tear ? .tear : .dropAll) { return fail("step \(step): the power cut failed") }
        let stats = FaultDisk.stats
        totals.torn += stats.torn_writes
        totals.dropped += stats.dropped_writes
        FaultDisk.setFaults(writePPM: 0, syncPPM: 0)
        h.reopen()
        h.engine.webhooks.setRoutes(Simulation.webhookRoutes)
        h.engine.setHoldTTL(defaultMs: 1_000, maxMs: 60_000)
        // Everything acknowledged is on disk as it was acknowledged.
        let doubtful = Set(failedSinceCrash)
        for id in orderIDs where !doubtful.contains(id) {
            guard let model = orders[id] else { continue }
            guard let found = try? h.engine.queries.order(id) else {
                fail("step \(step): acknowledged \(id) (\(model.state)) lost in the crash")
                continue
            }
            if found.state != model.state || found.codeIDs != model.codes {
                fail("step \(step): \(id) was \(model.state) \(model.codes), after the crash \(found.state) \(found.codeIDs)")
            }
        }
        // Every activation acknowledged before the crash is still there, and no other.
        let committedCodes = orderIDs.filter { !doubtful.contains($0) && orders[$0]?.state == .committed }.flatMap { orders[$0]!.codes }
        if let states = try? h.engine.storage.codeStates(committedCodes) {
            for code in committedCodes where (states[code]?.state == .used) != used.contains(code) {
                fail("step \(step): code \(code) was \(used.contains(code) ? "used" : "not used"), after the crash \(states[code].map { "\($0.state)" } ?? "missing")")
            }
        }
        adoptActivations(orderIDs.filter { doubtful.contains($0) }.flatMap { orders[$0]?.codes ?? [] })
        // Every delivery acknowledged before the crash has its one webhook event, still there.
        if let rows = try? h.engine.storage.outboxAll() {
            let delivered = Set(rows.filter { $0.endpoint == "shop" && $0.type == "order.delivered" }.compactMap { row in
                row.data.firstRange(of: "\"order\":\"").map { String(row.data[$0.upperBound...].prefix { $0 != "\"" }) }
            })
            for id in orderIDs where !doubtful.contains(id) && orders[id]?.state == .committed && !delivered.contains(id) {
                fail("step \(step): acknowledged delivery \(id) has no order.delivered event after the crash")
            }
        }
        // What failed may have reached the disk or not; take what is there.
        for id in failedSinceCrash { adopt(id, step: step) }
        failedSinceCrash.removeAll()
        do {
            let violations = try h.engine.admin.verify()
            if !violations.isEmpty { fail("step \(step): after the crash: \(violations)") }
        } catch {
            fail("step \(step): verify after the crash: \(error)")
        }
        mix("crash \(step)")
        FaultDisk.setFaults(writePPM: writePPM, syncPPM: syncPPM, full: fullDisk)
    }
}

/// The result of one callback, handed back to the waiting thread.
final class ReplyBox: @unchecked Sendable {
    // Written once by the completion before the semaphore is signalled, read after the wait.
    var result: Result<OrderReply, KamiError>?
}
