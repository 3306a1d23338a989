public import KamiCore
import KamiCrypto
import CKamiLinux
import Glibc
import Synchronization

/// The sizes of the gate's counters: fixed at start, so a flood of distinct keys cannot
/// grow kamid past `memoryBytes`.
public struct RiskLimits: Sendable, Hashable {
    /// Token buckets, all rate rules together (`risk_rate_entries`).
    public var rateEntries: Int
    /// Distinct-value sets, all distinct rules together (`risk_distinct_entries`).
    public var distinctEntries: Int
    /// Columns of each quota rule's count-min sketch (`risk_sketch_width`).
    public var sketchWidth: Int
    /// Unpaid holds tracked for holds rules (`risk_hold_entries`).
    public var holdEntries: Int

    public init(rateEntries: Int = 1 << 18, distinctEntries: Int = 1 << 16, sketchWidth: Int = 1 << 16,
                holdEntries: Int = 1 << 18) {
        self.rateEntries = rateEntries
        self.distinctEntries = distinctEntries
        self.sketchWidth = sketchWidth
        self.holdEntries = holdEntries
    }

    /// What the tables cost, bytes, with `quotaRules` quota rules loaded (each table mapped in
    /// whole 2 MiB pages).
    public func memoryBytes(quotaRules: Int) -> Int {
        let distinctSlots = distinctEntries * (DistinctTable.entryBytes - 4 * DistinctTable.width)
        return TableMemory.mappedBytes(rateEntries * BucketTable.entryBytes) + TableMemory.mappedBytes(distinctSlots)
            + TableMemory.mappedBytes(distinctEntries * 4 * DistinctTable.width)
            + quotaRules * TableMemory.mappedBytes(QuotaSketch.bytes(width: sketchWidth)) + holdEntries * HoldTracker.entryBytes
    }
}

/// The result of running a request through the rules.
public struct RiskEvaluation: Sendable {
    /// What to do.
    public var verdict: RiskVerdict
    /// Shadow rules that fired: what they would have decided is not applied.
    public var shadowRules: [String]
    /// Whether a valid challenge token turned a challenge into an allow.
    public var challengePassed: Bool
}

/// The risk gate: rules over counters, lists and a score, decided inline on every order
/// and on the storefront's other events (`risk`).
///
/// Thread-safe. The rules are swapped whole on reload; counters of a rule that keeps its
/// name and kind carry over, so a reload under load does not reset anyone's limits.
public final class RiskGate: Sendable {
    /// One loaded rule, flattened for the hot path (no struct of strings copied per
    /// request), and what it owns.
    final class Compiled: Sendable {
        let rule: RiskRule
        /// Seeds its keys apart from every other rule's.
        let seed: UInt64
        let kind: RuleKind
        let parts: [SignalPart]
        let score: Int
        let action: RiskVerdict.Decision?
        let shadow: Bool
        let sketch: QuotaSketch?
        let fired = Atomic<Int>(0)
        let shadowFired = Atomic<Int>(0)

        init(rule: RiskRule, sketch: QuotaSketch?) {
            self.rule = rule
            var hasher = Hasher()
            hasher.combine(rule.name)
            hasher.combine(rule.kind.name)
            seed = UInt64(bitPattern: Int64(hasher.finalize()))
            kind = rule.kind
            parts = rule.key
            score = rule.score
            action = rule.action
            shadow = rule.shadow
            self.sketch = sketch
        }
    }

    /// One rule of an event's plan as plain values, so the hot path reads it without any
    /// reference counting (a retain of an object both loops share moves its cache line
    /// between cores on every request).
    struct Step {
        enum Kind: UInt8 { case rate, quota, distinct, holds, attribute, list }
        var kind: Kind
        /// The key's signal parts, 4 bits each (`SignalPart.index`), `partCount` of them.
        var parts: UInt64
        var partCount: Int
        var seed: UInt64
        /// rate: per second and burst; quota: the maximum.
        var a: Double
        var b: Double
        /// distinct, holds: the maximum.
        var limit: Int
        var windowMs: Int64
        /// distinct: the counted part's index.
        var counted: Int
        var shadow: Bool
        /// list: whether the list has entries of the kinds this rule looks at.
        var listed: Bool
        var sketch: Unmanaged<QuotaSketch>?
        /// The rule (alive as long as the `Loaded` that holds this step).
        var rule: Unmanaged<Compiled>
    }

