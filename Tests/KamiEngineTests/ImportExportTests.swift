import CKamiLinux
import Foundation
import Glibc
import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore
import KamiXLSX
import XCTest

final class ImportExportTests: XCTestCase {
    private func write(_ bytes: [UInt8], in h: Harness, name: String = "codes.csv") -> String {
        let path = h.directory + "/" + name
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func testUtf8WithBomAndChineseHeadersImportsAndDuplicatesAreReportedByLine() throws {
        let h = Harness()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", name: "VIP"))
        let csv = "\u{FEFF}卡号,卡密,成本,有效期,批次\r\n6200,AAA-111,12.50,2027-01-31,第一批\r\n\r\n6201,\"BBB,222\",3,2027-02-01,\"第一批\"\r\n"
            + "6202,AAA-111,1,2027-01-01,第一批\r\n6203,=cmd|' /C calc'!A0,1,2027-01-01,\"two\r\nlines\"\r\n"
            + "6204,CCC-333,1,2027-01-01,第一批\r\n"
        let report = try h.engine.admin.importCSV(path: write(Array(csv.utf8), in: h), sku: "vip")
        XCTAssertEqual(report.imported, 3)
        XCTAssertEqual(report.rejected.map(\.line), [5, 6], "line numbers stay right after a quoted newline")
        XCTAssertTrue(report.rejected[0].reason.contains("duplicate of line 2"), report.rejected[0].reason)
        XCTAssertFalse(report.rejected.map(\.reason).joined().contains("AAA"), "reasons never echo a secret")
        XCTAssertFalse(report.rejected.map(\.reason).joined().contains("cmd"), "reasons never echo a secret")
        let issued = try h.engine.storefront.issueSync(order: "o", user: "u", sku: "vip", units: 3, paymentRef: "p").get()
        XCTAssertEqual(Set(issued.codes.map { $0.secret.reveal() }), ["AAA-111", "BBB,222", "CCC-333"])
        XCTAssertEqual(Set(issued.codes.compactMap(\.cardNumber)), ["6200", "6201", "6204"])
        // The same file again: everything is a duplicate of a stored code, nothing is imported twice.
        let again = try h.engine.admin.importCSV(path: h.directory + "/codes.csv", sku: "vip")
        XCTAssertEqual(again.imported, 0)
        XCTAssertTrue(again.rejected.allSatisfy { $0.reason.contains("duplicate") || $0.reason.contains("formula") },
                      "\(again.rejected)")
        h.assertInvariants()
    }

    /// A named sheet of a workbook (`kamictl import --sheet`): the codes on a second sheet
    /// after a notes sheet; a missing name lists the sheets there are; CSV takes no sheet.
    func testExcelWorkbookImportsANamedSheet() throws {
        let h = Harness()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", name: "VIP"))
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("KamiXLSXTests/Fixtures/codes.xlsx").path
        let path = h.directory + "/two-sheets.xlsx"
        try FileManager.default.copyItem(atPath: fixtures, toPath: path)
        XCTAssertThrowsError(try h.engine.admin.importCSV(path: path, sku: "vip"), "the first sheet is notes")
        XCTAssertThrowsError(try h.engine.admin.importCSV(path: path, sku: "vip", sheet: "Nope")) { error in
            XCTAssertTrue("\(error)".contains("no sheet named \"Nope\"; it has \"Notes\", \"卡密\""), "\(error)")
        }
        let report = try h.engine.admin.importCSV(path: path, sku: "vip", sheet: "卡密")
        XCTAssertGreaterThan(report.imported, 0)
        XCTAssertThrowsError(try h.engine.admin.importCSV(path: h.directory + "/x.csv", sku: "vip", sheet: "卡密")) { error in
            XCTAssertTrue("\(error)".contains("only for an .xlsx"), "\(error)")
        }
        h.assertInvariants()
    }

    /// An .xlsx (its first sheet) goes through the same import: rejects by sheet row, a
    /// duplicate reported against its first row, the codes issued as written.
    func testExcelWorkbookImportsItsFirstSheet() throws {
        let h = Harness()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", name: "VIP"))
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("KamiXLSXTests/Fixtures/excel-damage.xlsx").path
        let path = h.directory + "/codes.xlsx"
        try FileManager.default.copyItem(atPath: fixtures, toPath: path)
        let report = try h.engine.admin.importCSV(path: path, sku: "vip")
        XCTAssertEqual(report.imported, 1)
        XCTAssertEqual(report.rejected.map(\.line), [2, 3, 4, 6])
        XCTAssertTrue(report.rejected[3].reason.contains("duplicate of line 5"), report.rejected[3].reason)
        let issued = try h.engine.storefront.issueSync(order: "o", user: "u", sku: "vip", units: 1, paymentRef: "p").get()
        XCTAssertEqual(issued.codes.map { $0.secret.reveal() }, ["S-4"])
        XCTAssertEqual(issued.codes.first?.cardNumber, "C-4")
        XCTAssertEqual(issued.codes.first?.expiresAtMs, 1_809_587_289_000)
        // A CSV renamed .xlsx is refused by name, and nothing is imported.
        let fake = h.directory + "/fake.xlsx"
        try Data(("secret\n" + String(repeating: "CODE-1\n", count: 10)).utf8).write(to: URL(fileURLWithPath: fake))
        XCTAssertThrowsError(try h.engine.admin.importCSV(path: fake, sku: "vip")) { error in
            XCTAssertEqual((error as? KamiError)?.code, .badRequest)
            XCTAssertTrue("\(error)".contains("not an .xlsx"), "\(error)")
        }
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").imported, 1)
        h.assertInvariants()
    }

    func testGbkFileFromChineseExcel() throws {
        let h = Harness()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", name: "VIP"))
        // "卡密,批次\r\nGBK-CODE-1,一\r\nGBK-CODE-2,一\r\n" in GBK: 卡密 = BF A8 C3 DC, 批次 = C5 FA B4 CE, 一 = D2 BB.
        var bytes: [UInt8] = [0xBF, 0xA8, 0xC3, 0xDC, 0x2C, 0xC5, 0xFA, 0xB4, 0xCE, 0x0D, 0x0A]
        bytes += Array("GBK-CODE-1,".utf8) + [0xD2, 0xBB, 0x0D, 0x0A]
        bytes += Array("GBK-CODE-2,".utf8) + [0xD2, 0xBB, 0x0D, 0x0A]
        let report = try h.engine.admin.importCSV(path: write(bytes, in: h), sku: "vip")
        XCTAssertEqual(report.imported, 2, "\(report.rejected)")
        let voided = try h.engine.admin.void(batch: "一")
        XCTAssertEqual(voided.voided, 2, "the batch name was decoded from GBK")
    }

    func testBrokenFilesAreRejectedWithAClearErrorAndImportNothing() throws {
        let h = Harness()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", name: "VIP"))
        let noSecret = write(Array("card_number,batch\n1,2\n".utf8), in: h, name: "a.csv")
        XCTAssertThrowsError(try h.engine.admin.importCSV(path: noSecret, sku: "vip")) { error in
            XCTAssertEqual((error as? KamiError)?.code, .badRequest)
            XCTAssertTrue("\(error)".contains("secret"), "\(error)")
        }
        XCTAssertThrowsError(try h.engine.admin.importCSV(path: h.directory + "/missing.csv", sku: "vip")) { error in
            XCTAssertTrue("\(error)".contains("missing.csv"), "\(error)")
        }
        // NUL bytes, a 10 MB line, invalid UTF-8: those rows are rejected, the others imported.
        var bytes = Array("secret,batch\nGOOD-1,b\nBAD\u{0}NUL,b\n".utf8)
        bytes += [UInt8](repeating: UInt8(ascii: "x"), count: 10 * 1024 * 1024) + Array(",b\n".utf8)
        bytes += Array("GOOD-2,b\n".utf8) + [0x42, 0xFF, 0xFE, 0x2C, 0x62, 0x0A] + Array("GOOD-3,b\n".utf8)
        let report = try h.engine.admin.importCSV(path: write(bytes, in: h, name: "b.csv"), sku: "vip")
        XCTAssertEqual(report.imported, 3, "\(report.rejected)")
        XCTAssertEqual(report.rejected.map(\.line), [3, 4, 6])
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").available, 3)
        h.assertInvariants()
    }

    func testDryRunImportsNothing() throws {
        let h = Harness()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", name: "VIP"))
        let path = write(Array("secret\nA\nB\nA\n".utf8), in: h)
        let report = try h.engine.admin.importCSV(path: path, sku: "vip", dryRun: true)
        XCTAssertEqual([report.imported, report.rejectedCount], [2, 1])
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").imported, 0)
        XCTAssertEqual(try h.engine.admin.importCSV(path: path, sku: "vip").imported, 2)
        h.assertInvariants()
    }

    func testExportHasSecretsOnlyWhenAsked() throws {
        let h = Harness()
        let secrets = h.stockSku("vip", count: 5, batch: "B")
        _ = try h.engine.storefront.issueSync(order: "o", user: "u", sku: "vip", paymentRef: "p").get()
        let plain = h.directory + "/plain.csv"
        XCTAssertEqual(try h.engine.admin.exportCSV(sku: "vip", to: plain), 5)
        let text = try String(contentsOfFile: plain, encoding: .utf8)
        for secret in secrets.values { XCTAssertFalse(text.contains(secret), "secret in a plain export") }
        XCTAssertTrue(text.contains("issued"))
        XCTAssertEqual(text.utf8.filter { $0 == UInt8(ascii: "\n") }.count, 6, "header and 5 rows")
        let full = h.directory + "/full.csv"
        XCTAssertEqual(try h.engine.admin.exportCSV(sku: "vip", to: full, withSecrets: true), 5)
        let withSecrets = try String(contentsOfFile: full, encoding: .utf8)
        for secret in secrets.values { XCTAssertTrue(withSecrets.contains(secret)) }
        let mode = try FileManager.default.attributesOfItem(atPath: full)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)
        XCTAssertThrowsError(try h.engine.admin.exportCSV(sku: "vip", to: full), "never overwrites")
        // The exported file imports back into another SKU as duplicates (fingerprints are per database).
        _ = try h.engine.admin.setSku(SkuDefinition(key: "copy", name: "Copy"))
        let back = try h.engine.admin.importCSV(path: full, sku: "copy")
        XCTAssertEqual(back.imported, 0)
        XCTAssertEqual(back.rejectedCount, 5)
        h.assertInvariants()
    }

