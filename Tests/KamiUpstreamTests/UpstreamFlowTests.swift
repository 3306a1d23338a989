import Foundation
import KamiCore
import KamiEngine
import KamiHTTP
import KamiStore
import KamiSupplierSim
import KamiUpstream
import Synchronization
import XCTest

/// Orders fulfilled through simulated suppliers, end to end over HTTP: delivery, failover,
/// the margin guard, the breaker, unknown outcomes, callbacks, restarts. After each, verify
/// holds and the simulators' ledgers show no order bought twice.
final class UpstreamFlowTests: XCTestCase {
    var harness: UpstreamHarness!

    override func setUp() { harness = UpstreamHarness() }
    override func tearDown() { harness.close() }

    func assertClean(file: StaticString = #filePath, line: UInt = #line) {
        harness.engine.admin.barrier()
        XCTAssertEqual(try harness.engine.admin.verify().map(\.description), [], file: file, line: line)
        for (order, sellers) in harness.salesByOrder() where sellers.count > 1 {
            XCTFail("order \(order) bought \(sellers.count) times: \(sellers)", file: file, line: line)
        }
    }

    func testAnUpstreamOrderIsPendingThenDeliveredWithTheSuppliersCode() throws {
        harness.addSim("a")
        harness.startService()
        harness.upstreamSku("vip", mappings: [("a", 500)])
        let pending = try harness.issue("o1", sku: "vip").get()
        XCTAssertEqual(pending.state, .pendingUpstream)
        XCTAssertTrue(pending.codes.isEmpty)
        let delivered = try harness.wait("o1").get()
        XCTAssertEqual(delivered.state, .committed)
        XCTAssertEqual(delivered.codes.count, 1)
        XCTAssertTrue(delivered.codes[0].secret.reveal().hasPrefix("SIM-a-"))
        // The code is in the same tables as local ones: the order and entitlements show it.
        XCTAssertEqual(try harness.engine.queries.order("o1").codes.map { $0.secret.reveal() }, delivered.codes.map { $0.secret.reveal() })
        XCTAssertEqual(try harness.engine.queries.entitlements(user: "u1").map(\.codeID), delivered.codeIDs)
        // With wait_ms the answer is the delivered order itself.
        let direct = try harness.issue("o2", sku: "vip", waitMs: 10_000).get()
        XCTAssertEqual(direct.state, .committed)
        XCTAssertEqual(direct.codes.count, 1)
        // A repeat answers the same codes, and buys nothing more.
        XCTAssertEqual(try harness.issue("o2", sku: "vip").get().codes.map { $0.secret.reveal() }, direct.codes.map { $0.secret.reveal() })
        XCTAssertEqual(harness.sims["a"]!.ledger.count, 2)
        let seq = harness.engine.upstream.order("o1")!.seq
        XCTAssertEqual(try harness.engine.upstream.attempts(orderSeq: seq).map(\.state), [.succeeded])
        assertClean()
    }

    func testAHoldWithNothingInThePoolIsFulfilledUpstreamWhenPaid() throws {
        harness.addSim("a")
        harness.startService()
        harness.upstreamSku("mix", policy: .poolThenUpstream, mappings: [("a", 500)])
        let hold = try harness.engine.storefront.reserveSync(order: "h1", user: "u1", sku: "mix").get()
        XCTAssertEqual(hold.state, .reserved)
        XCTAssertEqual(hold.codeIDs, [])
        let box = Box<Result<OrderReply, KamiError>>()
        harness.engine.storefront.commit(order: "h1", paymentRef: "p1", waitMs: 10_000) { box.set($0) }
        let paid = try XCTUnwrap(box.wait()).get()
        XCTAssertEqual(paid.state, .committed)
        XCTAssertEqual(paid.codes.count, 1)
        assertClean()
    }

