import KamiCore
import Synchronization

/// The block and allow lists as one lookup structure, built from the database's entries
/// and the rules file's. Rebuilt (not edited) on every change: lists change by hand, a few
/// times a day; requests read them constantly.
struct RiskLists: Sendable {
    /// list name → kind → exact values (IPs as their 16 bytes).
    private var values: [String: [ListEntry.Kind: Set<String>]] = [:]
    private var addresses: [String: Set<IPWords>] = [:]
    /// list name → prefix length → masked networks.
    private var networks: [String: [(bits: Int, set: Set<IPWords>)]] = [:]
    private(set) var count = 0

    init(_ entries: [ListEntry] = []) {
        for entry in entries {
            count += 1
            if entry.kind == .ip, let cidr = CIDR(entry.value) {
                let words = IPWords(cidr.network)
                if cidr.bits == 128 {
                    addresses[entry.list, default: []].insert(words)
                } else if let index = networks[entry.list]?.firstIndex(where: { $0.bits == cidr.bits }) {
                    networks[entry.list]![index].set.insert(words)
                } else {
                    networks[entry.list, default: []].append((cidr.bits, [words]))
                }
            } else {
                values[entry.list, default: [:]][entry.kind, default: []].insert(entry.value)
            }
        }
    }

    /// Whether `list` has entries of any of `kinds` (all kinds when empty): a list rule with
    /// nothing to match is skipped without a lookup.
    func hasEntries(_ list: String, kinds: [SignalPart]) -> Bool {
        let all = kinds.isEmpty
        for (kind, part) in [(ListEntry.Kind.user, SignalPart.user), (.device, .device), (.payment, .payment)]
        where all || kinds.contains(part) {
            if !(values[list]?[kind]?.isEmpty ?? true) { return true }
        }
        if all || kinds.contains(.ip) {
            if !(addresses[list]?.isEmpty ?? true) || !(networks[list]?.isEmpty ?? true) { return true }
        }
        return false
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
            let words = IPWords(address.bytes)
            if addresses[list]?.contains(words) == true { return true }
            for (bits, set) in networks[list] ?? [] where set.contains(words.masked(bits)) { return true }
        }
        return false
    }
}

/// A 16-byte address as two words, for list lookups without an array per request.
struct IPWords: Hashable, Sendable {
    var high: UInt64
    var low: UInt64

    init(_ bytes: [UInt8]) {
        high = 0
        low = 0
        for index in 0..<8 { high = high << 8 | UInt64(bytes[index]) }
        for index in 8..<16 { low = low << 8 | UInt64(bytes[index]) }
    }

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The first `bits` bits (of the 16-byte form), the rest zero.
    func masked(_ bits: Int) -> IPWords {
        func mask(_ keep: Int) -> UInt64 { keep <= 0 ? 0 : keep >= 64 ? .max : ~(UInt64.max >> keep) }
        return IPWords(high: high & mask(bits), low: low & mask(bits - 64))
    }
}

/// Unpaid holds per key, for `holds` rules: each hold remembers its keys until it is paid,
/// released or its deadline passes. Bounded: past `capacity` holds, new ones are not
/// tracked (and counted as dropped) rather than grow memory.
final class HoldTracker: @unchecked Sendable {
    // @unchecked: `counts` of stripe `s` are touched only under `countLocks` stripe `s`.
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
    /// Per stripe (under `countLocks`): unpaid holds per key.
    private let counts: UnsafeMutablePointer<[UInt64: Int32]>
    private let countLocks = StripeLocks()
    private let perStripe: Int
    private let droppedCount = Locked(0)
    /// Bytes per tracked hold, roughly (dictionary entry, order id, one or two keys).
    static let entryBytes = 160

    init(capacity: Int) {
        perStripe = max(1, capacity / CounterLayout.stripes)
        // Reserved up front, so that the table's memory is what the bound says from the start.
        orders = (0..<CounterLayout.stripes).map { [perStripe] _ in Locked(Stripe(capacity: perStripe)) }
        counts = .allocate(capacity: CounterLayout.stripes)
        counts.initialize(repeating: [:], count: CounterLayout.stripes)
    }

    deinit {
        counts.deinitialize(count: CounterLayout.stripes)
        counts.deallocate()
        countLocks.deallocate()
    }

    private func fingerprint(_ order: String) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(order)
        return UInt64(bitPattern: Int64(hasher.finalize()))
    }

    private func stripe(_ fingerprint: UInt64) -> Int { Int(truncatingIfNeeded: fingerprint >> 40) & (CounterLayout.stripes - 1) }

    private func adjust(_ key: UInt64, by delta: Int32) {
        let stripe = Int(truncatingIfNeeded: key >> 3) & (CounterLayout.stripes - 1)
        countLocks.withLock(stripe) { _ in
            let value = (counts[stripe][key] ?? 0) + delta
            if value <= 0 { counts[stripe][key] = nil } else { counts[stripe][key] = value }
        }
    }

    /// Unpaid holds of `key` now.
    func count(_ key: UInt64, nowMs: Int64) -> Int {
        sweep(nowMs: nowMs)
        let stripe = Int(truncatingIfNeeded: key >> 3) & (CounterLayout.stripes - 1)
        return Int(countLocks.withLock(stripe) { _ in counts[stripe][key] ?? 0 })
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

    /// The hold's deadline moved (an approved review became an ordinary hold).
    func reschedule(order: String, deadlineMs: Int64) {
        let id = fingerprint(order)
        orders[stripe(id)].withLock { stripe in stripe.holds[id]?.deadlineMs = deadlineMs }
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
