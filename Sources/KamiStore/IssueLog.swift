public import KamiCore
import KamiCrypto
import KamiLedger

/// The issue log: one appended record per order mutation, the only thing the hot path writes.
///
/// An order's write (`Mutation.writeOrder`: an issue, a hold, a commit, a release, a refund,
/// an upstream step) used to write its order row, its codes' states, its journal lines, its
/// report summary, its webhook outbox rows and a chained audit entry in the batch's
/// transaction. Now a batch made only of such writes appends one `issue_log` row per write
/// (its audit event in readable columns, everything else in one binary record) and one audit
/// entry for the whole batch that holds a digest of each record, and commits: one fsync, two
/// or three B-tree pages. The rows the record implies are *derived* from it behind the commit:
/// by the writer, in a transaction of its own that needs no fsync of its own (the next
/// commit's fsync of the WAL carries it), once enough records wait, when the writer has been
/// idle a moment, and before anything else that reads or writes those rows (any other
/// mutation, a job, a read through `Store.read`, shutdown). At open, records a crash left
/// underived are derived again from the log (`recover`). `meta.issue_log_derived` is the last
/// record derived, written in the same transaction as what it derived.
enum IssueLog {
    /// The `meta` key of the last derived record.
    static let derivedKey = "issue_log_derived"
    /// The `meta` key counting code moves derivation found their code elsewhere.
    static let conflictsKey = "issue_log_conflicts"
    /// Bytes of each record's digest in its batch's audit entry.
    static let digestBytes = 16
    /// The audit event of a batch's entry.
    static let auditEvent = "issue-log"

    /// Whether `mutation` goes through the log.
    static func takes(_ mutation: Mutation) -> Bool {
        if case .writeOrder = mutation { return true }
        return false
    }

    /// The digest of one record as its batch's audit entry holds it: SHA-256 over its key,
    /// time, audit fields and record, length-prefixed, cut to `digestBytes`.
    static func digest(seq: Int64, atMs: Int64, event: AuditEvent, record: [UInt8]) -> ArraySlice<UInt8> {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(48 + event.event.utf8.count + event.subject.utf8.count + event.detail.utf8.count + record.count)
        appendBigEndian(&bytes, UInt64(bitPattern: seq))
        appendBigEndian(&bytes, UInt64(bitPattern: atMs))
        for field in [event.event, event.subject, event.detail] {
            appendBigEndian(&bytes, UInt64(field.utf8.count))
            bytes.append(contentsOf: field.utf8)
        }
        appendBigEndian(&bytes, UInt64(record.count))
        bytes.append(contentsOf: record)
        return SHA256.hash(bytes)[0..<digestBytes]
    }

    /// The audit detail of a batch entry covering records `first...first+count-1`.
    static func auditDetail(first: Int64, count: Int) -> String { "first=\(first) count=\(count)" }

    /// `(first, count)` from a batch entry's detail, nil when it is not one.
    static func parseDetail(_ detail: String) -> (first: Int64, count: Int)? {
        let parts = detail.split(separator: " ")
        guard parts.count == 2, parts[0].hasPrefix("first="), parts[1].hasPrefix("count="),
            let first = Int64(parts[0].dropFirst(6)), let count = Int(parts[1].dropFirst(6)), first >= 1, count >= 1
        else { return nil }
        return (first, count)
    }

    /// The last record in the log (0: none).
    static func lastSeq(_ db: Connection) throws(SQLiteError) -> Int64 {
        try db.scalarInt("SELECT COALESCE(MAX(seq), 0) FROM issue_log") ?? 0
    }

    /// The last record derived (0: none).
    static func derivedSeq(_ db: Connection) throws(SQLiteError) -> Int64 {
        Int64(try db.scalarText("SELECT value FROM meta WHERE key = '\(derivedKey)'") ?? "0") ?? 0
    }

    static func setDerived(_ seq: Int64, _ db: Connection) throws(SQLiteError) {
        let stmt = try db.prepare("""
            INSERT INTO meta(key, value) VALUES('\(derivedKey)', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value
            """)
        stmt.bind(1, String(seq))
        try stmt.run()
    }

    /// Appends one record inside the caller's transaction.
    static func append(seq: Int64, atMs: Int64, event: AuditEvent, record: [UInt8], db: Connection) throws(SQLiteError) {
        let stmt = try db.prepare(HotSQL.appendIssueLog)
        stmt.bind(1, seq)
        stmt.bind(2, atMs)
        stmt.bind(3, event.event)
        stmt.bind(4, event.subject)
        stmt.bind(5, event.detail)
        stmt.bind(6, blob: record)
        try stmt.run()
    }

