private import COpenSSL

/// Whether `a` and `b` hold the same bytes, in time that depends only on their length.
///
/// Use it for every comparison of a MAC, token or fingerprint with an expected value:
/// `==` stops at the first differing byte, and the time that takes tells an attacker
/// how many leading bytes of a guess were right. Arrays of different lengths are
/// unequal without looking at their content (lengths of MACs and tokens are public).
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    if a.isEmpty { return true }
    return a.withUnsafeBytes { x in
        b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, x.count) == 0 }
    }
}
