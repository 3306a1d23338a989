public import KamiCore
import Synchronization

/// The per-SKU record of `LockFreeCodePool`, in its own 128-byte-aligned block so that two
/// hot SKUs never share a cache line.
///
/// `available` is the admission counter (see `LockFreeCodePool`), written by every take and
/// put. The padding keeps it 128 bytes away from the read-mostly fields after it (Swift lays
/// stored properties out in declaration order, and x86 fetches lines in pairs): a put reads
/// the directory before it adds to the counter, and if they shared a line, every put on a
/// hot SKU would pull the line twice from the core that last wrote the counter.
///
/// `shardCount` and `directory` are the SKU's shards, appended by `addSegment`. The
/// directory is an array of `Shard` handles whose first `shardCount` entries are
/// initialized and never change. When it is full, `addSegment` copies it into one twice as
/// large and publishes that; the old one is kept (not freed) until the pool's deinit
/// because a reader may still be scanning it.
struct SkuRecord: ~Copyable {
    let available: Atomic<Int>
    private let padding = InlineArray<15, Int>(repeating: 0)
    let shardCount: Atomic<Int>
    let directory: Atomic<UnsafeMutablePointer<Shard>?>

    init(directory: UnsafeMutablePointer<Shard>) {
        available = Atomic(0)
        shardCount = Atomic(0)
        self.directory = Atomic(directory)
    }

    static let blockBytes = 256
    static let alignmentBytes = 128
}

/// A `CodePool` whose hot path (take, put, remove) takes no lock.
///
/// Per SKU there is an admission counter and a list of shards (one or more per imported
/// segment); each shard has a Vyukov ring of available codes and a state byte per code.
///
/// - `take` first decrements the counter by `count` with a compare-and-swap that fails
///   when fewer are left ("admission"); only an admitted taker touches the rings. It then
///   dequeues from the shards, starting at one chosen by the counter value it saw so that
///   concurrent takers start at different shards, and claims each dequeued code by moving
///   its state from available to taken. A dequeued code whose state is removed is a
///   tombstone left by `remove`: it is marked removedDequeued and dropped.
/// - `put` moves each code's state from absent, taken or removedDequeued to available and
///   enqueues it, or from removed to available without enqueueing (its tombstone is still
///   queued and becomes a live entry again), and only then adds to the counter.
/// - `remove` first reserves one unit of the counter (as a taker of one would), then moves
///   the code's state from available to removed; if that fails it gives the unit back.
///
/// The invariant that makes an admitted taker always find its codes:
///
///     counter + owed + reserved  <=  queued + dequeuedUnclaimed
///
/// where `owed` is the number of codes admitted takers have not claimed yet, `reserved` the
/// units held by removes in flight, `queued` the codes in the rings whose state is
/// available, and `dequeuedUnclaimed` the codes a taker has dequeued but not yet moved to
/// taken. Every step keeps it: admission moves units from `counter` to `owed`; a dequeue
/// moves a code from `queued` to `dequeuedUnclaimed`; a claim removes one from both sides;
/// `put` grows the right side before the left; a successful remove shrinks both sides by
/// one (whether it hit a queued code, a dequeued one, whose taker then drops it, or one
/// whose `put` is still in flight, in which case that `put`'s later increment is balanced
/// by the unit the remove consumed); reviving a removed code (`put` of a tombstone) grows
/// the right side, as the tombstone becomes a live entry or a code in a taker's hand,
/// before the left. With nothing in flight the two sides are equal, so
/// `available(sku:)` is exact when the pool is quiet.
///
/// The ordering that goes with it: a producer publishes a ring cell with a releasing store
/// before its releasing add to the counter, and a taker's admission is an acquiring
/// compare-and-swap, so an admitted taker sees the cells that paid for its admission.
///
/// Progress: take and put are lock-free except for the two windows of Vyukov's ring: a
/// producer that has claimed a position but not yet written it (a consumer that reaches
/// that position sees the ring as empty until the producer finishes, and an admitted taker
/// waits for it, yielding the CPU), and a consumer that has claimed a position but not yet
/// released its cell (a producer a lap later waits for it). A remove that finds the counter at zero while its code is
/// available waits the same way: every unit is then owed to takers in flight or about to be
/// added by a put in flight, and one of the two finishes in a few instructions.
///
/// Known imprecision: while a remove holds its reserved unit, a concurrent take of the
/// last codes may answer nil although the remove will end up giving the unit back.
///
/// Memory: records, shards and directories are allocated when a segment is added and
/// freed only in deinit. About 17 bytes per code (a 16-byte ring cell, rounded up to a
/// power of two per shard, and one state byte).
public final class LockFreeCodePool: CodePool, @unchecked Sendable {
    // @unchecked Sendable: everything shared on the hot path is atomics in memory that is
    // never freed while the pool lives (see above); `writer` serializes addSegment and is
    // the only place the bookkeeping below is mutated.

