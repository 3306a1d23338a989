import Foundation
import KamiCSV
import KamiCore
import XCTest

/// Workbooks made by a real spreadsheet program: LibreOffice converts CSV cases to .xlsx
/// (`soffice --headless --convert-to xlsx`, installed by .ci/run), and the workbook imports
/// like the CSV, except where the program changed the codes, which is refused by row.
final class LibreOfficeXLSXTests: XCTestCase {
    static let soffice = ["/usr/bin/soffice", "/usr/bin/libreoffice"].first { FileManager.default.isExecutableFile(atPath: $0) }

    private func convert(_ csv: String, in directory: String) throws -> String {
        let source = directory + "/case.csv"
        try Data(csv.utf8).write(to: URL(fileURLWithPath: source))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: LibreOfficeXLSXTests.soffice!)
        // Comma, double quote, UTF-8 (76), from line 1; its own profile in the temp directory.
        process.arguments = ["-env:UserInstallation=file://\(directory)/profile", "--headless", "--infilter=CSV:44,34,76,1",
                             "--convert-to", "xlsx", "--outdir", directory, source]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        return directory + "/case.xlsx"
    }

    private func items(_ run: ((CSVImportItem) throws -> Void) throws -> CSVImportSummary) throws -> ([CSVCodeRow], [CSVReject]) {
        var rows: [CSVCodeRow] = []
        var rejects: [CSVReject] = []
        _ = try run { item in
            switch item {
            case .row(let row): rows.append(row)
            case .reject(let reject): rejects.append(reject)
            }
        }
        return (rows, rejects)
    }

    func testAWorkbookLibreOfficeMadeFromACSVImportsLikeTheCSV() throws {
        guard LibreOfficeXLSXTests.soffice != nil else { throw XCTSkip("LibreOffice (soffice) is not installed; .ci/run installs it") }
        let directory = NSTemporaryDirectory() + "lo-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let csv = "卡密,卡号,成本,有效期,批次\n"
            + "LO-1,6200000000000001,12.50,2027-01-31,第一批\n"   // a 16-digit card number: Calc makes it a number
            + "LO-2,AB-77,3,2027-02-01,第一批\n"
            + "\n"
            + "密码-3,C-3,1,,\"第二,批\"\n"
            + "=cmd,C-5,1,,x\n"                                   // a formula: refused by the CSV rules either way
        let xlsx = try convert(csv, in: directory)
        let csvPath = directory + "/same.csv"
        try Data(csv.utf8).write(to: URL(fileURLWithPath: csvPath))
        let (csvRows, csvRejects) = try items { try CSVFileImport.importCodes(path: csvPath, $0) }
        let (rows, rejects) = try items { try XLSXFileImport.importCodes(path: xlsx, $0) }
        XCTAssertEqual(csvRows.map(\.line), [2, 3, 5])
        XCTAssertEqual(rows.map(\.line), [3, 5], "the rounded card number is refused, the rest as in the CSV")
        XCTAssertEqual(rejects.first?.line, 2)
        XCTAssertTrue(rejects.first?.reason.contains("column B is a number Excel rounded") == true, "\(rejects)")
        // `=cmd`: the CSV rule refuses a formula; Calc evaluated it into an error cell (#NAME?),
        // which is refused by row too.
        XCTAssertEqual(csvRejects.map(\.line), [6])
        XCTAssertEqual(csvRejects.map(\.code), [.formula])
        XCTAssertEqual(rejects.dropFirst().map(\.line), [6])
        XCTAssertTrue(rejects.last?.reason.contains("column A is the Excel error #NAME?") == true, "\(rejects)")
        // The rows both read are the same codes, card numbers, costs, expiries and batches.
        let fromCSV = csvRows.filter { $0.line != 2 }
        XCTAssertEqual(rows.map { $0.secret.reveal() }, fromCSV.map { $0.secret.reveal() })
        XCTAssertEqual(rows.map(\.cardNumber), fromCSV.map(\.cardNumber))
        XCTAssertEqual(rows.map(\.costCents), fromCSV.map(\.costCents))
        XCTAssertEqual(rows.map(\.expiresAtMs), fromCSV.map(\.expiresAtMs), "Calc's date cells become the same UTC dates")
        XCTAssertEqual(rows.map(\.batch), fromCSV.map(\.batch))
    }
}
