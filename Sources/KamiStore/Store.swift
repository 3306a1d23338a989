public import KamiCore
public import KamiCrypto
import Glibc
import Synchronization

/// Everything the engine needs to rebuild its memory at boot, read in one pass.
public struct RecoverySnapshot: Sendable {
    /// The catalog.
    public var skus: [Sku] = []
    /// Id ranges of each import, in import order.
    public var segments: [(sku: SkuID, codes: Range<CodeID>)] = []
    /// Available codes per SKU, ascending.
    public var available: [SkuID: [CodeID]] = [:]
    /// Codes per SKU per state (indexed by `CodeState.rawValue`).
    public var stateCounts: [SkuID: [Int]] = [:]
    /// Every order, in sequence order.
    public var orders: [Order] = []
    /// Highest order sequence number used (0 when none).
    public var maxOrderSeq: OrderSeq = 0
}

/// The audit anchor as read at one moment (opaque: compare it with a chain read later).
public struct AuditAnchorReading: Sendable {
    /// Nil for a store opened without a key (no anchor is kept).
    let reading: AuditAnchor.Reading?
}

/// A stored code's immutable part: where it belongs and its sealed secret.
public struct StoredCode: Sendable, Hashable {
    public var id: CodeID
    public var sku: SkuID
    public var batch: String?
    public var cardNumber: String?
    public var costCents: Int64?
    public var expiresAtMs: Int64?
    public var keyID: UInt32
    public var nonce: [UInt8]
    public var sealed: [UInt8]
}

/// The SQLite database of one kamid: WAL mode, one group-commit writer, a pool of readers.
public final class Store: Sendable {
    /// Path of the database file.
    public let path: String
    /// The group-commit writer.
    public let writer: CommitWriter
    private let readers: ReaderPool
    /// Reader connections pinned to a thread by `consistentRead`.
    private let pinned = Locked<[pthread_t: Connection]>([:])
    /// How many threads have a pinned connection: when none, `read` skips the lock.
    private let pinnedThreads = Atomic<Int>(0)
    /// Durability in force.
    public let durability: Durability
    /// The writer's checkpoints, as read scopes need to know them.
    public let walWatch: WALWatch
    /// The webhook endpoints events are written to the outbox for (none until set).
    public let outboxRoutes = OutboxRoutes()

    /// The audit chain's head outside the database (nil for a store opened without a key).
    let anchor: AuditAnchor?
    /// The key of the audit chain's MACs.
    let auditKey: AuditKey
    /// Issue-log records a crash had left underived, derived when the store opened.
    public let recoveredRecords: Int

    /// The name of the database file inside the data directory.
    public static let fileName = "kami.db"

