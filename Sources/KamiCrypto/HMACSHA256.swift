private import COpenSSL

/// HMAC-SHA256 (RFC 2104, FIPS 198-1) over libcrypto.
public enum HMACSHA256 {
    /// Length of an HMAC-SHA256 tag in bytes.
    public static let macBytes = 32

    /// The HMAC-SHA256 of `data` under `key` (32 bytes). Any key length is accepted,
    /// as the RFC allows; keys longer than 64 bytes are hashed first by HMAC itself.
    public static func mac(key: [UInt8], data: some Collection<UInt8>) -> [UInt8] {
        precondition(key.count <= Int(Int32.max), "HMAC key of \(key.count) bytes exceeds libcrypto's Int32 limit")
        return withBytes(key) { keyPointer, keyCount in
            withBytes(data) { dataPointer, dataCount in
                [UInt8](unsafeUninitializedCapacity: macBytes) { out, initialized in
                    var length: UInt32 = 0
                    let result = HMAC(Algorithms.shared.sha256, keyPointer, Int32(keyCount),
                                      dataPointer, dataCount, out.baseAddress, &length)
                    precondition(result != nil && length == macBytes, "HMAC(SHA256) failed, length \(length)")
                    initialized = macBytes
                }
            }
        }
    }
}
