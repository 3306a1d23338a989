/// One cell as the workbook stores it.
public struct XLSXCell: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// Text (a shared, inline or formula string).
        case string
        /// A number, as written in the file (`6.2E+15` stays as is, so a caller can tell a
        /// card number that Excel turned into a float).
        case number
        /// A number with a date or time format: Excel's serial day number.
        case date
        case boolean
        /// `#N/A`, `#VALUE!` and the like.
        case error
    }

    public var kind: Kind
    public var text: String

    public init(_ kind: Kind, _ text: String) {
        self.kind = kind
        self.text = text
    }

    public static let empty = XLSXCell(.string, "")

    /// A date cell's Unix time in ms (UTC, to the millisecond), or nil when it is not a
    /// plausible serial. `date1904`: the workbook counts from 1904.
    public func dateMs(date1904: Bool) -> Int64? {
        guard kind == .date, let serial = Double(text), serial.isFinite, serial >= 0, serial < 2_958_466 else { return nil }
        // 1900 system: serial 25569 is 1970-01-01 (Excel's serial 60, 29 February 1900, did not
        // exist; serials before it are a day off, and no expiry date is that old).
        let epoch = date1904 ? 24_107.0 : 25_569.0
        return Int64(((serial - epoch) * 86_400_000).rounded())
    }
}

/// A row of a sheet: its 1-based number in the sheet and its cells from column A, gaps filled
/// with empty cells (trailing empty cells are not there).
public struct XLSXRow: Sendable, Hashable {
    public var number: Int
    public var cells: [XLSXCell]
}

/// The bounds a workbook is read within.
public struct XLSXLimits: Sendable {
    /// Shared strings kept in memory, in total bytes (each string also counts 32 bytes).
    public var sharedStringsBytesMax = 256 << 20
    /// Shared strings in a workbook.
    public var sharedStringsMax = 4_000_000
    /// Rows in a sheet (Excel's own limit).
    public var rowsMax = 1_048_576
    /// Columns in a row.
    public var columnsMax = 256
    /// Bytes in one cell's text.
    public var cellBytesMax = 32_767
    /// Workbook, relationships and styles parts, read whole.
    public var smallPartBytesMax = 16 << 20

    public init() {}
}

/// An .xlsx workbook: its sheets' names, and a sheet's rows streamed one at a time.
public final class XLSXWorkbook {
    public let path: String
    let zip: ZipReader
    let limits: XLSXLimits
    /// Sheet names in workbook order, with the part each is in.
    public let sheets: [(name: String, part: String)]
    var sharedStrings: [String] = []
    /// Whether dates count from 1904 (old Mac workbooks) instead of 1900.
    public private(set) var date1904 = false
    /// Per style index (`s`): whether its number format is a date or time.
    var dateStyles: [Bool] = []

    public init(path: String, limits: XLSXLimits = XLSXLimits()) throws(XLSXError) {
        self.path = path
        self.limits = limits
        zip = try ZipReader(path: path)
        guard let workbook = zip.entry("xl/workbook.xml") else {
            throw XLSXError(.missingPart, "\(path) has no xl/workbook.xml: it is a ZIP archive but not an Excel workbook")
        }
        var relations: [String: String] = [:]
        if let rels = zip.entry("xl/_rels/workbook.xml.rels") {
            try XLSXWorkbook.each(try zip.contents(rels, limit: limits.smallPartBytesMax), part: rels.name) { name, attributes in
                guard XMLPullParser.localName(name) == "Relationship",
                      let id = attributes.first(where: { $0.0 == "Id" })?.1,
                      let target = attributes.first(where: { $0.0 == "Target" })?.1 else { return }
                relations[id] = target.hasPrefix("/") ? String(target.dropFirst()) : "xl/" + target
            }
        }
        var sheets: [(String, String)] = []
        var index = 0
        var date1904 = false
        try XLSXWorkbook.each(try zip.contents(workbook, limit: limits.smallPartBytesMax), part: workbook.name) { name, attributes in
            if XMLPullParser.localName(name) == "workbookPr",
               let value = attributes.first(where: { $0.0 == "date1904" })?.1 {
                date1904 = value == "1" || value == "true"
            }
            guard XMLPullParser.localName(name) == "sheet" else { return }
            index += 1
            let sheetName = attributes.first(where: { $0.0 == "name" })?.1 ?? "Sheet\(index)"
            let id = attributes.first(where: { XMLPullParser.localName($0.0) == "id" && $0.0 != "sheetId" })?.1
            sheets.append((sheetName, id.flatMap { relations[$0] } ?? "xl/worksheets/sheet\(index).xml"))
        }
        self.sheets = sheets
        self.date1904 = date1904
        if let strings = zip.entry("xl/sharedStrings.xml") { try loadSharedStrings(strings) }
        if let styles = zip.entry("xl/styles.xml") { try loadStyles(styles) }
    }

