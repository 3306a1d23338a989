/// Why a sealed secret could not be opened. No case carries plaintext or key bytes.
public enum SealError: Error, Equatable, CustomStringConvertible {
    /// The secret was sealed with a key this keyring does not hold (dropped too early after a rotation?).
    case unknownKeyID(UInt32)
    /// The GCM tag did not verify: the ciphertext, nonce or tag was altered, the wrong
    /// associated data was given (the secret was moved to another code or SKU row),
    /// or the key with this id is not the one that sealed it.
    case authenticationFailed(keyID: UInt32)
    /// The fields have impossible lengths: a truncated or corrupted row.
    case malformed(nonceBytes: Int, ciphertextAndTagBytes: Int)

    /// A stable, machine-readable code for logs and metrics.
    public var code: String {
        switch self {
        case .unknownKeyID: "seal_unknown_key"
        case .authenticationFailed: "seal_auth_failed"
        case .malformed: "seal_malformed"
        }
    }

    /// What went wrong and what to check.
    public var description: String {
        switch self {
        case .unknownKeyID(let id):
            "sealed secret uses master key \(Hex.encode(id)), which is not in the keyring: "
                + "add the old key back to the keyring's previous keys"
        case .authenticationFailed(let id):
            "sealed secret under master key \(Hex.encode(id)) failed authentication: "
                + "the row was altered or belongs to another code"
        case .malformed(let nonceBytes, let ciphertextAndTagBytes):
            "sealed secret is malformed: nonce is \(nonceBytes) bytes (expected \(Sealer.nonceBytes)), "
                + "ciphertext and tag are \(ciphertextAndTagBytes) bytes (expected at least \(Sealer.tagBytes))"
        }
    }
}
