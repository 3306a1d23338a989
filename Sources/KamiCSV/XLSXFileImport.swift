private import Glibc
public import KamiXLSX

/// Imports codes from an Excel workbook with exactly the rules of a CSV import: each sheet row
/// becomes one CSV record fed to `CSVCodeImporter` (header, row rules, duplicate reports,
/// rejects), and a reject's line is the sheet's row number. What only a workbook can get
/// wrong is refused per row before that:
/// - a date or an Excel error (`#N/A`) in the secret or card-number column (Excel turned the
///   code into a date: the original is lost; format the column as text and save again);
/// - numbers are passed as Excel wrote them, so one it turned into a float (`6.2E+15`) is
///   caught by the CSV rule for scientific notation;
/// - a date in the expiry column becomes `YYYY-MM-DD` (or a UTC timestamp with its time).
public enum XLSXFileImport {
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
        var line = 0
        var record: [UInt8] = []
        // The importer is noncopyable: it is fed from a buffer, not from inside a closure.
        var scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { scratch.deallocate() }
        while true {
            if isCancelled() { throw FileIO.cancelled }
            let next: XLSXRow?
            do throws(XLSXError) { next = try rows.next() } catch {
                throw CSVImportError(.badWorkbook, "\(error.message) (after row \(line))")
            }
            guard let row = next else { break }
            record.removeAll(keepingCapacity: true)
            // Blank lines for the rows the sheet skips: line numbers stay the sheet's rows.
            while line + 1 < row.number {
                record.append(0x0A)
                line += 1
            }
            line = row.number
            if codeColumns == nil {
                // The first row with a cell is the header (the CSV importer reads it too).
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
            } else if let bad = row.cells.indices.first(where: { index in
                codeColumns!.contains(index) && (row.cells[index].kind == .date || row.cells[index].kind == .error)
            }) {
                let cell = row.cells[bad]
                let what = cell.kind == .date ? "a date (Excel turned the code into one; the original is lost)"
                    : "the Excel error \(cell.text)"
                try body(.reject(CSVReject(line: row.number, code: .badDate,
                                           reason: "column \(XLSXFileImport.columnName(bad)) is \(what); "
                                               + "format the column as text and enter the codes again")))
                record.append(0x0A)
                if record.count > scratch.count {
                    scratch.deallocate()
                    scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: record.count * 2, alignment: 16)
                }
                scratch.copyBytes(from: record)
                try importer.feed(UnsafeRawBufferPointer(rebasing: scratch[0..<record.count]), body)
                continue
            }
            for index in 0..<max(width, row.cells.count) {
                let cell = index < row.cells.count ? row.cells[index] : XLSXCell.empty
                if index > 0 { record.append(UInt8(ascii: ",")) }
                var text = cell.text
                if cell.kind == .date, index == expiryColumn, let ms = cell.dateMs(date1904: workbook.date1904) {
                    text = CSVDate.format(ms: ms)
                }
                record.append(UInt8(ascii: "\""))
                for byte in text.utf8 {
                    if byte == UInt8(ascii: "\"") { record.append(byte) }
                    record.append(byte)
                }
                record.append(UInt8(ascii: "\""))
            }
            record.append(0x0A)
            if record.count > scratch.count {
                scratch.deallocate()
                scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: record.count * 2, alignment: 16)
            }
            scratch.copyBytes(from: record)
            try importer.feed(UnsafeRawBufferPointer(rebasing: scratch[0..<record.count]), body)
        }
        return try importer.finish(body)
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