    /// Calls `body` for every start tag of a small part.
    static func each(_ bytes: [UInt8], part: String,
                     _ body: (String, [(String, String)]) throws(XLSXError) -> Void) throws(XLSXError) {
        var parser = XMLPullParser(part: part)
        parser.feed(bytes)
        parser.end()
        while let event = try parser.next() {
            if case .start(let name, let attributes, _) = event { try body(name, attributes) }
        }
    }

    private func loadSharedStrings(_ entry: ZipReader.Entry) throws(XLSXError) {
        let stream = try zip.open(entry)
        var parser = XMLPullParser(part: entry.name)
        var total = 0
        var inItem = false
        var inText = false
        var phonetic = 0
        var current = ""
        while true {
            guard let event = try parser.next() else {
                if parser.ended { break }
                if let chunk = try stream.next() { parser.feed(chunk) } else { parser.end() }
                continue
            }
            switch event {
            case .start(let name, _, let selfClosing):
                switch XMLPullParser.localName(name) {
                case "si":
                    inItem = true
                    current = ""
                    phonetic = 0
                    if selfClosing {
                        try addSharedString("", total: &total)
                        inItem = false
                    }
                case "rPh": if !selfClosing { phonetic += 1 }
                case "t": inText = !selfClosing
                default: break
                }
            case .end(let name):
                switch XMLPullParser.localName(name) {
                case "si":
                    try addSharedString(current, total: &total)
                    inItem = false
                case "rPh": phonetic = max(0, phonetic - 1)
                case "t": inText = false
                default: break
                }
            case .text(let text):
                if inItem && inText && phonetic == 0 {
                    current += text
                    guard current.utf8.count <= limits.cellBytesMax else {
                        throw XLSXError(.tooLarge, "\(path): shared string \(sharedStrings.count + 1) is over \(limits.cellBytesMax) bytes")
                    }
                }
            }
        }
    }

    private func addSharedString(_ text: String, total: inout Int) throws(XLSXError) {
        total += text.utf8.count + 32
        guard total <= limits.sharedStringsBytesMax, sharedStrings.count < limits.sharedStringsMax else {
            throw XLSXError(.tooLarge, "\(path): shared strings over \(limits.sharedStringsMax) strings or "
                + "\(limits.sharedStringsBytesMax) bytes")
        }
        sharedStrings.append(text)
    }

    private func loadStyles(_ entry: ZipReader.Entry) throws(XLSXError) {
        var custom: [Int: Bool] = [:]
        var inCellXfs = false
        var parser = XMLPullParser(part: entry.name)
        parser.feed(try zip.contents(entry, limit: limits.smallPartBytesMax))
        parser.end()
        while let event = try parser.next() {
            switch event {
            case .start(let name, let attributes, let selfClosing):
                switch XMLPullParser.localName(name) {
                case "numFmt":
                    if let id = attributes.first(where: { $0.0 == "numFmtId" }).flatMap({ Int($0.1) }),
                       let code = attributes.first(where: { $0.0 == "formatCode" })?.1 {
                        custom[id] = XLSXWorkbook.isDateFormat(code)
                    }
                case "cellXfs": inCellXfs = !selfClosing
                case "xf" where inCellXfs:
                    let id = attributes.first(where: { $0.0 == "numFmtId" }).flatMap { Int($0.1) } ?? 0
                    dateStyles.append(custom[id] ?? XLSXWorkbook.builtinDateFormats.contains(id))
                default: break
                }
            case .end(let name):
                if XMLPullParser.localName(name) == "cellXfs" { inCellXfs = false }
            case .text: break
            }
        }
    }

