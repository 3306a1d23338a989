import KamiLedger
public import KamiCore
public import KamiCrypto

/// One code to import, already parsed and validated.
public struct CodeRow: Sendable {
    /// Line of the source file where the row starts (for reports).
    public var line: Int
    public var secret: Secret
    public var cardNumber: String?
    public var costCents: Int64?
    public var expiresAtMs: Int64?
    public var batch: String?

    /// Makes a row.
    public init(
        line: Int, secret: Secret, cardNumber: String? = nil, costCents: Int64? = nil, expiresAtMs: Int64? = nil,
        batch: String? = nil
    ) {
        self.line = line
        self.secret = secret
        self.cardNumber = cardNumber
        self.costCents = costCents
        self.expiresAtMs = expiresAtMs
        self.batch = batch
    }
}

/// A row the import did not take, and why (never the secret).
public struct RejectedRow: Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var reason: String
    public init(line: Int, reason: String) {
        self.line = line
        self.reason = reason
    }
    public var description: String { "line \(line): \(reason)" }
}

/// What a source yields: a row to import, or a row it already rejected.
public enum ImportItem: Sendable {
    case row(CodeRow)
    case rejected(RejectedRow)
}

/// Produces rows one at a time (a CSV file being streamed, or an array in tests).
public protocol CodeRowSource {
    /// The next item, nil at the end. A thrown error aborts the whole import.
    mutating func next() throws(KamiError) -> ImportItem?
}

/// Rows from an array.
public struct ArrayRowSource: CodeRowSource, Sendable {
    private var items: [ImportItem]
    private var index = 0
    /// Makes a source over `items`.
    public init(_ items: [ImportItem]) { self.items = items }
    public mutating func next() throws(KamiError) -> ImportItem? {
        guard index < items.count else { return nil }
        defer { index += 1 }
        return items[index]
    }
}

/// The outcome of an import.
public struct ImportReport: Sendable, Hashable {
    /// Most rejected rows listed one by one; past it only counted.
    public static let rejectedShownMax = 1_000

    public var imported = 0
    public var rejectedCount = 0
    /// The first `rejectedShownMax` rejected rows.
    public var rejected: [RejectedRow] = []
    /// Ids given to the imported codes (contiguous); empty for a dry run or nothing imported.
    public var codeIDs: Range<CodeID> = 0..<0
    public var dryRun = false

    mutating func reject(_ row: RejectedRow) {
        rejectedCount += 1
        if rejected.count < ImportReport.rejectedShownMax { rejected.append(row) }
    }
}

/// Thrown inside the import transaction to roll a dry run back after counting everything.
private struct DryRunRollback: Error {}

extension Store {
    /// Imports codes of `sku` from `source` in one transaction on the writer thread: all rows
    /// that pass (valid, not a duplicate in the file or of a stored code) are imported, or
    /// none when anything fails (a disk error, an I/O error of the source, too many rows).
    /// Duplicates are found by keyed fingerprint, so plaintext is never stored or compared.
    ///
    /// The writer does nothing else meanwhile: issues wait for the import's transaction.
    public func importCodes<Source: CodeRowSource & Sendable>(
        sku: SkuID, source: Source, sealer: Sealer, label: String, dryRun: Bool = false
    ) throws(KamiError) -> ImportReport {
        try importCodes(sku: sku, sealer: sealer, label: label, dryRun: dryRun) { sink in
            var source = source
            while let item = try source.next() { try sink(item) }
        }
    }

    /// Imports what `produce` pushes into its sink (a streaming CSV reader calls the sink once
    /// per row); otherwise as `importCodes(sku:source:...)`. An error thrown by `produce`
    /// aborts the import; a `KamiError` keeps its code, anything else becomes BAD_REQUEST.
    public func importCodes(
        sku: SkuID, sealer: Sealer, label: String, dryRun: Bool = false,
        produce: @escaping @Sendable (_ sink: (ImportItem) throws -> Void) throws -> Void
    ) throws(KamiError) -> ImportReport {
        try writer.perform { (context: inout WriterContext) throws(KamiError) -> ImportReport in
            var report = ImportReport()
            report.dryRun = dryRun
            do throws(KamiError) {
                try context.transaction { (context: inout WriterContext) throws(KamiError) in
                    try Store.importRows(sku: sku, produce: produce, sealer: sealer, label: label, report: &report,
                                         context: &context)
                    if dryRun { throw KamiError(.busy, "dry run") }
                }
            } catch {
                if !(dryRun && error.code == .busy && error.message == "dry run") { throw error }
                report.codeIDs = 0..<0
            }
            return report
        }
    }

