public import KamiCore
public import KamiXLSX

/// One code as an export writes it.
public struct CSVExportRow: Sendable, Hashable {
    /// The code's id.
    public var codeID: CodeID
    /// The SKU key.
    public var sku: String
    /// The code's state, as its name (`available`, `issued`, ...).
    public var state: String
    /// The card number, if any.
    public var cardNumber: String?
    /// The cost in cents, if known.
    public var costCents: Int64?
    /// The expiry in Unix milliseconds, if any.
    public var expiresAtMs: Int64?
    /// The batch name, if any.
    public var batch: String?
    /// The secret. Written only by a writer made with `includeSecrets: true`.
    public var secret: Secret?

    /// Makes an export row.
    public init(codeID: CodeID, sku: String, state: String, cardNumber: String? = nil, costCents: Int64? = nil,
                expiresAtMs: Int64? = nil, batch: String? = nil, secret: Secret? = nil)
    {
        self.codeID = codeID
        self.sku = sku
        self.state = state
        self.cardNumber = cardNumber
        self.costCents = costCents
        self.expiresAtMs = expiresAtMs
        self.batch = batch
        self.secret = secret
    }
}

/// Writes code exports as CSV that Excel, LibreOffice and the importer all read correctly.
///
/// - UTF-8, by default with a byte order mark: without it, Excel on a Chinese Windows reads
///   the file as GBK and garbles every non-ASCII cell.
/// - CRLF line ends (RFC 4180; Excel writes them too).
/// - Header `code_id,sku,state,card_number,cost_cents,expires_at,batch`, and `,secret` only for
///   a writer made with `includeSecrets: true`: secrets leave the daemon only when the
///   operator asked for them.
/// - Cells with a comma, quote or line end are quoted, quotes doubled.
/// - Text cells that start like a formula (`=`, `+`, `-`, `@`, tab, CR) get a `'` in front, so a
///   spreadsheet shows them as text instead of running them; a cell starting with `'` gets
///   another one. The importer removes exactly that one quote, so exports re-import unchanged.
/// - `expires_at` is `YYYY-MM-DD` at midnight UTC, otherwise an ISO 8601 UTC timestamp.
///
/// The writer appends to a byte array the caller owns and flushes when it likes:
///
/// ```swift
/// let writer = CSVWriter(includeSecrets: false)
/// var out: [UInt8] = []
/// writer.writeHeader(into: &out)
/// for row in rows {
///     writer.write(row, into: &out)
///     if out.count >= 65_536 { try file.write(out); out.removeAll(keepingCapacity: true) }
/// }
/// ```
public struct CSVWriter: Sendable {
    /// The column names, in order, without the secret.
    public static let columnNames = ["code_id", "sku", "state", "card_number", "cost_cents", "expires_at", "batch"]
    /// The name of the optional last column.
    public static let secretColumnName = "secret"

    /// Whether rows carry their secret in a last `secret` column.
    public let includeSecrets: Bool
    /// Whether the output starts with the UTF-8 byte order mark.
    public let byteOrderMark: Bool

    /// A writer. `includeSecrets` must come from an explicit operator request.
    public init(includeSecrets: Bool = false, byteOrderMark: Bool = true) {
        self.includeSecrets = includeSecrets
        self.byteOrderMark = byteOrderMark
    }

    /// Appends the byte order mark (if enabled) and the header line.
    public func writeHeader(into out: inout [UInt8]) {
        if byteOrderMark { out.append(contentsOf: [0xEF, 0xBB, 0xBF]) }
        let names = includeSecrets ? Self.columnNames + [Self.secretColumnName] : Self.columnNames
        out.append(contentsOf: names.joined(separator: ",").utf8)
        out.append(contentsOf: [.cr, .lf])
    }

    /// Appends one row. With `includeSecrets`, a row without a secret gets an empty cell.
    public func write(_ row: CSVExportRow, into out: inout [UInt8]) {
        out.append(contentsOf: String(row.codeID).utf8)
        out.append(.comma)
        appendText(row.sku.utf8, into: &out)
        out.append(.comma)
        appendText(row.state.utf8, into: &out)
        out.append(.comma)
        if let cardNumber = row.cardNumber { appendText(cardNumber.utf8, into: &out) }
        out.append(.comma)
        if let cost = row.costCents { out.append(contentsOf: String(cost).utf8) }
        out.append(.comma)
        if let expiresAtMs = row.expiresAtMs { out.append(contentsOf: CSVDate.format(ms: expiresAtMs).utf8) }
        out.append(.comma)
        if let batch = row.batch { appendText(batch.utf8, into: &out) }
        if includeSecrets {
            out.append(.comma)
            if let secret = row.secret { appendText(secret.bytes, into: &out) }
        }
        out.append(contentsOf: [.cr, .lf])
    }

    /// Appends a text cell: neutralised if formula-like, quoted if needed.
    private func appendText(_ bytes: some Collection<UInt8>, into out: inout [UInt8]) {
        let neutralise = bytes.first.map(CSVCells.needsNeutralising) ?? false
        let quote = bytes.contains { $0 == .comma || $0 == .quote || $0 == .cr || $0 == .lf }
        if quote { out.append(.quote) }
        if neutralise { out.append(CSVCells.neutraliser) }
        for byte in bytes {
            if byte == .quote { out.append(.quote) }
            out.append(byte)
        }
        if quote { out.append(.quote) }
    }
}

extension CSVWriter {
    /// The header of an .xlsx export: the CSV's column names.
    public var xlsxHeader: [XLSXWriter.Value] {
        (includeSecrets ? Self.columnNames + [Self.secretColumnName] : Self.columnNames).map { .text($0) }
    }

    /// One code as an .xlsx row with the CSV's columns: ids and costs as numbers, everything
    /// else as text (a card number or a secret is never a number in a workbook).
    public func xlsxRow(_ row: CSVExportRow) -> [XLSXWriter.Value] {
        var values: [XLSXWriter.Value] = [
            .number(String(row.codeID)), .text(row.sku), .text(row.state), .text(row.cardNumber ?? ""),
            row.costCents.map { .number(String($0)) } ?? .text(""),
            .text(row.expiresAtMs.map { CSVDate.format(ms: $0) } ?? ""), .text(row.batch ?? ""),
        ]
        if includeSecrets { values.append(.text(row.secret.map { String(decoding: $0.bytes, as: UTF8.self) } ?? "")) }
        return values
    }
}
