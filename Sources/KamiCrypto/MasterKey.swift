/// A 256-bit master key: the AES-256-GCM key that seals card-key secrets at rest.
///
/// The key bytes never print: `description`, `debugDescription` and reflection
/// (`dump`, `Mirror`) show only `<MasterKey id=xxxxxxxx>`. The id is public and
/// stored next to every sealed secret, so that after a rotation the right key can
/// be picked to open it.
public struct MasterKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Length of a master key in bytes (AES-256).
    public static let keyBytes = 32

    /// The key material. Internal: only this module's sealing and MAC code reads it.
    let bytes: [UInt8]

    /// Identifies the key without revealing it: the first 4 bytes (big-endian) of
    /// SHA-256("kami-key-id" || key). 32 bits are plenty to tell apart the handful
    /// of keys a keyring holds, and too few to help anyone guess the key.
    public let id: UInt32

    /// Wraps 32 key bytes. Passing another length is a programmer error.
    public init(bytes: [UInt8]) {
        precondition(bytes.count == Self.keyBytes, "a master key is \(Self.keyBytes) bytes, got \(bytes.count)")
        self.bytes = bytes
        self.id = Self.keyID(of: bytes)
    }

    /// A new key from the CSPRNG. Use `generate(path:)` to make one that outlives the process.
    public static func random() -> MasterKey {
        MasterKey(bytes: SecureRandom.bytes(count: keyBytes))
    }

    private static func keyID(of key: [UInt8]) -> UInt32 {
        // The domain prefix keeps the id from being a plain hash of the key, which
        // some other system might also publish.
        let digest = SHA256.hash(Array("kami-key-id".utf8) + key)
        return digest.prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// `<MasterKey id=xxxxxxxx>`: the id in hex, never the key.
    public var description: String { "<MasterKey id=\(Hex.encode(id))>" }
    /// Same as `description`, so that `debugPrint` and `String(reflecting:)` do not leak either.
    public var debugDescription: String { description }
    /// No children, so that `dump` and debuggers show nothing of the key bytes.
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
