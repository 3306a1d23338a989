import KamiDashboard
import XCTest

/// The page renderer: escaping of operator data, every figure where a reader finds it, a
/// well-formed self-contained document.
final class DashboardPageTests: XCTestCase {
    static let hostile = #"<script>alert("x")</script>&'"#

    static func snapshot(sku: String = "netflix-1m") -> DashboardSnapshot {
        let start: Int64 = 1_796_000_000_000
        let minutes = (0..<60).map { index in
            DashboardSnapshot.Minute(startMs: start + Int64(index) * 60_000, issued: index % 7,
                                     rejects: index == 59 ? ["SOLD_OUT": 4, "LIMIT_REACHED": 1] : (index == 10 ? ["SOLD_OUT": 2] : [:]))
        }
        return DashboardSnapshot(
            version: "0.9.0", nowMs: start + 59 * 60_000 + 5_000, uptimeSeconds: 3_725, ready: true, readyReason: "ready",
            stock: [.init(sku: sku, available: 30, reserved: 2, issued: 17, voided: 1),
                    .init(sku: "steam-50", available: 0, reserved: 0, issued: 9, voided: 0)],
            minutes: minutes, p99HourUs: 2_500, p99RecentUs: 1_000,
            suppliers: [.init(id: "fulu<b>", breaker: "open", paused: false, inFlight: 3, successRate: 0.875, attempts: 8, p95Ms: 120)],
            reviewQueue: 4, salesToday: .init(orders: 26, paidCents: 123_456, refundedCents: 1_000, costCents: 100_000,
                                              commissionCents: 456),
            expiring: [.init(sku: sku, codes: 12), .init(sku: "steam-50", codes: 0)], expiringWithinDays: 7,
            slowFiguresAgeMs: 12_000, holdsOutstanding: 2, connections: 5)
    }

    /// The text of the first element carrying every attribute in `attributes` (as written:
    /// `data-metric="x"`), or nil.
    static func value(_ html: String, _ attributes: String...) -> String? {
        var rest = Substring(html)
        while let open = rest.range(of: "<") {
            rest = rest[open.upperBound...]
            guard let close = rest.firstIndex(of: ">") else { return nil }
            let tag = rest[..<close]
            if attributes.allSatisfy({ tag.contains($0) }) {
                let after = rest[rest.index(after: close)...]
                return String(after.prefix { $0 != "<" })
            }
        }
        return nil
    }