    /// Opens (creating if needed) the database in `directory`, migrates it, and starts the
    /// writer. The directory is created with mode 0700: it holds sealed secrets.
    ///
    /// With `auditKey` (kamid always gives the one derived from its master key) the audit
    /// chain is authenticated and anchored: its MACs use the key, the anchor the last run left
    /// is checked and a new one kept. A key that authenticates neither the chain's last entry
    /// nor the anchor is refused before anything is written (a wrong master key file must not
    /// append entries no right key can verify). Without a key (tools that inspect a data
    /// directory, store tests) the anchor is neither read nor written and new entries carry
    /// `AuditKey.unkeyed` MACs, which prove nothing.
    public init(
        directory: String, durability: Durability = .full, settings: CommitSettings = CommitSettings(),
        clock: any Clock = SystemClock(), vfs: String? = nil, checkpointPages: Int32 = Store.checkpointPages,
        auditKey: AuditKey? = nil
    ) throws(StoreError) {
        try Store.ensureDirectory(directory)
        path = directory + "/" + Store.fileName
        self.durability = durability
        let db: Connection
        do { db = try Connection(path: path, vfs: vfs) } catch { throw .sqlite(error) }
        // The file holds sealed secrets: owner only. SQLite gives its -wal and -shm files the
        // same mode as the database file.
        if chmod(path, 0o600) != 0 {
            throw .directory(path: path, reason: "cannot chmod 600: " + String(cString: strerror(errno)))
        }
        let watch = WALWatch(threshold: checkpointPages)
        walWatch = watch
        try Store.configure(db, durability: durability, walWatch: watch)
        let foundVersion = try Schema.migrate(db)
        // What a crash left underived in the issue log is derived before anything reads it.
        recoveredRecords = try IssueLog.recover(db)
        let logSeq: Int64
        do { logSeq = try IssueLog.lastSeq(db) } catch { throw .sqlite(error) }
        self.auditKey = auditKey ?? .unkeyed
        let audit: AuditChain
        if let auditKey {
            let anchor = AuditAnchor(directory: directory, key: auditKey)
            // Read before anything is written: the anchor found is what the last run left.
            let found = anchor.read()
            audit = try Store.openAuditChain(
                db, key: auditKey, found: found, sealLegacy: foundVersion < Schema.keyedAuditVersion, atMs: clock.nowMs())
            try anchor.writeNow(seq: audit.lastSeq, hash: audit.lastHash)
            anchor.start()
            self.anchor = anchor
        } else {
            do { audit = try AuditChain.load(db, key: .unkeyed) } catch { throw .sqlite(error) }
            self.anchor = nil
        }
        writer = CommitWriter(db: db, audit: audit, anchor: anchor, settings: settings, clock: clock, routes: outboxRoutes,
                              logSeq: logSeq, syncFull: durability == .full)
        readers = ReaderPool(path: path, vfs: vfs)
    }

