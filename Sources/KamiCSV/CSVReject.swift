/// Why a record or row was rejected, as a stable code.
public enum CSVRejectCode: String, Sendable, Hashable, CaseIterable {
    /// The record is longer than `CSVLimits.recordBytesMax`; it was skipped, not buffered.
    case recordTooLong = "RECORD_TOO_LONG"
    /// The record has more than `CSVLimits.fieldsPerRecordMax` fields.
    case tooManyFields = "TOO_MANY_FIELDS"
    /// The record contains a NUL byte (a binary file, or UTF-16 saved by mistake).
    case nulByte = "NUL_BYTE"
    /// A field is not valid in the file's encoding.
    case invalidEncoding = "INVALID_ENCODING"
    /// A closing quote is followed by something other than a comma or the end of the line.
    case badQuoting = "BAD_QUOTING"
    /// The input ended inside a quoted field.
    case unterminatedQuote = "UNTERMINATED_QUOTE"
    /// The row has a different number of fields than the header.
    case fieldCount = "FIELD_COUNT"
    /// The secret cell is empty.
    case emptySecret = "EMPTY_SECRET"
    /// The secret is longer than `CSVLimits.secretBytesMax`.
    case secretTooLong = "SECRET_TOO_LONG"
    /// A cell starts like a spreadsheet formula (`=`, `+`, `-`, `@`, tab, CR).
    case formula = "FORMULA"
    /// A cell contains a control character or an invisible format character (zero-width space...).
    case controlCharacter = "CONTROL_CHARACTER"
    /// A cell looks like a long number that Excel turned into scientific notation (1.23E+15),
    /// which has lost digits and can never be the real code.
    case scientificNotation = "SCIENTIFIC_NOTATION"
    /// A text cell (card number, batch) is longer than its limit.
    case fieldTooLong = "FIELD_TOO_LONG"
    /// The cost is not a valid amount.
    case badCost = "BAD_COST"
    /// The expiry is not a valid date or timestamp.
    case badDate = "BAD_DATE"
}

/// A record that did not become a code: its line and why.
///
/// The reason names the column and the rule, never the cell's content, so a reject can be
/// logged and shown to an operator without leaking the secret on that row.
public struct CSVReject: Sendable, Hashable, CustomStringConvertible {
    /// The physical line (1-based, the header is line 1 when it is the first line) where the
    /// record starts.
    public let line: Int
    /// The stable code of the reason.
    public let code: CSVRejectCode
    /// The reason, for a person, e.g. "record longer than 65536 bytes".
    public let reason: String

    /// Makes a reject. `reason` must not contain cell contents.
    public init(line: Int, code: CSVRejectCode, reason: String) {
        self.line = line
        self.code = code
        self.reason = reason
    }

    /// "line N: reason".
    public var description: String { "line \(line): \(reason)" }
}
