import KamiCrypto
import XCTest

final class RandomTests: XCTestCase {
    func testBytesHaveTheRequestedCountAndDiffer() {
        XCTAssertEqual(SecureRandom.bytes(count: 0), [])
        let a = SecureRandom.bytes(count: 32)
        let b = SecureRandom.bytes(count: 32)
        XCTAssertEqual(a.count, 32)
        XCTAssertNotEqual(a, b, "two 256-bit draws were equal: the CSPRNG is not being used")
        XCTAssertNotEqual(a, [UInt8](repeating: 0, count: 32))
    }

    func testTokenIsLowercaseHexOfTwiceTheLength() {
        let token = SecureRandom.token(bytes: 16)
        XCTAssertEqual(token.utf8.count, 32)
        XCTAssertTrue(token.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }, token)
        XCTAssertNotEqual(token, SecureRandom.token(bytes: 16))
        XCTAssertEqual(SecureRandom.token(bytes: 0), "")
    }

    func testConstantTimeEquals() {
        XCTAssertTrue(constantTimeEquals([], []))
        XCTAssertTrue(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        XCTAssertFalse(constantTimeEquals([1, 2, 3], [1, 2, 4]))
        XCTAssertFalse(constantTimeEquals([0, 2, 3], [1, 2, 3]))
        XCTAssertFalse(constantTimeEquals([1, 2, 3], [1, 2]), "a prefix is not equal")
        XCTAssertFalse(constantTimeEquals([], [0]))
    }
}
