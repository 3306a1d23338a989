import KamiCSV
import KamiCore
import XCTest

final class CSVRecordParserTests: XCTestCase {
    func testLFAndCRLFRecords() {
        let expected: [ParsedEvent] = [
            .record(line: 1, fields: ["a", "b"]),
            .record(line: 2, fields: ["c", ""]),
            .record(line: 3, fields: ["", "d"]),
        ]
        XCTAssertEqual(parse("a,b\nc,\n,d\n"), expected)
        XCTAssertEqual(parse("a,b\r\nc,\r\n,d\r\n"), expected)
        XCTAssertEqual(parse("a,b\r\nc,\r\n,d"), expected, "last line without a line end")
    }

    func testLoneCRIsALineEnd() {
        XCTAssertEqual(parse("a\rb\r\rc"), [
            .record(line: 1, fields: ["a"]), .record(line: 2, fields: ["b"]), .record(line: 4, fields: ["c"]),
        ])
    }

    func testQuotedFieldsWithCommasQuotesAndNewlinesKeepLineNumbers() {
        let input = "h1,h2\n\"a,b\",\"say \"\"hi\"\"\"\n\"line1\nline2\r\nline3\",x\nnext,row\n\"\",\"\"\"\"\n"
        XCTAssertEqual(parse(input), [
            .record(line: 1, fields: ["h1", "h2"]),
            .record(line: 2, fields: ["a,b", "say \"hi\""]),
            .record(line: 3, fields: ["line1\nline2\r\nline3", "x"]),
            .record(line: 6, fields: ["next", "row"]),
            .record(line: 7, fields: ["", "\""]),
        ])
    }

    func testBlankLinesAreSkippedButCounted() {
        XCTAssertEqual(parse("\n\r\nh\n\n\na\r\n\r\n  \nb\n"), [
            .record(line: 3, fields: ["h"]),
            .record(line: 6, fields: ["a"]),
            .record(line: 8, fields: ["  "]),  // spaces are content here; the importer calls it blank
            .record(line: 9, fields: ["b"]),
        ])
    }

    func testQuoteInsideUnquotedFieldIsLiteral() {
        XCTAssertEqual(parse("12\" screen,x\n"), [.record(line: 1, fields: ["12\" screen", "x"])])
    }

    func testNulByteRejectsOnlyItsRecord() {
        let input: [UInt8] = Array("a\nb\0c,d\n\"q\0\"\ne\n".utf8)
        XCTAssertEqual(parse(input).events, [
            .record(line: 1, fields: ["a"]),
            .rejected(line: 2, code: .nulByte),
            .rejected(line: 3, code: .nulByte),
            .record(line: 4, fields: ["e"]),
        ])
    }

    func testTextAfterClosingQuoteIsRejected() {
        XCTAssertEqual(parse("\"ab\"c,d\nok\n"), [
            .rejected(line: 1, code: .badQuoting), .record(line: 2, fields: ["ok"]),
        ])
    }

    func testUnterminatedQuoteAtEndOfInputIsRejected() {
        XCTAssertEqual(parse("a\n\"open,\nstill open\n"), [
            .record(line: 1, fields: ["a"]), .rejected(line: 2, code: .unterminatedQuote),
        ])
    }

    func testInvalidUTF8RejectsOnlyItsRecord() {
        var input = Array("a\n".utf8)
        input += [0x62, 0xC3, 0x28, 0x0A]  // "b", a broken 2-byte sequence, LF
        input += [0xED, 0xA0, 0x80, 0x0A]  // a UTF-16 surrogate encoded in UTF-8
        input += [0xC0, 0xAF, 0x0A]  // an overlong "/"
        input += Array("c\n".utf8)
        XCTAssertEqual(parse(input).events, [
            .record(line: 1, fields: ["a"]),
            .rejected(line: 2, code: .invalidEncoding),
            .rejected(line: 3, code: .invalidEncoding),
            .rejected(line: 4, code: .invalidEncoding),
            .record(line: 5, fields: ["c"]),
        ])
    }

    func testByteOrderMarkIsSkippedOnlyAtTheStart() {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        let input = bom + Array("a\n".utf8) + bom + Array("b\n".utf8)
        for chunking in [Chunking.whole, .bytes(1), .bytes(2)] {
            XCTAssertEqual(parse(input, chunking).events, [
                .record(line: 1, fields: ["a"]), .record(line: 2, fields: ["\u{FEFF}b"]),
            ])
        }
        // A prefix of the BOM that turns out not to be one is data (U+FEC0 here).
        XCTAssertEqual(parse([0xEF, 0xBB, 0x80, 0x0A], .bytes(1)).events, [.record(line: 1, fields: ["\u{FEC0}"])])
        XCTAssertEqual(parse([0xEF, 0xBB], .bytes(1)).events, [.rejected(line: 1, code: .invalidEncoding)])
    }

