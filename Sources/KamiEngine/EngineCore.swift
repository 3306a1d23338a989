import KamiLedger
public import KamiCore
import KamiCrypto
public import KamiStore
import KamiPool
import Foundation
import CKamiLinux
import Synchronization

/// Completion of an engine operation. Runs on whichever thread finished the work (often the
/// store's writer thread): keep it short and hand real work elsewhere.
public typealias OrderCompletion = @Sendable (Result<OrderReply, KamiError>) -> Void

/// The issuance engine: every operation of the brief over the in-memory pool and the
/// durable store. The one API the server calls.
///
/// A mutation flows one way: validate → take codes from the pool (memory only) → journal
/// through group commit → on durable completion publish the new state in memory → reply.
/// Nothing is visible to queries, and no reply says "done", before the journal is on disk;
/// when the disk fails, the memory effects are undone and the caller gets UNAVAILABLE.
final class EngineCore: Sendable {
    let store: Store
    let pool: any CodePool
    let userLimits = UserLimits()
    /// Campaigns and coupons: what live orders hold of them (docs/money.md).
    let promotions = PromotionBook()
    /// Orders refused per SKU since start (flash-sale summary): slot `sku * 3 + reason`,
    /// reasons 0 sold out, 1 limit reached, 2 denied by the risk gate.
    let rejects = AtomicCounters(count: (Limits.skusMax + 1) * 3)
    /// Distributors and their commission rates, by key.
    let distributors = Locked<[String: Distributor]>([:])
    let holds = HoldTimer()
    let orders = OrderTable()
    let userOrders = UserIndex()
    let catalog = Locked(Catalog())
    let stock = Locked<[SkuID: StockCounts]>([:])
    /// Live holds by sequence number, so the timer (which knows sequence numbers) finds them.
    let holdIDs = Locked<[OrderSeq: String]>([:])
    let nextSeq: Atomic<Int64>
    /// Hold TTL used when a reserve gives none, and the longest one accepted (reloadable).
    let holdTTLDefault = Atomic<Int64>(Limits.holdTTLMsDefault)
    let holdTTLMax = Atomic<Int64>(Limits.holdTTLMsMax)
    /// How long an order held for review waits for an operator before it is released.
    let reviewTTL = Atomic<Int64>(Limits.holdTTLMsMax)
    var reviewTTLMs: Int64 { reviewTTL.load(ordering: .relaxed) }
    /// The import or export running now, for progress reports.
    let job = Locked<JobTracker?>(nil)
    /// Set when the engine is stopping: a running import gives up at its next chunk (it runs
    /// on the writer thread, which the stop waits for), and no new one starts.
    let jobsCancelled = Atomic<Bool>(false)
    /// Serialises catalog changes and imports (operator operations): an import's pool segment
    /// must be added in id order, and a SKU must not turn into a bundle while codes arrive.
    let adminLock = ConditionLock()
    let sealer: Sealer
    let clock: any Clock
    /// Sourcing, supplier mappings and the sink that fulfils orders upstream.
    let upstream = UpstreamState()
    private let expiry: ExpiryDriver?

