private import CSQLite
public import KamiCore
import Synchronization

/// A SQLite failure: the call that failed, SQLite's result code and message. Never holds
/// bound values, so a secret bound to a statement cannot reach it.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// SQLite's primary result code (SQLITE_FULL is 13, SQLITE_IOERR 10, ...).
    public let resultCode: Int32
    /// What we were doing.
    public let context: String
    /// sqlite3_errmsg at the time.
    public let message: String

    public var description: String { "sqlite \(context): \(message) (code \(resultCode))" }

    /// Whether the disk (not our SQL) is the cause: full, I/O error, read-only, locked out.
    public var isDiskProblem: Bool {
        let primary = resultCode & 0xFF
        return primary == SQLITE_FULL || primary == SQLITE_IOERR || primary == SQLITE_READONLY
            || primary == SQLITE_CANTOPEN || primary == SQLITE_BUSY || primary == SQLITE_CORRUPT
            || primary == SQLITE_NOTADB || primary == SQLITE_PROTOCOL
    }

    /// Whether a UNIQUE or PRIMARY KEY constraint failed.
    public var isConstraint: Bool { resultCode & 0xFF == SQLITE_CONSTRAINT }

    /// The error as Kami reports it: disk problems are UNAVAILABLE (retry later), others internal.
    public var kamiError: KamiError {
        if context == SQLiteError.manualDuplicateContext { return KamiError(.conflict, message) }
        return isDiskProblem
            ? KamiError(.unavailable, "storage unavailable: \(context): \(message)")
            : KamiError(.invalidState, "storage error: \(context): \(message)")
    }

    /// The context of a manual delivery refused in the write for a secret already stored
    /// (answered CONFLICT, like the check before it).
    static let manualDuplicateContext = "deliver-manual"
}

/// One SQLite connection, owned by one thread at a time (opened with SQLITE_OPEN_NOMUTEX).
///
/// `@unchecked Sendable`: the handle moves between threads (a reader pool hands it out) but
/// is used by one thread at a time; the owner (writer thread or pool checkout) guarantees it.
public final class Connection: @unchecked Sendable {
    let handle: OpaquePointer
    private var cache: [String: Statement] = [:]
    /// The context object of a hook installed on this connection, kept alive with it.
    private var hookContext: AnyObject?
    /// The hot path's statements, by slot: no hashing of their SQL on every use.
    private var hot = [Statement?](repeating: nil, count: HotSQL.slots)
    /// The file this connection opened.
    public let path: String