    /// Derives every record after `meta.issue_log_derived` in one transaction (at open, before
    /// anything reads the derived tables); returns how many.
    static func recover(_ db: Connection) throws(StoreError) -> Int {
        do {
            try db.execute("BEGIN IMMEDIATE")
            let from = try derivedSeq(db)
            let lastRecord = try lastSeq(db)
            guard from <= lastRecord else {
                try? db.execute("ROLLBACK")
                throw StoreError.corrupt("meta.\(derivedKey) says record \(from) was derived, but the issue log ends at "
                    + "record \(lastRecord) (records cut from it, or the meta row edited). Run `kamictl audit verify` on a copy")
            }
            let stmt = try db.prepare(
                "SELECT seq, at_ms, event, subject, detail, rec FROM issue_log WHERE seq > ? ORDER BY seq")
            stmt.bind(1, from)
            var pending: [PendingRecord] = []
            var digests: [ArraySlice<UInt8>] = []
            var expected = from + 1
            while try stmt.step() {
                let seq = stmt.int64(0)
                let bytes = stmt.blob(5)
                guard seq == expected, let decoded = Record.decode(bytes) else {
                    stmt.reset()
                    try? db.execute("ROLLBACK")
                    throw StoreError.corrupt("issue_log record \(expected) is "
                        + (seq == expected ? "not a record this version can read" : "missing (next is \(seq))")
                        + "; nothing was derived from it. Run `kamictl verify` on a copy to see what else is wrong")
                }
                let event = AuditEvent(stmt.text(2) ?? "", subject: stmt.text(3) ?? "", detail: stmt.text(4) ?? "")
                digests.append(digest(seq: seq, atMs: stmt.int64(1), event: event, record: bytes))
                pending.append(PendingRecord(seq: seq, atMs: stmt.int64(1), auditEvent: event.event, record: decoded))
                expected += 1
            }
            stmt.reset()
            if let problem = try checkCovered(from: from + 1, digests: digests, db: db) {
                try? db.execute("ROLLBACK")
                throw StoreError.corrupt(problem + "; nothing was derived from it. Run `kamictl verify` on a copy "
                    + "(`kamictl audit verify` names every entry and record that differs)")
            }
            let count = pending.count
            if count > 0 {
                var deriver = Deriver(db: db)
                try deriver.derive(pending[...])
            }
            try db.execute("COMMIT")
            return count
        } catch let error as StoreError {
            throw error
        } catch let error as SQLiteError {
            try? db.execute("ROLLBACK")
            throw .sqlite(error)
        } catch {
            try? db.execute("ROLLBACK")
            throw .corrupt("\(error)")
        }
    }
}

extension IssueLog {
    /// Whether the records from `first` on (their `digests`, in order) are the ones their
    /// batches' audit entries hold digests of: nil when they are, else what is wrong. Run at
    /// open before deriving what a crash left, so that a record changed on disk since it was
    /// committed never reaches the orders, codes and ledger. (The chain of those entries is
    /// `kamictl audit verify`'s to check; this is the link from the entries to the records.)
    static func checkCovered(from first: Int64, digests: [ArraySlice<UInt8>], db: Connection) throws(SQLiteError) -> String? {
        // `last` < `first` when no record follows: then any entry covering one is a cut tail.
        let last = first + Int64(digests.count) - 1
        // The entries that cover them are the last ones holding digests: walk back from the end.
        let stmt = try db.prepare("SELECT seq, event, detail, records FROM audit WHERE records IS NOT NULL ORDER BY seq DESC")
        defer { stmt.reset() }
        // The highest record no entry walked so far covers.
        var next = last
        while try stmt.step() {
            let entry = stmt.int64(0)
            let held = stmt.blob(3)
            guard stmt.text(1) == auditEvent, let (start, count) = parseDetail(stmt.text(2) ?? ""),
                held.count == count * digestBytes
            else {
                return "audit entry \(entry) holds record digests but is not a well-formed issue-log entry"
            }
            let end = start + Int64(count) - 1
            if end < first { break }
            if end > last {
                return "issue_log record \(max(last + 1, start)) is missing (audit entry \(entry) covers records \(start)...\(end))"
            }
            if end < next { return "issue_log record \(end + 1) is covered by no audit entry" }
            if end > next {
                return "audit entry \(entry) covers records \(start)...\(end), some of them covered by a later entry too"
            }
            for seq in max(start, first)...end {
                let index = Int(seq - start) * digestBytes
                guard digests[Int(seq - first)].elementsEqual(held[index..<(index + digestBytes)]) else {
                    return "issue_log record \(seq) was modified (its digest in audit entry \(entry) does not match)"
                }
            }
            next = start - 1
            if start <= first { break }
        }
        if next >= first { return "issue_log record \(first) is covered by no audit entry" }
        return nil
    }
}

