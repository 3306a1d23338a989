import KamiCore
import Synchronization

/// One slot of a shard's ring: Vyukov's sequence number and the payload it guards.
///
/// The payload is atomic only so that the compiler and ThreadSanitizer see no plain data
/// race; it is accessed with relaxed ordering and the sequence number's acquire/release
/// pairs order it (a relaxed load or store is a plain `mov` on x86-64).
struct RingCell: ~Copyable {
    /// `position` when the slot is free for the producer of ring position `position`;
    /// `position + 1` once that producer has published its payload; `position + capacity`
    /// once the consumer has taken it, which frees the slot for the next lap.
    let sequence: Atomic<Int>
    /// Offset of a code from its shard's `base`.
    let offset: Atomic<UInt32>
}

/// A contiguous range of one SKU's codes with its own ring of available codes and one
/// state byte per code. A copyable handle of pointers: copying it costs no reference
/// counting, which matters because every take on a hot SKU reads it.
///
/// Memory: allocated by `make` when the segment is added, freed by `deallocate` only in the
/// owning pool's deinit. Readers on the hot path may hold these pointers at any moment
/// while the pool lives, so nothing here is ever freed or reused earlier.
///
/// The ring is Dmitry Vyukov's bounded multi-producer multi-consumer queue: producers and
/// consumers each claim a position with one compare-and-swap on their own counter, and a
/// per-cell sequence number says whether the cell at that position is ready for them.
/// Positions are 64-bit and only grow, so a cell's sequence never repeats (no ABA) in
/// any realistic lifetime (2^63 operations).
///
/// Capacity is the power of two at or above the shard's code count. Each code is in the
/// ring at most once (the pool only enqueues a code whose state says it has no entry
/// queued, see `PoolCodeState`), so the ring never holds more entries than it has cells.
/// A producer may still find its cell occupied: the consumer that claimed the previous
/// lap's entry there has moved the consumer position but not yet released the cell. That
/// consumer is a few instructions from done, so the producer waits for it (Vyukov's
/// original returns "full" here; for us that answer would be wrong).
struct Shard: @unchecked Sendable {
    // @unchecked Sendable: a handle whose pointers reach only atomics (and immutable
    // values), meant to be used from every thread at once; see the memory note above.

    /// The first code of the shard.
    let base: CodeID
    /// How many codes the shard holds (`base ..< base + count`).
    let count: Int
    /// Ring capacity minus one.
    let mask: Int
    /// `mask + 1` ring cells.
    let cells: UnsafeMutablePointer<RingCell>
    /// One `PoolCodeState` raw value per code, indexed by offset.
    let states: UnsafeMutablePointer<Atomic<UInt8>>
    /// The producer position at index 0 and the consumer position at index
    /// `positionStride`: 128 bytes apart, so putters and takers do not invalidate each
    /// other's cache line (x86 prefetches lines in pairs).
    let positions: UnsafeMutablePointer<Atomic<Int>>

    static let positionStride = 16
    private static var consumerIndex: Int { positionStride }

    /// The codes of the shard.
    var codes: Range<CodeID> { base ..< base + CodeID(count) }

