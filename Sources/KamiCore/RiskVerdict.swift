/// What the risk gate decided about one request, with its explanation. It travels in the
/// reply of a `risk` decision, inside the error of a denied or challenged order, and (as
/// text) into the audit chain.
public struct RiskVerdict: Sendable, Hashable, CustomStringConvertible {
    /// The four outcomes, from most to least permissive. The raw values are the wire names.
    public enum Decision: String, Sendable, Hashable, CaseIterable, Comparable {
        case allow
        case challenge
        case review
        case deny

        private var rank: Int {
            switch self {
            case .allow: 0
            case .challenge: 1
            case .review: 2
            case .deny: 3
            }
        }

        public static func < (a: Decision, b: Decision) -> Bool { a.rank < b.rank }
    }

    /// The outcome.
    public var decision: Decision
    /// A stable reason code (`rate_limited`, `blocked`, `velocity`, …; `ok` when allowed).
    public var reason: String
    /// The names of the rules that fired and decided (not shadow rules).
    public var rules: [String]
    /// The summed score of the rules that fired.
    public var score: Int
    /// For `challenge`: the token the storefront sends back (`challenge_token`) once the
    /// buyer passed its captcha. Nil otherwise.
    public var challenge: String?

    /// Makes a verdict.
    public init(decision: Decision, reason: String, rules: [String] = [], score: Int = 0, challenge: String? = nil) {
        self.decision = decision
        self.reason = reason
        self.rules = rules
        self.score = score
        self.challenge = challenge
    }

    /// An allow with nothing fired.
    public static let allowed = RiskVerdict(decision: .allow, reason: "ok")

    /// `decision=deny reason=velocity score=120 rules=a,b` (never the challenge token).
    public var description: String {
        "decision=\(decision.rawValue) reason=\(reason) score=\(score)"
            + (rules.isEmpty ? "" : " rules=\(rules.joined(separator: ","))")
    }
}
