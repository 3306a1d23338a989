import Dispatch
import KamiCore
@testable import KamiPool
import Synchronization
import XCTest

final class UserLimitsTests: XCTestCase {
    func testLimitIsCheckedAndAdded() {
        let limits = UserLimits()
        XCTAssertTrue(limits.tryAcquire(user: "alice", sku: 1, units: 2, limit: 3))
        XCTAssertFalse(limits.tryAcquire(user: "alice", sku: 1, units: 2, limit: 3))
        XCTAssertEqual(limits.units(user: "alice", sku: 1), 2, "a refused acquire adds nothing")
        XCTAssertTrue(limits.tryAcquire(user: "alice", sku: 1, units: 1, limit: 3))
        XCTAssertFalse(limits.tryAcquire(user: "alice", sku: 1, units: 1, limit: 3))
        XCTAssertTrue(limits.tryAcquire(user: "alice", sku: 2, units: 3, limit: 3), "limits are per SKU")
        XCTAssertTrue(limits.tryAcquire(user: "bob", sku: 1, units: 3, limit: 3), "limits are per user")
        limits.release(user: "alice", sku: 1, units: 2)
        XCTAssertEqual(limits.units(user: "alice", sku: 1), 1)
        XCTAssertTrue(limits.tryAcquire(user: "alice", sku: 1, units: 2, limit: 3))
    }

    func testZeroLimitIsUnlimitedButCounted() {
        let limits = UserLimits()
        for _ in 0 ..< 100 {
            XCTAssertTrue(limits.tryAcquire(user: "u", sku: 4, units: 5, limit: 0))
        }
        XCTAssertEqual(limits.units(user: "u", sku: 4), 500)
        limits.release(user: "u", sku: 4, units: 500)
        XCTAssertEqual(limits.units(user: "u", sku: 4), 0)
    }

    func testEntriesAtZeroAreDropped() {
        let limits = UserLimits()
        for user in 0 ..< 1000 {
            XCTAssertTrue(limits.tryAcquire(user: "user-\(user)", sku: 1, units: 1, limit: 1))
            XCTAssertTrue(limits.tryAddPendingHold(user: "user-\(user)", limit: 2))
        }
        XCTAssertEqual(limits.entryCount, 2000)
        for user in 0 ..< 1000 {
            limits.release(user: "user-\(user)", sku: 1, units: 1)
            limits.removePendingHold(user: "user-\(user)")
        }
        XCTAssertEqual(limits.entryCount, 0)
    }

    func testPendingHoldLimit() {
        let limits = UserLimits()
        XCTAssertTrue(limits.tryAddPendingHold(user: "carol", limit: 2))
        XCTAssertTrue(limits.tryAddPendingHold(user: "carol", limit: 2))
        XCTAssertFalse(limits.tryAddPendingHold(user: "carol", limit: 2))
        XCTAssertEqual(limits.pendingHolds(user: "carol"), 2)
        XCTAssertTrue(limits.tryAddPendingHold(user: "dave", limit: 2), "per user")
        limits.removePendingHold(user: "carol")
        XCTAssertEqual(limits.pendingHolds(user: "carol"), 1)
        XCTAssertTrue(limits.tryAddPendingHold(user: "carol", limit: 2))
        XCTAssertTrue(limits.tryAddPendingHold(user: "carol", limit: 0), "0 is unlimited")
        XCTAssertEqual(limits.pendingHolds(user: "carol"), 3)
    }

    func testLimitOfOneAdmitsExactlyOneOfManyConcurrentAttempts() {
        for round in 0 ..< 20 {
            let limits = UserLimits()
            let successes = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                for _ in 0 ..< 500 where limits.tryAcquire(user: "flash-buyer", sku: 7, units: 1, limit: 1) {
                    successes.wrappingAdd(1, ordering: .relaxed)
                }
            }
            XCTAssertEqual(successes.load(ordering: .relaxed), 1, "round \(round)")
            XCTAssertEqual(limits.units(user: "flash-buyer", sku: 7), 1, "round \(round)")
        }
    }

    func testLimitOfOneAcrossManyUsers() {
        let limits = UserLimits()
        let users = 2000
        let wins = AtomicArray(count: users)
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            // Each worker walks the users from a different starting point.
            for step in 0 ..< users {
                let user = (step + worker * 251) % users
                if limits.tryAcquire(user: "user-\(user)", sku: 3, units: 1, limit: 1) {
                    _ = wins.add(user, 1)
                }
            }
        }
        for user in 0 ..< users {
            XCTAssertEqual(wins.load(user), 1, "user-\(user)")
        }
    }

    /// Acquire-and-release churn: the number of units held at once never passes the limit,
    /// and everything is back to zero at the end.
    func testConcurrentChurnNeverPassesTheLimit() {
        let limits = UserLimits()
        let limit = 3
        let users = 4
        let inFlight = AtomicArray(count: users)
        let maxSeen = AtomicArray(count: users)
        let failures = FailureLog()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            var random = SplitMix64(seed: UInt64(worker + 1))
            for _ in 0 ..< 20_000 {
                let user = Int.random(in: 0 ..< users, using: &random)
                let units = Int.random(in: 1 ... 2, using: &random)
                guard limits.tryAcquire(user: "u\(user)", sku: 1, units: units, limit: limit) else { continue }
                let now = inFlight.add(user, units)
                if now > limit { failures.record("user \(user) holds \(now) > \(limit)") }
                var seen = maxSeen.load(user)
                while now > seen {
                    let (done, found) = maxSeen.exchange(user, expected: seen, desired: now)
                    if done { break }
                    seen = found
                }
                _ = inFlight.add(user, -units)
                limits.release(user: "u\(user)", sku: 1, units: units)
            }
        }
        for message in failures.all { XCTFail(message) }
        for user in 0 ..< users {
            XCTAssertEqual(limits.units(user: "u\(user)", sku: 1), 0)
            XCTAssertLessThanOrEqual(maxSeen.load(user), limit)
        }
        XCTAssertEqual(limits.entryCount, 0)
    }

    func testPendingHoldsUnderConcurrency() {
        let limits = UserLimits()
        let successes = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0 ..< 100 where limits.tryAddPendingHold(user: "eve", limit: 5) {
                successes.wrappingAdd(1, ordering: .relaxed)
            }
        }
        XCTAssertEqual(successes.load(ordering: .relaxed), 5)
        XCTAssertEqual(limits.pendingHolds(user: "eve"), 5)
    }
}