    /// Opens (creating if asked) the database at `path`, through the SQLite VFS named `vfs`
    /// (nil: the default one; tests name a fault-injecting one).
    public init(path: String, readOnly: Bool = false, create: Bool = true, vfs: String? = nil) throws(SQLiteError) {
        _ = Connection.configureLibrary
        var db: OpaquePointer?
        var flags = SQLITE_OPEN_NOMUTEX | (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE)
        if create && !readOnly { flags |= SQLITE_OPEN_CREATE }
        let rc = sqlite3_open_v2(path, &db, flags, vfs)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(resultCode: rc, context: "open \(path)", message: message)
        }
        self.handle = db
        self.path = path
        sqlite3_extended_result_codes(db, 1)
        // Readers and the writer never wait long on each other in WAL mode; the busy timeout
        // covers checkpoints and a second process (kamictl opening the file read-only).
        sqlite3_busy_timeout(db, 5_000)
    }

    /// Process-wide SQLite settings, applied once before the first connection opens.
    private static let configureLibrary: Void = {
        _ = kami_sqlite_disable_memstatus()
    }()

    /// Whether SQLite keeps no memory statistics in this process (so `sqlite3_malloc` takes
    /// no process-wide mutex). False only if something initialized SQLite before the first
    /// connection without applying kamid's settings.
    public static var memoryStatisticsOff: Bool {
        _ = configureLibrary
        var current: sqlite3_int64 = 0
        var highwater: sqlite3_int64 = 0
        // With statistics off SQLite counts nothing: in use stays 0 however much is allocated.
        guard sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &current, &highwater, 0) == SQLITE_OK else { return false }
        return current == 0
    }

    deinit {
        cache.removeAll()
        hot.removeAll()
        sqlite3_close_v2(handle)
    }

    /// Runs one or more SQL statements that take no parameters and return no rows we need.
    public func execute(_ sql: String) throws(SQLiteError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(errorMessage)
            throw SQLiteError(resultCode: rc, context: "exec \(sql.prefix(60))", message: message)
        }
    }

    /// A prepared statement for `sql`, cached on this connection and reset for reuse.
    public func prepare(_ sql: String) throws(SQLiteError) -> Statement {
        if let cached = cache[sql] {
            cached.reset()
            return cached
        }
        let statement = try compile(sql)
        cache[sql] = statement
        return statement
    }

    private func compile(_ sql: String) throws(SQLiteError) -> Statement {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else {
            throw SQLiteError(resultCode: rc, context: "prepare \(sql.prefix(60))", message: lastMessage)
        }
        return Statement(stmt, connection: self, sql: sql)
    }

    /// A statement of the hot path, prepared once per connection and found by its slot.
    @inline(__always)
    func prepare(_ key: HotSQL) throws(SQLiteError) -> Statement {
        if let cached = hot[key.slot] { return cached }
        let statement = try compile(key.sql)
        hot[key.slot] = statement
        return statement
    }

    /// Runs a hot statement that returns no rows (BEGIN, COMMIT).
    func run(_ key: HotSQL) throws(SQLiteError) {
        let statement = try prepare(key)
        try statement.run()
    }

    /// Replaces `PRAGMA wal_autocheckpoint`: after each commit that leaves `watch.threshold`
    /// frames or more in the WAL, runs a PASSIVE checkpoint as SQLite's own would, and records
    /// in `watch` whether readers are holding the WAL back (`WALWatch.behind`): set when a
    /// checkpoint could not copy everything, or when the WAL reached twice the threshold
    /// (copied, but a reader kept SQLite from starting it over); cleared only when the WAL did
    /// start over (a commit leaves fewer frames than the threshold).
    func checkpointWAL(into watch: WALWatch) {
        hookContext = watch
        sqlite3_wal_hook(handle, { context, db, name, frames in
            guard let context else { return SQLITE_OK }
            let watch = Unmanaged<WALWatch>.fromOpaque(context).takeUnretainedValue()
            guard frames >= watch.threshold else {
                watch.behind.store(false, ordering: .relaxed)
                return SQLITE_OK
            }
            var log: Int32 = 0
            var copied: Int32 = 0
            let rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log, &copied)
            if rc != SQLITE_OK || copied < log || frames >= 2 * watch.threshold {
                watch.behind.store(true, ordering: .relaxed)
            }
            watch.checkpoints.add(1, ordering: .relaxed)
            return SQLITE_OK
        }, Unmanaged.passUnretained(watch).toOpaque())
    }

    /// Whether no transaction is open and no statement is mid-step (safe to hand to another caller).
    public var isIdle: Bool {
        guard sqlite3_get_autocommit(handle) != 0 else { return false }
        var stmt = sqlite3_next_stmt(handle, nil)
        while let current = stmt {
            if sqlite3_stmt_busy(current) != 0 { return false }
            stmt = sqlite3_next_stmt(handle, current)
        }
        return true
    }

    /// Row id of the last insert.
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// Rows changed by the last statement.
    public var changes: Int { Int(sqlite3_changes(handle)) }

    var lastMessage: String { String(cString: sqlite3_errmsg(handle)) }

    /// Runs a query returning one integer (or nil when there is no row or it is NULL).
    public func scalarInt(_ sql: String) throws(SQLiteError) -> Int64? {
        let stmt = try prepare(sql)
        defer { stmt.reset() }
        guard try stmt.step() else { return nil }
        return stmt.isNull(0) ? nil : stmt.int64(0)
    }

    /// Runs a query returning one text (or nil).
    public func scalarText(_ sql: String) throws(SQLiteError) -> String? {
        let stmt = try prepare(sql)
        defer { stmt.reset() }
        guard try stmt.step() else { return nil }
        return stmt.text(0)
    }
}

/// A statement run for every request, kept in a fixed slot of each connection. The statement
/// is left reset after each use (`Statement.run`, or the caller's `reset`).
struct HotSQL: Sendable {
    let slot: Int
    let sql: String

