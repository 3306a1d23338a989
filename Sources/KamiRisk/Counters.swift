import CKamiLinux
import Glibc
import KamiCore

/// Fixed-size counter structures: memory is allocated once, at the sizes the config names,
/// and a flood of distinct keys evicts old keys instead of growing anything.
///
/// Every structure is split into `stripes` independent parts, each behind its own lock,
/// chosen by the key's hash: two event loops meet on a lock only when they touch keys of
/// the same stripe at the same instant, never on one lock for every request. The locks are
/// spin locks in plain memory, one cache line each (a critical section is a few dozen
/// instructions: a pthread mutex's call and bookkeeping cost more than the work it guards).
enum CounterLayout {
    /// Independent parts of every table and sketch.
    static let stripes = 64
    /// Slots looked at for a key before the oldest of them is evicted: one aligned group of
    /// two cache lines (8 slots cost twice the memory traffic, for an eviction order that
    /// is only a little closer to LRU).
    static let probe = 4
}

/// One spin lock per stripe, each alone on its cache line with a counter the stripe's owner
/// keeps under it (evictions).
///
/// A struct of plain pointers, not an object: using it costs no reference counting (a
/// retain of an object both event loops share moves its cache line between the cores on
/// every request). Its owner calls `deallocate` once.
struct StripeLocks: @unchecked Sendable {
    // @unchecked: each line's counter is read and written only under its own lock word.
    static let lineBytes = 64
    private let lines: UnsafeMutableRawPointer

    init() {
        lines = .allocate(byteCount: CounterLayout.stripes * StripeLocks.lineBytes, alignment: StripeLocks.lineBytes)
        lines.initializeMemory(as: UInt8.self, repeating: 0, count: CounterLayout.stripes * StripeLocks.lineBytes)
    }

    func deallocate() { lines.deallocate() }

    /// Runs `body` holding stripe `stripe`'s lock, with its counter.
    @inline(__always)
    func withLock<R>(_ stripe: Int, _ body: (inout Int) -> R) -> R {
        let line = lines + stripe * StripeLocks.lineBytes
        let word = line.assumingMemoryBound(to: UInt32.self)
        kami_spin_lock(word)
        defer { kami_spin_unlock(word) }
        return body(&(line + 8).assumingMemoryBound(to: Int.self).pointee)
    }

    /// Fetches stripe `stripe`'s lock line ahead of its use.
    @inline(__always)
    func prefetch(_ stripe: Int) { kami_prefetch(lines + stripe * StripeLocks.lineBytes) }

    /// The counters of every stripe added up.
    var total: Int { (0..<CounterLayout.stripes).reduce(0) { sum, stripe in sum + withLock(stripe) { $0 } } }
}

/// One slot: its key, when it was last touched, and the table's value, side by side so a
/// probe reads one cache line, not one per field.
struct Slot<Value> {
    /// 0 is an empty slot (a key that hashes to 0 is stored as 1).
    var key: UInt64
    var touched: Int64
    var value: Value
}

/// Fixed storage of one table: plain memory allocated once (never resized or copied, so
/// the hot path has no copy-on-write checks and no reference counting), split into
/// `stripes` ranges, each behind its own lock.
struct SlotTable<Value>: @unchecked Sendable {
    // @unchecked: every slot of stripe `s` is read and written only under `locks[s]`.
    let perStripe: Int
    private let mask: Int
    /// `mask` without the low bits of a probe group.
    private let groupMask: Int
    let slots: UnsafeMutablePointer<Slot<Value>>
    /// Per stripe: its lock, and keys pushed out to make room (for the metrics).
    let locks = StripeLocks()