    func testRecordAtTheLimitIsKeptAndOneByteMoreIsRejected() {
        let limit = CSVLimits.recordBytesMax
        // Raw bytes count, quotes included: this quoted field is exactly `limit` bytes.
        let quote = UInt8(ascii: "\"")
        let atLimit = [quote] + [UInt8](repeating: UInt8(ascii: "x"), count: limit - 4) + [quote, quote, quote]
        let overLimit = [UInt8](repeating: UInt8(ascii: "y"), count: limit + 1)
        let lf = UInt8(ascii: "\n")
        let input: [UInt8] = atLimit + [lf] + overLimit + [lf] + Array("z\n".utf8)
        let (events, highWater) = parse(input, .bytes(4096))
        XCTAssertEqual(events.count, 3)
        guard case .record(1, let fields) = events[0] else { return XCTFail("\(events[0])") }
        XCTAssertEqual(fields[0].utf8.count, limit - 3)
        XCTAssertEqual(events[1], .rejected(line: 2, code: .recordTooLong))
        XCTAssertEqual(events[2], .record(line: 3, fields: ["z"]))
        XCTAssertLessThanOrEqual(highWater, limit)
    }

    func testTenMegabyteLineIsSkippedWithBoundedBuffer() {
        var parser = CSVRecordParser()
        var events: [ParsedEvent] = []
        let collect: (CSVParserEvent) -> Void = { event in
            switch event {
            case .record(let record):
                events.append(.record(line: record.line, fields: (0..<record.fieldCount).map(record.string)))
            case .rejected(let reject):
                XCTAssertEqual(reject.description, "line 2: record longer than 65536 bytes")
                events.append(.rejected(line: reject.line, code: reject.code))
            }
        }
        Array("secret\n".utf8).withUnsafeBytes { parser.feed($0, collect) }
        // 10 MB in one line, with quoted newlines and commas along the way, fed in 64 KiB chunks.
        let chunk = [UInt8](repeating: UInt8(ascii: "A"), count: 65_536 - 8) + Array(",\"a\nb\",".utf8)
        for _ in 0..<160 { chunk.withUnsafeBytes { parser.feed($0, collect) } }
        Array("tail\nnext-row\n".utf8).withUnsafeBytes { parser.feed($0, collect) }
        parser.finish(collect)
        XCTAssertEqual(events, [
            .record(line: 1, fields: ["secret"]),
            .rejected(line: 2, code: .recordTooLong),
            .record(line: 163, fields: ["next-row"]),
        ])
        XCTAssertLessThanOrEqual(parser.bufferHighWaterBytes, CSVLimits.recordBytesMax)
    }

    func testTooManyFieldsIsRejected() {
        let input = String(repeating: ",", count: CSVLimits.fieldsPerRecordMax) + "\nok\n"
        XCTAssertEqual(parse(input), [.rejected(line: 1, code: .tooManyFields), .record(line: 2, fields: ["ok"])])
        let justEnough = String(repeating: ",", count: CSVLimits.fieldsPerRecordMax - 1) + "\n"
        guard case .record(_, let fields) = parse(justEnough).first else { return XCTFail() }
        XCTAssertEqual(fields.count, CSVLimits.fieldsPerRecordMax)
    }

    /// Every cut of the input into chunks gives the same events as the whole input.
    func testChunkBoundariesAnywhere() {
        var input: [UInt8] = [0xEF, 0xBB, 0xBF]
        input += Array("卡密,卡号\r\n\"a,\"\"b\"\"\r\nc\",1\r\n\r\nplain,\"\"\n\"x\"y,bad\nq\0,nul\n".utf8)
        input += [0xE5, 0x8D, 0xA1, 0x2C, 0xE5, 0x8D, 0x0A]  // 卡, then a cut-off 卡
        input += Array("last,\"open".utf8)
        let expected = parse(input).events
        XCTAssertEqual(expected, [
            .record(line: 1, fields: ["卡密", "卡号"]),
            .record(line: 2, fields: ["a,\"b\"\r\nc", "1"]),
            .record(line: 5, fields: ["plain", ""]),
            .rejected(line: 6, code: .badQuoting),
            .rejected(line: 7, code: .nulByte),
            .rejected(line: 8, code: .invalidEncoding),
            .rejected(line: 9, code: .unterminatedQuote),
        ])
        XCTAssertEqual(parse(input, .bytes(1)).events, expected, "1 byte at a time")
        for size in 2...9 { XCTAssertEqual(parse(input, .bytes(size)).events, expected, "\(size) bytes at a time") }
        for seed in UInt64(1)...200 {
            XCTAssertEqual(parse(input, .random(seed: seed, maximum: 12)).events, expected, "seed \(seed)")
        }
    }

    func testPullAndPushAPIsAgree() {
        let input = Array("a,b\nc\n\"d\"\n".utf8)
        var parser = CSVRecordParser()
        var lines: [Int] = []
        input.withUnsafeBytes { bytes in
            var offset = 0
            while let event = parser.next(in: bytes, offset: &offset) {
                if case .record(let record) = event { lines.append(record.line) }
            }
            XCTAssertEqual(offset, bytes.count)
        }
        XCTAssertNil(parser.finish())
        XCTAssertEqual(lines, [1, 2, 3])
        XCTAssertEqual(parser.currentLine, 4)
    }
}
