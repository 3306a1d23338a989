public import KamiCore
import Foundation
import Synchronization

/// How hard a commit is pushed to disk before its callers are told "done".
public enum Durability: String, Sendable, CaseIterable {
    /// `synchronous=FULL`: the WAL is fsync'd at every commit. Survives power loss on honest
    /// storage. The default.
    case full
    /// `synchronous=NORMAL`: survives a crash of kamid, but the last commits may roll back on
    /// power loss.
    case normal
}

/// Group-commit settings.
public struct CommitSettings: Sendable {
    /// Most mutations per transaction (1...`Limits.commitBatchMax`).
    public var batchMax: Int
    /// How long to wait for more mutations when a batch is not full, in microseconds. 0 commits
    /// as soon as the disk is free, which already batches everything that queued meanwhile.
    public var delayUs: Int
    /// Whether the writer derives issue-log records whenever its queue is empty. Off, it
    /// derives only at points fixed by the sequence of writes (past `CommitWriter.deriveBatch`
    /// records, before other mutations and jobs, for readers, at shutdown): what the
    /// deterministic simulation needs to replay a seed exactly.
    public var deriveWhenIdle = true

    /// Makes settings, clamped to their limits.
    public init(batchMax: Int = Limits.commitBatchMax, delayUs: Int = 0) {
        precondition(batchMax >= 1 && batchMax <= Limits.commitBatchMax, "batchMax \(batchMax) out of range")
        precondition(delayUs >= 0 && delayUs <= Limits.commitDelayUsMax, "delayUs \(delayUs) out of range")
        self.batchMax = batchMax
        self.delayUs = delayUs
    }
}

/// Counters of the writer, for metrics and benchmarks.
public struct CommitStats: Sendable {
    public var batches: Int = 0
    public var mutations: Int = 0
    public var failedBatches: Int = 0
    public var largestBatch: Int = 0
    /// Sum of COMMIT durations (the fsync), nanoseconds.
    public var commitNsTotal: UInt64 = 0
    /// Transactions that derived issue-log records, and how many records they derived.
    public var derives: Int = 0
    public var derivedRecords: Int = 0
    /// Sum of the derive transactions' durations, nanoseconds.
    public var deriveNsTotal: UInt64 = 0
    /// Code moves a record made of a code no longer in the state it expected (0 unless the
    /// engine and the database disagreed; `verify` says where).
    public var deriveConflicts: Int = 0
    /// Derive transactions that failed (the disk): their records wait and are derived again.
    public var failedDerives: Int = 0
}

/// The one writer of the database. Mutations from any thread queue here; the writer thread
/// takes everything queued (up to `batchMax`), applies it in one transaction, commits (one
/// fsync), and only then calls each mutation's completion: Redis's `aof.c` discipline of
/// "write and sync once per pass, reply after".
///
/// State machine: `running` → `stopping` (drains the queue, refuses new work) → `stopped`
/// (terminal).
public final class CommitWriter: Sendable {
    private enum State { case running, stopping, stopped }

    private enum Work {
        case mutation(Mutation, MutationCompletion)
        case job(@Sendable (inout WriterContext) -> Void)
    }

    /// Queue and state, protected by `lock`.
    private final class Shared: @unchecked Sendable {
        var queue: [Work] = []
        var state = State.running
        var writerWaiting = false
        var stats = CommitStats()
        var settings = CommitSettings()
    }

    private let lock = ConditionLock()
    private let shared = Shared()
    private let clock: any Clock
    /// The connection and audit chain; touched only by the writer thread (and by `init`).
    private let context: Locked<WriterContext?>
    private let finished = ConditionLock()
    private let done = Atomic<Bool>(false)
    /// Test hook: the next N batches fail as if the disk were full.
    private let injectedFailures = Atomic<Int>(0)
    /// Mutations per committed batch (metrics).
    public let batchSizes = Histogram(bounds: Histogram.powersOfTwo(upTo: Limits.commitBatchMax))
    /// Microseconds each COMMIT took: the fsync of the WAL with durability full (metrics).
    public let commitLatencyUs = Histogram(bounds: Histogram.oneTwoFive(from: 10, to: 1_000_000))
    private let lastBatchFailedOnDisk = Atomic<Bool>(false)
    /// Whether the last batch failed because of the disk (full, I/O error, read-only):
    /// readiness reports it until a batch commits again.
    public var diskFailing: Bool { lastBatchFailedOnDisk.load(ordering: .relaxed) }
    /// The writer thread's pthread id, to catch a completion that would wait for the writer.
    private let writerThread = Atomic<UInt>(0)

