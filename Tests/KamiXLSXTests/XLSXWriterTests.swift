import Foundation
import KamiXLSX
import XCTest

final class XLSXWriterTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "xlsx-writer-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    private func readBack(_ path: String) throws -> (names: [String], rows: [XLSXRow]) {
        let workbook = try XLSXWorkbook(path: path)
        let reader = try workbook.rows()
        var rows: [XLSXRow] = []
        while let row = try reader.next() { rows.append(row) }
        return (workbook.sheets.map(\.name), rows)
    }

    func testWhatIsWrittenReadsBackCellForCell() throws {
        let path = directory + "/sales.xlsx"
        let writer = try XLSXWriter(path: path, sheetName: "sales/2026:12")
        try writer.add([.text("sku"), .text("card_number"), .text("revenue"), .text("note")])
        try writer.add([.text("vip"), .text("0012345678901234567"), .number("1990"), .text(" a & b <c> \"d\" ")])
        try writer.add([.text("卡密"), .text(""), .number("-3.25"), .text("tab\there\u{1}")])
        try writer.add([.text("x"), .number("not a number"), .number("12345678901234567890")])
        try writer.finish()
        let (names, rows) = try readBack(path)
        XCTAssertEqual(names, ["sales_2026_12"], "Excel's forbidden characters replaced")
        XCTAssertEqual(rows.map(\.number), [1, 2, 3, 4])
        XCTAssertEqual(rows[1].cells, [XLSXCell(.string, "vip"), XLSXCell(.string, "0012345678901234567"),
                                       XLSXCell(.number, "1990"), XLSXCell(.string, " a & b <c> \"d\" ")])
        XCTAssertEqual(rows[2].cells, [XLSXCell(.string, "卡密"), .empty, XLSXCell(.number, "-3.25"), XLSXCell(.string, "tab\there")],
                       "a control character XML cannot carry is dropped")
        XCTAssertEqual(rows[3].cells, [XLSXCell(.string, "x"), XLSXCell(.string, "not a number"),
                                       XLSXCell(.string, "12345678901234567890")],
                       "a number Excel would round (over 15 digits) stays text")
    }

    /// Many rows: the sheet is deflated in pieces and read back in pieces.
    func testALargeSheetStreamsBothWays() throws {
        let path = directory + "/big.xlsx"
        let writer = try XLSXWriter(path: path)
        let count = 50_000
        for index in 0..<count { try writer.add([.text("CODE-\(index)-\(index * 7919 % 10007)"), .number(String(index))]) }
        try writer.finish()
        let reader = try XLSXWorkbook(path: path).rows()
        var seen = 0
        while let row = try reader.next() {
            XCTAssertEqual(row.cells, [XLSXCell(.string, "CODE-\(seen)-\(seen * 7919 % 10007)"), XLSXCell(.number, String(seen))])
            seen += 1
            if row.number != seen { return XCTFail("row \(row.number) at \(seen)") }
        }
        XCTAssertEqual(seen, count)
    }

    /// Python's zipfile (another implementation) finds every entry and CRC good.
    func testAnotherZipReaderAcceptsTheArchive() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { throw XCTSkip("no python3") }
        let path = directory + "/check.xlsx"
        let writer = try XLSXWriter(path: path)
        try writer.add([.text("secret"), .text("batch")])
        try writer.finish()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; "
            + "print(' '.join(sorted(z.namelist())))", path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let names = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(names.trimmingCharacters(in: .whitespacesAndNewlines),
                       "[Content_Types].xml _rels/.rels xl/_rels/workbook.xml.rels xl/styles.xml xl/workbook.xml xl/worksheets/sheet1.xml")
    }
}
