/// One parsed CSV record: its fields, unquoted and unescaped, and the line it starts on.
///
/// A record shares its storage with the parser that produced it. Drop it before asking the
/// parser for the next one, or the parser has to copy its buffer (correct, but slower).
public struct CSVRecord: Sendable {
    /// The physical line (1-based) of the record's first byte.
    public let line: Int
    /// All fields' bytes, concatenated.
    let storage: [UInt8]
    /// The end offset in `storage` of each field.
    let ends: [Int]

    init(line: Int, storage: [UInt8], ends: [Int]) {
        self.line = line
        self.storage = storage
        self.ends = ends
    }

    /// The number of fields (at least 1).
    public var fieldCount: Int { ends.count }

    /// The bytes of field `index` (valid UTF-8, already checked by the parser).
    public func field(_ index: Int) -> ArraySlice<UInt8> {
        precondition(index >= 0 && index < ends.count, "field \(index) of a record with \(ends.count) fields")
        let start = index == 0 ? 0 : ends[index - 1]
        return storage[start..<ends[index]]
    }

    /// Field `index` as a string.
    public func string(_ index: Int) -> String {
        field(index).withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) }
    }
}

/// What the parser produces: a record, or the line and reason of a record it rejected.
public enum CSVParserEvent: Sendable {
    /// A well-formed record.
    case record(CSVRecord)
    /// A record that was skipped: too long, a NUL byte, invalid encoding, broken quoting.
    case rejected(CSVReject)
}
