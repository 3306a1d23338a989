/// A streaming RFC 4180 record parser over UTF-8 bytes, with bounded memory.
///
/// What it accepts: comma separators; records ended by LF, CRLF or a lone CR (old Mac
/// Excel); fields in double quotes holding commas, line ends and doubled quotes (`""`); a
/// UTF-8 byte order mark at the very start (skipped). Lines that are empty are skipped
/// without producing a record. A quote inside an unquoted field is kept as a literal
/// character (`12" screen`), as lenient readers and Excel do.
///
/// What it rejects, record by record, so one bad line never costs the rest of the file:
/// a record longer than `CSVLimits.recordBytesMax` raw bytes (it is skipped to its end,
/// never buffered, however long), more than `CSVLimits.fieldsPerRecordMax` fields, a NUL
/// byte, a field that is not valid UTF-8, anything but a comma or line end after a closing
/// quote, and a quoted field still open at the end of input.
///
/// Line numbers are physical lines, 1-based: a record is reported at the line of its first
/// byte, and line ends inside quoted fields count, so records after a multi-line field still
/// carry the number an editor shows.
///
/// Feed chunks cut anywhere; records come out the same whatever the cuts. Pull style:
///
/// ```swift
/// var offset = 0
/// while let event = parser.next(in: chunk, offset: &offset) { handle(event) }
/// ```
/// or push style with `feed(_:_:)`. Call `finish` after the last chunk.
public struct CSVRecordParser: Sendable {
    private enum State: UInt8 {
        /// Between records (also skipping the line ends of blank lines).
        case recordStart
        /// At the start of a field after a comma.
        case fieldStart
        /// Inside a field that did not start with a quote.
        case unquoted
        /// Inside a quoted field.
        case quoted
        /// Just after a quote inside a quoted field: a doubled quote or the closing one.
        case quoteInQuoted
    }

    private static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    private let sourceEncoding: CSVEncoding
    private var state = State.recordStart
    /// Unescaped bytes of the current record's fields; never more than `recordBytesMax`.
    private var buffer: [UInt8] = []
    /// End offsets in `buffer` of the current record's finished fields.
    private var ends: [Int] = []
    /// The physical line of the next byte.
    private var line = 1
    /// The last byte consumed if it was CR or LF, else 0. Starts as LF: the input begins at
    /// the start of a line.
    private var lastLineEnd = UInt8.lf
    /// The line where the current record started.
    private var recordLine = 0
    /// Raw bytes of the current record so far, quotes and commas included.
    private var recordBytes = 0
    /// Set at the first problem of the current record; from then on nothing is stored and
    /// the parser only looks for the record's end.
    private var problem: CSVReject?
    /// Bytes of the byte order mark matched so far, or `byteOrderMarkDecided` once the start
    /// of the input is past (a BOM skipped, or data that is not one).
    private var byteOrderMarkMatched = 0
    private static let byteOrderMarkDecided = -1

    /// The largest number of bytes the record buffer has held: never above
    /// `CSVLimits.recordBytesMax`, whatever the input. Tests and reports read it.
    public private(set) var bufferHighWaterBytes = 0

    /// A parser at the start of an input. `sourceEncoding` only words reject reasons: GB18030
    /// input reaches the parser converted to UTF-8, with invalid bytes marked by
    /// `GB18030Converter`, and a field holding a mark is "invalid GB18030 byte sequence".
    public init(sourceEncoding: CSVEncoding = .utf8) {
        self.sourceEncoding = sourceEncoding
        buffer.reserveCapacity(CSVLimits.recordBytesMax)
        ends.reserveCapacity(16)
    }

    /// The physical line of the next byte (1-based).
    public var currentLine: Int { line }

    /// Physical lines seen so far, counting a last line that has no line end yet.
    public var lineCount: Int { line - 1 + (lastLineEnd == 0 ? 1 : 0) }

