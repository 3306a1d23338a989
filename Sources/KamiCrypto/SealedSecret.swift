/// A secret sealed with AES-256-GCM: what the store keeps instead of the plaintext.
///
/// The three fields map to three columns. `keyID` says which master key sealed it,
/// so that it can still be opened after a rotation.
public struct SealedSecret: Sendable, Equatable, CustomStringConvertible {
    /// Id of the `MasterKey` that sealed this secret.
    public let keyID: UInt32
    /// The 12-byte GCM nonce, random per seal.
    public let nonce: [UInt8]
    /// The ciphertext (as long as the plaintext) followed by the 16-byte GCM tag.
    public let ciphertextAndTag: [UInt8]

    /// Reassembles a sealed secret, e.g. from a database row. The lengths are checked by `Sealer.open`.
    public init(keyID: UInt32, nonce: [UInt8], ciphertextAndTag: [UInt8]) {
        self.keyID = keyID
        self.nonce = nonce
        self.ciphertextAndTag = ciphertextAndTag
    }

    /// Key id and length only. The ciphertext is not secret, but it is noise in a log,
    /// and its exact bytes would let logs be matched against the database.
    public var description: String {
        "<SealedSecret key=\(Hex.encode(keyID)) bytes=\(ciphertextAndTag.count)>"
    }
}
