/// Text made safe for HTML, and the number and time formats the page uses. Pure: no
/// Foundation, so the page renders the same on any locale.
public enum HTMLText {
    /// `text` with `& < > " '` replaced by character references: safe in element content
    /// and in double- or single-quoted attribute values. Every operator-supplied string
    /// (SKU keys, supplier ids) goes through it.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            // Control characters other than tab and newline have no business on the page.
            case "\u{0}"..."\u{8}", "\u{B}"..."\u{1F}", "\u{7F}": out += "\u{FFFD}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// `text` cut to `max` characters (an ellipsis marks the cut), then escaped.
    public static func label(_ text: String, max: Int = DashboardLimits.labelCharactersMax) -> String {
        escape(text.count > max ? String(text.prefix(max - 1)) + "…" : text)
    }

    /// Minor units as `1,234.56` (two decimals; negative with a leading minus).
    public static func money(_ cents: Int64) -> String {
        let negative = cents < 0
        let magnitude = cents.magnitude
        let whole = grouped(magnitude / 100)
        let fraction = magnitude % 100
        return (negative ? "-" : "") + whole + "." + (fraction < 10 ? "0" : "") + String(fraction)
    }

    /// An unsigned integer with comma thousands separators.
    static func grouped(_ value: UInt64) -> String {
        let digits = Array(String(value))
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return out
    }

    /// A latency bound in µs as `≤ 250 µs`, `≤ 2.5 ms`, `≤ 1 s`, or `> 10 s` for `Int.max`.
    public static func latency(_ us: Int?) -> String {
        guard let us else { return "–" }
        if us == Int.max { return "> 10 s" }
        if us < 1_000 { return "≤ \(us) µs" }
        if us < 1_000_000 { return "≤ " + decimal(us, per: 1_000) + " ms" }
        return "≤ " + decimal(us, per: 1_000_000) + " s"
    }

    /// `value / per` with at most one decimal, without a trailing `.0`.
    static func decimal(_ value: Int, per: Int) -> String {
        let tenths = (value * 10 + per / 2) / per
        return tenths % 10 == 0 ? String(tenths / 10) : "\(tenths / 10).\(tenths % 10)"
    }

    /// Seconds as `3d 4h`, `2h 5m`, `7m 3s` or `42s`.
    public static func duration(seconds: Int64) -> String {
        let s = max(0, seconds)
        if s >= 86_400 { return "\(s / 86_400)d \(s % 86_400 / 3_600)h" }
        if s >= 3_600 { return "\(s / 3_600)h \(s % 3_600 / 60)m" }
        if s >= 60 { return "\(s / 60)m \(s % 60)s" }
        return "\(s)s"
    }

    /// China Standard Time (UTC+8, the day `kamictl report` counts in) of `ms`, as
    /// `2026-12-05 14:03:09`; `timeOnly` gives `14:03`.
    public static func chinaTime(_ ms: Int64, timeOnly: Bool = false) -> String {
        let seconds = ms / 1_000 + 8 * 3_600
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : String(n) }
        let clock = two(secondOfDay / 3_600) + ":" + two(secondOfDay % 3_600 / 60)
        if timeOnly { return clock }
        let (year, month, day) = civil(days: days)
        return "\(year)-\(two(month))-\(two(day)) \(clock):\(two(secondOfDay % 60))"
    }

    /// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
    /// `civil_from_days`).
    static func civil(days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
