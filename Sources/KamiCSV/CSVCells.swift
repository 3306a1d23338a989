/// Byte-level helpers for cells: trimming, control characters, formula triggers. Cells are
/// UTF-8 (the parser checked), so working on bytes is exact and keeps Foundation and
/// `String` off the per-row path.
enum CSVCells {
    /// The ideographic space U+3000 in UTF-8: Chinese input methods type it for a space, and
    /// it survives a careless copy from a web page into a spreadsheet.
    private static let ideographicSpace: (UInt8, UInt8, UInt8) = (0xE3, 0x80, 0x80)

    /// `bytes` without surrounding spaces (U+0020 and U+3000). Tabs and other control
    /// characters are not trimmed: they are rejected, because they hint at a damaged file.
    static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var start = bytes.startIndex
        var end = bytes.endIndex
        while start < end {
            if bytes[start] == 0x20 {
                start += 1
            } else if end - start >= 3 && isIdeographicSpace(bytes, at: start) {
                start += 3
            } else {
                break
            }
        }
        while end > start {
            if bytes[end - 1] == 0x20 {
                end -= 1
            } else if end - start >= 3 && isIdeographicSpace(bytes, at: end - 3) {
                end -= 3
            } else {
                break
            }
        }
        return bytes[start..<end]
    }

    private static func isIdeographicSpace(_ bytes: ArraySlice<UInt8>, at index: Int) -> Bool {
        bytes[index] == ideographicSpace.0 && bytes[index + 1] == ideographicSpace.1
            && bytes[index + 2] == ideographicSpace.2
    }

    /// Whether a cell starting with `byte` would be run as a formula by Excel, LibreOffice or
    /// Google Sheets (`=`, `+`, `-`, `@`; tab and CR, which some of them skip before looking).
    static func isFormulaTrigger(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "=") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
            || byte == UInt8(ascii: "@") || byte == 0x09 || byte == 0x0D
    }

    /// The quote that `CSVWriter` puts before a cell to neutralise it.
    static let neutraliser = UInt8(ascii: "'")

    /// Whether a cell needs `neutraliser` in front of it on export: it starts like a formula,
    /// or it starts with the neutraliser itself (doubled, so that the importer's stripping of
    /// one neutraliser gives the original back).
    static func needsNeutralising(_ first: UInt8) -> Bool {
        isFormulaTrigger(first) || first == neutraliser
    }

    /// `bytes` with one leading neutraliser removed when it guards a formula trigger or
    /// another neutraliser (what `CSVWriter` writes), and whether one was removed. Excel never
    /// writes such a quote into a CSV, so it comes from a neutralising export, and the cell
    /// behind it is meant literally.
    static func stripNeutraliser(_ bytes: ArraySlice<UInt8>) -> (ArraySlice<UInt8>, literal: Bool) {
        guard bytes.count >= 2, bytes.first == neutraliser,
              needsNeutralising(bytes[bytes.startIndex + 1])
        else { return (bytes, false) }
        return (bytes.dropFirst(), true)
    }

    /// Whether `bytes` holds a character that has no place in a code or a name: a C0 control
    /// character, DEL, a C1 control (U+0080...U+009F, what Windows-1252 text read as Latin-1
    /// turns into), or an invisible format character that copy and paste from web pages and
    /// chat apps brings along and nobody can see in a spreadsheet: zero-width spaces and
    /// joiners and direction marks (U+200B...U+200F), line and paragraph separators and bidi
    /// overrides (U+2028...U+202E), word joiners (U+2060...U+2064), and a stray BOM (U+FEFF).
    static func hasControlCharacter(_ bytes: ArraySlice<UInt8>) -> Bool {
        var index = bytes.startIndex
        let end = bytes.endIndex
        while index < end {
            let byte = bytes[index]
            if byte < 0x20 || byte == 0x7F { return true }
            if byte >= 0xC2 && end - index >= 2 {
                let second = bytes[index + 1]
                if byte == 0xC2 && second <= 0x9F { return true }
                if end - index >= 3 {
                    let third = bytes[index + 2]
                    switch (byte, second) {
                    case (0xE2, 0x80) where (0x8B...0x8F).contains(third) || (0xA8...0xAE).contains(third):
                        return true
                    case (0xE2, 0x81) where (0xA0...0xA4).contains(third):
                        return true
                    case (0xEF, 0xBB) where third == 0xBF:
                        return true
                    default:
                        break
                    }
                }
            }
            index += 1
        }
        return false
    }

    /// Whether `bytes` looks like a long number Excel reformatted in scientific notation
    /// (`1.23457E+15`): it showed a 16-digit card number that way, and saving wrote the
    /// rounded form, so the real code is lost. Pattern: digit, optional fraction, `E+` or
    /// `e+`, digits.
    static func isScientificNotation(_ bytes: ArraySlice<UInt8>) -> Bool {
        var index = bytes.startIndex
        let end = bytes.endIndex
        guard index < end, isDigit(bytes[index]) else { return false }
        index += 1
        if index < end && bytes[index] == UInt8(ascii: ".") {
            index += 1
            let fractionStart = index
            while index < end && isDigit(bytes[index]) { index += 1 }
            guard index > fractionStart else { return false }
        }
        // "E+" and at least one digit.
        guard end - index >= 3, bytes[index] | 0x20 == UInt8(ascii: "e"), bytes[index + 1] == UInt8(ascii: "+")
        else { return false }
        index += 2
        while index < end && isDigit(bytes[index]) { index += 1 }
        return index == end
    }

    @inline(__always)
    static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    /// Whether every field of `record` is empty after trimming: a blank line, a line of only
    /// spaces, or the `,,,` rows Excel writes for rows that were cleared but not deleted.
    static func isBlank(_ record: CSVRecord) -> Bool {
        for index in 0..<record.fieldCount where !trimmed(record.field(index)).isEmpty {
            return false
        }
        return true
    }
}
