private import COpenSSL

/// SHA-256 (FIPS 180-4) over libcrypto.
public enum SHA256 {
    /// Length of a SHA-256 digest in bytes.
    public static let digestBytes = 32

    /// The SHA-256 digest of `bytes` (32 bytes).
    public static func hash(_ bytes: some Collection<UInt8>) -> [UInt8] {
        withBytes(bytes) { pointer, count in
            [UInt8](unsafeUninitializedCapacity: digestBytes) { out, initialized in
                var length: UInt32 = 0
                let ok = EVP_Digest(pointer, count, out.baseAddress, &length, Algorithms.shared.sha256, nil)
                precondition(ok == 1 && length == digestBytes, "EVP_Digest(SHA256) failed: \(ok), length \(length)")
                initialized = digestBytes
            }
        }
    }
}

/// An incremental SHA-256 computation, for input that arrives in pieces (the audit
/// hash chain, streamed files).
///
/// It is `~Copyable` because it owns an `EVP_MD_CTX`: a copy would share one
/// OpenSSL context between two values, and finalizing one would corrupt the other.
/// `finalize()` consumes the hasher, so it cannot be updated after it has produced
/// its digest.
public struct SHA256Hasher: ~Copyable {
    private let context: OpaquePointer

    /// Starts a new digest.
    public init() {
        guard let context = EVP_MD_CTX_new() else { preconditionFailure("EVP_MD_CTX_new failed: out of memory") }
        let ok = EVP_DigestInit_ex2(context, Algorithms.shared.sha256, nil)
        precondition(ok == 1, "EVP_DigestInit_ex2(SHA256) failed: \(ok)")
        self.context = context
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Feeds `bytes` into the digest.
    public mutating func update(_ bytes: some Collection<UInt8>) {
        withBytes(bytes) { pointer, count in
            let ok = EVP_DigestUpdate(context, pointer, count)
            precondition(ok == 1, "EVP_DigestUpdate(SHA256) failed: \(ok)")
        }
    }

    /// The digest of everything fed so far (32 bytes). Ends the hasher's life.
    public consuming func finalize() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: SHA256.digestBytes) { out, initialized in
            var length: UInt32 = 0
            let ok = EVP_DigestFinal_ex(context, out.baseAddress, &length)
            precondition(ok == 1 && length == SHA256.digestBytes, "EVP_DigestFinal_ex failed: \(ok), length \(length)")
            initialized = SHA256.digestBytes
        }
    }
}
