import Foundation
import KamiCSV
import KamiCore
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
        XCTAssertEqual(rows.map(\.line), [2, 3, 5])
        XCTAssertEqual(rows.map { $0.secret.reveal() }, ["VIP-AAAA-0001", "a&b<c>\"d'", "中文-密码-3"])
        XCTAssertEqual(rows.map(\.cardNumber), ["6200000000000001", "6200000000000002", "6200000000000000"])
        XCTAssertEqual(rows.map(\.batch), ["b1", "b1", "b2"])
        // A text date and an Excel date in the expiry column (2027-01-31 and 2027-03-01, UTC).
        XCTAssertEqual(rows.map(\.expiresAtMs), [1_801_353_600_000, nil, 1_803_859_200_000])
        // Row 7: the number 42 is not a date; row 8: no secret (TRUE in the card column).
        XCTAssertEqual(rejects.map(\.line), [7, 8])
        XCTAssertEqual(rejects.map(\.code), [.badDate, .emptySecret])
    }

    func testCodesExcelMangledAreRejectedByRowAndTheRestImports() throws {
        let (rows, rejects, _) = try items("excel-damage.xlsx")
        // The repeated S-4 is passed on: duplicates are found where they are stored, as for a CSV.
        XCTAssertEqual(rows.map { $0.secret.reveal() }, ["S-4", "S-4"])
        XCTAssertEqual(rows.first?.expiresAtMs, 1_809_587_289_000, "2027-05-06T07:08:09Z from the date cell")
        XCTAssertEqual(rejects.map(\.line), [2, 3, 4])
        guard rejects.count == 3 else { return }
        XCTAssertTrue(rejects[0].reason.contains("column B is a date"), rejects[0].reason)
        XCTAssertEqual(rejects[1].code, .scientificNotation, rejects[1].reason)
        XCTAssertTrue(rejects[2].reason.contains("column B is the Excel error #N/A"), rejects[2].reason)
        for reject in rejects {
            for secret in ["S-1", "S-2", "S-3", "S-4"] { XCTAssertFalse(reject.reason.contains(secret), reject.reason) }
        }
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
