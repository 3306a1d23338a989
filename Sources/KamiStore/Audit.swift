import KamiCore
public import KamiCrypto
import Glibc

/// One audit entry before it is chained: what happened (`event`), to what (`subject`, e.g.
/// `order:ORD-1`), and the details (`sku=3 codes=10,11`). Never a secret.
public struct AuditEvent: Sendable, Hashable {
    public var event: String
    public var subject: String
    public var detail: String

    /// Makes an event.
    public init(_ event: String, subject: String, detail: String) {
        self.event = event
        self.subject = subject
        self.detail = detail
    }
}

/// Appends audit entries chained with SHA-256 and authenticated with HMAC-SHA256.
///
/// Each entry's hash covers the previous hash, its sequence number, time and fields, so
/// changing, inserting or deleting any entry breaks every hash after it. Each entry's MAC is
/// HMAC(audit key, hash): whoever holds only the database can recompute the hashes after an
/// edit but not the MACs. Cutting the tail keeps every MAC valid, which is what the anchor
/// (`AuditAnchor`, a MAC'd copy of the chain head in a file beside the database) catches.
/// Owned by the writer thread.
struct AuditChain {
    /// Hash before the first entry.
    static let genesis = [UInt8](repeating: 0, count: 32)
    /// The event recorded when the anchor found at open disagrees with the chain.
    static let anchorMismatchEvent = "audit-anchor-mismatch"

    let key: AuditKey
    private(set) var lastSeq: Int64
    private(set) var lastHash: [UInt8]
    /// The last entry that carries a MAC.
    private(set) var sealedSeq: Int64

    init(key: AuditKey, lastSeq: Int64, lastHash: [UInt8]) {
        self.key = key
        self.lastSeq = lastSeq
        self.lastHash = lastHash
        self.sealedSeq = lastSeq
    }

    /// Loads the chain's tail from the database.
    static func load(_ db: Connection, key: AuditKey) throws(SQLiteError) -> AuditChain {
        let stmt = try db.prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        defer { stmt.reset() }
        guard try stmt.step() else { return AuditChain(key: key, lastSeq: 0, lastHash: genesis) }
        return AuditChain(key: key, lastSeq: stmt.int64(0), lastHash: stmt.blob(1))
    }

