/// The key that authenticates the audit chain: each entry's MAC and the anchored chain head.
/// Derived from a master key (never the master key itself), so that whoever holds only the
/// database cannot recompute the chain after an edit, nor forge the anchor.
///
/// Prints as `<AuditKey>`; its bytes never leave this type except into HMAC.
public struct AuditKey: Sendable, CustomStringConvertible, CustomReflectable {
    private let bytes: [UInt8]

    /// The audit key of `master`: HMAC-SHA256(master, "kami audit chain v1").
    public init(master: MasterKey) {
        bytes = HMACSHA256.mac(key: master.bytes, data: Array("kami audit chain v1".utf8))
    }

    private init(raw: [UInt8]) { bytes = raw }

    /// A fixed key for tools and tests that open a store with no master key. Its MACs prove
    /// nothing (anyone can compute them); kamid always uses `init(master:)`.
    public static let unkeyed = AuditKey(raw: [UInt8](repeating: 0, count: HMACSHA256.macBytes))

    /// HMAC-SHA256 of `data` under this key.
    public func mac(_ data: some Collection<UInt8>) -> [UInt8] { HMACSHA256.mac(key: bytes, data: data) }

    /// Whether `tag` is the MAC of `data`, compared in constant time.
    public func verify(_ tag: [UInt8], of data: some Collection<UInt8>) -> Bool {
        constantTimeEquals(tag, mac(data))
    }

    public var description: String { "<AuditKey>" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
