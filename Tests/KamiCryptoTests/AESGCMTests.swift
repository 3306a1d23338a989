@testable import KamiCrypto
import XCTest

/// Known-answer tests for the internal AES-256-GCM layer (McGrew & Viega, "The
/// Galois/Counter Mode of Operation", test cases 13, 14 and 16), including the
/// per-thread context cache: results must not depend on what the thread sealed before.
final class AESGCMTests: XCTestCase {
    private struct Vector {
        let key, nonce, aad, plaintext, sealed: [UInt8]
    }

    private let vectors = [
        Vector(key: [UInt8](repeating: 0, count: 32), nonce: [UInt8](repeating: 0, count: 12), aad: [],
               plaintext: [], sealed: hex("530f8afbc74536b9a963b4f1c4cb738b")),
        Vector(key: [UInt8](repeating: 0, count: 32), nonce: [UInt8](repeating: 0, count: 12), aad: [],
               plaintext: [UInt8](repeating: 0, count: 16),
               sealed: hex("cea7403d4d606b6e074ec5d3baf39d18 d0d1c8a799996bf0265b98b5d48ab919")),
        Vector(key: hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"),
               nonce: hex("cafebabefacedbaddecaf888"),
               aad: hex("feedfacedeadbeeffeedfacedeadbeefabaddad2"),
               plaintext: hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                              + "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"),
               sealed: hex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                           + "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
                           + "76fc6ece0f4e1768cddf8853bb2d551b")),
    ]

    func testKnownAnswersInEveryOrder() {
        // Run the vectors forwards, backwards and repeated, so that a cached context
        // that kept a stale key, nonce, AAD or tag would produce a wrong answer.
        for vector in vectors + vectors.reversed() + vectors + [vectors[2], vectors[2]] {
            let sealed = AESGCM.seal(key: vector.key, nonce: vector.nonce, aad: vector.aad, plaintext: vector.plaintext)
            XCTAssertEqual(sealed, vector.sealed)
            let opened = AESGCM.open(key: vector.key, nonce: vector.nonce, aad: vector.aad, ciphertextAndTag: sealed)
            XCTAssertEqual(opened, vector.plaintext)
        }
    }

    func testAForgeryBetweenGoodOpensIsRejectedAndDoesNotPoisonTheContext() {
        let vector = vectors[2]
        var forged = vector.sealed
        forged[forged.count - 1] ^= 0x01
        func open(_ input: [UInt8]) -> [UInt8]? {
            AESGCM.open(key: vector.key, nonce: vector.nonce, aad: vector.aad, ciphertextAndTag: input)
        }
        XCTAssertNotNil(open(vector.sealed))
        XCTAssertNil(open(forged))
        XCTAssertEqual(open(vector.sealed), vector.plaintext)
        XCTAssertNil(open(forged))
    }

    func testNoncesFromTheThreadBufferAreFreshAcrossRefills() {
        var seen = Set<[UInt8]>()
        let key = [UInt8](repeating: 7, count: 32)
        // More than several refills of the per-thread buffer.
        for _ in 0..<500 {
            let (nonce, _) = AESGCM.seal(key: key, aad: [], plaintext: [1])
            XCTAssertEqual(nonce.count, 12)
            XCTAssertTrue(seen.insert(nonce).inserted, "nonce repeated")
        }
    }
}
