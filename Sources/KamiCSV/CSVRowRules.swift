import KamiCore

/// Turns one record into a code row, or into a reject that says which column broke which
/// rule (never what the cell held).
///
/// Rules, per column (every cell is first trimmed of surrounding spaces, see `CSVCells`):
/// - secret: required; at most `CSVLimits.secretBytesMax` bytes; no control or invisible
///   characters (see `CSVCells.hasControlCharacter`); not
///   formula-like (starting with `=`, `+`, `-`, `@`, tab or CR: a cell like
///   `=cmd|' /C calc'!A0` runs a command when an export is opened in a spreadsheet); not in
///   Excel's scientific notation (`1.23457E+15`, digits already lost). Surrounding spaces are
///   trimmed because they come from copy and paste, never from a code system, and a buyer
///   could not type them back.
/// - card number: optional, same rules, at most `CSVLimits.cardNumberBytesMax` bytes.
/// - batch: optional, at most `CSVLimits.batchBytesMax` bytes, no control or invisible characters;
///   formula-like names are accepted (they are data here, and exports neutralise them).
/// - cost: `cost_cents` a whole number of cents; 成本 yuan with at most two decimals; from 0
///   to `CSVLimits.costCentsMax` cents; empty means unknown.
/// - expiry: see `CSVDate`; empty means none.
/// - A cell that `CSVWriter` neutralised (`'=...`, `'-...`, `''...`) loses that one quote and
///   is taken literally, so an export re-imports unchanged.
/// - The row must have at least the fields up to the last column read, and any fields past
///   the header's count must be empty: a stray unquoted comma shifts cells into the wrong
///   columns, which must not import silently.
enum CSVRowRules {
    static func row(_ record: CSVRecord, header: CSVHeader) -> CSVImportItem {
        switch makeRow(record, header) {
        case .success(let row): .row(row)
        case .failure(let problem): .reject(CSVReject(line: record.line, code: problem.code, reason: problem.reason))
        }
    }

    struct Problem: Error {
        let code: CSVRejectCode
        let reason: String
        init(_ code: CSVRejectCode, _ reason: String) {
            self.code = code
            self.reason = reason
        }
    }

    private static func makeRow(_ record: CSVRecord, _ header: CSVHeader) -> Result<CSVCodeRow, Problem> {
        if let problem = fieldCountProblem(record, header) { return .failure(problem) }
        do throws(Problem) {
            let secret = try secretBytes(record.field(header.secretIndex))
            var row = CSVCodeRow(line: record.line, secret: Secret(bytes: Array(secret)))
            if let index = header.cardNumberIndex {
                row.cardNumber = try cardNumber(record.field(index))
            }
            if let index = header.costIndex {
                row.costCents = try header.costIsYuan ? costYuan(record.field(index)) : costCents(record.field(index))
            }
            if let index = header.expiresAtIndex {
                row.expiresAtMs = try expiry(record.field(index))
            }
            if let index = header.batchIndex {
                row.batch = try text(record.field(index), column: "batch", bytesMax: CSVLimits.batchBytesMax)
            }
            return .success(row)
        } catch {
            return .failure(error)
        }
    }

    private static func fieldCountProblem(_ record: CSVRecord, _ header: CSVHeader) -> Problem? {
        let count = record.fieldCount
        if count < header.requiredFieldCount {
            return Problem(.fieldCount, "\(count) fields, but the header needs \(header.requiredFieldCount)")
        }
        if count > header.columns.count {
            for index in header.columns.count..<count where !CSVCells.trimmed(record.field(index)).isEmpty {
                return Problem(.fieldCount, "\(count) fields, more than the header's \(header.columns.count)"
                    + " (an unquoted comma in a cell?)")
            }
        }
        return nil
    }

    static func secretBytes(_ cell: ArraySlice<UInt8>) throws(Problem) -> ArraySlice<UInt8> {
        let (value, literal) = CSVCells.stripNeutraliser(CSVCells.trimmed(cell))
        if value.isEmpty { throw Problem(.emptySecret, "secret is empty") }
        if value.count > CSVLimits.secretBytesMax {
            throw Problem(.secretTooLong, "secret longer than \(CSVLimits.secretBytesMax) bytes")
        }
        try checkCode(value, literal: literal, column: "secret")
        return value
    }