    private static func ensureDirectory(_ directory: String) throws(StoreError) {
        var info = stat()
        if stat(directory, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw .directory(path: directory, reason: "exists and is not a directory")
            }
            return
        }
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw .directory(path: directory, reason: "cannot create: " + String(cString: strerror(errno)))
        }
    }

    /// The writer's page cache, KiB. Measured with `kami-bench upstream` (60,000 orders):
    /// 64 MiB filled with pages the issue path never reads again and put kamid's peak RSS at
    /// 234 MiB (185 MiB at 16 MiB), with no change in `kami-bench store`.
    static let writerCacheKiB = 16_384
    /// The writer's page cache while a job runs, KiB: an import inserts into the fingerprint
    /// index at random places, 15% faster with 64 MiB than with 16 (`kami-bench import`).
    static let jobCacheKiB = 65_536

    /// WAL frames after which the writer checkpoints (SQLite's default is 1,000).
    public static let checkpointPages: Int32 = 4_000

    private static func configure(_ db: Connection, durability: Durability, walWatch: WALWatch) throws(StoreError) {
        do {
            let mode = try db.scalarText("PRAGMA journal_mode = WAL")
            guard mode == "wal" else { throw StoreError.corrupt("cannot switch to WAL mode (got \(mode ?? "nil"))") }
            try db.execute("PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
            // Temporary b-trees (sorts of large imports) in memory, a page cache for the writer
            // (16 MiB; 64 MiB while a job such as an import runs), and checkpoints every
            // 4,000 pages so the WAL stays near 16 MiB (by our own hook, which also tells read
            // scopes when readers hold them back).
            try db.execute("PRAGMA temp_store = MEMORY; PRAGMA cache_size = -\(Store.writerCacheKiB)")
            db.checkpointWAL(into: walWatch)
        } catch let error as SQLiteError {
            throw .sqlite(error)
        } catch let error as StoreError {
            throw error
        } catch {
            throw .corrupt("\(error)")
        }
    }

    /// Stops the writer after it committed everything queued, then closes.
    public func close() {
        writer.shutdown()
        anchor?.stop()
        readers.close()
    }

    /// Runs `body` with a reader connection (WAL readers see every committed batch and never
    /// block the writer). Issue-log records appended before the call are derived first, so
    /// the orders, code states, ledger and outbox it reads are as of the call.
    public func read<T>(_ body: (Connection) throws(SQLiteError) -> T) throws(KamiError) -> T {
        try writer.catchUp()
        return try readAsIs(body)
    }

    /// `read` without catching up with the issue log: for tables it never derives (the codes'
    /// sealed secrets, the catalog).
    func readAsIs<T>(_ body: (Connection) throws(SQLiteError) -> T) throws(KamiError) -> T {
        if pinnedThreads.load(ordering: .acquiring) > 0, let connection = pinned.withLock({ $0[pthread_self()] }) {
            do { return try body(connection) } catch { throw error.kamiError }
        }
        let connection: Connection
        do { connection = try readers.checkout() } catch { throw error.kamiError }
        defer { readers.checkin(connection) }
        do { return try body(connection) } catch { throw error.kamiError }
    }

    /// Whether this thread's reads use a snapshot pinned by `consistentRead`.
    var readsPinned: Bool {
        pinnedThreads.load(ordering: .acquiring) > 0 && pinned.withLock({ $0[pthread_self()] }) != nil
    }

    func checkoutReader() throws(SQLiteError) -> Connection { try readers.checkout() }

    func returnReader(_ connection: Connection) { readers.checkin(connection) }

    /// Runs `body` with every `read` on this thread inside one read transaction, so that all
    /// of them see the same committed state (verification under load).
    public func consistentRead<T>(_ body: () throws(KamiError) -> T) throws(KamiError) -> T {
        try writer.catchUp()
        let connection: Connection
        do { connection = try readers.checkout() } catch { throw error.kamiError }
        defer { readers.checkin(connection) }
        do {
            try connection.execute("BEGIN")
            // The snapshot starts at the first read; take it now.
            _ = try connection.scalarInt("SELECT COUNT(*) FROM meta")
        } catch {
            throw error.kamiError
        }
        let thread = pthread_self()
        pinned.withLock { $0[thread] = connection }
        pinnedThreads.add(1, ordering: .releasing)
        defer {
            pinned.withLock { $0[thread] = nil }
            pinnedThreads.subtract(1, ordering: .releasing)
            try? connection.execute("COMMIT")
        }
        return try body()
    }

    /// The immutable rows of the given codes, in the order asked. Missing ids are an integrity
    /// error. Inside a read scope (`beginReadScope`) the scope's snapshot is used; a code it
    /// lacks (imported after the snapshot began) is looked up again in a fresh one.
    public func codes(_ ids: [CodeID]) throws(KamiError) -> [StoredCode] {
        if let scope = openReadScope {
            if walWatch.isBehind || pinnedThreads.load(ordering: .acquiring) > 0 {
                // Readers hold a checkpoint back (hold no snapshot until one gets through), or
                // a `consistentRead` pins a snapshot of its own: read as without a scope.
                releaseScopeConnection(scope)
            } else {
                let first = try readInScope(scope) { db throws(SQLiteError) in try Store.readCodes(ids, db) }
                if case .found(let rows) = first { return rows }
                releaseScopeConnection(scope)
                let second = try readInScope(scope) { db throws(SQLiteError) in try Store.readCodes(ids, db) }
                return try second.rows()
            }
        }
        return try readAsIs { db throws(SQLiteError) in try Store.readCodes(ids, db) }.rows()
    }

    private enum CodeRows {
        case found([StoredCode])
        case missing(CodeID)

        func rows() throws(KamiError) -> [StoredCode] {
            switch self {
            case .found(let rows): return rows
            case .missing(let id): throw SQLiteError(resultCode: 0, context: "read code", message: "code \(id) is missing").kamiError
            }
        }
    }

    private static func readCodes(_ ids: [CodeID], _ db: Connection) throws(SQLiteError) -> CodeRows {
        let stmt = try db.prepare(HotSQL.readCode)
        var result: [StoredCode] = []
        result.reserveCapacity(ids.count)
        for id in ids {
            stmt.bind(1, id)
            guard try stmt.step() else {
                stmt.reset()
                return .missing(id)
            }
            result.append(Store.storedCode(stmt))
            stmt.reset()
        }
        return .found(result)
    }

    static func storedCode(_ stmt: Statement) -> StoredCode {
        StoredCode(
            id: stmt.int64(0), sku: SkuID(stmt.int64(1)), batch: stmt.text(2), cardNumber: stmt.text(3),
            costCents: stmt.isNull(4) ? nil : stmt.int64(4), expiresAtMs: stmt.isNull(5) ? nil : stmt.int64(5),
            keyID: UInt32(truncatingIfNeeded: stmt.int64(6)), nonce: stmt.blob(7), sealed: stmt.blob(8))
    }

    /// Reads everything the engine rebuilds at boot. Call before any mutation is submitted.
    /// With `onOrder`, each order is handed to it as it is read instead of being collected in
    /// `orders` (boot with millions of orders: one copy in memory, not two), after
    /// `ordersExpected` was told about how many there are (the highest sequence number).
    public func loadSnapshot(
        ordersExpected: ((Int) -> Void)? = nil, onOrder: ((consuming Order) -> Void)? = nil
    ) throws(KamiError) -> RecoverySnapshot {
        try read { db throws(SQLiteError) in
            var snapshot = RecoverySnapshot()
            let skus = try db.prepare("""
                SELECT id, key, name, price_cents, per_user_limit, activation_url, components, manual_delivery,
                    review_ttl_ms, usage_guide FROM skus ORDER BY id
                """)
            defer { skus.reset() }
            while try skus.step() {
                let components = ComponentsText.decode(skus.text(6) ?? "") ?? []
                snapshot.skus.append(Sku(
                    id: SkuID(skus.int64(0)), key: skus.text(1) ?? "", name: skus.text(2) ?? "",
                    priceCents: skus.int64(3), perUserLimit: skus.int(4), activationURLTemplate: skus.text(5),
                    components: components, manualDelivery: skus.int64(7) != 0, reviewTTLMs: skus.int64(8),
                    usageGuide: skus.text(9)))
            }
            skus.reset()
            let imports = try db.prepare("SELECT sku_id, first_code_id, last_code_id FROM imports ORDER BY id")
            defer { imports.reset() }
            while try imports.step() {
                let first = imports.int64(1)
                let last = imports.int64(2)
                if last >= first { snapshot.segments.append((SkuID(imports.int64(0)), first..<(last + 1))) }
            }
            imports.reset()
            let states = try db.prepare("SELECT id, sku_id, state FROM code_state ORDER BY id")
            defer { states.reset() }
            var lastSku: SkuID = -1
            var available: [CodeID] = []
            var counts = CodeState.zeroCounts
            func flush() {
                if lastSku >= 0 {
                    snapshot.available[lastSku, default: []].append(contentsOf: available)
                    let merged = zip(snapshot.stateCounts[lastSku] ?? CodeState.zeroCounts, counts).map { $0 + $1 }
                    snapshot.stateCounts[lastSku] = merged
                }
                available.removeAll(keepingCapacity: true)
                counts = CodeState.zeroCounts
            }
            while try states.step() {
                let sku = SkuID(states.int64(1))
                if sku != lastSku {
                    flush()
                    lastSku = sku
                }
                let state = Int(states.int64(2))
                guard state >= 0 && state < counts.count else {
                    throw SQLiteError(resultCode: 0, context: "recover", message: "code \(states.int64(0)) has state \(state)")
                }
                counts[state] += 1
                if state == Int(CodeState.available.rawValue) { available.append(states.int64(0)) }
            }
            flush()
            states.reset()
            let orders = try db.prepare("""
                SELECT seq, order_id, user_id, sku_id, units, state, payment_ref, codes, ttl_ms, expires_at_ms,
                    created_at_ms, updated_at_ms, amount_cents, labels, subsidy_cents FROM orders ORDER BY seq
                """)
            defer { orders.reset() }
            if let ordersExpected { ordersExpected(Int(try db.scalarInt("SELECT COALESCE(MAX(seq), 0) FROM orders") ?? 0)) }
            while try orders.step() {
                guard let state = OrderState(rawValue: UInt8(truncatingIfNeeded: orders.int64(5))),
                      let codes = OrderCodesBlob.decode(orders.blob(7)) else {
                    throw SQLiteError(resultCode: 0, context: "recover", message: "order row \(orders.int64(0)) is malformed")
                }
                var order = Order(
                    seq: orders.int64(0), orderID: orders.text(1) ?? "", user: orders.text(2) ?? "",
                    sku: SkuID(orders.int64(3)), units: orders.int(4), state: state, paymentRef: orders.text(6),
                    codes: codes, ttlMs: orders.int64(8), expiresAtMs: orders.int64(9),
                    createdAtMs: orders.int64(10), updatedAtMs: orders.int64(11),
                    amountCents: orders.isNull(12) ? nil : orders.int64(12), labels: LabelsText.decode(orders.text(13)))
                order.subsidyCents = orders.int64(14)
                snapshot.maxOrderSeq = order.seq
                if let onOrder { onOrder(order) } else { snapshot.orders.append(order) }
            }
            orders.reset()
            return snapshot
        }
    }

    /// Walks the audit chain; nil when intact, else the first broken entry.
    /// Walks the audit chain in one read transaction (`kamictl audit verify`).
    /// Runs SQLite's own consistency check; "ok" when the file is sound.
    public func integrityCheck() throws(KamiError) -> String {
        try read { db throws(SQLiteError) in try db.scalarText("PRAGMA integrity_check") ?? "no answer" }
    }
}

