/// The stable error codes of Kami. They appear on the wire and in `kamictl` exit paths, so a
/// case is never renamed once released.
///
/// A client may talk to a newer server that has codes this version does not know: those
/// decode to `.other(name)` with the name as sent, never to a failure to read the reply.
/// The server itself never produces `.other`.
public enum ErrorCode: Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case badRequest
    case unauthorized
    case notFound
    case soldOut
    case limitReached
    case conflict
    case expired
    case tooLarge
    case busy
    case unavailable
    /// The operation is not allowed in the current state (commit of a released order...).
    case invalidState
    /// Stored data failed an integrity check (a tampered sealed secret, a broken audit chain).
    case integrity
    /// The risk gate refused the request (`verdict` says which rules).
    case denied
    /// The risk gate wants proof of a person first: show a captcha, then retry with the
    /// verdict's challenge token.
    case challenge
    /// A code this version does not know, by the name the peer sent.
    case other(String)

    /// Every code this version knows (not `.other`).
    public static let allCases: [ErrorCode] = [
        .badRequest, .unauthorized, .notFound, .soldOut, .limitReached, .conflict, .expired, .tooLarge, .busy,
        .unavailable, .invalidState, .integrity, .denied, .challenge,
    ]

    /// The code's name on the wire (`SOLD_OUT`).
    public var rawValue: String {
        switch self {
        case .badRequest: "BAD_REQUEST"
        case .unauthorized: "UNAUTHORIZED"
        case .notFound: "NOT_FOUND"
        case .soldOut: "SOLD_OUT"
        case .limitReached: "LIMIT_REACHED"
        case .conflict: "CONFLICT"
        case .expired: "EXPIRED"
        case .tooLarge: "TOO_LARGE"
        case .busy: "BUSY"
        case .unavailable: "UNAVAILABLE"
        case .invalidState: "INVALID_STATE"
        case .integrity: "INTEGRITY"
        case .denied: "DENIED"
        case .challenge: "CHALLENGE_REQUIRED"
        case .other(let name): name
        }
    }

    /// The code with this wire name; a name this version does not know is `.other(name)`.
    public init(rawValue name: String) {
        self = ErrorCode.allCases.first { $0.rawValue == name } ?? .other(name)
    }

    /// Whether this version knows the code.
    public var isKnown: Bool {
        if case .other = self { return false }
        return true
    }

    public var description: String { rawValue }
}

/// An operating error: bad input, a state that forbids the operation, a full disk.
///
/// The message is for a person and says what to do; it never contains a secret (the
/// constructors take no secret, and callers must not interpolate one).
public struct KamiError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The stable code.
    public let code: ErrorCode
    /// What went wrong, for a person.
    public let message: String
    /// For DENIED and CHALLENGE_REQUIRED: the risk gate's verdict (reason, rules, token).
    public var verdict: RiskVerdict?
    /// Internal, never on the wire: an order tried without the risk gate (its SKU looked sold
    /// out) could take a code after all, and must go through the gate first.
    public var needsScreening = false

    /// The answer to an unscreened order that found stock.
    public static var screeningNeeded: KamiError {
        var error = KamiError(.busy, "stock arrived: the order goes through the risk gate")
        error.needsScreening = true
        return error
    }

    /// Makes an error with a stable code and a human message.
    public init(_ code: ErrorCode, _ message: String, verdict: RiskVerdict? = nil) {
        self.code = code
        self.message = message
        self.verdict = verdict
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
