/// The master keys a process can open secrets with: the current key, which seals
/// everything new, and older keys kept so that secrets sealed before a rotation can
/// still be opened (each sealed row carries the id of the key that sealed it).
///
/// Rotation: make a new key current, keep the old one in `previous` until every row
/// has been re-sealed under the new key, then drop it.
public struct Keyring: Sendable, CustomStringConvertible, CustomReflectable {
    /// The key that seals new secrets.
    public let current: MasterKey
    /// Older keys, consulted only to open secrets sealed before a rotation.
    public let previous: [MasterKey]
    /// `current` first, then `previous`. A linear scan: a keyring holds a handful of
    /// keys, and comparing a few integers beats hashing one.
    private let all: [MasterKey]

    /// A keyring sealing with `current` and also opening with `previous`.
    ///
    /// Listing a key twice (say, the current key also among the old ones) is harmless.
    /// Two different keys with the same 32-bit id is a precondition failure: it would
    /// make rows ambiguous, and for random keys it does not happen in practice.
    public init(current: MasterKey, previous: [MasterKey] = []) {
        var all = [current]
        for key in previous {
            if let existing = all.first(where: { $0.id == key.id }) {
                precondition(constantTimeEquals(existing.bytes, key.bytes),
                             "two different master keys share the id \(Hex.encode(key.id))")
                continue
            }
            all.append(key)
        }
        self.current = current
        self.previous = Array(all.dropFirst())
        self.all = all
    }

    /// The key with id `id`, or nil if this keyring does not hold it.
    public func key(id: UInt32) -> MasterKey? {
        all.first { $0.id == id }
    }

    /// Ids of all keys, the current key first.
    public var ids: [UInt32] { all.map(\.id) }

    /// Key ids only, e.g. `<Keyring current=1a2b3c4d previous=[5e6f7a8b]>`.
    public var description: String {
        let previousIDs = previous.map { Hex.encode($0.id) }.joined(separator: ",")
        return "<Keyring current=\(Hex.encode(current.id)) previous=[\(previousIDs)]>"
    }

    /// No children: `description` already names every key id, and listing the keys adds nothing.
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
