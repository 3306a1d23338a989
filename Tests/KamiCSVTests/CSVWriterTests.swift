import KamiCSV
import KamiCore
import XCTest

final class CSVWriterTests: XCTestCase {
    private let rows = [
        CSVExportRow(codeID: 1, sku: "vip-month", state: "available", cardNumber: "6200001", costCents: 1250,
                     expiresAtMs: 1_767_139_200_000, batch: "2025-Q4", secret: Secret("AAAA-BBBB")),
        CSVExportRow(codeID: 2, sku: "vip-month", state: "issued", cardNumber: "-5", costCents: nil,
                     expiresAtMs: 1_767_139_200_123, batch: "a,\"b\"", secret: Secret("=cmd|' /C calc'!A0")),
        CSVExportRow(codeID: 3, sku: "=sku", state: "voided", cardNumber: nil, costCents: 0,
                     expiresAtMs: -1_000, batch: "测试批次", secret: Secret("'quoted")),
        CSVExportRow(codeID: 4, sku: "x", state: "reserved", batch: "@SUM(A1)", secret: Secret("+1+1")),
    ]

    private func text(_ writer: CSVWriter, _ rows: [CSVExportRow]) -> [UInt8] {
        var out: [UInt8] = []
        writer.writeHeader(into: &out)
        for row in rows { writer.write(row, into: &out) }
        return out
    }

    func testWithoutSecretsByDefault() {
        let out = text(CSVWriter(), rows)
        XCTAssertEqual(Array(out.prefix(3)), [0xEF, 0xBB, 0xBF])
        XCTAssertEqual(String(decoding: out.dropFirst(3), as: UTF8.self), [
            "code_id,sku,state,card_number,cost_cents,expires_at,batch",
            "1,vip-month,available,6200001,1250,2025-12-31,2025-Q4",
            "2,vip-month,issued,'-5,,2025-12-31T00:00:00.123Z,\"a,\"\"b\"\"\"",
            "3,'=sku,voided,,0,1969-12-31T23:59:59Z,测试批次",
            "4,x,reserved,,,,'@SUM(A1)",
            "",
        ].joined(separator: "\r\n"))
        XCTAssertFalse(String(decoding: out, as: UTF8.self).contains("AAAA"))
    }

    func testWithSecretsAndNoByteOrderMark() {
        let out = String(decoding: text(CSVWriter(includeSecrets: true, byteOrderMark: false), rows), as: UTF8.self)
        let lines = out.split(separator: "\r\n")
        XCTAssertEqual(lines[0], "code_id,sku,state,card_number,cost_cents,expires_at,batch,secret")
        XCTAssertEqual(lines[1], "1,vip-month,available,6200001,1250,2025-12-31,2025-Q4,AAAA-BBBB")
        XCTAssertEqual(lines[2], "2,vip-month,issued,'-5,,2025-12-31T00:00:00.123Z,\"a,\"\"b\"\"\",'=cmd|' /C calc'!A0")
        XCTAssertEqual(lines[3], "3,'=sku,voided,,0,1969-12-31T23:59:59Z,测试批次,''quoted")
        XCTAssertEqual(lines[4], "4,x,reserved,,,,'@SUM(A1),'+1+1")
    }

    /// An export with secrets imports back to the same codes, formula cells included, in any chunking.
    func testRoundTrip() throws {
        let out = text(CSVWriter(includeSecrets: true), rows)
        for chunking in [Chunking.whole, .bytes(1), .random(seed: 11, maximum: 7)] {
            let (items, summary) = try importAll(out, encoding: .utf8, chunking)
            XCTAssertEqual(items.rejects, [])
            XCTAssertEqual(items.rows, rows.enumerated().map { index, row in
                CSVCodeRow(line: index + 2, secret: row.secret!, cardNumber: row.cardNumber, costCents: row.costCents,
                           expiresAtMs: row.expiresAtMs, batch: row.batch)
            })
            XCTAssertEqual(summary.header?.columns,
                           [nil, nil, nil, .cardNumber, .costCents, .expiresAt, .batch, .secret])
        }
    }

    func testRoundTripOfManyGeneratedRows() throws {
        var generator = SplitMix64(seed: 42)
        let alphabet = Array("ABCxyz09 -=+@',\"测试😀".unicodeScalars)
        func word() -> String {
            let length = Int.random(in: 1...12, using: &generator)
            var scalars = String.UnicodeScalarView()
            for _ in 0..<length { scalars.append(alphabet.randomElement(using: &generator)!) }
            // Import trims surrounding spaces; keep generated values free of them.
            return String(scalars).trimmingSpaces()
        }
        var exported: [CSVExportRow] = []
        while exported.count < 500 {
            let secret = word()
            let card = word()
            let batch = word()
            guard !secret.isEmpty else { continue }
            exported.append(CSVExportRow(
                codeID: Int64(exported.count), sku: word(), state: "available",
                cardNumber: card.isEmpty ? nil : card, costCents: Int64.random(in: 0...100_000, using: &generator),
                expiresAtMs: Int64.random(in: -2_000_000_000_000...200_000_000_000_000, using: &generator),
                batch: batch.isEmpty ? nil : batch, secret: Secret(secret)))
        }
        let (items, _) = try importAll(text(CSVWriter(includeSecrets: true), exported), encoding: .utf8,
                                       .random(seed: 5, maximum: 100))
        XCTAssertEqual(items.rejects, [], "seed 42")
        XCTAssertEqual(items.rows.count, exported.count)
        for (row, original) in zip(items.rows, exported) {
            XCTAssertEqual(row.secret, original.secret)
            XCTAssertEqual(row.cardNumber, original.cardNumber)
            XCTAssertEqual(row.costCents, original.costCents)
            XCTAssertEqual(row.expiresAtMs, original.expiresAtMs)
            XCTAssertEqual(row.batch, original.batch)
        }
    }
}

private extension String {
    func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while scalars.first == " " { scalars.removeFirst() }
        while scalars.last == " " { scalars.removeLast() }
        return String(scalars)
    }
}
