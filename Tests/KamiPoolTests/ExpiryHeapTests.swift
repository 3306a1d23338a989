import Dispatch
import KamiCore
@testable import KamiPool
import XCTest

final class ExpiryHeapTests: XCTestCase {
    func testPopsInDeadlineOrderThenScheduleOrder() {
        var heap = ExpiryHeap()
        let deadlines: [(OrderSeq, Int64)] = [(1, 50), (2, 10), (3, 30), (4, 10), (5, 40), (6, 30)]
        for (order, deadline) in deadlines {
            heap.schedule(order: order, deadlineMs: deadline)
        }
        XCTAssertEqual(heap.count, 6)
        XCTAssertEqual(heap.nextDeadlineMs, 10)
        XCTAssertEqual(heap.popExpired(nowMs: 9), [])
        XCTAssertEqual(heap.popExpired(nowMs: 30), [2, 4, 3, 6], "ties keep scheduling order")
        XCTAssertEqual(heap.nextDeadlineMs, 40)
        XCTAssertEqual(heap.popExpired(nowMs: 1000), [5, 1])
        XCTAssertNil(heap.nextDeadlineMs)
        XCTAssertTrue(heap.isEmpty)
    }

    func testCancel() {
        var heap = ExpiryHeap()
        heap.schedule(order: 1, deadlineMs: 10)
        heap.schedule(order: 2, deadlineMs: 20)
        heap.schedule(order: 3, deadlineMs: 30)
        XCTAssertTrue(heap.cancel(order: 1))
        XCTAssertFalse(heap.cancel(order: 1))
        XCTAssertFalse(heap.cancel(order: 99))
        XCTAssertEqual(heap.nextDeadlineMs, 20, "cancelling the earliest moves the next deadline")
        XCTAssertEqual(heap.count, 2)
        XCTAssertTrue(heap.cancel(order: 3))
        XCTAssertEqual(heap.popExpired(nowMs: 100), [2])
        XCTAssertNil(heap.nextDeadlineMs)
    }

    func testRescheduleReplacesTheDeadline() {
        var heap = ExpiryHeap()
        heap.schedule(order: 1, deadlineMs: 10)
        heap.schedule(order: 2, deadlineMs: 20)
        heap.schedule(order: 1, deadlineMs: 30)  // later
        XCTAssertEqual(heap.count, 2)
        XCTAssertEqual(heap.deadlineMs(of: 1), 30)
        XCTAssertEqual(heap.nextDeadlineMs, 20)
        XCTAssertEqual(heap.popExpired(nowMs: 25), [2])
        heap.schedule(order: 1, deadlineMs: 5)  // earlier
        XCTAssertEqual(heap.popExpired(nowMs: 5), [1])
        XCTAssertEqual(heap.popExpired(nowMs: 100), [], "the old entry of order 1 is stale")
        // Cancel, then schedule again at the same deadline: popped once.
        heap.schedule(order: 7, deadlineMs: 50)
        heap.cancel(order: 7)
        heap.schedule(order: 7, deadlineMs: 50)
        XCTAssertEqual(heap.popExpired(nowMs: 50), [7])
        XCTAssertTrue(heap.isEmpty)
    }

    func testMaxCountLeavesTheRest() {
        var heap = ExpiryHeap()
        for order in 1 ... 10 { heap.schedule(order: OrderSeq(order), deadlineMs: Int64(order)) }
        XCTAssertEqual(heap.popExpired(nowMs: 100, maxCount: 3), [1, 2, 3])
        XCTAssertEqual(heap.count, 7)
        XCTAssertEqual(heap.popExpired(nowMs: 100), [4, 5, 6, 7, 8, 9, 10])
    }

    func testStaleEntriesAreCompacted() {
        var heap = ExpiryHeap()
        for order in 0 ..< 20_000 { heap.schedule(order: OrderSeq(order), deadlineMs: Int64(1_000_000 + order)) }
        for order in 0 ..< 19_900 { heap.cancel(order: OrderSeq(order * 7 % 20_000)) }
        XCTAssertEqual(heap.count, 100)
        XCTAssertLessThanOrEqual(heap.storedEntryCount, 2 * 100 + PoolLimits.expiryStaleEntriesMin + 1)
        let expired = heap.popExpired(nowMs: .max)
        XCTAssertEqual(expired.count, 100)
        XCTAssertEqual(expired, expired.sorted(), "deadlines increase with the order number here")
    }

    /// A seeded random sequence against a dictionary model.
    func testRandomizedAgainstModel() {
        let seed = testSeed("ExpiryHeapTests.testRandomizedAgainstModel")
        var random = SplitMix64(seed: seed)
        var heap = ExpiryHeap()
        var model: [OrderSeq: (deadline: Int64, generation: Int)] = [:]
        var generation = 0
        var now: Int64 = 0
        for step in 0 ..< 20_000 {
            let order = OrderSeq.random(in: 0 ..< 300, using: &random)
            switch Int.random(in: 0 ..< 10, using: &random) {
            case 0 ..< 5:
                let deadline = now + Int64.random(in: 0 ... 500, using: &random)
                heap.schedule(order: order, deadlineMs: deadline)
                model[order] = (deadline, generation)
                generation += 1
            case 5 ..< 8:
                let wasScheduled = model.removeValue(forKey: order) != nil
                XCTAssertEqual(heap.cancel(order: order), wasScheduled, "seed \(seed) step \(step)")
            default:
                now += Int64.random(in: 0 ... 100, using: &random)
                let expected = model.filter { $0.value.deadline <= now }
                    .sorted { ($0.value.deadline, $0.value.generation) < ($1.value.deadline, $1.value.generation) }
                    .map(\.key)
                for order in expected { model[order] = nil }
                XCTAssertEqual(heap.popExpired(nowMs: now), expected, "seed \(seed) step \(step)")
            }
            XCTAssertEqual(heap.count, model.count, "seed \(seed) step \(step)")
            XCTAssertEqual(heap.nextDeadlineMs, model.values.map(\.deadline).min(), "seed \(seed) step \(step)")
            if testRun?.failureCount ?? 0 > 0 { return }
        }
    }

    func testHoldTimerFromManyThreads() {
        let timer = HoldTimer()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for index in 0 ..< 1000 {
                let order = OrderSeq(worker * 1000 + index)
                timer.schedule(order: order, deadlineMs: Int64(index))
                if index % 4 == 0 { timer.cancel(order: order) }
                if index % 4 == 1 { timer.schedule(order: order, deadlineMs: Int64(index + 5000)) }
            }
        }
        XCTAssertEqual(timer.count, 8 * 750)
        XCTAssertEqual(timer.nextDeadlineMs, 2)
        XCTAssertEqual(timer.deadlineMs(of: 1), 5001)
        let early = timer.popExpired(nowMs: 999)
        XCTAssertEqual(early.count, 8 * 500, "indexes 2 and 3 of every 4 keep their first deadline")
        XCTAssertEqual(timer.popExpired(nowMs: .max).count, 8 * 250)
        XCTAssertEqual(timer.count, 0)
        XCTAssertNil(timer.nextDeadlineMs)
    }
}
