private import Glibc
public import KamiXLSX

/// Imports codes from an Excel workbook with exactly the rules of a CSV import: each sheet row
/// becomes one CSV record fed to `CSVCodeImporter` (header, row rules, duplicate reports,
/// rejects), and every line reported is the sheet's row number. What only a workbook can get
/// wrong is refused per row before that:
/// - a date or an Excel error (`#N/A`) in the secret or card-number column (Excel turned the
///   code into a date: the original is lost; format the column as text and save again);
/// - a number in those columns with a fraction or more than the 15 digits Excel keeps: it was
///   rounded (a float written with an exponent, `6.2E+15`, is caught by the CSV rule);
/// - a date in the expiry column becomes `YYYY-MM-DD` (or a UTC timestamp with its time).
public enum XLSXFileImport {
    /// Excel's error literals: only these are named in a reject (any other text in an error
    /// cell could be a code).
    static let errorLiterals: Set<String> = ["#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A",
                                             "#GETTING_DATA", "#SPILL!", "#CALC!"]

    /// Imports the sheet named `sheet` (or the first) of the workbook at `path`.
    public static func importCodes(path: String, sheet: String? = nil, limits: XLSXLimits = XLSXLimits(),
                                   isCancelled: () -> Bool = { false },
                                   _ body: (CSVImportItem) throws -> Void) throws -> CSVImportSummary
    {
        let fd = try FileIO.openRegularFile(path)  // refuses a fifo or a device, like a CSV
        _ = close(fd)
        let workbook: XLSXWorkbook
        let rows: XLSXRowReader
        do throws(XLSXError) {
            workbook = try XLSXWorkbook(path: path, limits: limits)
            rows = try workbook.rows(sheet: sheet)
        } catch {
            throw CSVImportError(.badWorkbook, error.message)
        }
        var importer = try CSVCodeImporter(encoding: .utf8)
        var codeColumns: Set<Int>? = nil  // the secret and card-number columns, from the header
        var expiryColumn: Int? = nil
        var width = 0  // header cells: a row's trailing empty cells are written out to it
        var fedLines = 0  // lines the importer has been given (a cell may hold line breaks)
        var lastRow = 0
        // CSV lines that are not their sheet row (after a cell with a line break), to report
        // the sheet's row.
        var rowOfLine: [Int: Int] = [:]
        func report(_ item: CSVImportItem) throws {
            switch item {
            case .row(var row):
                row.line = rowOfLine[row.line] ?? row.line
                try body(.row(row))
            case .reject(let reject):
                let line = rowOfLine[reject.line] ?? reject.line
                try body(.reject(line == reject.line ? reject : CSVReject(line: line, code: reject.code, reason: reject.reason)))
            }
        }
        var record: [UInt8] = []
        // The importer is noncopyable: it is fed from a buffer, not from inside a closure.
        var scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { scratch.deallocate() }
        while true {
            if isCancelled() { throw FileIO.cancelled }
            let next: XLSXRow?
            do throws(XLSXError) { next = try rows.next() } catch {
                throw CSVImportError(.badWorkbook, "\(error.message) (after row \(lastRow))")
            }
            guard let row = next else { break }
            lastRow = row.number
            record.removeAll(keepingCapacity: true)
            // Blank lines for the rows the sheet skips: line numbers stay the sheet's rows.
            while fedLines + 1 < row.number {
                record.append(0x0A)
                fedLines += 1
            }
            let startLine = fedLines + 1
            if startLine != row.number { rowOfLine[startLine] = row.number }
            let blank = row.cells.allSatisfy { CSVCells.trimmed(ArraySlice($0.text.utf8)).isEmpty }
            var refusal: String? = nil
            if codeColumns == nil {
                // The first row that is not blank is the header (the CSV importer reads it too).
                if !blank {
                    var columns: Set<Int> = []
                    for (index, cell) in row.cells.enumerated() {
                        switch CSVColumn.named(CSVHeader.normalised(ArraySlice(cell.text.utf8))) {
                        case .secret?, .cardNumber?: columns.insert(index)
                        case .expiresAt?: expiryColumn = index
                        default: break
                        }
                    }
                    codeColumns = columns
                    width = row.cells.count
                }
            } else if let index = row.cells.indices.first(where: { codeColumns!.contains($0) && refused(row.cells[$0]) != nil }) {
                refusal = "column \(columnName(index)) is \(refused(row.cells[index])!); format the column as text and enter the codes again"
            }
            if let refusal {
                try body(.reject(CSVReject(line: row.number, code: .badDate, reason: refusal)))  // already the sheet's row
                record.append(0x0A)
                fedLines += 1
            } else {
                for index in 0..<max(width, row.cells.count) {
                    let cell = index < row.cells.count ? row.cells[index] : XLSXCell.empty
                    if index > 0 { record.append(UInt8(ascii: ",")) }
                    var text = cell.text
                    if cell.kind == .date, index == expiryColumn, let ms = cell.dateMs(date1904: workbook.date1904) {
                        text = CSVDate.format(ms: ms)
                    }
                    // A line break in a cell (Alt+Enter) is written as \n, so the lines the CSV
                    // parser counts are the \n bytes fed.
                    record.append(UInt8(ascii: "\""))
                    var afterReturn = false
                    for byte in text.utf8 {
                        if byte == 0x0A && afterReturn {
                            afterReturn = false
                            continue
                        }
                        afterReturn = byte == 0x0D
                        if byte == 0x0A || byte == 0x0D {
                            record.append(0x0A)
                            fedLines += 1
                            continue
                        }
                        if byte == UInt8(ascii: "\"") { record.append(byte) }
                        record.append(byte)
                    }
                    record.append(UInt8(ascii: "\""))
                }
                record.append(0x0A)
                fedLines += 1
            }
            if record.count > scratch.count {
                scratch.deallocate()
                scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: record.count * 2, alignment: 16)
            }
            scratch.copyBytes(from: record)
            try importer.feed(UnsafeRawBufferPointer(rebasing: scratch[0..<record.count]), report)
        }
        return try importer.finish(report)
    }

    /// Why a cell in a code column cannot be a code Excel kept intact, or nil.
    static func refused(_ cell: XLSXCell) -> String? {
        switch cell.kind {
        case .date: return "a date (Excel turned the code into one; the original is lost)"
        case .error: return errorLiterals.contains(cell.text) ? "the Excel error \(cell.text)" : "an Excel error cell"
        case .number:
            let digits = cell.text.utf8.drop { $0 == UInt8(ascii: "0") || $0 == UInt8(ascii: "-") }
                .filter { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }.count
            if cell.text.contains(".") || digits > 15 {
                return "a number Excel rounded (it keeps 15 digits and no leading zeros)"
            }
            return nil
        default: return nil
        }
    }

    /// `A`, `B`, … `AA` for a 0-based column.
    static func columnName(_ index: Int) -> String {
        var name = ""
        var value = index + 1
        while value > 0 {
            let digit = (value - 1) % 26
            name = String(UnicodeScalar(UInt8(65 + digit))) + name
            value = (value - 1) / 26
        }
        return name
    }
}
