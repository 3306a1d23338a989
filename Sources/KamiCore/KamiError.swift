/// The stable error codes of Kami. They appear on the wire (issue 3) and in `kamictl`
/// exit paths, so a case is never renamed once released.
public enum ErrorCode: String, Sendable, CaseIterable {
    case badRequest = "BAD_REQUEST"
    case unauthorized = "UNAUTHORIZED"
    case notFound = "NOT_FOUND"
    case soldOut = "SOLD_OUT"
    case limitReached = "LIMIT_REACHED"
    case conflict = "CONFLICT"
    case expired = "EXPIRED"
    case tooLarge = "TOO_LARGE"
    case busy = "BUSY"
    case unavailable = "UNAVAILABLE"
    /// The operation is not allowed in the current state (commit of a released order...).
    case invalidState = "INVALID_STATE"
    /// Stored data failed an integrity check (a tampered sealed secret, a broken audit chain).
    case integrity = "INTEGRITY"
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

    /// Makes an error with a stable code and a human message.
    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
