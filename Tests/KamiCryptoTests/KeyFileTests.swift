import Glibc
import KamiCore
import KamiCrypto
import XCTest

final class KeyFileTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private let keyBytes: [UInt8] = Array(100..<132)

    override func setUpWithError() throws { directory = try TemporaryDirectory() }
    override func tearDown() { directory.cleanUp() }

    func testLoadsRawAndHexKeysToTheSameKey() throws {
        let raw = try MasterKey.load(path: directory.write("raw", keyBytes, mode: 0o600))
        let hexText = Array((hexString(keyBytes) + "\n").utf8)
        let hexFile = try MasterKey.load(path: directory.write("hex", hexText, mode: 0o400))
        let upperText = Array(hexString(keyBytes).uppercased().utf8)
        let upper = try MasterKey.load(path: directory.write("upper", upperText, mode: 0o600))
        let expected = MasterKey(bytes: keyBytes)
        XCTAssertEqual(raw.id, expected.id)
        XCTAssertEqual(hexFile.id, expected.id)
        XCTAssertEqual(upper.id, expected.id)
        // Same key means a secret sealed by one opens with the other.
        let aad = Sealer.associatedData(codeID: 1, skuID: 1)
        let sealed = Sealer(key: raw).seal(.init("c"), aad: aad)
        XCTAssertEqual(try Sealer(key: hexFile).open(sealed, aad: aad).reveal(), "c")
    }

    func testKeyIDIsTheDocumentedHashPrefix() {
        let digest = SHA256.hash(Array("kami-key-id".utf8) + keyBytes)
        let expected = UInt32(digest[0]) << 24 | UInt32(digest[1]) << 16 | UInt32(digest[2]) << 8 | UInt32(digest[3])
        XCTAssertEqual(MasterKey(bytes: keyBytes).id, expected)
    }

    func testMissingFile() {
        let path = directory.file("absent")
        assertLoadFails(path, .missing(path: path), mentioning: [path, "does not exist"])
    }

    func testGroupOrOtherAccessIsRejectedWithChmodAdvice() throws {
        for mode: mode_t in [0o644, 0o640, 0o604, 0o602, 0o660] {
            let path = try directory.write("open-\(String(mode, radix: 8))", keyBytes, mode: mode)
            assertLoadFails(path, .permissionsTooOpen(path: path, mode: UInt32(mode)),
                            mentioning: ["chmod 600 \(path)", "0" + String(mode, radix: 8)])
        }
    }

    func testWrongLengthAndBadHex() throws {
        let short = try directory.write("short", Array(keyBytes.prefix(31)), mode: 0o600)
        assertLoadFails(short, .wrongLength(path: short, bytes: 31), mentioning: [short, "31 bytes", "64 hex"])
        let empty = try directory.write("empty", [], mode: 0o600)
        assertLoadFails(empty, .wrongLength(path: empty, bytes: 0), mentioning: [empty])
        let rawWithNewline = try directory.write("raw-newline", keyBytes + [0x0A], mode: 0o600)
        assertLoadFails(rawWithNewline, .wrongLength(path: rawWithNewline, bytes: 33), mentioning: ["33 bytes"])
        let long = try directory.write("long", [UInt8](repeating: 0x61, count: 4096), mode: 0o600)
        assertLoadFails(long, .wrongLength(path: long, bytes: 4096), mentioning: ["4096 bytes"])

        var badHex = Array(hexString(keyBytes).utf8)
        badHex[10] = UInt8(ascii: "g")
        let bad = try directory.write("bad-hex", badHex, mode: 0o600)
        assertLoadFails(bad, .invalidHex(path: bad, offset: 10), mentioning: [bad, "offset 10"])
    }

    func testDirectoryIsNotARegularFile() throws {
        let path = directory.file("dir")
        XCTAssertEqual(mkdir(path, 0o700), 0)
        assertLoadFails(path, .notRegularFile(path: path), mentioning: [path, "not a regular file"])
    }

    func testGenerateCreatesAnOwnerOnlyFileThatLoadsBack() throws {
        let path = directory.file("master.key")
        let generated = try MasterKey.generate(path: path)
        XCTAssertEqual(directory.mode("master.key"), 0o600)
        XCTAssertEqual(try MasterKey.load(path: path).id, generated.id)
        let content = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertEqual(content.utf8.count, 65, "64 hex digits and a newline")
        XCTAssertTrue(content.hasSuffix("\n"))
    }

    func testGenerateRespectsNoUmaskAndRefusesToOverwrite() throws {
        let path = directory.file("master.key")
        let previous = umask(0o277)  // would leave 0400 if generate did not set the mode itself
        defer { umask(previous) }
        let first = try MasterKey.generate(path: path)
        XCTAssertEqual(directory.mode("master.key"), 0o600)
        XCTAssertThrowsError(try MasterKey.generate(path: path)) { error in
            XCTAssertEqual(error as? KeyFileError, .alreadyExists(path: path))
            XCTAssertTrue("\(error)".contains("refusing to overwrite"), "\(error)")
        }
        XCTAssertEqual(try MasterKey.load(path: path).id, first.id, "the existing key is untouched")
    }

    func testGenerateDoesNotFollowASymlink() throws {
        let target = directory.file("target")
        let link = directory.file("link")
        XCTAssertEqual(symlink(target, link), 0)
        XCTAssertThrowsError(try MasterKey.generate(path: link)) { error in
            XCTAssertEqual(error as? KeyFileError, .alreadyExists(path: link))
        }
        XCTAssertEqual(access(target, F_OK), -1, "nothing was written through the link")
    }

    func testGenerateIntoAMissingDirectoryIsASystemCallError() {
        let path = directory.file("no-such-dir/master.key")
        XCTAssertThrowsError(try MasterKey.generate(path: path)) { error in
            XCTAssertEqual(error as? KeyFileError, .systemCall(path: path, call: "open", errno: ENOENT))
            XCTAssertTrue("\(error)".contains("open failed"), "\(error)")
        }
    }

    private func assertLoadFails(_ path: String, _ expected: KeyFileError, mentioning phrases: [String],
                                 file: StaticString = #filePath, line: UInt = #line) {
        do {
            let key = try MasterKey.load(path: path)
            XCTFail("loaded \(key) from \(path) instead of failing", file: file, line: line)
        } catch {
            XCTAssertEqual(error, expected, file: file, line: line)
            for phrase in phrases {
                XCTAssertTrue(error.description.contains(phrase), "\"\(error)\" lacks \"\(phrase)\"",
                              file: file, line: line)
            }
            XCTAssertFalse(error.description.contains(hexString(keyBytes)), file: file, line: line)
        }
    }
}
