/// The dashboard as one self-contained HTML document: inline CSS and inline SVG, no script,
/// no font, image or stylesheet from anywhere, reloaded by `<meta http-equiv="refresh">`.
/// Every figure sits in an element with a `data-metric` attribute (and `data-sku`,
/// `data-reason` or `data-supplier` where it belongs to one), so tests and scrapers read
/// the numbers the way a person sees them.
public enum DashboardPage {
    /// The page for `snapshot`.
    public static func render(_ snapshot: DashboardSnapshot, refreshSeconds: Int = DashboardLimits.refreshSeconds,
                              logoutForm: Bool = false) -> String {
        var out = head(title: "Kami dashboard", refreshSeconds: refreshSeconds)
        out += header(snapshot, logoutForm: logoutForm)
        out += "<main>"
        out += orders(snapshot)
        out += rejects(snapshot)
        out += latencyAndQueues(snapshot)
        out += sales(snapshot)
        out += stock(snapshot)
        out += suppliers(snapshot)
        out += expiring(snapshot)
        out += "</main>"
        out += "<footer>Refreshed every \(refreshSeconds) s. Sales, review queue and expiring codes are at most "
            + "\(DashboardLimits.slowFiguresMaxAgeMs / 1_000) s old (now <span data-metric=\"slow-age-seconds\">"
            + "\(snapshot.slowFiguresAgeMs / 1_000)</span> s). Times are China Standard Time. "
            + "Raw figures: <a href=\"/metrics\">/metrics</a>.</footer>"
        return out + "</body></html>\n"
    }

    /// The document head: charset, viewport, refresh, and the style sheet.
    static func head(title: String, refreshSeconds: Int?) -> String {
        var out = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            + "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            + "<meta name=\"referrer\" content=\"no-referrer\">"
        if let refreshSeconds { out += "<meta http-equiv=\"refresh\" content=\"\(refreshSeconds)\">" }
        return out + "<title>\(HTMLText.escape(title))</title><style>\(style)</style></head><body>"
    }

    static let style = """
        *{box-sizing:border-box}body{margin:0;font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;\
        color:#1d1d1f;background:#f4f5f7}header{display:flex;flex-wrap:wrap;gap:.4em 1em;align-items:center;\
        padding:.8em 1em;background:#1d2733;color:#fff}header h1{font-size:1.15em;margin:0}header .meta{opacity:.8;\
        font-size:.9em}header form{margin-left:auto}main{display:grid;grid-template-columns:repeat(auto-fit,\
        minmax(min(330px,100%),1fr));gap:.8em;padding:.8em}section{background:#fff;border-radius:8px;padding:.8em 1em;\
        box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:0}section.wide{grid-column:1/-1}\
        h2{font-size:1em;margin:0 0 .5em;color:#445}.figures{display:flex;flex-wrap:wrap;gap:.3em 1.4em}\
        .figure{display:flex;flex-direction:column}\
        .figure b{font-size:1.6em;font-variant-numeric:tabular-nums}.figure small{color:#667}\
        .chart{width:100%;height:110px;display:block;margin-top:.5em}.split{width:100%;height:8px;display:block}\
        table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}.scroll{overflow-x:auto}\
        th,td{text-align:right;padding:.25em .4em;border-bottom:1px solid #eee;white-space:nowrap}\
        th:first-child,td:first-child{text-align:left}td:first-child{white-space:normal;word-break:break-all;\
        min-width:6em}\
        .badge{display:inline-block;padding:0 .5em;border-radius:1em;font-size:.85em;color:#fff}\
        .ok{background:#1a7f37}.bad{background:#c62828}.warn{background:#b26a00}.chip{display:inline-block;\
        width:.8em;height:.8em;border-radius:2px;margin-right:.4em;vertical-align:-.05em}\
        ul.reasons{list-style:none;padding:0;margin:0}ul.reasons li{display:flex;justify-content:space-between;\
        border-bottom:1px solid #eee;padding:.15em 0}.muted{color:#778}.neg{color:#c62828}\
        footer{padding:0 1em 1.5em;color:#667;font-size:.85em}a{color:#0b62c4}\
        button{font:inherit;padding:.2em .8em}input{font:inherit;padding:.4em;width:100%}\
        @media (max-width:480px){main{padding:.5em;gap:.5em}section{padding:.6em .7em}table{font-size:.85em}\
        th,td{padding:.2em .25em}.figure b{font-size:1.4em}}
        """

