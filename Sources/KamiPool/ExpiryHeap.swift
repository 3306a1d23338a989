public import KamiCore

/// The deadlines of pending holds, earliest first: a binary min-heap with lazy
/// cancellation. Not thread-safe; see `HoldTimer` for the locked version.
///
/// Each `schedule` gets a fresh generation number, and a dictionary maps every scheduled
/// order to its current generation and deadline. `cancel` and rescheduling only change the
/// dictionary; the heap entry left behind is stale and is skipped when it reaches the top.
/// The top of the heap is always live (stale tops are discarded as soon as they surface),
/// so `nextDeadlineMs` is O(1). When stale entries outnumber both the live ones and
/// `PoolLimits.expiryStaleEntriesMin`, the heap is rebuilt from the live entries, so memory
/// stays within about twice the live count.
///
/// Schedule and cancel cost O(log n); `popExpired` O(k log n) for k entries popped. Ties in
/// deadline pop in scheduling order.
public struct ExpiryHeap: Sendable {
    private struct Entry: Sendable {
        let deadlineMs: Int64
        let generation: UInt64
        let order: OrderSeq

        @inline(__always)
        func precedes(_ other: Entry) -> Bool {
            deadlineMs != other.deadlineMs ? deadlineMs < other.deadlineMs : generation < other.generation
        }
    }

    private struct Live: Sendable {
        let generation: UInt64
        let deadlineMs: Int64
    }

    private var heap: [Entry] = []
    private var live: [OrderSeq: Live] = [:]
    private var nextGeneration: UInt64 = 0

    /// Creates an empty heap.
    public init() {}

    /// The number of scheduled (not cancelled, not popped) orders.
    public var count: Int { live.count }

    /// Whether no order is scheduled.
    public var isEmpty: Bool { live.isEmpty }

    /// The earliest deadline scheduled, or nil when nothing is.
    public var nextDeadlineMs: Int64? { heap.first?.deadlineMs }

    /// The deadline `order` is scheduled for, or nil.
    public func deadlineMs(of order: OrderSeq) -> Int64? { live[order]?.deadlineMs }

    /// Number of heap entries including stale ones (for tests and metrics).
    var storedEntryCount: Int { heap.count }

    /// Schedules `order` to expire at `deadlineMs`, replacing any deadline it had.
    public mutating func schedule(order: OrderSeq, deadlineMs: Int64) {
        let generation = nextGeneration
        nextGeneration += 1
        live[order] = Live(generation: generation, deadlineMs: deadlineMs)
        push(Entry(deadlineMs: deadlineMs, generation: generation, order: order))
        // A reschedule leaves the old entry behind; it may be the top.
        discardStaleTop()
        compactIfMostlyStale()
    }

    /// Cancels the deadline of `order` (its hold was committed or released).
    ///
    /// - Returns: whether the order was scheduled.
    @discardableResult
    public mutating func cancel(order: OrderSeq) -> Bool {
        guard live.removeValue(forKey: order) != nil else { return false }
        discardStaleTop()
        compactIfMostlyStale()
        return true
    }

    /// Removes and returns the orders whose deadline is at or before `nowMs`, earliest
    /// first, at most `maxCount` of them (the rest stay for the next call).
    public mutating func popExpired(nowMs: Int64, maxCount: Int = .max) -> [OrderSeq] {
        precondition(maxCount >= 0, "popExpired: maxCount \(maxCount) must not be negative")
        var expired: [OrderSeq] = []
        while expired.count < maxCount, let top = heap.first, top.deadlineMs <= nowMs {
            popTop()
            live[top.order] = nil  // the top is live, so this is its current entry
            expired.append(top.order)
            discardStaleTop()
        }
        return expired
    }

    @inline(__always)
    private func isLive(_ entry: Entry) -> Bool {
        live[entry.order]?.generation == entry.generation
    }

    private mutating func discardStaleTop() {
        while let top = heap.first, !isLive(top) {
            popTop()
        }
    }

    private mutating func compactIfMostlyStale() {
        let stale = heap.count - live.count
        guard stale > PoolLimits.expiryStaleEntriesMin && stale > live.count else { return }
        let live = self.live
        heap.removeAll { live[$0.order]?.generation != $0.generation }
        // Floyd's bottom-up heapify: O(n).
        var index = heap.count / 2
        while index > 0 {
            index -= 1
            siftDown(index)
        }
    }

    private mutating func push(_ entry: Entry) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func popTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        siftDown(0)
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { return }
            let right = left + 1
            let child = right < heap.count && heap[right].precedes(heap[left]) ? right : left
            guard heap[child].precedes(heap[parent]) else { return }
            heap.swapAt(child, parent)
            parent = child
        }
    }
}

/// A thread-safe `ExpiryHeap`: the deadlines of pending holds, behind one lock.
///
/// For an engine that does not already hold a lock of its own around its holds.
public final class HoldTimer: Sendable {
    private let heap = Locked(ExpiryHeap())

    /// Creates an empty timer.
    public init() {}

    /// Schedules `order` to expire at `deadlineMs`, replacing any deadline it had.
    public func schedule(order: OrderSeq, deadlineMs: Int64) {
        heap.withLock { $0.schedule(order: order, deadlineMs: deadlineMs) }
    }

    /// Cancels the deadline of `order`; returns whether it was scheduled.
    @discardableResult
    public func cancel(order: OrderSeq) -> Bool {
        heap.withLock { $0.cancel(order: order) }
    }

    /// Removes and returns the orders due at `nowMs`, earliest first, at most `maxCount`.
    public func popExpired(nowMs: Int64, maxCount: Int = .max) -> [OrderSeq] {
        heap.withLock { $0.popExpired(nowMs: nowMs, maxCount: maxCount) }
    }

    /// The earliest deadline scheduled, or nil.
    public var nextDeadlineMs: Int64? { heap.withLock { $0.nextDeadlineMs } }

    /// The number of scheduled orders.
    public var count: Int { heap.withLock { $0.count } }

    /// The deadline `order` is scheduled for, or nil.
    public func deadlineMs(of order: OrderSeq) -> Int64? { heap.withLock { $0.deadlineMs(of: order) } }
}
