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

/// Where keys live in one stripe of a table: open addressing over `probe` slots, the
/// least recently touched slot evicted when all are taken.
struct SlotIndex {
    /// 0 is an empty slot (a key that hashes to 0 is stored as 1).
    private(set) var keys: [UInt64]
    private var touched: [Int64]
    private let mask: Int
    /// Keys pushed out to make room, for the metrics.
    private(set) var evictions = 0

    init(capacity: Int) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "capacity is a power of two")
        keys = [UInt64](repeating: 0, count: capacity)
        touched = [Int64](repeating: 0, count: capacity)
        mask = capacity - 1
    }

    /// The slot of `key`, and whether it was just taken (its value must be reset).
    mutating func slot(_ key: UInt64, nowMs: Int64) -> (index: Int, fresh: Bool) {
        let stored = key == 0 ? 1 : key
        let start = Int(truncatingIfNeeded: stored >> 7) & mask
        var oldest = start
        for step in 0..<min(CounterLayout.probe, keys.count) {
            let index = (start + step) & mask
            if keys[index] == stored {
                touched[index] = nowMs
                return (index, false)
            }
            if keys[index] == 0 {
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

    /// The slot of `key` if it is present.
    func find(_ key: UInt64) -> Int? {
        let stored = key == 0 ? 1 : key
        let start = Int(truncatingIfNeeded: stored >> 7) & mask
        for step in 0..<min(CounterLayout.probe, keys.count) {
            let index = (start + step) & mask
            if keys[index] == stored { return index }
            if keys[index] == 0 { return nil }
        }
        return nil
    }

    /// Frees a slot (a hold count back to zero).
    mutating func remove(_ index: Int) {
        keys[index] = 0
        touched[index] = 0
    }

    var occupied: Int { keys.reduce(0) { $0 + ($1 == 0 ? 0 : 1) } }
}

/// Token buckets keyed by a 64-bit fingerprint.
final class BucketTable: Sendable {
    struct Stripe {
        var index: SlotIndex
        var tokens: [Double]
        var stamp: [Int64]
    }
    private let stripes: [Locked<Stripe>]
    /// Bytes per entry: key, touch time, tokens, refill time.
    static let entryBytes = 32

    init(entries: Int) {
        let per = max(CounterLayout.probe, entries / CounterLayout.stripes).nextPowerOfTwo
        stripes = (0..<CounterLayout.stripes).map { _ in
            Locked(Stripe(index: SlotIndex(capacity: per), tokens: [Double](repeating: 0, count: per),
                          stamp: [Int64](repeating: 0, count: per)))
        }
    }

    /// Takes a token from `key`'s bucket; false when it is empty.
    func take(_ key: UInt64, perSecond: Double, burst: Double, nowMs: Int64) -> Bool {
        stripes[Int(truncatingIfNeeded: key) & (CounterLayout.stripes - 1)].withLock { stripe in
            let (index, fresh) = stripe.index.slot(key, nowMs: nowMs)
            if fresh {
                stripe.tokens[index] = burst
                stripe.stamp[index] = nowMs
            } else {
                let elapsed = Double(max(0, nowMs - stripe.stamp[index])) / 1_000
                stripe.tokens[index] = min(burst, stripe.tokens[index] + elapsed * perSecond)
                stripe.stamp[index] = nowMs
            }
            guard stripe.tokens[index] >= 1 else { return false }
            stripe.tokens[index] -= 1
            return true
        }
    }

    /// Whether `key`'s bucket has a token, without taking it (an unknown key has a full one).
    func hasToken(_ key: UInt64, perSecond: Double, burst: Double, nowMs: Int64) -> Bool {
        stripes[Int(truncatingIfNeeded: key) & (CounterLayout.stripes - 1)].withLock { stripe in
            guard let index = stripe.index.find(key) else { return true }
            let elapsed = Double(max(0, nowMs - stripe.stamp[index])) / 1_000
            return min(burst, stripe.tokens[index] + elapsed * perSecond) >= 1
        }
    }

    var evictions: Int { stripes.reduce(0) { $0 + $1.withLock { $0.index.evictions } } }
    var occupied: Int { stripes.reduce(0) { $0 + $1.withLock { $0.index.occupied } } }
    var capacity: Int { stripes.reduce(0) { $0 + $1.withLock { $0.index.keys.count } } }
}

/// Distinct values per key in a tumbling window: up to `RulesFile.distinctMax + 1`
/// 32-bit fingerprints of values per key (enough to know "more than max").
final class DistinctTable: Sendable {
    static let width = RulesFile.distinctMax + 1
    struct Stripe {
        var index: SlotIndex
        var windowStart: [Int64]
        var counts: [UInt8]
        var members: [UInt32]
    }
    private let stripes: [Locked<Stripe>]
    /// Bytes per entry: key, touch time, window start, count, members.
    static let entryBytes = 8 + 8 + 8 + 1 + 4 * width

    init(entries: Int) {
        let per = max(CounterLayout.probe, entries / CounterLayout.stripes).nextPowerOfTwo
        stripes = (0..<CounterLayout.stripes).map { _ in
            Locked(Stripe(index: SlotIndex(capacity: per), windowStart: [Int64](repeating: 0, count: per),
                          counts: [UInt8](repeating: 0, count: per),
                          members: [UInt32](repeating: 0, count: per * DistinctTable.width)))
        }
    }

    /// Adds `member` to `key`'s set for the window and returns how many distinct members
    /// the set has (capped at `width`).
    func add(_ key: UInt64, member: UInt32, windowMs: Int64, nowMs: Int64) -> Int {
        stripes[Int(truncatingIfNeeded: key) & (CounterLayout.stripes - 1)].withLock { stripe in
            let (index, fresh) = stripe.index.slot(key, nowMs: nowMs)
            if fresh || nowMs - stripe.windowStart[index] >= windowMs {
                stripe.windowStart[index] = nowMs
                stripe.counts[index] = 0
            }
            let base = index * DistinctTable.width
            let count = Int(stripe.counts[index])
            for offset in 0..<count where stripe.members[base + offset] == member { return count }
            guard count < DistinctTable.width else { return count }
            stripe.members[base + count] = member
            stripe.counts[index] = UInt8(count + 1)
            return count + 1
        }
    }

    var evictions: Int { stripes.reduce(0) { $0 + $1.withLock { $0.index.evictions } } }
    var capacity: Int { stripes.reduce(0) { $0 + $1.withLock { $0.index.keys.count } } }
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

    private func cells(_ key: UInt64) -> [Int] {
        var hash = key
        return (0..<QuotaSketch.depth).map { row in
            hash = hash &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(row) &+ 0xBF58_476D_1CE4_E5B9
            hash ^= hash >> 29
            return row * width + Int(truncatingIfNeeded: hash % UInt64(width))
        }
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
        let positions = cells(key)
        return stripes[Int(truncatingIfNeeded: key) & (CounterLayout.stripes - 1)].withLock { stripe in
            QuotaSketch.roll(&stripe, epoch: epoch)
            let current = positions.map { stripe.current[$0] }.min() ?? 0
            let previous = positions.map { stripe.previous[$0] }.min() ?? 0
            return Double(current) + Double(previous) * (1 - spent)
        }
    }

    /// Counts one event of `key`.
    func add(_ key: UInt64, nowMs: Int64) {
        let epoch = nowMs / windowMs
        let positions = cells(key)
        stripes[Int(truncatingIfNeeded: key) & (CounterLayout.stripes - 1)].withLock { stripe in
            QuotaSketch.roll(&stripe, epoch: epoch)
            for position in positions where stripe.current[position] < UInt32.max { stripe.current[position] += 1 }
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