    /// Where the chain's tail goes after each durable batch.
    private let anchor: AuditAnchor?
    /// Issue-log records appended and not yet derived (readers catch up when it is not 0).
    private let pendingRecords = Atomic<Int>(0)
    /// The code moves of those records, for readers of code states.
    let overlay: CodeOverlay
    private let derivationPaused = Atomic<Bool>(false)
    /// After a failed derive, when the writer tries again on its own, and how long it waited
    /// (writer thread only).
    nonisolated(unsafe) private var deriveRetryAtNs: UInt64 = 0
    nonisolated(unsafe) private var deriveBackoffNs: UInt64 = 0

    /// Records that wait before the writer derives them all between two batches (when it is
    /// never idle: under a load that keeps its queue full, big derivations cost the least).
    public static let deriveBatch = 1_024
    /// Past `deriveBatch`, records derived after each batch: twice the batch's own count, at
    /// least this many, so derivation keeps up without stalling one batch for all of them.
    static let deriveStep = 256
    /// Records derived at a time when the writer's queue is empty: a slice takes about
    /// 0.1 ms, so work that arrives meanwhile waits at most that long, and under a closed-loop
    /// load the derivation fits in the gaps between batches (the clients' round trips leave
    /// them). Measured at 64 connections × 1: slices of 32 kept p99 within 20% of the direct
    /// path's, slices of 128 and 512 put it 35–65% above.
    static let deriveSlice = 64
    /// After a failed derive, the first and the longest wait before the writer tries again on
    /// its own (doubling between them).
    static let deriveRetryFirstNs: UInt64 = 10_000_000
    static let deriveRetryMaxNs: UInt64 = 1_000_000_000

    init(db: Connection, audit: AuditChain, anchor: AuditAnchor?, settings: CommitSettings, clock: any Clock,
         routes: OutboxRoutes = OutboxRoutes(), logSeq: Int64 = 0, syncFull: Bool = true) {
        self.anchor = anchor
        let overlay = CodeOverlay()
        self.overlay = overlay
        shared.settings = settings
        self.clock = clock
        self.context = Locked(WriterContext(db: db, audit: audit, clock: clock, routes: routes, logSeq: logSeq,
                                            syncFull: syncFull, overlay: overlay))
        let thread = Thread { [self] in self.run() }
        thread.name = "kami-writer"
        thread.start()
    }

    /// Whether the caller runs on the writer thread (completions do; a retry or a slow step
    /// must not).
    public var isWriterThread: Bool { writerThread.load(ordering: .relaxed) == pthread_self() }

    /// The group-commit settings in effect.
    public var settings: CommitSettings {
        lock.lock()
        defer { lock.unlock() }
        return shared.settings
    }

    /// Changes the group-commit settings (reload); the next batch uses them.
    public func setSettings(_ settings: CommitSettings) {
        lock.lock()
        shared.settings = settings
        lock.unlock()
    }

    /// Queues a mutation. `completion` runs on the writer thread after the batch holding it is
    /// durable, or with an error (`BUSY` when the queue is full, `UNAVAILABLE` when stopping or
    /// when the disk failed: then nothing of the batch was written).
    public func submit(_ mutation: Mutation, completion: @escaping MutationCompletion) {
        lock.lock()
        guard shared.state == .running else {
            lock.unlock()
            completion(.failure(KamiError(.unavailable, "the store is shutting down")))
            return
        }
        guard shared.queue.count < Limits.commitQueueDepthMax else {
            lock.unlock()
            completion(.failure(KamiError(.busy, "commit queue full (\(Limits.commitQueueDepthMax)); retry")))
            return
        }
        shared.queue.append(.mutation(mutation, completion))
        let wake = shared.writerWaiting
        lock.unlock()
        if wake { lock.signal() }
    }

