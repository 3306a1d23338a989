import KamiCSV
import KamiCore
import XCTest

/// GB18030 bytes of the Chinese words the tests use (checked against `iconv -t GB18030`).
enum GB {
    static let kami: [UInt8] = [0xBF, 0xA8, 0xC3, 0xDC]  // 卡密
    static let kahao: [UInt8] = [0xBF, 0xA8, 0xBA, 0xC5]  // 卡号
    static let pici: [UInt8] = [0xC5, 0xFA, 0xB4, 0xCE]  // 批次
    static let chengben: [UInt8] = [0xB3, 0xC9, 0xB1, 0xBE]  // 成本
    static let youxiaoqi: [UInt8] = [0xD3, 0xD0, 0xD0, 0xA7, 0xC6, 0xDA]  // 有效期
    static let ceshi: [UInt8] = [0xB2, 0xE2, 0xCA, 0xD4]  // 测试
    static let grinning: [UInt8] = [0x94, 0x39, 0xFC, 0x36]  // U+1F600, a 4-byte GB18030 sequence

    static func ascii(_ text: String) -> [UInt8] { Array(text.utf8) }
}

final class CSVEncodingTests: XCTestCase {
    private let utf8Body = "卡密,批次\r\nAAAA-1111,测试\r\nBBBB-2222,测试\r\n"

    func testUTF8WithAndWithoutByteOrderMark() throws {
        for input in [Array(utf8Body.utf8), [0xEF, 0xBB, 0xBF] + Array(utf8Body.utf8)] {
            var detector = CSVEncodingDetector()
            input.withUnsafeBytes { detector.feed($0) }
            XCTAssertEqual(detector.encoding, .utf8)
            let (items, summary) = try importAll(input, encoding: detector.encoding)
            XCTAssertEqual(items.rows.map(\.secretText), ["AAAA-1111", "BBBB-2222"])
            XCTAssertEqual(items.rows.map(\.batch), ["测试", "测试"])
            XCTAssertEqual(items.rows.map(\.line), [2, 3])
            XCTAssertEqual(summary.header?.columns, [.secret, .batch])
        }
    }

    func testGBKFileWithChineseHeaders() throws {
        var input = GB.kahao + GB.ascii(",") + GB.kami + GB.ascii(",") + GB.chengben + GB.ascii(",")
        input += GB.youxiaoqi + GB.ascii(",") + GB.pici + GB.ascii("\r\n")
        input += GB.ascii("6200001,PASS-0001,12.50,2025-12-31,") + GB.ceshi + GB.ascii("\r\n")
        input += GB.ascii("6200002,PASS-0002,3,2026/1/5,") + GB.ceshi + GB.grinning + GB.ascii("\r\n")

        var detector = CSVEncodingDetector()
        input.withUnsafeBytes { detector.feed($0) }
        XCTAssertFalse(detector.isValidUTF8)
        XCTAssertEqual(detector.encoding, .gb18030)

        let expected = [
            CSVCodeRow(line: 2, secret: .init("PASS-0001"), cardNumber: "6200001", costCents: 1250,
                       expiresAtMs: 1_767_139_200_000, batch: "测试"),
            CSVCodeRow(line: 3, secret: .init("PASS-0002"), cardNumber: "6200002", costCents: 300,
                       expiresAtMs: 1_767_571_200_000, batch: "测试😀"),
        ]
        for chunking in [Chunking.whole, .bytes(1), .bytes(3), .random(seed: 7, maximum: 5)] {
            let (items, summary) = try importAll(input, encoding: .gb18030, chunking)
            XCTAssertEqual(items, expected.map(CSVImportItem.row), "\(chunking)")
            XCTAssertEqual(summary.header?.columns, [.cardNumber, .secret, .costYuan, .expiresAt, .batch])
            XCTAssertEqual(summary.encoding, .gb18030)
        }
    }

    func testGB18030ChunkBoundaryInsideEveryCharacter() throws {
        // Cut the input at every position, so each 2- and 4-byte character is split once.
        let input = GB.kami + GB.ascii("\n") + GB.grinning + GB.ceshi + GB.ascii("X\n")
        for cut in 1..<input.count {
            var importer = try CSVCodeImporter(encoding: .gb18030)
            var items: [CSVImportItem] = []
            try input[..<cut].withUnsafeBytes { try importer.feed($0) { items.append($0) } }
            try input[cut...].withUnsafeBytes { try importer.feed($0) { items.append($0) } }
            _ = try importer.finish { items.append($0) }
            XCTAssertEqual(items.rows.map(\.secretText), ["😀测试X"], "cut at \(cut)")
        }
    }