    init(entries: Int, empty: Value) {
        perStripe = max(CounterLayout.probe, entries / CounterLayout.stripes).nextPowerOfTwo
        mask = perStripe - 1
        groupMask = mask & ~(min(CounterLayout.probe, perStripe) - 1)
        let total = perStripe * CounterLayout.stripes
        // Aligned to a cache line, and probes start at a multiple of `probe` slots: a
        // probe reads whole lines (two of them for 32-byte slots), never a third.
        slots = TableMemory.allocate(bytes: total * MemoryLayout<Slot<Value>>.stride)
            .bindMemory(to: Slot<Value>.self, capacity: total)
        slots.initialize(repeating: Slot(key: 0, touched: 0, value: empty), count: total)
    }

    /// Frees the memory; the owner's deinit calls it once.
    func deallocate() {
        slots.deinitialize(count: capacity)
        TableMemory.deallocate(UnsafeMutableRawPointer(slots), bytes: capacity * MemoryLayout<Slot<Value>>.stride)
        locks.deallocate()
    }

    var capacity: Int { perStripe * CounterLayout.stripes }

    @inline(__always)
    func stripe(_ key: UInt64) -> Int { Int(truncatingIfNeeded: key) & (CounterLayout.stripes - 1) }

    /// Under `locks[stripe]`: the slot of `key` (absolute index), and whether it was just
    /// taken (its value must be reset).
    @inline(__always)
    func slot(_ key: UInt64, stripe: Int, nowMs: Int64, evictions: inout Int) -> (index: Int, fresh: Bool) {
        let stored = key == 0 ? 1 : key
        let base = stripe * perStripe
        let start = Int(truncatingIfNeeded: stored >> 7) & groupMask
        var oldest = base + start
        for step in 0..<min(CounterLayout.probe, perStripe) {
            let index = base + ((start + step) & mask)
            let present = slots[index].key
            if present == stored {
                slots[index].touched = nowMs
                return (index, false)
            }
            if present == 0 {
                slots[index].key = stored
                slots[index].touched = nowMs
                return (index, true)
            }
            if slots[index].touched < slots[oldest].touched { oldest = index }
        }
        evictions += 1
        slots[oldest].key = stored
        slots[oldest].touched = nowMs
        return (oldest, true)
    }

    /// Fetches the lines `key`'s probe and lock will touch, ahead of `slot` or `find`.
    @inline(__always)
    func prefetch(_ key: UInt64) {
        let stored = key == 0 ? 1 : key
        let stripe = stripe(key)
        locks.prefetch(stripe)
        let start = Int(truncatingIfNeeded: stored >> 7) & groupMask
        let bytes = min(CounterLayout.probe, perStripe) * MemoryLayout<Slot<Value>>.stride
        let first = UnsafeRawPointer(slots + stripe * perStripe + start)
        var offset = 0
        while offset < bytes {
            kami_prefetch(first + offset)
            offset += 64
        }
    }

    /// The absolute index of `key`'s first probe.
    @inline(__always)
    func firstProbe(_ key: UInt64) -> Int {
        let stored = key == 0 ? 1 : key
        return stripe(key) * perStripe + (Int(truncatingIfNeeded: stored >> 7) & groupMask)
    }

    /// Under `locks[stripe]`: the slot of `key` if it is present.
    @inline(__always)
    func find(_ key: UInt64, stripe: Int) -> Int? {
        let stored = key == 0 ? 1 : key
        let base = stripe * perStripe
        let start = Int(truncatingIfNeeded: stored >> 7) & groupMask
        for step in 0..<min(CounterLayout.probe, perStripe) {
            let index = base + ((start + step) & mask)
            if slots[index].key == stored { return index }
            if slots[index].key == 0 { return nil }
        }
        return nil
    }

    var evictions: Int { locks.total }
}

/// A token bucket: tokens left and when they were counted.
struct Bucket {
    var tokens: Double
    var stampMs: Int64
}

/// Token buckets keyed by a 64-bit fingerprint.
final class BucketTable: @unchecked Sendable {
    // @unchecked: the table's memory is touched only under its stripe locks.
    private let table: SlotTable<Bucket>
    /// Bytes per entry: key, touch time, tokens, refill time.
    static let entryBytes = MemoryLayout<Slot<Bucket>>.stride