    /// Runs `body` on the writer thread between batches, with the connection to itself (for
    /// imports and other large transactions), and waits for its result.
    public func perform<T: Sendable>(
        _ body: @escaping @Sendable (inout WriterContext) throws(KamiError) -> T
    ) throws(KamiError) -> T {
        precondition(writerThread.load(ordering: .relaxed) != pthread_self(),
                     "perform called on the writer thread (from a completion?): it would wait for itself forever")
        let box = ResultBox<T>()
        lock.lock()
        guard shared.state == .running else {
            lock.unlock()
            throw KamiError(.unavailable, "the store is shutting down")
        }
        shared.queue.append(.job({ context in
            let result: Result<T, KamiError>
            if let failure = context.deriveFailure {
                result = .failure(KamiError(failure.code, "the store cannot bring its tables up to date with the issue log: "
                    + failure.message))
            } else {
                do throws(KamiError) { result = .success(try body(&context)) } catch { result = .failure(error) }
            }
            box.set(result)
        }))
        let wake = shared.writerWaiting
        lock.unlock()
        if wake { lock.signal() }
        return try box.wait().get()
    }

    /// Test hook: with `true`, the writer derives nothing between batches or when idle (only
    /// when something needs the derived tables, and at shutdown): the data directory then
    /// looks as a crash right after the commits would leave it.
    public func pauseDerivation(_ paused: Bool) { derivationPaused.store(paused, ordering: .relaxed) }

    /// Test hook: makes the next `count` batches fail as if the disk were full (nothing of
    /// them is written, their callers get UNAVAILABLE).
    public func injectFailures(count: Int) { injectedFailures.store(count, ordering: .relaxed) }

    /// A snapshot of the counters.
    public var stats: CommitStats { lock.withLock { shared.stats } }

    /// Issue-log records appended and not yet derived.
    public var underivedRecords: Int { pendingRecords.load(ordering: .acquiring) }

    /// Derives every issue-log record appended so far before returning, so that a read of
    /// the derived tables (orders, code states, ledger, outbox) that starts afterwards sees
    /// everything committed before the call. A no-op on the writer thread and when nothing
    /// waits.
    /// Throws when they cannot be derived now (the disk): a read would see stale rows.
    public func catchUp() throws(KamiError) {
        guard pendingRecords.load(ordering: .acquiring) > 0, !isWriterThread else { return }
        // A job derives what waits before it runs, and fails without running when that fails.
        try perform { _ throws(KamiError) in }
    }

    /// Stops accepting work, commits what is queued, and waits for the writer thread to end.
    public func shutdown() {
        lock.withLock {
            if shared.state == .running { shared.state = .stopping }
        }
        lock.broadcast()
        finished.withLock {
            while !done.load(ordering: .acquiring) { finished.wait() }
        }
    }

    private func run() {
        writerThread.store(pthread_self(), ordering: .relaxed)
        while true {
            lock.lock()
            while shared.queue.isEmpty && shared.state == .running {
                shared.writerWaiting = true
                if pendingRecords.load(ordering: .relaxed) > 0 && !derivationPaused.load(ordering: .relaxed)
                    && shared.settings.deriveWhenIdle
                {
                    // Records wait and nothing else does: derive a slice of them, then look
                    // at the queue again (later while derivation is failing: the disk).
                    if monotonicNs() >= deriveRetryAtNs {
                        shared.writerWaiting = false
                        lock.unlock()
                        derive(limit: CommitWriter.deriveSlice)
                        lock.lock()
                    } else {
                        lock.wait(untilMonotonicNs: deriveRetryAtNs)
                        shared.writerWaiting = false
                    }
                    continue
                }
                lock.wait()
                shared.writerWaiting = false
            }
            if shared.queue.isEmpty {
                lock.unlock()
                // Stopping: what was appended is derived before the writer ends.
                derive()
                lock.withLock { shared.state = .stopped }
                break
            }
            let settings = shared.settings
            if settings.delayUs > 0 && shared.queue.count < settings.batchMax && shared.state == .running {
                let deadline = monotonicNs() + UInt64(settings.delayUs) * 1000
                shared.writerWaiting = true
                while shared.queue.count < settings.batchMax && monotonicNs() < deadline {
                    lock.wait(untilMonotonicNs: deadline)
                }
                shared.writerWaiting = false
            }
            let take = min(shared.queue.count, settings.batchMax)
            var work: [Work] = []
            if take == shared.queue.count {
                // All of it (the usual case): hand the array over rather than copy it.
                swap(&work, &shared.queue)
            } else {
                work = Array(shared.queue.prefix(take))
                shared.queue.removeFirst(take)
            }
            lock.unlock()
            process(work)
            if pendingRecords.load(ordering: .relaxed) >= CommitWriter.deriveBatch && monotonicNs() >= deriveRetryAtNs
                && !derivationPaused.load(ordering: .relaxed)
            {
                derive(limit: max(CommitWriter.deriveStep, 2 * work.count))
            }
        }
        context.withLock { $0 = nil }
        finished.withLock { done.store(true, ordering: .releasing) }
        finished.broadcast()
    }