/// What one record holds: the order as written, its codes' moves, its journal lines, and the
/// webhook endpoints its event goes to (chosen when it was written, so a record derived after
/// a crash or a reload goes where it would have gone).
struct Record: Sendable {
    var order: Order
    var codes: [CodeChange]
    var ledger: [JournalLine]
    var endpoints: [String]

    static let version: UInt8 = 1

    func encode() -> [UInt8] {
        var out = RecordWriter()
        out.bytes.reserveCapacity(160 + order.codes.count * 12 + codes.count * 12 + ledger.count * 48)
        out.u8(Record.version)
        out.i64(order.seq)
        out.string(order.orderID)
        out.string(order.user)
        out.i64(Int64(order.sku))
        out.i64(Int64(order.units))
        out.u8(order.state.rawValue)
        out.optionalString(order.paymentRef)
        out.i64(Int64(order.codes.count))
        for code in order.codes {
            out.i64(code.codeID)
            out.i64(Int64(code.sku))
        }
        out.i64(order.ttlMs)
        out.i64(order.expiresAtMs)
        out.i64(order.createdAtMs)
        out.i64(order.updatedAtMs)
        out.optionalI64(order.amountCents)
        out.optionalString(order.labels.map(LabelsText.encode))
        out.i64(order.subsidyCents)
        out.i64(Int64(codes.count))
        for change in codes {
            out.i64(change.codeID)
            out.u8(change.from.rawValue)
            out.u8(change.state.rawValue)
            out.optionalI64(change.orderSeq)
        }
        out.i64(Int64(ledger.count))
        for line in ledger {
            out.u8(line.kind.rawValue)
            out.optionalI64(line.orderSeq)
            out.i64(Int64(line.sku))
            out.string(line.debit.description)
            out.string(line.credit.description)
            out.i64(line.amountCents)
            out.optionalString(line.currency)
            out.optionalString(line.channel)
            out.optionalString(line.campaign)
            out.optionalString(line.source)
            out.i64(line.orderCount)
        }
        out.i64(Int64(endpoints.count))
        for endpoint in endpoints { out.string(endpoint) }
        return out.bytes
    }

    /// The record in `bytes`, or nil when they are not one (of this version).
    static func decode(_ bytes: [UInt8]) -> Record? {
        var input = RecordReader(bytes: bytes)
        guard input.u8() == version,
            let seq = input.i64(), let orderID = input.string(), let user = input.string(),
            let sku = input.i64().flatMap(SkuID.init(exactly:)), let units = input.i64().flatMap(Int.init(exactly:)),
            let state = input.u8().flatMap(OrderState.init(rawValue:)), let paymentRef = input.optionalString(),
            let codeCount = input.count()
        else { return nil }
        var orderCodes: [OrderCode] = []
        for _ in 0..<codeCount {
            guard let id = input.i64(), let codeSku = input.i64().flatMap(SkuID.init(exactly:)) else { return nil }
            orderCodes.append(OrderCode(codeID: id, sku: codeSku))
        }
        guard let ttl = input.i64(), let expires = input.i64(), let created = input.i64(), let updated = input.i64(),
            let amount = input.optionalI64(), let labelsText = input.optionalString(), let subsidy = input.i64(),
            let changeCount = input.count()
        else { return nil }
        var labels: OrderLabels?
        if let labelsText {
            guard let decoded = LabelsText.decode(labelsText) else { return nil }
            labels = decoded
        }
        var order = Order(seq: seq, orderID: orderID, user: user, sku: sku, units: units, state: state,
                          paymentRef: paymentRef, codes: orderCodes, ttlMs: ttl, expiresAtMs: expires,
                          createdAtMs: created, updatedAtMs: updated, amountCents: amount, labels: labels)
        order.subsidyCents = subsidy
        var changes: [CodeChange] = []
        for _ in 0..<changeCount {
            guard let id = input.i64(), let from = input.u8().flatMap(CodeState.init(rawValue:)),
                let to = input.u8().flatMap(CodeState.init(rawValue:)), let orderSeq = input.optionalI64(),
                from.canMove(to: to)
            else { return nil }
            changes.append(CodeChange(codeID: id, from: from, to: to, orderSeq: orderSeq))
        }
        guard let lineCount = input.count() else { return nil }
        var ledger: [JournalLine] = []
        for _ in 0..<lineCount {
            guard let kind = input.u8().flatMap(JournalKind.init(rawValue:)), let orderSeq = input.optionalI64(),
                let lineSku = input.i64().flatMap(SkuID.init(exactly:)),
                let debit = input.string().flatMap(Account.init(name:)), let credit = input.string().flatMap(Account.init(name:)),
                let amount = input.i64(), let currency = input.optionalString(), let channel = input.optionalString(),
                let campaign = input.optionalString(), let source = input.optionalString(), let orderCount = input.i64(),
                orderCount == 0 || orderCount == 1
            else { return nil }
            var line = JournalLine(kind: kind, orderSeq: orderSeq, sku: lineSku, debit: debit, credit: credit,
                                   amountCents: amount, currency: currency)
            line.channel = channel
            line.campaign = campaign
            line.source = source
            line.orderCount = orderCount
            ledger.append(line)
        }
        guard let endpointCount = input.count() else { return nil }
        var endpoints: [String] = []
        for _ in 0..<endpointCount {
            guard let endpoint = input.string() else { return nil }
            endpoints.append(endpoint)
        }
        guard input.atEnd else { return nil }
        return Record(order: order, codes: changes, ledger: ledger, endpoints: endpoints)
    }
}

