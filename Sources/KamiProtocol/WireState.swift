public import KamiCore

/// A state as it travels on the wire: one this version knows, or a newer server's state by
/// the name it was sent with. An old client reading a reply from a newer server shows the
/// state's name instead of failing to read the reply (docs/protocol.md, "Compatibility").
///
/// JSON carries the name; binary carries the state's number (numbers are never reused), and
/// a number this version does not know becomes `.other("#<n>")`.
public enum WireState<Known: WireStateName>: Sendable, Hashable, CustomStringConvertible {
    /// A state this version knows.
    case known(Known)
    /// A state this version does not know, by its name (or `#<number>` from a binary frame).
    case other(String)

    /// The state with this wire name; `.other(name)` when this version does not know it.
    public init(name: String) {
        self = Known.allCases.first { $0.description == name }.map { .known($0) } ?? .other(name)
    }

    /// The state with this binary number; `.other("#<n>")` when this version does not know it.
    public init(number: UInt8) {
        self = Known(rawValue: number).map { .known($0) } ?? .other("#\(number)")
    }

    /// The name on the wire.
    public var name: String {
        switch self {
        case .known(let state): state.description
        case .other(let name): name
        }
    }

    /// The known state, or nil for `.other`.
    public var known: Known? {
        if case .known(let state) = self { return state }
        return nil
    }

    public var description: String { name }
}

/// A state enum that can travel as a `WireState`: a number for binary frames, a name for JSON.
public protocol WireStateName: Sendable, Hashable, CaseIterable, CustomStringConvertible, RawRepresentable
where RawValue == UInt8 {}

extension OrderState: WireStateName {}
extension CodeState: WireStateName {}

/// An order's state on the wire.
public typealias WireOrderState = WireState<OrderState>
/// A code's state on the wire.
public typealias WireCodeState = WireState<CodeState>

// Shorthands, so that `reply.state == .committed` reads as it does for the known states.
extension WireState where Known == OrderState {
    public static var reserved: WireState { .known(.reserved) }
    public static var committed: WireState { .known(.committed) }
    public static var released: WireState { .known(.released) }
    public static var expired: WireState { .known(.expired) }
    public static var refunded: WireState { .known(.refunded) }
}

extension WireState where Known == CodeState {
    public static var available: WireState { .known(.available) }
    public static var reserved: WireState { .known(.reserved) }
    public static var issued: WireState { .known(.issued) }
    public static var voided: WireState { .known(.voided) }
    public static var used: WireState { .known(.used) }
}

/// What `hello` answers: the protocol version the server speaks and the features it has,
/// so a client can ask before it uses one (`features.contains("entitlements_pages")`).
public struct WireHello: Sendable, Hashable {
    /// The protocol version (`protocol`): raised only for a change an old client cannot
    /// ignore; added fields and states do not raise it.
    public var protocolVersion: Int64
    /// The server's name and version (`server`), for logs.
    public var server: String
    /// The features this server has (`features`), by name.
    public var features: [String]

    /// Makes a hello reply.
    public init(protocolVersion: Int64, server: String, features: [String]) {
        self.protocolVersion = protocolVersion
        self.server = server
        self.features = features
    }

    /// The version this code speaks.
    public static let currentProtocolVersion: Int64 = 1

    /// The features of this version, in the order they were added. A name is never reused.
    /// - `binary`: binary frames (the first byte 0xB1) besides JSON lines.
    /// - `bundles`: SKUs made of other SKUs, all or nothing.
    /// - `late_commit`: a commit after its hold expired delivers while stock remains.
    /// - `entitlements_pages`: `entitlements` takes `limit` and `cursor` and answers `next_cursor`.
    /// - `forward_compatible`: replies may carry fields, states and error codes a client
    ///   does not know; they are ignored or decoded as "other".
    /// - `upstream`: SKUs fulfilled by suppliers: orders in `pending_upstream` and `failed`,
    ///   `wait_ms` on issue and commit, and the `wait` operation.
    /// - `activate`: the `activate` operation, the code state `used`, and entitlement lines
    ///   with `status`, `sku_name`, `usage_guide` and times.
    public static let currentFeatures = ["binary", "bundles", "late_commit", "entitlements_pages", "forward_compatible",
                                         "upstream", "risk", "activate"]

    /// This version's hello reply.
    public static let current = WireHello(
        protocolVersion: currentProtocolVersion, server: "kamid", features: currentFeatures)
}