    /// What `addSegment` needs to know about a SKU.
    // @unchecked Sendable: holds raw pointers, touched only under `writer` and in deinit.
    private struct WriterSku: @unchecked Sendable {
        var record: UnsafeMutablePointer<SkuRecord>
        var directoryCapacity: Int
        var upperBound: CodeID
        var retiredDirectories: [UnsafeMutablePointer<Shard>]
    }

    private let table = SkuTable()
    /// Serializes `addSegment`, the only writer of directories and of the table.
    private let writer = Locked<[SkuID: WriterSku]>([:])

    /// Creates an empty pool.
    public init() {
        checkPoolLimits()
        precondition(MemoryLayout<SkuRecord>.size <= SkuRecord.blockBytes,
                     "SkuRecord is \(MemoryLayout<SkuRecord>.size) bytes, block \(SkuRecord.blockBytes)")
    }

    deinit {
        writer.withLock { skus in
            for (_, sku) in skus {
                let record = sku.record
                let count = record.pointee.shardCount.load(ordering: .relaxed)
                if let directory = record.pointee.directory.load(ordering: .relaxed) {
                    for index in 0..<count {
                        directory[index].deallocate()
                    }
                    directory.deinitialize(count: count)
                    directory.deallocate()
                }
                for retired in sku.retiredDirectories {
                    retired.deallocate()  // Shard is trivial: the copies need no deinit
                }
                record.deinitialize(count: 1)
                UnsafeMutableRawPointer(record).deallocate()
            }
        }
        table.deallocate()
    }

    /// Declares `codes` as belonging to `sku`, split into shards (see `PoolLimits`).
    public func addSegment(sku: SkuID, codes: Range<CodeID>) {
        checkSkuForWrite(sku, "addSegment")
        guard !codes.isEmpty else { return }
        writer.withLock { skus in
            var entry = skus[sku] ?? makeRecord(sku)
            precondition(codes.lowerBound >= entry.upperBound,
                         "addSegment: SKU \(sku) codes \(codes) not above its previous segment end \(entry.upperBound)")
            for range in shardRanges(of: codes) {
                append(Shard.make(codes: range), to: &entry)
            }
            entry.upperBound = codes.upperBound
            let isNew = skus[sku] == nil
            skus[sku] = entry
            if isNew {
                table.publish(sku, UnsafeMutableRawPointer(entry.record))
            }
        }
    }

