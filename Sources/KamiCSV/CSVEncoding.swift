/// The text encoding of a CSV file.
public enum CSVEncoding: String, Sendable, Hashable, CustomStringConvertible {
    /// UTF-8, with or without a byte order mark (the BOM is skipped).
    case utf8 = "UTF-8"
    /// GB18030, which includes GBK and GB2312: what Excel writes on a Chinese Windows when a
    /// shop saves "CSV (逗号分隔)". Converted to UTF-8 with iconv.
    case gb18030 = "GB18030"

    public var description: String { rawValue }
}

/// Decides the encoding of a file from a pre-pass over all of its bytes.
///
/// The rule: a UTF-8 byte order mark means UTF-8; otherwise input that is valid UTF-8 is UTF-8
/// (pure ASCII included, which reads the same either way); otherwise it is GB18030, unless
/// valid multi-byte UTF-8 sequences outnumber invalid ones by `CSVLimits.utf8DominanceRatio`
/// or more: that is a UTF-8 file with a few corrupt bytes, and reading it as UTF-8 rejects
/// only the corrupt rows, where reading it as GB18030 would garble every Chinese header.
///
/// Feed the chunks in order, then read `encoding`. Memory is constant.
///
/// ```swift
/// var detector = CSVEncodingDetector()
/// for chunk in chunks { chunk.withUnsafeBytes { detector.feed($0) } }
/// let encoding = detector.encoding
/// ```
public struct CSVEncodingDetector: Sendable {
    private var validator = UTF8Validator()
    /// The first bytes of the input, until there are three of them to compare with the BOM.
    private var prefix: [UInt8] = []
    private var bytesSeen = 0

    /// A detector that has seen no input.
    public init() {}

    /// Examines the next chunk of input.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        if prefix.count < 3 {
            prefix.append(contentsOf: bytes.prefix(3 - prefix.count))
        }
        bytesSeen += bytes.count
        validator.consume(bytes)
    }

    /// Whether the input starts with the UTF-8 byte order mark EF BB BF.
    public var hasByteOrderMark: Bool { prefix == [0xEF, 0xBB, 0xBF] }

    /// Whether all input fed so far is valid UTF-8, ending between characters.
    public var isValidUTF8: Bool { validator.invalidCount == 0 && validator.isAtBoundary }

    /// Total bytes fed.
    public var byteCount: Int { bytesSeen }

    /// The encoding to read the input with (see the type's documentation for the rule).
    public var encoding: CSVEncoding {
        if hasByteOrderMark || isValidUTF8 { return .utf8 }
        var ended = validator
        ended.finish()
        let dominant = ended.validMultibyteCount >= ended.invalidCount * CSVLimits.utf8DominanceRatio
        return dominant ? .utf8 : .gb18030
    }
}
