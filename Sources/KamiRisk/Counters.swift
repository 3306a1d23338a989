import KamiCore

/// Fixed-size counter structures: memory is allocated once, at the sizes the config names,
/// and a flood of distinct keys evicts old keys instead of growing anything.
///
/// Every structure is split into `stripes` independent parts, each behind its own lock,
/// chosen by the key's hash: two event loops meet on a lock only when they touch keys of
/// the same stripe at the same instant, never on one lock for every request.
enum CounterLayout {
    /// Independent parts of every table and sketch.
    static let stripes = 64
    /// Slots looked at for a key before the oldest of them is evicted.
    static let probe = 8
}

/// Fixed storage of one table: plain memory allocated once (never resized or copied, so
/// the hot path has no copy-on-write checks and no reference counting), split into
/// `stripes` ranges, each behind its own lock.
final class SlotStorage: @unchecked Sendable {
    // @unchecked: every slot of stripe `s` is read and written only under `locks[s]`.
    let perStripe: Int
    private let mask: Int
    /// 0 is an empty slot (a key that hashes to 0 is stored as 1).
    let keys: UnsafeMutablePointer<UInt64>
    /// When each slot was last touched (eviction picks the oldest of the probed slots).
    let touched: UnsafeMutablePointer<Int64>
    /// Per stripe: keys pushed out to make room, for the metrics.
    let locks: [Locked<Int>]

    init(entries: Int) {
        perStripe = max(CounterLayout.probe, entries / CounterLayout.stripes).nextPowerOfTwo
        mask = perStripe - 1
        let total = perStripe * CounterLayout.stripes
        keys = .allocate(capacity: total)
        keys.initialize(repeating: 0, count: total)
        touched = .allocate(capacity: total)
        touched.initialize(repeating: 0, count: total)
        locks = (0..<CounterLayout.stripes).map { _ in Locked(0) }
    }

    deinit {
        keys.deallocate()
        touched.deallocate()
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
        let start = Int(truncatingIfNeeded: stored >> 7) & mask
        var oldest = base + start
        for step in 0..<min(CounterLayout.probe, perStripe) {
            let index = base + ((start + step) & mask)
            let present = keys[index]
            if present == stored {
                touched[index] = nowMs
                return (index, false)
            }
            if present == 0 {
                keys[index] = stored
                touched[index] = nowMs
                return (index, true)
            }
            if touched[index] < touched[oldest] { oldest = index }
        }
        evictions += 1
        keys[oldest] = stored
        touched[oldest] = nowMs
        return (oldest, true)
    }

    /// Under `locks[stripe]`: the slot of `key` if it is present.
    @inline(__always)
    func find(_ key: UInt64, stripe: Int) -> Int? {
        let stored = key == 0 ? 1 : key
        let base = stripe * perStripe
        let start = Int(truncatingIfNeeded: stored >> 7) & mask
        for step in 0..<min(CounterLayout.probe, perStripe) {
            let index = base + ((start + step) & mask)
            if keys[index] == stored { return index }
            if keys[index] == 0 { return nil }
        }
        return nil
    }

    var evictions: Int { locks.reduce(0) { $0 + $1.withLock { $0 } } }
}

/// Token buckets keyed by a 64-bit fingerprint.
final class BucketTable: @unchecked Sendable {
    // @unchecked: `tokens` and `stamp` of stripe `s` are touched only under `slots.locks[s]`.
    private let slots: SlotStorage
    private let tokens: UnsafeMutablePointer<Double>
    private let stamp: UnsafeMutablePointer<Int64>
    /// Bytes per entry: key, touch time, tokens, refill time.
    static let entryBytes = 32

    init(entries: Int) {
        slots = SlotStorage(entries: entries)
        tokens = .allocate(capacity: slots.capacity)
        tokens.initialize(repeating: 0, count: slots.capacity)
        stamp = .allocate(capacity: slots.capacity)
        stamp.initialize(repeating: 0, count: slots.capacity)
    }

    deinit {
        tokens.deallocate()
        stamp.deallocate()
    }

    /// Takes a token from `key`'s bucket; false when it is empty.
    func take(_ key: UInt64, perSecond: Double, burst: Double, nowMs: Int64) -> Bool {
        let stripe = slots.stripe(key)
        return slots.locks[stripe].withLock { evictions in
            let (index, fresh) = slots.slot(key, stripe: stripe, nowMs: nowMs, evictions: &evictions)
            if fresh {
                tokens[index] = burst
            } else {
                let elapsed = Double(max(0, nowMs - stamp[index])) / 1_000
                tokens[index] = min(burst, tokens[index] + elapsed * perSecond)
            }
            stamp[index] = nowMs
            guard tokens[index] >= 1 else { return false }
            tokens[index] -= 1
            return true
        }
    }

    /// Whether `key`'s bucket has a token, without taking it (an unknown key has a full one).
    func hasToken(_ key: UInt64, perSecond: Double, burst: Double, nowMs: Int64) -> Bool {
        let stripe = slots.stripe(key)
        return slots.locks[stripe].withLock { _ in
            guard let index = slots.find(key, stripe: stripe) else { return true }
            let elapsed = Double(max(0, nowMs - stamp[index])) / 1_000
            return min(burst, tokens[index] + elapsed * perSecond) >= 1
        }
    }

    var evictions: Int { slots.evictions }
    var capacity: Int { slots.capacity }
}

