/// The life of one order, declared as a table: `starts` (the states an order is created in),
/// `moves` (every legal move), and `codeStates` (what each state implies about the order's
/// codes). The engine moves orders only through `Order.move(to:atMs:)`, which traps on a
/// move not in the table, and `verify` checks codes against `codeStates`: adding a state is
/// one case here, its rows in the tables, and its tests.
///
/// `reserved → committed`, `reserved → released | expired`, `committed → refunded`. An
/// expired order can still be committed (a late payment) when stock remains: that takes
/// fresh codes, so `expired → committed` is allowed too. `released` and `refunded` are
/// terminal.
///
/// An order fulfilled by an upstream supplier is paid but waits for its codes in
/// `pendingUpstream` (created so by `issue`, or from a hold by `commit`), then becomes
/// `committed` when a supplier delivers, or `failed` when every candidate refused (the
/// dead-letter list): a failed order is retried (`failed → pendingUpstream`) or refunded.
public enum OrderState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case reserved = 0
    case committed = 1
    case released = 2
    case expired = 3
    case refunded = 4
    case pendingUpstream = 5
    case failed = 6
    /// Held for an operator: the risk gate said review. It holds its codes (reserved) until
    /// approved (paid: committed; unpaid: an ordinary hold), denied or out of time (released).
    /// A paid order of a manual-delivery SKU waits here too, holding no codes, until an
    /// operator delivers (committed) or denies it (`reserved → review` when a hold of such a
    /// SKU is paid, `expired → review` when it is paid late).
    case review = 7

    /// The states an order can be created in: a hold (`reserve`), or paid at once (`issue`).
    public static let starts: Set<OrderState> = [.reserved, .committed, .pendingUpstream, .review]

    /// Every legal move, as (from, to).
    public static let moves: Set<Move> = [
        Move(.reserved, .committed), Move(.reserved, .released), Move(.reserved, .expired),
        Move(.committed, .refunded), Move(.expired, .committed),
        Move(.reserved, .pendingUpstream), Move(.expired, .pendingUpstream),
        Move(.pendingUpstream, .committed), Move(.pendingUpstream, .failed),
        Move(.failed, .pendingUpstream), Move(.failed, .refunded),
        Move(.review, .committed), Move(.review, .reserved), Move(.review, .released), Move(.review, .pendingUpstream),
        Move(.reserved, .review), Move(.expired, .review),
    ]

    /// One move of an order between two states.
    public struct Move: Sendable, Hashable {
        public let from: OrderState
        public let to: OrderState
        /// Makes a move (legal or not; `OrderState.moves` says which).
        public init(_ from: OrderState, _ to: OrderState) {
            self.from = from
            self.to = to
        }
    }

    /// The states the order's codes may be in, or nil when the order gave its codes back
    /// (released, expired: the code list is kept for the record only). A committed order's
    /// code may be voided one by one (a leak) and stays on the order. An order pending
    /// upstream has no codes yet, but counts against the user's limit as if issued; a failed
    /// one holds none.
    public var codeStates: Set<CodeState>? {
        switch self {
        case .reserved, .review: [.reserved]
        case .committed, .pendingUpstream: [.issued, .used, .voided]
        case .refunded: [.voided]
        case .failed: []
        case .released, .expired: nil
        }
    }

    /// Whether the order is a hold that lapses at `expiresAtMs` (reserved, or held for review).
    public var isHold: Bool { self == .reserved || self == .review }

    /// Whether an order in this state holds what it claimed of a campaign's budget and its
    /// coupon: it is live, paid or about to be (released, expired and refunded ones gave
    /// them back).
    public var holdsPromotion: Bool {
        switch self {
        case .reserved, .review, .committed, .pendingUpstream, .failed: true
        case .released, .expired, .refunded: false
        }
    }

    /// Whether the order is paid and waits for a supplier (no codes yet).
    public var awaitsUpstream: Bool { self == .pendingUpstream }

    /// `moves` as bits (bit `from * 8 + to`): a shift and a mask per check, no hashing.
    private static let moveBits: UInt64 = moves.reduce(0) { $0 | 1 << (UInt64($1.from.rawValue) * 8 + UInt64($1.to.rawValue)) }

    /// Whether the move from `self` to `next` is one the brief allows.
    public func canMove(to next: OrderState) -> Bool {
        OrderState.moveBits >> (UInt64(rawValue) * 8 + UInt64(next.rawValue)) & 1 == 1
    }

    /// The state after moving to `next`, or an `invalidState` error naming both states.
    public func moving(to next: OrderState) throws(KamiError) -> OrderState {
        guard canMove(to: next) else {
            throw KamiError(.invalidState, "order cannot go from \(self) to \(next)")
        }
        return next
    }

    /// Whether the order holds codes (and counts against per-user limits).
    public var holdsCodes: Bool { OrderState.holdsCodesBits >> rawValue & 1 == 1 }

    /// `holdsCodes` of each state as a bit (it is asked for every order at boot).
    private static let holdsCodesBits: UInt32 = allCases.reduce(0) { bits, state in
        precondition(state.rawValue < 32, "holdsCodesBits holds 32 states")
        return state.codeStates?.contains(where: \.isHeld) == true ? bits | 1 << UInt32(state.rawValue) : bits
    }

    public var description: String {
        switch self {
        case .reserved: "reserved"
        case .committed: "committed"
        case .released: "released"
        case .expired: "expired"
        case .refunded: "refunded"
        case .pendingUpstream: "pending_upstream"
        case .failed: "failed"
        case .review: "review"
        }
    }

    /// Parses the lowercase name used in `description`.
    public init?(name: String) {
        guard let match = OrderState.allCases.first(where: { $0.description == name }) else { return nil }
        self = match
    }
}
