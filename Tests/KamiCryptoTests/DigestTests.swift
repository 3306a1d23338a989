import KamiCrypto
import XCTest

final class DigestTests: XCTestCase {
    // FIPS 180-2 appendix B examples.
    func testSHA256KnownVectors() {
        XCTAssertEqual(SHA256.hash(Array("abc".utf8)),
                       hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
        XCTAssertEqual(SHA256.hash([UInt8]()),
                       hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
        XCTAssertEqual(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       hex("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"))
    }

    func testSHA256AcceptsNonContiguousCollections() {
        // A lazy map has no contiguous storage, which exercises the copying path.
        let lazyBytes = "abc".utf8.lazy.map { $0 }
        XCTAssertEqual(SHA256.hash(lazyBytes), SHA256.hash(Array("abc".utf8)))
        XCTAssertEqual(SHA256.hash(Array("xabcx".utf8)[1..<4]), SHA256.hash(Array("abc".utf8)))
    }

    func testIncrementalHasherMatchesOneShotAtEverySplit() {
        let message = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        let expected = hex("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        for split in 0...message.count {
            var hasher = SHA256Hasher()
            hasher.update(message[..<split])
            hasher.update(message[split...])
            let digest = hasher.finalize()
            XCTAssertEqual(digest, expected, "split at \(split)")
        }
    }

    func testIncrementalHasherOverManyUpdates() {
        // FIPS 180-2: one million repetitions of "a".
        var hasher = SHA256Hasher()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { hasher.update(chunk) }
        let digest = hasher.finalize()
        XCTAssertEqual(digest, hex("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"))
    }

    // RFC 4231 test cases 1, 2 and 6 (a key longer than the block size).
    func testHMACSHA256RFC4231() {
        XCTAssertEqual(HMACSHA256.mac(key: [UInt8](repeating: 0x0b, count: 20), data: Array("Hi There".utf8)),
                       hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"))
        XCTAssertEqual(HMACSHA256.mac(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8)),
                       hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
        XCTAssertEqual(HMACSHA256.mac(key: [UInt8](repeating: 0xaa, count: 131),
                                      data: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)),
                       hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"))
    }

    func testHMACWithEmptyKeyAndDataIsTheStandardValue() {
        // HMAC-SHA256("", ""): an empty key must be an all-zero key, not "reuse the previous key".
        _ = HMACSHA256.mac(key: Array("Jefe".utf8), data: [UInt8]())
        XCTAssertEqual(HMACSHA256.mac(key: [], data: [UInt8]()),
                       hex("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"))
    }
}
