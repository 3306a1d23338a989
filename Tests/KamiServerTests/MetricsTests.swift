import Foundation
import Glibc
import KamiCore
import KamiProtocol
@testable import KamiServer
import XCTest

/// A strict reader of the Prometheus text exposition format (0.0.4), enough to reject what
/// a Prometheus server would reject: every line is `# HELP`, `# TYPE` or a sample; a family's
/// TYPE comes before its samples and only once; label values are properly escaped;
/// histogram buckets are cumulative with `+Inf` equal to `_count`.
struct PrometheusText {
    struct Sample: Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    var samples: [Sample] = []
    var types: [String: String] = [:]

    init(parsing text: String) throws {
        func fail(_ why: String, _ line: Substring) -> NSError {
            NSError(domain: "prometheus", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(why): \(line)"])
        }
        guard text.hasSuffix("\n") else { throw fail("no final newline", "") }
        var sampled: Set<String> = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            if line.hasPrefix("# HELP ") { continue }
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                    throw fail("bad TYPE", line)
                }
                let name = String(parts[2])
                guard types[name] == nil, !sampled.contains(name) else { throw fail("TYPE repeated or after samples", line) }
                types[name] = String(parts[3])
                continue
            }
            guard !line.hasPrefix("#"), !line.isEmpty else { throw fail("stray line", line) }
            var rest = Substring(line)
            let name = String(rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" })
            guard let first = name.first, first.isLetter || first == "_" else { throw fail("bad metric name", line) }
            rest = rest.dropFirst(name.count)
            var labels: [String: String] = [:]
            if rest.first == "{" {
                rest = rest.dropFirst()
                while rest.first != "}" {
                    let key = String(rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" })
                    guard !key.isEmpty else { throw fail("bad label name", line) }
                    rest = rest.dropFirst(key.count)
                    guard rest.hasPrefix("=\"") else { throw fail("expected =\"", line) }
                    rest = rest.dropFirst(2)
                    var value = ""
                    while true {
                        guard let ch = rest.first else { throw fail("unterminated label value", line) }
                        rest = rest.dropFirst()
                        if ch == "\"" { break }
                        if ch == "\\" {
                            guard let next = rest.first else { throw fail("dangling escape", line) }
                            rest = rest.dropFirst()
                            switch next {
                            case "\\": value.append("\\")
                            case "\"": value.append("\"")
                            case "n": value.append("\n")
                            default: throw fail("bad escape", line)
                            }
                        } else {
                            value.append(ch)
                        }
                    }
                    guard labels[key] == nil else { throw fail("label repeated", line) }
                    labels[key] = value
                    if rest.first == "," { rest = rest.dropFirst() }
                }
                rest = rest.dropFirst()
            }
            guard rest.first == " ", let value = Double(rest.dropFirst()) ?? (rest.dropFirst() == "+Inf" ? .infinity : nil)
            else { throw fail("bad value", line) }
            let family = ["_bucket", "_sum", "_count"].reduce(name) { name, suffix in
                name.hasSuffix(suffix) && types[String(name.dropLast(suffix.count))] == "histogram"
                    ? String(name.dropLast(suffix.count)) : name
            }
            guard types[family] != nil else { throw fail("sample before its TYPE", line) }
            sampled.insert(family)
            samples.append(Sample(name: name, labels: labels, value: value))
        }
        // Histograms: cumulative buckets, +Inf == count, per label set.
        for (family, type) in types where type == "histogram" {
            var series: [[String: String]: [(Double, Double)]] = [:]
            for sample in samples where sample.name == family + "_bucket" {
                var key = sample.labels
                guard let le = key.removeValue(forKey: "le") else { throw fail("bucket without le", Substring(family)) }
                series[key, default: []].append((le == "+Inf" ? .infinity : Double(le) ?? .nan, sample.value))
            }
            for (labels, buckets) in series {
                guard buckets.last?.0 == .infinity else { throw fail("no +Inf bucket", Substring(family)) }
                for (a, b) in zip(buckets, buckets.dropFirst()) where !(a.0 < b.0 && a.1 <= b.1) {
                    throw fail("buckets not ascending and cumulative", Substring(family))
                }
                let count = samples.first { $0.name == family + "_count" && $0.labels == labels }?.value
                guard count == buckets.last?.1 else { throw fail("+Inf bucket differs from _count", Substring(family)) }
            }
        }
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }
}