    /// Pushes a chunk through the parser and calls `body` with every event it completes.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ body: (CSVParserEvent) throws -> Void) rethrows {
        var offset = 0
        while let event = next(in: bytes, offset: &offset) { try body(event) }
    }

    /// Ends the input and calls `body` with the last event, if a record was still open.
    public mutating func finish(_ body: (CSVParserEvent) throws -> Void) rethrows {
        if let event = finish() { try body(event) }
    }

    /// Parses `bytes` from `offset` until a record is complete (returned, with `offset` just
    /// past it) or the bytes run out (nil, `offset == bytes.count`, state kept for the next
    /// chunk).
    public mutating func next(in bytes: UnsafeRawBufferPointer, offset: inout Int) -> CSVParserEvent? {
        if byteOrderMarkMatched != Self.byteOrderMarkDecided {
            skipByteOrderMark(bytes, offset: &offset)
        }
        let count = bytes.count
        while offset < count {
            let byte = bytes[offset]
            switch state {
            case .recordStart:
                if byte == .lf || byte == .cr {
                    countLineEnd(byte)
                    offset += 1
                    continue
                }
                beginRecord()
                state = .fieldStart
            case .fieldStart:
                if byte == .quote {
                    take(1)
                    lastLineEnd = 0
                    offset += 1
                    state = .quoted
                } else {
                    state = .unquoted
                }
            case .unquoted:
                let runEnd = Self.scanUnquoted(bytes, from: offset)
                if runEnd > offset { store(bytes, offset, runEnd) }
                offset = runEnd
                if offset == count { return nil }
                let special = bytes[offset]
                offset += 1
                if let event = unquotedSpecial(special) { return event }
            case .quoted:
                let runEnd = Self.scanQuoted(bytes, from: offset)
                if runEnd > offset { store(bytes, offset, runEnd) }
                offset = runEnd
                if offset == count { return nil }
                quotedSpecial(bytes[offset])
                offset += 1
            case .quoteInQuoted:
                switch byte {
                case .quote:
                    store(byte: .quote)
                    lastLineEnd = 0
                    offset += 1
                    state = .quoted
                case .comma, .cr, .lf:
                    state = .unquoted  // the field is closed; the byte ends it as in an unquoted field
                default:
                    reject(.badQuoting, "unexpected character after closing quote")
                    state = .unquoted
                }
            }
        }
        return nil
    }

    /// Ends the input. Returns the last record if one was open: a field still in quotes is
    /// rejected as unterminated.
    public mutating func finish() -> CSVParserEvent? {
        if byteOrderMarkMatched > 0 && byteOrderMarkMatched < 3 {
            replayPartialByteOrderMark()
        }
        byteOrderMarkMatched = Self.byteOrderMarkDecided
        switch state {
        case .recordStart:
            return nil
        case .quoted:
            reject(.unterminatedQuote, "quoted field not closed before the end of the input")
            return endRecord()
        case .fieldStart, .unquoted, .quoteInQuoted:
            endField()
            return endRecord()
        }
    }

    // MARK: - Bytes

    /// End of the run of ordinary bytes in an unquoted field. All special bytes are below
    /// 0x2D, so most bytes (letters, digits, '-') cost a single comparison.
    @inline(__always)
    private static func scanUnquoted(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            if byte <= .comma && (byte == .comma || byte == .quote || byte == .lf || byte == .cr || byte == 0) {
                break
            }
            index += 1
        }
        return index
    }

    /// End of the run of ordinary bytes in a quoted field.
    @inline(__always)
    private static func scanQuoted(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            if byte <= .quote && (byte == .quote || byte == .lf || byte == .cr || byte == 0) { break }
            index += 1
        }
        return index
    }

    private mutating func unquotedSpecial(_ byte: UInt8) -> CSVParserEvent? {
        switch byte {
        case .comma:
            take(1)
            lastLineEnd = 0
            endField()
            state = .fieldStart
        case .cr, .lf:
            countLineEnd(byte)
            endField()
            return endRecord()
        case .quote:
            store(byte: .quote)
            lastLineEnd = 0
        default:  // NUL
            take(1)
            lastLineEnd = 0
            reject(.nulByte, "NUL byte in record")
        }
        return nil
    }

    private mutating func quotedSpecial(_ byte: UInt8) {
        switch byte {
        case .quote:
            take(1)
            lastLineEnd = 0
            state = .quoteInQuoted
        case .cr, .lf:
            countLineEnd(byte)
            store(byte: byte)
        default:  // NUL
            take(1)
            lastLineEnd = 0
            reject(.nulByte, "NUL byte in record")
        }
    }

    /// Counts a line: CR starts a new line, LF does unless it completes a CRLF.
    @inline(__always)
    private mutating func countLineEnd(_ byte: UInt8) {
        if byte == .cr || lastLineEnd != .cr { line += 1 }
        lastLineEnd = byte
    }

    // MARK: - Records and fields

    private mutating func beginRecord() {
        buffer.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
        recordBytes = 0
        recordLine = line
        problem = nil
    }

    /// Counts `count` raw bytes of the record; returns whether they may be stored.
    @inline(__always)
    @discardableResult
    private mutating func take(_ count: Int) -> Bool {
        recordBytes += count
        if problem != nil { return false }
        if recordBytes > CSVLimits.recordBytesMax {
            reject(.recordTooLong, "record longer than \(CSVLimits.recordBytesMax) bytes")
            return false
        }
        return true
    }

    @inline(__always)
    private mutating func store(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) {
        lastLineEnd = 0
        if take(end - start) {
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
        }
    }

    @inline(__always)
    private mutating func store(byte: UInt8) {
        if take(1) { buffer.append(byte) }
    }

    private mutating func reject(_ code: CSVRejectCode, _ reason: String) {
        if problem == nil { problem = CSVReject(line: recordLine, code: code, reason: reason) }
    }

    private mutating func endField() {
        guard problem == nil else { return }
        if ends.count == CSVLimits.fieldsPerRecordMax {
            reject(.tooManyFields, "more than \(CSVLimits.fieldsPerRecordMax) fields")
            return
        }
        ends.append(buffer.count)
    }

    private mutating func endRecord() -> CSVParserEvent {
        state = .recordStart
        bufferHighWaterBytes = max(bufferHighWaterBytes, buffer.count)
        if problem == nil { checkEncoding() }
        if let problem { return .rejected(problem) }
        return .record(CSVRecord(line: recordLine, storage: buffer, ends: ends))
    }

    /// Rejects the record if a field is not valid UTF-8. Validating the whole buffer once is
    /// enough when no field starts with a continuation byte: then every field boundary falls
    /// between characters, so each field is made of whole valid characters. Only when that
    /// fails are fields checked one by one, to name the bad one.
    private mutating func checkEncoding() {
        let invalidField: Int? = buffer.withUnsafeBytes { bytes in
            var boundariesClean = true
            for end in ends.dropLast() where end < bytes.count && bytes[end] & 0xC0 == 0x80 {
                boundariesClean = false
            }
            if boundariesClean && UTF8Validator.isValid(bytes) { return nil }
            var start = 0
            for (index, end) in ends.enumerated() {
                if !UTF8Validator.isValid(UnsafeRawBufferPointer(rebasing: bytes[start..<end])) { return index }
                start = end
            }
            return nil
        }
        if let invalidField {
            reject(.invalidEncoding, "field \(invalidField + 1): invalid \(sourceEncoding) byte sequence")
        }
    }

    // MARK: - Byte order mark

    /// Consumes the UTF-8 BOM at the start of the input, even when chunks cut it.
    private mutating func skipByteOrderMark(_ bytes: UnsafeRawBufferPointer, offset: inout Int) {
        while offset < bytes.count && byteOrderMarkMatched < 3 {
            guard bytes[offset] == Self.byteOrderMark[byteOrderMarkMatched] else {
                replayPartialByteOrderMark()
                break
            }
            byteOrderMarkMatched += 1
            offset += 1
        }
        if byteOrderMarkMatched == 3 { byteOrderMarkMatched = Self.byteOrderMarkDecided }
    }

    /// The input started like a BOM but was not one: parse the bytes held back as data. They
    /// hold no special byte, so they cannot complete a record.
    private mutating func replayPartialByteOrderMark() {
        let matched = byteOrderMarkMatched
        byteOrderMarkMatched = Self.byteOrderMarkDecided
        guard matched > 0 else { return }
        Self.byteOrderMark.withUnsafeBytes { mark in
            var offset = 0
            let event = next(in: UnsafeRawBufferPointer(rebasing: mark[0..<matched]), offset: &offset)
            assert(event == nil, "a BOM prefix completed a record")
        }
    }
}

extension UInt8 {
    static let comma = UInt8(ascii: ",")
    static let quote = UInt8(ascii: "\"")
    static let cr = UInt8(ascii: "\r")
    static let lf = UInt8(ascii: "\n")
}