    private static func importRows(
        sku: SkuID, produce: (_ sink: (ImportItem) throws -> Void) throws -> Void, sealer: Sealer, label: String,
        report: inout ImportReport, context: inout WriterContext
    ) throws(KamiError) {
        let db = context.db
        do {
            let firstID = (try db.scalarInt("SELECT MAX(id) FROM codes") ?? 0) + 1
            var nextID = firstID
            // Line of each imported row by offset from firstID, to name the earlier line of an
            // in-file duplicate. 4 bytes per row: 40 MB at the 10-million-row limit.
            var lines: [Int32] = []
            let insertFingerprint = try db.prepare(
                "INSERT INTO fingerprints(fp, code_id) VALUES(?, ?) ON CONFLICT(fp) DO NOTHING")
            let findFingerprint = try db.prepare("SELECT code_id FROM fingerprints WHERE fp = ?")
            let insertCode = try db.prepare("""
                INSERT INTO codes(id, sku_id, import_id, batch, card_number, cost_cents, expires_at_ms, key_id, nonce,
                    sealed) VALUES(?,?,?,?,?,?,?,?,?,?)
                """)
            let insertState = try db.prepare("INSERT INTO code_state(id, sku_id, state, order_seq) VALUES(?,?,0,NULL)")
            let importID = (try db.scalarInt("SELECT MAX(id) FROM imports") ?? 0) + 1
            var batches = Set<String>()
            var stockCost: Int64 = 0
            try produce { item in
                let row: CodeRow
                switch item {
                case .rejected(let rejected):
                    report.reject(rejected)
                    return
                case .row(let value):
                    row = value
                }
                if row.secret.bytes.isEmpty || row.secret.bytes.count > Limits.secretBytesMax {
                    report.reject(RejectedRow(line: row.line, reason: "secret must be 1...\(Limits.secretBytesMax) bytes"))
                    return
                }
                let fingerprint = sealer.fingerprint(row.secret)
                insertFingerprint.bind(1, blob: fingerprint)
                insertFingerprint.bind(2, nextID)
                try insertFingerprint.run()
                if db.changes == 0 {
                    findFingerprint.bind(1, blob: fingerprint)
                    let existing = try findFingerprint.step() ? findFingerprint.int64(0) : 0
                    findFingerprint.reset()
                    if existing >= firstID && existing < nextID {
                        report.reject(RejectedRow(
                            line: row.line, reason: "duplicate of line \(lines[Int(existing - firstID)]) in this file"))
                    } else {
                        report.reject(RejectedRow(line: row.line, reason: "duplicate of stored code \(existing)"))
                    }
                    return
                }
                guard report.imported < Limits.codesPerImportMax else {
                    throw WrappedKamiError(KamiError(
                        .tooLarge, "more than \(Limits.codesPerImportMax) codes in one import; split the file"))
                }
                let sealed = sealer.seal(row.secret, aad: Sealer.associatedData(codeID: nextID, skuID: sku))
                insertCode.bind(1, nextID)
                insertCode.bind(2, Int64(sku))
                insertCode.bind(3, importID)
                insertCode.bind(4, row.batch)
                insertCode.bind(5, row.cardNumber)
                if let cost = row.costCents { insertCode.bind(6, cost) } else { insertCode.bindNull(6) }
                if let expires = row.expiresAtMs { insertCode.bind(7, expires) } else { insertCode.bindNull(7) }
                insertCode.bind(8, Int64(sealed.keyID))
                insertCode.bind(9, blob: sealed.nonce)
                insertCode.bind(10, blob: sealed.ciphertextAndTag)
                try insertCode.run()
                insertState.bind(1, nextID)
                insertState.bind(2, Int64(sku))
                try insertState.run()
                lines.append(Int32(clamping: row.line))
                if let batch = row.batch { batches.insert(batch) }
                stockCost = Money.sum(stockCost, row.costCents ?? 0)
                nextID += 1
                report.imported += 1
            }
            report.codeIDs = firstID..<nextID
            let record = try db.prepare("""
                INSERT INTO imports(id, sku_id, first_code_id, last_code_id, imported, rejected, batch, source,
                    created_at_ms) VALUES(?,?,?,?,?,?,?,?,?)
                """)
            record.bind(1, importID)
            record.bind(2, Int64(sku))
            record.bind(3, firstID)
            record.bind(4, nextID - 1)
            record.bind(5, report.imported)
            record.bind(6, report.rejectedCount)
            record.bind(7, batches.count == 1 ? batches.first : nil)
            record.bind(8, label)
            record.bind(9, context.clock.nowMs())
            try record.run()
            // Into the inventory at cost, owed to whoever sold the codes (a supplier's payable
            // for a buy-ahead, else purchases).
            if report.imported > 0 {
                try MutationApplier(db: db).writeLedger(
                    [Journal.stocked(sku: sku, costCents: stockCost, source: label)], atMs: context.clock.nowMs())
            }
            try context.appendAudit(AuditEvent(
                "import", subject: "sku:\(sku)",
                detail: "import=\(importID) source=\(label) codes=\(firstID)-\(nextID - 1) imported=\(report.imported) "
                    + "rejected=\(report.rejectedCount)"))
        } catch let error as SQLiteError {
            throw error.kamiError
        } catch let error as WrappedKamiError {
            throw error.error
        } catch let error as KamiError {
            throw error
        } catch {
            throw KamiError(.badRequest, "import failed: \(error)")
        }
    }
}

/// Carries a KamiError through a block whose other failures are SQLite errors.
private struct WrappedKamiError: Error {
    let error: KamiError
    init(_ error: KamiError) { self.error = error }
}