    func testInvalidGB18030BytesRejectOnlyTheirRow() throws {
        var input = GB.kami + GB.ascii(",") + GB.pici + GB.ascii("\n")
        input += GB.ascii("GOOD-1,") + GB.ceshi + GB.ascii("\n")
        input += GB.ascii("BAD-2,") + [0x81, 0x20] + GB.ascii("\n")  // lead byte followed by a space
        input += GB.ascii("BAD-3,x") + [0xFF] + GB.ascii("\n")  // 0xFF is never valid
        input += GB.ascii("GOOD-4,\"") + GB.ceshi + GB.ascii("\"\n")
        input += GB.ascii("BAD-5,") + [0xC5]  // cut off by the end of the file
        for chunking in [Chunking.whole, .bytes(1), .random(seed: 3, maximum: 4)] {
            let (items, summary) = try importAll(input, encoding: .gb18030, chunking)
            XCTAssertEqual(items.rows.map(\.secretText), ["GOOD-1", "GOOD-4"])
            XCTAssertEqual(items.rows.map(\.line), [2, 5])
            XCTAssertEqual(items.rejects.map(\.line), [3, 4, 6])
            XCTAssertEqual(Set(items.rejects.map(\.code)), [.invalidEncoding])
            XCTAssertEqual(items.rejects.first?.reason, "field 2: invalid GB18030 byte sequence")
            XCTAssertEqual(summary.rejectCount, 3)
        }
    }

    func testInvalidUTF8InUTF8FileRejectsThatRowWithItsLine() throws {
        var input = Array("\u{FEFF}secret,batch\nOK-1,好\n".utf8)
        input += Array("OK-2,".utf8) + [0xE5, 0xA5] + Array("\n".utf8)  // 好 cut short
        input += Array("OK-3,好\n".utf8)
        let (items, _) = try importAll(input, encoding: .utf8)
        XCTAssertEqual(items.rows.map(\.secretText), ["OK-1", "OK-3"])
        XCTAssertEqual(items.rejects, [
            CSVReject(line: 3, code: .invalidEncoding, reason: "field 2: invalid UTF-8 byte sequence"),
        ])
    }

    func testDetectorRule() {
        func detect(_ bytes: [UInt8], _ chunking: Chunking = .bytes(1)) -> CSVEncodingDetector {
            var detector = CSVEncodingDetector()
            for chunk in chunking.chunks(bytes) { chunk.withUnsafeBytes { detector.feed($0) } }
            return detector
        }
        XCTAssertEqual(detect(Array("plain,ascii\n".utf8)).encoding, .utf8)
        XCTAssertTrue(detect(Array("卡密😀\n".utf8)).isValidUTF8, "split characters are still valid")
        XCTAssertTrue(detect([0xEF, 0xBB, 0xBF, 0xFF]).hasByteOrderMark)
        XCTAssertEqual(detect([0xEF, 0xBB, 0xBF, 0xFF]).encoding, .utf8, "a BOM decides, even with bad bytes")
        XCTAssertEqual(detect(GB.kami + GB.ascii("\n") + GB.pici).encoding, .gb18030)
        XCTAssertFalse(detect(Array("卡".utf8).dropLast().map { $0 }).isValidUTF8, "cut off at the end")
        // A long UTF-8 file with one corrupt byte stays UTF-8; GBK text with a few accidental
        // valid UTF-8 pairs stays GB18030.
        let mostlyUTF8 = Array(String(repeating: "卡密,批次\n", count: 20).utf8) + [0xFF]
        XCTAssertFalse(detect(mostlyUTF8).isValidUTF8)
        XCTAssertEqual(detect(mostlyUTF8).encoding, .utf8)
        let gbkWithAccidents = GB.kami + [0xC3, 0xA8] + GB.pici + GB.ceshi  // C3 A8 is also UTF-8 "è"
        XCTAssertEqual(detect(gbkWithAccidents).encoding, .gb18030)
    }
}
