private import COpenSSL

/// The OpenSSL algorithm objects Kami uses, fetched once per process.
///
/// OpenSSL 3 resolves `EVP_sha256()` / `EVP_aes_256_gcm()` through the provider
/// store at every init ("implicit fetch"), which takes a lock and costs more than
/// sealing a short card key. An explicitly fetched object is immutable and
/// reference counted, and OpenSSL documents it as safe to share between threads;
/// that is what makes the `@unchecked Sendable` sound. The objects are never freed:
/// they live as long as the process, like the provider that owns them.
struct Algorithms: @unchecked Sendable {
    let sha256: OpaquePointer
    let aes256GCM: OpaquePointer

    /// Fetched lazily and exactly once (Swift globals are initialized under `swift_once`).
    static let shared = Algorithms()

    private init() {
        guard let md = EVP_MD_fetch(nil, "SHA256", nil) else {
            preconditionFailure("EVP_MD_fetch(SHA256) failed: libcrypto has no default provider")
        }
        guard let cipher = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil) else {
            preconditionFailure("EVP_CIPHER_fetch(AES-256-GCM) failed: libcrypto has no default provider")
        }
        sha256 = md
        aes256GCM = cipher
    }
}