/// Distinct values per key in a tumbling window: up to `RulesFile.distinctMax + 1`
/// 32-bit fingerprints of values per key (enough to know "more than max").
final class DistinctTable: @unchecked Sendable {
    // @unchecked: the arrays of stripe `s` are touched only under `slots.locks[s]`.
    static let width = RulesFile.distinctMax + 1
    private let slots: SlotStorage
    private let windowStart: UnsafeMutablePointer<Int64>
    private let counts: UnsafeMutablePointer<UInt8>
    private let members: UnsafeMutablePointer<UInt32>
    /// Bytes per entry: key, touch time, window start, count, members.
    static let entryBytes = 8 + 8 + 8 + 1 + 4 * width

    init(entries: Int) {
        slots = SlotStorage(entries: entries)
        let capacity = slots.capacity
        windowStart = .allocate(capacity: capacity)
        windowStart.initialize(repeating: 0, count: capacity)
        counts = .allocate(capacity: capacity)
        counts.initialize(repeating: 0, count: capacity)
        members = .allocate(capacity: capacity * DistinctTable.width)
        members.initialize(repeating: 0, count: capacity * DistinctTable.width)
    }

    deinit {
        windowStart.deallocate()
        counts.deallocate()
        members.deallocate()
    }

    /// Adds `member` to `key`'s set for the window and returns how many distinct members
    /// the set has (capped at `width`).
    func add(_ key: UInt64, member: UInt32, windowMs: Int64, nowMs: Int64) -> Int {
        let stripe = slots.stripe(key)
        return slots.locks[stripe].withLock { evictions in
            let (index, fresh) = slots.slot(key, stripe: stripe, nowMs: nowMs, evictions: &evictions)
            if fresh || nowMs - windowStart[index] >= windowMs {
                windowStart[index] = nowMs
                counts[index] = 0
            }
            let base = index * DistinctTable.width
            let count = Int(counts[index])
            for offset in 0..<count where members[base + offset] == member { return count }
            guard count < DistinctTable.width else { return count }
            members[base + count] = member
            counts[index] = UInt8(count + 1)
            return count + 1
        }
    }

    var evictions: Int { slots.evictions }
    var capacity: Int { slots.capacity }
}

/// Counts per key in a sliding window, in a count-min sketch: `depth` rows of counters, a
/// key adds to one counter a row, its count is the least of them. Collisions can only add,
/// so a key's count is never under its true count (a flood cannot hide a key); the error
/// is at most events / width per row, with high probability.
///
/// The window slides by weighting the previous window's count by the part of it still in
/// range (the approximation nginx and Cloudflare use for sliding-window limits).
final class QuotaSketch: Sendable {
    static let depth = 4
    struct Stripe {
        var epoch: Int64 = -1
        var current: [UInt32]
        var previous: [UInt32]
    }
    private let stripes: [Locked<Stripe>]
    private let width: Int
    let windowMs: Int64

    /// Bytes of one sketch of `width` columns (two windows of `depth` rows).
    static func bytes(width: Int) -> Int { 2 * depth * width * 4 }

    init(width: Int, windowMs: Int64) {
        self.width = max(16, width / CounterLayout.stripes)
        self.windowMs = windowMs
        let cells = self.width * QuotaSketch.depth
        stripes = (0..<CounterLayout.stripes).map { _ in
            Locked(Stripe(current: [UInt32](repeating: 0, count: cells), previous: [UInt32](repeating: 0, count: cells)))
        }
    }

    /// The key's column in `row` (a different hash per row).
    @inline(__always)
    private func cell(_ key: UInt64, _ row: Int) -> Int {
        var hash = key &+ UInt64(row) &* 0x9E37_79B9_7F4A_7C15
        hash = (hash ^ (hash >> 30)) &* 0xBF58_476D_1CE4_E5B9
        hash ^= hash >> 29
        return row * width + Int(truncatingIfNeeded: hash % UInt64(width))
    }

    private static func roll(_ stripe: inout Stripe, epoch: Int64) {
        guard stripe.epoch != epoch else { return }
        if stripe.epoch == epoch - 1 {
            swap(&stripe.current, &stripe.previous)
        } else {
            for index in stripe.previous.indices { stripe.previous[index] = 0 }
        }
        for index in stripe.current.indices { stripe.current[index] = 0 }
        stripe.epoch = epoch
    }

    /// The key's count over the last window (an estimate that never under-counts within a
    /// fixed window).
    func estimate(_ key: UInt64, nowMs: Int64) -> Double {
        let epoch = nowMs / windowMs
        let spent = Double(nowMs - epoch * windowMs) / Double(windowMs)
        return stripes[Int(truncatingIfNeeded: key) & (CounterLayout.stripes - 1)].withLock { stripe in
            QuotaSketch.roll(&stripe, epoch: epoch)
            var current = UInt32.max
            var previous = UInt32.max
            for row in 0..<QuotaSketch.depth {
                let position = cell(key, row)
                current = min(current, stripe.current[position])
                previous = min(previous, stripe.previous[position])
            }
            return Double(current) + Double(previous) * (1 - spent)
        }
    }

    /// Counts one event of `key`.
    func add(_ key: UInt64, nowMs: Int64) {
        let epoch = nowMs / windowMs
        stripes[Int(truncatingIfNeeded: key) & (CounterLayout.stripes - 1)].withLock { stripe in
            QuotaSketch.roll(&stripe, epoch: epoch)
            for row in 0..<QuotaSketch.depth {
                let position = cell(key, row)
                if stripe.current[position] < UInt32.max { stripe.current[position] += 1 }
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
