public import KamiCore

extension ErrorCode {
    /// The number of this code in the status byte of a binary reply (0 means success, so
    /// codes start at 1). The numbers are part of the protocol: never reused, never
    /// renumbered. A new `ErrorCode` case makes this switch fail to compile until it gets
    /// the next free number.
    public var binaryStatus: UInt8 {
        switch self {
        case .badRequest: 1
        case .unauthorized: 2
        case .notFound: 3
        case .soldOut: 4
        case .limitReached: 5
        case .conflict: 6
        case .expired: 7
        case .tooLarge: 8
        case .busy: 9
        case .unavailable: 10
        case .invalidState: 11
        case .integrity: 12
        case .denied: 13
        case .challenge: 14
        // The server never sends a code it does not know; a relay that passes one on says so.
        case .other: 255
        }
    }

    /// The code with the given binary status number, or nil for 0 (success). A number this
    /// version does not know (a newer server's) is `.other("STATUS_<n>")`: binary replies
    /// carry the number, not the name, and the message says the rest.
    public init?(binaryStatus: UInt8) {
        switch binaryStatus {
        case 1: self = .badRequest
        case 2: self = .unauthorized
        case 3: self = .notFound
        case 4: self = .soldOut
        case 5: self = .limitReached
        case 6: self = .conflict
        case 7: self = .expired
        case 8: self = .tooLarge
        case 9: self = .busy
        case 10: self = .unavailable
        case 11: self = .invalidState
        case 12: self = .integrity
        case 13: self = .denied
        case 14: self = .challenge
        case 0: return nil
        default: self = .other("STATUS_\(binaryStatus)")
        }
    }
}
