/// The life of one code: `available → reserved → issued`, `issued → voided`,
/// `reserved → available` (release or expiry), and `available → voided` (an operator voids
/// a leaked batch before it sells). Nothing else. `voided` is terminal.
public enum CodeState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case available = 0
    case reserved = 1
    case issued = 2
    case voided = 3

    /// Whether the move from `self` to `next` is one the brief allows.
    public func canMove(to next: CodeState) -> Bool {
        switch (self, next) {
        case (.available, .reserved), (.reserved, .issued), (.reserved, .available),
            (.issued, .voided), (.available, .voided):
            return true
        default:
            return false
        }
    }

    /// The state after moving to `next`, or an `invalidState` error naming both states.
    public func moving(to next: CodeState, code: CodeID) throws(KamiError) -> CodeState {
        guard canMove(to: next) else {
            throw KamiError(.invalidState, "code \(code) cannot go from \(self) to \(next)")
        }
        return next
    }

    public var description: String {
        switch self {
        case .available: "available"
        case .reserved: "reserved"
        case .issued: "issued"
        case .voided: "voided"
        }
    }
}