    /// An export to a path ending in .xlsx writes the CSV's columns as a workbook (mode 0600),
    /// with the secrets only when asked; it imports back as duplicates like the CSV.
    func testExportToAWorkbook() throws {
        let h = Harness()
        let secrets = h.stockSku("vip", count: 5, batch: "B")
        _ = try h.engine.storefront.issueSync(order: "o", user: "u", sku: "vip", paymentRef: "p").get()
        let csv = h.directory + "/full.csv"
        let xlsx = h.directory + "/full.xlsx"
        XCTAssertEqual(try h.engine.admin.exportCSV(sku: "vip", to: csv, withSecrets: true), 5)
        XCTAssertEqual(try h.engine.admin.exportCSV(sku: "vip", to: xlsx, withSecrets: true), 5)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: xlsx)[.posixPermissions] as? Int, 0o600)
        let workbook = try XLSXWorkbook(path: xlsx)
        XCTAssertEqual(workbook.sheets.map(\.name), ["vip"])
        let reader = try workbook.rows()
        var lines: [String] = []
        while let row = try reader.next() { lines.append(row.cells.map(\.text).joined(separator: ",")) }
        let csvLines = try String(contentsOfFile: csv, encoding: .utf8).replacingOccurrences(of: "\u{FEFF}", with: "")
            .split(separator: "\r\n").map(String.init)
        XCTAssertEqual(lines, csvLines, "the workbook holds what the CSV holds")
        XCTAssertEqual(Set(secrets.values).isSubset(of: Set(lines.flatMap { $0.split(separator: ",").map(String.init) })), true)
        let plain = h.directory + "/plain.xlsx"
        XCTAssertEqual(try h.engine.admin.exportCSV(sku: "vip", to: plain), 5)
        let plainReader = try XLSXWorkbook(path: plain).rows()
        var plainCells: [String] = []
        while let row = try plainReader.next() { plainCells += row.cells.map(\.text) }
        XCTAssertFalse(plainCells.contains("secret"))
        for secret in secrets.values { XCTAssertFalse(plainCells.contains(secret), "secret in a plain export") }
        _ = try h.engine.admin.setSku(SkuDefinition(key: "copy", name: "Copy"))
        let back = try h.engine.admin.importCSV(path: xlsx, sku: "copy")
        XCTAssertEqual(back.imported, 0)
        XCTAssertEqual(back.rejectedCount, 5)
        XCTAssertTrue(back.rejected.allSatisfy { $0.reason.contains("duplicate") }, "\(back.rejected)")
        h.assertInvariants()
    }

    /// An export checks the SKU and the target before anything on disk changes, replaces only
    /// a regular file and only when asked, and leaves no temporary file behind.
    func testExportValidatesFirstAndReplacesOnlyRegularFiles() throws {
        let h = Harness()
        _ = h.stockSku("vip", count: 3, batch: "B")
        let target = h.directory + "/out.csv"
        try "keep me\n".write(toFile: target, atomically: false, encoding: .utf8)
        func message(_ body: () throws -> Int) -> String {
            do {
                _ = try body()
                return "no error"
            } catch {
                return (error as? KamiError)?.message ?? "\(error)"
            }
        }
        XCTAssertTrue(message { try h.engine.admin.exportCSV(sku: "nope", to: target, replace: true) }.contains("nope"))
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "keep me\n", "an unknown SKU changes nothing")
        XCTAssertTrue(message { try h.engine.admin.exportCSV(sku: "vip", to: target) }.contains(target + " exists"))
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "keep me\n", "never overwritten unasked")
        XCTAssertEqual(try h.engine.admin.exportCSV(sku: "vip", to: target, replace: true), 3)
        let replaced = try String(contentsOfFile: target, encoding: .utf8)
        XCTAssertEqual(replaced.utf8.filter { $0 == UInt8(ascii: "\n") }.count, 4, "header and 3 rows")
        let mode = try FileManager.default.attributesOfItem(atPath: target)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)

        // Not regular files: refused with the path named, and left as they were.
        let victim = h.directory + "/victim.txt"
        try "victim\n".write(toFile: victim, atomically: false, encoding: .utf8)
        let link = h.directory + "/link.csv"
        XCTAssertEqual(symlink(victim, link), 0)
        let fifo = h.directory + "/fifo.csv"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let directory = h.directory + "/dir.csv"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        for (path, kind, type) in [(link, "a symbolic link", S_IFLNK), (fifo, "a fifo", S_IFIFO),
                                   (directory, "a directory", S_IFDIR)] {
            for replace in [false, true] {
                let text = message { try h.engine.admin.exportCSV(sku: "vip", to: path, withSecrets: true, replace: replace) }
                XCTAssertTrue(text.contains(path) && text.contains(kind) && text.contains("not a regular file"), text)
                var info = stat()
                XCTAssertEqual(lstat(path, &info), 0)
                XCTAssertEqual(info.st_mode & S_IFMT, type, "\(path) is still \(kind)")
            }
        }
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "victim\n")
        XCTAssertTrue(message { try h.engine.admin.exportCSV(sku: "vip", to: h.directory + "/missing/x.csv") }
            .contains(h.directory + "/missing"))
        let left = try FileManager.default.contentsOfDirectory(atPath: h.directory).filter { $0.contains("kami-export") }
        XCTAssertEqual(left, [], "no temporary file is left behind")
        h.assertInvariants()
    }

    /// A million-row file streams through with bounded memory.
    func testMillionRowImportStreams() throws {
        let rows = ProcessInfo.processInfo.environment["KAMI_IMPORT_ROWS"].flatMap(Int.init) ?? 1_000_000
        let h = Harness()
        _ = try h.engine.admin.setSku(SkuDefinition(key: "bulk", name: "Bulk"))
        let path = h.directory + "/bulk.csv"
        FileManager.default.createFile(atPath: path, contents: nil)
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        var chunk = "secret,card_number,cost_cents,batch\n"
        for n in 0..<rows {
            chunk += "BULK-\(n)-9f8e7d6c5b4a,\(6_200_000 + n),150,bulk\n"
            if chunk.utf8.count > 1 << 20 {
                file.write(chunk.data(using: .utf8)!)
                chunk = ""
            }
        }
        file.write(chunk.data(using: .utf8)!)
        try file.close()
        let before = kami_peak_resident_bytes()
        let start = Date()
        let report = try h.engine.admin.importCSV(path: path, sku: "bulk")
        let seconds = Date().timeIntervalSince(start)
        let peakGrowth = kami_peak_resident_bytes() - before
        print("import: \(rows) rows in \(String(format: "%.1f", seconds)) s (\(Int(Double(rows) / seconds)) rows/s), "
              + "peak RSS growth \(peakGrowth / 1_048_576) MiB")
        XCTAssertEqual(report.imported, rows)
        XCTAssertEqual(report.rejectedCount, 0)
        XCTAssertEqual(try h.engine.queries.stock(sku: "bulk").available, rows)
        // Bounded: the file is ~50 MB; memory grows by the pool (8 B/code), the line table (4 B/row)
        // and SQLite's 64 MiB cache, not by the file. (Not under a sanitizer: its shadow memory
        // grows with everything the process touches.)
        if ProcessInfo.processInfo.environment["KAMI_SANITIZER"] == nil {
            XCTAssertLessThan(peakGrowth, 256 * 1_048_576)
        }
    }
}
