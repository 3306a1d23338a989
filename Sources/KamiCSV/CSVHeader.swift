/// The meaning of each column of an import file, read from its header record (the first
/// record that is not blank).
///
/// Choices, and why:
/// - Unknown columns are ignored, with a warning in the import summary: exports from shop
///   back offices carry extra columns (面值, 备注, 状态) and refusing them would make
///   operators edit every file. Empty header cells are ignored the same way.
/// - A missing secret column or two cells meaning the same field are errors, because no row
///   could be read correctly.
/// - When the header is wrong, the error lists the cells found, but only those that look like
///   column names (lower-case letters, spaces, underscores or CJK, no digits). A file without
///   a header row has a secret in its first row, and errors end up in logs; a cell like
///   `ABCD1234EFGH` is described by its position and length instead.
public struct CSVHeader: Sendable {
    /// The line the header record starts on.
    public let line: Int
    /// The column each header cell maps to (nil for ignored cells), in file order.
    public let columns: [CSVColumn?]
    /// Notes for the operator: ignored columns.
    public let warnings: [String]

    let secretIndex: Int
    let cardNumberIndex: Int?
    let costIndex: Int?
    let costIsYuan: Bool
    let expiresAtIndex: Int?
    let batchIndex: Int?
    /// Fields a row must have: up to the last column the importer reads. Rows may stop
    /// before trailing ignored columns, which is what Excel writes when those are empty.
    let requiredFieldCount: Int

    /// Reads the header from `record`, or throws `missingSecretColumn` / `duplicateColumn`.
    public init(_ record: CSVRecord) throws(CSVImportError) {
        var columns: [CSVColumn?] = []
        var seen: [String: Int] = [:]  // field -> index of the cell that claimed it
        var warnings: [String] = []
        for index in 0..<record.fieldCount {
            let name = Self.normalised(record.field(index))
            guard let column = CSVColumn.named(name) else {
                columns.append(nil)
                warnings.append(name.isEmpty
                    ? "column \(index + 1) has no name; ignored"
                    : "column \(index + 1) \(Self.shown(name)) is not a known column; ignored")
                continue
            }
            if let first = seen[column.field] {
                let firstName = Self.shown(Self.normalised(record.field(first)))
                throw CSVImportError(.duplicateColumn, "line \(record.line): columns \(first + 1) \(firstName)"
                    + " and \(index + 1) \(Self.shown(name)) both give the \(column.field); keep one of them")
            }
            seen[column.field] = index
            columns.append(column)
        }
        guard let secretIndex = columns.firstIndex(of: .secret) else {
            throw CSVImportError(.missingSecretColumn, Self.missingSecretMessage(record))
        }
        self.line = record.line
        self.columns = columns
        self.warnings = warnings
        self.secretIndex = secretIndex
        cardNumberIndex = columns.firstIndex(of: .cardNumber)
        costIndex = columns.firstIndex { $0 == .costCents || $0 == .costYuan }
        costIsYuan = columns.contains(.costYuan)
        expiresAtIndex = columns.firstIndex(of: .expiresAt)
        batchIndex = columns.firstIndex(of: .batch)
        requiredFieldCount = (columns.lastIndex { $0 != nil } ?? 0) + 1
    }

    /// A header cell trimmed, ASCII-lower-cased, with inner spaces and hyphens as underscores.
    static func normalised(_ cell: ArraySlice<UInt8>) -> String {
        let trimmed = CSVCells.trimmed(cell)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(trimmed.count)
        for byte in trimmed {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): bytes.append(byte | 0x20)
            case UInt8(ascii: " "), UInt8(ascii: "-"): bytes.append(UInt8(ascii: "_"))
            default: bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A header cell for a message: quoted and cut to `CSVLimits.columnNameShownBytesMax`.
    /// Only for headers that were recognised as headers (they have a secret column).
    private static func shown(_ name: String) -> String {
        let utf8 = Array(name.utf8)
        guard utf8.count > CSVLimits.columnNameShownBytesMax else { return "'\(name)'" }
        var cut = CSVLimits.columnNameShownBytesMax
        while cut > 0 && utf8[cut] & 0xC0 == 0x80 { cut -= 1 }  // not inside a character
        return "'" + String(decoding: utf8[0..<cut], as: UTF8.self) + "...'"
    }

    private static func missingSecretMessage(_ record: CSVRecord) -> String {
        var found: [String] = []
        for index in 0..<min(record.fieldCount, CSVLimits.columnsShownMax) {
            let cell = CSVCells.trimmed(record.field(index))
            let name = normalised(cell)
            if CSVColumn.named(name) != nil || looksLikeColumnName(cell) {
                found.append(shown(name))
            } else {
                found.append("column \(index + 1) (\(cell.count) bytes, not shown: it may be a secret)")
            }
        }
        if record.fieldCount > CSVLimits.columnsShownMax {
            found.append("and \(record.fieldCount - CSVLimits.columnsShownMax) more")
        }
        return "line \(record.line): the header has no secret column (one of "
            + CSVColumn.secret.headerNames.joined(separator: ", ")
            + "); found " + found.joined(separator: ", ")
            + ". The first non-blank line must be the header row."
    }

    /// Whether a cell can be shown in an error without risking a secret: short, no digits,
    /// and with something codes do not have (lower case, space, underscore, non-ASCII).
    static func looksLikeColumnName(_ cell: ArraySlice<UInt8>) -> Bool {
        guard !cell.isEmpty, cell.count <= CSVLimits.columnNameShownBytesMax else { return cell.isEmpty }
        var wordlike = false
        for byte in cell {
            if CSVCells.isDigit(byte) { return false }
            if (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || byte == UInt8(ascii: " ")
                || byte == UInt8(ascii: "_") || byte >= 0x80
            {
                wordlike = true
            }
        }
        return wordlike
    }
}