    /// Built-in number formats that show a date or time (14–22, 45–47; 27–36 and 50–58 in
    /// Chinese, Japanese and Korean Excel).
    static let builtinDateFormats: Set<Int> = Set(14...22).union(27...36).union(45...47).union(50...58)

    /// Whether a format code shows a date or time: y, m, d, h or s outside quotes, brackets
    /// and escapes (`[Red]0.00` and `"m"0` are not dates; `yyyy-mm-dd` and `[h]:mm` are).
    public static func isDateFormat(_ code: String) -> Bool {
        var inQuote = false
        var inBracket = false
        var escaped = false
        for character in code.lowercased() {
            if escaped { escaped = false; continue }
            switch character {
            case "\\": escaped = true
            case "\"": inQuote.toggle()
            case "[" where !inQuote: inBracket = true
            case "]" where !inQuote:
                inBracket = false
            case "y", "m", "d", "h", "s":
                if !inQuote && !inBracket { return true }
            default: break
            }
        }
        // `[h]` and `[mm]` elapsed times are in brackets.
        return code.lowercased().contains("[h") || code.lowercased().contains("[m") && code.lowercased().contains(":")
    }

    /// The sheet named `name`, or the first.
    public func rows(sheet name: String? = nil) throws(XLSXError) -> XLSXRowReader {
        guard !sheets.isEmpty else { throw XLSXError(.missingPart, "\(path) has no sheets") }
        let chosen: (name: String, part: String)
        if let name {
            guard let found = sheets.first(where: { $0.name == name }) else {
                throw XLSXError(.missingPart, "\(path) has no sheet named \"\(name)\"; it has "
                    + sheets.map { "\"\($0.name)\"" }.joined(separator: ", "))
            }
            chosen = found
        } else {
            chosen = sheets[0]
        }
        guard let entry = zip.entry(chosen.part) else {
            throw XLSXError(.missingPart, "\(path): sheet \"\(chosen.name)\" should be in \(chosen.part), which is missing")
        }
        return XLSXRowReader(workbook: self, stream: try zip.open(entry), part: entry.name)
    }
}

/// A sheet's rows, one at a time; memory stays within one chunk plus one row.
public final class XLSXRowReader {
    private let workbook: XLSXWorkbook
    private let stream: ZipEntryStream
    private var parser: XMLPullParser
    private var lastRow = 0

    init(workbook: XLSXWorkbook, stream: ZipEntryStream, part: String) {
        self.workbook = workbook
        self.stream = stream
        parser = XMLPullParser(part: part)
    }

    private func event() throws(XLSXError) -> XMLPullParser.Event? {
        while true {
            if let event = try parser.next() { return event }
            if parser.ended { return nil }
            if let chunk = try stream.next() { parser.feed(chunk) } else { parser.end() }
        }
    }

