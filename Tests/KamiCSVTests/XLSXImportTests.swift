import Foundation
import KamiCSV
import KamiCore
import KamiXLSX
import XCTest

/// Importing from Excel workbooks: the CSV rules, row numbers from the sheet, and what only a
/// workbook can get wrong.
final class XLSXImportTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("KamiXLSXTests/Fixtures").path

    private func items(_ file: String, sheet: String? = nil) throws -> (rows: [CSVCodeRow], rejects: [CSVReject], summary: CSVImportSummary) {
        var rows: [CSVCodeRow] = []
        var rejects: [CSVReject] = []
        let summary = try XLSXFileImport.importCodes(path: "\(XLSXImportTests.fixtures)/\(file)", sheet: sheet) { item in
            switch item {
            case .row(let row): rows.append(row)
            case .reject(let reject): rejects.append(reject)
            }
        }
        return (rows, rejects, summary)
    }

    func testANamedSheetImportsWithTheCSVRulesAndTheSheetsRowNumbers() throws {
        let (rows, rejects, _) = try items("codes.xlsx", sheet: "卡密")
        XCTAssertEqual(rows.map(\.line), [2, 3])
        XCTAssertEqual(rows.map { $0.secret.reveal() }, ["VIP-AAAA-0001", "a&b<c>\"d'"])
        XCTAssertEqual(rows.map(\.cardNumber), ["6200000000000001", "6200000000000002"])
        XCTAssertEqual(rows.map(\.batch), ["b1", "b1"])
        XCTAssertEqual(rows.map(\.expiresAtMs), [1_801_353_600_000, nil], "a text date")
        // Row 5: a 16-digit card number stored as a number (Excel keeps 15); row 7: the number
        // 42 is not a date; row 8: no secret (TRUE in the card column).
        XCTAssertEqual(rejects.map(\.line), [5, 7, 8])
        XCTAssertEqual(rejects.map(\.code), [.badDate, .badDate, .emptySecret])
        XCTAssertTrue(rejects[0].reason.contains("column B is a number Excel rounded"), rejects[0].reason)
    }

    func testCodesExcelMangledAreRejectedByRowAndTheRestImports() throws {
        let (rows, rejects, _) = try items("excel-damage.xlsx")
        // The repeated S-4 is passed on: duplicates are found where they are stored, as for a CSV.
        XCTAssertEqual(rows.map { $0.secret.reveal() }, ["S-4", "S-4"])
        XCTAssertEqual(rows.first?.expiresAtMs, 1_809_587_289_000, "2027-05-06T07:08:09Z from the date cell")
        XCTAssertEqual(rejects.map(\.line), [2, 3, 4])
        guard rejects.count == 3 else { return }
        XCTAssertTrue(rejects[0].reason.contains("column B is a date"), rejects[0].reason)
        XCTAssertTrue(rejects[1].reason.contains("column B is a number Excel rounded"), rejects[1].reason)
        XCTAssertTrue(rejects[2].reason.contains("column B is the Excel error #N/A"), rejects[2].reason)
        for reject in rejects {
            for secret in ["S-1", "S-2", "S-3", "S-4"] { XCTAssertFalse(reject.reason.contains(secret), reject.reason) }
        }
    }

    /// Rows made here with the writer: what a workbook can hold that a CSV line cannot.
    func testBlankFirstRowsLineBreaksInCellsAndNumbersInCodeColumns() throws {
        let directory = NSTemporaryDirectory() + "xlsx-import-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/made.xlsx"
        let sheet = try XLSXWriter(path: path)
        try sheet.add([.text("  "), .text("")])                                   // 1: blank: not the header
        try sheet.add([.text("secret"), .text("card_number"), .text("batch")])    // 2: the header
        try sheet.add([.text("A-1"), .text("C-1"), .text("two\r\nlines")])          // 3: a line break in a cell (a CSV rule)
        try sheet.add([.text("A-2"), .number("1234567890123.5"), .text("b")])     // 4: a fraction in a code column
        try sheet.add([.text("A-3"), .number("12.5"), .text("b")])                // 5: a fraction
        try sheet.add([.text(""), .text("C-6"), .text("b")])                      // 6: no secret (a CSV rule)
        try sheet.add([.text("A-7"), .number("622588011234567"), .text("b")])     // 7: 15 digits: kept
        try sheet.finish()
        var rows: [CSVCodeRow] = []
        var rejects: [CSVReject] = []
        _ = try XLSXFileImport.importCodes(path: path) { item in
            switch item {
            case .row(let row): rows.append(row)
            case .reject(let reject): rejects.append(reject)
            }
        }
        XCTAssertEqual(rows.map(\.line), [7], "sheet rows, also after a cell with a line break")
        XCTAssertEqual(rows.map(\.cardNumber), ["622588011234567"])
        XCTAssertEqual(rejects.map(\.line), [3, 4, 5, 6], "sheet rows, also after a cell with a line break")
        XCTAssertEqual(rejects.map(\.code), [.controlCharacter, .badDate, .badDate, .emptySecret])
    }

    func testAFileThatIsNotAWorkbookOrLacksTheSheetIsRefusedByName() throws {
        let directory = NSTemporaryDirectory() + "xlsx-import-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let csv = directory + "/codes.xlsx"
        try Data(("secret,card_number\n" + String(repeating: "A-1,6200\n", count: 20)).utf8).write(to: URL(fileURLWithPath: csv))
        XCTAssertThrowsError(try XLSXFileImport.importCodes(path: csv) { _ in }) { error in
            XCTAssertEqual((error as? CSVImportError)?.code, .badWorkbook)
            XCTAssertTrue("\(error)".contains("not an .xlsx"), "\(error)")
        }
        XCTAssertThrowsError(try XLSXFileImport.importCodes(path: "\(XLSXImportTests.fixtures)/codes.xlsx", sheet: "Codes") { _ in }) { error in
            XCTAssertTrue("\(error)".contains("no sheet named \"Codes\""), "\(error)")
        }
        XCTAssertThrowsError(try XLSXFileImport.importCodes(path: directory) { _ in }) { error in
            XCTAssertEqual((error as? CSVImportError)?.code, .notRegularFile)
        }
    }
}
