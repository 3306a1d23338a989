/// Inline SVG charts: a bar per minute, stacked by series. No script, no external reference;
/// the chart scales to its container's width (`viewBox`, `preserveAspectRatio="none"`).
enum SVGChart {
    /// Drawing units of a chart's coordinate system (the page scales it).
    static let width = 600
    static let height = 120

    /// Fixed colours for refusal reasons, by rank, then grey for the rest: readable on white
    /// and apart for the common colour-vision deficiencies (Okabe-Ito).
    static let palette = ["#D55E00", "#0072B2", "#E69F00", "#CC79A7", "#009E73", "#56B4E9", "#F0E442"]

    /// The colour of the reason ranked `index`.
    static func color(_ index: Int) -> String { index < palette.count ? palette[index] : "#999999" }

    /// One bar per column, each a stack of `(value, colour)` from the bottom, in `slots`
    /// places with the last column at the right edge (an hour-old chart and a new one have
    /// bars of one width); `titles` label the bars (shown as tooltips). `label` names the
    /// chart for screen readers.
    static func stackedBars(_ columns: [[(value: Int, color: String)]], titles: [String], label: String,
                            slots: Int = DashboardLimits.minutesShown) -> String {
        let columns = Array(columns.suffix(slots))
        let titles = Array(titles.suffix(slots))
        let total = columns.map { $0.reduce(0) { $0 + max(0, $1.value) } }
        let top = max(1, total.max() ?? 1)
        let slot = Double(width) / Double(max(slots, 1))
        let first = max(slots, 1) - columns.count
        let gap = slot > 4 ? 1.0 : 0.0
        var out = "<svg class=\"chart\" viewBox=\"0 0 \(width) \(height)\" preserveAspectRatio=\"none\" role=\"img\" "
            + "aria-label=\"\(HTMLText.escape(label))\">"
        out += "<line x1=\"0\" y1=\"\(height)\" x2=\"\(width)\" y2=\"\(height)\" stroke=\"#ccc\" stroke-width=\"1\"/>"
        for (index, column) in columns.enumerated() {
            var base = Double(height)
            let x = Double(first + index) * slot
            out += "<g><title>\(HTMLText.escape(index < titles.count ? titles[index] : ""))</title>"
            // An empty minute still gets a transparent bar, so its tooltip is reachable.
            out += "<rect x=\"\(fixed(x))\" y=\"0\" width=\"\(fixed(slot - gap))\" height=\"\(height)\" "
                + "fill=\"transparent\"/>"
            for part in column where part.value > 0 {
                let h = Double(part.value) / Double(top) * Double(height - 4)
                base -= h
                out += "<rect x=\"\(fixed(x))\" y=\"\(fixed(base))\" width=\"\(fixed(slot - gap))\" "
                    + "height=\"\(fixed(h))\" fill=\"\(part.color)\"/>"
            }
            out += "</g>"
        }
        return out + "</svg>"
    }

    /// One horizontal bar split into `parts` (a SKU's codes by state).
    static func split(_ parts: [(value: Int64, color: String, name: String)]) -> String {
        let total = parts.reduce(Int64(0)) { $0 + max(0, $1.value) }
        var out = "<svg class=\"split\" viewBox=\"0 0 \(width) 10\" preserveAspectRatio=\"none\" aria-hidden=\"true\">"
        guard total > 0 else {
            return out + "<rect x=\"0\" y=\"0\" width=\"\(width)\" height=\"10\" fill=\"#eee\"/></svg>"
        }
        var x = 0.0
        for part in parts where part.value > 0 {
            let w = Double(part.value) / Double(total) * Double(width)
            out += "<rect x=\"\(fixed(x))\" y=\"0\" width=\"\(fixed(w))\" height=\"10\" fill=\"\(part.color)\"/>"
            x += w
        }
        return out + "</svg>"
    }

    /// `value` with at most two decimals (SVG coordinates).
    static func fixed(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let whole = hundredths / 100
        let rest = abs(hundredths % 100)
        if rest == 0 { return String(whole) }
        return "\(whole)." + (rest < 10 ? "0\(rest)" : (rest % 10 == 0 ? String(rest / 10) : String(rest)))
    }
}
