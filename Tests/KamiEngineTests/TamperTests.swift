import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore
import XCTest

final class TamperTests: XCTestCase {
    private func database(_ h: Harness) throws -> Connection {
        try Connection(path: h.directory + "/" + Store.fileName)
    }

    /// Flips one bit of a code's ciphertext in the database file.
    private func flip(_ codeID: CodeID, in h: Harness) throws {
        let db = try database(h)
        let read = try db.prepare("SELECT sealed FROM codes WHERE id = ?")
        read.bind(1, codeID)
        XCTAssertTrue(try read.step())
        var sealed = read.blob(0)
        read.reset()
        sealed[2] ^= 0x01
        let write = try db.prepare("UPDATE codes SET sealed = ? WHERE id = ?")
        write.bind(1, blob: sealed)
        write.bind(2, codeID)
        try write.run()
    }

    func testAFlippedByteInASealedSecretIsDetectedNeverServedAndQuarantined() throws {
        let h = Harness()
        let secrets = h.stockSku("vip", count: 1)
        let codeID = secrets.keys.first!
        h.close()
        try flip(codeID, in: h)
        h.reopen()
        let error = h.engine.storefront.issueSync(order: "o1", user: "u", sku: "vip", paymentRef: "p").failure
        XCTAssertEqual(error?.code, .integrity)
        XCTAssertTrue(error?.message.contains("\(codeID)") ?? false, error?.message ?? "")
        XCTAssertFalse(error?.message.contains(secrets[codeID]!) ?? true)
        XCTAssertThrowsError(try h.engine.queries.order("o1"), "no order was created")
        h.engine.admin.barrier()
        let stock = try h.engine.queries.stock(sku: "vip")
        XCTAssertEqual([stock.available, stock.voided], [0, 1], "the bad code is out of circulation")
        XCTAssertEqual(h.engine.storefront.issueSync(order: "o1", user: "u", sku: "vip", paymentRef: "p").failure?.code, .soldOut)
        h.assertInvariants()
    }

    func testAReservedOrderWithATamperedCodeGetsAReplacementOnCommit() throws {
        let h = Harness()
        let secrets = h.stockSku("vip", count: 3)
        let held = try h.engine.storefront.reserveSync(order: "o1", user: "u", sku: "vip", units: 2).get()
        h.close()
        try flip(held.codeIDs[0], in: h)
        h.reopen()
        let committed = try h.engine.storefront.commitSync(order: "o1", paymentRef: "p").get()
        XCTAssertEqual(committed.codes.count, 2, "the paid order still gets two codes")
        XCTAssertFalse(committed.codeIDs.contains(held.codeIDs[0]))
        XCTAssertTrue(committed.codeIDs.contains(held.codeIDs[1]))
        for code in committed.codes { XCTAssertEqual(code.secret.reveal(), secrets[code.codeID]) }
        let stock = try h.engine.queries.stock(sku: "vip")
        XCTAssertEqual([stock.available, stock.reserved, stock.issued, stock.voided], [0, 0, 2, 1])
        XCTAssertEqual(try h.engine.storefront.commitSync(order: "o1", paymentRef: "p").get().codes, committed.codes)
        h.assertInvariants()
    }

    func testATamperedCodeWithoutReplacementStockLeavesTheOrderReserved() throws {
        let h = Harness()
        h.stockSku("vip", count: 1)
        let held = try h.engine.storefront.reserveSync(order: "o1", user: "u", sku: "vip").get()
        h.close()
        try flip(held.codeIDs[0], in: h)
        h.reopen()
        let error = h.engine.storefront.commitSync(order: "o1", paymentRef: "p").failure
        XCTAssertEqual(error?.code, .integrity)
        XCTAssertTrue(error?.message.contains("refund") ?? false, error?.message ?? "")
        XCTAssertEqual(try h.engine.queries.order("o1").state, .reserved)
        h.assertInvariants()
    }

    func testAModifiedAuditEntryIsReportedByVerify() throws {
        let h = Harness()
        h.stockSku("vip", count: 3)
        _ = try h.engine.storefront.issueSync(order: "o1", user: "u", sku: "vip", paymentRef: "p").get()
        h.assertInvariants()
        h.engine.admin.barrier()
        // The issue's audit event is in its issue-log record, whose digest the batch's audit
        // entry holds.
        let seq = try XCTUnwrap(database(h).scalarInt("SELECT seq FROM issue_log WHERE event = 'issue'"))
        try database(h).execute("UPDATE issue_log SET detail = replace(detail, 'user=u', 'user=x') WHERE seq = \(seq)")
        let violations = try h.engine.admin.verify()
        XCTAssertEqual(violations.map(\.invariant), ["audit"])
        XCTAssertTrue(violations.first?.detail.contains("issue_log record \(seq) was modified") ?? false, "\(violations)")
        // And the audit entry that holds its digest.
        try database(h).execute("UPDATE issue_log SET detail = replace(detail, 'user=x', 'user=u') WHERE seq = \(seq)")
        XCTAssertEqual(try h.engine.admin.verify().map(\.invariant), [])
        let entry = try XCTUnwrap(database(h).scalarInt("SELECT seq FROM audit WHERE event = 'issue-log'"))
        try database(h).execute("UPDATE audit SET records = zeroblob(length(records)) WHERE seq = \(entry)")
        let again = try h.engine.admin.verify()
        XCTAssertEqual(again.map(\.invariant), ["audit"])
        XCTAssertTrue(again.first?.detail.contains("entry \(entry)") ?? false, "\(again)")
    }