    /// Applies a run of mutations as one transaction; jobs run alone, in queue order.
    /// Sets the writer connection's page cache (best effort: a failure keeps the old size).
    private static func setCache(_ context: inout WriterContext, kib: Int) {
        try? context.db.execute("PRAGMA cache_size = -\(kib)")
    }

    private func process(_ work: [Work]) {
        var batch: [Mutation] = []
        var completions: [MutationCompletion] = []
        batch.reserveCapacity(work.count)
        completions.reserveCapacity(work.count)
        for item in work {
            switch item {
            case .mutation(let mutation, let completion):
                batch.append(mutation)
                completions.append(completion)
            case .job(let body):
                commit(batch, completions)
                batch.removeAll()
                completions.removeAll()
                // A job reads and writes the derived tables: bring them up to date first. When
                // that fails, the job is told and does not run (it would read stale rows).
                let failure = derive()
                let tail = context.withLock { context in
                    context!.deriveFailure = failure
                    // A job (an import of millions of rows into the fingerprint index, an
                    // export) gets the large page cache while it runs; issuing appends to the
                    // right edge of integer-keyed tables and needs little.
                    CommitWriter.setCache(&context!, kib: Store.jobCacheKiB)
                    body(&context!)
                    CommitWriter.setCache(&context!, kib: Store.writerCacheKiB)
                    pendingRecords.store(context!.pending.count, ordering: .releasing)
                    return (context!.audit.lastSeq, context!.audit.lastHash)
                }
                anchor?.publish(seq: tail.0, hash: tail.1)
            }
        }
        commit(batch, completions)
    }

    /// Derives the issue-log records that wait (at most `limit`, oldest first), in a
    /// transaction of their own.
    @discardableResult
    private func derive(limit: Int = Int.max) -> KamiError? {
        let (result, pending) = context.withLock { context in (context!.derivePending(limit: limit), context!.pending.count) }
        pendingRecords.store(pending, ordering: .releasing)
        let done: (records: Int, conflicts: Int, ns: UInt64)
        switch result {
        case .success(let value): done = value
        case .failure(let error):
            lock.withLock { shared.stats.failedDerives += 1 }
            // Not again between batches for a while (it is tried whenever something needs it).
            deriveBackoffNs = min(max(deriveBackoffNs * 2, CommitWriter.deriveRetryFirstNs), CommitWriter.deriveRetryMaxNs)
            deriveRetryAtNs = monotonicNs() + deriveBackoffNs
            return error
        }
        deriveBackoffNs = 0
        deriveRetryAtNs = 0
        guard done.records > 0 else { return nil }
        lock.withLock {
            shared.stats.derives += 1
            shared.stats.derivedRecords += done.records
            shared.stats.deriveNsTotal += done.ns
            shared.stats.deriveConflicts += done.conflicts
        }
        return nil
    }

