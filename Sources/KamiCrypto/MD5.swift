private import COpenSSL

/// MD5 (RFC 1321), only for the request signatures that supplier APIs define with it. Never
/// for anything Kami itself relies on for integrity.
public enum MD5 {
    /// The MD5 digest of `bytes` (16 bytes).
    public static func hash(_ bytes: some Collection<UInt8>) -> [UInt8] {
        withBytes(bytes) { pointer, count in
            [UInt8](unsafeUninitializedCapacity: 16) { out, initialized in
                var length: UInt32 = 0
                let ok = EVP_Digest(pointer, count, out.baseAddress, &length, EVP_md5(), nil)
                precondition(ok == 1 && length == 16, "EVP_Digest(MD5) failed: \(ok), length \(length)")
                initialized = 16
            }
        }
    }
}

