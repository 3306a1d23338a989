import Synchronization

/// A fixed array of atomic counters, for hot paths: an add is one atomic instruction, no lock
/// and no allocation. Lives as long as its owner (a metrics registry lives for the process).
public final class AtomicCounters: Sendable {
    private nonisolated(unsafe) let slots: UnsafeMutablePointer<Atomic<Int>>
    /// How many counters.
    public let count: Int

    /// `count` counters at zero.
    public init(count: Int) {
        precondition(count > 0, "AtomicCounters needs at least one slot")
        self.count = count
        slots = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: count)
        for index in 0..<count { (slots + index).initialize(to: Atomic(0)) }
    }

    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }

    /// Adds `amount` to counter `index`.
    @inline(__always)
    public func add(_ index: Int, _ amount: Int = 1) {
        precondition(index >= 0 && index < count, "counter \(index) out of 0..<\(count)")
        slots[index].wrappingAdd(amount, ordering: .relaxed)
    }

    /// The value of counter `index` now.
    public func load(_ index: Int) -> Int {
        precondition(index >= 0 && index < count, "counter \(index) out of 0..<\(count)")
        return slots[index].load(ordering: .relaxed)
    }
}

/// A histogram with fixed bucket upper bounds (inclusive, like Prometheus' `le`), counted
/// with atomics: safe to observe from any thread, cheap enough for every request.
/// Observations are integers in the histogram's unit (microseconds, items...).
public final class Histogram: Sendable {
    /// Bucket upper bounds, ascending; a value above the last lands in the `+Inf` bucket.
    public let bounds: [Int]
    /// Per bucket (not cumulative), then the `+Inf` bucket, the sum and the count.
    private let cells: AtomicCounters

    /// A histogram over `bounds` (strictly ascending).
    public init(bounds: [Int]) {
        precondition(!bounds.isEmpty && zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 },
                     "histogram bounds must be strictly ascending")
        self.bounds = bounds
        cells = AtomicCounters(count: bounds.count + 3)
    }

    /// Records one value.
    @inline(__always)
    public func observe(_ value: Int) {
        // Bounds are short (a dozen or two): a linear scan beats a binary search here.
        var bucket = bounds.count
        for (index, bound) in bounds.enumerated() where value <= bound {
            bucket = index
            break
        }
        cells.add(bucket)
        cells.add(bounds.count + 1, value)
        cells.add(bounds.count + 2)
    }

    /// A consistent-enough copy for rendering: cumulative counts per bound (then `+Inf`),
    /// sum and count. Under concurrent observations the total may lag the buckets by the
    /// observations in flight; rendering uses the cumulative `+Inf` as the count so the
    /// exposition stays self-consistent.
    public func snapshot() -> (cumulative: [Int], sum: Int, count: Int) {
        var cumulative: [Int] = []
        var running = 0
        for index in 0...bounds.count {
            running += cells.load(index)
            cumulative.append(running)
        }
        return (cumulative, cells.load(bounds.count + 1), running)
    }

    /// Powers of two from 1 to `max` (inclusive when a power of two): bounds for sizes.
    public static func powersOfTwo(upTo max: Int) -> [Int] {
        var bounds: [Int] = []
        var value = 1
        while value <= max {
            bounds.append(value)
            value *= 2
        }
        return bounds
    }

    /// 1-2.5-5 steps from `from` to `to`: bounds for latencies.
    public static func oneTwoFive(from: Int, to: Int) -> [Int] {
        var bounds: [Int] = []
        var decade = from
        while decade <= to {
            for step in [decade, decade * 5 / 2, decade * 5] where step <= to && (bounds.last ?? 0) < step {
                bounds.append(step)
            }
            decade *= 10
        }
        return bounds
    }
}
