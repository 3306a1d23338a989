import KamiCSV
import KamiCore
import XCTest

final class CSVRowRulesTests: XCTestCase {
    /// Imports one data row under `header` and returns the item.
    private func item(_ row: String, header: String = "secret,card_number,cost_cents,expires_at,batch") throws
        -> CSVImportItem
    {
        let items = try importAll(header + "\n" + row + "\n").items
        XCTAssertEqual(items.count, 1)
        return items[0]
    }

    private func rejectCode(_ row: String, header: String = "secret,card_number,cost_cents,expires_at,batch") throws
        -> CSVRejectCode?
    {
        guard case .reject(let reject) = try item(row, header: header) else { return nil }
        XCTAssertEqual(reject.line, 2)
        return reject.code
    }

    func testFullRow() throws {
        XCTAssertEqual(try item("  ABCD-1234 ,6200 0001,1999,2025-06-30T12:00:00Z,2025-Q2"), .row(CSVCodeRow(
            line: 2, secret: .init("ABCD-1234"), cardNumber: "6200 0001", costCents: 1999,
            expiresAtMs: 1_751_284_800_000, batch: "2025-Q2")))
        XCTAssertEqual(try item("ONLY,,,,"), .row(CSVCodeRow(line: 2, secret: .init("ONLY"))))
    }

    func testSecretsAreTrimmedOfSpacesIncludingIdeographic() throws {
        guard case .row(let row) = try item("\u{3000} 秘密 X \u{3000},,,,") else { return XCTFail() }
        XCTAssertEqual(row.secretText, "秘密 X", "inner spaces stay")
    }

    func testSecretRules() throws {
        XCTAssertEqual(try rejectCode("   ,1,,,"), .emptySecret)
        XCTAssertEqual(try rejectCode("\"\",1,,,"), .emptySecret)
        let tooLong = String(repeating: "k", count: CSVLimits.secretBytesMax + 1)
        XCTAssertEqual(try rejectCode(tooLong + ",,,,"), .secretTooLong)
        XCTAssertNil(try rejectCode(String(repeating: "k", count: CSVLimits.secretBytesMax) + ",,,,"))
        XCTAssertEqual(try rejectCode("AB\u{7}CD,,,,"), .controlCharacter)
        XCTAssertEqual(try rejectCode("\"AB\nCD\",,,,"), .controlCharacter)
        XCTAssertEqual(try rejectCode("AB\u{85}CD,,,,"), .controlCharacter, "C1 control")
        for invisible in ["\u{200B}", "\u{200D}", "\u{2028}", "\u{202E}", "\u{2060}", "\u{FEFF}"] {
            let scalar = "U+" + String(invisible.unicodeScalars.first!.value, radix: 16)
            XCTAssertEqual(try rejectCode("AB\(invisible)CD,,,,"), .controlCharacter, scalar)
            XCTAssertEqual(try rejectCode("S,,,,b\(invisible)"), .controlCharacter, "batch")
        }
        XCTAssertNil(try rejectCode("AB\u{2010}\u{FF01}\u{A0}CD,,,,"), "visible punctuation, NBSP inside")
        XCTAssertEqual(try rejectCode("1.23457E+15,,,,"), .scientificNotation)
        XCTAssertEqual(try rejectCode("OK,6.2E+18,,,"), .scientificNotation)
        XCTAssertNil(try rejectCode("1E5X,,,,"), "not Excel's pattern")
    }

    func testFormulaCellsAreRejected() throws {
        let formulas = [
            "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\"\tTAB\"", "\"\rCR\"", "\"=HYPERLINK(\"\"x\"\")\"",
        ]
        for cell in formulas {
            XCTAssertEqual(try rejectCode("\(cell),,,,"), .formula, "secret \(cell)")
            XCTAssertEqual(try rejectCode("S,\(cell),,,"), .formula, "card number \(cell)")
        }
        // A batch is data, not a code a buyer receives: accepted, and neutralised on export.
        guard case .row(let row) = try item("S,,,,=batch") else { return XCTFail() }
        XCTAssertEqual(row.batch, "=batch")
    }