/// A record appended but not yet derived, as the writer holds it.
struct PendingRecord: Sendable {
    let seq: Int64
    let atMs: Int64
    /// The audit event's name (which webhook event an order's write is depends on it).
    let auditEvent: String
    let record: Record
}

/// Writes the rows records imply, inside the caller's transaction.
struct Deriver {
    let db: Connection
    /// Moves of codes that were no longer in the state the record says they left (found
    /// only if the engine and the database disagreed; `verify` reports what it left).
    private(set) var conflicts = 0
    private var conflictsWritten = 0

    init(db: Connection) { self.db = db }

    /// Derives `records` (in order) and moves `meta.issue_log_derived` to the last.
    mutating func derive(_ records: ArraySlice<PendingRecord>, summary: SummaryAccumulator = SummaryAccumulator()) throws(SQLiteError) {
        guard let last = records.last else { return }
        let applier = MutationApplier(db: db, summary: summary)
        var outbox: OutboxWriter?
        for pending in records {
            let record = pending.record
            try applier.writeOrder(record.order)
            conflicts += try applier.setCodesDerived(record.codes)
            try applier.writeLedger(record.ledger, atMs: pending.atMs)
            if !record.endpoints.isEmpty {
                if outbox == nil { outbox = OutboxWriter(db: db, routes: []) }
                try outbox!.writeOrderEvent(record.order, audit: pending.auditEvent, endpoints: record.endpoints,
                                            atMs: pending.atMs)
            }
        }
        try summary.flush(db)
        if conflicts > conflictsWritten {
            // Kept with what was derived: `verify` reports it after any restart.
            let stmt = try db.prepare("""
                INSERT INTO meta(key, value) VALUES('\(IssueLog.conflictsKey)', ?)
                ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER) AS TEXT)
                """)
            stmt.bind(1, String(conflicts - conflictsWritten))
            try stmt.run()
            conflictsWritten = conflicts
        }
        try IssueLog.setDerived(last.seq, db)
    }
}

/// Integers as zigzag LEB128 varints (an issue's ids, counts and times take 1 to 6 bytes
/// instead of 8), strings length-prefixed.
struct RecordWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ value: UInt8) { bytes.append(value) }

    mutating func i64(_ value: Int64) { Varint.append(value, to: &bytes) }

    mutating func optionalI64(_ value: Int64?) {
        if let value {
            u8(1)
            i64(value)
        } else {
            u8(0)
        }
    }

    mutating func string(_ value: String) {
        i64(Int64(value.utf8.count))
        bytes.append(contentsOf: value.utf8)
    }

    mutating func optionalString(_ value: String?) {
        if let value {
            u8(1)
            string(value)
        } else {
            u8(0)
        }
    }
}

/// Reads what `RecordWriter` wrote; every read is nil past the end or on a malformed field.
struct RecordReader {
    let bytes: [UInt8]
    private var offset = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { offset == bytes.count }