/// Reader connections handed out one at a time.
final class ReaderPool: Sendable {
    /// Idle readers kept open; more are opened under load and closed when returned past this.
    static let idleMax = 8

    private let path: String
    private let vfs: String?
    private let idle = Locked<[Connection]>([])

    init(path: String, vfs: String?) {
        self.path = path
        self.vfs = vfs
    }

    func checkout() throws(SQLiteError) -> Connection {
        if let connection = idle.withLock({ $0.popLast() }) { return connection }
        let connection = try Connection(path: path, readOnly: true, vfs: vfs)
        // Not memory-mapped: `PRAGMA mmap_size` was measured slower on the issue path (a page
        // fault per first touch instead of a pread into the page cache; see Benchmarks/README.md).
        return connection
    }

    func checkin(_ connection: Connection) {
        // A connection left inside a read transaction (a statement not reset after an error)
        // would pin an old snapshot for every later reader: drop it rather than reuse it.
        guard connection.isIdle else { return }
        idle.withLock { list in
            if list.count < ReaderPool.idleMax { list.append(connection) }
        }
    }

    func close() { idle.withLock { $0.removeAll() } }
}

extension Store {
    /// The SKU of a code, nil when there is no such code.
    public func skuOfCode(_ id: CodeID) throws(KamiError) -> SkuID? {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT sku_id FROM code_state WHERE id = ?")
            defer { stmt.reset() }
            stmt.bind(1, id)
            return try stmt.step() ? SkuID(stmt.int64(0)) : nil
        }
    }

    /// Ids of the codes of an import batch.
    public func codeIDs(batch: String) throws(KamiError) -> [CodeID] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT id FROM codes WHERE batch = ? ORDER BY id")
            defer { stmt.reset() }
            stmt.bind(1, batch)
            var ids: [CodeID] = []
            while try stmt.step() { ids.append(stmt.int64(0)) }
            return ids
        }
    }
}