    /// The hash of an entry given its predecessor's hash. `records`: an issue-log batch
    /// entry's digests of its records (entries without them hash as they always did).
    static func hash(prev: [UInt8], seq: Int64, atMs: Int64, event: AuditEvent, records: [UInt8]? = nil) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(72 + event.event.utf8.count + event.subject.utf8.count + event.detail.utf8.count
            + (records?.count ?? 0))
        bytes.append(contentsOf: prev)
        appendBigEndian(&bytes, UInt64(bitPattern: seq))
        appendBigEndian(&bytes, UInt64(bitPattern: atMs))
        // Fields are length-prefixed so that moving bytes between fields changes the hash.
        for field in [event.event, event.subject, event.detail] {
            appendBigEndian(&bytes, UInt64(field.utf8.count))
            bytes.append(contentsOf: field.utf8)
        }
        if let records {
            appendBigEndian(&bytes, UInt64(records.count))
            bytes.append(contentsOf: records)
        }
        return SHA256.hash(bytes)
    }

    /// Appends `event` at `atMs` inside the caller's open transaction (with `records`, the
    /// digests of the issue-log records it covers).
    mutating func append(_ event: AuditEvent, atMs: Int64, db: Connection, records: [UInt8]? = nil) throws(SQLiteError) {
        let seq = lastSeq + 1
        let hash = AuditChain.hash(prev: lastHash, seq: seq, atMs: atMs, event: event, records: records)
        let stmt = try db.prepare(HotSQL.appendAudit)
        stmt.bind(1, seq)
        stmt.bind(2, atMs)
        stmt.bind(3, event.event)
        stmt.bind(4, event.subject)
        stmt.bind(5, event.detail)
        stmt.bind(6, blob: lastHash)
        stmt.bind(7, blob: hash)
        stmt.bind(8, blob: records)
        try stmt.run()
        lastSeq = seq
        lastHash = hash
    }

    /// MACs the last entry appended, inside the caller's transaction, just before COMMIT:
    /// one HMAC per transaction (a group-commit batch, a job), not per entry. The hash chain
    /// carries the MAC back to every earlier entry, so every committed entry is covered by the
    /// MAC of its transaction's last entry.
    mutating func sealTail(db: Connection) throws(SQLiteError) {
        guard lastSeq > sealedSeq else { return }
        let stmt = try db.prepare(HotSQL.sealAudit)
        stmt.bind(1, blob: key.mac(lastHash))
        stmt.bind(2, lastSeq)
        try stmt.run()
        sealedSeq = lastSeq
    }

    /// Gives entries written before the chain was keyed (migration 2) their MAC, once, if the
    /// chain up to them holds; a broken legacy chain is left as it is for `verify` to report.
    /// Returns how many entries were sealed. Runs in the caller's transaction.
    static func sealLegacy(_ db: Connection, key: AuditKey) throws(SQLiteError) -> Int64 {
        guard let unsealed = try db.scalarInt("SELECT COUNT(*) FROM audit WHERE mac IS NULL"), unsealed > 0 else {
            return 0
        }
        let walk = try walk(db, key: key, legacy: true)
        guard walk.broken == nil else { return 0 }
        // The last entry's MAC covers all before it through the hash chain.
        let update = try db.prepare("UPDATE audit SET mac = ? WHERE seq = ?")
        update.bind(1, blob: key.mac(walk.lastHash))
        update.bind(2, walk.entries)
        try update.run()
        return unsealed
    }

    /// Walks the whole chain: how many entries hold together from the start, and the first
    /// broken one (a missing entry, a broken link, a changed entry, a missing or wrong MAC).
    /// `legacy` accepts entries without a MAC (only to decide whether to seal them).
    static func walk(_ db: Connection, key: AuditKey, legacy: Bool = false) throws(SQLiteError) -> AuditWalk {
        let stmt = try db.prepare(
            "SELECT seq, at_ms, event, subject, detail, prev_hash, hash, mac, records FROM audit ORDER BY seq")
        defer { stmt.reset() }
        var expectedSeq: Int64 = 1
        var prev = genesis
        var recorded: [AuditBreak] = []
        var lastSealed: Int64 = 0
        var records = IssueLogCheck(db: db)
        defer { records.finish() }
        while try stmt.step() {
            let seq = stmt.int64(0)
            func broken(_ at: Int64, _ reason: String) -> AuditWalk {
                AuditWalk(entries: expectedSeq - 1, lastHash: prev, broken: AuditBreak(seq: at, reason: reason),
                          recorded: recorded)
            }
            if seq != expectedSeq {
                return broken(expectedSeq, "entry \(expectedSeq) is missing (next is \(seq))")
            }
            let event = AuditEvent(stmt.text(2) ?? "", subject: stmt.text(3) ?? "", detail: stmt.text(4) ?? "")
            if stmt.blob(5) != prev {
                return broken(seq, "entry \(seq) does not point at the hash of entry \(seq - 1)")
            }
            let digests: [UInt8]? = stmt.isNull(8) ? nil : stmt.blob(8)
            let hash = AuditChain.hash(prev: prev, seq: seq, atMs: stmt.int64(1), event: event, records: digests)
            if stmt.blob(6) != hash {
                return broken(seq, "entry \(seq) was modified (its hash does not match its content)")
            }
            if let digests, let problem = try records.check(entry: seq, event: event, digests: digests) {
                return broken(seq, problem)
            }
            if !stmt.isNull(7) {
                if !key.verify(stmt.blob(7), of: hash) {
                    return broken(lastSealed + 1, "entries \(lastSealed + 1)...\(seq) were rewritten: the MAC of entry "
                        + "\(seq) does not match (recomputed without the audit key?)")
                }
                lastSealed = seq
            }
            if event.event == anchorMismatchEvent {
                recorded.append(AuditBreak(seq: seq, reason: "found at start-up: \(event.detail)"))
            }
            prev = hash
            expectedSeq += 1
        }
        let entries = expectedSeq - 1
        if let problem = try records.checkNoneAfter() {
            return AuditWalk(entries: entries, lastHash: prev, broken: AuditBreak(seq: entries + 1, reason: problem),
                             recorded: recorded)
        }
        if lastSealed < entries && !legacy {
            // Every committed transaction ends with a MAC'd entry: an unsealed tail was
            // written, or had its MACs removed, without the key.
            return AuditWalk(entries: lastSealed, lastHash: prev, broken: AuditBreak(
                seq: lastSealed + 1, reason: "entries \(lastSealed + 1)...\(entries) have no MAC (written or rewritten "
                    + "without the audit key)"), recorded: recorded)
        }
        return AuditWalk(entries: entries, lastHash: prev, broken: nil, recorded: recorded)
    }

    /// The MAC of entry `seq`, or nil when there is no such entry or it has none.
    static func mac(ofEntry seq: Int64, _ db: Connection) throws(SQLiteError) -> [UInt8]? {
        let stmt = try db.prepare("SELECT mac FROM audit WHERE seq = ?")
        defer { stmt.reset() }
        stmt.bind(1, seq)
        return try stmt.step() && !stmt.isNull(0) ? stmt.blob(0) : nil
    }

    /// The hash of entry `seq`, or nil when there is none.
    static func hash(ofEntry seq: Int64, _ db: Connection) throws(SQLiteError) -> [UInt8]? {
        let stmt = try db.prepare("SELECT hash FROM audit WHERE seq = ?")
        defer { stmt.reset() }
        stmt.bind(1, seq)
        return try stmt.step() ? stmt.blob(0) : nil
    }

    /// What is wrong between `anchor` (read before the chain) and the chain in `db`, or nil.
    /// The anchor may lag the chain (it is written after commits, once a second); it may
    /// never be ahead of it, nor disagree with the entry it names.
    static func check(_ anchor: AuditAnchor.Reading, tail: Int64, db: Connection) throws(SQLiteError) -> AuditBreak? {
        switch anchor {
        case .missing:
            return tail == 0 ? nil : AuditBreak(seq: 1, reason: "the anchor file is missing, so a cut of the "
                + "chain's tail cannot be ruled out (the chain has \(tail) entries)")
        case .unreadable(let why):
            return AuditBreak(seq: 1, reason: "the anchor file is not one kamid wrote: \(why)")
        case .head(let seq, let hash):
            if seq > tail {
                return AuditBreak(seq: tail + 1, reason: "the chain was cut: the anchor records entry \(seq) but "
                    + "the chain ends at entry \(tail)")
            }
            if seq > 0, try AuditChain.hash(ofEntry: seq, db) != hash {
                return AuditBreak(seq: seq, reason: "entry \(seq) differs from the anchored chain head (the chain "
                    + "was rewritten from there)")
            }
            return nil
        }
    }
}

