import Foundation
import KamiCore
import KamiCrypto
import KamiStore
import XCTest

/// The audit chain is authenticated (a MAC per entry under a key derived from the master key)
/// and anchored (its head, MAC'd, in a file beside the database): an attacker with the
/// database alone can neither cut its tail nor edit and recompute it unseen.
final class AuditAnchorTests: XCTestCase {
    var directory: String!
    let key = AuditKey(master: MasterKey.random())

    override func setUp() {
        directory = NSTemporaryDirectory() + "kami-anchor-\(UUID().uuidString)"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func open() throws -> Store { try Store(directory: directory, auditKey: key) }

    /// Writes `count` audit entries (SKU creations) and closes the store.
    private func writeEntries(_ count: Int) throws {
        let store = try open()
        for n in 0..<count {
            let box = ResultBox<MutationOutcome>()
            let sku = Sku(id: 0, key: "sku\(n)", name: "n", priceCents: 1, perUserLimit: 0, activationURLTemplate: nil)
            store.writer.submit(.writeSku(sku, audit: AuditEvent("sku-create", subject: "sku:sku\(n)", detail: "n=\(n)"))) {
                box.set($0)
            }
            _ = try box.wait().get()
        }
        XCTAssertNil(try store.verifyAuditChain())
        store.close()
    }

    private func sql(_ statement: String) throws {
        let db = try Connection(path: directory + "/" + Store.fileName)
        try db.execute(statement)
    }

    /// Recomputes every hash from `seq` on with SHA-256 alone, as an attacker without the key
    /// would after editing an entry, keeping the old MACs.
    private func recomputeHashes(from seq: Int64) throws {
        let db = try Connection(path: directory + "/" + Store.fileName)
        let rows = try db.prepare("SELECT seq, at_ms, event, subject, detail, prev_hash FROM audit ORDER BY seq")
        var entries: [(Int64, Int64, String, String, String, [UInt8])] = []
        while try rows.step() {
            entries.append((rows.int64(0), rows.int64(1), rows.text(2) ?? "", rows.text(3) ?? "", rows.text(4) ?? "",
                            rows.blob(5)))
        }
        rows.reset()
        var prev = entries.first { $0.0 == seq }!.5
        for entry in entries where entry.0 >= seq {
            var bytes = prev
            for value in [UInt64(bitPattern: entry.0), UInt64(bitPattern: entry.1)] {
                withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
            }
            for field in [entry.2, entry.3, entry.4] {
                withUnsafeBytes(of: UInt64(field.utf8.count).bigEndian) { bytes.append(contentsOf: $0) }
                bytes.append(contentsOf: field.utf8)
            }
            let hash = SHA256.hash(bytes)
            let update = try db.prepare("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?")
            update.bind(1, blob: prev)
            update.bind(2, blob: hash)
            update.bind(3, entry.0)
            try update.run()
            prev = hash
        }
    }

    func testACutTailIsReportedAtTheNextStartAndStaysInTheChain() throws {
        try writeEntries(5)
        try sql("DELETE FROM audit WHERE seq > 3")
        let store = try open()
        defer { store.close() }
        let walk = try store.walkAuditChain()
        XCTAssertNil(walk.broken, "what is left holds together")
        XCTAssertEqual(walk.recorded.count, 1)
        XCTAssertTrue(walk.recorded.first?.reason.contains("the chain was cut: the anchor records entry 5 but the chain "
            + "ends at entry 3") == true, walk.recorded.first?.reason ?? "")
        // The finding is itself entry 4, MAC'd: deleting it is a cut again.
        XCTAssertEqual(walk.entries, 4)
    }

    func testACutWhileRunningIsALiveBreak() throws {
        try writeEntries(4)
        let store = try open()
        defer { store.close() }
        // The anchor was written at open (entry 4); cut under the running store.
        try sql("DELETE FROM audit WHERE seq >= 3")
        let broken = try store.verifyAuditChain()
        XCTAssertEqual(broken?.seq, 3)
        XCTAssertTrue(broken?.reason.contains("the chain was cut") == true, broken?.reason ?? "")
    }

    func testAnEditRecomputedWithoutTheKeyIsCaughtByItsMAC() throws {
        try writeEntries(5)
        try sql("UPDATE audit SET detail = 'n=999' WHERE seq = 2")
        try recomputeHashes(from: 2)
        let store = try open()
        defer { store.close() }
        let walk = try store.walkAuditChain()
        XCTAssertEqual(walk.broken?.seq, 2)
        XCTAssertTrue(walk.broken?.reason.contains("does not match") == true || walk.recorded.contains {
            $0.reason.contains("does not match") }, "\(walk)")
        XCTAssertEqual(walk.entries, 1, "entry 1 is the last that holds")
    }

    /// One MAC per committed transaction: a batch of several entries carries it on its last,
    /// and an edit anywhere in the batch is caught there.
    func testABatchIsSealedOnceAndAnEditInsideItIsCaught() throws {
        let store = try open()
        let boxes = (0..<20).map { _ in ResultBox<MutationOutcome>() }
        store.writer.injectFailures(count: 0)
        for (n, box) in boxes.enumerated() {
            let sku = Sku(id: 0, key: "b\(n)", name: "n", priceCents: 1, perUserLimit: 0, activationURLTemplate: nil)
            store.writer.submit(.writeSku(sku, audit: AuditEvent("sku-create", subject: "sku:b\(n)", detail: "n=\(n)"))) {
                box.set($0)
            }
        }
        for box in boxes { _ = try box.wait().get() }
        XCTAssertNil(try store.verifyAuditChain())
        store.close()
        let db = try Connection(path: directory + "/" + Store.fileName)
        let sealed = try XCTUnwrap(db.scalarInt("SELECT COUNT(*) FROM audit WHERE mac IS NOT NULL"))
        XCTAssertLessThan(sealed, 20, "some batches held several entries")
        XCTAssertGreaterThanOrEqual(sealed, 1)
        try sql("UPDATE audit SET detail = 'n=-1' WHERE seq = 10")
        try recomputeHashes(from: 10)
        let reopened = try open()
        defer { reopened.close() }
        let broken = try reopened.verifyAuditChain()
        XCTAssertNotNil(broken)
        XCTAssertLessThanOrEqual(broken?.seq ?? 99, 10)
        XCTAssertTrue(broken?.reason.contains("MAC of entry") == true, broken?.reason ?? "")
    }

    func testStrippedMACsAreRecordedAndNeverSealedAgain() throws {
        try writeEntries(3)
        try sql("UPDATE audit SET mac = NULL")
        try FileManager.default.removeItem(atPath: directory + "/kami.audit-head")
        let store = try open()
        defer { store.close() }
        let walk = try store.walkAuditChain()
        XCTAssertTrue(walk.recorded.contains { $0.reason.contains("last entry 3 has no MAC") }, "\(walk.recorded)")
        // Stripped MACs under a running store are a live break.
        try sql("UPDATE audit SET mac = NULL")
        XCTAssertTrue(try store.verifyAuditChain()?.reason.contains("have no MAC") == true)
    }

    func testAForgedAnchorIsRecordedAtStart() throws {
        try writeEntries(3)
        let forged = "kami-audit-head v1 2 " + String(repeating: "ab", count: 32) + " " + String(repeating: "cd", count: 32)
        try forged.write(toFile: directory + "/kami.audit-head", atomically: true, encoding: .utf8)
        let store = try open()
        defer { store.close() }
        let walk = try store.walkAuditChain()
        XCTAssertNil(walk.broken)
        XCTAssertTrue(walk.recorded.last?.reason.contains("not one kamid wrote") == true, "\(walk.recorded)")
    }

    /// A wrong master key authenticates neither the chain's last entry nor the anchor: the
    /// store refuses to open, naming the problem, and writes nothing.
    func testAWrongMasterKeyIsRefusedBeforeAnythingIsWritten() throws {
        try writeEntries(3)
        let anchorBefore = try String(contentsOfFile: directory + "/kami.audit-head", encoding: .utf8)
        XCTAssertThrowsError(try Store(directory: directory, auditKey: AuditKey(master: MasterKey.random()))) { error in
            XCTAssertTrue("\(error)".contains("not authenticated by this master key"), "\(error)")
        }
        XCTAssertEqual(try String(contentsOfFile: directory + "/kami.audit-head", encoding: .utf8), anchorBefore)
        let store = try open()
        defer { store.close() }
        let walk = try store.walkAuditChain()
        XCTAssertNil(walk.broken)
        XCTAssertTrue(walk.recorded.isEmpty, "\(walk.recorded)")
        XCTAssertEqual(walk.entries, 3)
    }

    func testADatabaseFromBeforeMACsIsSealedOnceAtItsMigration() throws {
        try writeEntries(3)
        // Back to schema 1: what migrations 2 to 14 added goes.
        try sql("""
            ALTER TABLE audit DROP COLUMN mac; DROP TABLE sku_sourcing; DROP TABLE supplier_mappings;
            DROP TABLE supplier_state; DROP TABLE upstream_attempts; DROP TABLE supplier_costs; DROP TABLE buy_ahead;
            DROP TABLE risk_lists; ALTER TABLE skus DROP COLUMN manual_delivery; ALTER TABLE skus DROP COLUMN review_ttl_ms;
            DROP INDEX ledger_order; DROP TABLE ledger; ALTER TABLE orders DROP COLUMN amount_cents; ALTER TABLE orders DROP COLUMN labels;
            ALTER TABLE orders DROP COLUMN subsidy_cents; DROP TABLE campaigns; DROP TABLE coupon_batches; DROP TABLE coupons;
            DROP TABLE distributor_rates; DROP TABLE ledger_summary; DROP TABLE cases; DROP TABLE webhook_outbox;
            DROP TABLE activations; ALTER TABLE skus DROP COLUMN usage_guide; DROP VIEW audit_events; DROP TABLE issue_log;
            ALTER TABLE audit DROP COLUMN records;
            PRAGMA user_version = 1
            """)
        try FileManager.default.removeItem(atPath: directory + "/kami.audit-head")
        let store = try open()
        let walk = try store.walkAuditChain()
        XCTAssertNil(walk.broken)
        XCTAssertTrue(walk.recorded.isEmpty)
        XCTAssertEqual(walk.entries, 4, "three sealed entries and the audit-keyed entry")
        store.close()
        let db = try Connection(path: directory + "/" + Store.fileName)
        XCTAssertEqual(try db.scalarText("SELECT event FROM audit WHERE seq = 4"), "audit-keyed")
        XCTAssertEqual(try db.scalarInt("SELECT COUNT(*) FROM audit WHERE mac IS NOT NULL"), 2,
                       "the sealed legacy tail (entry 3) and the audit-keyed entry; the chain carries them back")
    }

    func testTheAnchorFollowsTheChainAndNeverLeadsIt() throws {
        try writeEntries(2)
        let head = try String(contentsOfFile: directory + "/kami.audit-head", encoding: .utf8)
        XCTAssertTrue(head.hasPrefix("kami-audit-head v1 2 "), head)
        XCTAssertFalse(head.contains(String(repeating: "0", count: 64)), "the hash of entry 2, not the genesis")
    }
}