    /// Allocates a shard for `codes`, all absent, with an empty ring.
    static func make(codes: Range<CodeID>) -> Shard {
        let count = codes.count
        precondition(count >= 1 && count <= PoolLimits.shardCodesMax,
                     "shard of \(count) codes outside 1...\(PoolLimits.shardCodesMax)")
        let capacity = count <= 1 ? 1 : 1 << (Int.bitWidth - (count - 1).leadingZeroBitCount)
        let cells = UnsafeMutablePointer<RingCell>.allocate(capacity: capacity)
        for index in 0..<capacity {
            (cells + index).initialize(to: RingCell(sequence: Atomic(index), offset: Atomic(0)))
        }
        let states = UnsafeMutablePointer<Atomic<UInt8>>.allocate(capacity: count)
        for index in 0..<count {
            (states + index).initialize(to: Atomic(PoolCodeState.absent.rawValue))
        }
        let positions = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: positionStride * 2)
        positions.initialize(to: Atomic(0))
        (positions + consumerIndex).initialize(to: Atomic(0))
        return Shard(base: codes.lowerBound, count: count, mask: capacity - 1, cells: cells,
                     states: states, positions: positions)
    }

    /// Frees the shard's memory. Only from the owning pool's deinit.
    func deallocate() {
        cells.deinitialize(count: mask + 1)
        cells.deallocate()
        states.deinitialize(count: count)
        states.deallocate()
        positions.deinitialize(count: 1)
        (positions + Shard.consumerIndex).deinitialize(count: 1)
        positions.deallocate()
    }

    /// The offset of `code` in this shard, or nil when it is outside.
    @inline(__always)
    func offset(of code: CodeID) -> Int? {
        let offset = code &- base
        return offset >= 0 && offset < CodeID(count) ? Int(offset) : nil
    }

    /// Appends `offset` to the ring.
    @inline(__always)
    func enqueue(_ offset: Int) {
        let producer = positions
        var position = producer.pointee.load(ordering: .relaxed)
        var waits = 0
        while true {
            let cell = cells + (position & mask)
            let sequence = cell.pointee.sequence.load(ordering: .acquiring)
            if sequence == position {
                let (claimed, current) = producer.pointee.weakCompareExchange(
                    expected: position, desired: position &+ 1, ordering: .relaxed)
                if claimed {
                    cell.pointee.offset.store(UInt32(truncatingIfNeeded: offset), ordering: .relaxed)
                    cell.pointee.sequence.store(position &+ 1, ordering: .releasing)
                    return
                }
                position = current
            } else if sequence < position {
                // The cell still holds the previous lap's entry, which a consumer has claimed
                // but not yet released (see the type doc): wait for it.
                waits += 1
                assert(waits < 10_000_000, "ring of shard at code \(base) full at position \(position)")
                yieldToOtherThreads()
                position = producer.pointee.load(ordering: .relaxed)
            } else {
                // Another producer claimed this position first; catch up.
                position = producer.pointee.load(ordering: .relaxed)
            }
        }
    }

    /// Removes and returns the oldest offset in the ring, or nil when the ring is empty.
    ///
    /// "Empty" includes the moment when a producer has claimed the next position but not
    /// yet published its payload: the caller retries later.
    @inline(__always)
    func dequeue() -> Int? {
        let consumer = positions + Shard.consumerIndex
        var position = consumer.pointee.load(ordering: .relaxed)
        while true {
            let cell = cells + (position & mask)
            let sequence = cell.pointee.sequence.load(ordering: .acquiring)
            let ready = position &+ 1
            if sequence == ready {
                let (claimed, current) = consumer.pointee.weakCompareExchange(
                    expected: position, desired: ready, ordering: .relaxed)
                if claimed {
                    let offset = Int(cell.pointee.offset.load(ordering: .relaxed))
                    cell.pointee.sequence.store(position &+ mask &+ 1, ordering: .releasing)
                    return offset
                }
                position = current
            } else if sequence < ready {
                return nil
            } else {
                // Another consumer took this position first; catch up.
                position = consumer.pointee.load(ordering: .relaxed)
            }
        }
    }
}

/// Splits the import `codes` into shard ranges: at most `PoolLimits.shardsPerSegmentTarget`
/// of them, each of at least `PoolLimits.shardCodesMin` codes (except the last), unless that
/// would put more than `PoolLimits.shardCodesMax` codes in one, in which case there are more.
/// Shard sizes are powers of two (except the last) so that ring capacity is not wasted on
/// rounding up.
func shardRanges(of codes: Range<CodeID>) -> [Range<CodeID>] {
    let total = codes.count
    guard total > 0 else { return [] }
    let perShard = (total + PoolLimits.shardsPerSegmentTarget - 1) / PoolLimits.shardsPerSegmentTarget
    var size = PoolLimits.shardCodesMin
    while size < perShard && size < PoolLimits.shardCodesMax {
        size <<= 1
    }
    var ranges: [Range<CodeID>] = []
    var start = codes.lowerBound
    while start < codes.upperBound {
        let end = min(codes.upperBound, start + CodeID(size))
        ranges.append(start ..< end)
        start = end
    }
    return ranges
}
