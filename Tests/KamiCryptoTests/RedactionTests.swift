import KamiCore
import KamiCrypto
import XCTest

/// Nothing this module prints may contain key bytes or plaintext (invariant 5).
final class RedactionTests: XCTestCase {
    private let keyBytes: [UInt8] = Array(200..<232)
    private let plaintext = "SECRET-CARD-KEY-9876"

    /// Every way a value commonly reaches a log line.
    private func renderings(_ value: Any) -> [String] {
        var dumped = ""
        dump(value, to: &dumped)
        return [String(describing: value), "\(value)", String(reflecting: value), dumped]
    }

    /// Key material that must never appear: the master key and the fingerprint key derived from it.
    private var secretByteStrings: [[UInt8]] {
        [keyBytes, HMACSHA256.mac(key: keyBytes, data: Array("kami fingerprint v1".utf8))]
    }

    /// Fails if `value` renders the plaintext, or any 4 consecutive bytes of key material
    /// either as hex or as decimal numbers in a row (how arrays print and `dump` lists them).
    private func assertClean(_ value: Any, file: StaticString = #filePath, line: UInt = #line) {
        for text in renderings(value) {
            XCTAssertFalse(text.contains(plaintext), "\"\(text)\" contains the plaintext", file: file, line: line)
            let numbers = decimalNumbers(in: text)
            for secret in secretByteStrings {
                for start in 0...(secret.count - 4) {
                    let window = Array(secret[start..<start + 4])
                    XCTAssertFalse(text.lowercased().contains(hexString(window)),
                                   "\"\(text)\" contains key bytes as hex", file: file, line: line)
                    XCTAssertFalse(containsRun(numbers, window.map(Int.init)),
                                   "\"\(text)\" contains key bytes as numbers", file: file, line: line)
                }
            }
        }
    }

    private func decimalNumbers(in text: String) -> [Int] {
        text.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    }

    private func containsRun(_ numbers: [Int], _ run: [Int]) -> Bool {
        guard numbers.count >= run.count else { return false }
        return (0...(numbers.count - run.count)).contains { Array(numbers[$0..<$0 + run.count]) == run }
    }

    func testMasterKeyShowsOnlyItsID() {
        let key = MasterKey(bytes: keyBytes)
        let idHex = String(key.id, radix: 16)
        let padded = String(repeating: "0", count: 8 - idHex.count) + idHex
        XCTAssertEqual(String(describing: key), "<MasterKey id=\(padded)>")
        XCTAssertEqual("\(key)", "<MasterKey id=\(padded)>")
        assertClean(key)
    }

    func testKeyringSealerAndSealedSecretAreClean() throws {
        let key = MasterKey(bytes: keyBytes)
        let sealer = Sealer(keyring: Keyring(current: key, previous: [MasterKey.random()]))
        let sealed = sealer.seal(Secret(plaintext), aad: Sealer.associatedData(codeID: 1, skuID: 2))
        assertClean(sealer.keyring)
        assertClean(sealer)
        assertClean(sealed)
        XCTAssertTrue("\(sealed)".hasPrefix("<SealedSecret key="), "\(sealed)")
        let opened = try sealer.open(sealed, aad: Sealer.associatedData(codeID: 1, skuID: 2))
        assertClean(opened)
    }

    func testErrorsAreClean() throws {
        let key = MasterKey(bytes: keyBytes)
        let sealer = Sealer(key: key)
        let sealed = sealer.seal(Secret(plaintext), aad: [1])
        var errors: [any Error] = []
        do { _ = try sealer.open(sealed, aad: [2]) } catch { errors.append(error) }
        do { _ = try Sealer(key: MasterKey.random()).open(sealed, aad: [1]) } catch { errors.append(error) }
        let truncated = SealedSecret(keyID: sealed.keyID, nonce: [], ciphertextAndTag: [])
        do { _ = try sealer.open(truncated, aad: [1]) } catch { errors.append(error) }

        let directory = try TemporaryDirectory()
        defer { directory.cleanUp() }
        var badHex = Array(hexString(keyBytes).utf8)
        badHex[63] = UInt8(ascii: "z")
        for (name, content, mode) in [("a", keyBytes, 0o644), ("b", badHex, 0o600), ("c", keyBytes + [1], 0o600)] {
            let path = try directory.write(name, content, mode: mode_t(mode))
            do { _ = try MasterKey.load(path: path) } catch { errors.append(error) }
        }

        XCTAssertEqual(errors.count, 6, "every operation above must fail")
        for error in errors { assertClean(error) }
    }
}
