import Foundation
import Glibc
import KamiCore
import KamiDashboard
import KamiHTTP
@testable import KamiServer
import XCTest

/// One raw HTTP/1.1 exchange on the metrics port: the status line, headers (lower-cased
/// names) and body.
func httpRaw(port: UInt16, _ request: String) throws -> (status: String, headers: [(String, String)], body: String) {
    let client = try RawClient(port: port, timeoutMs: 5_000)
    client.send(request)
    var lines: [String] = []
    while let line = client.readLine() { lines.append(line) }
    let trimmed = lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
    guard let blank = trimmed.firstIndex(of: "") else { return (trimmed.first ?? "", [], "") }
    let headers = trimmed[1..<blank].compactMap { line -> (String, String)? in
        guard let colon = line.firstIndex(of: ":") else { return nil }
        return (line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
    }
    return (trimmed[0], headers, trimmed[(blank + 1)...].joined(separator: "\n"))
}

/// The dashboard's token gate and routes, on a real metrics port with a fixed snapshot.
final class DashboardGateTests: XCTestCase {
    static let token = "correct-horse-battery-staple-42"

    func startEndpoint(token: String?, nowMs: @escaping @Sendable () -> Int64 = { 1_796_000_000_000 })
        throws -> (MetricsServer, DashboardGate)
    {
        let gate = DashboardGate(token: token)
        let dashboard = DashboardEndpoint(gate: gate, logger: Logger(level: .error), clockMs: nowMs) {
            DashboardSnapshot(version: "test", nowMs: nowMs(), uptimeSeconds: 1, ready: true, readyReason: "ready",
                              stock: [.init(sku: "vip", available: 7, reserved: 0, issued: 3, voided: 0)],
                              minutes: [.init(startMs: nowMs(), issued: 3, rejects: [:])], p99HourUs: nil, p99RecentUs: nil,
                              suppliers: nil, reviewQueue: 0, salesToday: nil, expiring: [], expiringWithinDays: 7,
                              slowFiguresAgeMs: 0, holdsOutstanding: 0, connections: 0)
        }
        let endpoint = MetricsServer(address: .tcp(host: "127.0.0.1", port: 0), logger: Logger(level: .error),
                                     readiness: { (true, "ready") }, dashboard: dashboard, render: { "# HELP x y\n# TYPE x gauge\nx 1\n" })
        try endpoint.start()
        return (endpoint, gate)
    }

    static func get(_ path: String, _ headers: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: x\r\n\(headers)\r\n"
    }

    static func login(_ token: String) -> String {
        let body = "token=" + token.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        return "POST /dashboard/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    func testWithoutATokenTheDashboardIsOpenOnLoopback() throws {
        let (endpoint, _) = try startEndpoint(token: nil)
        defer { endpoint.stop() }
        let page = try httpRaw(port: endpoint.port, Self.get("/dashboard"))
        XCTAssertEqual(page.status, "HTTP/1.1 200 OK")
        XCTAssertTrue(page.body.contains(#"data-metric="stock-available" data-sku="vip">7<"#), page.body)
        XCTAssertFalse(page.body.contains("Sign out"), "nothing to sign out of")
        let headers = Dictionary(page.headers, uniquingKeysWith: { first, _ in first })
        XCTAssertEqual(headers["content-type"], "text/html; charset=utf-8")
        XCTAssertTrue(headers["content-security-policy"]?.hasPrefix("default-src 'none'") == true)
        XCTAssertEqual(headers["cache-control"], "no-store")
        XCTAssertEqual(headers["connection"], "close")
        let root = try httpRaw(port: endpoint.port, Self.get("/"))
        XCTAssertEqual(root.status, "HTTP/1.1 303 See Other")
        XCTAssertTrue(root.headers.contains { $0 == ("location", "/dashboard") })
        XCTAssertEqual(try httpRaw(port: endpoint.port, Self.get("/dashboard/login")).status, "HTTP/1.1 405 Method Not Allowed")
        XCTAssertEqual(try httpRaw(port: endpoint.port, "DELETE /dashboard HTTP/1.1\r\n\r\n").status,
                       "HTTP/1.1 405 Method Not Allowed")
        let head = try httpRaw(port: endpoint.port, "HEAD /dashboard HTTP/1.1\r\n\r\n")
        XCTAssertEqual(head.status, "HTTP/1.1 200 OK")
        XCTAssertEqual(head.body, "", "HEAD has no body")
        XCTAssertNotEqual(head.headers.first { $0.0 == "content-length" }?.1, "0", "but the length of the GET's")
    }

    func testATokenIsRequiredAsABearerHeaderOrASignedCookie() throws {
        let clock = TestClock(1_796_000_000_000)
        let (endpoint, gate) = try startEndpoint(token: Self.token, nowMs: { clock.ms })
        defer { endpoint.stop() }
        let port = endpoint.port

        let anonymous = try httpRaw(port: port, Self.get("/dashboard"))
        XCTAssertEqual(anonymous.status, "HTTP/1.1 401 Unauthorized")
        XCTAssertTrue(anonymous.body.contains(#"<form method="post" action="/dashboard/login">"#))
        XCTAssertFalse(anonymous.body.contains("data-sku"), "no figure before sign-in")
        XCTAssertTrue(anonymous.headers.contains { $0.0 == "www-authenticate" })

        let wrong = String(Self.token.dropLast()) + "3"
        for header in ["Authorization: Bearer \(wrong)\r\n", "Authorization: Bearer \(Self.token)x\r\n",
                       "Authorization: Bearer \r\n", "Authorization: Basic \(Self.token)\r\n"] {
            XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", header)).status, "HTTP/1.1 401 Unauthorized", header)
        }
        let bearer = try httpRaw(port: port, Self.get("/dashboard", "Authorization: Bearer \(Self.token)\r\n"))
        XCTAssertEqual(bearer.status, "HTTP/1.1 200 OK")
        XCTAssertTrue(bearer.body.contains(#"data-sku="vip">7<"#))
        XCTAssertTrue(bearer.body.contains("Sign out"))

        // The sign-in form: a wrong token is refused, the right one gets a cookie and a redirect.
        let refused = try httpRaw(port: port, Self.login(wrong))
        XCTAssertEqual(refused.status, "HTTP/1.1 401 Unauthorized")
        XCTAssertFalse(refused.headers.contains { $0.0 == "set-cookie" })
        let accepted = try httpRaw(port: port, Self.login(Self.token))
        XCTAssertEqual(accepted.status, "HTTP/1.1 303 See Other")
        XCTAssertTrue(accepted.headers.contains { $0 == ("location", "/dashboard") })
        let setCookie = try XCTUnwrap(accepted.headers.first { $0.0 == "set-cookie" }?.1)
        XCTAssertTrue(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && setCookie.contains("Path=/dashboard"))
        XCTAssertFalse(setCookie.contains(Self.token), "the cookie is not the token")
        let cookie = String(try XCTUnwrap(setCookie.split(separator: ";").first))
        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", "Cookie: other=1; \(cookie)\r\n")).status, "HTTP/1.1 200 OK")

        // A cookie with one character changed, or past its expiry, or made with another
        // token, is refused.
        var tampered = Array(cookie)
        tampered[tampered.count - 1] = tampered[tampered.count - 1] == "0" ? "1" : "0"
        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", "Cookie: \(String(tampered))\r\n")).status,
                       "HTTP/1.1 401 Unauthorized")
        let forged = DashboardGate.session(key: Array("another-token-of-some-length".utf8), expiresAt: clock.ms / 1_000 + 60)
        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", "Cookie: kami_dashboard=\(forged)\r\n")).status,
                       "HTTP/1.1 401 Unauthorized")
        clock.ms += (DashboardGate.sessionSeconds + 1) * 1_000
        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", "Cookie: \(cookie)\r\n")).status, "HTTP/1.1 401 Unauthorized",
                       "expired")
        // A new token signs everyone out.
        clock.ms -= (DashboardGate.sessionSeconds + 1) * 1_000
        gate.setToken("a-brand-new-token-for-the-dashboard")
        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", "Cookie: \(cookie)\r\n")).status, "HTTP/1.1 401 Unauthorized")
        gate.setToken(Self.token)

        // /metrics and the health checks stay open.
        XCTAssertEqual(try httpRaw(port: port, Self.get("/metrics")).status, "HTTP/1.1 200 OK")
        XCTAssertEqual(try httpRaw(port: port, Self.get("/readyz")).status, "HTTP/1.1 200 OK")

        // Sign-out clears the cookie.
        let logout = try httpRaw(port: port, "POST /dashboard/logout HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        XCTAssertEqual(logout.status, "HTTP/1.1 303 See Other")
        XCTAssertTrue(logout.headers.contains { $0.0 == "set-cookie" && $0.1.hasPrefix("kami_dashboard=;") && $0.1.contains("Max-Age=0") })

        // Past the failures allowed in a minute, even the right token waits for the next minute.
        for _ in 1..<DashboardGate.loginFailuresPerMinuteMax {
            XCTAssertEqual(try httpRaw(port: port, Self.login("guess")).status, "HTTP/1.1 401 Unauthorized")
        }
        XCTAssertEqual(try httpRaw(port: port, Self.login(Self.token)).status, "HTTP/1.1 429 Too Many Requests")
        clock.ms += 60_000
        XCTAssertEqual(try httpRaw(port: port, Self.login(Self.token)).status, "HTTP/1.1 303 See Other")
    }

    func testSessionCookiesAreBoundToTokenAndExpiry() {
        let key = Array(Self.token.utf8)
        let nowMs: Int64 = 1_796_000_000_000
        let good = DashboardGate.session(key: key, expiresAt: nowMs / 1_000 + 10)
        XCTAssertTrue(DashboardGate.validSession(good, key: key, nowMs: nowMs))
        XCTAssertFalse(DashboardGate.validSession(good, key: key, nowMs: nowMs + 10_000), "at its expiry")
        let mac = good.split(separator: ".")[1]
        XCTAssertFalse(DashboardGate.validSession("\(nowMs / 1_000 + 20).\(mac)", key: key, nowMs: nowMs), "expiry moved")
        let far = DashboardGate.session(key: key, expiresAt: nowMs / 1_000 + DashboardGate.sessionSeconds + 100)
        XCTAssertFalse(DashboardGate.validSession(far, key: key, nowMs: nowMs), "no cookie lives longer than a session")
        for junk in ["", ".", "abc", "1.2.3", "\(nowMs / 1_000 + 10)."] {
            XCTAssertFalse(DashboardGate.validSession(junk, key: key, nowMs: nowMs), junk)
        }
    }

    /// `dashboard_token_file` in a real kamid: read at start, re-read at reload (the old token
    /// and its cookies stop working), a loose file refused with the old token kept, the token
    /// never logged.
    func testTheTokenFileIsReadAtStartAndAtReload() throws {
        let directory = NSTemporaryDirectory() + "kamid-dashtoken-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let tokenFile = directory + "/dashboard.token"
        try (Self.token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        chmod(tokenFile, 0o600)
        let config = directory + "/kamid.conf"
        try (Kamid.twoLoops + "dashboard_token_file = \(tokenFile)\n").write(toFile: config, atomically: true, encoding: .utf8)
        let kamid = try Kamid(directory: directory + "/data", arguments: ["--config", config, "--metrics-listen", "127.0.0.1:0"])
        defer { XCTAssertEqual(kamid.stop(), 0) }
        let port = try XCTUnwrap(kamid.log.first { $0.contains(">ready") }?.split(separator: " ")
            .first { $0.hasPrefix("metrics=") }.flatMap { UInt16($0.dropFirst("metrics=".count)) })
        XCTAssertTrue(kamid.log.contains { $0.contains("metrics-listening") && $0.contains("dashboard=token") })

        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard")).status, "HTTP/1.1 401 Unauthorized")
        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", "Authorization: Bearer \(Self.token)\r\n")).status,
                       "HTTP/1.1 200 OK")
        let signIn = try httpRaw(port: port, Self.login(Self.token))
        let cookie = String(try XCTUnwrap(signIn.headers.first { $0.0 == "set-cookie" }?.1.split(separator: ";").first))
        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", "Cookie: \(cookie)\r\n")).status, "HTTP/1.1 200 OK")
        _ = try httpRaw(port: port, Self.login("a-wrong-guess-of-the-token"))

        // A new token at reload: the old one and its cookie are refused, the new one works.
        let newToken = "the-next-dashboard-token-77"
        try (newToken + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        chmod(tokenFile, 0o600)
        let admin = try RawClient(unixPath: kamid.socketPath)
        XCTAssertEqual(admin.call(#""id":1,"op":"reload""#)?.isOK, true)
        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", "Authorization: Bearer \(Self.token)\r\n")).status,
                       "HTTP/1.1 401 Unauthorized")
        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", "Cookie: \(cookie)\r\n")).status, "HTTP/1.1 401 Unauthorized")
        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", "Authorization: Bearer \(newToken)\r\n")).status,
                       "HTTP/1.1 200 OK")

        // A file others can read is refused: the reload fails, the token in effect stays.
        chmod(tokenFile, 0o644)
        let refused = admin.call(#""id":2,"op":"reload""#)
        XCTAssertNotNil(refused?.error, "a loose token file must fail the reload")
        XCTAssertEqual(try httpRaw(port: port, Self.get("/dashboard", "Authorization: Bearer \(newToken)\r\n")).status,
                       "HTTP/1.1 200 OK")
        XCTAssertTrue(kamid.log.contains { $0.contains("dashboard-sign-in-refused") })
        for secret in [Self.token, newToken, "a-wrong-guess", String(cookie.split(separator: ".").last ?? "")] {
            XCTAssertFalse(kamid.log.contains { $0.contains(secret) }, "the log must not hold \(secret.prefix(6))…")
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    final class TestClock: @unchecked Sendable {
        private let lock = NSLock()
        private var value: Int64
        init(_ ms: Int64) { value = ms }
        var ms: Int64 {
            get { lock.withLock { value } }
            set { lock.withLock { value = newValue } }
        }
    }
}

/// The minute history behind the dashboard's charts and p99.
final class DashboardHistoryTests: XCTestCase {
    static func sample(issued: Int, soldOut: Int = 0, latencyBucket: Int = 0, observations: Int = 0) -> OrderSample {
        var sample = OrderSample.zero()
        sample.issued = issued
        sample.rejects[Metrics.resultSlot(.soldOut)] = soldOut
        sample.latency[latencyBucket] = observations
        return sample
    }

    func testMinutesAreDifferencesOfTheCountersAndTheHourIsBounded() {
        let history = DashboardHistory(sample: Self.sample(issued: 100, soldOut: 5), nowMs: 0)
        history.tick(sample: Self.sample(issued: 130, soldOut: 5), nowMs: 60_000)
        history.tick(sample: Self.sample(issued: 131, soldOut: 9), nowMs: 120_000)
        let window = history.window(sample: Self.sample(issued: 140, soldOut: 9))
        XCTAssertEqual(window.map(\.startMs), [0, 60_000, 120_000])
        XCTAssertEqual(window.map(\.counts.issued), [30, 1, 9])
        let page = DashboardHistory.pageMinutes(window)
        XCTAssertEqual(page.map(\.rejects), [[:], ["SOLD_OUT": 4], [:]])

        for minute in 3...200 { history.tick(sample: Self.sample(issued: 140 + minute), nowMs: Int64(minute) * 60_000) }
        let hour = history.window(sample: Self.sample(issued: 400))
        XCTAssertEqual(hour.count, DashboardLimits.minutesShown)
        XCTAssertEqual(hour.last?.startMs, 200 * 60_000)
        XCTAssertEqual(hour.first?.startMs, Int64(200 - DashboardLimits.minutesShown + 1) * 60_000)
    }

    func testQuantileIsTheUpperBoundOfItsBucket() {
        let bounds = [10, 20, 50]
        XCTAssertNil(DashboardHistory.quantile(0.99, cells: [0, 0, 0, 0], bounds: bounds))
        XCTAssertEqual(DashboardHistory.quantile(0.99, cells: [99, 1, 0, 0], bounds: bounds), 10, "99 of 100 at most 10")
        XCTAssertEqual(DashboardHistory.quantile(0.99, cells: [98, 2, 0, 0], bounds: bounds), 20)
        XCTAssertEqual(DashboardHistory.quantile(0.99, cells: [0, 0, 1, 0], bounds: bounds), 50)
        XCTAssertEqual(DashboardHistory.quantile(0.99, cells: [50, 0, 0, 50], bounds: bounds), Int.max, "above the last bound")
    }
}
