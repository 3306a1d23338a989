import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore
import XCTest

final class TamperTests: XCTestCase {
    private func database(_ h: Harness) throws -> Connection {
        try Connection(path: h.directory + "/" + Store.fileName)
    }

    func testAFlippedByteInASealedSecretIsDetectedAndNeverServed() throws {
        let h = Harness()
        let secrets = h.stockSku("vip", count: 1)
        let codeID = secrets.keys.first!
        h.close()
        // Flip one bit of the ciphertext in place.
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
        XCTAssertEqual(sealed.count, secrets[codeID]!.utf8.count + 16, "same length, one bit different")
        h.reopen()
        let error = h.engine.issueSync(order: "o1", user: "u", sku: "vip", paymentRef: "p").failure
        XCTAssertEqual(error?.code, .integrity)
        XCTAssertTrue(error?.message.contains("code \(codeID)") ?? false, error?.message ?? "")
        XCTAssertFalse(error?.message.contains(secrets[codeID]!) ?? true)
        XCTAssertThrowsError(try h.engine.order("o1"), "no order was created")
        XCTAssertEqual(try h.engine.stock(sku: "vip").available, 1, "the code went back, unserved")
        h.assertInvariants()
    }

    func testAModifiedAuditEntryIsReportedByVerify() throws {
        let h = Harness()
        h.stockSku("vip", count: 3)
        _ = try h.engine.issueSync(order: "o1", user: "u", sku: "vip", paymentRef: "p").get()
        h.assertInvariants()
        let seq = try database(h).scalarInt("SELECT seq FROM audit WHERE event = 'issue'")!
        try database(h).execute("UPDATE audit SET detail = replace(detail, 'user=u', 'user=x') WHERE seq = \(seq)")
        h.engine.barrier()
        let violations = try h.engine.verify()
        XCTAssertEqual(violations.map(\.invariant), ["audit"])
        XCTAssertTrue(violations.first?.detail.contains("entry \(seq)") ?? false, "\(violations)")
    }

    func testVerifyReportsADoubleIssuedCodeAndBrokenConservation() throws {
        let h = Harness()
        h.stockSku("vip", count: 3)
        let first = try h.engine.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").get()
        _ = try h.engine.issueSync(order: "o2", user: "u2", sku: "vip", paymentRef: "p").get()
        h.close()
        // Doctor the database: o2 now claims o1's code as well; one code row disappears.
        let db = try database(h)
        let blob = try db.scalarText("SELECT hex(codes) FROM orders WHERE order_id = 'o1'")!
        try db.execute("UPDATE orders SET codes = codes || x'\(blob)', units = 2 WHERE order_id = 'o2'")
        try db.execute("DELETE FROM code_state WHERE id = (SELECT MAX(id) FROM code_state WHERE state = 0)")
        h.reopen()
        let kinds = Set(try h.engine.verify().map(\.invariant))
        XCTAssertTrue(kinds.contains("double-issue"), "\(kinds)")
        XCTAssertTrue(kinds.contains("conservation"), "\(kinds)")
        XCTAssertFalse(first.codeIDs.isEmpty)
    }
}
