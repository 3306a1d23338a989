import Foundation
import KamiCore
import KamiEngine
import KamiStore
import XCTest

/// Secrets are sealed at rest and never reach an error, a description, the audit log or an
/// export that did not ask for them: this test runs a small sale with every kind of outcome
/// and searches all of it, and the raw database files, for every secret.
final class SecretsTests: XCTestCase {
    func testNoSecretInErrorsRepliesAuditExportsOrTheDatabaseFiles() throws {
        let h = Harness(durability: .full)
        let secrets = Array(h.stockSku("vip", count: 20, limit: 2).values)
            + Array(h.stockSku("music", count: 5).values)
        _ = try h.engine.admin.setSku(SkuDefinition(key: "pack", name: "Pack", components: [("vip", 1), ("music", 1)]))
        var seen: [String] = []
        func note<T>(_ result: Result<T, KamiError>) {
            switch result {
            case .success(let value): seen.append("\(value)"); seen.append(String(reflecting: value))
            case .failure(let error): seen.append("\(error)"); seen.append(error.message)
            }
        }
        for n in 0..<8 {
            note(h.engine.storefront.issueSync(order: "i\(n)", user: "u\(n % 3)", sku: n % 2 == 0 ? "vip" : "pack", paymentRef: "p\(n)"))
            note(h.engine.storefront.reserveSync(order: "r\(n)", user: "w\(n)", sku: "vip"))
            note(h.engine.storefront.commitSync(order: "r\(n)", paymentRef: n % 3 == 0 ? "other" : "p"))
            note(h.engine.storefront.commitSync(order: "r\(n)", paymentRef: "p"))
            note(h.engine.storefront.issueSync(order: "i\(n)", user: "intruder", sku: "vip", paymentRef: "p\(n)"))
        }
        note(h.engine.storefront.refundSync(order: "i0"))
        note(h.engine.storefront.reserveSync(order: "bad order", user: "u", sku: "vip"))
        let issued = try h.engine.queries.order("i2")
        XCTAssertFalse(issued.codes.isEmpty)
        _ = try h.engine.admin.void(code: issued.codeIDs[0])
        let export = h.directory + "/export.csv"
        _ = try h.engine.admin.exportCSV(sku: "vip", to: export)
        seen.append(try String(contentsOfFile: export, encoding: .utf8))
        seen.append("\(try h.engine.admin.verify())")
        seen.append("\(try h.engine.queries.stock(sku: "vip"))")
        seen.append("\(try h.engine.queries.entitlements(user: "u0"))")
        let audit = try h.engine.storage.read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT event || ' ' || subject || ' ' || detail FROM audit_events")
            var lines: [String] = []
            while try stmt.step() { lines.append(stmt.text(0) ?? "") }
            stmt.reset()
            return lines
        }
        XCTAssertGreaterThan(audit.count, 20)
        seen += audit
        h.close()
        // The database, its WAL and shared memory, byte for byte.
        for suffix in ["", "-wal", "-shm"] {
            if let data = FileManager.default.contents(atPath: h.directory + "/" + Store.fileName + suffix) {
                seen.append(String(decoding: data, as: UTF8.self))
            }
        }
        let haystack = seen.joined(separator: "\n")
        XCTAssertGreaterThan(haystack.utf8.count, 10_000, "the search covers real content")
        for secret in secrets {
            XCTAssertFalse(haystack.contains(secret), "a secret leaked")
        }
        // The search does see the files' plaintext: card numbers are stored unsealed.
        XCTAssertTrue(haystack.contains("card-13"), "the raw database bytes were searched")
    }
}