    private func commit(_ batch: [Mutation], _ completions: [MutationCompletion]) {
        guard !batch.isEmpty else { return }
        let inject = takeInjectedFailure()
        let (outcome, commitNs, tail, pending, conflicts) = context.withLock { context in
            let conflictsBefore = context!.deriveConflicts
            let (outcome, commitNs) = context!.applyBatch(batch, injectFailure: inject)
            return (outcome, commitNs, (context!.audit.lastSeq, context!.audit.lastHash), context!.pending.count,
                    context!.deriveConflicts - conflictsBefore)
        }
        pendingRecords.store(pending, ordering: .releasing)
        // Only after the commit: the anchor must never name an entry that is not on disk.
        if case .success = outcome { anchor?.publish(seq: tail.0, hash: tail.1) }
        lock.withLock {
            shared.stats.batches += 1
            shared.stats.mutations += batch.count
            shared.stats.largestBatch = max(shared.stats.largestBatch, batch.count)
            shared.stats.commitNsTotal += commitNs
            shared.stats.deriveConflicts += conflicts
            if case .failure = outcome { shared.stats.failedBatches += 1 }
        }
        batchSizes.observe(batch.count)
        commitLatencyUs.observe(Int(commitNs / 1_000))
        switch outcome {
        case .success: lastBatchFailedOnDisk.store(false, ordering: .relaxed)
        case .failure(let error): lastBatchFailedOnDisk.store(error.code == .unavailable, ordering: .relaxed)
        }
        switch outcome {
        case .success(let outcomes):
            for (index, completion) in completions.enumerated() { completion(outcomes[index]) }
        case .failure(let error):
            for completion in completions { completion(.failure(error)) }
        }
    }