    func testARecordCutFromTheIssueLogOrAppendedWithoutTheWriterIsReported() throws {
        let h = Harness()
        h.stockSku("vip", count: 5)
        for n in 0..<3 {
            _ = try h.engine.storefront.issueSync(order: "o\(n)", user: "u\(n)", sku: "vip", paymentRef: "p").get()
        }
        h.engine.admin.barrier()
        XCTAssertEqual(try h.engine.admin.verify().map(\.invariant), [])
        let last = try XCTUnwrap(database(h).scalarInt("SELECT MAX(seq) FROM issue_log"))
        try database(h).execute("""
            INSERT INTO issue_log(seq, at_ms, event, subject, detail, rec)
            SELECT seq + 1, at_ms, event, subject, detail, rec FROM issue_log WHERE seq = \(last)
            """)
        let appended = try h.engine.admin.verify()
        XCTAssertEqual(appended.map(\.invariant), ["audit"])
        XCTAssertTrue(appended.first?.detail.contains("issue_log records \(last + 1)...\(last + 1) are covered by no audit entry") ?? false,
                      "\(appended)")
        try database(h).execute("DELETE FROM issue_log WHERE seq >= \(last)")
        let cut = try h.engine.admin.verify()
        XCTAssertEqual(cut.map(\.invariant), ["issue-log", "audit"])
        XCTAssertTrue(cut.first?.detail.contains("record \(last) is derived, but the log ends at \(last - 1)") ?? false, "\(cut)")
        XCTAssertTrue(cut.last?.detail.contains("issue_log record \(last) is missing") ?? false, "\(cut)")
    }

    func testVerifyReportsADoubleIssuedCodeAndBrokenConservation() throws {
        let h = Harness()
        h.stockSku("vip", count: 3)
        let first = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").get()
        _ = try h.engine.storefront.issueSync(order: "o2", user: "u2", sku: "vip", paymentRef: "p").get()
        h.close()
        // Doctor the database: o2 now claims o1's code as well; one code row disappears.
        let db = try database(h)
        let blob = try db.scalarText("SELECT hex(codes) FROM orders WHERE order_id = 'o1'")!
        try db.execute("UPDATE orders SET codes = codes || x'\(blob)', units = 2 WHERE order_id = 'o2'")
        try db.execute("DELETE FROM code_state WHERE id = (SELECT MAX(id) FROM code_state WHERE state = 0)")
        h.reopen()
        let kinds = Set(try h.engine.admin.verify().map(\.invariant))
        XCTAssertTrue(kinds.contains("double-issue"), "\(kinds)")
        XCTAssertTrue(kinds.contains("conservation"), "\(kinds)")
        XCTAssertFalse(first.codeIDs.isEmpty)
    }

    func testVerifyReportsRiskListRowsNoAuditedChangeExplains() throws {
        let h = Harness()
        func write(_ row: RiskListRow, add: Bool) {
            let box = ResultBox<MutationOutcome>()
            let event = AuditEvent(add ? "risk-list-add" : "risk-list-remove", subject: "risk-list:\(row.list)",
                                   detail: "\(row.kind)=\(row.value)" + (row.note.isEmpty ? "" : " note=\(row.note)"))
            h.engine.storage.writer.submit(.writeRiskList(row, add: add, audit: event)) { box.set($0) }
            XCTAssertNotNil(box.wait().value)
        }
        write(RiskListRow(list: "block", kind: "user", value: "mallory", note: "chargebacks"), add: true)
        write(RiskListRow(list: "block", kind: "ip", value: "203.0.113.0/24", note: ""), add: true)
        write(RiskListRow(list: "block", kind: "ip", value: "203.0.113.0/24", note: ""), add: false)
        write(RiskListRow(list: "allow", kind: "device", value: "kiosk-1", note: ""), add: true)
        h.assertInvariants()
        h.close()
        // Rows changed behind kamid's back: one slipped in, one deleted.
        let db = try database(h)
        try db.execute("INSERT INTO risk_lists(list, kind, value, note, added_at_ms) VALUES('allow', 'user', 'friend-of-staff', '', 0)")
        try db.execute("DELETE FROM risk_lists WHERE value = 'mallory'")
        h.reopen()
        let found = try h.engine.admin.verify().filter { $0.invariant == "risk-lists" }.map(\.detail)
        XCTAssertEqual(found.count, 2, "\(found)")
        XCTAssertTrue(found.contains { $0.contains("allow user=friend-of-staff") && $0.contains("no audited change") }, "\(found)")
        XCTAssertTrue(found.contains { $0.contains("block user=mallory") && $0.contains("missing") }, "\(found)")
    }

    func testVerifyReportsTwoOpenBuyAheadsOfOneSkuAndMalformedOnes() throws {
        let h = Harness()
        h.stockSku("vip", count: 1)
        h.assertInvariants()
        h.close()
        let db = try database(h)
        let sku = try XCTUnwrap(db.scalarInt("SELECT id FROM skus WHERE key = 'vip'"))
        try db.execute("""
            INSERT INTO buy_ahead(sku_id, supplier, customer_no, units, cost_cents, sends, state, detail, created_at_ms, updated_at_ms)
            VALUES(\(sku), 'a', 'ba-1', 10, 500, 1, 1, '', 0, 0), (\(sku), 'b', 'ba-2', 10, 500, 1, 2, '', 0, 0),
                  (\(sku), 'a', 'ba-3', 0, 500, 1, 3, '', 0, 0)
            """)
        h.reopen()
        let found = try h.engine.admin.verify().filter { $0.invariant == "upstream" }.map(\.detail)
        XCTAssertTrue(found.contains { $0.contains("ba-1 and ba-2 of vip are open at once") }, "\(found)")
        XCTAssertTrue(found.contains { $0.contains("ba-3 is malformed") }, "\(found)")
        XCTAssertEqual(found.count, 2, "\(found)")
    }
}