    init(entries: Int) {
        table = SlotTable(entries: entries, empty: Bucket(tokens: 0, stampMs: 0))
    }

    deinit { table.deallocate() }

    /// Fetches what `take(key, ...)` will touch.
    @inline(__always)
    func prefetch(_ key: UInt64) { table.prefetch(key) }

    /// Takes a token from `key`'s bucket; false when it is empty.
    func take(_ key: UInt64, perSecond: Double, burst: Double, nowMs: Int64) -> Bool {
        let stripe = table.stripe(key)
        return table.locks.withLock(stripe) { evictions in
            let (index, fresh) = table.slot(key, stripe: stripe, nowMs: nowMs, evictions: &evictions)
            var bucket = table.slots[index].value
            if fresh {
                bucket.tokens = burst
            } else {
                let elapsed = Double(max(0, nowMs - bucket.stampMs)) / 1_000
                bucket.tokens = min(burst, bucket.tokens + elapsed * perSecond)
            }
            bucket.stampMs = nowMs
            let taken = bucket.tokens >= 1
            if taken { bucket.tokens -= 1 }
            table.slots[index].value = bucket
            return taken
        }
    }

    /// Whether `key`'s bucket has a token, without taking it (an unknown key has a full one).
    func hasToken(_ key: UInt64, perSecond: Double, burst: Double, nowMs: Int64) -> Bool {
        let stripe = table.stripe(key)
        return table.locks.withLock(stripe) { _ in
            guard let index = table.find(key, stripe: stripe) else { return true }
            let bucket = table.slots[index].value
            let elapsed = Double(max(0, nowMs - bucket.stampMs)) / 1_000
            return min(burst, bucket.tokens + elapsed * perSecond) >= 1
        }
    }

    var evictions: Int { table.evictions }
    var capacity: Int { table.capacity }
}

/// A distinct set's window: when it started and how many members it has.
struct DistinctWindow {
    var startMs: Int64
    var count: UInt8
}

/// Distinct values per key in a tumbling window: up to `RulesFile.distinctMax + 1`
/// 32-bit fingerprints of values per key (enough to know "more than max").
final class DistinctTable: @unchecked Sendable {
    // @unchecked: `members` of stripe `s` are touched only under `table.locks[s]`.
    static let width = RulesFile.distinctMax + 1
    private let table: SlotTable<DistinctWindow>
    private let members: UnsafeMutablePointer<UInt32>
    /// Bytes per entry: the slot (key, touch time, window) and its members.
    static let entryBytes = MemoryLayout<Slot<DistinctWindow>>.stride + 4 * width

    init(entries: Int) {
        table = SlotTable(entries: entries, empty: DistinctWindow(startMs: 0, count: 0))
        members = TableMemory.allocate(bytes: table.capacity * DistinctTable.width * 4)
            .bindMemory(to: UInt32.self, capacity: table.capacity * DistinctTable.width)
    }

    deinit {
        TableMemory.deallocate(UnsafeMutableRawPointer(members), bytes: table.capacity * DistinctTable.width * 4)
        table.deallocate()
    }

    /// Fetches the slot lines and lock `add(key, ...)` will touch, and the members of the
    /// slot the key most likely has (its first probe).
    @inline(__always)
    func prefetch(_ key: UInt64) {
        table.prefetch(key)
        kami_prefetch(members + table.firstProbe(key) * DistinctTable.width)
    }