    static func header(_ s: DashboardSnapshot, logoutForm: Bool) -> String {
        var out = "<header><h1>Kami</h1><span class=\"meta\">kamid \(HTMLText.escape(s.version)) · "
            + "<span data-metric=\"generated-at\">\(HTMLText.chinaTime(s.nowMs))</span> · up "
            + "\(HTMLText.duration(seconds: s.uptimeSeconds))</span>"
        out += s.ready ? "<span class=\"badge ok\" data-metric=\"ready\">ready</span>"
            : "<span class=\"badge bad\" data-metric=\"ready\">not ready: \(HTMLText.escape(s.readyReason))</span>"
        if logoutForm {
            out += "<form method=\"post\" action=\"/dashboard/logout\"><button type=\"submit\">Sign out</button></form>"
        }
        return out + "</header>"
    }

    static func figure(_ metric: String, _ value: String, _ caption: String, extra: String = "") -> String {
        "<div class=\"figure\"><b data-metric=\"\(metric)\"\(extra)>\(value)</b><small>\(caption)</small></div>"
    }

    /// Reasons ranked over the hour, with their colours.
    static func rankedReasons(_ s: DashboardSnapshot) -> [(reason: String, count: Int, color: String)] {
        s.rejectTotals.enumerated().map {
            (reason: $0.element.reason, count: $0.element.count, color: SVGChart.color($0.offset))
        }
    }

    static func orders(_ s: DashboardSnapshot) -> String {
        let recent = s.minutes.suffix(DashboardLimits.recentMinutes)
        let recentIssued = recent.reduce(0) { $0 + $1.issued }
        let spanMinutes = max(1, recent.count)
        let rejected = s.rejectTotals.reduce(0) { $0 + $1.count }
        var out = "<section class=\"wide\"><h2>Orders, last hour</h2><div class=\"figures\">"
        out += figure("issued-hour", String(s.issuedTotal), "issued (issue and commit OK)")
        out += figure("issue-rate", HTMLText.decimal(recentIssued, per: spanMinutes),
                      "issued per minute, last \(spanMinutes) min")
        out += figure("rejects-hour-total", String(rejected), "refused (reserve, issue, commit)")
        out += "</div>"
        let titles = s.minutes.map { "\(HTMLText.chinaTime($0.startMs, timeOnly: true)): \($0.issued) issued" }
        out += SVGChart.stackedBars(s.minutes.map { [(value: $0.issued, color: "#1a7f37")] }, titles: titles,
                                    label: "Issued per minute over the last hour")
        out += axis(s)
        return out + "</section>"
    }

    /// The time axis under a minute chart: an hour ago at the left, the minute in progress
    /// at the right.
    static func axis(_ s: DashboardSnapshot) -> String {
        guard let last = s.minutes.last else { return "" }
        return "<div class=\"muted\" style=\"display:flex;justify-content:space-between;font-size:.8em\">"
            + "<span>\(DashboardLimits.minutesShown) min ago</span><span>per minute</span>"
            + "<span>\(HTMLText.chinaTime(last.startMs, timeOnly: true)) (now)</span></div>"
    }