    mutating func u8() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func i64() -> Int64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count {
            let byte = bytes[offset]
            offset += 1
            // The tenth byte may hold only the top bit.
            if shift == 63 && byte > 1 { return nil }
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return Int64(bitPattern: (value >> 1) ^ (0 &- (value & 1))) }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }

    /// A count of items that follow (each at least one byte), nil when it cannot be one.
    mutating func count() -> Int? {
        guard let value = i64(), value >= 0, value <= Int64(bytes.count - offset) else { return nil }
        return Int(value)
    }

    /// nil: malformed; .some(nil): absent.
    mutating func optionalI64() -> Int64?? {
        switch u8() {
        case 0: return .some(nil)
        case 1: return i64().map { .some($0) }
        default: return nil
        }
    }

    mutating func string() -> String? {
        guard let length = count() else { return nil }
        let start = offset
        offset = start + length
        return String(validating: bytes[start..<offset], as: UTF8.self)
    }

    mutating func optionalString() -> String?? {
        switch u8() {
        case 0: return .some(nil)
        case 1: return string().map { .some($0) }
        default: return nil
        }
    }
}

/// The code moves of issue-log records not yet derived, for readers of code states: a read
/// takes what it needs from here *before* its snapshot begins, reads the snapshot with the
/// last derived record (`meta.issue_log_derived`) in the same statement, and lets a move of
/// a later record win. Reads of code states thus never wait for derivation (nor fail when
/// it fails), and see every move acknowledged before they began.
public final class CodeOverlay: Sendable {
    /// The latest move of each code, with the record that made it.
    private let moves = Locked<[CodeID: Move]>([:])

    struct Move: Sendable {
        var seq: Int64
        var state: CodeState
        var orderSeq: OrderSeq?

        /// Whether this move is later than what a snapshot derived: `derived` is its
        /// `meta.issue_log_derived` (nil: nothing derived yet).
        func isNewer(thanDerived derived: String?) -> Bool { seq > Int64(derived ?? "0") ?? 0 }
    }

    init() {}

    /// The records just committed (writer thread, before their callers are told).
    func add(_ records: ArraySlice<PendingRecord>) {
        moves.withLock { moves in
            for pending in records {
                for change in pending.record.codes {
                    moves[change.codeID] = Move(seq: pending.seq, state: change.state, orderSeq: change.orderSeq)
                }
            }
        }
    }

    /// Everything was derived (writer thread, after the derive committed).
    func clear() { moves.withLock { $0.removeAll(keepingCapacity: $0.count <= WriterContext.pendingMax) } }

    /// Records up to `seq` were derived (writer thread, after the derive committed).
    func clear(through seq: Int64) {
        moves.withLock { moves in
            moves = moves.filter { $0.value.seq > seq }
        }
    }

    /// The moves of `ids` that wait (take before the snapshot).
    func lookup(_ ids: [CodeID]) -> [CodeID: Move] {
        moves.withLock { moves in
            guard !moves.isEmpty else { return [:] }
            var found: [CodeID: Move] = [:]
            for id in ids { if let move = moves[id] { found[id] = move } }
            return found
        }
    }
}

extension Store {
    /// The last issue-log record, the last one derived, and the code moves derivation found
    /// their code elsewhere (kept in `meta`), read in one statement.
    public func issueLogStatus() throws(KamiError) -> (last: Int64, derived: Int64, conflicts: Int64) {
        try readAsIs { db throws(SQLiteError) in
            let stmt = try db.prepare("""
                SELECT (SELECT COALESCE(MAX(seq), 0) FROM issue_log), (SELECT value FROM meta WHERE key = '\(IssueLog.derivedKey)'),
                    (SELECT value FROM meta WHERE key = '\(IssueLog.conflictsKey)')
                """)
            defer { stmt.reset() }
            guard try stmt.step() else { return (0, 0, 0) }
            return (stmt.int64(0), Int64(stmt.text(1) ?? "0") ?? -1, Int64(stmt.text(2) ?? "0") ?? -1)
        }
    }
}

/// For the fuzzer (`Fuzz/` target `record`): reads `bytes` as an issue-log record, as the
/// store does at open; what it reads must encode and read back to the same bytes.
public enum IssueLogRecordCheck {
    /// Whether `bytes` are a record; traps when a record read does not survive encoding.
    @discardableResult
    public static func check(_ bytes: [UInt8]) -> Bool {
        guard let record = Record.decode(bytes) else { return false }
        let encoded = record.encode()
        guard let again = Record.decode(encoded) else {
            preconditionFailure("a record that was read does not read back after encoding")
        }
        precondition(again.encode() == encoded, "a record changes when encoded a second time")
        return true
    }
}
