/// An error that stops a whole import: the header cannot be understood, the input cannot be
/// converted or read. Problems of single rows are not errors but `CSVReject`s.
///
/// The message names columns, lines and system calls, never cell contents that could be a
/// secret (see `CSVHeader` for how header cells are shown).
public struct CSVImportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable codes, for programs; never renamed once released.
    public enum Code: String, Sendable, CaseIterable {
        /// The input has no non-blank record, so no header.
        case noHeader = "CSV_NO_HEADER"
        /// The header has no column that maps to the secret.
        case missingSecretColumn = "CSV_MISSING_SECRET_COLUMN"
        /// Two header cells map to the same column.
        case duplicateColumn = "CSV_DUPLICATE_COLUMN"
        /// The header record itself was rejected (too long, NUL byte, bad encoding, quoting).
        case badHeader = "CSV_BAD_HEADER"
        /// iconv cannot convert from the encoding on this system.
        case encodingUnavailable = "CSV_ENCODING_UNAVAILABLE"
        /// iconv failed in a way that conversion cannot continue from.
        case conversionFailed = "CSV_CONVERSION_FAILED"
        /// Opening or reading the file failed.
        case ioFailed = "CSV_IO_FAILED"
        /// The path names a device, fifo, socket or directory: only regular files are read.
        case notRegularFile = "CSV_NOT_REGULAR_FILE"
        /// The caller cancelled the import (kamid is stopping).
        case cancelled = "CSV_CANCELLED"
        /// An .xlsx file that is not a workbook, is damaged, or lacks the sheet asked for.
        case badWorkbook = "XLSX_BAD_WORKBOOK"
    }

    /// The stable code.
    public let code: Code
    /// What went wrong, for a person.
    public let message: String

    /// Makes an error with a stable code and a human message (which must not contain a secret).
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