    static func rejects(_ s: DashboardSnapshot) -> String {
        let ranked = rankedReasons(s)
        var out = "<section><h2>Refusals by reason, last hour</h2>"
        if ranked.isEmpty {
            out += "<p class=\"muted\" data-metric=\"rejects-none\">No refusals in the last hour.</p>"
        } else {
            out += "<ul class=\"reasons\">"
            for item in ranked {
                out += "<li><span><span class=\"chip\" style=\"background:\(item.color)\"></span>"
                    + "\(HTMLText.escape(item.reason))</span><b data-metric=\"rejects-hour\" data-reason=\""
                    + "\(HTMLText.escape(item.reason))\">\(item.count)</b></li>"
            }
            out += "</ul>"
        }
        let columns = s.minutes.map { minute in
            ranked.map { (value: minute.rejects[$0.reason] ?? 0, color: $0.color) }
        }
        let titles = s.minutes.map { minute in
            "\(HTMLText.chinaTime(minute.startMs, timeOnly: true)): "
                + (minute.rejects.isEmpty ? "none"
                    : minute.rejects.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        out += SVGChart.stackedBars(columns, titles: titles, label: "Refusals per minute by reason over the last hour")
        return out + axis(s) + "</section>"
    }

    static func latencyAndQueues(_ s: DashboardSnapshot) -> String {
        var out = "<section><h2>Latency and queues</h2><div class=\"figures\">"
        out += figure("p99-recent", HTMLText.latency(s.p99RecentUs), "p99, last \(DashboardLimits.recentMinutes) min")
        out += figure("p99-hour", HTMLText.latency(s.p99HourUs), "p99, last hour")
        out += figure("review-queue", String(s.reviewQueue), "orders waiting for review")
        out += figure("holds", String(s.holdsOutstanding), "unpaid holds")
        out += figure("connections", String(s.connections), "client connections")
        out += "</div><p class=\"muted\">p99 of reserve, issue and commit, from request decoded to durable reply "
            + "(upper bound of its histogram bucket).</p>"
        return out + "</section>"
    }

    static func sales(_ s: DashboardSnapshot) -> String {
        var out = "<section><h2>Today's sales</h2>"
        guard let sales = s.salesToday else {
            return out + "<p class=\"muted\" data-metric=\"sales-unavailable\">The ledger could not be read.</p>"
                + "</section>"
        }
        func money(_ metric: String, _ cents: Int64, _ caption: String) -> String {
            figure(metric, HTMLText.money(cents), caption,
                   extra: " data-cents=\"\(cents)\"" + (cents < 0 ? " class=\"neg\"" : ""))
        }
        out += "<div class=\"figures\">"
        out += figure("sales-orders", String(sales.orders), "orders delivered")
        out += money("sales-paid", sales.paidCents, "paid")
        out += money("sales-profit", sales.profitCents, "profit")
        out += money("sales-cost", sales.costCents, "cost")
        out += money("sales-refunded", sales.refundedCents, "refunded")
        out += money("sales-commission", sales.commissionCents, "commission")
        out += "</div><p class=\"muted\">Profit = paid − refunded − cost − commission, as "
            + "<code>kamictl report sales</code> counts it.</p>"
        return out + "</section>"
    }

    static func stock(_ s: DashboardSnapshot) -> String {
        var out = "<section class=\"wide\"><h2>Stock per SKU</h2>"
        guard !s.stock.isEmpty else { return out + "<p class=\"muted\">No SKUs yet.</p></section>" }
        out += "<div class=\"scroll\"><table><thead><tr><th>SKU</th><th>available</th><th>reserved</th><th>issued</th>"
            + "<th>used</th><th>voided</th></tr></thead><tbody>"
        for line in s.stock.prefix(DashboardLimits.stockRowsMax) {
            let sku = HTMLText.escape(line.sku)
            func cell(_ metric: String, _ value: Int64) -> String {
                "<td data-metric=\"stock-\(metric)\" data-sku=\"\(sku)\">\(value)</td>"
            }
            let bar = SVGChart.split([(line.available, "#1a7f37", "available"), (line.reserved, "#E69F00", "reserved"),
                                      (line.issued, "#0072B2", "issued"), (line.used, "#56B4E9", "used"),
                                      (line.voided, "#999999", "voided")])
            out += "<tr><td>\(HTMLText.label(line.sku))\(bar)</td>" + cell("available", line.available)
                + cell("reserved", line.reserved) + cell("issued", line.issued) + cell("used", line.used)
                + cell("voided", line.voided) + "</tr>"
        }
        out += "</tbody></table></div>"
        if s.stock.count > DashboardLimits.stockRowsMax {
            out += "<p class=\"muted\">\(s.stock.count - DashboardLimits.stockRowsMax) more SKUs in /metrics.</p>"
        }
        return out + "<p class=\"muted\"><span class=\"chip\" style=\"background:#1a7f37\"></span>available "
            + "<span class=\"chip\" style=\"background:#E69F00\"></span>reserved "
            + "<span class=\"chip\" style=\"background:#0072B2\"></span>issued "
            + "<span class=\"chip\" style=\"background:#56B4E9\"></span>used "
            + "<span class=\"chip\" style=\"background:#999\"></span>voided</p></section>"
    }

    static func suppliers(_ s: DashboardSnapshot) -> String {
        var out = "<section><h2>Suppliers</h2>"
        guard let suppliers = s.suppliers else {
            return out + "<p class=\"muted\" data-metric=\"suppliers-none\">No upstream suppliers configured.</p>"
                + "</section>"
        }
        out += "<div class=\"scroll\"><table><thead><tr><th>supplier</th><th>breaker</th><th>success</th>"
            + "<th>in flight</th><th>p95</th></tr></thead><tbody>"
        for line in suppliers.prefix(DashboardLimits.supplierRowsMax) {
            let id = HTMLText.escape(line.id)
            let state = line.paused ? "paused" : line.breaker
            let tone = line.paused || line.breaker == "half_open" ? "warn" : (line.breaker == "closed" ? "ok" : "bad")
            let success = Int((line.successRate * 100).rounded())
            out += "<tr><td>\(HTMLText.label(line.id))</td>"
                + "<td><span class=\"badge \(tone)\" data-metric=\"supplier-breaker\" data-supplier=\"\(id)\">"
                + "\(HTMLText.escape(state))</span></td>"
                + "<td data-metric=\"supplier-success\" data-supplier=\"\(id)\">"
                + (line.attempts == 0 ? "–" : "\(success)%") + "</td>"
                + "<td data-metric=\"supplier-in-flight\" data-supplier=\"\(id)\">\(line.inFlight)</td>"
                + "<td>\(line.p95Ms.map { "\($0) ms" } ?? "–")</td></tr>"
        }
        return out + "</tbody></table></div></section>"
    }

    static func expiring(_ s: DashboardSnapshot) -> String {
        var out = "<section><h2>Codes expiring within \(s.expiringWithinDays) days</h2>"
        let lines = s.expiring.filter { $0.codes > 0 }
            .sorted { $0.codes != $1.codes ? $0.codes > $1.codes : $0.sku < $1.sku }
        guard !lines.isEmpty else {
            return out + "<p class=\"muted\" data-metric=\"expiring-none\">No code on hand expires within "
                + "\(s.expiringWithinDays) days.</p></section>"
        }
        out += "<div class=\"scroll\"><table><thead><tr><th>SKU</th><th>codes</th></tr></thead><tbody>"
        for line in lines.prefix(DashboardLimits.expiringRowsMax) {
            out += "<tr><td>\(HTMLText.label(line.sku))</td>"
                + "<td data-metric=\"expiring\" data-sku=\"\(HTMLText.escape(line.sku))\">\(line.codes)</td></tr>"
        }
        out += "</tbody></table></div>"
        if lines.count > DashboardLimits.expiringRowsMax {
            out += "<p class=\"muted\">\(lines.count - DashboardLimits.expiringRowsMax) more SKUs: "
                + "<code>kamictl report inventory</code>.</p>"
        }
        return out + "<p class=\"muted\">Available and reserved codes (already expired ones included).</p></section>"
    }
}
