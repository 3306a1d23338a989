/// Counts and notes from an import, for the operator's report.
public struct CSVImportSummary: Sendable {
    /// The encoding the input was read in.
    public var encoding: CSVEncoding
    /// The header, once read.
    public var header: CSVHeader?
    /// Rows accepted.
    public var rowCount = 0
    /// Records rejected after the header.
    public var rejectCount = 0
    /// Non-empty records with only empty cells (`,,,`), skipped. Empty lines are not counted.
    public var blankRecordCount = 0
    /// Physical lines in the input (a final line without a line end counts).
    public var lineCount = 0
    /// Input bytes fed, before conversion.
    public var byteCount = 0
    /// The most bytes the parser's record buffer held (at most `CSVLimits.recordBytesMax`).
    public var bufferHighWaterBytes = 0
    /// Notes for the operator (ignored columns).
    public var warnings: [String] { header?.warnings ?? [] }

    init(encoding: CSVEncoding) { self.encoding = encoding }
}

/// A streaming import of card-key CSV: bytes in any chunks, out come checked code rows and
/// rejects with line numbers. Memory stays bounded whatever the input (one record plus fixed
/// buffers), so it reads a 10-million-row file or a 10 MB garbage line alike.
///
/// ```swift
/// var importer = try CSVCodeImporter(encoding: .gb18030)
/// try importer.feed(chunk) { item in
///     switch item {
///     case .row(let row): try store.add(row)
///     case .reject(let reject): report.append(reject.description)
///     }
/// }
/// let summary = try importer.finish { item in ... }
/// ```
///
/// The first record that is not blank is the header (see `CSVHeader`); a header that cannot
/// be understood throws `CSVImportError`, as does input that cannot be converted at all.
/// Everything wrong with a single record is a `CSVReject` instead, and the import goes on.
///
/// Noncopyable: it owns the iconv converter of a GB18030 import, and a copy would share it.
public struct CSVCodeImporter: ~Copyable {
    private enum Stage {
        /// No non-blank record yet.
        case awaitingHeader
        /// Reading rows with `header`.
        case rows
        /// `finish` was called; this state is terminal.
        case finished
    }

    private var stage = Stage.awaitingHeader
    /// Set when `stage` moves to `rows`.
    private var header: CSVHeader?
    private var parser: CSVRecordParser
    private var converter: GB18030Converter?
    private var summaryInProgress: CSVImportSummary

    /// An importer for input in `encoding` (use `CSVEncodingDetector` to choose). Throws
    /// `encodingUnavailable` if GB18030 is asked for and iconv cannot convert it.
    public init(encoding: CSVEncoding) throws(CSVImportError) {
        CSVLimits.check()
        parser = CSVRecordParser(sourceEncoding: encoding)
        converter = encoding == .gb18030 ? try GB18030Converter() : nil
        summaryInProgress = CSVImportSummary(encoding: encoding)
    }

    /// The counts so far (complete after `finish`).
    public var summary: CSVImportSummary {
        var summary = summaryInProgress
        summary.lineCount = parser.lineCount
        summary.bufferHighWaterBytes = parser.bufferHighWaterBytes
        return summary
    }

    /// Reads the next chunk, cut anywhere, and calls `body` with each row or reject it
    /// completes. Throws `CSVImportError` for a bad header or failed conversion, or whatever
    /// `body` throws; the importer must not be used after it threw.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ body: (CSVImportItem) throws -> Void) throws {
        if case .finished = stage { preconditionFailure("CSVCodeImporter.feed after finish") }
        summaryInProgress.byteCount += bytes.count
        if converter == nil {
            try parse(bytes, body)
            return
        }
        var offset = 0
        while offset < bytes.count {
            let utf8 = try converter!.step(bytes, offset: &offset)
            try parse(utf8, body)
        }
    }

    /// Ends the input: completes the last record, calls `body` for it, and returns the summary.
    /// Throws `noHeader` if the input had no non-blank record.
    public mutating func finish(_ body: (CSVImportItem) throws -> Void) throws -> CSVImportSummary {
        if case .finished = stage { preconditionFailure("CSVCodeImporter.finish called twice") }
        if converter != nil {
            let tail = converter!.finish()
            try parse(tail, body)
        }
        if let event = parser.finish() { try handle(event, body) }
        if case .awaitingHeader = stage {
            stage = .finished
            throw CSVImportError(.noHeader, "the input has no header row: it is empty or only blank lines")
        }
        stage = .finished
        return summary
    }

    private mutating func parse(_ utf8: UnsafeRawBufferPointer, _ body: (CSVImportItem) throws -> Void) throws {
        var offset = 0
        while let event = parser.next(in: utf8, offset: &offset) {
            try handle(event, body)
        }
    }

    private mutating func handle(_ event: CSVParserEvent, _ body: (CSVImportItem) throws -> Void) throws {
        switch (stage, event) {
        case (.rows, .record(let record)):
            if CSVCells.isBlank(record) {
                summaryInProgress.blankRecordCount += 1
                return
            }
            let item = CSVRowRules.row(record, header: header!)
            if case .row = item { summaryInProgress.rowCount += 1 } else { summaryInProgress.rejectCount += 1 }
            try body(item)
        case (.rows, .rejected(let reject)):
            summaryInProgress.rejectCount += 1
            try body(.reject(reject))
        case (.awaitingHeader, .record(let record)):
            if CSVCells.isBlank(record) {
                summaryInProgress.blankRecordCount += 1
                return
            }
            let header = try CSVHeader(record)
            summaryInProgress.header = header
            self.header = header
            stage = .rows
        case (.awaitingHeader, .rejected(let reject)):
            // NULs throughout a file are the mark of UTF-16, which Excel writes as "Unicode text".
            let hint = reject.code == .nulByte ? "; if the file is UTF-16, save it as CSV UTF-8 instead" : ""
            throw CSVImportError(.badHeader, "\(reject) (in the header row)\(hint)")
        case (.finished, _):
            preconditionFailure("CSVCodeImporter event after finish")
        }
    }
}
