public import KamiCore

/// A signal a rule keys on or counts.
public enum SignalPart: String, Sendable, Hashable, CaseIterable {
    case user
    case ip
    /// The buyer's network: the /24 of an IPv4 address, the /64 of an IPv6 one.
    case net
    case device
    case sku
    /// The payment account (`payment_account` on the wire).
    case payment
    /// The event name: with it, `register` and `issue` count apart.
    case event
    /// One counter for everything (`key=global`).
    case global

    /// Its place in `allCases` (a per-request table index).
    var index: Int {
        switch self {
        case .user: 0
        case .ip: 1
        case .net: 2
        case .device: 3
        case .sku: 4
        case .payment: 5
        case .event: 6
        case .global: 7
        }
    }

    /// Aliases accepted in rules files.
    static func named(_ name: String) -> SignalPart? {
        switch name {
        case "ip24", "ip64", "network": .net
        case "payment_account": .payment
        default: SignalPart(rawValue: name)
        }
    }
}

/// A numeric or boolean attribute a condition compares.
public enum Attribute: String, Sendable, Hashable, CaseIterable {
    case accountAgeDays = "account_age_days"
    case amountCents = "amount_cents"
    case units
    case phoneVerified = "phone_verified"
    /// 1 when the request carries a challenge token, 0 when not (never missing).
    case challenged
}

/// `account_age_days < 1`, `phone_verified = false`.
public struct Condition: Sendable, Hashable, CustomStringConvertible {
    public enum Comparison: String, Sendable, Hashable, CaseIterable {
        case less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">=", equal = "=", notEqual = "!="
    }
    public let attribute: Attribute
    public let comparison: Comparison
    public let value: Int64

    /// Whether the condition holds; nil when the signal is missing (the rule skips).
    func holds(_ signals: RiskSignals) -> Bool? {
        let actual: Int64?
        switch attribute {
        case .accountAgeDays: actual = signals.accountAgeDays
        case .amountCents: actual = signals.amountCents
        case .units: actual = signals.units.map(Int64.init)
        case .phoneVerified: actual = signals.phoneVerified.map { $0 ? 1 : 0 }
        case .challenged: actual = signals.challengeToken == nil ? 0 : 1
        }
        guard let actual else { return nil }
        switch comparison {
        case .less: return actual < value
        case .lessOrEqual: return actual <= value
        case .greater: return actual > value
        case .greaterOrEqual: return actual >= value
        case .equal: return actual == value
        case .notEqual: return actual != value
        }
    }

    public var description: String {
        let shown = attribute == .phoneVerified || attribute == .challenged ? (value == 0 ? "false" : "true") : "\(value)"
        return "\(attribute.rawValue)\(comparison.rawValue)\(shown)"
    }
}

/// What a rule measures.
public enum RuleKind: Sendable, Hashable {
    /// A token bucket per key: `rate` events a second on average, `burst` at once. Every
    /// evaluation takes a token (denied attempts too: a bot that hammers stays limited).
    case rate(perSecond: Double, burst: Double)
    /// At most `max` allowed events per key in a sliding window (a count-min sketch: it can
    /// only over-count, by little, never under-count).
    case quota(max: Int, windowMs: Int64)
    /// At most `max` distinct values of `count` per key in a window (users per device, per
    /// IP, per payment account; devices per user).
    case distinct(count: SignalPart, max: Int, windowMs: Int64)
    /// At most `max` unpaid holds per key at once (the hoarder).
    case holds(max: Int)
    /// The request's attributes match.
    case attribute(Condition)
    /// The request's user, IP (or a CIDR holding it), device or payment account is on the
    /// named list (`block` or `allow`).
    case list(name: String)

    /// The reason code a firing rule of this kind gives, unless the rule names its own.
    var reason: String {
        switch self {
        case .rate: "rate_limited"
        case .quota: "quota_exceeded"
        case .distinct: "velocity"
        case .holds: "too_many_holds"
        case .attribute: "suspicious_attributes"
        case .list(let name): name == "allow" ? "allow_listed" : "\(name)_listed"
        }
    }

    var name: String {
        switch self {
        case .rate: "rate"
        case .quota: "quota"
        case .distinct: "distinct"
        case .holds: "holds"
        case .attribute: "attribute"
        case .list: "list"
        }
    }
}

/// One rule of a rules file.
public struct RiskRule: Sendable, Hashable {
    /// Unique in its file; shown in replies, logs, metrics.
    public let name: String
    public let kind: RuleKind
    /// The signals that make up the counter's key (empty for attribute and list rules:
    /// for lists, the signals checked, all when empty).
    public let key: [SignalPart]
    /// The events it applies to; nil for every event.
    public let events: Set<String>?
    /// Added to the request's score when it fires.
    public let score: Int
    /// A decision it forces when it fires (`action=deny`, `action=allow`), beside the score.
    public let action: RiskVerdict.Decision?
    /// The stable reason code it reports.
    public let reason: String
    /// Counts and logs what it would decide; decides nothing.
    public let shadow: Bool
    /// Where it was defined (`risk.rules:12`).
    public let origin: String

    /// Whether it looks at `event`.
    func applies(to event: String) -> Bool { events?.contains(event) ?? true }
}

/// Score thresholds: a total at or above `deny` denies, and so on down.
public struct Thresholds: Sendable, Hashable {
    public var challenge: Int
    public var review: Int
    public var deny: Int

    public static let standard = Thresholds(challenge: 40, review: 70, deny: 100)

    func decision(for score: Int) -> RiskVerdict.Decision {
        if score >= deny { return .deny }
        if score >= review { return .review }
        if score >= challenge { return .challenge }
        return .allow
    }
}

/// A list entry: which signal, and its value (a CIDR for IPs).
public struct ListEntry: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case user, ip, device, payment
    }
    /// `block` or `allow`.
    public let list: String
    public let kind: Kind
    public let value: String

    /// Checks the value: an IP entry must be an address or CIDR, every value 1...256
    /// printable bytes.
    public init(list: String, kind: Kind, value: String) throws(KamiError) {
        guard list == "block" || list == "allow" else {
            throw KamiError(.badRequest, "list must be block or allow, got \(list.debugDescription)")
        }
        guard (1...256).contains(value.utf8.count), value.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F }) else {
            throw KamiError(.badRequest, "a \(kind.rawValue) list value must be 1 to 256 bytes without spaces or control characters")
        }
        if kind == .ip && CIDR(value) == nil {
            throw KamiError(.badRequest, "\(value.debugDescription) is not an IP address or CIDR (203.0.113.0/24, 2001:db8::/32)")
        }
        self.list = list
        self.kind = kind
        self.value = value
    }

    public var description: String { "\(list) \(kind.rawValue) \(value)" }
}

/// A parsed rules file: thresholds, rules in file order, and the lists it names inline.
public struct RiskRules: Sendable, Hashable {
    public var thresholds: Thresholds
    public var rules: [RiskRule]
    /// Entries from `list` lines (and the files they name), beside the database's.
    public var entries: [ListEntry]
    /// How long a challenge token stays good, ms (`challenge_ttl`).
    public var challengeTTLMs: Int64

    public init(thresholds: Thresholds = .standard, rules: [RiskRule] = [], entries: [ListEntry] = [],
                challengeTTLMs: Int64 = 600_000) {
        self.thresholds = thresholds
        self.rules = rules
        self.entries = entries
        self.challengeTTLMs = challengeTTLMs
    }

    /// No rules: every request is allowed (lists from the database still apply only
    /// through rules, so nothing fires).
    public static let none = RiskRules()
}