    /// Opens the store in `config.directory`, recovers everything, and starts expiring holds.
    init(config: EngineConfig) throws(KamiError) {
        Limits.check()
        do {
            store = try Store(
                directory: config.directory, durability: config.durability, settings: config.commit,
                clock: config.clock, vfs: config.vfs, auditKey: config.sealer.auditKey)
        } catch {
            throw error.kamiError
        }
        pool = config.pool == .lockFree ? LockFreeCodePool() : MutexCodePool()
        sealer = config.sealer
        clock = config.clock
        expiry = config.expiryThread ? ExpiryDriver() : nil
        let coupons = try store.coupons()
        promotions.load(campaigns: try store.campaigns(), batches: coupons.batches, coupons: coupons.codes)
        let loaded = try store.distributors()
        distributors.withLock { $0 = Dictionary(loaded.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first }) }
        nextSeq = Atomic(1)
        // Orders go into memory as they are read, a few thousand at a time, on two threads
        // beside the reader (with millions, the table is sized once).
        var batch: [Order] = []
        batch.reserveCapacity(EngineCore.bootBatch)
        let loader = BootLoader(ahead: EngineCore.bootBatchesAhead)
        let snapshot: RecoverySnapshot
        do {
            snapshot = try store.loadSnapshot(ordersExpected: { [orders] count in orders.reserve(count) },
                                              onOrder: { [self] order in
                batch.append(order)
                if batch.count == EngineCore.bootBatch {
                    restore(batch, loader: loader)
                    batch.removeAll(keepingCapacity: true)
                }
            })
        } catch {
            // Nothing keeps filling the tables (or holds the store) after the open failed.
            loader.finish()
            throw error
        }
        restore(batch, loader: loader)
        loader.finish()
        // The batches were allocated on this thread and freed on the loaders', whose malloc
        // arenas keep what the growing tables left behind: give the free pages back (with
        // millions of orders, tens of MiB).
        _ = kami_malloc_trim()
        nextSeq.store(snapshot.maxOrderSeq + 1, ordering: .relaxed)
        recover(snapshot)
        upstream.load(try store.loadUpstream())
        expiry?.start(self)
    }

    /// Makes a running import stop at its next chunk (rolled back: nothing of it is imported)
    /// and refuses new ones. Called at the start of a shutdown, so that an import of a huge
    /// file does not hold the stop up; `close` calls it too.
    func cancelJobs() {
        jobsCancelled.store(true, ordering: .releasing)
    }

    /// Stops expiring holds, commits everything queued, closes the database.
    func close() {
        cancelJobs()
        expiry?.stop()
        store.close()
    }

    /// The store underneath (for tools and tests).
    var storage: Store { store }

    /// Sets the hold TTL a reserve gets when it asks for none, and the longest it may ask
    /// for; both within `Limits.holdTTLMsMin...Limits.holdTTLMsMax`, default <= max.
    func setHoldTTL(defaultMs: Int64, maxMs: Int64) {
        precondition(Limits.holdTTLMsMin <= defaultMs && defaultMs <= maxMs && maxMs <= Limits.holdTTLMsMax,
                     "hold TTL \(defaultMs)/\(maxMs) out of range")
        holdTTLMax.store(maxMs, ordering: .relaxed)
        holdTTLDefault.store(defaultMs, ordering: .relaxed)
    }

    /// Reserved orders waiting for their commit, release or expiry.
    var holdsOutstanding: Int { holds.count }

    /// The hold TTL settings in effect: (default, max), ms.
    var holdTTL: (defaultMs: Int64, maxMs: Int64) {
        (holdTTLDefault.load(ordering: .relaxed), holdTTLMax.load(ordering: .relaxed))
    }

    private func recover(_ snapshot: RecoverySnapshot) {
        catalog.withLock { catalog in
            for sku in snapshot.skus { catalog.insert(sku) }
        }
        for segment in snapshot.segments { pool.addSegment(sku: segment.sku, codes: segment.codes) }
        for (sku, codes) in snapshot.available { pool.put(sku: sku, codes: codes) }
        stock.withLock { stock in
            for (sku, counts) in snapshot.stateCounts {
                stock[sku] = StockCounts(byState: counts)
            }
        }
        // The orders went into memory as they were read (`loadSnapshot`'s `onOrder`).
    }

    /// Orders read at boot, in their order: the order table, their users' index, the units and
    /// holds they keep.
    private func restore(_ batch: [Order], loader: BootLoader) {
        loader.submit(batch, table: { [orders] batch in orders.load(batch) }, users: { [self] batch in
            userOrders.add(batch)
            batch.withUnsafeBufferPointer { batch in
                var holdings: [(user: String, sku: SkuID, units: Int)] = []
                holdings.reserveCapacity(batch.count)
                for index in batch.indices where batch[index].state.holdsCodes {
                    holdings.append((batch[index].user, batch[index].sku, batch[index].units))
                }
                userLimits.restore(holdings)
                for index in batch.indices where batch[index].state.isHold || batch[index].labels != nil {
                    restoreCounts(batch[index])
                }
            }
        })
    }

    /// What an order read at boot keeps besides its units: its promotion claim, its hold.
    private func restoreCounts(_ order: Order) {
        if order.state.holdsPromotion, let labels = order.labels, labels.campaign != nil || labels.coupon != nil {
            promotions.restore(order: order.orderID, user: order.user, claim: PromotionClaim(
                amountCents: order.amountCents ?? 0, subsidyCents: order.subsidyCents, campaign: labels.campaign,
                coupon: labels.coupon))
        }
        if order.state.isHold {
            if order.paymentRef == nil { _ = userLimits.tryAddPendingHold(user: order.user, limit: 0) }
            holdIDs.withLock { $0[order.seq] = order.orderID }
            holds.schedule(order: order.seq, deadlineMs: order.expiresAtMs)
        }
    }

    // MARK: Helpers shared by the operations

    func sku(key: String) throws(KamiError) -> Sku {
        if let problem = IdentifierRules.problem(key, field: "sku", maxBytes: Limits.skuKeyBytesMax) {
            throw KamiError(.badRequest, problem)
        }
        guard let sku = catalog.withLock({ $0.byKey[key] }) else {
            throw KamiError(.notFound, "no SKU with key \(key)")
        }
        return sku
    }

    func sku(id: SkuID) -> Sku? { catalog.withLock { $0.byID[id] } }

    func skuKey(_ id: SkuID) -> String { sku(id: id)?.key ?? "#\(id)" }

    /// Takes `units` of `sku` from the pool, all components or none.
    func takeCodes(_ sku: Sku, units: Int) -> [OrderCode]? {
        var taken: [OrderCode] = []
        for component in sku.unitComposition {
            guard let codes = pool.take(sku: component.sku, count: component.units * units) else {
                returnToPool(taken)
                return nil
            }
            taken.append(contentsOf: codes.map { OrderCode(codeID: $0, sku: component.sku) })
        }
        return taken
    }

    func returnToPool(_ codes: [OrderCode]) {
        var bySku: [SkuID: [CodeID]] = [:]
        for code in codes { bySku[code.sku, default: []].append(code.codeID) }
        for (sku, ids) in bySku { pool.put(sku: sku, codes: ids) }
    }

    /// Moves codes between states in the stock counters.
    func count(_ codes: [OrderCode], from: CodeState?, to: CodeState) {
        stock.withLock { stock in
            // In place: the counts' storage is unique, so no copy is made per code.
            for code in codes {
                if let from { stock[code.sku, default: StockCounts()][from] -= 1 }
                stock[code.sku, default: StockCounts()][to] += 1
            }
        }
    }

    /// Reads and opens the secrets of `codes`; a code that fails authentication is never served.
    func reveal(_ codes: [OrderCode]) throws(KamiError) -> [IssuedCode] {
        try reveal(rows: try store.codes(codes.map(\.codeID)))
    }

    /// `reveal` of rows already read.
    func reveal(rows: [StoredCode]) throws(KamiError) -> [IssuedCode] {
        let (revealed, bad) = try openSecrets(rows: rows)
        if let first = bad.first {
            throw KamiError(.integrity, "code \(first.codeID) failed authentication; it is not served")
        }
        return revealed
    }

    /// Opens a read scope on this thread: the secret reads until `endReadScope` share one
    /// read snapshot (the event loop opens one per pass; see `Store.beginReadScope`).
    func beginReadScope() { store.beginReadScope() }

    /// Ends this thread's read scope.
    func endReadScope() { store.endReadScope() }

    /// Reads and opens the secrets of `codes`: the ones that open, in order, and the ones whose
    /// sealed secret fails authentication (tampered with, or sealed under an unknown key).
    func openSecrets(_ codes: [OrderCode]) throws(KamiError) -> (revealed: [IssuedCode], bad: [OrderCode]) {
        guard !codes.isEmpty else { return ([], []) }
        return try openSecrets(rows: try store.codes(codes.map(\.codeID)))
    }

    /// Opens the secrets of rows already read; see `openSecrets(_:)`.
    func openSecrets(rows: [StoredCode]) throws(KamiError) -> (revealed: [IssuedCode], bad: [OrderCode]) {
        var result: [IssuedCode] = []
        var bad: [OrderCode] = []
        result.reserveCapacity(rows.count)
        for row in rows {
            let sealed = SealedSecret(keyID: row.keyID, nonce: row.nonce, ciphertextAndTag: row.sealed)
            let secret: Secret
            do {
                secret = try sealer.open(sealed, aad: Sealer.associatedData(codeID: row.id, skuID: row.sku))
            } catch {
                // A key that is not loaded is a configuration problem, not a bad code: fail the
                // operation and quarantine nothing (a wrong key file must not void the stock).
                if case .unknownKeyID(let id) = error {
                    throw KamiError(.unavailable, "code \(row.id) is sealed with master key id "
                        + String(id, radix: 16) + ", which is not loaded; check the master key file")
                }
                bad.append(OrderCode(codeID: row.id, sku: row.sku))
                continue
            }
            let sku = self.sku(id: row.sku)
            result.append(IssuedCode(
                codeID: row.id, skuKey: sku?.key ?? "#\(row.sku)", secret: secret, cardNumber: row.cardNumber,
                activationURL: nil, expiresAtMs: row.expiresAtMs, costCents: row.costCents,
                activationTemplate: sku?.activationURLTemplate))
        }
        return (result, bad)
    }

    /// Takes codes that failed authentication out of circulation for good: they are voided on
    /// disk with a `quarantine` audit entry. The codes must be out of the pool (taken by the
    /// caller). If the write fails they go back to the pool and are caught again next time.
    func quarantine(_ codes: [OrderCode]) {
        guard !codes.isEmpty else { return }
        let changes = codes.map { CodeChange(codeID: $0.codeID, from: .available, to: .voided, orderSeq: nil) }
        let event = AuditEvent(
            "quarantine", subject: "codes", detail: "failed authentication codes=\(EngineCore.codeIDList(codes))")
        let ledger: [JournalLine]
        do throws(KamiError) { ledger = try writeOffs(codes) } catch {
            // Caught again the next time one of them is taken.
            return returnToPool(codes)
        }
        store.writer.submit(.setCodes(changes, audit: event, ledger: ledger)) { [self] result in
            switch result {
            case .success: count(codes, from: .available, to: .voided)
            case .failure: returnToPool(codes)
            }
        }
    }

    /// Orders read at boot are put into memory this many at a time (a lock per shard per batch).
    static let bootBatch = 4_096
    /// How many batches the reader may be ahead of the threads putting them away.
    static let bootBatchesAhead = 4

    /// How many times a commit replaces codes that fail authentication before it gives up.
    static let replacementRoundsMax = 3

    static func integrityFailure(_ bad: [OrderCode]) -> KamiError {
        KamiError(.integrity, "code \(EngineCore.codeIDList(bad)) failed authentication and was quarantined; "
            + "retry the order to get another code")
    }

    /// A code's activation link for `order` (nil: its SKU has no template).
    func activationURL(_ template: String?, codeID: CodeID, cardNumber: String?, order: Order, skuKey: String) -> String? {
        guard let template else { return nil }
        let token = ActivationTemplate.needsToken(template) ? activationToken(codeID: codeID, orderSeq: order.seq) : nil
        return ActivationTemplate.expand(template, .init(
            codeID: codeID, cardNumber: cardNumber, order: order.orderID, user: order.user, sku: skuKey, token: token))
    }

    func reply(_ order: Order, codes: [IssuedCode] = []) -> OrderReply {
        var codes = codes
        for index in codes.indices where codes[index].activationTemplate != nil {
            let code = codes[index]
            codes[index].activationURL = activationURL(
                code.activationTemplate, codeID: code.codeID, cardNumber: code.cardNumber, order: order, skuKey: code.skuKey)
        }
        return OrderReply(
            orderID: order.orderID, user: order.user, skuKey: skuKey(order.sku), units: order.units,
            state: order.state, paymentRef: order.paymentRef, codeIDs: order.codes.map(\.codeID),
            expiresAtMs: order.expiresAtMs, codes: codes)
    }

    static func codeIDList(_ codes: [OrderCode]) -> String {
        codes.map { String($0.codeID) }.joined(separator: ",")
    }
}

