import Foundation
import Glibc
import KamiCore
import KamiProtocol
import XCTest

/// The dashboard end to end: a real kamid with a supplier, a small sale with refusals, then
/// headless Chromium renders the page; the numbers in the DOM it built must be the numbers
/// kamid reports through /metrics, the protocol and `kamictl report`, and its screenshot
/// must be a real picture. Skipped where Chromium is not installed (CI installs it).
///
/// `KAMI_DASHBOARD_SCREENSHOT=PATH` copies the screenshot there (how docs/dashboard.png is made).
final class DashboardBrowserTests: XCTestCase {
    /// `chromium` or `chromium-browser` on PATH.
    static var chromium: String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            for name in ["chromium", "chromium-browser"] where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
                return "\(directory)/\(name)"
            }
        }
        return nil
    }

    /// Chromium's longest run; a hung browser fails the test instead of holding it.
    static let browserTimeoutSeconds = 90.0

    /// Runs Chromium headless with `arguments` then `url`; its standard output.
    static func browse(_ binary: String, _ arguments: [String], url: String, profile: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                             "--user-data-dir=\(profile)"] + arguments + [url]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let collected = Box<Data>()
        DispatchQueue.global().async { collected.set(output.fileHandleForReading.readDataToEndOfFile()) }
        let deadline = Date().addingTimeInterval(browserTimeoutSeconds)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw NSError(domain: "chromium", code: 1, userInfo: [NSLocalizedDescriptionKey: "chromium ran past \(browserTimeoutSeconds) s"])
        }
        return String(decoding: collected.wait() ?? Data(), as: UTF8.self)
    }

    /// The text of the first element whose opening tag has every one of `attributes`.
    static func shown(_ dom: String, _ attributes: String...) -> String? {
        var rest = Substring(dom)
        while let open = rest.range(of: "<") {
            rest = rest[open.upperBound...]
            guard let close = rest.firstIndex(of: ">") else { return nil }
            if attributes.allSatisfy({ rest[..<close].contains($0) }) {
                return String(rest[rest.index(after: close)...].prefix { $0 != "<" })
            }
        }
        return nil
    }

    /// Cents as the page writes them: `1,234.56` (positive amounts only here).
    static func money(_ cents: Int64) -> String {
        var whole = String(cents / 100)
        var grouped = ""
        while whole.count > 3 {
            grouped = "," + whole.suffix(3) + grouped
            whole.removeLast(3)
        }
        return whole + grouped + "." + (cents % 100 < 10 ? "0" : "") + String(cents % 100)
    }

    /// Rows of a `kamictl ... --csv` output as dictionaries by column.
    static func csvRows(_ text: String) -> [[String: String]] {
        let lines = text.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        guard let header = lines.first else { return [] }
        return lines.dropFirst().map { Dictionary(uniqueKeysWithValues: zip(header, $0)) }
    }

    func testTheDashboardInChromiumShowsWhatKamidCounts() throws {
        guard let chromium = Self.chromium else { throw XCTSkip("chromium is not installed (CI installs it: .ci/run)") }
        let directory = NSTemporaryDirectory() + "kamid-dash-\(UUID().uuidString)"
        let sim = try SupplierSimProcess(id: "fulu", directory: directory + "-sim")
        defer { sim.stop() }
        let config = directory + ".conf"
        try (Kamid.twoLoops + sim.config()).write(toFile: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let kamid = try Kamid(directory: directory, arguments: ["--config", config, "--metrics-listen", "127.0.0.1:0"])
        defer { XCTAssertEqual(kamid.stop(), 0) }
        let metricsPort = try XCTUnwrap(kamid.log.first { $0.contains(">ready") }?.split(separator: " ")
            .first { $0.hasPrefix("metrics=") }.flatMap { UInt16($0.dropFirst("metrics=".count)) })

        // Two SKUs: one with a per-user limit and codes expiring in three days, one that sells out.
        XCTAssertEqual(try kamid.kamictl(["sku", "set", "netflix-1m", "--price", "1500", "--per-user-limit", "1"]).status, 0)
        XCTAssertEqual(try kamid.kamictl(["sku", "set", "steam-50", "--price", "5000"]).status, 0)
        let soon = Date().addingTimeInterval(3 * 86_400)
        let later = Date().addingTimeInterval(90 * 86_400)
        let day = DateFormatter()
        day.dateFormat = "yyyy-MM-dd"
        day.timeZone = TimeZone(identifier: "Asia/Shanghai")
        // The pool hands codes out in import order: the twelve expiring soon come last, so they stay.
        let netflix = (0..<40).map { "NF-\($0)-\(UUID().uuidString.prefix(8)),1100,\(day.string(from: $0 >= 28 ? soon : later))" }
        let steam = (0..<10).map { "ST-\($0)-\(UUID().uuidString.prefix(8)),4300," }
        let admin = try RawClient(unixPath: kamid.socketPath)
        for (sku, rows) in [("netflix-1m", netflix), ("steam-50", steam)] {
            let csv = directory + "/\(sku).csv"
            try ("secret,cost_cents,expires_at\n" + rows.joined(separator: "\n") + "\n").write(toFile: csv, atomically: true, encoding: .utf8)
            XCTAssertEqual(admin.call(#""id":1,"op":"import","sku":"\#(sku)","path":"\#(csv)""#)?.isOK, true)
        }

        // The sale: 15 buyers of netflix-1m (3 of them try twice: LIMIT_REACHED), 12 buyers of
        // steam-50's 10 codes (SOLD_OUT), and one unpaid hold.
        let shop = try kamid.storefront()
        var id = 10
        func call(_ fields: String) -> Reply? {
            id += 1
            return shop.call(#""id":\#(id),"# + fields)
        }
        for buyer in 0..<15 {
            XCTAssertEqual(call(#""op":"issue","order":"nf-\#(buyer)","user":"u\#(buyer)","sku":"netflix-1m","qty":1,"payment_ref":"p-nf-\#(buyer)""#)?.isOK, true)
        }
        for buyer in 0..<3 {
            XCTAssertEqual(call(#""op":"issue","order":"nf-again-\#(buyer)","user":"u\#(buyer)","sku":"netflix-1m","qty":1,"payment_ref":"p-a-\#(buyer)""#)?
                .error?.code, .limitReached)
        }
        for buyer in 0..<12 {
            let reply = call(#""op":"issue","order":"st-\#(buyer)","user":"s\#(buyer)","sku":"steam-50","qty":1,"payment_ref":"p-st-\#(buyer)""#)
            XCTAssertEqual(reply?.error?.code, buyer < 10 ? nil : .soldOut)
        }
        XCTAssertEqual(call(#""op":"reserve","order":"hold-1","user":"h1","sku":"netflix-1m","qty":1"#)?.isOK, true)

        // What kamid says: /metrics, stock over the protocol, kamictl's reports.
        let (_, metricsBody) = try httpExchange(port: metricsPort, "GET /metrics HTTP/1.1\r\n\r\n")
        let metrics = try PrometheusText(parsing: metricsBody)
        func requests(_ op: String, _ result: String) -> Int {
            Int(metrics.value("kami_requests_total", ["op": op, "result": result]) ?? 0)
        }
        let cstOffsetMs: Int64 = 8 * 3_600_000
        let nowMs = Int64(Date().timeIntervalSince1970 * 1_000)
        let dayStartMs = (nowMs + cstOffsetMs) / 86_400_000 * 86_400_000 - cstOffsetMs
        let sales = try kamid.kamictl(["report", "sales", "--by", "day", "--from", String(dayStartMs), "--csv"])
        XCTAssertEqual(sales.status, 0, sales.output)
        let salesRow = try XCTUnwrap(Self.csvRows(sales.output).first, sales.output)
        let inventory = try kamid.kamictl(["report", "inventory", "--limit", "7", "--csv"])
        XCTAssertEqual(inventory.status, 0, inventory.output)

        // What the browser shows.
        let url = "http://127.0.0.1:\(metricsPort)/dashboard"
        let dom = try Self.browse(chromium, ["--dump-dom"], url: url, profile: directory + "-chromium")
        XCTAssertTrue(dom.contains(#"data-metric="issued-hour""#), "no dashboard in: \(dom.prefix(500))")

        for sku in ["netflix-1m", "steam-50"] {
            let stock = try XCTUnwrap(admin.call(#""id":5,"op":"stock","sku":"\#(sku)""#))
            guard case .success(.stock(let counts)) = stock.result else { return XCTFail("stock \(sku): \(stock)") }
            for (state, value) in [("available", counts.available), ("reserved", counts.reserved), ("issued", counts.issued),
                                   ("voided", counts.voided)] {
                XCTAssertEqual(Self.shown(dom, #"data-metric="stock-\#(state)""#, #"data-sku="\#(sku)""#), String(value), "\(sku) \(state)")
                XCTAssertEqual(metrics.value("kami_stock_codes", ["sku": sku, "state": state]), Double(value))
            }
        }
        XCTAssertEqual(Self.shown(dom, #"data-metric="stock-available""#, #"data-sku="netflix-1m""#), "24", "40 − 15 issued − 1 held")
        XCTAssertEqual(Self.shown(dom, #"data-metric="stock-issued""#, #"data-sku="steam-50""#), "10")

        let issued = requests("issue", "ok") + requests("commit", "ok")
        XCTAssertEqual(issued, 25)
        XCTAssertEqual(Self.shown(dom, #"data-metric="issued-hour""#), String(issued))
        for (reason, expected) in [("SOLD_OUT", 2), ("LIMIT_REACHED", 3)] {
            let counted = ["reserve", "issue", "commit"].reduce(0) { $0 + requests($1, reason) }
            XCTAssertEqual(counted, expected)
            XCTAssertEqual(Self.shown(dom, #"data-metric="rejects-hour""#, #"data-reason="\#(reason)""#), String(counted), reason)
        }
        XCTAssertEqual(Self.shown(dom, #"data-metric="rejects-hour-total""#), "5")
        XCTAssertNotNil(Self.shown(dom, #"data-metric="p99-hour""#).flatMap { $0.hasPrefix("≤") ? $0 : nil }, "a p99 is shown")
        XCTAssertEqual(Self.shown(dom, #"data-metric="holds""#), String(Int(metrics.value("kami_holds_outstanding") ?? -1)))
        XCTAssertEqual(Self.shown(dom, #"data-metric="review-queue""#), "0")

        XCTAssertEqual(Self.shown(dom, #"data-metric="sales-orders""#), salesRow["orders"])
        XCTAssertEqual(salesRow["orders"], "25")
        XCTAssertEqual(salesRow["paid_cents"], String(15 * 1_500 + 10 * 5_000))
        for (metric, column) in [("sales-paid", "paid_cents"), ("sales-cost", "cost_cents"), ("sales-profit", "profit_cents")] {
            let cents = try XCTUnwrap(Int64(salesRow[column] ?? ""), column)
            XCTAssertEqual(Self.shown(dom, #"data-metric="\#(metric)" data-cents="\#(cents)""#), Self.money(cents), metric)
        }
        for row in Self.csvRows(inventory.output) {
            let expiring = try XCTUnwrap(row["expiring"])
            XCTAssertEqual(Self.shown(dom, #"data-metric="expiring""#, #"data-sku="\#(row["key"] ?? "")""#),
                           expiring == "0" ? nil : expiring, row["key"] ?? "")
        }
        XCTAssertNotNil(Self.shown(dom, #"data-metric="expiring""#, #"data-sku="netflix-1m""#), "netflix-1m has codes expiring in 3 days: \(inventory.output)")
        XCTAssertEqual(Self.shown(dom, #"data-metric="expiring""#, #"data-sku="netflix-1m""#), "12")

        XCTAssertEqual(Self.shown(dom, #"data-metric="supplier-breaker""#, #"data-supplier="fulu""#), "closed")
        XCTAssertEqual(metrics.value("kami_supplier_breaker_open", ["supplier": "fulu"]), 0)

        // Nothing secret made it to the page.
        for secret in (netflix + steam).map({ String($0.split(separator: ",")[0]) }) + [kamid.token, "nf-1", "p-nf-", "u1\""] {
            XCTAssertFalse(dom.contains(secret), "the page must not show \(secret.prefix(6))…")
        }

        // The screenshot: a PNG of the size asked for, with more than a blank page in it.
        let png = directory + "/dashboard.png"
        _ = try Self.browse(chromium, ["--hide-scrollbars", "--screenshot=\(png)", "--window-size=1200,1600"], url: url,
                            profile: directory + "-chromium")
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: png)))
        XCTAssertEqual(Array(bytes.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "a PNG")
        XCTAssertGreaterThan(bytes.count, 20_000, "a blank 1200x1600 PNG is a few KB; a drawn page is more")
        func be32(_ at: Int) -> Int { bytes[at..<at + 4].reduce(0) { $0 << 8 | Int($1) } }
        XCTAssertEqual(be32(16), 1_200, "width")
        XCTAssertEqual(be32(20), 1_600, "height")
        if let keep = ProcessInfo.processInfo.environment["KAMI_DASHBOARD_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(atPath: png, toPath: keep)
        }
        try? FileManager.default.removeItem(atPath: directory + "-chromium")
        try? FileManager.default.removeItem(atPath: directory + "-sim")
    }
}