extension Store {
    /// The storefront order id of an order sequence number.
    /// When and by whom each of `ids` was activated (codes never activated are absent).
    public func activations(_ ids: [CodeID]) throws(KamiError) -> [CodeID: (atMs: Int64, via: String)] {
        guard !ids.isEmpty else { return [:] }
        return try read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT at_ms, via FROM activations WHERE code_id = ?")
            defer { stmt.reset() }
            var found: [CodeID: (atMs: Int64, via: String)] = [:]
            for id in ids {
                stmt.bind(1, id)
                if try stmt.step() { found[id] = (stmt.int64(0), stmt.text(1) ?? "") }
                stmt.reset()
            }
            return found
        }
    }

    /// Codes in `state`, with the order holding each (for `verify`).
    public func codes(inState state: CodeState) throws(KamiError) -> [CodeID: OrderSeq?] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT id, order_seq FROM code_state WHERE state = ?")
            defer { stmt.reset() }
            stmt.bind(1, Int64(state.rawValue))
            var found: [CodeID: OrderSeq?] = [:]
            while try stmt.step() { found[stmt.int64(0)] = stmt.isNull(1) ? nil : stmt.int64(1) }
            return found
        }
    }

    /// Every activation (for `verify`): code id → order seq.
    public func allActivations() throws(KamiError) -> [CodeID: OrderSeq] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT code_id, order_seq FROM activations")
            defer { stmt.reset() }
            var found: [CodeID: OrderSeq] = [:]
            while try stmt.step() { found[stmt.int64(0)] = stmt.int64(1) }
            return found
        }
    }

    public func orderID(seq: OrderSeq) throws(KamiError) -> String? {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT order_id FROM orders WHERE seq = ?")
            defer { stmt.reset() }
            stmt.bind(1, seq)
            return try stmt.step() ? stmt.text(0) : nil
        }
    }

    /// Codes per SKU per state, and codes imported per SKU, straight from the database.
    public func stateCounts() throws(KamiError) -> (states: [SkuID: [Int]], imported: [SkuID: Int], rows: [SkuID: Int]) {
        try read { db throws(SQLiteError) in
            var states: [SkuID: [Int]] = [:]
            let byState = try db.prepare("SELECT sku_id, state, COUNT(*) FROM code_state GROUP BY sku_id, state")
            while try byState.step() {
                let sku = SkuID(byState.int64(0))
                let state = byState.int(1)
                var counts = states[sku] ?? CodeState.zeroCounts
                if state >= 0 && state < counts.count { counts[state] += byState.int(2) }
                states[sku] = counts
            }
            byState.reset()
            var imported: [SkuID: Int] = [:]
            let imports = try db.prepare("SELECT sku_id, SUM(imported) FROM imports GROUP BY sku_id")
            while try imports.step() { imported[SkuID(imports.int64(0))] = imports.int(1) }
            imports.reset()
            var rows: [SkuID: Int] = [:]
            let codes = try db.prepare("SELECT sku_id, COUNT(*) FROM codes GROUP BY sku_id")
            while try codes.step() { rows[SkuID(codes.int64(0))] = codes.int(1) }
            codes.reset()
            return (states, imported, rows)
        }
    }
}

