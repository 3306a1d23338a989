/// The life of one order: `reserved → committed`, `reserved → released | expired`,
/// `committed → refunded`. An expired order can still be committed (a late payment) when
/// stock remains: that takes fresh codes, so `expired → committed` is allowed too.
/// `released` and `refunded` are terminal.
public enum OrderState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case reserved = 0
    case committed = 1
    case released = 2
    case expired = 3
    case refunded = 4

    /// Whether the move from `self` to `next` is one the brief allows.
    public func canMove(to next: OrderState) -> Bool {
        switch (self, next) {
        case (.reserved, .committed), (.reserved, .released), (.reserved, .expired),
            (.committed, .refunded), (.expired, .committed):
            return true
        default:
            return false
        }
    }

    /// The state after moving to `next`, or an `invalidState` error naming both states.
    public func moving(to next: OrderState) throws(KamiError) -> OrderState {
        guard canMove(to: next) else {
            throw KamiError(.invalidState, "order cannot go from \(self) to \(next)")
        }
        return next
    }

    /// Whether the order holds codes (and counts against per-user limits).
    public var holdsCodes: Bool { self == .reserved || self == .committed }

    public var description: String {
        switch self {
        case .reserved: "reserved"
        case .committed: "committed"
        case .released: "released"
        case .expired: "expired"
        case .refunded: "refunded"
        }
    }

    /// Parses the lowercase name used in `description`.
    public init?(name: String) {
        guard let match = OrderState.allCases.first(where: { $0.description == name }) else { return nil }
        self = match
    }
}