    func testNeutralisedCellsAreTakenLiterally() throws {
        guard case .row(let row) = try item("'=A1,'-5,,,''x") else { return XCTFail() }
        XCTAssertEqual(row.secretText, "=A1")
        XCTAssertEqual(row.cardNumber, "-5")
        XCTAssertEqual(row.batch, "'x")
        guard case .row(let plain) = try item("'abc,,,,") else { return XCTFail() }
        XCTAssertEqual(plain.secretText, "'abc", "a quote before an ordinary character is data")
    }

    func testCost() throws {
        guard case .row(let cents) = try item("S,,0,,") else { return XCTFail() }
        XCTAssertEqual(cents.costCents, 0)
        for bad in ["-1", "12.5", "1e3", "abc", "1000000000001", "9999999999999999999999"] {
            XCTAssertEqual(try rejectCode("S,,\(bad),,"), .badCost, bad)
        }
        let yuanHeader = "secret,成本"
        for (cell, expected) in [("12", 1200), ("12.5", 1250), ("12.50", 1250), ("0.05", 5), (" 7.00 ", 700)] {
            guard case .row(let row) = try item("S,\(cell)", header: yuanHeader) else { return XCTFail(cell) }
            XCTAssertEqual(row.costCents, Int64(expected), cell)
        }
        for bad in ["12.505", "12.", ".5", "¥12", "\"1,200.00\"", "-3", "10000000001"] {
            XCTAssertEqual(try rejectCode("S,\(bad)", header: yuanHeader), .badCost, bad)
        }
    }

    func testDates() throws {
        let header = "secret,有效期"
        let cases: [(String, Int64)] = [
            ("1970-01-01", 0),
            ("2024-02-29", 1_709_164_800_000),
            ("2024/2/29", 1_709_164_800_000),
            ("2024/02/09", 1_707_436_800_000),
            ("2024-02-29T23:59:59Z", 1_709_251_199_000),
            ("2024-02-29T23:59:59.5Z", 1_709_251_199_500),
            ("2024-03-01T07:59:59+08:00", 1_709_251_199_000),
            ("2024-02-29T18:29:59.123-05:30", 1_709_251_199_123),
            ("1969-12-31T23:59:59Z", -1_000),
        ]
        for (cell, ms) in cases {
            guard case .row(let row) = try item("S,\(cell)", header: header) else { return XCTFail(cell) }
            XCTAssertEqual(row.expiresAtMs, ms, cell)
        }
        for bad in ["2023-02-29", "2024-13-01", "2024-1-5", "24-01-05", "2024-01-05T24:00:00Z", "2024-01-05T10:00:00",
                    "2024-01-05 10:00:00Z", "2024-01-05T10:00:00.1234Z", "1899-12-31", "tomorrow", "2024/1/5/"]
        {
            XCTAssertEqual(try rejectCode("S,\(bad)", header: header), .badDate, bad)
        }
    }

    func testFieldCount() throws {
        let header = "secret,batch,remark"
        XCTAssertEqual(try rejectCode("S", header: header), .fieldCount, "batch is missing")
        XCTAssertNil(try rejectCode("S,b", header: header), "trailing ignored column may be absent")
        XCTAssertNil(try rejectCode("S,b,r,,", header: header), "extra empty cells are fine")
        XCTAssertEqual(try rejectCode("S,b,r,extra", header: header), .fieldCount)
    }

    /// No reject reason, whatever the rule, contains the secret on its row.
    func testRejectReasonsNeverContainTheSecret() throws {
        let secret = "TOPSECRET9"
        let rows = [
            "\(secret)\u{1},,,,", "\(secret),,abc,,", "\(secret),,,2024-99-99,", "\(secret),=1,,,",
            "\(secret),,,,\u{1}", "\(secret),,,,,extra", "\"\(secret)\"x,,,,", "\(secret)\0,,,,",
            "=\(secret),,,,", "\(secret)" + String(repeating: "x", count: 600) + ",,,,",
        ]
        let header = "secret,card_number,cost_cents,expires_at,batch\n"
        let (items, _) = try importAll(header + rows.joined(separator: "\n"))
        XCTAssertEqual(items.rejects.count, rows.count)
        for reject in items.rejects {
            XCTAssertFalse(reject.description.contains("TOPSECRET"), "\(reject)")
        }
        // And rows print without their secret.
        let row = CSVCodeRow(line: 1, secret: .init(secret))
        XCTAssertFalse("\(row)".contains("TOPSECRET"))
        XCTAssertFalse(String(reflecting: row).contains("TOPSECRET"))
    }
}