/// What a walk of the audit chain found.
public struct AuditWalk: Sendable, Hashable {
    /// Entries that hold together from the first (all of them when `broken` is nil).
    public let entries: Int64
    /// The hash of the last entry that holds.
    let lastHash: [UInt8]
    /// The first broken entry, or nil when the chain is intact.
    public let broken: AuditBreak?
    /// Disagreements between the anchor and the chain found when the store opened, recorded
    /// in the chain itself (`audit-anchor-mismatch` entries): a cut or rewrite while kamid
    /// was down, or commits lost at a power cut with durability `normal`.
    public let recorded: [AuditBreak]

    /// Makes a walk result.
    public init(entries: Int64, lastHash: [UInt8] = [], broken: AuditBreak?, recorded: [AuditBreak] = []) {
        self.entries = entries
        self.lastHash = lastHash
        self.broken = broken
        self.recorded = recorded
    }
}

/// The first broken audit entry found by verification.
public struct AuditBreak: Sendable, Hashable, CustomStringConvertible {
    /// Sequence number of the first bad entry.
    public let seq: Int64
    /// What is wrong with it.
    public let reason: String
    public var description: String { reason }
}

@inline(__always)
func appendBigEndian(_ bytes: inout [UInt8], _ value: UInt64) {
    var v = value.bigEndian
    withUnsafeBytes(of: &v) { bytes.append(contentsOf: $0) }
}

/// Walks the issue log beside the audit chain: each batch entry's digests against the records
/// it covers, in order, and no record that no entry covers.
struct IssueLogCheck {
    let db: Connection
    /// The next record an entry must start at.
    private var next: Int64 = 1
    private var stmt: Statement?

    init(db: Connection) { self.db = db }

    /// What is wrong with the records batch entry `entry` covers, or nil.
    mutating func check(entry: Int64, event: AuditEvent, digests: [UInt8]) throws(SQLiteError) -> String? {
        guard event.event == IssueLog.auditEvent, let (first, count) = IssueLog.parseDetail(event.detail),
            digests.count == count * IssueLog.digestBytes
        else {
            return "entry \(entry) holds record digests but is not a well-formed issue-log entry"
        }
        if first != next {
            return "entry \(entry) covers issue_log records from \(first), but the previous entry ended at \(next - 1)"
        }
        if stmt == nil {
            stmt = try db.prepare("SELECT seq, at_ms, event, subject, detail, rec FROM issue_log WHERE seq >= ? ORDER BY seq")
        }
        let rows = stmt!
        rows.bind(1, first)
        defer { rows.reset() }
        for index in 0..<count {
            let seq = first + Int64(index)
            guard try rows.step(), rows.int64(0) == seq else {
                return "issue_log record \(seq) is missing (audit entry \(entry) covers records \(first)...\(first + Int64(count) - 1))"
            }
            let event = AuditEvent(rows.text(2) ?? "", subject: rows.text(3) ?? "", detail: rows.text(4) ?? "")
            let digest = IssueLog.digest(seq: seq, atMs: rows.int64(1), event: event, record: rows.blob(5))
            let start = index * IssueLog.digestBytes
            if !digest.elementsEqual(digests[start..<(start + IssueLog.digestBytes)]) {
                return "issue_log record \(seq) was modified (its digest in audit entry \(entry) does not match; "
                    + "record \(index + 1) of the \(count) that entry covers)"
            }
        }
        next = first + Int64(count)
        return nil
    }

    /// Records after the last covered one (or before the first): appended without an audit
    /// entry.
    func checkNoneAfter() throws(SQLiteError) -> String? {
        if let first = try db.scalarInt("SELECT MIN(seq) FROM issue_log"), first < 1 {
            return "issue_log record \(first) is covered by no audit entry (records start at 1)"
        }
        let last = try IssueLog.lastSeq(db)
        guard last >= next else { return nil }
        return "issue_log records \(next)...\(last) are covered by no audit entry (appended without the writer, or "
            + "their entry was cut)"
    }

    mutating func finish() { stmt?.reset() }
}
