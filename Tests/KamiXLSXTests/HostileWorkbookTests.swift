import Foundation
import KamiXLSX
import XCTest

/// Crafted workbooks: each is refused with an error, never a crash or unbounded memory.
final class HostileWorkbookTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "xlsx-hostile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    /// A workbook whose first sheet is `sheetData` (and `sharedStrings`, if given).
    private func workbook(_ sheetData: String, sharedStrings: String? = nil, name: String = "w.xlsx") throws -> String {
        let path = directory + "/" + name
        let zip = try ZipWriter(path: path)
        try zip.add("xl/workbook.xml", Array(#"<workbook><sheets><sheet name="S" sheetId="1"/></sheets></workbook>"#.utf8))
        if let sharedStrings { try zip.add("xl/sharedStrings.xml", Array(sharedStrings.utf8)) }
        try zip.add("xl/worksheets/sheet1.xml", Array("<worksheet><sheetData>\(sheetData)</sheetData></worksheet>".utf8))
        try zip.finish()
        return path
    }

    private func error(_ path: String, limits: XLSXLimits = XLSXLimits()) -> XLSXError? {
        do throws(XLSXError) {
            let reader = try XLSXWorkbook(path: path, limits: limits).rows()
            while try reader.next() != nil {}
        } catch {
            return error
        }
        return nil
    }

    func testANegativeOrHugeStyleIsTheDefaultStyle() throws {
        let path = try workbook(#"<row r="1"><c r="A1" s="-1"><v>5</v></c><c r="B1" s="99999999999"/></row>"#)
        let reader = try XLSXWorkbook(path: path).rows()
        XCTAssertEqual(try reader.next()?.cells, [XLSXCell(.number, "5")])
    }

    func testRowNumbersPastExcelsLastRowAreRefused() throws {
        for sheet in [#"<row r="4000000000"><c><v>1</v></c></row>"#, #"<row r="9223372036854775807"/><row><c><v>1</v></c></row>"#,
                      #"<row r="0"><c><v>1</v></c></row>"#, #"<row r="-5"><c><v>1</v></c></row>"#] {
            let failure = error(try workbook(sheet))
            XCTAssertEqual(failure?.code, .badXML, sheet)
            XCTAssertTrue(failure?.message.contains("not 1 to 1048576") == true, failure?.message ?? sheet)
        }
        var limits = XLSXLimits()
        limits.rowsMax = 3
        XCTAssertEqual(error(try workbook("<row><c><v>1</v></c></row><row/><row/><row/>"), limits: limits)?.code, .tooLarge)
    }

    func testCellReferencesMustBeAColumnAndARow() throws {
        for reference in ["ZZZZ1", "a1", "A", "1", "A1B", "A12345678"] {
            let failure = error(try workbook(#"<row r="1"><c r="\#(reference)"><v>1</v></c></row>"#))
            XCTAssertEqual(failure?.code, .badXML, reference)
        }
        XCTAssertEqual(error(try workbook(#"<row r="1"><c r="XFD1"><v>1</v></c></row>"#))?.code, .tooLarge,
                       "the last Excel column is a column, past the columns read")
    }

    func testSharedStringsAreBoundedInCountAndPerString() throws {
        var limits = XLSXLimits()
        limits.sharedStringsMax = 100
        let many = try workbook("", sharedStrings: "<sst>" + String(repeating: "<si/>", count: 101) + "</sst>")
        XCTAssertEqual(error(many, limits: limits)?.code, .tooLarge)
        let long = try workbook("", sharedStrings: "<sst><si>" + String(repeating: "<r><t>" + String(repeating: "x", count: 1_000) + "</t></r>", count: 40)
            + "</si></sst>")
        let failure = error(long)
        XCTAssertEqual(failure?.code, .tooLarge)
        XCTAssertTrue(failure?.message.contains("shared string 1 is over 32767 bytes") == true, failure?.message ?? "")
    }

    /// A stray `</rPh>` is malformed XML: an error, not strings silently emptied after it.
    func testAStrayPhoneticEndIsAnError() throws {
        let path = try workbook(#"<row r="1"><c t="s"><v>1</v></c></row>"#,
                                sharedStrings: "<sst><si><t>a</t></rPh></si><si><t>b</t></si></sst>")
        XCTAssertThrowsError(try XLSXWorkbook(path: path)) { XCTAssertEqual(($0 as? XLSXError)?.code, .badXML) }
        let fine = try workbook(#"<row r="1"><c t="s"><v>1</v></c></row>"#,
                                sharedStrings: "<sst><si><t>a</t><rPh><t>x</t></rPh></si><si><t>b</t></si></sst>")
        XCTAssertEqual(try XLSXWorkbook(path: fine).rows().next()?.cells, [XLSXCell(.string, "b")])
    }

    /// A part that inflates past the size its directory entry declares stops at once.
    func testAPartLargerThanItsDirectoryEntryIsStopped() throws {
        let path = try workbook(#"<row r="1"><c t="inlineStr"><is><t>"# + String(repeating: "A", count: 300_000) + "</t></is></c></row>")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        // The sheet's central directory entry: its uncompressed size (offset 24) made 1,000.
        let name = Data("xl/worksheets/sheet1.xml".utf8)
        let central = Data([0x50, 0x4B, 0x01, 0x02])
        var at = bytes.startIndex
        var patched = false
        while let found = bytes.range(of: central, in: at..<bytes.endIndex) {
            let nameStart = found.lowerBound + 46
            if bytes[nameStart..<(nameStart + name.count)] == name {
                bytes.replaceSubrange((found.lowerBound + 24)..<(found.lowerBound + 28), with: [0xE8, 0x03, 0, 0])
                patched = true
            }
            at = found.upperBound
        }
        XCTAssertTrue(patched)
        try bytes.write(to: URL(fileURLWithPath: path))
        let failure = error(path)
        XCTAssertEqual(failure?.code, .corrupt)
        XCTAssertTrue(failure?.message.contains("inflates past the 1000 bytes") == true, failure?.message ?? "")
    }

    /// Error messages never carry cell text (it may be a code).
    func testErrorsDoNotEchoCellText() throws {
        let secret = "K7Q9p2Z"
        for (sheet, strings) in [(#"<row r="1"><c t="inlineStr"><is><t>K7&\#(secret);</t></is></c></row>"#, nil as String?),
                                 (#"<row r="1"><c t="s"><v>\#(secret)</v></c></row>"#, "<sst><si><t>x</t></si></sst>")] {
            let failure = error(try workbook(sheet, sharedStrings: strings))
            XCTAssertNotNil(failure, sheet)
            XCTAssertFalse(failure?.message.contains(secret) ?? true, failure?.message ?? "")
        }
    }

    func testAFifoIsRefusedWithoutWaitingForAWriter() throws {
        let fifo = directory + "/pipe.xlsx"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertThrowsError(try XLSXWorkbook(path: fifo)) { XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)") }
    }
}
