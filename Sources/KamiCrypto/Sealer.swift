public import KamiCore

/// Seals card-key secrets with AES-256-GCM under the keyring's current key, opens
/// them with whichever key sealed them, and computes keyed fingerprints for
/// duplicate detection.
///
/// A `Sealer` is immutable after init and shares no mutable state between threads:
/// each thread seals and opens with its own cached OpenSSL cipher context and its
/// own buffer of CSPRNG output for nonces (see `ThreadCipherState.swift`), so one
/// instance can be used from any number of threads at once, without a lock.
///
/// Nonces are 96 random bits per seal. NIST SP 800-38D bounds random-nonce GCM to
/// 2^32 seals per key to keep the chance of a nonce repeat below 2^-32; Kami seals
/// once per imported code, so rotate the key long before four billion imports.
public struct Sealer: Sendable, CustomStringConvertible, CustomReflectable {
    /// Length of the GCM nonce: 96 bits, the size GCM is designed for.
    public static let nonceBytes = AESGCM.nonceBytes
    /// Length of the GCM tag appended to the ciphertext: the full 128 bits.
    public static let tagBytes = AESGCM.tagBytes
    /// Largest plaintext `seal` accepts. A card key is tens of bytes; this ceiling only
    /// keeps lengths well inside libcrypto's `Int32`. Import must enforce its own,
    /// smaller limit and report it as an error; reaching this one is a programmer error.
    public static let secretBytesMax = 64 * 1024
    /// Length of a fingerprint: 128 bits make an accidental collision between two
    /// different codes negligible even across billions of imports.
    public static let fingerprintBytes = 16

    /// The keys this sealer seals and opens with.
    public let keyring: Keyring
    /// HMAC key for fingerprints, derived once at init.
    private let fingerprintMACKey: [UInt8]
    /// The key of the audit chain, derived from the same pinned key as fingerprints, so that
    /// a key rotation does not change it (the chain spans every key ever used).
    public let auditKey: AuditKey
    /// Mints and checks activation tokens (derived from the same pinned key).
    public let activationTokens: ActivationTokens

    /// A sealer for `keyring`.
    ///
    /// `fingerprintKey` is the master key fingerprints are derived from; nil means the
    /// keyring's current key. Pin it to the first key ever used, so that fingerprints
    /// stay comparable across rotations: a new code is a duplicate of an old one only
    /// if both fingerprints were made with the same key.
    public init(keyring: Keyring, fingerprintKey: MasterKey? = nil) {
        self.keyring = keyring
        let base = fingerprintKey ?? keyring.current
        // A derived key rather than the master key itself, so that the encryption key
        // is never also used as a MAC key.
        fingerprintMACKey = HMACSHA256.mac(key: base.bytes, data: Array("kami fingerprint v1".utf8))
        auditKey = AuditKey(master: base)
        activationTokens = ActivationTokens(master: base)
    }

    /// A sealer with a single key (no rotation history).
    public init(key: MasterKey) {
        self.init(keyring: Keyring(current: key))
    }

    /// Domain and version prefix of the associated data; changing the layout means a new prefix.
    private static let associatedDataPrefix = Array("kami.code.v1".utf8)

    /// The associated data that binds a sealed secret to its row: "kami.code.v1",
    /// then the code id (8 bytes) and SKU id (4 bytes), big-endian.
    ///
    /// Fixed widths make the encoding unambiguous. Opening with other ids fails, so a
    /// sealed secret copied into another code's row (by SQL injection or a bad
    /// migration) cannot be revealed as that code.
    public static func associatedData(codeID: Int64, skuID: Int32) -> [UInt8] {
        var data = associatedDataPrefix
        data.reserveCapacity(associatedDataPrefix.count + 12)
        let code = UInt64(bitPattern: codeID)
        for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: code >> shift)) }
        let sku = UInt32(bitPattern: skuID)
        for shift in stride(from: 24, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: sku >> shift)) }
        return data
    }

    /// Seals `secret` under the current key, bound to `aad` (see `associatedData`).
    /// Every call draws a new random nonce, so sealing the same secret twice gives
    /// different results.
    public func seal(_ secret: Secret, aad: [UInt8]) -> SealedSecret {
        precondition(secret.bytes.count <= Self.secretBytesMax,
                     "secret of \(secret.bytes.count) bytes exceeds Sealer.secretBytesMax (\(Self.secretBytesMax))")
        precondition(aad.count <= Int(Int32.max), "associated data of \(aad.count) bytes is too long")
        let key = keyring.current
        let (nonce, sealed) = AESGCM.seal(key: key.bytes, aad: aad, plaintext: secret.bytes)
        return SealedSecret(keyID: key.id, nonce: nonce, ciphertextAndTag: sealed)
    }

    /// Opens `sealed` with the key that sealed it, checking that it was sealed with
    /// the same `aad`.
    public func open(_ sealed: SealedSecret, aad: [UInt8]) throws(SealError) -> Secret {
        let bodyBytes = sealed.ciphertextAndTag.count
        guard sealed.nonce.count == Self.nonceBytes, bodyBytes >= Self.tagBytes,
              bodyBytes - Self.tagBytes <= Self.secretBytesMax
        else {
            throw .malformed(nonceBytes: sealed.nonce.count, ciphertextAndTagBytes: bodyBytes)
        }
        precondition(aad.count <= Int(Int32.max), "associated data of \(aad.count) bytes is too long")
        guard let key = keyring.key(id: sealed.keyID) else { throw .unknownKeyID(sealed.keyID) }
        guard let plaintext = AESGCM.open(key: key.bytes, nonce: sealed.nonce, aad: aad,
                                          ciphertextAndTag: sealed.ciphertextAndTag)
        else {
            throw .authenticationFailed(keyID: sealed.keyID)
        }
        return Secret(bytes: plaintext)
    }

    /// A 16-byte keyed fingerprint of `secret`: HMAC-SHA256 under the fingerprint key,
    /// truncated. Equal secrets give equal fingerprints, so import can find duplicates
    /// by an index on this column; without the key, a fingerprint does not let anyone
    /// test guesses of a code, unlike a plain hash.
    public func fingerprint(_ secret: Secret) -> [UInt8] {
        Array(HMACSHA256.mac(key: fingerprintMACKey, data: secret.bytes).prefix(Self.fingerprintBytes))
    }

    /// Key ids only: `<Sealer <Keyring ...>>`.
    public var description: String { "<Sealer \(keyring)>" }
    /// No children: the derived fingerprint key is a plain byte array that `dump` would list.
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
