/// The plaintext of a card key (the redeem code or the card password).
///
/// It never prints: `description`, `debugDescription` and reflection all show
/// `<redacted>`, so a secret that slips into string interpolation, a log line or an
/// error message does not leak. Read the bytes only through `bytes` or `reveal()`.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// The UTF-8 bytes of the secret.
    public let bytes: [UInt8]

    /// Wraps the given UTF-8 bytes.
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// Wraps the UTF-8 bytes of `string`.
    public init(_ string: String) { self.bytes = Array(string.utf8) }

    /// The secret as a string, for the one place that must show it: the reply to its owner.
    public func reveal() -> String { String(decoding: bytes, as: UTF8.self) }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
