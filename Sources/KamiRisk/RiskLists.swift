import KamiCore
import Synchronization

/// The block and allow lists as one lookup structure, built from the database's entries
/// and the rules file's. Rebuilt (not edited) on every change: lists change by hand, a few
/// times a day; requests read them constantly.
struct RiskLists: Sendable {
    /// list name → kind → exact values (IPs as their 16 bytes).
    private var values: [String: [ListEntry.Kind: Set<String>]] = [:]
    private var addresses: [String: Set<[UInt8]>] = [:]
    /// list name → prefix length → masked networks.
    private var networks: [String: [Int: Set<[UInt8]>]] = [:]
    private(set) var count = 0

    init(_ entries: [ListEntry] = []) {
        for entry in entries {
            count += 1
            if entry.kind == .ip, let cidr = CIDR(entry.value) {
                if cidr.bits == 128 {
                    addresses[entry.list, default: []].insert(cidr.network)
                } else {
                    networks[entry.list, default: [:]][cidr.bits, default: []].insert(cidr.network)
                }
            } else {
                values[entry.list, default: [:]][entry.kind, default: []].insert(entry.value)
            }
        }
    }

    /// Whether any of the request's signals of `kinds` is on `list`.
    func matches(_ list: String, _ signals: RiskSignals, address: IPAddress?, kinds: [SignalPart]) -> Bool {
        let all = kinds.isEmpty
        let named = values[list]
        if all || kinds.contains(.user), let user = signals.user, named?[.user]?.contains(user) == true { return true }
        if all || kinds.contains(.device), let device = signals.device, named?[.device]?.contains(device) == true { return true }
        if all || kinds.contains(.payment), let payment = signals.paymentAccount, named?[.payment]?.contains(payment) == true {
            return true
        }
        if all || kinds.contains(.ip), let address {
            if addresses[list]?.contains(address.bytes) == true { return true }
            for (bits, set) in networks[list] ?? [:] {
                let masked = address.masked(address.isV4 ? bits - 96 : bits)
                if set.contains(masked) { return true }
            }
        }
        return false
    }
}

/// Unpaid holds per key, for `holds` rules: each hold remembers its keys until it is paid,
/// released or its deadline passes. Bounded: past `capacity` holds, new ones are not
/// tracked (and counted as dropped) rather than grow memory.
final class HoldTracker: Sendable {
    private struct Hold: Sendable {
        var keys: [UInt64]
        var deadlineMs: Int64
    }
    private struct Stripe: Sendable {
        /// By the order id's 64-bit fingerprint (an id string per hold would double the cost).
        var holds: [UInt64: Hold] = [:]

        init(capacity: Int) { holds.reserveCapacity(capacity) }
    }
    /// When the next sweep of expired holds is due (one thread wins it).
    private let nextSweepMs = Atomic<Int64>(0)
    private let orders: [Locked<Stripe>]
    private let counts: [Locked<[UInt64: Int32]>]
    private let perStripe: Int
    private let droppedCount = Locked(0)
    /// Bytes per tracked hold, roughly (dictionary entry, order id, one or two keys).
    static let entryBytes = 160

    init(capacity: Int) {
        perStripe = max(1, capacity / CounterLayout.stripes)
        // Reserved up front, so that the table's memory is what the bound says from the start.
        orders = (0..<CounterLayout.stripes).map { [perStripe] _ in Locked(Stripe(capacity: perStripe)) }
        counts = (0..<CounterLayout.stripes).map { _ in Locked([:]) }
    }

    private func fingerprint(_ order: String) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(order)
        return UInt64(bitPattern: Int64(hasher.finalize()))
    }

    private func stripe(_ fingerprint: UInt64) -> Int { Int(truncatingIfNeeded: fingerprint >> 40) & (CounterLayout.stripes - 1) }

    private func adjust(_ key: UInt64, by delta: Int32) {
        counts[Int(truncatingIfNeeded: key >> 3) & (CounterLayout.stripes - 1)].withLock { table in
            let value = (table[key] ?? 0) + delta
            if value <= 0 { table[key] = nil } else { table[key] = value }
        }
    }

    /// Unpaid holds of `key` now.
    func count(_ key: UInt64, nowMs: Int64) -> Int {
        sweep(nowMs: nowMs)
        return Int(counts[Int(truncatingIfNeeded: key >> 3) & (CounterLayout.stripes - 1)].withLock { $0[key] ?? 0 })
    }

    /// Remembers a hold placed with these keys until `deadlineMs`; whether it was added.
    /// Counts change under the order's stripe lock, so a concurrent remove of the same
    /// order cannot run between the insert and its counts.
    @discardableResult
    func add(order: String, keys: [UInt64], deadlineMs: Int64) -> Bool {
        guard !keys.isEmpty else { return false }
        // nil: already tracked (a repeated reserve of one order counts once).
        let id = fingerprint(order)
        let added = orders[stripe(id)].withLock { stripe -> Bool? in
            guard stripe.holds[id] == nil else { return nil }
            guard stripe.holds.count < perStripe else { return false }
            stripe.holds[id] = Hold(keys: keys, deadlineMs: deadlineMs)
            for key in keys { adjust(key, by: 1) }
            return true
        }
        if added == false { droppedCount.withLock { $0 += 1 } }
        return added == true
    }

    /// The hold was paid or released.
    func remove(order: String) {
        let id = fingerprint(order)
        orders[stripe(id)].withLock { stripe in
            guard let hold = stripe.holds.removeValue(forKey: id) else { return }
            for key in hold.keys { adjust(key, by: -1) }
        }
    }

    /// Forgets holds past their deadline, at most once a second.
    private func sweep(nowMs: Int64) {
        let due = nextSweepMs.load(ordering: .relaxed)
        guard nowMs >= due,
              nextSweepMs.compareExchange(expected: due, desired: nowMs + 1_000, ordering: .relaxed).exchanged else { return }
        for index in orders.indices {
            orders[index].withLock { stripe in
                for (order, hold) in stripe.holds where hold.deadlineMs <= nowMs {
                    for key in hold.keys { adjust(key, by: -1) }
                    stripe.holds[order] = nil
                }
            }
        }
    }

    var tracked: Int { orders.reduce(0) { $0 + $1.withLock { $0.holds.count } } }
    var dropped: Int { droppedCount.withLock { $0 } }
}