    private static func cardNumber(_ cell: ArraySlice<UInt8>) throws(Problem) -> String? {
        let (value, literal) = CSVCells.stripNeutraliser(CSVCells.trimmed(cell))
        if value.isEmpty { return nil }
        if value.count > CSVLimits.cardNumberBytesMax {
            throw Problem(.fieldTooLong, "card_number longer than \(CSVLimits.cardNumberBytesMax) bytes")
        }
        try checkCode(value, literal: literal, column: "card_number")
        return string(value)
    }

    /// The rules shared by secrets and card numbers, the cells a buyer receives.
    private static func checkCode(_ value: ArraySlice<UInt8>, literal: Bool, column: String) throws(Problem) {
        if !literal, let first = value.first, CSVCells.isFormulaTrigger(first) {
            throw Problem(.formula, "\(column) starts like a spreadsheet formula (=, +, -, @, tab or CR)")
        }
        if CSVCells.hasControlCharacter(value) {
            throw Problem(.controlCharacter, "\(column) contains a control or invisible character")
        }
        if CSVCells.isScientificNotation(value) {
            throw Problem(.scientificNotation, "\(column) is in scientific notation"
                + " (Excel rounded a long number; format the column as text)")
        }
    }

    private static func text(_ cell: ArraySlice<UInt8>, column: String, bytesMax: Int) throws(Problem) -> String? {
        let (value, _) = CSVCells.stripNeutraliser(CSVCells.trimmed(cell))
        if value.isEmpty { return nil }
        if value.count > bytesMax { throw Problem(.fieldTooLong, "\(column) longer than \(bytesMax) bytes") }
        if CSVCells.hasControlCharacter(value) {
            throw Problem(.controlCharacter, "\(column) contains a control or invisible character")
        }
        return string(value)
    }

    private static func costCents(_ cell: ArraySlice<UInt8>) throws(Problem) -> Int64? {
        let value = CSVCells.trimmed(cell)
        if value.isEmpty { return nil }
        var cursor = Cursor(bytes: value)
        guard let cents = wholeNumber(&cursor), cursor.atEnd, cents <= CSVLimits.costCentsMax else {
            throw Problem(.badCost, "cost_cents must be a whole number of cents from 0 to \(CSVLimits.costCentsMax)")
        }
        return cents
    }

    private static func costYuan(_ cell: ArraySlice<UInt8>) throws(Problem) -> Int64? {
        let value = CSVCells.trimmed(cell)
        if value.isEmpty { return nil }
        var cursor = Cursor(bytes: value)
        let problem = Problem(.badCost, "成本 must be an amount in yuan like 12 or 12.50 (at most two decimals)")
        guard let yuan = wholeNumber(&cursor), yuan <= CSVLimits.costCentsMax / 100 else { throw problem }
        var cents = yuan * 100
        if cursor.eat(".") {
            guard let (fraction, width) = cursor.fraction(maxDigits: 2) else { throw problem }
            cents += Int64(width == 1 ? fraction * 10 : fraction)
        }
        guard cursor.atEnd, cents <= CSVLimits.costCentsMax else { throw problem }
        return cents
    }

    /// Decimal digits (at most 18, so no overflow) as a non-negative number.
    private static func wholeNumber(_ cursor: inout Cursor) -> Int64? {
        var value: Int64 = 0
        var read = 0
        while let byte = cursor.peek, CSVCells.isDigit(byte) {
            guard read < 18 else { return nil }
            value = value * 10 + Int64(byte - 0x30)
            cursor.index += 1
            read += 1
        }
        return read > 0 ? value : nil
    }

    private static func expiry(_ cell: ArraySlice<UInt8>) throws(Problem) -> Int64? {
        let value = CSVCells.trimmed(cell)
        if value.isEmpty { return nil }
        guard let ms = CSVDate.parseMs(value) else {
            throw Problem(.badDate, "expires_at must be a date YYYY-MM-DD (or YYYY/M/D) or a timestamp"
                + " YYYY-MM-DDTHH:MM:SSZ")
        }
        return ms
    }

    private static func string(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) }
    }
}
