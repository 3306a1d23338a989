/// Expiry dates and timestamps as the import accepts them and the export writes them, to and
/// from Unix milliseconds, without Foundation (this runs once per row).
///
/// Accepted:
/// - `YYYY-MM-DD`, and `YYYY/M/D` with one- or two-digit month and day, which is how Excel
///   on a Chinese system shows and re-saves dates. A date alone means 00:00:00 UTC of that
///   day: simple and the same on every server; a shop that means "valid through the 31st in
///   Beijing time" should write the timestamp it means.
/// - `YYYY-MM-DDTHH:MM:SS`, optionally with `.f` to `.fff` fractional seconds, followed by
///   `Z` or an offset `+HH:MM` / `-HH:MM`.
///
/// Years run from 1900 to 9999; day-of-month and times are checked (no 31 February, no
/// leap second).
enum CSVDate {
    static let yearMin = 1900
    static let yearMax = 9999
    private static let msPerDay: Int64 = 86_400_000
    /// Days before the first of each month in a common year.
    private static let daysBeforeMonth = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334]

    /// Parses a trimmed, non-empty cell; nil when it is not one of the accepted forms.
    static func parseMs(_ bytes: ArraySlice<UInt8>) -> Int64? {
        var cursor = Cursor(bytes: bytes)
        guard let year = cursor.digits(exactly: 4) else { return nil }
        if cursor.peek == UInt8(ascii: "/") { return slashDate(year: year, &cursor) }
        guard cursor.eat("-"), let month = cursor.digits(exactly: 2), cursor.eat("-"),
              let day = cursor.digits(exactly: 2), let days = days(year: year, month: month, day: day)
        else { return nil }
        let midnightMs = days * msPerDay
        if cursor.atEnd { return midnightMs }
        guard cursor.eat("T"), let timeMs = time(&cursor) else { return nil }
        return midnightMs + timeMs
    }

    private static func slashDate(year: Int, _ cursor: inout Cursor) -> Int64? {
        guard cursor.eat("/"), let month = cursor.digits(from: 1, to: 2), cursor.eat("/"),
              let day = cursor.digits(from: 1, to: 2), cursor.atEnd,
              let days = days(year: year, month: month, day: day)
        else { return nil }
        return days * msPerDay
    }

    /// `HH:MM:SS[.fff](Z|±HH:MM)` as milliseconds after midnight UTC of the date (may be
    /// negative or above a day once the offset is applied).
    private static func time(_ cursor: inout Cursor) -> Int64? {
        guard let hour = cursor.digits(exactly: 2), hour < 24, cursor.eat(":"),
              let minute = cursor.digits(exactly: 2), minute < 60, cursor.eat(":"),
              let second = cursor.digits(exactly: 2), second < 60
        else { return nil }
        var ms = Int64(((hour * 60) + minute) * 60 + second) * 1000
        if cursor.eat(".") {
            guard let (fraction, width) = cursor.fraction(maxDigits: 3) else { return nil }
            ms += Int64(fraction * [100, 10, 1][width - 1])
        }
        if cursor.eat("Z") { return cursor.atEnd ? ms : nil }
        let sign: Int64
        if cursor.eat("+") { sign = 1 } else if cursor.eat("-") { sign = -1 } else { return nil }
        guard let offsetHour = cursor.digits(exactly: 2), offsetHour <= 14, cursor.eat(":"),
              let offsetMinute = cursor.digits(exactly: 2), offsetMinute < 60, cursor.atEnd
        else { return nil }
        // Local time minus the offset is UTC.
        return ms - sign * Int64(offsetHour * 60 + offsetMinute) * 60_000
    }

    /// Days from 1970-01-01 to the given date, or nil if the date does not exist.
    static func days(year: Int, month: Int, day: Int) -> Int64? {
        guard year >= yearMin && year <= yearMax, month >= 1 && month <= 12, day >= 1,
              day <= daysIn(month: month, year: year)
        else { return nil }
        var days = daysBeforeYear(year) - daysBeforeYear(1970) + daysBeforeMonth[month - 1] + day - 1
        if month > 2 && isLeap(year) { days += 1 }
        return Int64(days)
    }

    /// Days from 0001-01-01 (proleptic Gregorian) to January 1st of `year`.
    private static func daysBeforeYear(_ year: Int) -> Int {
        let previous = year - 1
        return previous * 365 + previous / 4 - previous / 100 + previous / 400
    }

    private static func isLeap(_ year: Int) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Formats Unix milliseconds as the export writes them: `YYYY-MM-DD` when the instant is
    /// midnight UTC (how date-only imports are stored), otherwise `YYYY-MM-DDTHH:MM:SSZ`, with
    /// `.fff` only when there are milliseconds. Both read back to the same value.
    static func format(ms: Int64) -> String {
        let dayNumber = Int(floorDiv(ms, msPerDay))
        let msOfDay = Int(ms - Int64(dayNumber) * msPerDay)
        let (year, month, day) = civil(daysSince1970: dayNumber)
        var text = pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2)
        if msOfDay == 0 { return text }
        let seconds = msOfDay / 1000
        text += "T" + pad(seconds / 3600, 2) + ":" + pad(seconds / 60 % 60, 2) + ":" + pad(seconds % 60, 2)
        if msOfDay % 1000 != 0 { text += "." + pad(msOfDay % 1000, 3) }
        return text + "Z"
    }

    private static func civil(daysSince1970: Int) -> (Int, Int, Int) {
        let dayNumber = daysSince1970 + daysBeforeYear(1970)
        // 365.2425 days a year on average: start from the estimate and correct it.
        var year = Int(Double(dayNumber) / 365.2425) + 1
        while daysBeforeYear(year) > dayNumber { year -= 1 }
        while daysBeforeYear(year + 1) <= dayNumber { year += 1 }
        var dayOfYear = dayNumber - daysBeforeYear(year)
        var month = 1
        while month < 12 {
            let length = daysIn(month: month, year: year)
            if dayOfYear < length { break }
            dayOfYear -= length
            month += 1
        }
        return (year, month, dayOfYear + 1)
    }

    private static func floorDiv(_ value: Int64, _ divisor: Int64) -> Int64 {
        let quotient = value / divisor
        return (value % divisor != 0 && value < 0) ? quotient - 1 : quotient
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}

/// A read position in a cell's bytes, for the small fixed grammars of dates and amounts.
struct Cursor {
    let bytes: ArraySlice<UInt8>
    var index: Int

    init(bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        index = bytes.startIndex
    }

    var atEnd: Bool { index == bytes.endIndex }
    var peek: UInt8? { atEnd ? nil : bytes[index] }

    /// Consumes `character` if it is next.
    mutating func eat(_ character: Unicode.Scalar) -> Bool {
        guard peek == UInt8(ascii: character) else { return false }
        index += 1
        return true
    }

    mutating func digits(exactly count: Int) -> Int? { digits(from: count, to: count) }

    /// Reads `minimum` to `maximum` decimal digits (greedy), or nil with nothing consumed.
    mutating func digits(from minimum: Int, to maximum: Int) -> Int? {
        var value = 0
        var read = 0
        while read < maximum, let byte = peek, CSVCells.isDigit(byte) {
            value = value * 10 + Int(byte - 0x30)
            index += 1
            read += 1
        }
        guard read >= minimum else {
            index -= read
            return nil
        }
        return value
    }

    /// Reads 1 to `maxDigits` digits; returns their value and how many there were.
    mutating func fraction(maxDigits: Int) -> (Int, Int)? {
        let start = index
        guard let value = digits(from: 1, to: maxDigits) else { return nil }
        return (value, index - start)
    }
}
