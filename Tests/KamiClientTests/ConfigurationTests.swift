import KamiClient
import KamiCore
import KamiProtocol
import XCTest

/// Limits, endpoints, credentials and retry policy, without a daemon.
final class ConfigurationTests: XCTestCase {
    func testLimitsHoldTogether() {
        ClientLimits.check()
        ProtocolLimits.check()
    }

    func testEndpointParsing() {
        XCTAssertEqual(KamiEndpoint(parsing: "127.0.0.1:7420"), .tcp(host: "127.0.0.1", port: 7420))
        XCTAssertEqual(KamiEndpoint(parsing: "kami.internal:80"), .tcp(host: "kami.internal", port: 80))
        XCTAssertEqual(KamiEndpoint(parsing: "[::1]:7420"), .tcp(host: "::1", port: 7420))
        XCTAssertEqual(KamiEndpoint(parsing: "./kami-data/kamid.sock"), .unix(path: "./kami-data/kamid.sock"))
        XCTAssertEqual(KamiEndpoint(parsing: "unix:kamid.sock"), .unix(path: "kamid.sock"))
        XCTAssertNil(KamiEndpoint(parsing: "127.0.0.1"))
        XCTAssertNil(KamiEndpoint(parsing: "host:99999"))
        XCTAssertNil(KamiEndpoint(parsing: ":7420"))
        XCTAssertNil(KamiEndpoint(parsing: "unix:"))
        XCTAssertEqual("\(KamiEndpoint.tcp(host: "::1", port: 1))", "[::1]:1")
        XCTAssertEqual(KamiEndpoint.defaultTCP.defaultEncoding, .binary)
        XCTAssertEqual(KamiEndpoint.unix(path: "/s").defaultEncoding, .json)
    }

    func testCredentialsFromATokenFile() throws {
        let directory = NSTemporaryDirectory() + "kamiclient-token-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "  s3cret-token\r\n".write(toFile: directory + "/default.token", atomically: true, encoding: .utf8)
        let credentials = try KamiCredentials.load(dataDirectory: directory)
        XCTAssertEqual(credentials, KamiCredentials(client: "default", token: "s3cret-token"))
        XCTAssertFalse("\(credentials)".contains("s3cret"))
        XCTAssertEqual(kamiError { try KamiCredentials.load(dataDirectory: directory, client: "shop") }?.code,
                       .notFound)
        try "\n".write(toFile: directory + "/empty.token", atomically: true, encoding: .utf8)
        XCTAssertEqual(kamiError { try KamiCredentials.load(dataDirectory: directory, client: "empty") }?.code,
                       .badRequest)
    }

    func testNoRetryPolicyIsNamed() {
        XCTAssertEqual(RetryPolicy.never.attempts, 0)
        let defaults = RetryPolicy()
        XCTAssertEqual(defaults.attempts, ClientLimits.retryAttemptsDefault)
        XCTAssertEqual(defaults.backoffMsInitial, ClientLimits.retryBackoffMsInitialDefault)
        XCTAssertEqual(defaults.backoffMsMax, ClientLimits.retryBackoffMsMaxDefault)
    }

    func testBackoffDoublesWithinJitterAndStopsAtTheMaximum() {
        let policy = RetryPolicy(attempts: 10, backoffMsInitial: 40, backoffMsMax: 300)
        for _ in 0..<200 {
            XCTAssertTrue((20...40).contains(policy.backoffMs(retry: 0)))
            XCTAssertTrue((40...80).contains(policy.backoffMs(retry: 1)))
            XCTAssertTrue((80...160).contains(policy.backoffMs(retry: 2)))
            XCTAssertTrue((150...300).contains(policy.backoffMs(retry: 3)))
            XCTAssertTrue((150...300).contains(policy.backoffMs(retry: 99)), "no overflow on a large retry count")
        }
        let draws = Set((0..<200).map { _ in policy.backoffMs(retry: 3) })
        XCTAssertGreaterThan(draws.count, 10, "jittered, not one fixed wait")
    }
}
