import Foundation
import KamiCore
@testable import KamiPool
import Synchronization

/// The seed for a randomized test: `KAMI_TEST_SEED` when set (to replay a failure), else a
/// fresh one. Printed so that it is in the log even when the process dies.
func testSeed(_ test: String) -> UInt64 {
    let seed: UInt64
    if let text = ProcessInfo.processInfo.environment["KAMI_TEST_SEED"], let value = UInt64(text) {
        seed = value
    } else {
        seed = UInt64.random(in: 1 ... UInt64.max)
    }
    print("\(test): seed \(seed) (replay with KAMI_TEST_SEED=\(seed))")
    return seed
}

/// Both pool implementations, by name: every semantic and stress test runs against each.
let poolKinds: [(name: String, make: @Sendable () -> any CodePool)] = [
    ("LockFreeCodePool", { LockFreeCodePool() }),
    ("MutexCodePool", { MutexCodePool() }),
]

/// Failures seen on worker threads, reported by the test thread afterwards (XCTest
/// assertions are meant for the thread running the test).
final class FailureLog: Sendable {
    private let messages = Locked<[String]>([])

    func record(_ message: String) {
        messages.withLock { if $0.count < 20 { $0.append(message) } }
    }

    var all: [String] { messages.withLock { $0 } }
}

/// A fixed array of atomics shared by the worker threads of a test.
final class AtomicArray: @unchecked Sendable {
    // @unchecked Sendable: only atomics live in `slots`; freed in deinit, after all workers.
    private let slots: UnsafeMutablePointer<Atomic<Int>>
    let count: Int

    init(count: Int) {
        self.count = count
        slots = .allocate(capacity: count)
        for index in 0..<count {
            (slots + index).initialize(to: Atomic(0))
        }
    }

    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }

    func load(_ index: Int) -> Int { slots[index].load(ordering: .sequentiallyConsistent) }

    func store(_ index: Int, _ value: Int) { slots[index].store(value, ordering: .sequentiallyConsistent) }

    /// Sets slot `index` from `expected` to `desired`; returns the value found.
    func exchange(_ index: Int, expected: Int, desired: Int) -> (done: Bool, found: Int) {
        let (done, found) = slots[index].compareExchange(
            expected: expected, desired: desired, ordering: .sequentiallyConsistent)
        return (done, found)
    }

    func add(_ index: Int, _ delta: Int) -> Int {
        slots[index].wrappingAdd(delta, ordering: .sequentiallyConsistent).newValue
    }
}