    final class Loaded: @unchecked Sendable {
        // @unchecked: the plans are written once, in init, and only read after.
        let rules: RiskRules
        let compiled: [Compiled]
        let lists: RiskLists
        /// The rules that look at each event the file names, in file order; `other` for
        /// any other event (the rules without `on=`). `reserve` and `issue` apart, read
        /// without a dictionary lookup.
        private let byEvent: [String: UnsafeMutableBufferPointer<Step>]
        let other: UnsafeMutableBufferPointer<Step>
        let reserve: UnsafeMutableBufferPointer<Step>
        let issue: UnsafeMutableBufferPointer<Step>

        init(rules: RiskRules, compiled: [Compiled], lists: RiskLists) {
            self.rules = rules
            self.compiled = compiled
            self.lists = lists
            var names: Set<String> = ["reserve", "issue"]
            for rule in rules.rules { names.formUnion(rule.events ?? []) }
            func plan(_ chosen: [Compiled]) -> UnsafeMutableBufferPointer<Step> {
                let buffer = UnsafeMutableBufferPointer<Step>.allocate(capacity: max(1, chosen.count))
                for (index, rule) in chosen.enumerated() {
                    var packed: UInt64 = 0
                    for (position, part) in rule.parts.prefix(16).enumerated() { packed |= UInt64(part.index) << (4 * position) }
                    var step = Step(
                        kind: .attribute, parts: packed, partCount: min(16, rule.parts.count), seed: rule.seed, a: 0, b: 0, limit: 0,
                        windowMs: 0, counted: 0, shadow: rule.shadow, listed: false, sketch: rule.sketch.map { Unmanaged.passUnretained($0) },
                        rule: Unmanaged.passUnretained(rule))
                    switch rule.kind {
                    case .rate(let perSecond, let burst): (step.kind, step.a, step.b) = (.rate, perSecond, burst)
                    case .quota(let maximum, let windowMs): (step.kind, step.a, step.windowMs) = (.quota, Double(maximum), windowMs)
                    case .distinct(let counted, let maximum, let windowMs):
                        (step.kind, step.counted, step.limit, step.windowMs) = (.distinct, counted.index, maximum, windowMs)
                    case .holds(let maximum): (step.kind, step.limit) = (.holds, maximum)
                    case .attribute: step.kind = .attribute
                    case .list(let name): (step.kind, step.listed) = (.list, lists.hasEntries(name, kinds: rule.parts))
                    }
                    (buffer.baseAddress! + index).initialize(to: step)
                }
                return UnsafeMutableBufferPointer(rebasing: buffer[0..<chosen.count])
            }
            var byEvent: [String: UnsafeMutableBufferPointer<Step>] = [:]
            for name in names { byEvent[name] = plan(compiled.filter { $0.rule.applies(to: name) }) }
            self.byEvent = byEvent
            other = plan(compiled.filter { $0.rule.events == nil })
            reserve = byEvent["reserve"]!
            issue = byEvent["issue"]!
        }

        deinit {
            for plan in byEvent.values { plan.baseAddress?.deallocate() }
            other.baseAddress?.deallocate()
        }

        /// The plan of `event`.
        @inline(__always)
        func steps(_ event: String) -> UnsafeMutableBufferPointer<Step> {
            if event == "issue" { return issue }
            if event == "reserve" { return reserve }
            return byEvent[event] ?? other
        }
    }

    /// Each signal hashed once per request; a rule's key mixes the ones it names.
    struct SignalHashes {
        // Fields, not an array: no allocation per request.
        var user, ip, net, device, sku, payment, event: UInt64?

        init(_ signals: RiskSignals, address: IPAddress?) {
            user = signals.user.map { SignalHashes.hash(1, $0) }
            ip = address.map { SignalHashes.hash(2, $0.bytes) }
            net = address.map { SignalHashes.hash(3, $0.network) }
            device = signals.device.map { SignalHashes.hash(4, $0) }
            sku = signals.sku.map { SignalHashes.hash(5, $0) }
            payment = signals.paymentAccount.map { SignalHashes.hash(6, $0) }
            event = SignalHashes.hash(7, signals.event)
        }