    static let begin = HotSQL(slot: 0, sql: "BEGIN IMMEDIATE")
    static let commit = HotSQL(slot: 1, sql: "COMMIT")
    static let writeOrder = HotSQL(slot: 2, sql: """
        INSERT INTO orders(seq, order_id, user_id, sku_id, units, state, payment_ref, codes, ttl_ms,
            expires_at_ms, created_at_ms, updated_at_ms, amount_cents, labels, subsidy_cents)
            VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
        ON CONFLICT(seq) DO UPDATE SET state = excluded.state, payment_ref = excluded.payment_ref,
            codes = excluded.codes, expires_at_ms = excluded.expires_at_ms, updated_at_ms = excluded.updated_at_ms
        """)
    static let writeLedger = HotSQL(slot: 8, sql: """
        INSERT INTO ledger(kind, order_seq, sku_id, debit, credit, amount_cents, currency, at_ms) VALUES(?,?,?,?,?,?,?,?)
        """)
    static let setCodeState = HotSQL(slot: 3, sql: "UPDATE code_state SET state = ?, order_seq = ? WHERE id = ? AND state = ?")
    static let appendAudit = HotSQL(slot: 4, sql:
        "INSERT INTO audit(seq, at_ms, event, subject, detail, prev_hash, hash, records) VALUES(?,?,?,?,?,?,?,?)")
    static let appendIssueLog = HotSQL(slot: 9, sql:
        "INSERT INTO issue_log(seq, at_ms, event, subject, detail, rec) VALUES(?,?,?,?,?,?)")
    static let readCode = HotSQL(slot: 5, sql: """
        SELECT id, sku_id, batch, card_number, cost_cents, expires_at_ms, key_id, nonce, sealed
        FROM codes WHERE id = ?
        """)
    /// A read transaction (deferred: the snapshot starts at its first read).
    static let beginRead = HotSQL(slot: 6, sql: "BEGIN")
    /// The MAC of a transaction's last audit entry.
    static let sealAudit = HotSQL(slot: 7, sql: "UPDATE audit SET mac = ? WHERE seq = ?")
    /// The safety level around a derive transaction (durability full only).
    static let syncNormal = HotSQL(slot: 10, sql: "PRAGMA synchronous = NORMAL")
    static let syncFull = HotSQL(slot: 11, sql: "PRAGMA synchronous = FULL")
    static let slots = 12
}

/// A prepared statement. Bind parameters are 1-based, columns 0-based, as in SQLite.
public final class Statement {
    let stmt: OpaquePointer
    unowned let connection: Connection
    let sql: String

    init(_ stmt: OpaquePointer, connection: Connection, sql: String) {
        self.stmt = stmt
        self.connection = connection
        self.sql = sql
    }

    deinit { sqlite3_finalize(stmt) }

    /// Resets the statement and clears its bindings.
    public func reset() {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
    }

    /// Binds an integer.
    public func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(stmt, index, value) }
    /// Binds an integer.
    public func bind(_ index: Int32, _ value: Int) { sqlite3_bind_int64(stmt, index, Int64(value)) }
    /// Binds NULL.
    public func bindNull(_ index: Int32) { sqlite3_bind_null(stmt, index) }
    /// Binds text, or NULL for nil.
    public func bind(_ index: Int32, _ value: String?) {
        guard let value else { return bindNull(index) }
        sqlite3_bind_text(stmt, index, value, -1, kami_sqlite_transient())
    }
    /// Binds a blob (copied by SQLite), or NULL for nil.
    public func bind(_ index: Int32, blob value: [UInt8]?) {
        guard let value else { return bindNull(index) }
        value.withUnsafeBytes { raw in
            _ = sqlite3_bind_blob(stmt, index, raw.baseAddress, Int32(raw.count), kami_sqlite_transient())
        }
    }

    /// Steps once: true when a row is available, false when done.
    @discardableResult
    public func step() throws(SQLiteError) -> Bool {
        let rc = sqlite3_step(stmt)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        let error = SQLiteError(resultCode: rc, context: "step \(sql.prefix(60))", message: connection.lastMessage)
        sqlite3_reset(stmt)
        throw error
    }

    /// Steps to completion, for statements that return no rows, then resets.
    public func run() throws(SQLiteError) {
        defer { reset() }
        while try step() {}
    }

    /// Column as integer.
    public func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(stmt, column) }
    /// Column as Int.
    public func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(stmt, column)) }
    /// Whether the column is NULL.
    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(stmt, column) == SQLITE_NULL }
    /// Column as text, nil when NULL.
    public func text(_ column: Int32) -> String? {
        guard let ptr = sqlite3_column_text(stmt, column) else { return nil }
        let count = Int(sqlite3_column_bytes(stmt, column))
        return String(decoding: UnsafeBufferPointer(start: ptr, count: count), as: UTF8.self)
    }
    /// Column as bytes (empty for NULL or empty blob).
    public func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(stmt, column))
        guard count > 0, let ptr = sqlite3_column_blob(stmt, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: ptr, count: count))
    }
}
