/// Why a workbook could not be read or written: what was wrong, and where.
public struct XLSXError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// Not a ZIP archive, or one this reader does not handle (ZIP64, encryption, a method
        /// other than stored or deflate).
        case notAnArchive = "not_an_archive"
        /// The archive is damaged: a header that does not add up, a bad CRC, data that does
        /// not inflate.
        case corrupt
        /// A part the workbook needs is missing (no workbook, no such sheet).
        case missingPart = "missing_part"
        /// The XML of a part is not well formed.
        case badXML = "bad_xml"
        /// A bound was passed (a part, a row, a cell or the shared strings too big).
        case tooLarge = "too_large"
        /// The file could not be read or written.
        case io
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