        /// A per-process secret mixed into every signal's hash, so that nobody outside can
        /// choose values that collide in the counters.
        static let secret: UInt64 = UInt64.random(in: 1...UInt64.max)

        /// 64 bits of `bytes` under `tag`: eight bytes at a time through `mix` (a keyed
        /// multiply-xorshift hash; signals are short, SipHash per signal cost more than the
        /// counters they pick).
        static func hash<Bytes: Collection>(_ tag: UInt64, _ bytes: Bytes) -> UInt64 where Bytes.Element == UInt8 {
            var state = mix(secret ^ (tag &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(bytes.count))
            var word: UInt64 = 0
            var filled: UInt64 = 0
            for byte in bytes {
                word |= UInt64(byte) << (filled &* 8)
                filled &+= 1
                if filled == 8 {
                    state = mix(state ^ word)
                    word = 0
                    filled = 0
                }
            }
            return mix(state ^ word ^ (filled << 56))
        }

        static func hash(_ tag: UInt64, _ text: String) -> UInt64 {
            var text = text
            return text.withUTF8 { hash(tag, $0) }
        }

        @inline(__always)
        func value(_ part: SignalPart) -> UInt64? {
            switch part {
            case .user: user
            case .ip: ip
            case .net: net
            case .device: device
            case .sku: sku
            case .payment: payment
            case .event: event
            case .global: 0x5851_F42D_4C95_7F2D
            }
        }

        @inline(__always)
        func value(index: Int) -> UInt64? {
            switch index {
            case 0: user
            case 1: ip
            case 2: net
            case 3: device
            case 4: sku
            case 5: payment
            case 6: event
            default: 0x5851_F42D_4C95_7F2D
            }
        }

        /// The key of a step's parts under its seed (the same as `key(_:_:)` of its parts).
        @inline(__always)
        func key(_ step: Step) -> UInt64? {
            var key = step.seed
            var packed = step.parts
            for _ in 0..<step.partCount {
                guard let value = value(index: Int(packed & 0xF)) else { return nil }
                key = SignalHashes.mix(key ^ value)
                packed >>= 4
            }
            return key
        }

        /// The key of `parts` under `seed`, nil when a part is missing.
        func key(_ seed: UInt64, _ parts: [SignalPart]) -> UInt64? {
            var key = seed
            for part in parts {
                guard let value = value(part) else { return nil }
                key = SignalHashes.mix(key ^ value)
            }
            return key
        }

        /// splitmix64's finalizer: every input bit reaches every output bit.
        static func mix(_ value: UInt64) -> UInt64 {
            var z = value &+ 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    public let limits: RiskLimits
    private let buckets: BucketTable
    private let distinct: DistinctTable
    private let holds: HoldTracker
    /// The rules in force, read on every request without a lock: the address of a retained
    /// `Loaded`. A replaced one is released a grace period later (`retired`), long after
    /// any request that read it has finished with it.
    private let current = Atomic<Int>(0)
    private let retired = Locked<[(Loaded, Int64)]>([])
    /// Serialises the writers (`load`, `setStoredEntries`).
    private let loading = Locked(())
    /// How long a replaced rule set stays alive: a request reads it for microseconds.
    static let retireGraceMs: Int64 = 30_000
    /// The database's list entries (the file's are in `loaded.rules.entries`).
    private let storedEntries = Locked<[ListEntry]>([])
    private let challengeKey: [UInt8]
    private let decisions = RiskVerdict.Decision.allCases.map { _ in Tally() }

    /// A gate with no rules (everything allowed) until `load`.
    public init(limits: RiskLimits = RiskLimits(), rules: RiskRules = .none, challengeKey: [UInt8]? = nil) {
        self.limits = limits
        buckets = BucketTable(entries: limits.rateEntries)
        distinct = DistinctTable(entries: limits.distinctEntries)
        holds = HoldTracker(capacity: limits.holdEntries)
        self.challengeKey = challengeKey ?? SecureRandom.bytes(count: 32)
        current.store(Int(bitPattern: Unmanaged.passRetained(Loaded(rules: .none, compiled: [], lists: RiskLists())).toOpaque()),
                      ordering: .releasing)
        load(rules)
    }

    deinit {
        if let pointer = UnsafeRawPointer(bitPattern: current.load(ordering: .acquiring)) {
            Unmanaged<Loaded>.fromOpaque(pointer).release()
        }
    }

    /// Runs `body` with the rules in force (no lock, no reference counting).
    @inline(__always)
    private func withLoaded<R>(_ body: (Loaded) -> R) -> R {
        let pointer = UnsafeRawPointer(bitPattern: current.load(ordering: .acquiring))!
        return Unmanaged<Loaded>.fromOpaque(pointer)._withUnsafeGuaranteedRef(body)
    }

    /// The rules in force, retained (for callers off the hot path).
    private var loaded: Loaded { withLoaded { $0 } }

    /// Puts `next` in force; the one it replaces is released after the grace period.
    private func install(_ next: Loaded) {
        let now = Self.monotonicMs()
        let previous = current.exchange(Int(bitPattern: Unmanaged.passRetained(next).toOpaque()), ordering: .acquiringAndReleasing)
        let old = Unmanaged<Loaded>.fromOpaque(UnsafeRawPointer(bitPattern: previous)!).takeRetainedValue()
        retired.withLock { list in
            list.removeAll { now - $0.1 > Self.retireGraceMs }
            list.append((old, now))
        }
    }

    private static func monotonicMs() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1_000 + Int64(spec.tv_nsec) / 1_000_000
    }

    /// Puts `rules` in force. Quota sketches of rules that keep their name and window carry
    /// over; other counters are keyed by rule name and kind, so they carry over too.
    public func load(_ rules: RiskRules) {
        loading.withLock { _ in
            let entries = storedEntries.withLock { $0 }
            let current = loaded
            var sketches: [String: QuotaSketch] = [:]
            for old in current.compiled { if let sketch = old.sketch { sketches[old.rule.name] = sketch } }
            let compiled = rules.rules.map { rule -> Compiled in
                var sketch: QuotaSketch? = nil
                if case .quota(_, let windowMs) = rule.kind {
                    if let old = sketches[rule.name], old.windowMs == windowMs { sketch = old } else {
                        sketch = QuotaSketch(width: limits.sketchWidth, windowMs: windowMs)
                    }
                }
                return Compiled(rule: rule, sketch: sketch)
            }
            install(Loaded(rules: rules, compiled: compiled, lists: RiskLists(entries + rules.entries)))
        }
    }

    /// Replaces the database's list entries (after `kamictl risk block|unblock`, at start).
    public func setStoredEntries(_ entries: [ListEntry]) {
        loading.withLock { _ in
            storedEntries.withLock { $0 = entries }
            let current = loaded
            install(Loaded(rules: current.rules, compiled: current.compiled, lists: RiskLists(entries + current.rules.entries)))
        }
    }

    /// The rules in force.
    public var rules: RiskRules { loaded.rules }

    /// Whether any rule is loaded (no retain: read on the hot path).
    public var hasRules: Bool { withLoaded { !$0.compiled.isEmpty } }

    /// Runs `signals` through the rules and updates the counters (a `dryRun` updates none).
    public func evaluate(_ signals: RiskSignals, nowMs: Int64, dryRun: Bool = false) -> RiskEvaluation {
        withLoaded { evaluate(signals, nowMs: nowMs, dryRun: dryRun, current: $0) }
    }

    private func evaluate(_ signals: RiskSignals, nowMs: Int64, dryRun: Bool, current: Loaded) -> RiskEvaluation {
        let address = signals.address
        let hashes = SignalHashes(signals, address: address)
        var score = 0
        var fired: [Compiled] = []
        var shadow: [String] = []
        var forced: RiskVerdict.Decision? = nil
        var allowListed = false
        var quotaRules = 0
        let steps = current.steps(signals.event)
        // Every counter a request touches is a random cache line in tables of megabytes:
        // asked for all at once, their misses overlap instead of following one another.
        for index in steps.indices {
            let step = steps[index]
            switch step.kind {
            case .rate: if let key = hashes.key(step) { buckets.prefetch(key) }
            case .distinct: if let key = hashes.key(step) { distinct.prefetch(key) }
            case .quota: if let key = hashes.key(step), let sketch = step.sketch { sketch._withUnsafeGuaranteedRef { $0.prefetch(key) } }
            default: break
            }
        }
        for index in steps.indices {
            let step = steps[index]
            var hit = false
            switch step.kind {
            case .rate:
                guard let key = hashes.key(step) else { continue }
                hit = dryRun ? false : !buckets.take(key, perSecond: step.a, burst: step.b, nowMs: nowMs)
            case .quota:
                guard let key = hashes.key(step), let sketch = step.sketch else { continue }
                hit = sketch._withUnsafeGuaranteedRef { $0.estimate(key, nowMs: nowMs) } >= step.a
                quotaRules += 1
            case .distinct:
                guard let key = hashes.key(step), let member = hashes.value(index: step.counted) else { continue }
                if !dryRun {
                    hit = distinct.add(key, member: UInt32(truncatingIfNeeded: member >> 16), windowMs: step.windowMs, nowMs: nowMs)
                        > step.limit
                }
            case .holds:
                guard let key = hashes.key(step) else { continue }
                hit = holds.count(key, nowMs: nowMs) >= step.limit
            case .attribute:
                hit = step.rule._withUnsafeGuaranteedRef { compiled in
                    guard case .attribute(let condition) = compiled.kind else { return false }
                    return condition.holds(signals) ?? false
                }
            case .list:
                guard step.listed else { continue }
                hit = step.rule._withUnsafeGuaranteedRef { compiled in
                    guard case .list(let name) = compiled.kind else { return false }
                    return current.lists.matches(name, signals, address: address, kinds: compiled.parts)
                }
            }
            guard hit else { continue }
            let compiled = step.rule.takeUnretainedValue()
            if compiled.shadow {
                shadow.append(compiled.rule.name)
                if !dryRun { compiled.shadowFired.add(1, ordering: .relaxed) }
                continue
            }
            if !dryRun { compiled.fired.add(1, ordering: .relaxed) }
            fired.append(compiled)
            score += compiled.score
            if compiled.action == .allow {
                allowListed = true
            } else if let action = compiled.action {
                forced = max(forced ?? .allow, action)
            }
        }
        var decision = current.rules.thresholds.decision(for: score)
        if let forced { decision = max(decision, forced) }
        // An allow action (an allow list) wins over scores, never over a forced deny.
        if allowListed && forced != .deny { decision = .allow }
        var passed = false
        if decision == .challenge, let token = signals.challengeToken, checkChallenge(token, signals, nowMs: nowMs) {
            decision = .allow
            passed = true
        }
        if !dryRun && quotaRules > 0 && (decision == .allow || decision == .review) {
            // Counted only when the order goes on: refused attempts do not use up a quota.
            for index in steps.indices where steps[index].kind == .quota {
                guard let sketch = steps[index].sketch, let key = hashes.key(steps[index]) else { continue }
                sketch._withUnsafeGuaranteedRef { $0.add(key, nowMs: nowMs) }
            }
        }
        if !dryRun { decisions[RiskVerdict.Decision.allCases.firstIndex(of: decision)!].add() }
        let deciding = fired.max { a, b in
            (a.rule.action.map { $0 == .deny ? 3 : 1 } ?? 0, a.rule.score) < (b.rule.action.map { $0 == .deny ? 3 : 1 } ?? 0, b.rule.score)
        }
        let reason = decision == .allow ? (passed ? "challenge_passed" : allowListed ? "allow_listed" : "ok") : deciding?.rule.reason ?? "score"
        var verdict = RiskVerdict(decision: decision, reason: reason, rules: fired.map(\.rule.name), score: score)
        if decision == .challenge { verdict.challenge = mintChallenge(signals, nowMs: nowMs, ttlMs: current.rules.challengeTTLMs) }
        return RiskEvaluation(verdict: verdict, shadowRules: shadow, challengePassed: passed)
    }

    // MARK: holds

    /// Keys of the holds rules for `signals`, to remember with a new hold.
    /// Returns whether it was counted now (false: already counted, no holds rule applies,
    /// or the table is full).
    @discardableResult
    public func holdPlaced(order: String, _ signals: RiskSignals, deadlineMs: Int64) -> Bool {
        let hashes = SignalHashes(signals, address: signals.address)
        var keys: [UInt64] = []
        for compiled in loaded.compiled {
            guard case .holds = compiled.kind, let key = hashes.key(compiled.seed, compiled.parts) else { continue }
            keys.append(key)
        }
        return holds.add(order: order, keys: keys, deadlineMs: deadlineMs)
    }

    /// The hold was paid or released: it no longer counts.
    public func holdEnded(order: String) { holds.remove(order: order) }

    /// The hold now ends at `deadlineMs` (a review approved unpaid: an ordinary hold).
    public func holdRescheduled(order: String, deadlineMs: Int64) { holds.reschedule(order: order, deadlineMs: deadlineMs) }

    // MARK: challenges

    /// A challenge token for `signals` with the rules' TTL.
    public func challenge(for signals: RiskSignals, nowMs: Int64) -> String {
        mintChallenge(signals, nowMs: nowMs, ttlMs: loaded.rules.challengeTTLMs)
    }

    /// `v1.<expiry ms>.<mac>`: bound to the user, IP and device it was minted for.
    func mintChallenge(_ signals: RiskSignals, nowMs: Int64, ttlMs: Int64) -> String {
        let expiry = nowMs + ttlMs
        return "v1.\(expiry).\(challengeMAC(signals, expiry: expiry))"
    }

    private func challengeMAC(_ signals: RiskSignals, expiry: Int64) -> String {
        let text = "\(signals.user ?? "")\u{1}\(signals.ip ?? "")\u{1}\(signals.device ?? "")\u{1}\(expiry)"
        return Hex.encode(HMACSHA256.mac(key: challengeKey, data: Array(text.utf8)).prefix(16))
    }

    func checkChallenge(_ token: String, _ signals: RiskSignals, nowMs: Int64) -> Bool {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v1", let expiry = Int64(parts[1]), expiry > nowMs else { return false }
        return constantTimeEquals(Array(parts[2].utf8), Array(challengeMAC(signals, expiry: expiry).utf8))
    }

    // MARK: figures

    /// Per rule: name, kind, whether shadow, times fired (enforced), times fired in shadow.
    public struct RuleFigures: Sendable {
        public let name: String
        public let kind: String
        public let shadow: Bool
        public let fired: Int
        public let shadowFired: Int
    }

    public var ruleFigures: [RuleFigures] {
        loaded.compiled.map {
            RuleFigures(name: $0.rule.name, kind: $0.rule.kind.name, shadow: $0.rule.shadow,
                        fired: $0.fired.load(ordering: .relaxed), shadowFired: $0.shadowFired.load(ordering: .relaxed))
        }
    }

    /// Decisions made so far, by decision.
    public var decisionCounts: [(RiskVerdict.Decision, Int)] {
        RiskVerdict.Decision.allCases.enumerated().map { ($1, decisions[$0].value) }
    }

    /// Table fill and evictions, for metrics and `stats`.
    public var tableFigures: (rateEvictions: Int, distinctEvictions: Int, holdsTracked: Int, holdsDropped: Int) {
        (buckets.evictions, distinct.evictions, holds.tracked, holds.dropped)
    }

    /// The bound on the counters' memory with the rules in force.
    public var memoryBytes: Int {
        limits.memoryBytes(quotaRules: loaded.compiled.filter { $0.sketch != nil }.count)
    }
}

/// One counter that many threads add to, striped: each thread adds to a slot on its own cache
/// line (one shared counter bumped by both event loops on every request moved its line
/// between the cores each time); reading adds the slots up.
final class Tally: @unchecked Sendable {
    // @unchecked: the slots are only touched with atomic operations.
    private static let slots = 16
    private static let stride = 8  // UInt64s: 64 bytes
    private let counters: UnsafeMutablePointer<UInt64>

    init() {
        counters = UnsafeMutableRawPointer.allocate(byteCount: Tally.slots * Tally.stride * 8, alignment: 64)
            .bindMemory(to: UInt64.self, capacity: Tally.slots * Tally.stride)
        counters.initialize(repeating: 0, count: Tally.slots * Tally.stride)
    }

    deinit { counters.deallocate() }

    func add() {
        // The thread's id, hashed (thread descriptors sit megabytes apart), picks its slot.
        let slot = Int(truncatingIfNeeded: (UInt64(UInt(pthread_self())) &* 0x9E37_79B9_7F4A_7C15) >> 60) & (Tally.slots - 1)
        kami_counter_add(counters + slot * Tally.stride, 1)
    }

    var value: Int {
        (0..<Tally.slots).reduce(0) { $0 + Int(truncatingIfNeeded: kami_counter_load(counters + $1 * Tally.stride)) }
    }
}