/// Per-SKU counts of codes by state, kept in memory from durable completions. One count per
/// `CodeState` case, indexed by its raw value, so a new state needs no edit here.
struct StockCounts: Sendable, Hashable, CustomStringConvertible {
    private(set) var byState: [Int]

    init() { byState = CodeState.zeroCounts }

    /// Counts as the store reports them (indexed by `CodeState.rawValue`).
    init(byState: [Int]) {
        precondition(byState.count == CodeState.allCases.count, "\(byState.count) state counts")
        self.byState = byState
    }

    subscript(state: CodeState) -> Int {
        get { byState[Int(state.rawValue)] }
        set { byState[Int(state.rawValue)] = newValue }
    }

    var total: Int { byState.reduce(0, +) }

    var description: String {
        CodeState.allCases.map { "\($0) \(self[$0])" }.joined(separator: ", ")
    }
}

/// The SKU catalog in memory.
struct Catalog: Sendable {
    var byKey: [String: Sku] = [:]
    var byID: [SkuID: Sku] = [:]

    mutating func insert(_ sku: Sku) {
        byKey[sku.key] = sku
        byID[sku.id] = sku
    }
}

/// A thread that expires holds on time.
final class ExpiryDriver: Sendable {
    /// Longest sleep between checks: a hold expires at most this late (plus commit time).
    static let tickMsMax: Int64 = 50

    private let stopped = Atomic<Bool>(false)
    private let finished = ConditionLockBox()

    func start(_ engine: EngineCore) {
        let thread = Thread { [self] in
            while !self.stopped.load(ordering: .acquiring) {
                engine.expireDue()
                let now = engine.clock.nowMs()
                let next = engine.holds.nextDeadlineMs ?? (now + ExpiryDriver.tickMsMax)
                let sleepMs = max(1, min(ExpiryDriver.tickMsMax, next - now))
                usleep(UInt32(sleepMs * 1000))
            }
            self.finished.signal()
        }
        thread.name = "kami-expiry"
        thread.start()
    }

    func stop() {
        stopped.store(true, ordering: .releasing)
        finished.wait()
    }
}

/// A one-shot event.
final class ConditionLockBox: Sendable {
    private let lock = ConditionLock()
    private let flag = Atomic<Bool>(false)

    func signal() {
        lock.withLock { flag.store(true, ordering: .releasing) }
        lock.broadcast()
    }

    func wait() {
        lock.withLock {
            while !flag.load(ordering: .acquiring) { lock.wait() }
        }
    }
}