    func testEveryFigureIsShownInItsElement() {
        let html = DashboardPage.render(Self.snapshot())
        XCTAssertEqual(Self.value(html, #"data-metric="stock-available""#, #"data-sku="netflix-1m""#), "30")
        XCTAssertEqual(Self.value(html, #"data-metric="stock-reserved""#, #"data-sku="netflix-1m""#), "2")
        XCTAssertEqual(Self.value(html, #"data-metric="stock-issued""#, #"data-sku="netflix-1m""#), "17")
        XCTAssertEqual(Self.value(html, #"data-metric="stock-voided""#, #"data-sku="netflix-1m""#), "1")
        XCTAssertEqual(Self.value(html, #"data-metric="stock-issued""#, #"data-sku="steam-50""#), "9")
        let issued = (0..<60).reduce(0) { $0 + $1 % 7 }
        XCTAssertEqual(Self.value(html, #"data-metric="issued-hour""#), String(issued))
        // The last five minutes are 55...59: 6+0+1+2+3 = 12 over 5 minutes.
        XCTAssertEqual(Self.value(html, #"data-metric="issue-rate""#), "2.4")
        XCTAssertEqual(Self.value(html, #"data-metric="rejects-hour""#, #"data-reason="SOLD_OUT""#), "6")
        XCTAssertEqual(Self.value(html, #"data-metric="rejects-hour""#, #"data-reason="LIMIT_REACHED""#), "1")
        XCTAssertEqual(Self.value(html, #"data-metric="rejects-hour-total""#), "7")
        XCTAssertEqual(Self.value(html, #"data-metric="p99-hour""#), "≤ 2.5 ms")
        XCTAssertEqual(Self.value(html, #"data-metric="p99-recent""#), "≤ 1 ms")
        XCTAssertEqual(Self.value(html, #"data-metric="review-queue""#), "4")
        XCTAssertEqual(Self.value(html, #"data-metric="sales-orders""#), "26")
        XCTAssertEqual(Self.value(html, #"data-metric="sales-paid""#), "1,234.56")
        XCTAssertEqual(Self.value(html, #"data-metric="sales-profit""#), "220.00")
        XCTAssertTrue(html.contains(#"data-metric="sales-profit" data-cents="22000""#))
        XCTAssertEqual(Self.value(html, #"data-metric="expiring""#, #"data-sku="netflix-1m""#), "12")
        XCTAssertNil(Self.value(html, #"data-metric="expiring""#, #"data-sku="steam-50""#), "SKUs with none are left out")
        XCTAssertEqual(Self.value(html, #"data-metric="supplier-breaker""#), "open")
        XCTAssertEqual(Self.value(html, #"data-metric="supplier-success""#), "88%")
        XCTAssertEqual(Self.value(html, #"data-metric="supplier-in-flight""#), "3")
        XCTAssertEqual(Self.value(html, #"data-metric="generated-at""#), "2026-11-30 09:52:25", "date -d @1796003545 in Asia/Shanghai")
        XCTAssertEqual(Self.value(html, #"data-metric="ready""#), "ready")
    }

    func testOperatorDataIsEscapedEverywhere() {
        let html = DashboardPage.render(Self.snapshot(sku: Self.hostile))
        XCTAssertFalse(html.contains("<script"), "a SKU key must not open an element")
        XCTAssertFalse(html.contains("<b>"), "a supplier id must not open an element")
        XCTAssertTrue(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"))
        XCTAssertEqual(Self.value(html, #"data-metric="stock-available""#,
                                  #"data-sku="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;""#), "30")
        XCTAssertTrue(html.contains(#"data-supplier="fulu&lt;b&gt;""#))
        let long = String(repeating: "k", count: 500)
        let cut = DashboardPage.render(Self.snapshot(sku: long))
        XCTAssertTrue(cut.contains(String(repeating: "k", count: DashboardLimits.labelCharactersMax - 1) + "…<svg"),
                      "long keys are cut on the page")
        XCTAssertEqual(HTMLText.escape("a\u{1}b\tc"), "a\u{FFFD}b\tc")
    }

    func testTheDocumentIsSelfContainedAndWellFormed() throws {
        for html in [DashboardPage.render(Self.snapshot(sku: Self.hostile)), LoginPage.render(message: "wrong <token>")] {
            XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>"))
            XCTAssertTrue(html.contains(#"<meta name="viewport" content="width=device-width, initial-scale=1">"#))
            for forbidden in ["<script", "<link", "<img", "<iframe", "src=", "@import", "url(", "http://", "https://"] {
                XCTAssertFalse(html.lowercased().contains(forbidden), "\(forbidden) in the page")
            }
            try Self.checkBalanced(html)
        }
        XCTAssertTrue(DashboardPage.render(Self.snapshot()).contains(#"<meta http-equiv="refresh" content="5">"#))
        XCTAssertFalse(LoginPage.render(message: nil).contains("http-equiv"), "the sign-in page does not reload itself")
    }

    func testAnEmptyDaemonRendersPlaceholders() throws {
        var empty = Self.snapshot()
        empty.stock = []
        empty.minutes = [DashboardSnapshot.Minute(startMs: empty.nowMs, issued: 0, rejects: [:])]
        empty.suppliers = nil
        empty.salesToday = nil
        empty.expiring = []
        empty.p99HourUs = nil
        empty.p99RecentUs = nil
        empty.ready = false
        empty.readyReason = "the last commit failed on the disk"
        let html = DashboardPage.render(empty)
        try Self.checkBalanced(html)
        XCTAssertEqual(Self.value(html, #"data-metric="issued-hour""#), "0")
        XCTAssertEqual(Self.value(html, #"data-metric="p99-hour""#), "–")
        XCTAssertNotNil(Self.value(html, #"data-metric="rejects-none""#))
        XCTAssertNotNil(Self.value(html, #"data-metric="suppliers-none""#))
        XCTAssertNotNil(Self.value(html, #"data-metric="sales-unavailable""#))
        XCTAssertNotNil(Self.value(html, #"data-metric="expiring-none""#))
        XCTAssertEqual(Self.value(html, #"data-metric="ready""#), "not ready: the last commit failed on the disk")
    }

    func testFormats() {
        XCTAssertEqual(HTMLText.money(0), "0.00")
        XCTAssertEqual(HTMLText.money(5), "0.05")
        XCTAssertEqual(HTMLText.money(-123_456_789), "-1,234,567.89")
        XCTAssertEqual(HTMLText.money(Int64.min), "-92,233,720,368,547,758.08")
        XCTAssertEqual(HTMLText.latency(250), "≤ 250 µs")
        XCTAssertEqual(HTMLText.latency(25_000), "≤ 25 ms")
        XCTAssertEqual(HTMLText.latency(10_000_000), "≤ 10 s")
        XCTAssertEqual(HTMLText.latency(Int.max), "> 10 s")
        XCTAssertEqual(HTMLText.duration(seconds: 93_784), "1d 2h")
        XCTAssertEqual(HTMLText.chinaTime(0), "1970-01-01 08:00:00")
        XCTAssertEqual(HTMLText.chinaTime(951_782_400_000 - 8 * 3_600_000), "2000-02-29 00:00:00", "a leap day")
        XCTAssertEqual(HTMLText.chinaTime(-1_000), "1970-01-01 07:59:59")
    }

    /// Every element opened is closed in order (void elements excepted); attribute values
    /// are quoted, so a `>` inside one would have been escaped.
    static func checkBalanced(_ html: String) throws {
        let void: Set<String> = ["meta", "input", "br", "hr", "img", "link", "!doctype"]
        let selfClosing: Set<String> = ["rect", "line", "path", "circle"]
        var stack: [String] = []
        var rest = Substring(html)
        while let open = rest.firstIndex(of: "<") {
            rest = rest[rest.index(after: open)...]
            guard let close = rest.firstIndex(of: ">") else { throw Failure("unclosed tag at \(rest.prefix(40))") }
            let tag = rest[..<close]
            rest = rest[rest.index(after: close)...]
            let name = String(tag.prefix { $0 != " " && $0 != "/" || tag.hasPrefix("/") && $0 == "/" }).lowercased()
            if tag.hasPrefix("/") {
                let closing = String(name.dropFirst())
                guard stack.popLast() == closing else { throw Failure("</\(closing)> does not close the open element") }
            } else if tag.hasSuffix("/") {
                guard selfClosing.contains(name) else { throw Failure("<\(name)/> is not an SVG element") }
            } else if !void.contains(name) {
                stack.append(name)
            }
            // Raw text elements: skip to their end tag.
            if name == "style" || name == "title" {
                guard let end = rest.range(of: "</\(name)>") else { throw Failure("<\(name)> never ends") }
                XCTAssertFalse(rest[..<end.lowerBound].contains("<"), "markup inside <\(name)>")
                rest = rest[end.lowerBound...]
            }
        }
        guard stack.isEmpty else { throw Failure("left open: \(stack)") }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
