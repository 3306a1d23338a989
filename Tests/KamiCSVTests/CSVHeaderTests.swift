import KamiCSV
import KamiCore
import XCTest

final class CSVHeaderTests: XCTestCase {
    func testHeaderNamesAreTrimmedCaseFoldedAndAliased() throws {
        let text = " SECRET ,Card Number,\u{3000}cost-cents ,Expires_At,批次\nS-1,C-1,100,2025-01-01,b\n"
        let (items, summary) = try importAll(text)
        XCTAssertEqual(summary.header?.columns, [.secret, .cardNumber, .costCents, .expiresAt, .batch])
        XCTAssertEqual(items.rows.first?.costCents, 100)
        XCTAssertEqual(items.rows.first?.cardNumber, "C-1")
        for alias in ["卡密", "密码", "secret"] {
            XCTAssertEqual(try importAll("\(alias)\nX-1\n").items.rows.map(\.secretText), ["X-1"], alias)
        }
    }

    func testUnknownColumnsAreIgnoredWithWarnings() throws {
        let (items, summary) = try importAll("面值,secret,备注,\nIGNORED,S-1,note,\n")
        XCTAssertEqual(items.rows.map(\.secretText), ["S-1"])
        XCTAssertEqual(summary.header?.columns, [nil, .secret, nil, nil])
        XCTAssertEqual(summary.warnings, [
            "column 1 '面值' is not a known column; ignored",
            "column 3 '备注' is not a known column; ignored",
            "column 4 has no name; ignored",
        ])
    }

    func testMissingSecretColumnNamesWhatWasFoundButNotData() {
        let error = assertImportError(Array("card_number,remark\n1,2\n".utf8), .missingSecretColumn)
        XCTAssertEqual(error?.message, "line 1: the header has no secret column (one of secret, 卡密, 密码);"
            + " found 'card_number', 'remark'. The first non-blank line must be the header row.")

        // A file without a header row: its first row holds a secret, which must not be echoed.
        let noHeader = assertImportError(Array("\n\nAB12-CD34-EF56,6200001\n".utf8), .missingSecretColumn)
        XCTAssertNotNil(noHeader)
        XCTAssertFalse(noHeader?.description.contains("AB12") ?? true, "\(noHeader!)")
        XCTAssertFalse(noHeader?.description.contains("6200001") ?? true)
        XCTAssertTrue(noHeader?.message.hasPrefix("line 3:") ?? false, "\(noHeader!)")
        XCTAssertTrue(noHeader?.message.contains("column 1 (14 bytes, not shown") ?? false, "\(noHeader!)")
    }

    func testDuplicateColumnsAreAnError() {
        let error = assertImportError(Array("secret,batch,卡密\n".utf8), .duplicateColumn)
        XCTAssertEqual(error?.message,
                       "line 1: columns 1 'secret' and 3 '卡密' both give the secret; keep one of them")
        let cost = assertImportError(Array("secret,cost_cents,成本\n".utf8), .duplicateColumn)
        XCTAssertTrue(cost?.message.contains("both give the cost") ?? false, "\(String(describing: cost))")
    }

    func testEmptyInputHasNoHeader() {
        assertImportError([], .noHeader)
        assertImportError(Array("\n\r\n,,\n  ,\n".utf8), .noHeader)
    }

    func testBadHeaderRecordIsAnError() {
        let error = assertImportError(Array("sec\0ret\nX\n".utf8), .badHeader)
        XCTAssertEqual(error?.message, "line 1: NUL byte in record (in the header row);"
            + " if the file is UTF-16, save it as CSV UTF-8 instead")
        // What Excel's "Unicode text" looks like: UTF-16LE with a BOM.
        let utf16: [UInt8] = [0xFF, 0xFE] + Array("secret\n".utf8).flatMap { [$0, 0] }
        assertImportError(utf16, .badHeader)
        assertImportError(utf16, encoding: .gb18030, .badHeader)
    }

    func testLineCount() throws {
        XCTAssertEqual(try importAll("secret\nA\nB").summary.lineCount, 3, "last line without a line end")
        XCTAssertEqual(try importAll("secret\r\nA\r\n\r\n").summary.lineCount, 3)
        XCTAssertEqual(try importAll("secret\n\"A\n").summary.lineCount, 2, "inside an unterminated quote")
    }

    func testHeaderAfterBlankLinesAndBlankRows() throws {
        let (items, summary) = try importAll("\n,,\r\nsecret,batch\n,\nS-1,b\n  ,  \n")
        XCTAssertEqual(summary.header?.line, 3)
        XCTAssertEqual(items.rows.map(\.line), [5])
        XCTAssertEqual(summary.blankRecordCount, 3)
        XCTAssertEqual(summary.lineCount, 6)
    }
}