/// Sends a raw HTTP request and returns the status line and body.
func httpExchange(port: UInt16, _ request: String, timeoutMs: Int = 5_000) throws -> (status: String, body: String) {
    let client = try RawClient(port: port, timeoutMs: timeoutMs)
    client.send(request)
    var response: [String] = []
    while let line = client.readLine() { response.append(line) }
    let text = response.joined(separator: "\n")
    guard let blank = response.firstIndex(where: { $0 == "\r" || $0.isEmpty }) else { return (response.first ?? "", "") }
    return (response.first?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "",
            text.isEmpty ? "" : response[(blank + 1)...].joined(separator: "\n") + (response.count > blank + 1 ? "\n" : ""))
}

final class MetricsTests: XCTestCase {
    func testMetricsAreValidPrometheusTextCountEveryReplyAndHoldNoSecret() throws {
        let kamid = try Kamid(arguments: ["--metrics-listen", "127.0.0.1:0"])
        defer { XCTAssertEqual(kamid.stop(), 0) }
        let readyLine = try XCTUnwrap(kamid.log.first { $0.contains(">ready") })
        let metricsPort = try XCTUnwrap(readyLine.split(separator: " ").first { $0.hasPrefix("metrics=") }
            .flatMap { UInt16($0.dropFirst("metrics=".count)) }, readyLine)
        try kamid.stock(sku: #"vip"x\y"#, count: 2)

        let shop = try kamid.storefront()
        var secrets: [String] = []
        for (index, user) in ["alice-uid-7731", "bob-uid-7732"].enumerated() {
            let reply = shop.call(#""id":1,"op":"issue","order":"ORDER-SECRETLESS-\#(index)","user":"\#(user)","sku":"vip\"x\\y","qty":1,"payment_ref":"PAYREF-991\#(index)""#)
            secrets += reply?.order?.codes.compactMap { $0.secret?.reveal() } ?? []
        }
        XCTAssertEqual(secrets.count, 2)
        XCTAssertEqual(shop.call(#""id":2,"op":"issue","order":"ORDER-SECRETLESS-9","user":"carol-uid-7733","sku":"vip\"x\\y","qty":1,"payment_ref":"p""#)?.error?.code, .soldOut)
        let stranger = try RawClient(port: kamid.port)
        XCTAssertEqual(stranger.call(#""id":1,"op":"stock","sku":"vip""#)?.error?.code, .unauthorized)
        stranger.send("{not json\n")
        XCTAssertEqual(stranger.readJSONReply()?.error?.code, .badRequest)
        let admin = try RawClient(unixPath: kamid.socketPath)
        XCTAssertEqual(admin.call(#""id":1,"op":"reload""#)?.isOK, true)

        let (status, body) = try httpExchange(port: metricsPort, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(status, "HTTP/1.1 200 OK")
        let text = try PrometheusText(parsing: body)
        XCTAssertEqual(text.value("kami_requests_total", ["op": "issue", "result": "ok"]), 2)
        XCTAssertEqual(text.value("kami_requests_total", ["op": "issue", "result": "SOLD_OUT"]), 1)
        XCTAssertEqual(text.value("kami_requests_total", ["op": "stock", "result": "UNAUTHORIZED"]), 1)
        XCTAssertEqual(text.value("kami_requests_total", ["op": "invalid", "result": "BAD_REQUEST"]), 1)
        XCTAssertEqual(text.value("kami_requests_total", ["op": "hello", "result": "ok"]), 1)
        XCTAssertEqual(text.value("kami_request_duration_seconds_count", ["op": "issue"]), 3)
        XCTAssertEqual(text.value("kami_reloads_total", ["result": "applied"]), 1)
        XCTAssertEqual(text.value("kami_reloads_total", ["result": "rejected"]), 0)
        XCTAssertGreaterThanOrEqual(text.value("kami_commit_batch_size_count") ?? 0, 1)
        XCTAssertGreaterThanOrEqual(text.value("kami_commit_fsync_seconds_count") ?? 0, 1)
        XCTAssertEqual(text.value("kami_stock_codes", ["sku": #"vip"x\y"#, "state": "issued"]), 2, "label escaping")
        XCTAssertEqual(text.value("kami_stock_codes", ["sku": #"vip"x\y"#, "state": "available"]), 0)
        XCTAssertEqual(text.value("kami_holds_outstanding"), 0)
        XCTAssertEqual(text.value("kami_connections_open"), 3, "shop, stranger and admin; closed ones are gone")
        XCTAssertEqual(text.types["kami_request_duration_seconds"], "histogram")
        for secret in secrets + [kamid.token, "ORDER-SECRETLESS", "alice-uid", "PAYREF-991"] {
            XCTAssertFalse(body.contains(secret), "metrics must not carry \(secret.prefix(6))…")
        }

        XCTAssertEqual(try httpExchange(port: metricsPort, "GET /healthz HTTP/1.1\r\n\r\n").status, "HTTP/1.1 200 OK")
        let ready = try httpExchange(port: metricsPort, "GET /readyz HTTP/1.0\r\n\r\n")
        XCTAssertEqual(ready.status, "HTTP/1.1 200 OK")
        XCTAssertEqual(ready.body, "ready\n")
        XCTAssertEqual(try httpExchange(port: metricsPort, "GET /nope HTTP/1.1\r\n\r\n").status, "HTTP/1.1 404 Not Found")
        XCTAssertEqual(try httpExchange(port: metricsPort, "DELETE /metrics HTTP/1.1\r\n\r\n").status,
                       "HTTP/1.1 405 Method Not Allowed")
        XCTAssertEqual(try httpExchange(port: metricsPort, "hello\r\n\r\n").status, "HTTP/1.1 400 Bad Request")
        let head = try httpExchange(port: metricsPort, "HEAD /metrics HTTP/1.1\r\n\r\n")
        XCTAssertEqual(head.status, "HTTP/1.1 200 OK")
        XCTAssertEqual(head.body, "")
    }

    func testReadinessAndSlowClientsOfTheHTTPEndpoint() throws {
        let ready = ReadyFlag()
        let endpoint = MetricsServer(
            address: .tcp(host: "127.0.0.1", port: 0), logger: Logger(level: .error),
            readiness: { ready.value ? (true, "ready") : (false, "the last commit failed on the disk") },
            render: { "# HELP x y\n# TYPE x gauge\nx 1\n" })
        try endpoint.start()
        defer { endpoint.stop() }
        let notReady = try httpExchange(port: endpoint.port, "GET /readyz HTTP/1.1\r\n\r\n")
        XCTAssertEqual(notReady.status, "HTTP/1.1 503 Service Unavailable")
        XCTAssertEqual(notReady.body, "the last commit failed on the disk\n")
        ready.value = true
        XCTAssertEqual(try httpExchange(port: endpoint.port, "GET /readyz HTTP/1.1\r\n\r\n").status, "HTTP/1.1 200 OK")

        // A client that connects and says nothing does not hold up the next one, and is
        // answered 408 when its time is up.
        let silent = try RawClient(port: endpoint.port, timeoutMs: 5_000)
        let started = Date()
        XCTAssertEqual(try httpExchange(port: endpoint.port, "GET /healthz HTTP/1.1\r\n\r\n").status, "HTTP/1.1 200 OK")
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.0)
        XCTAssertEqual(silent.readLine()?.trimmingCharacters(in: .whitespacesAndNewlines), "HTTP/1.1 408 Request Timeout")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 1.5)

        // Headers past 8 KiB: 431, not unbounded buffering.
        let big = try httpExchange(port: endpoint.port, "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 10_000))
        XCTAssertEqual(big.status, "HTTP/1.1 431 Request Header Fields Too Large")

        // Past 32 connections at once, a 33rd is answered 503 (not cut off); once they close,
        // the port serves again.
        var crowd: [RawClient] = []
        for _ in 0..<32 { crowd.append(try RawClient(port: endpoint.port, timeoutMs: 5_000)) }
        XCTAssertEqual(try httpExchange(port: endpoint.port, "GET /metrics HTTP/1.1\r\n\r\n").status,
                       "HTTP/1.1 503 Service Unavailable")
        crowd.removeAll()
        var served = false
        for _ in 0..<50 where !served {
            served = try httpExchange(port: endpoint.port, "GET /healthz HTTP/1.1\r\n\r\n").status == "HTTP/1.1 200 OK"
            if !served { usleep(20_000) }
        }
        XCTAssertTrue(served, "the port serves again once the crowd is gone")

        // Only loopback.
        let public0 = MetricsServer(address: .tcp(host: "0.0.0.0", port: 0), logger: Logger(level: .error),
                                    readiness: { (true, "") }, render: { "" })
        XCTAssertThrowsError(try public0.start())
    }

    final class ReadyFlag: @unchecked Sendable {
        private let lock = NSLock()
        private var flag = false
        var value: Bool {
            get { lock.withLock { flag } }
            set { lock.withLock { flag = newValue } }
        }
    }
}

final class MetricsSlotTests: XCTestCase {
    func testEveryErrorCodeHasItsOwnResultSlot() {
        for code in ErrorCode.allCases {
            XCTAssertEqual(Metrics.results[Metrics.resultSlot(code)], code.rawValue)
        }
    }
}