extension Store {
    /// Calls `body` for every code of `sku` in id order with its current state, streaming
    /// (one row in memory at a time).
    public func forEachCode(
        sku: SkuID, _ body: (StoredCode, CodeState) throws(KamiError) -> Void
    ) throws(KamiError) {
        // The states must include every write acknowledged before (an export listing an issued
        // code as available would invite reselling it).
        try writer.catchUp()
        let connection: Connection
        do { connection = try readers.checkout() } catch { throw error.kamiError }
        defer { readers.checkin(connection) }
        do {
            let stmt = try connection.prepare("""
                SELECT c.id, c.sku_id, c.batch, c.card_number, c.cost_cents, c.expires_at_ms, c.key_id, c.nonce,
                    c.sealed, s.state FROM codes c JOIN code_state s ON s.id = c.id WHERE c.sku_id = ? ORDER BY c.id
                """)
            defer { stmt.reset() }
            stmt.bind(1, Int64(sku))
            while try stmt.step() {
                let state = CodeState(rawValue: UInt8(truncatingIfNeeded: stmt.int64(9))) ?? .voided
                try body(Store.storedCode(stmt), state)
            }
        } catch let error as SQLiteError {
            throw error.kamiError
        } catch let error as KamiError {
            throw error
        } catch {
            throw KamiError(.unavailable, "export failed: \(error)")
        }
    }
}
