/// The life of one code. Every move any part of Kami makes is one of `moves`, and nothing
/// else: `CodeChange` (the only way to ask the store for a new state) refuses any other
/// pair, and the store's update applies only when the code is still in the state the move
/// starts from. Adding a state is one case here, its rows in `moves`, and its tests.
///
/// - `available → reserved` (a hold), `reserved → issued` (commit), `reserved → available`
///   (release or expiry), `available → issued` (issue, or a late commit taking fresh codes),
/// - `issued → voided` (a refund or a leaked code), `available → voided` (an operator voids
///   a leaked batch before it sells), `reserved → voided` (a held code that fails
///   authentication at commit is quarantined). `voided` is terminal.
/// - `issued → used` (the buyer or the brand activated it: `activate`), `used → voided` (the
///   order refunded after all). Nothing goes back to `issued`: an activation is never undone.
public enum CodeState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case available = 0
    case reserved = 1
    case issued = 2
    case voided = 3
    case used = 4

    /// Every legal move, as (from, to).
    public static let moves: Set<Move> = [  // at most 8 states: `moveBits` packs them in 64 bits
        Move(.available, .reserved), Move(.reserved, .issued), Move(.reserved, .available),
        Move(.available, .issued), Move(.issued, .voided), Move(.available, .voided), Move(.reserved, .voided),
        Move(.issued, .used), Move(.used, .voided),
    ]

    /// One move of a code between two states.
    public struct Move: Sendable, Hashable {
        public let from: CodeState
        public let to: CodeState
        /// Makes a move (legal or not; `CodeState.moves` says which).
        public init(_ from: CodeState, _ to: CodeState) {
            self.from = from
            self.to = to
        }
    }

    /// `moves` as bits (bit `from * 8 + to`), so the check on every code change is a shift
    /// and a mask rather than a hash lookup.
    private static let moveBits: UInt64 = moves.reduce(0) { $0 | 1 << (UInt64($1.from.rawValue) * 8 + UInt64($1.to.rawValue)) }

    /// Whether the move from `self` to `next` is one the brief allows.
    public func canMove(to next: CodeState) -> Bool {
        CodeState.moveBits >> (UInt64(rawValue) * 8 + UInt64(next.rawValue)) & 1 == 1
    }

    /// The state after moving to `next`, or an `invalidState` error naming both states.
    public func moving(to next: CodeState, code: CodeID) throws(KamiError) -> CodeState {
        guard canMove(to: next) else {
            throw KamiError(.invalidState, "code \(code) cannot go from \(self) to \(next)")
        }
        return next
    }

    /// Whether a code in this state must be held by exactly one order (`verify` checks it).
    public var isHeld: Bool { self == .reserved || self == .issued || self == .used }

    /// One zero per state, indexed by `rawValue`: the shape of every per-state count.
    public static var zeroCounts: [Int] { [Int](repeating: 0, count: allCases.count) }

    public var description: String {
        switch self {
        case .available: "available"
        case .reserved: "reserved"
        case .issued: "issued"
        case .voided: "voided"
        case .used: "used"
        }
    }
}