    func testFailoverWhenTheCheapestSupplierRefuses() throws {
        harness.addSim("a") { $0.failRate = 1 }
        harness.addSim("b")
        harness.startService()
        harness.upstreamSku("vip", mappings: [("a", 300), ("b", 400)])
        for index in 0..<5 { _ = try harness.issue("f\(index)", sku: "vip").get() }
        for index in 0..<5 {
            let order = try harness.wait("f\(index)").get()
            XCTAssertEqual(order.state, .committed)
            XCTAssertTrue(order.codes[0].secret.reveal().hasPrefix("SIM-b-"))
            let attempts = try harness.engine.upstream.attempts(orderSeq: harness.engine.upstream.order("f\(index)")!.seq)
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: attempts.map { ($0.supplier, $0.state) }), ["a": .failed, "b": .succeeded])
        }
        XCTAssertEqual(harness.sims["a"]!.ledger.count, 0)
        XCTAssertEqual(harness.sims["b"]!.ledger.count, 5)
        XCTAssertGreaterThanOrEqual(harness.service.snapshot.failovers, 5)
        assertClean()
    }

    func testTheMarginGuardRefusesASupplierWhosePriceRoseWhileTheSaleGoesOnElsewhere() throws {
        harness.addSim("a")
        harness.addSim("b")
        harness.startService()
        // Price 1000, minimum margin 450: nothing may cost more than 550.
        harness.upstreamSku("vip", price: 1_000, minMargin: 450, mappings: [("a", 300), ("b", 500)])
        XCTAssertEqual(try harness.wait(try harness.issue("m1", sku: "vip").get().orderID).get().codes[0].secret.reveal().prefix(6), "SIM-a-")
        // a's price rises past the guard (a sync would do this): b takes the sale.
        harness.engine.upstream.updateCost(sku: harness.engine.queries.skus().first { $0.key == "vip" }!.id, supplier: "a",
                                           costCents: 900, stock: nil)
        harness.engine.admin.barrier()
        let second = try harness.wait(try harness.issue("m2", sku: "vip").get().orderID).get()
        XCTAssertTrue(second.codes[0].secret.reveal().hasPrefix("SIM-b-"))
        XCTAssertTrue(harness.logs.all.contains { $0.contains("成本倒挂") && $0.contains("supplier=a") && $0.contains("cost_cents=900") },
                      harness.logs.all.joined(separator: "\n"))
        // b's rises too: no candidate passes, the order fails with the reason, nothing is bought.
        _ = try harness.engine.upstream.map(sku: "vip", supplier: "b", productID: "P-b", costCents: 800, priority: 1,
                                            knownSuppliers: ["a", "b"])
        let failed = try harness.wait(try harness.issue("m3", sku: "vip").get().orderID).get()
        XCTAssertEqual(failed.state, .failed)
        XCTAssertEqual(harness.engine.upstream.failedOrders().map(\.orderID), ["m3"])
        XCTAssertEqual(harness.sims["a"]!.ledger.count + harness.sims["b"]!.ledger.count, 2)
        XCTAssertTrue(eventually { self.harness.service.snapshot.marginGuard >= 3 }, "\(harness.service.snapshot)")
        // The cost history has the rise, with its time.
        let history = try harness.engine.upstream.costHistory(sku: harness.engine.queries.skus().first { $0.key == "vip" }!.id)
        XCTAssertEqual(history.filter { $0.supplier == "a" }.map(\.costCents), [300, 900])
        // The dead letter is refunded by the operator; a retry after prices fall delivers.
        _ = try harness.engine.upstream.map(sku: "vip", supplier: "b", productID: "P-b", costCents: 500, priority: 1,
                                            knownSuppliers: ["a", "b"])
        let box = Box<Result<OrderReply, KamiError>>()
        harness.engine.upstream.retry(orderID: "m3") { box.set($0) }
        XCTAssertEqual(try XCTUnwrap(box.wait()).get().state, .pendingUpstream)
        XCTAssertEqual(try harness.wait("m3").get().state, .committed)
        // Sold at a discount (900 paid for a 1,000 list price), the guard allows only 450:
        // b's 500 no longer passes, though it would at list price.
        let discounted = try harness.wait(try harness.issue("m4", sku: "vip", user: "u4", amountCents: 900).get().orderID).get()
        XCTAssertEqual(discounted.state, .failed, "the margin guard sells at what the buyer paid")
        XCTAssertEqual(try harness.wait(try harness.issue("m5", sku: "vip", user: "u5", amountCents: 1_000).get().orderID).get().state,
                       .committed)
        assertClean()
    }

    func testADeliveryAfterKamidMovedOnIsJournaledAndItsCodesKeptInThePool() throws {
        // a refuses, b delivers; then a calls back that it delivered after all (a genuine
        // second purchase): the attempt is journaled, verify reports it, the codes are kept.
        harness.addSim("a") { $0.failRate = 1 }
        harness.addSim("b")
        harness.startService(callbacks: true)
        harness.upstreamSku("vip", mappings: [("a", 300), ("b", 400)])
        let order = try harness.wait(try harness.issue("late1", sku: "vip").get().orderID).get()
        XCTAssertTrue(order.codes[0].secret.reveal().hasPrefix("SIM-b-"))
        let view = SupplierWire.OrderView(customerOrderNo: "late1", supplierRef: "A9", state: .succeeded,
                                          items: [WireItem(secret: "A-LATE-CODE")], quantity: 1)
        let notify = HTTPURL("http://127.0.0.1:\(harness.service.callbackPort)/upstream/callback/a")!
        let callback = SupplierWire.callback(view, style: .form, notify: notify, merchantID: "kami-a",
                                             key: Array("key-of-a".utf8), digest: .md5, nowSeconds: Int64(Date().timeIntervalSince1970))
        let loop = IOLoop(name: "test-late")
        defer { loop.stop() }
        let box = Box<Result<HTTPResponse, HTTPClientError>>()
        HTTPClient(loop: loop).send(callback, to: notify) { box.set($0) }
        XCTAssertEqual(try XCTUnwrap(box.wait()).get().bodyText, "success")
        let sku = harness.engine.queries.skus().first { $0.key == "vip" }!.id
        XCTAssertTrue(eventually { self.harness.engine.upstream.available(sku: sku) == 1 }, "the late code is kept in the pool")
        XCTAssertTrue(eventually { self.harness.logs.all.contains { $0.contains("upstream-late-delivery") && $0.contains("kept_in_pool=1") } })
        XCTAssertFalse(harness.logs.all.joined().contains("A-LATE-CODE"), "a code reached the log")
        harness.engine.admin.barrier()
        let violations = try harness.engine.admin.verify().map(\.description)
        // Only the upstream invariant speaks, about this order: bought twice, two successes.
        XCTAssertFalse(violations.isEmpty)
        XCTAssertTrue(violations.allSatisfy { $0.hasPrefix("upstream: order late1") }, "\(violations)")
        XCTAssertTrue(violations.contains { $0.contains("bought twice: at a and b") }, "\(violations)")
    }

    func testBuyAheadRefillsThePoolFromTheCheapestSupplierWithinTheDaysBudget() throws {
        harness.addSim("cheap")
        harness.addSim("dear")
        harness.settings.buyAheadTickMs = 50
        harness.startService()
        harness.upstreamSku("stocked", price: 1_000, policy: .pool, minMargin: 200, mappings: [("cheap", 400), ("dear", 600)])
        // 10 codes per buy at 400: a budget of 8,000 a day pays for two buys, not three.
        _ = try harness.engine.upstream.setSourcing(sku: "stocked", lowWater: 5, buyAheadUnits: 10, buyAheadBudgetCents: 8_000)
        let sku = harness.engine.queries.skus().first { $0.key == "stocked" }!.id
        XCTAssertTrue(eventually { self.harness.engine.upstream.available(sku: sku) >= 5 }, "no buy-ahead")
        XCTAssertEqual(harness.engine.upstream.available(sku: sku), 10)
        XCTAssertEqual(harness.sims["cheap"]!.ledger.map(\.quantity), [10])
        XCTAssertEqual(harness.sims["dear"]!.ledger.count, 0)
        // Sell 6: under the mark again, a second buy; then the budget stops a third.
        for index in 0..<6 { XCTAssertEqual(harness.engine.storefront.issueSync(order: "b\(index)", user: "u\(index)", sku: "stocked", paymentRef: "p").map(\.state), .success(.committed)) }
        XCTAssertTrue(eventually { self.harness.engine.upstream.available(sku: sku) == 14 })
        for index in 6..<16 { _ = harness.engine.storefront.issueSync(order: "b\(index)", user: "u\(index)", sku: "stocked", paymentRef: "p") }
        usleep(500_000)
        XCTAssertEqual(harness.engine.upstream.available(sku: sku), 4, "bought past the day's budget")
        XCTAssertEqual(harness.sims["cheap"]!.ledger.count, 2)
        XCTAssertTrue(harness.logs.all.contains { $0.contains("buy-ahead-budget") && $0.contains("sku=stocked") })
        let purchases = try harness.engine.upstream.buyAheads(sku: sku, sinceMs: 0)
        XCTAssertEqual(purchases.map(\.state), [.succeeded, .succeeded])
        assertClean()
    }

    func testADirectTopUpDeliversTheSuppliersReceiptForTheBuyersAccount() throws {
        let sim = harness.addSim("t") { $0.directTopUp = true } supplier: { $0.directTopUp = true }
        harness.startService()
        harness.upstreamSku("phone-credit", mappings: [("t", 500)])
        let order = try harness.issue("top1", sku: "phone-credit", user: "13800000000", units: 2, waitMs: 10_000).get()
        XCTAssertEqual(order.state, .committed)
        XCTAssertEqual(order.codes.count, 2)
        XCTAssertTrue(order.codes.allSatisfy { $0.secret.reveal().hasPrefix("TOPUP T") && $0.secret.reveal().contains("13800000000") },
                      "\(order.codes.map { $0.secret.reveal() })")
        XCTAssertEqual(sim.ledger.map(\.customerOrderNo), ["top1"])
        assertClean()
    }

    func testARefusedQueryIsNeverTakenAsProofOfNoSale() throws {
        // a takes the order (processing, no callback), then refuses every request (its key
        // changed, as a clock jump or a key rotation would do): the order must wait for a,
        // never be bought at b.
        let a = harness.addSim("a") { $0.asyncRate = 1; $0.callbackDelayMs = 400 }
        harness.addSim("b")
        harness.startService()
        harness.upstreamSku("vip", mappings: [("a", 300), ("b", 400)])
        _ = try harness.issue("q1", sku: "vip").get()
        XCTAssertTrue(eventually { a.ledger.count == 1 })
        a.update { $0.key = Array("rotated".utf8) }
        usleep(600_000)  // several queries refused meanwhile
        XCTAssertEqual(harness.sims["b"]!.ledger.count, 0, "bought at b while a's outcome was open")
        XCTAssertEqual(harness.engine.upstream.order("q1")?.state, .pendingUpstream)
        a.update { $0.key = Array("key-of-a".utf8) }
        let order = try harness.wait("q1").get()
        XCTAssertEqual(order.state, .committed)
        XCTAssertTrue(order.codes[0].secret.reveal().hasPrefix("SIM-a-"))
        assertClean()
    }

    func testSyncJournalsPriceAndStockChangesAndTheGuardFollows() throws {
        let sim = harness.addSim("a") { $0.products = ["P-a": (price: 400, stock: 50)] }
        harness.addSim("b")
        harness.startService()
        harness.upstreamSku("vip", price: 1_000, minMargin: 300, mappings: [("a", 300), ("b", 650)])
        let sku = harness.engine.queries.skus().first { $0.key == "vip" }!.id
        harness.service.sync()
        XCTAssertTrue(eventually { self.harness.engine.upstream.mappings()[sku]?.first { $0.supplier == "a" }?.costCents == 400 })
        XCTAssertEqual(harness.engine.upstream.mappings()[sku]?.first { $0.supplier == "a" }?.stock, 50)
        // The supplier raises its price past the guard (limit 700): after the next sync b sells.
        sim.update { $0.products["P-a"] = (price: 800, stock: 50) }
        harness.service.sync()
        XCTAssertTrue(eventually { self.harness.engine.upstream.mappings()[sku]?.first { $0.supplier == "a" }?.costCents == 800 })
        let order = try harness.wait(try harness.issue("s1", sku: "vip").get().orderID).get()
        XCTAssertTrue(order.codes[0].secret.reveal().hasPrefix("SIM-b-"))
        // Out of stock at a (known from sync) is skipped too.
        sim.update { $0.products["P-a"] = (price: 100, stock: 0) }
        harness.service.sync()
        XCTAssertTrue(eventually { self.harness.engine.upstream.mappings()[sku]?.first { $0.supplier == "a" }?.stock == 0 })
        XCTAssertTrue(try harness.wait(try harness.issue("s2", sku: "vip").get().orderID).get().codes[0].secret.reveal().hasPrefix("SIM-b-"))
        // Every change is in the cost history, with its time, oldest first.
        let history = try harness.engine.upstream.costHistory(sku: sku).filter { $0.supplier == "a" }
        XCTAssertEqual(history.map(\.costCents), [300, 400, 800, 100])
        XCTAssertEqual(history.map(\.atMs), history.map(\.atMs).sorted())
        assertClean()
    }

    func testTheBreakerOpensOnADeadSupplierAndClosesWhenItIsBack() throws {
        let dead = harness.addSim("a") { _ in } supplier: { $0.breakerWindow = 4; $0.breakerOpenMs = 500; $0.connectTimeoutMs = 200 }
        let port = dead.port
        dead.stop()
        harness.addSim("b")
        harness.startService()
        // What kamid wires to the webhook dispatcher (supplier.breaker_opened).
        let opened = Locked<[String]>([])
        harness.service.onBreakerOpened = { supplier in opened.withLock { $0.append(supplier) } }
        harness.upstreamSku("vip", mappings: [("a", 100), ("b", 400)])
        for index in 0..<6 {
            XCTAssertEqual(try harness.wait(try harness.issue("d\(index)", sku: "vip").get().orderID).get().state, .committed)
        }
        let status = { self.harness.service.statuses.first { $0.id == "a" }! }
        XCTAssertTrue(eventually { status().breakerOpenings >= 1 }, "breaker never opened: \(status())")
        XCTAssertEqual(opened.withLock { $0 }.first, "a", "the opening is told once per opening")
        XCTAssertEqual(opened.withLock { $0 }.count, status().breakerOpenings)
        let attemptsWhenOpen = status().attempts
        // While open, orders go straight to b.
        XCTAssertEqual(try harness.wait(try harness.issue("d-open", sku: "vip").get().orderID).get().state, .committed)
        XCTAssertEqual(status().attempts, attemptsWhenOpen)
        // a comes back on its port; after the open period a probe succeeds and closes it.
        var settings = SimSettings()
        settings.id = "a"
        settings.merchantID = "kami-a"
        settings.key = Array("key-of-a".utf8)
        settings.products = ["P-a": (price: 100, stock: nil)]
        let back = SupplierSim(settings: settings, port: port)
        try back.start()
        harness.sims["a"] = back
        usleep(600_000)
        var delivered = 0
        for index in 0..<6 {
            let order = try harness.wait(try harness.issue("d-back\(index)", sku: "vip").get().orderID).get()
            if order.codes[0].secret.reveal().hasPrefix("SIM-a-") { delivered += 1 }
        }
        XCTAssertGreaterThan(delivered, 0, "a never took an order again")
        XCTAssertEqual(status().breaker, .closed)
        assertClean()
    }

    func testTenThousandOrdersAgainstASupplierThatTimesOutAThirdOfTheTime() throws {
        let count = Int(ProcessInfo.processInfo.environment["KAMI_UPSTREAM_ORDERS"] ?? "") ?? 10_000
        harness.addSim("slow") { $0.timeoutRate = 0.33; $0.seed = 7 } supplier: {
            $0.timeoutMs = 300
            $0.maxConcurrent = 256
            $0.pollMs = 50
            $0.pollMaxMs = 400
        }
        harness.startService()
        harness.upstreamSku("vip", mappings: [("slow", 500)])
        let replies = Atomic<Int>(0)
        let all = Box<Bool>()
        for index in 0..<count {
            harness.engine.storefront.issue(order: "t\(index)", user: "u\(index % 97)", sku: "vip", units: 1,
                                            paymentRef: "p\(index)") { result in
                if case .success(let reply) = result { XCTAssertEqual(reply.state, .pendingUpstream) }
                if replies.add(1, ordering: .relaxed).newValue == count { all.set(true) }
            }
        }
        XCTAssertEqual(all.wait(60), true)
        XCTAssertTrue(eventually(240) { self.harness.engine.upstream.pendingOrders().isEmpty },
                      "\(harness.engine.upstream.pendingOrders().count) orders still pending")
        var committed = 0
        for index in 0..<count {
            let order = try harness.engine.queries.order("t\(index)")
            if order.state == .committed { committed += 1 } else { XCTFail("t\(index) is \(order.state)") }
        }
        XCTAssertEqual(committed, count)
        let ledger = harness.sims["slow"]!.ledger
        XCTAssertEqual(ledger.count, count, "every order sold exactly once")
        XCTAssertEqual(Set(ledger.map(\.customerOrderNo)).count, count)
        XCTAssertGreaterThan(harness.service.snapshot.unknownOutcomes, count / 5, "the timeouts happened")
        print("upstream: \(count) orders, \(harness.service.snapshot)")
        assertClean()
    }

    func testCallbacksDeliverDuplicatesChangeNothingAndForgeriesAreRefused() throws {
        harness.addSim("cb") {
            $0.asyncRate = 1
            $0.callbackDelayMs = 50
            $0.duplicateCallbackRate = 1
            $0.lateCallbackMs = 300
        } supplier: { $0.pollMs = 5_000; $0.pollMaxMs = 5_000 }
        harness.addSim("forger") {
            $0.asyncRate = 1
            $0.callbackDelayMs = 50
            $0.badCallbackSignature = true
        } supplier: { $0.pollMs = 400; $0.pollMaxMs = 400 }
        harness.startService(callbacks: true)
        harness.upstreamSku("cbsku", mappings: [("cb", 500)])
        harness.upstreamSku("forged", mappings: [("forger", 500)])
        let started = Date()
        for index in 0..<20 { _ = try harness.issue("c\(index)", sku: "cbsku").get() }
        for index in 0..<20 {
            let order = try harness.wait("c\(index)", ms: 4_000).get()
            XCTAssertEqual(order.state, .committed, "c\(index)")
            XCTAssertEqual(order.codeIDs.count, 1)
        }
        // Delivered by callback, well before the first query would have gone out (5 s).
        XCTAssertLessThan(Date().timeIntervalSince(started), 4.5)
        // The duplicates and the late callbacks arrive: 3 per order.
        XCTAssertTrue(eventually(5) {
            let counters = self.harness.service.snapshot
            return counters.callbacksAccepted + counters.callbacksReplayed >= 60
        }, "\(harness.service.snapshot) sim sent \(harness.sims["cb"]!.callbacksSent) \(harness.sims["cb"]!.callbackFailures.prefix(3))")
        let counters = harness.service.snapshot
        XCTAssertGreaterThanOrEqual(counters.callbacksAccepted, 20)
        XCTAssertGreaterThanOrEqual(counters.callbacksReplayed, 1, "\(counters)")
        // Forged callbacks are refused; the order is still delivered, by query.
        _ = try harness.issue("x1", sku: "forged").get()
        XCTAssertEqual(try harness.wait("x1", ms: 8_000).get().state, .committed)
        XCTAssertGreaterThanOrEqual(harness.service.snapshot.callbacksRejected, 1)
        XCTAssertTrue(harness.logs.all.contains { $0.contains("upstream-callback-refused") && $0.contains("bad signature") })
        assertClean()
    }

    func testAfterARestartEveryOpenAttemptIsResolvedByQueryAndNothingIsBoughtTwice() throws {
        // A supplier that sells and never answers: every attempt is open when kamid stops.
        let sim = harness.addSim("late") { $0.timeoutRate = 1 } supplier: { $0.timeoutMs = 60_000 }
        harness.startService()
        harness.upstreamSku("vip", mappings: [("late", 500)])
        for index in 0..<20 { _ = try harness.issue("r\(index)", sku: "vip").get() }
        XCTAssertTrue(eventually { sim.ledger.count == 20 })
        harness.service.stop()
        harness.engine.close()
        // Back up, and the supplier answers again (its ledger and orders kept).
        harness.openEngine()
        sim.update { $0.timeoutRate = 0 }
        let endpoint = harness.endpoints[0]
        var fixed = endpoint.config
        fixed.timeoutMs = 2_000
        harness.endpoints = [SupplierEndpoint(config: fixed, credentials: endpoint.credentials, url: endpoint.url, tls: nil)]
        harness.startService()
        _ = try harness.issue("probe", sku: "vip").get()
        XCTAssertTrue(eventually(30) { self.harness.engine.upstream.pendingOrders().isEmpty })
        for index in 0..<20 { XCTAssertEqual(try harness.engine.queries.order("r\(index)").state, .committed) }
        XCTAssertEqual(sim.ledger.count, 21, "20 orders before the restart and the probe after, each once")
        XCTAssertGreaterThanOrEqual(harness.service.snapshot.queries, 20)
        assertClean()
    }
}
