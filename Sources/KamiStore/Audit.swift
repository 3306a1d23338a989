import KamiCore
import KamiCrypto

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

/// Appends audit entries chained with SHA-256: each entry's hash covers the previous hash,
/// its sequence number, time and fields, so changing, inserting or deleting any entry breaks
/// every hash after it. Owned by the writer thread.
struct AuditChain {
    /// Hash before the first entry.
    static let genesis = [UInt8](repeating: 0, count: 32)

    private(set) var lastSeq: Int64
    private(set) var lastHash: [UInt8]

    init(lastSeq: Int64, lastHash: [UInt8]) {
        self.lastSeq = lastSeq
        self.lastHash = lastHash
    }

    /// Loads the chain's tail from the database.
    static func load(_ db: Connection) throws(SQLiteError) -> AuditChain {
        let stmt = try db.prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        defer { stmt.reset() }
        guard try stmt.step() else { return AuditChain(lastSeq: 0, lastHash: genesis) }
        return AuditChain(lastSeq: stmt.int64(0), lastHash: stmt.blob(1))
    }

    /// The hash of an entry given its predecessor's hash.
    static func hash(prev: [UInt8], seq: Int64, atMs: Int64, event: AuditEvent) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64 + event.event.utf8.count + event.subject.utf8.count + event.detail.utf8.count)
        bytes.append(contentsOf: prev)
        appendBigEndian(&bytes, UInt64(bitPattern: seq))
        appendBigEndian(&bytes, UInt64(bitPattern: atMs))
        // Fields are length-prefixed so that moving bytes between fields changes the hash.
        for field in [event.event, event.subject, event.detail] {
            appendBigEndian(&bytes, UInt64(field.utf8.count))
            bytes.append(contentsOf: field.utf8)
        }
        return SHA256.hash(bytes)
    }

    /// Appends `event` at `atMs` inside the caller's open transaction.
    mutating func append(_ event: AuditEvent, atMs: Int64, db: Connection) throws(SQLiteError) {
        let seq = lastSeq + 1
        let hash = AuditChain.hash(prev: lastHash, seq: seq, atMs: atMs, event: event)
        let stmt = try db.prepare(HotSQL.appendAudit)
        stmt.bind(1, seq)
        stmt.bind(2, atMs)
        stmt.bind(3, event.event)
        stmt.bind(4, event.subject)
        stmt.bind(5, event.detail)
        stmt.bind(6, blob: lastHash)
        stmt.bind(7, blob: hash)
        try stmt.run()
        lastSeq = seq
        lastHash = hash
    }

    /// Walks the whole chain and returns the first broken entry, or nil when intact.
    static func verify(_ db: Connection) throws(SQLiteError) -> AuditBreak? { try walk(db).broken }

    /// Walks the whole chain: how many entries hold together from the start, and the first
    /// broken one.
    static func walk(_ db: Connection) throws(SQLiteError) -> AuditWalk {
        let stmt = try db.prepare("SELECT seq, at_ms, event, subject, detail, prev_hash, hash FROM audit ORDER BY seq")
        defer { stmt.reset() }
        var expectedSeq: Int64 = 1
        var prev = genesis
        while try stmt.step() {
            let seq = stmt.int64(0)
            func broken(_ at: Int64, _ reason: String) -> AuditWalk {
                AuditWalk(entries: expectedSeq - 1, broken: AuditBreak(seq: at, reason: reason))
            }
            if seq != expectedSeq {
                return broken(expectedSeq, "entry \(expectedSeq) is missing (next is \(seq))")
            }
            let event = AuditEvent(stmt.text(2) ?? "", subject: stmt.text(3) ?? "", detail: stmt.text(4) ?? "")
            if stmt.blob(5) != prev {
                return broken(seq, "entry \(seq) does not point at the hash of entry \(seq - 1)")
            }
            let hash = AuditChain.hash(prev: prev, seq: seq, atMs: stmt.int64(1), event: event)
            if stmt.blob(6) != hash {
                return broken(seq, "entry \(seq) was modified (its hash does not match its content)")
            }
            prev = hash
            expectedSeq += 1
        }
        return AuditWalk(entries: expectedSeq - 1, broken: nil)
    }
}

/// What a walk of the audit chain found.
public struct AuditWalk: Sendable, Hashable {
    /// Entries that hold together from the first (all of them when `broken` is nil).
    public let entries: Int64
    /// The first broken entry, or nil when the chain is intact.
    public let broken: AuditBreak?
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