    private func takeInjectedFailure() -> Bool {
        var current = injectedFailures.load(ordering: .relaxed)
        while current > 0 {
            let (exchanged, original) = injectedFailures.compareExchange(
                expected: current, desired: current - 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

}

/// What a job on the writer thread may use: the connection and the audit chain.
public struct WriterContext: ~Copyable {
    /// The writer's connection; a job may open its own transaction.
    public let db: Connection
    var audit: AuditChain
    let clock: any Clock
    /// The report summary's changes of the transaction being applied.
    let summary = SummaryAccumulator()
    /// The webhook endpoints each event gets an outbox row for.
    let routes: OutboxRoutes
    /// Issue-log records appended and not yet derived, in order.
    var pending: [PendingRecord] = []
    /// The last issue-log record appended.
    var logSeq: Int64
    /// Code moves derived against a state their record did not expect.
    var deriveConflicts = 0
    /// Why the derivation before the running job failed (nil: it did not); the job is not run.
    var deriveFailure: KamiError?
    /// Whether commits fsync (durability full): a derive transaction skips its own.
    let syncFull: Bool
    /// The code moves of `pending`, for readers.
    let overlay: CodeOverlay

    /// What the test hook `injectFailures` makes a batch fail with.
    static let injectedFault = SQLiteError(resultCode: 13, context: "commit", message: "injected fault: database or disk is full")

    /// Past this many underived records, order writes go the direct way (which derives what
    /// waits first), so that memory stays bounded while derivation keeps failing.
    static let pendingMax = 65_536

    init(db: Connection, audit: AuditChain, clock: any Clock, routes: OutboxRoutes, logSeq: Int64, syncFull: Bool,
         overlay: CodeOverlay) {
        self.overlay = overlay
        self.db = db
        self.audit = audit
        self.clock = clock
        self.routes = routes
        self.logSeq = logSeq
        self.syncFull = syncFull
    }

    /// Appends an audit entry; call inside the job's transaction.
    public mutating func appendAudit(_ event: AuditEvent) throws(SQLiteError) {
        try audit.append(event, atMs: clock.nowMs(), db: db)
    }

    /// Runs `body` in one IMMEDIATE transaction: commits when it returns, rolls back (and
    /// restores the audit chain) when it throws.
    public mutating func transaction<T>(_ body: (inout WriterContext) throws(KamiError) -> T) throws(KamiError) -> T {
        let saved = audit
        do { try db.execute("BEGIN IMMEDIATE") } catch { throw error.kamiError }
        do throws(KamiError) {
            let value = try body(&self)
            do {
                try audit.sealTail(db: db)
                try db.execute("COMMIT")
            } catch { throw error.kamiError }
            return value
        } catch {
            try? db.execute("ROLLBACK")
            audit = saved
            throw error
        }
    }

    /// Applies and commits `mutations` as one transaction and returns each one's outcome and
    /// the nanoseconds COMMIT took. A mutation that fails on its own (a constraint, a missing
    /// row) must not take the innocent rest of the batch with it: the batch is first applied
    /// plainly (the fast path, no per-mutation cost), and if one mutation fails for a reason
    /// other than the disk, the transaction is rolled back and the batch applied again with
    /// each mutation in its own savepoint, so only that one fails. A disk problem, or a failed
    /// COMMIT, fails the whole batch with nothing written.
    mutating func applyBatch(
        _ mutations: [Mutation], injectFailure: Bool
    ) -> (Result<[Result<MutationOutcome, KamiError>], KamiError>, UInt64) {
        if pending.count < WriterContext.pendingMax && mutations.allSatisfy(IssueLog.takes) {
            return appendRecords(mutations, injectFailure: injectFailure)
        }
        var attempt = applyBatch(mutations, injectFailure: injectFailure, isolated: false)
        if case .failure(let error) = attempt.0, !error.isDiskProblem {
            attempt = applyBatch(mutations, injectFailure: injectFailure, isolated: true)
        }
        return (attempt.0.mapError(\.kamiError), attempt.1)
    }

    private mutating func applyBatch(
        _ mutations: [Mutation], injectFailure: Bool, isolated: Bool
    ) -> (Result<[Result<MutationOutcome, KamiError>], SQLiteError>, UInt64) {
        let saved = audit
        let atMs = clock.nowMs()
        var outcomes: [Result<MutationOutcome, KamiError>] = []
        outcomes.reserveCapacity(mutations.count)
        var deriver = Deriver(db: db)
        do throws(SQLiteError) {
            try db.run(HotSQL.begin)
            summary.reset()
            // What the log holds underived comes first: this batch may read or change it.
            try deriver.derive(pending[...], summary: summary)
            let endpoints = routes.current
            let applier = MutationApplier(
                db: db, summary: summary, outbox: endpoints.isEmpty ? nil : OutboxWriter(db: db, routes: endpoints))
            if isolated {
                let savepoint = try db.prepare("SAVEPOINT m")
                let release = try db.prepare("RELEASE m")
                let rollback = try db.prepare("ROLLBACK TO m")
                for mutation in mutations {
                    let before = audit
                    try savepoint.run()
                    do throws(SQLiteError) {
                        outcomes.append(.success(try applier.apply(mutation, atMs: atMs, audit: &audit)))
                        try release.run()
                        summary.keep()
                    } catch {
                        summary.drop()
                        if error.isDiskProblem { throw error }
                        try rollback.run()
                        try release.run()
                        audit = before
                        outcomes.append(.failure(error.kamiError))
                    }
                }
            } else {
                for mutation in mutations {
                    outcomes.append(.success(try applier.apply(mutation, atMs: atMs, audit: &audit)))
                }
            }
            if injectFailure {
                throw WriterContext.injectedFault
            }
            try summary.flush(db)
            try audit.sealTail(db: db)
            let start = monotonicNs()
            try db.run(HotSQL.commit)
            let commitNs = monotonicNs() - start
            if !pending.isEmpty {
                pending.removeAll()
                overlay.clear()
                deriveConflicts += deriver.conflicts
            }
            return (.success(outcomes), commitNs)
        } catch {
            try? db.execute("ROLLBACK")
            audit = saved
            return (.failure(error), 0)
        }
    }
}

/// A one-shot result handed from one thread (a completion) to another that waits for it.
public final class ResultBox<T: Sendable>: @unchecked Sendable {
    // Protected by `lock`.
    private var value: Result<T, KamiError>?
    private let lock = ConditionLock()

    /// Makes an empty box.
    public init() {}

    /// Stores the result and wakes the waiter.
    public func set(_ result: Result<T, KamiError>) {
        lock.withLock { value = result }
        lock.broadcast()
    }

    /// Blocks until a result is set.
    public func wait() -> Result<T, KamiError> {
        lock.withLock {
            while value == nil { lock.wait() }
            return value!
        }
    }
}