    /// Column index (0-based) of a reference like `AB12`.
    static func column(_ reference: String) -> Int? {
        var column = 0
        var letters = 0
        var digits = 0
        for byte in reference.utf8 {
            if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") {
                guard digits == 0 else { return nil }
                column = column * 26 + Int(byte - UInt8(ascii: "A") + 1)
                letters += 1
                if letters > 3 { return nil }
            } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                digits += 1
                if digits > 7 { return nil }
            } else {
                return nil
            }
        }
        return letters == 0 || digits == 0 ? nil : column - 1
    }

    /// The next row with at least one cell, or nil at the end of the sheet.
    public func next() throws(XLSXError) -> XLSXRow? {
        let part = parser.part
        var cells: [XLSXCell]? = nil
        var rowNumber = 0
        var cellColumn = 0
        var cellType = "n"
        var cellStyle = 0
        var value = ""
        var inValue = false
        var inInline = false
        var phonetic = 0
        let limits = workbook.limits
        while let event = try event() {
            switch event {
            case .start(let name, let attributes, let selfClosing):
                switch XMLPullParser.localName(name) {
                case "row":
                    if let text = attributes.first(where: { $0.0 == "r" })?.1 {
                        guard let number = Int(text), number >= 1, number <= limits.rowsMax else {
                            throw XLSXError(.badXML, "\(part): a row numbered \(text.prefix(12)), not 1 to \(limits.rowsMax)")
                        }
                        rowNumber = number
                    } else {
                        rowNumber = lastRow + 1
                    }
                    guard rowNumber <= limits.rowsMax else {
                        throw XLSXError(.tooLarge, "\(part): more than \(limits.rowsMax) rows")
                    }
                    guard rowNumber > lastRow else {
                        throw XLSXError(.badXML, "\(part): row \(rowNumber) comes after row \(lastRow)")
                    }
                    lastRow = rowNumber
                    cells = []
                    if selfClosing { cells = nil }
                case "c":
                    guard cells != nil else { throw XLSXError(.badXML, "\(part): a cell outside a row") }
                    if let reference = attributes.first(where: { $0.0 == "r" })?.1 {
                        guard let column = XLSXRowReader.column(reference) else {
                            throw XLSXError(.badXML, "\(part): row \(rowNumber) has a cell reference that is not a column "
                                + "and a row (\(reference.utf8.count) bytes)")
                        }
                        cellColumn = column
                    } else {
                        cellColumn = cells!.count
                    }
                    guard cellColumn < limits.columnsMax else {
                        throw XLSXError(.tooLarge, "\(part): row \(rowNumber) has a cell in column \(cellColumn + 1), "
                            + "past the \(limits.columnsMax) read")
                    }
                    cellType = attributes.first(where: { $0.0 == "t" })?.1 ?? "n"
                    cellStyle = attributes.first(where: { $0.0 == "s" }).flatMap { UInt16($0.1) }.map(Int.init) ?? 0
                    value = ""
                    if selfClosing { store(&cells, "", column: cellColumn, type: cellType, style: cellStyle, row: rowNumber) }
                case "v": inValue = !selfClosing
                case "is": inInline = !selfClosing
                case "t" where inInline: inValue = !selfClosing
                case "rPh": if !selfClosing { phonetic += 1 }
                default: break
                }
            case .end(let name):
                switch XMLPullParser.localName(name) {
                case "v", "t": inValue = false
                case "is": inInline = false
                case "rPh": phonetic = max(0, phonetic - 1)
                case "c":
                    try storeChecked(&cells, value, column: cellColumn, type: cellType, style: cellStyle, row: rowNumber)
                case "row":
                    // Trailing empty cells are not kept.
                    while cells?.last == .empty { cells!.removeLast() }
                    if let row = cells, !row.isEmpty { return XLSXRow(number: rowNumber, cells: row) }
                    cells = nil
                default: break
                }
            case .text(let text):
                if inValue && phonetic == 0 {
                    value += text
                    guard value.utf8.count <= limits.cellBytesMax else {
                        throw XLSXError(.tooLarge, "\(part): a cell of row \(rowNumber) is over \(limits.cellBytesMax) bytes")
                    }
                }
            }
        }
        return nil
    }

    private func storeChecked(_ cells: inout [XLSXCell]?, _ raw: String, column: Int, type: String, style: Int, row: Int) throws(XLSXError) {
        if type == "s" && !raw.isEmpty {
            guard let index = Int(raw), index >= 0, index < workbook.sharedStrings.count else {
                throw XLSXError(.corrupt, "\(parser.part): row \(row) refers to a shared string that does not exist "
                    + "(\(workbook.sharedStrings.count) in the workbook)")
            }
        }
        store(&cells, raw, column: column, type: type, style: style, row: row)
    }

    private func store(_ cells: inout [XLSXCell]?, _ raw: String, column: Int, type: String, style: Int, row: Int) {
        guard cells != nil else { return }
        let cell: XLSXCell
        switch type {
        case "s": cell = XLSXCell(.string, raw.isEmpty ? "" : workbook.sharedStrings[Int(raw)!])
        case "str", "inlineStr": cell = XLSXCell(.string, raw)
        case "b": cell = XLSXCell(.boolean, raw == "1" ? "TRUE" : "FALSE")
        case "e": cell = XLSXCell(.error, raw)
        case "d": cell = XLSXCell(.date, raw)
        default:
            let isDate = style < workbook.dateStyles.count && workbook.dateStyles[style]
            cell = raw.isEmpty ? .empty : XLSXCell(isDate ? .date : .number, raw)
        }
        while cells!.count < column { cells!.append(.empty) }
        if column < cells!.count { cells![column] = cell } else { cells!.append(cell) }
    }
}
