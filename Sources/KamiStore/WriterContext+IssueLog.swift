import KamiCore

/// The writer's side of the issue log (docs/storage.md): appending a batch of order writes as
/// records, and deriving what they imply behind the commit.
extension WriterContext {
    /// A batch of order writes only: one issue-log record each and one audit entry holding
    /// their digests, committed; the rows they imply are derived later (`derivePending`).
    mutating func appendRecords(
        _ mutations: [Mutation], injectFailure: Bool
    ) -> (Result<[Result<MutationOutcome, KamiError>], KamiError>, UInt64) {
        let saved = audit
        let savedSeq = logSeq
        let atMs = clock.nowMs()
        let endpoints = routes.current
        // Appended to `pending` as they are written (no second copy); cut again on failure.
        let firstIndex = pending.count
        pending.reserveCapacity(firstIndex + mutations.count)
        var digests: [UInt8] = []
        digests.reserveCapacity(mutations.count * IssueLog.digestBytes)
        do throws(SQLiteError) {
            try db.run(HotSQL.begin)
            for mutation in mutations {
                guard case .writeOrder(let order, let codes, let event, let ledger) = mutation else {
                    preconditionFailure("only order writes go through the issue log")
                }
                let record = Record(order: order, codes: codes, ledger: ledger,
                                    endpoints: OutboxWriter.endpoints(of: order, audit: event.event, routes: endpoints))
                let bytes = record.encode()
                let seq = logSeq + 1
                try IssueLog.append(seq: seq, atMs: atMs, event: event, record: bytes, db: db)
                digests.append(contentsOf: IssueLog.digest(seq: seq, atMs: atMs, event: event, record: bytes))
                logSeq = seq
                pending.append(PendingRecord(seq: seq, atMs: atMs, auditEvent: event.event, record: record))
            }
            try audit.append(
                AuditEvent(IssueLog.auditEvent, subject: "issue_log",
                           detail: IssueLog.auditDetail(first: savedSeq + 1, count: mutations.count)),
                atMs: atMs, db: db, records: digests)
            if injectFailure {
                throw WriterContext.injectedFault
            }
            try audit.sealTail(db: db)
            let start = monotonicNs()
            try db.run(HotSQL.commit)
            let commitNs = monotonicNs() - start
            overlay.add(pending[firstIndex...])
            return (.success(Array(repeating: .success(.done), count: mutations.count)), commitNs)
        } catch {
            try? db.execute("ROLLBACK")
            audit = saved
            logSeq = savedSeq
            pending.removeSubrange(firstIndex...)
            return (.failure(error.kamiError), 0)
        }
    }

    /// Back to fsync at every commit after a derive transaction. Failing to is fatal: every
    /// later commit would be acknowledged without reaching the disk.
    fileprivate func restoreSync() {
        guard syncFull else { return }
        do throws(SQLiteError) { try db.run(HotSQL.syncFull) } catch {
            fatalError("cannot set synchronous = FULL again after a derive transaction: \(error)")
        }
    }

    /// Derives the records that wait in a transaction of its own, which does not fsync: the
    /// records are durable already, the next commit's fsync of the WAL carries this one, and
    /// if a crash loses it the records are derived again at open.
    mutating func derivePending(limit: Int = Int.max) -> Result<(records: Int, conflicts: Int, ns: UInt64), KamiError> {
        guard !pending.isEmpty else { return .success((0, 0, 0)) }
        let start = monotonicNs()
        var deriver = Deriver(db: db)
        let count = min(limit, pending.count)
        do throws(SQLiteError) {
            // (SQLite changes the safety level only outside a transaction.)
            if syncFull { try db.run(HotSQL.syncNormal) }
            try db.run(HotSQL.begin)
            summary.reset()
            try deriver.derive(pending.prefix(count), summary: summary)
            try db.run(HotSQL.commit)
        } catch {
            try? db.execute("ROLLBACK")
            restoreSync()
            return .failure(error.kamiError)
        }
        // Committed: whatever happens next, these records are derived.
        restoreSync()
        if count == pending.count {
            pending.removeAll(keepingCapacity: count <= CommitWriter.deriveBatch * 2)
            overlay.clear()
        } else {
            overlay.clear(through: pending[count - 1].seq)
            pending.removeFirst(count)
        }
        deriveConflicts += deriver.conflicts
        return .success((count, deriver.conflicts, monotonicNs() - start))
    }
}
