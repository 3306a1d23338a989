/// Writes a one-sheet .xlsx workbook row by row (inline strings, so nothing accumulates in
/// memory): what `kamictl report --xlsx` and an .xlsx export write. Text stays text (a card
/// number is never turned into a number); numbers are written as numbers.
///
/// ```swift
/// let sheet = try XLSXWriter(path: "/tmp/sales.xlsx", sheetName: "sales")
/// try sheet.add([.text("sku"), .text("revenue")])
/// try sheet.add([.text("vip"), .number("1990")])
/// try sheet.finish()
/// ```
public final class XLSXWriter {
    public enum Value: Sendable, Hashable {
        case text(String)
        /// A number as text in the form Excel reads (`12`, `-3.5`); anything else is text.
        case number(String)
    }

    private let zip: ZipWriter
    private var row = 0
    private var buffer: [UInt8] = []

    /// Starts `path` (created with `mode`; use 0o600 for a file with secrets).
    public convenience init(path: String, sheetName: String = "Sheet1", mode: UInt32 = 0o644) throws(XLSXError) {
        try self.init(zip: try ZipWriter(path: path, mode: mode), sheetName: sheetName)
    }

    /// Writes into an open, empty file the caller made and closes (`path` names it in errors).
    public convenience init(fileDescriptor: Int32, path: String, sheetName: String = "Sheet1") throws(XLSXError) {
        try self.init(zip: ZipWriter(fileDescriptor: fileDescriptor, path: path), sheetName: sheetName)
    }

    private init(zip: ZipWriter, sheetName: String) throws(XLSXError) {
        self.zip = zip
        let name = XLSXWriter.escaped(String(XLSXWriter.sheetName(sheetName)))
        try zip.add("[Content_Types].xml", Array((XLSXWriter.declaration
            + #"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">"#
            + #"<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>"#
            + #"<Default Extension="xml" ContentType="application/xml"/>"#
            + #"<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>"#
            + #"<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>"#
            + #"<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>"#
            + "</Types>").utf8))
        try zip.add("_rels/.rels", Array((XLSXWriter.declaration
            + #"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">"#
            + #"<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>"#
            + "</Relationships>").utf8))
        try zip.add("xl/workbook.xml", Array((XLSXWriter.declaration
            + #"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">"#
            + #"<sheets><sheet name="\#(name)" sheetId="1" r:id="rId1"/></sheets></workbook>"#).utf8))
        try zip.add("xl/_rels/workbook.xml.rels", Array((XLSXWriter.declaration
            + #"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">"#
            + #"<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>"#
            + #"<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>"#
            + "</Relationships>").utf8))
        try zip.add("xl/styles.xml", Array((XLSXWriter.declaration
            + #"<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#
            + #"<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>"#
            + #"<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>"#
            + #"<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>"#
            + #"<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>"#
            + #"<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>"#
            + "</styleSheet>").utf8))
        try zip.beginEntry("xl/worksheets/sheet1.xml")
        try zip.write(Array((XLSXWriter.declaration
            + #"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#).utf8))
    }

    static let declaration = #"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"# + "\n"

    /// Excel's rules for a sheet name: at most 31 characters, none of `\ / ? * [ ] :`.
    static func sheetName(_ name: String) -> Substring {
        let cleaned = String(name.map { "\\/?*[]:".contains($0) ? "_" : $0 })
        return cleaned.isEmpty ? "Sheet1" : cleaned.prefix(31)
    }

    /// Text escaped for XML; characters XML 1.0 cannot carry (controls other than tab,
    /// newline and return) are dropped.
    static func escaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            default:
                if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF { continue }
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func isNumber(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 15, let value = Double(text), value.isFinite else { return false }
        return text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
    }

    /// Appends a row.
    public func add(_ values: [Value]) throws(XLSXError) {
        row += 1
        var xml = "<row r=\"\(row)\">"
        for value in values {
            switch value {
            case .number(let text) where XLSXWriter.isNumber(text):
                xml += "<c><v>\(text)</v></c>"
            case .text(let text), .number(let text):
                if text.isEmpty {
                    xml += "<c/>"
                } else {
                    let space = text.first?.isWhitespace == true || text.last?.isWhitespace == true ? #" xml:space="preserve""# : ""
                    xml += "<c t=\"inlineStr\"><is><t\(space)>\(XLSXWriter.escaped(text))</t></is></c>"
                }
            }
        }
        xml += "</row>"
        buffer += Array(xml.utf8)
        if buffer.count >= 64 * 1024 {
            try zip.write(buffer)
            buffer.removeAll(keepingCapacity: true)
        }
    }

    /// Ends the sheet and the archive; the file is synced and closed.
    public func finish() throws(XLSXError) {
        buffer += Array("</sheetData></worksheet>".utf8)
        try zip.write(buffer)
        buffer = []
        try zip.endEntry()
        try zip.finish()
    }
}