    /// Adds `member` to `key`'s set for the window and returns how many distinct members
    /// the set has (capped at `width`).
    func add(_ key: UInt64, member: UInt32, windowMs: Int64, nowMs: Int64) -> Int {
        let stripe = table.stripe(key)
        return table.locks.withLock(stripe) { evictions in
            let (index, fresh) = table.slot(key, stripe: stripe, nowMs: nowMs, evictions: &evictions)
            var window = table.slots[index].value
            if fresh || nowMs - window.startMs >= windowMs {
                window = DistinctWindow(startMs: nowMs, count: 0)
            }
            let base = index * DistinctTable.width
            let count = Int(window.count)
            for offset in 0..<count where members[base + offset] == member {
                table.slots[index].value = window
                return count
            }
            guard count < DistinctTable.width else {
                table.slots[index].value = window
                return count
            }
            members[base + count] = member
            window.count = UInt8(count + 1)
            table.slots[index].value = window
            return count + 1
        }
    }

    var evictions: Int { table.evictions }
    var capacity: Int { table.capacity }
}

/// Counts per key in a sliding window, in a count-min sketch: `depth` rows of counters, a
/// key adds to one counter a row, its count is the least of them. Collisions can only add,
/// so a key's count is never under its true count (a flood cannot hide a key); the error
/// is at most events / width per row, with high probability.
///
/// The window slides by weighting the previous window's count by the part of it still in
/// range (the approximation nginx and Cloudflare use for sliding-window limits).
final class QuotaSketch: @unchecked Sendable {
    // @unchecked: the cells and epoch of stripe `s` are touched only under `locks` stripe `s`.
    static let depth = 4
    private let locks = StripeLocks()
    /// Per stripe: the current window's `depth` rows then the previous window's.
    private let cells: UnsafeMutablePointer<UInt32>
    /// Per stripe: the window number its current rows count.
    private let epochs: UnsafeMutablePointer<Int64>
    private let width: Int
    let windowMs: Int64

    /// Bytes of one sketch of `width` columns (two windows of `depth` rows).
    static func bytes(width: Int) -> Int { 2 * depth * width * 4 }

    init(width: Int, windowMs: Int64) {
        self.width = max(16, width / CounterLayout.stripes)
        self.windowMs = windowMs
        let total = CounterLayout.stripes * 2 * self.width * QuotaSketch.depth
        cells = TableMemory.allocate(bytes: total * 4).bindMemory(to: UInt32.self, capacity: total)
        epochs = .allocate(capacity: CounterLayout.stripes)
        epochs.initialize(repeating: -1, count: CounterLayout.stripes)
    }

    deinit {
        TableMemory.deallocate(UnsafeMutableRawPointer(cells), bytes: CounterLayout.stripes * 2 * width * QuotaSketch.depth * 4)
        epochs.deallocate()
        locks.deallocate()
    }

    private var rowsPerWindow: Int { width * QuotaSketch.depth }

    /// The key's column in `row` (a different hash per row).
    @inline(__always)
    private func cell(_ key: UInt64, _ row: Int) -> Int {
        var hash = key &+ UInt64(row) &* 0x9E37_79B9_7F4A_7C15
        hash = (hash ^ (hash >> 30)) &* 0xBF58_476D_1CE4_E5B9
        hash ^= hash >> 29
        return row * width + Int(truncatingIfNeeded: hash % UInt64(width))
    }

    /// Under the stripe's lock: its current and previous rows, rolled to `epoch`.
    @inline(__always)
    private func rows(_ stripe: Int, epoch: Int64) -> (current: UnsafeMutablePointer<UInt32>, previous: UnsafeMutablePointer<UInt32>) {
        let n = rowsPerWindow
        let base = cells + stripe * 2 * n
        var current = base
        var previous = base + n
        // Which half is current alternates with the epoch's parity, so rolling one window
        // on is clearing one half, never copying.
        if epoch & 1 == 1 { swap(&current, &previous) }
        let was = epochs[stripe]
        if was != epoch {
            if was != epoch - 1 { previous.update(repeating: 0, count: n) }
            current.update(repeating: 0, count: n)
            epochs[stripe] = epoch
        }
        return (current, previous)
    }

    @inline(__always)
    private func stripe(_ key: UInt64) -> Int { Int(truncatingIfNeeded: key) & (CounterLayout.stripes - 1) }