    private func makeRecord(_ sku: SkuID) -> WriterSku {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: SkuRecord.blockBytes,
                                                   alignment: SkuRecord.alignmentBytes)
        let record = raw.bindMemory(to: SkuRecord.self, capacity: 1)
        let initialCapacity = 4
        let directory = UnsafeMutablePointer<Shard>.allocate(capacity: initialCapacity)
        record.initialize(to: SkuRecord(directory: directory))
        return WriterSku(record: record, directoryCapacity: initialCapacity, upperBound: .min,
                         retiredDirectories: [])
    }

    /// Appends `shard` to the SKU's directory: the entry is written before the releasing
    /// store of the count (or of a new directory) that makes it visible.
    private func append(_ shard: Shard, to entry: inout WriterSku) {
        let record = entry.record
        let count = record.pointee.shardCount.load(ordering: .relaxed)
        var directory = record.pointee.directory.load(ordering: .relaxed).unsafelyUnwrapped
        if count == entry.directoryCapacity {
            let grown = UnsafeMutablePointer<Shard>.allocate(capacity: count * 2)
            grown.initialize(from: directory, count: count)
            entry.retiredDirectories.append(directory)
            entry.directoryCapacity = count * 2
            directory = grown
            // A reader that loads the new count below also sees this directory (release →
            // acquire); one that loads the old count may use either directory, both hold
            // those entries.
            record.pointee.directory.store(grown, ordering: .releasing)
        }
        (directory + count).initialize(to: shard)
        record.pointee.shardCount.store(count + 1, ordering: .releasing)
    }

    @inline(__always)
    private func record(_ sku: SkuID) -> UnsafeMutablePointer<SkuRecord>? {
        table.load(sku)?.assumingMemoryBound(to: SkuRecord.self)
    }

    /// The SKU's shards as a reader sees them now. The count is loaded first: the directory
    /// loaded after it holds at least that many entries.
    @inline(__always)
    private func shards(_ record: UnsafeMutablePointer<SkuRecord>) -> UnsafeBufferPointer<Shard> {
        let count = record.pointee.shardCount.load(ordering: .acquiring)
        let directory = record.pointee.directory.load(ordering: .acquiring).unsafelyUnwrapped
        return UnsafeBufferPointer(start: directory, count: count)
    }

    /// The index of the shard holding `code`, or nil. Shards are sorted by `base` because
    /// segments of a SKU arrive in increasing order.
    @inline(__always)
    fileprivate func shardIndex(of code: CodeID, in shards: UnsafeBufferPointer<Shard>) -> Int? {
        var low = 0
        var high = shards.count
        while low < high {
            let middle = (low + high) / 2
            if shards[middle].base <= code { low = middle + 1 } else { high = middle }
        }
        guard low > 0, shards[low - 1].offset(of: code) != nil else { return nil }
        return low - 1
    }

    /// Makes `codes` available. See `CodePool.put`.
    public func put(sku: SkuID, codes: [CodeID]) {
        guard let first = codes.first else { return }
        guard let record = record(sku) else {
            preconditionFailure("put: SKU \(sku) has no segments (code \(first))")
        }
        var putter = Putter(pool: self, sku: sku, shards: shards(record))
        for code in codes { putter.put(code) }
        // Only now may takers be admitted for these codes: they are all in the rings.
        record.pointee.available.wrappingAdd(codes.count, ordering: .releasing)
    }

    /// The loop body of `put`.
    private struct Putter {
        let pool: LockFreeCodePool
        let sku: SkuID
        let shards: UnsafeBufferPointer<Shard>
        /// The shard of the previous code: codes of one hold are usually in the same one.
        var index = 0

        init(pool: LockFreeCodePool, sku: SkuID, shards: UnsafeBufferPointer<Shard>) {
            self.pool = pool
            self.sku = sku
            self.shards = shards
        }

        @inline(__always)
        mutating func put(_ code: CodeID) {
            if shards[index].offset(of: code) == nil {
                guard let found = pool.shardIndex(of: code, in: shards) else {
                    preconditionFailure("put: code \(code) is not in any segment of SKU \(sku)")
                }
                index = found
            }
            let shard = shards[index]
            let offset = Int(code - shard.base)
            if pool.makeAvailable(shard.states + offset, code: code, sku: sku) {
                shard.enqueue(offset)
            }
        }
    }

    /// Moves one code to available; returns whether the caller must enqueue it (false when
    /// its tombstone is still queued and has just become a live entry again).
    @inline(__always)
    fileprivate func makeAvailable(_ state: UnsafeMutablePointer<Atomic<UInt8>>, code: CodeID, sku: SkuID) -> Bool {
        var expected = PoolCodeState.taken.rawValue
        while true {
            let (done, current) = state.pointee.compareExchange(
                expected: expected, desired: PoolCodeState.available.rawValue, ordering: .acquiringAndReleasing)
            if done { return expected != PoolCodeState.removed.rawValue }
            switch PoolCodeState(rawValue: current) {
            case .absent, .taken, .removed, .removedDequeued:
                // A removed code's state can change under us (a taker drops its tombstone):
                // retry from what we saw.
                expected = current
            case .available:
                preconditionFailure("put: code \(code) of SKU \(sku) is already available")
            case nil:
                preconditionFailure("put: code \(code) of SKU \(sku) has corrupt state \(current)")
            }
        }
    }

    /// Takes `count` codes, all or none. See `CodePool.take`.
    public func take(sku: SkuID, count: Int) -> [CodeID]? {
        precondition(count >= 1, "take: count \(count) must be at least 1")
        guard let record = record(sku) else { return nil }
        // Admission: the counter never goes below zero, so all or none is decided here.
        // The first compare-and-swap guesses the value instead of loading it: a load would
        // fetch the contended line shared and the swap fetch it again exclusive, while a
        // failed swap fetches it once and reports the value to retry with.
        var seen = count
        while true {
            guard seen >= count else { return nil }
            let (admitted, current) = record.pointee.available.weakCompareExchange(
                expected: seen, desired: seen - count, ordering: .acquiringAndReleasing)
            if admitted { break }
            seen = current
        }
        return claim(count, from: record, startHint: seen)
    }

    /// Dequeues and claims `count` codes for an admitted taker. Cannot fail: the invariant
    /// (see the type doc) guarantees the codes are in the rings or about to be.
    private func claim(_ count: Int, from record: UnsafeMutablePointer<SkuRecord>, startHint: Int) -> [CodeID] {
        var cursor = startHint
        // An array literal is the cheapest way to make an array: the general initializers
        // look up the storage class's generic metadata on every call (about 30 ns here),
        // which is a fifth of a whole take-and-put. Most orders take one code.
        if count == 1 {
            return [claimOne(from: record, cursor: &cursor)]
        }
        var codes: [CodeID] = []
        codes.reserveCapacity(count)
        for _ in 0..<count {
            codes.append(claimOne(from: record, cursor: &cursor))
        }
        return codes
    }

    /// Dequeues and claims one code, scanning the shards from `cursor` (any non-negative
    /// value; it is left at the shard the code came from, so the next call starts there).
    @inline(__always)
    private func claimOne(from record: UnsafeMutablePointer<SkuRecord>, cursor: inout Int) -> CodeID {
        var emptyPasses = 0
        while true {
            let shards = shards(record)
            if cursor >= shards.count { cursor %= shards.count }
            for _ in 0..<shards.count {
                let shard = shards[cursor]
                while let offset = shard.dequeue() {
                    if claimCode(shard.states + offset) { return shard.base + CodeID(offset) }
                }
                cursor += 1
                if cursor == shards.count { cursor = 0 }
            }
            // The code owed to us is being published by a producer, or was just dequeued
            // and dropped by another taker after a remove that reserved its own unit: wait
            // for the other thread, which is a few instructions from done.
            emptyPasses += 1
            assert(emptyPasses < 10_000_000, "admitted take found no code: pool invariant broken")
            yieldToOtherThreads()
        }
    }

    /// Moves a dequeued code from available to taken and returns true, or marks a tombstone
    /// (removed) as dequeued and returns false. A `put` may revive a tombstone while we
    /// look at it; then it is an available code again and we claim it.
    @inline(__always)
    private func claimCode(_ state: UnsafeMutablePointer<Atomic<UInt8>>) -> Bool {
        while true {
            let (claimed, current) = state.pointee.compareExchange(
                expected: PoolCodeState.available.rawValue, desired: PoolCodeState.taken.rawValue,
                ordering: .acquiringAndReleasing)
            if claimed { return true }
            // Only remove moves a queued code away from available, and a code is in a ring
            // once, so a dequeued code is available or removed.
            precondition(current == PoolCodeState.removed.rawValue, "dequeued a code in state \(current)")
            let (dropped, _) = state.pointee.compareExchange(
                expected: PoolCodeState.removed.rawValue, desired: PoolCodeState.removedDequeued.rawValue,
                ordering: .acquiringAndReleasing)
            if dropped { return false }
        }
    }

    /// Removes `code` if it is available. See `CodePool.remove`.
    public func remove(sku: SkuID, code: CodeID) -> Bool {
        guard let record = record(sku) else {
            preconditionFailure("remove: SKU \(sku) has no segments (code \(code))")
        }
        let shards = shards(record)
        guard let index = shardIndex(of: code, in: shards) else {
            preconditionFailure("remove: code \(code) is not in any segment of SKU \(sku)")
        }
        let state = shards[index].states + Int(code - shards[index].base)
        let counter = record
        while true {
            guard state.pointee.load(ordering: .acquiring) == PoolCodeState.available.rawValue else {
                return false
            }
            // Reserve one unit first, as a taker of one would, so that no admitted taker
            // is left without a code when this one turns into a tombstone.
            let units = counter.pointee.available.load(ordering: .relaxed)
            guard units > 0 else {
                yieldToOtherThreads()
                continue
            }
            let (reserved, _) = counter.pointee.available.weakCompareExchange(
                expected: units, desired: units - 1, ordering: .acquiringAndReleasing)
            guard reserved else { continue }
            let (removed, _) = state.pointee.compareExchange(
                expected: PoolCodeState.available.rawValue, desired: PoolCodeState.removed.rawValue,
                ordering: .acquiringAndReleasing)
            if removed { return true }
            // Taken (or removed) since we looked: give the unit back.
            counter.pointee.available.wrappingAdd(1, ordering: .releasing)
            return false
        }
    }

    /// The number of available codes of `sku`. See `CodePool.available`.
    public func available(sku: SkuID) -> Int {
        guard let record = record(sku) else { return 0 }
        return record.pointee.available.load(ordering: .relaxed)
    }
}
