public import KamiCore
import KamiCrypto

/// The store's side of the audit chain: loading and checking it at open, and walking it for
/// `verify` and `audit verify` (the chain itself is `AuditChain`, its head `AuditAnchor`).
extension Store {
    /// Loads the audit chain at open: gives entries written before the chain was keyed their
    /// MAC, and compares the anchor the last run left with the chain. A disagreement (the
    /// tail cut or rewritten while kamid was down, or commits lost at a power cut with
    /// durability `normal`) is recorded in the chain itself as an `audit-anchor-mismatch`
    /// entry, which `audit verify` reports from then on; then the chain is anchored afresh.
    static func openAuditChain(
        _ db: Connection, key: AuditKey, found: AuditAnchor.Reading, sealLegacy: Bool, atMs: Int64
    ) throws(StoreError) -> AuditChain {
        var wrongKeyAt: Int64?
        let chain = try openAuditChain(db, key: key, found: found, sealLegacy: sealLegacy, atMs: atMs, wrongKeyAt: &wrongKeyAt)
        if let seq = wrongKeyAt {
            throw .corrupt("the audit chain is not authenticated by this master key (entry \(seq)'s MAC does not "
                + "match, and the anchor is missing or does not match either); is this the data directory's own "
                + "master key file? Nothing was written")
        }
        return chain
    }

    private static func openAuditChain(
        _ db: Connection, key: AuditKey, found: AuditAnchor.Reading, sealLegacy: Bool, atMs: Int64,
        wrongKeyAt: inout Int64?
    ) throws(StoreError) -> AuditChain {
        do {
            try db.execute("BEGIN IMMEDIATE")
            // Only entries of a database written before MACs existed are sealed, at the open
            // that migrates it: MACs stripped later are a break, never sealed again.
            let sealed = sealLegacy ? try AuditChain.sealLegacy(db, key: key) : 0
            var chain = try AuditChain.load(db, key: key)
            if case .head = found {} else if let tailMAC = try AuditChain.mac(ofEntry: chain.lastSeq, db),
                !key.verify(tailMAC, of: chain.lastHash)
            {
                // Neither the anchor nor the last entry is authenticated by this key.
                try db.execute("ROLLBACK")
                wrongKeyAt = chain.lastSeq
                return chain
            }
            // A chain keyed just now had no anchor before. Otherwise the tail must carry a valid
            // MAC: the seal appended below would otherwise cover (bless) an unsealed or
            // rewritten tail, so such a tail is recorded as a finding first.
            var problem = sealed > 0 && found == .missing ? nil : try AuditChain.check(found, tail: chain.lastSeq, db: db)
            if sealed == 0 && chain.lastSeq > 0 {
                let tailMAC = try AuditChain.mac(ofEntry: chain.lastSeq, db)
                if tailMAC == nil {
                    problem = AuditBreak(seq: chain.lastSeq, reason: "the chain's last entry \(chain.lastSeq) has no MAC "
                        + "(MACs removed, or entries written without the audit key)"
                        + (problem.map { "; also: \($0.reason)" } ?? ""))
                } else if let tailMAC, !key.verify(tailMAC, of: chain.lastHash) {
                    problem = AuditBreak(seq: chain.lastSeq, reason: "the MAC of the chain's last entry \(chain.lastSeq) "
                        + "does not match (the tail was rewritten)" + (problem.map { "; also: \($0.reason)" } ?? ""))
                }
            }
            if sealed > 0 {
                try chain.append(AuditEvent("audit-keyed", subject: "audit",
                                            detail: "entries=\(sealed) written before the chain was keyed now carry MACs"),
                                 atMs: atMs, db: db)
            }
            if let problem {
                try chain.append(AuditEvent(AuditChain.anchorMismatchEvent, subject: "audit", detail: problem.reason),
                                 atMs: atMs, db: db)
            }
            try chain.sealTail(db: db)
            try db.execute("COMMIT")
            return chain
        } catch {
            try? db.execute("ROLLBACK")
            throw .sqlite(error)
        }
    }

    /// Links, hashes and MACs from the first entry, then the anchor against the chain (the
    /// anchor is read first: it may lag the chain read after it, never lead it).
    public func walkAuditChain() throws(KamiError) -> AuditWalk {
        let found = auditAnchor()
        return try read { db throws(SQLiteError) in try Store.walk(db, key: auditKey, anchor: found) }
    }

    /// The first live break of the audit chain (links, MACs, anchor), or nil when it holds.
    public func verifyAuditChain() throws(KamiError) -> AuditBreak? { try walkAuditChain().broken }

    /// Audit entries of one event kind, newest first: `(seq, at_ms, subject, detail)`. With
    /// `user`, only entries whose detail starts `user=USER ` (reveals, risk decisions).
    public func auditEntries(event: String, user: String? = nil, limit: Int) throws(KamiError)
        -> [(seq: Int64, atMs: Int64, subject: String, detail: String)]
    {
        try read { db throws(SQLiteError) in
            let filter = user == nil ? "" : " AND (detail = ? OR substr(detail, 1, length(?)) = ?)"
            let stmt = try db.prepare("SELECT seq, at_ms, subject, detail FROM audit WHERE event = ?\(filter) ORDER BY seq DESC LIMIT ?")
            defer { stmt.reset() }
            stmt.bind(1, event)
            var next: Int32 = 2
            if let user {
                stmt.bind(2, "user=\(user)")
                stmt.bind(3, "user=\(user) ")
                stmt.bind(4, "user=\(user) ")
                next = 5
            }
            stmt.bind(next, limit)
            var rows: [(seq: Int64, atMs: Int64, subject: String, detail: String)] = []
            while try stmt.step() {
                rows.append((stmt.int64(0), stmt.int64(1), stmt.text(2) ?? "", stmt.text(3) ?? ""))
            }
            return rows
        }
    }

    /// The first live break of the audit chain, against an anchor read (`auditAnchor()`)
    /// before the snapshot the chain is read in began; nil when it holds.
    public func verifyAuditChain(anchoredBefore found: AuditAnchorReading) throws(KamiError) -> AuditBreak? {
        try read { db throws(SQLiteError) in try Store.walk(db, key: auditKey, anchor: found) }.broken
    }

    private static func walk(_ db: Connection, key: AuditKey, anchor: AuditAnchorReading) throws(SQLiteError) -> AuditWalk {
        // One snapshot for the chain and the issue log it covers (a batch committed between
        // two statements would look like records no entry covers).
        let own = db.isIdle
        if own { try db.execute("BEGIN") }
        defer { if own { try? db.execute("COMMIT") } }
        let walk = try AuditChain.walk(db, key: key)
        guard walk.broken == nil else { return walk }
        guard let reading = anchor.reading else { return walk }
        let problem = try AuditChain.check(reading, tail: walk.entries, db: db)
        return AuditWalk(entries: walk.entries, lastHash: walk.lastHash, broken: problem, recorded: walk.recorded)
    }

    /// The anchor as the file says now.
    public func auditAnchor() -> AuditAnchorReading { AuditAnchorReading(reading: anchor?.read()) }
}