    /// Fetches the lock and the cells of both windows `estimate` and `add` will read.
    @inline(__always)
    func prefetch(_ key: UInt64) {
        let stripe = stripe(key)
        locks.prefetch(stripe)
        let base = cells + stripe * 2 * rowsPerWindow
        for row in 0..<QuotaSketch.depth {
            let position = cell(key, row)
            kami_prefetch(base + position)
            kami_prefetch(base + rowsPerWindow + position)
        }
    }

    /// The key's count over the last window (an estimate that never under-counts within a
    /// fixed window).
    func estimate(_ key: UInt64, nowMs: Int64) -> Double {
        let epoch = nowMs / windowMs
        let spent = Double(nowMs - epoch * windowMs) / Double(windowMs)
        let stripe = stripe(key)
        return locks.withLock(stripe) { _ in
            let (currentRows, previousRows) = rows(stripe, epoch: epoch)
            var current = UInt32.max
            var previous = UInt32.max
            for row in 0..<QuotaSketch.depth {
                let position = cell(key, row)
                current = min(current, currentRows[position])
                previous = min(previous, previousRows[position])
            }
            return Double(current) + Double(previous) * (1 - spent)
        }
    }

    /// Counts one event of `key`.
    func add(_ key: UInt64, nowMs: Int64) {
        let epoch = nowMs / windowMs
        let stripe = stripe(key)
        // Conservative update: only the counters at the key's current minimum rise, so other
        // keys' counts are inflated far less (a flash sale's honest buyers share cells), and
        // the key's own count is still never under its true count.
        locks.withLock(stripe) { _ in
            let (current, _) = rows(stripe, epoch: epoch)
            var least = UInt32.max
            for row in 0..<QuotaSketch.depth { least = min(least, current[cell(key, row)]) }
            guard least < UInt32.max else { return }
            for row in 0..<QuotaSketch.depth {
                let position = cell(key, row)
                if current[position] <= least { current[position] = least + 1 }
            }
        }
    }
}

extension Int {
    /// The smallest power of two at or above self (1 for 0).
    var nextPowerOfTwo: Int {
        var value = 1
        while value < self { value <<= 1 }
        return value
    }
}

/// Memory for the counter tables: mapped once, zeroed by the kernel, aligned to 2 MiB and
/// advised as transparent huge pages. A request touches a dozen random lines in tables of
/// tens of megabytes; with 4 KiB pages nearly each is also a TLB miss (and under a
/// hypervisor a TLB miss walks two page tables), with 2 MiB pages the whole table fits the
/// TLB. Where the kernel gives no huge pages the memory works the same, only slower.
enum TableMemory {
    static let hugePageBytes = 2 << 20

    /// The bytes actually mapped for `bytes` (whole huge pages).
    static func mappedBytes(_ bytes: Int) -> Int { (max(bytes, 1) + hugePageBytes - 1) / hugePageBytes * hugePageBytes }

    /// `bytes` of zeroed memory.
    static func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        let size = mappedBytes(bytes)
        // Mapped with one huge page of slack, then trimmed to an aligned start.
        guard let raw = mmap(nil, size + hugePageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != MAP_FAILED
        else { fatalError("cannot map \(size) bytes for the risk gate's counters: errno \(errno)") }
        let start = UInt(bitPattern: raw)
        let aligned = (start + UInt(hugePageBytes) - 1) & ~UInt(hugePageBytes - 1)
        let head = Int(aligned - start)
        if head > 0 { munmap(raw, head) }
        let tail = hugePageBytes - head
        let base = UnsafeMutableRawPointer(bitPattern: aligned)!
        if tail > 0 { munmap(base + size, tail) }
        _ = madvise(base, size, kami_madv_hugepage())
        return base
    }

    /// Unmaps memory from `allocate(bytes:)`.
    static func deallocate(_ base: UnsafeMutableRawPointer, bytes: Int) {
        munmap(base, mappedBytes(bytes))
    }
}
