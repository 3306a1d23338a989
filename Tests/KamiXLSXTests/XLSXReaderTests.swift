import Foundation
import KamiXLSX
import XCTest

final class XLSXReaderTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    private func rows(_ file: String, sheet: String? = nil) throws -> [XLSXRow] {
        let reader = try XLSXWorkbook(path: "\(XLSXReaderTests.fixtures)/\(file)").rows(sheet: sheet)
        var rows: [XLSXRow] = []
        while let row = try reader.next() { rows.append(row) }
        return rows
    }

    private func failure(_ body: () throws -> Void) -> XLSXError? {
        do { try body() } catch let error as XLSXError { return error } catch { XCTFail("not an XLSXError: \(error)") }
        return nil
    }

    private func texts(_ row: XLSXRow) -> [String] { row.cells.map(\.text) }

    /// A workbook saved by openpyxl: deflated entries, inline strings, a date style.
    func testReadsANamedSheetOfAWorkbookAsWritten() throws {
        let workbook = try XLSXWorkbook(path: "\(XLSXReaderTests.fixtures)/codes.xlsx")
        XCTAssertEqual(workbook.sheets.map(\.name), ["Notes", "卡密"])
        XCTAssertEqual(try rows("codes.xlsx").map(texts), [["this sheet is not the codes"]], "the first sheet by default")
        let codes = try rows("codes.xlsx", sheet: "卡密")
        XCTAssertEqual(codes.map(\.number), [1, 2, 3, 5, 7, 8], "empty rows are skipped, numbers kept")
        XCTAssertEqual(texts(codes[0]), ["secret", "card_number", "batch", "expires_at"])
        XCTAssertEqual(texts(codes[1]), ["VIP-AAAA-0001", "6200000000000001", "b1", "2027-01-31"])
        XCTAssertEqual(texts(codes[2]), ["a&b<c>\"d'", "6200000000000002", "b1"], "entities decoded, trailing empties dropped")
        XCTAssertEqual(codes[3].cells, [XLSXCell(.string, "中文-密码-3"), XLSXCell(.number, "6200000000000000"),
                                        XLSXCell(.string, "b2"), XLSXCell(.date, "46447")])
        XCTAssertEqual(codes[4].cells, [XLSXCell(.string, "GAP-ROW-7"), .empty, .empty, XLSXCell(.number, "42")], "gaps filled")
        XCTAssertEqual(codes[5].cells, [.empty, XLSXCell(.boolean, "TRUE")])
    }

    /// Hand-made: shared strings with rich text and phonetic runs, prefixed names, a
    /// relationship with an absolute target, rows without `r`, CDATA, custom and CJK date formats.
    func testSharedStringsStylesAndMarkupVariants() throws {
        let workbook = try XLSXWorkbook(path: "\(XLSXReaderTests.fixtures)/handmade.xlsx")
        XCTAssertEqual(workbook.sheets.map(\.name), ["Data"])
        XCTAssertEqual(workbook.sheets.map(\.part), ["xl/worksheets/data.xml"])
        let rows = try rows("handmade.xlsx")
        XCTAssertEqual(rows.map(\.number), [1, 2, 5])
        XCTAssertEqual(texts(rows[0]), ["inline & 中文", "Rich text"])
        XCTAssertEqual(texts(rows[1]), ["東京", "<cdata>"], "the phonetic reading is not part of the text")
        XCTAssertEqual(rows[2].cells, [.empty, XLSXCell(.date, "46387"), XLSXCell(.number, "1.5"), XLSXCell(.date, "46000"),
                                       XLSXCell(.error, "#N/A")], "an empty shared string at the end is dropped")
    }

    func testDateFormatCodes() {
        for code in ["yyyy-mm-dd", "m/d/yy", "[h]:mm:ss", "yyyy\"年\"m\"月\"d\"日\"", "hh:mm AM/PM"] {
            XCTAssertTrue(XLSXWorkbook.isDateFormat(code), code)
        }
        for code in ["0.00", "\"m\"0.00", "[Red]0.00", "#,##0", "0%", "@", "General"] {
            XCTAssertFalse(XLSXWorkbook.isDateFormat(code), code)
        }
    }

    func testDamagedFilesGiveAnErrorThatSaysWhat() throws {
        let directory = NSTemporaryDirectory() + "xlsx-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let good = try Data(contentsOf: URL(fileURLWithPath: "\(XLSXReaderTests.fixtures)/codes.xlsx"))

        let csv = directory + "/codes.csv"
        try Data("secret,card_number\nA,1\n".utf8).write(to: URL(fileURLWithPath: csv))
        XCTAssertEqual(failure { _ = try XLSXWorkbook(path: csv) }?.code, .notAnArchive)
        XCTAssertEqual(failure { _ = try XLSXWorkbook(path: directory + "/none.xlsx") }?.code, .io)

        // Cut short: the directory at the end is gone.
        let cut = directory + "/cut.xlsx"
        try good.prefix(good.count / 2).write(to: URL(fileURLWithPath: cut))
        XCTAssertEqual(failure { _ = try XLSXWorkbook(path: cut) }?.code, .notAnArchive)

        // One byte of the sheet's compressed data changed: it fails to inflate or its CRC.
        let entry = try ZipReader(path: "\(XLSXReaderTests.fixtures)/codes.xlsx").entry("xl/worksheets/sheet2.xml")
        XCTAssertNotNil(entry)
        var flipped = good
        let dataStart = flipped.range(of: Data("xl/worksheets/sheet2.xml".utf8))!.upperBound
        flipped[dataStart + 40] ^= 0x55
        let bad = directory + "/bad.xlsx"
        try flipped.write(to: URL(fileURLWithPath: bad))
        let damaged = failure { _ = try self.rowsAt(bad, sheet: "卡密") }
        XCTAssertEqual(damaged?.code, .corrupt, "\(String(describing: damaged))")
        XCTAssertTrue(damaged?.message.contains("xl/worksheets/sheet2.xml") == true, damaged?.message ?? "")

        // A sheet that is not there.
        let missing = failure { _ = try XLSXWorkbook(path: "\(XLSXReaderTests.fixtures)/codes.xlsx").rows(sheet: "Sheet9") }
        XCTAssertEqual(missing?.code, .missingPart)
        XCTAssertTrue(missing?.message.contains("\"Notes\", \"卡密\"") == true, missing?.message ?? "")
    }

    private func rowsAt(_ path: String, sheet: String?) throws -> [XLSXRow] {
        let reader = try XLSXWorkbook(path: path).rows(sheet: sheet)
        var rows: [XLSXRow] = []
        while let row = try reader.next() { rows.append(row) }
        return rows
    }
}
