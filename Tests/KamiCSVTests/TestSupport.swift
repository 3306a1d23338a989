import KamiCSV
import KamiCore
import XCTest

/// How a test cuts its input into chunks.
enum Chunking {
    case whole
    case bytes(Int)
    /// Random sizes from 1 to `maximum`, from a seeded generator so a failure can be replayed.
    case random(seed: UInt64, maximum: Int)

    func chunks(_ input: [UInt8]) -> [ArraySlice<UInt8>] {
        switch self {
        case .whole:
            return [input[...]]
        case .bytes(let size):
            return stride(from: 0, to: input.count, by: size).map { input[$0..<min($0 + size, input.count)] }
        case .random(let seed, let maximum):
            var generator = SplitMix64(seed: seed)
            var chunks: [ArraySlice<UInt8>] = []
            var start = 0
            while start < input.count {
                let size = Int.random(in: 1...maximum, using: &generator)
                chunks.append(input[start..<min(start + size, input.count)])
                start += size
            }
            return chunks
        }
    }
}

/// A parsed record reduced to comparable values.
enum ParsedEvent: Equatable, CustomStringConvertible {
    case record(line: Int, fields: [String])
    case rejected(line: Int, code: CSVRejectCode)

    var description: String {
        switch self {
        case .record(let line, let fields): "record(\(line), \(fields))"
        case .rejected(let line, let code): "rejected(\(line), \(code))"
        }
    }
}

/// Parses `input` with `CSVRecordParser`, fed in the given chunks.
func parse(_ input: [UInt8], _ chunking: Chunking = .whole) -> (events: [ParsedEvent], highWater: Int) {
    var parser = CSVRecordParser()
    var events: [ParsedEvent] = []
    let collect: (CSVParserEvent) -> Void = { event in
        switch event {
        case .record(let record):
            events.append(.record(line: record.line, fields: (0..<record.fieldCount).map(record.string)))
        case .rejected(let reject):
            events.append(.rejected(line: reject.line, code: reject.code))
        }
    }
    for chunk in chunking.chunks(input) {
        chunk.withUnsafeBytes { parser.feed($0, collect) }
    }
    parser.finish(collect)
    return (events, parser.bufferHighWaterBytes)
}

func parse(_ text: String, _ chunking: Chunking = .whole) -> [ParsedEvent] {
    parse(Array(text.utf8), chunking).events
}

/// Imports `input` with `CSVCodeImporter`, fed in the given chunks.
func importAll(_ input: [UInt8], encoding: CSVEncoding = .utf8, _ chunking: Chunking = .whole) throws
    -> (items: [CSVImportItem], summary: CSVImportSummary)
{
    var importer = try CSVCodeImporter(encoding: encoding)
    var items: [CSVImportItem] = []
    for chunk in chunking.chunks(input) {
        try chunk.withUnsafeBytes { bytes in try importer.feed(bytes) { items.append($0) } }
    }
    let summary = try importer.finish { items.append($0) }
    return (items, summary)
}

func importAll(_ text: String, _ chunking: Chunking = .whole) throws
    -> (items: [CSVImportItem], summary: CSVImportSummary)
{
    try importAll(Array(text.utf8), encoding: .utf8, chunking)
}

extension [CSVImportItem] {
    var rows: [CSVCodeRow] {
        compactMap { if case .row(let row) = $0 { row } else { nil } }
    }

    var rejects: [CSVReject] {
        compactMap { if case .reject(let reject) = $0 { reject } else { nil } }
    }
}

extension CSVCodeRow {
    var secretText: String { secret.reveal() }
}

/// Asserts that importing `text` throws a `CSVImportError` with `code`, and returns it.
@discardableResult
func assertImportError(_ text: [UInt8], encoding: CSVEncoding = .utf8, _ code: CSVImportError.Code,
                       file: StaticString = #filePath, line: UInt = #line) -> CSVImportError?
{
    do {
        _ = try importAll(text, encoding: encoding)
        XCTFail("expected \(code), import succeeded", file: file, line: line)
    } catch let error as CSVImportError {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        return error
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
    return nil
}
