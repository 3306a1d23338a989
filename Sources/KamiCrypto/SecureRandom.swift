private import COpenSSL

/// Cryptographically secure random bytes from OpenSSL's DRBG (seeded from the kernel).
public enum SecureRandom {
    /// `count` random bytes.
    ///
    /// A failing CSPRNG is fatal rather than a thrown error: every caller would use
    /// the bytes as a nonce, key or token, and there is no safe way to continue
    /// without them (a repeated GCM nonce leaks plaintext and the authentication key).
    public static func bytes(count: Int) -> [UInt8] {
        precondition(count >= 0 && count <= Int(Int32.max), "SecureRandom.bytes(count: \(count)) out of range")
        return [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
            fill(out)
            initialized = count
        }
    }

    /// Fills `buffer` with random bytes. Fatal on failure, like `bytes(count:)`.
    static func fill(_ buffer: UnsafeMutableBufferPointer<UInt8>) {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return }
        let ok = RAND_bytes(base, Int32(buffer.count))
        precondition(ok == 1, "RAND_bytes(\(buffer.count)) failed: the CSPRNG is unusable (error \(ERR_get_error()))")
    }

    /// A random token of `bytes` random bytes, as lowercase hex (twice as many characters).
    /// 16 bytes (128 bits) is the usual choice for an unguessable identifier.
    public static func token(bytes: Int) -> String {
        Hex.encode(Self.bytes(count: bytes))
    }
}
