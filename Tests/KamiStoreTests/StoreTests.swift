import Foundation
import KamiCore
import KamiCrypto
import KamiLedger
import KamiStore
import Synchronization
import XCTest

final class StoreTests: XCTestCase {
    var directory: String!

    override func setUp() {
        directory = NSTemporaryDirectory() + "kami-store-\(UUID().uuidString)"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func sku(_ store: Store, _ key: String = "vip") throws -> SkuID {
        let outcome = try submit(store, .writeSku(
            Sku(id: 0, key: key, name: key, priceCents: 100, perUserLimit: 0, activationURLTemplate: nil),
            audit: AuditEvent("sku-create", subject: "sku:\(key)", detail: "")))
        guard case .skuID(let id) = outcome else { throw KamiError(.invalidState, "no id") }
        return id
    }

    private func submit(_ store: Store, _ mutation: Mutation) throws -> MutationOutcome {
        let box = Locked<Result<MutationOutcome, KamiError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        store.writer.submit(mutation) { result in
            box.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try box.withLock { $0! }.get()
    }

    private func rows(_ secrets: [String], firstLine: Int = 2) -> ArrayRowSource {
        ArrayRowSource(secrets.enumerated().map { .row(CodeRow(line: firstLine + $0.offset, secret: Secret($0.element))) })
    }

    func testSchemaIsCreatedAndDirectoryIsPrivate() throws {
        let store = try Store(directory: directory)
        defer { store.close() }
        var info = stat()
        XCTAssertEqual(stat(directory, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o700)
        XCTAssertEqual(stat(directory + "/" + Store.fileName, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600, "the database holds sealed secrets")
        XCTAssertEqual(try store.integrityCheck(), "ok")
        let version = try store.read { db throws(SQLiteError) in try db.scalarInt("PRAGMA user_version") }
        XCTAssertEqual(version, 14, "schema 14: upstream suppliers (3), buy-ahead (4), risk lists (5), manual delivery (6), money (7), campaigns (8), distributors (9), report summary (10), cases (11), webhook outbox (12), activations and usage guides (13), issue log (14)")
        let mode = try store.read { db throws(SQLiteError) in try db.scalarText("PRAGMA journal_mode") }
        XCTAssertEqual(mode, "wal")
    }

    func testNewerSchemaRefusesToOpen() throws {
        try Store(directory: directory).close()
        let db = try Connection(path: directory + "/" + Store.fileName)
        try db.execute("PRAGMA user_version = 99")
        XCTAssertThrowsError(try Store(directory: directory)) { error in
            XCTAssertTrue("\(error)".contains("99"), "\(error)")
        }
    }

    func testGroupCommitBatchesConcurrentMutations() throws {
        let store = try Store(directory: directory, durability: .full)
        defer { store.close() }
        let skuID = try sku(store)
        let key = MasterKey.random()
        let report = try store.importCodes(
            sku: skuID, source: rows((0..<2_000).map { "code-\($0)" }), sealer: Sealer(key: key), label: "t")
        XCTAssertEqual(report.imported, 2_000)
        let before = store.writer.stats
        let group = DispatchGroup()
        let failures = Atomic<Int>(0)
        for n in 0..<2_000 {
            group.enter()
            let order = Order(
                seq: Int64(n + 1), orderID: "o\(n)", user: "u", sku: skuID, units: 1, state: .committed,
                paymentRef: "p", codes: [OrderCode(codeID: report.codeIDs.lowerBound + Int64(n), sku: skuID)],
                ttlMs: 0, expiresAtMs: 0, createdAtMs: 1, updatedAtMs: 1)
            let change = CodeChange(codeID: report.codeIDs.lowerBound + Int64(n), from: .available, to: .issued, orderSeq: Int64(n + 1))
            store.writer.submit(.writeOrder(order, codes: [change], audit: AuditEvent("issue", subject: "o\(n)", detail: ""))) {
                if case .failure = $0 { failures.add(1, ordering: .relaxed) }
                group.leave()
            }
        }
        group.wait()
        let after = store.writer.stats
        XCTAssertEqual(failures.load(ordering: .relaxed), 0)
        XCTAssertEqual(after.mutations - before.mutations, 2_000)
        XCTAssertLessThan(after.batches - before.batches, 2_000, "mutations were grouped into fewer transactions")
        XCTAssertGreaterThan(after.largestBatch, 1)
        let snapshot = try store.loadSnapshot()
        XCTAssertEqual(snapshot.orders.count, 2_000)
        XCTAssertEqual(snapshot.stateCounts[skuID], [0, 0, 2_000, 0, 0])
        XCTAssertEqual(snapshot.maxOrderSeq, 2_000)
        XCTAssertNil(try store.verifyAuditChain())
    }

    func testAFailedBatchWritesNothingAndTheAuditChainStaysIntact() throws {
        let store = try Store(directory: directory)
        defer { store.close() }
        _ = try sku(store, "a")
        store.writer.injectFailures(count: 1)
        XCTAssertThrowsError(try sku(store, "b")) { error in
            XCTAssertEqual((error as? KamiError)?.code, .unavailable)
        }
        _ = try sku(store, "c")
        let snapshot = try store.loadSnapshot()
        XCTAssertEqual(snapshot.skus.map(\.key), ["a", "c"])
        XCTAssertNil(try store.verifyAuditChain())
    }

    func testAuditChainDetectsModifiedDeletedAndReorderedEntries() throws {
        let store = try Store(directory: directory)
        for key in ["a", "b", "c", "d"] { _ = try sku(store, key) }
        XCTAssertNil(try store.verifyAuditChain())
        store.close()
        let db = try Connection(path: directory + "/" + Store.fileName)
        try db.execute("UPDATE audit SET detail = 'price=0' WHERE seq = 2")
        var reopened = try Store(directory: directory)
        XCTAssertEqual(try reopened.verifyAuditChain()?.seq, 2)
        XCTAssertTrue(try reopened.verifyAuditChain()?.reason.contains("modified") ?? false)
        reopened.close()
        try db.execute("DELETE FROM audit WHERE seq = 3")
        reopened = try Store(directory: directory)
        XCTAssertEqual(try reopened.verifyAuditChain()?.seq, 2, "the first break is still reported first")
        reopened.close()
    }

    func testImportReportsDuplicatesByLineAndNeverStoresTwice() throws {
        let store = try Store(directory: directory)
        defer { store.close() }
        let skuID = try sku(store)
        let sealer = Sealer(key: MasterKey.random())
        let first = try store.importCodes(sku: skuID, source: rows(["A", "B", "C"]), sealer: sealer, label: "one")
        XCTAssertEqual(first.imported, 3)
        let items: [ImportItem] = [
            .row(CodeRow(line: 2, secret: Secret("D"))),
            .row(CodeRow(line: 3, secret: Secret("B"))),
            .rejected(RejectedRow(line: 4, reason: "bad cost")),
            .row(CodeRow(line: 5, secret: Secret("E"))),
            .row(CodeRow(line: 9, secret: Secret("D"))),
            .row(CodeRow(line: 10, secret: Secret(""))),
        ]
        let second = try store.importCodes(sku: skuID, source: ArrayRowSource(items), sealer: sealer, label: "two")
        XCTAssertEqual(second.imported, 2)
        XCTAssertEqual(second.rejectedCount, 4)
        XCTAssertEqual(second.rejected.map(\.line), [3, 4, 9, 10])
        XCTAssertTrue(second.rejected[0].reason.contains("duplicate of stored code \(first.codeIDs.lowerBound + 1)"))
        XCTAssertEqual(second.rejected[2].reason, "duplicate of line 2 in this file")
        XCTAssertEqual(second.codeIDs.count, 2)
        XCTAssertFalse(second.rejected.map(\.description).joined().contains("D"), "reasons never echo a secret")
        // Dry run: counts the same, writes nothing.
        let dry = try store.importCodes(sku: skuID, source: rows(["F", "A"]), sealer: sealer, label: "dry", dryRun: true)
        XCTAssertEqual([dry.imported, dry.rejectedCount], [1, 1])
        let counts = try store.stateCounts()
        XCTAssertEqual(counts.imported[skuID], 5)
        XCTAssertEqual(counts.rows[skuID], 5)
        // Secrets are sealed with the code id and SKU as associated data.
        let stored = try store.codes(Array(first.codeIDs))
        for (row, plain) in zip(stored, ["A", "B", "C"]) {
            let sealed = SealedSecret(keyID: row.keyID, nonce: row.nonce, ciphertextAndTag: row.sealed)
            XCTAssertEqual(try sealer.open(sealed, aad: Sealer.associatedData(codeID: row.id, skuID: skuID)).reveal(), plain)
            XCTAssertThrowsError(try sealer.open(sealed, aad: Sealer.associatedData(codeID: row.id + 1, skuID: skuID)))
        }
    }

    /// A PASSIVE checkpoint from another connection: (frames in the WAL, frames checkpointed).
    private func passiveCheckpoint() throws -> (log: Int64, done: Int64) {
        let db = try Connection(path: directory + "/" + Store.fileName)
        let stmt = try db.prepare("PRAGMA wal_checkpoint(PASSIVE)")
        defer { stmt.reset() }
        XCTAssertTrue(try stmt.step())
        return (stmt.int64(1), stmt.int64(2))
    }

    func testAReadScopeHoldsOneSnapshotFindsCodesImportedAfterItAndReleasesIt() throws {
        let store = try Store(directory: directory)
        defer { store.close() }
        let skuID = try sku(store)
        let sealer = Sealer(key: MasterKey.random())
        let first = try store.importCodes(sku: skuID, source: rows(["A", "B"]), sealer: sealer, label: "one")
        store.beginReadScope()
        var scopeOpen = true
        defer { if scopeOpen { store.endReadScope() } }
        XCTAssertEqual(try store.codes(Array(first.codeIDs)).map(\.id), Array(first.codeIDs))
        // The scope's snapshot is open: commits after it cannot all be checkpointed.
        let second = try store.importCodes(sku: skuID, source: rows(["C", "D"]), sealer: sealer, label: "two")
        let held = try passiveCheckpoint()
        XCTAssertLessThan(held.done, held.log, "an open read scope pins its snapshot")
        // Codes imported after the snapshot began are found all the same (a fresh snapshot).
        XCTAssertEqual(try store.codes(Array(second.codeIDs)).map(\.id), Array(second.codeIDs))
        XCTAssertEqual(try store.codes([first.codeIDs.lowerBound, second.codeIDs.lowerBound]).map(\.sealed.count).count, 2)
        // A code that does not exist is still an error inside a scope.
        XCTAssertThrowsError(try store.codes([second.codeIDs.upperBound + 100])) { error in
            XCTAssertTrue("\(error)".contains("is missing"), "\(error)")
        }
        store.endReadScope()
        scopeOpen = false
        // Ended: nothing pins the WAL any more.
        let released = try passiveCheckpoint()
        XCTAssertEqual(released.done, released.log, "the scope's snapshot is released at its end")
        // A second scope on the same thread works, and reads without one still do.
        store.beginReadScope()
        XCTAssertEqual(try store.codes(Array(first.codeIDs)).count, 2)
        store.endReadScope()
        XCTAssertEqual(try store.codes(Array(second.codeIDs)).count, 2)
    }

    func testACheckpointHeldBackByAReadScopeMakesScopesLetGoUntilOneGetsThrough() throws {
        // A tiny checkpoint threshold, so that one import crosses it.
        let store = try Store(directory: directory, checkpointPages: 20)
        defer { store.close() }
        let skuID = try sku(store)
        let sealer = Sealer(key: MasterKey.random())
        let first = try store.importCodes(sku: skuID, source: rows(["A", "B"]), sealer: sealer, label: "one")
        XCTAssertFalse(store.walWatch.isBehind)
        store.beginReadScope()
        var scopeOpen = true
        defer { if scopeOpen { store.endReadScope() } }
        XCTAssertEqual(try store.codes(Array(first.codeIDs)).count, 2)  // the scope holds a snapshot
        let before = store.walWatch.checkpointCount
        _ = try store.importCodes(sku: skuID, source: rows((0..<2_000).map { "BULK-\($0)" }), sealer: sealer, label: "bulk")
        XCTAssertGreaterThan(store.walWatch.checkpointCount, before, "the import crossed the threshold")
        XCTAssertTrue(store.walWatch.isBehind, "the scope's snapshot kept the checkpoint from copying everything")
        // Inside the same scope, the next read lets the snapshot go and reads without holding one.
        XCTAssertEqual(try store.codes(Array(first.codeIDs)).count, 2)
        let free = try passiveCheckpoint()
        XCTAssertEqual(free.done, free.log, "no snapshot is held any more, though the scope is still open")
        // The writer's next checkpoint gets through, and scopes hold snapshots again.
        _ = try sku(store, "other")
        XCTAssertFalse(store.walWatch.isBehind)
        store.endReadScope()
        scopeOpen = false
    }

    func testSQLiteKeepsNoMemoryStatistics() throws {
        let store = try Store(directory: directory)
        defer { store.close() }
        _ = try sku(store)
        XCTAssertTrue(Connection.memoryStatisticsOff, "sqlite3_malloc would take a process-wide mutex")
    }

    func testAFlippedByteInASealedSecretIsDetected() throws {
        let store = try Store(directory: directory)
        let skuID = try sku(store)
        let sealer = Sealer(key: MasterKey.random())
        let report = try store.importCodes(sku: skuID, source: rows(["SECRET-1"]), sealer: sealer, label: "t")
        store.close()
        let db = try Connection(path: directory + "/" + Store.fileName)
        try db.execute("UPDATE codes SET sealed = CAST(zeroblob(length(sealed)) AS BLOB) WHERE id = \(report.codeIDs.lowerBound)")
        let reopened = try Store(directory: directory)
        defer { reopened.close() }
        let row = try reopened.codes([report.codeIDs.lowerBound])[0]
        let sealed = SealedSecret(keyID: row.keyID, nonce: row.nonce, ciphertextAndTag: row.sealed)
        XCTAssertThrowsError(try sealer.open(sealed, aad: Sealer.associatedData(codeID: row.id, skuID: skuID)))
    }

    func testShutdownCommitsWhatIsQueued() throws {
        let store = try Store(directory: directory)
        let done = Atomic<Int>(0)
        for n in 0..<100 {
            store.writer.submit(.writeSku(
                Sku(id: 0, key: "k\(n)", name: "n", priceCents: 1, perUserLimit: 0, activationURLTemplate: nil),
                audit: AuditEvent("sku-create", subject: "k\(n)", detail: ""))) { result in
                if case .success = result { done.add(1, ordering: .relaxed) }
            }
        }
        store.close()
        XCTAssertEqual(done.load(ordering: .relaxed), 100)
        let reopened = try Store(directory: directory)
        defer { reopened.close() }
        XCTAssertEqual(try reopened.loadSnapshot().skus.count, 100)
        let refused = Locked<KamiError?>(nil)
        reopened.writer.shutdown()
        reopened.writer.submit(.setCodes([], audit: AuditEvent("x", subject: "y", detail: ""))) { result in
            refused.withLock { $0 = result.failure }
        }
        XCTAssertEqual(refused.withLock { $0?.code }, .unavailable)
    }

    /// The issue log: order writes are records first; what they imply is derived behind the
    /// commit, and again at open from what a crash left underived.
    func testRecordsACrashLeftUnderivedAreDerivedAtOpenAndReadsSeeTheirMovesMeanwhile() throws {
        let copy = directory + "-copy"
        defer { try? FileManager.default.removeItem(atPath: copy) }
        var written: [Order] = []
        do {
            let store = try Store(directory: directory)
            let skuID = try sku(store)
            let report = try store.importCodes(
                sku: skuID, source: rows((0..<10).map { "code-\($0)" }), sealer: Sealer(key: MasterKey.random()), label: "t")
            store.writer.pauseDerivation(true)
            for n in 0..<10 {
                let code = report.codeIDs.lowerBound + Int64(n)
                var order = Order(
                    seq: Int64(n + 1), orderID: "o\(n)", user: "u\(n)", sku: skuID, units: 1, state: .committed,
                    paymentRef: n % 2 == 0 ? "p\(n)" : nil, codes: [OrderCode(codeID: code, sku: skuID)], ttlMs: 0,
                    expiresAtMs: 0, createdAtMs: 1, updatedAtMs: 2, amountCents: 100 + Int64(n),
                    labels: OrderLabels.make(currency: "CNY", channel: "app", campaign: nil, coupon: nil, distributor: nil))
                order.subsidyCents = Int64(n)
                var sale = JournalLine(kind: .sale, orderSeq: order.seq, sku: skuID, debit: .clearing, credit: .revenue,
                                       amountCents: 100 + Int64(n), currency: "CNY")
                sale.channel = "app"
                let change = CodeChange(codeID: code, from: .available, to: .issued, orderSeq: order.seq)
                _ = try submit(store, .writeOrder(order, codes: [change], audit: AuditEvent("issue", subject: "order:o\(n)",
                                                                                             detail: "seq=\(n + 1)"),
                                                  ledger: [sale]))
                written.append(order)
            }
            XCTAssertEqual(store.writer.underivedRecords, 10)
            // Reads of code states see the records' moves before they are derived.
            let states = try store.codeStates(Array(report.codeIDs.prefix(12)))
            XCTAssertEqual(states.values.filter { $0.state == .issued }.count, 10)
            XCTAssertEqual(states[report.codeIDs.lowerBound + 3]?.orderSeq, 4)
            // The data directory as a crash now would leave it: the records, nothing derived.
            try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
            for suffix in ["", "-wal"] {
                try FileManager.default.copyItem(atPath: directory + "/" + Store.fileName + suffix,
                                                 toPath: copy + "/" + Store.fileName + suffix)
            }
            store.close()
        }
        do {
            let raw = try Connection(path: copy + "/" + Store.fileName)
            XCTAssertEqual(try raw.scalarInt("SELECT COUNT(*) FROM issue_log"), 10)
            XCTAssertEqual(try raw.scalarInt("SELECT COUNT(*) FROM orders"), 0, "nothing was derived before the copy")
        }
        // A record changed on disk after its commit, or cut from the log's end (even every
        // record not yet derived), is never derived: the store refuses to open and names it.
        for (tamper, expected) in [("UPDATE issue_log SET subject = 'order:forged' WHERE seq = 4",
                                    "issue_log record 4 was modified (its digest in audit entry"),
                                   ("DELETE FROM issue_log WHERE seq = 10", "issue_log record 10 is missing (audit entry"),
                                   ("DELETE FROM issue_log", "issue_log record 10 is missing (audit entry"),
                                   ("""
                                    INSERT INTO issue_log(seq, at_ms, event, subject, detail, rec)
                                        SELECT 11, at_ms, event, subject, detail, rec FROM issue_log WHERE seq = 10
                                    """, "issue_log record 11 is covered by no audit entry"),
                                   ("INSERT OR REPLACE INTO meta(key, value) VALUES('issue_log_derived', '12')",
                                    "says record 12 was derived, but the issue log ends at record 10")] {
            let bad = copy + "-bad"
            try? FileManager.default.removeItem(atPath: bad)
            defer { try? FileManager.default.removeItem(atPath: bad) }
            try FileManager.default.copyItem(atPath: copy, toPath: bad)
            do {
                let raw = try Connection(path: bad + "/" + Store.fileName)
                try raw.execute(tamper)
            }
            XCTAssertThrowsError(try Store(directory: bad)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
            let raw = try Connection(path: bad + "/" + Store.fileName)
            XCTAssertEqual(try raw.scalarInt("SELECT COUNT(*) FROM orders"), 0, "nothing was derived from a bad log")
        }
        let store = try Store(directory: copy)
        defer { store.close() }
        XCTAssertEqual(store.recoveredRecords, 10)
        let snapshot = try store.loadSnapshot()
        XCTAssertEqual(snapshot.orders, written, "every field of every order comes back from its record")
        XCTAssertEqual(snapshot.stateCounts.values.first, [0, 0, 10, 0, 0])
        let ledger = try store.read { db throws(SQLiteError) in
            (try db.scalarInt("SELECT COUNT(*) FROM ledger WHERE kind = 1"), try db.scalarInt("SELECT SUM(amount_cents) FROM ledger WHERE kind = 1"),
             try db.scalarText("SELECT channel FROM ledger_summary WHERE kind = 1"))
        }
        XCTAssertEqual(ledger.0, 10)
        XCTAssertEqual(ledger.1, (0..<10).reduce(0) { $0 + 100 + Int64($1) })
        XCTAssertEqual(ledger.2, "app", "the summary gets what only the record carries (the channel)")
        XCTAssertEqual(try store.issueLogStatus().derived, 10)
        XCTAssertNil(try store.verifyAuditChain())
        // Opening again derives nothing twice.
        store.close()
        let again = try Store(directory: copy)
        defer { again.close() }
        XCTAssertEqual(again.recoveredRecords, 0)
        XCTAssertEqual(try again.loadSnapshot().orders.count, 10)
    }

    /// A record whose code move finds the code elsewhere (the engine and the disk disagree) is
    /// still derived; the disagreement is kept in `meta` and survives a restart.
    func testACodeMoveThatFindsItsCodeElsewhereIsCountedAndKept() throws {
        do {
            let store = try Store(directory: directory)
            defer { store.close() }
            let skuID = try sku(store)
            let report = try store.importCodes(sku: skuID, source: rows(["only-code"]), sealer: Sealer(key: MasterKey.random()),
                                               label: "t")
            let code = report.codeIDs.lowerBound
            for n in 1...2 {
                let order = Order(seq: Int64(n), orderID: "o\(n)", user: "u\(n)", sku: skuID, units: 1, state: .committed,
                                  paymentRef: "p", codes: [OrderCode(codeID: code, sku: skuID)], ttlMs: 0, expiresAtMs: 0,
                                  createdAtMs: 1, updatedAtMs: 1)
                // The second order claims the code the first already holds.
                _ = try submit(store, .writeOrder(order, codes: [CodeChange(codeID: code, from: .available, to: .issued,
                                                                            orderSeq: Int64(n))],
                                                  audit: AuditEvent("issue", subject: "order:o\(n)", detail: "")))
            }
            try store.writer.catchUp()
            let status = try store.issueLogStatus()
            XCTAssertEqual(status.last, 2)
            XCTAssertEqual(status.derived, 2, "the record was derived all the same")
            XCTAssertEqual(status.conflicts, 1)
            XCTAssertEqual(try store.codeStates([code])[code]?.orderSeq, 1, "the code stays with the first order")
        }
        let reopened = try Store(directory: directory)
        defer { reopened.close() }
        XCTAssertEqual(try reopened.issueLogStatus().conflicts, 1)
    }
}

extension Result {
    var failure: Failure? { if case .failure(let e) = self { return e } else { return nil } }
}

final class BatchIsolationTests: XCTestCase {
    func testAMutationThatFailsOnItsOwnDoesNotFailItsBatch() throws {
        let directory = NSTemporaryDirectory() + "kami-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A 20 ms gathering delay puts all three mutations in one batch.
        let store = try Store(directory: directory, settings: CommitSettings(batchMax: 64, delayUs: 10_000))
        defer { store.close() }
        let results = Locked<[String: Result<MutationOutcome, KamiError>]>([:])
        let group = DispatchGroup()
        func submit(_ name: String, key: String) {
            group.enter()
            store.writer.submit(.writeSku(
                Sku(id: 0, key: key, name: key, priceCents: 1, perUserLimit: 0, activationURLTemplate: nil),
                audit: AuditEvent("sku-create", subject: key, detail: ""))) { result in
                results.withLock { $0[name] = result }
                group.leave()
            }
        }
        submit("first", key: "same")
        submit("duplicate", key: "same")
        submit("other", key: "other")
        group.wait()
        let stats = store.writer.stats
        XCTAssertEqual(stats.batches, 1, "all three in one transaction")
        results.withLock { results in
            XCTAssertNotNil(results["first"]?.value)
            XCTAssertNotNil(results["other"]?.value)
            XCTAssertNotNil(results["duplicate"]?.failure)
        }
        XCTAssertEqual(try store.loadSnapshot().skus.map(\.key).sorted(), ["other", "same"])
        XCTAssertNil(try store.verifyAuditChain(), "the failed mutation's audit entry was rolled back with it")
    }
}

extension Result {
    var value: Success? { if case .success(let v) = self { return v } else { return nil } }
}
