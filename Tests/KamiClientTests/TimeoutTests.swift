import KamiClient
import KamiCore
import KamiProtocol
import XCTest

/// Timeouts fire, and transport failures surface as UNAVAILABLE with a clear message.
final class TimeoutTests: XCTestCase {
    func testRequestTimeoutAgainstAServerThatNeverAnswers() throws {
        let silent = try SilentListener()
        for encoding in [WireEncoding.binary, .json] {
            let connection = try KamiConnection(
                endpoint: .tcp(host: "127.0.0.1", port: silent.port),
                options: ConnectionOptions(encoding: encoding, requestTimeoutMs: 300))
            var error: KamiError?
            let ms = elapsedMs { error = kamiError { try connection.send(.ping()) } }
            XCTAssertEqual(error?.code, .unavailable)
            let expected = "no reply from kamid at 127.0.0.1:\(silent.port) within 300 ms"
            XCTAssertTrue(error?.message.contains(expected) ?? false, "\(String(describing: error))")
            XCTAssertGreaterThanOrEqual(ms, 295)
            XCTAssertLessThan(ms, 2_000)
            XCTAssertFalse(connection.isOpen, "a timed-out connection is closed: a late reply would be misread")
            XCTAssertEqual(kamiError { try connection.send(.ping()) }?.code, .unavailable)
        }
    }

    func testPipelineTimeoutSaysHowFarItGot() throws {
        let silent = try SilentListener()
        let connection = try KamiConnection(
            endpoint: .tcp(host: "127.0.0.1", port: silent.port), options: ConnectionOptions(requestTimeoutMs: 200))
        let error = kamiError { try connection.pipeline([.ping(), .ping(), .ping()]) }
        XCTAssertEqual(error?.code, .unavailable)
        XCTAssertTrue(error?.message.contains("0 of 3 replies in") ?? false, "\(String(describing: error))")
    }

    func testHelloTimeoutFailsTheConnect() throws {
        let silent = try SilentListener()
        var error: KamiError?
        let ms = elapsedMs {
            error = kamiError {
                try KamiConnection(
                    endpoint: .tcp(host: "127.0.0.1", port: silent.port),
                    options: ConnectionOptions(credentials: KamiCredentials(client: "default", token: "t"),
                                               requestTimeoutMs: 250))
            }
        }
        XCTAssertEqual(error?.code, .unavailable)
        XCTAssertGreaterThanOrEqual(ms, 245)
        XCTAssertLessThan(ms, 2_000)
    }

    func testConnectTimeoutWhenTheHandshakeNeverCompletes() throws {
        let silent = try SilentListener(backlogFull: true)
        var error: KamiError?
        let ms = elapsedMs {
            error = kamiError {
                try KamiConnection(endpoint: .tcp(host: "127.0.0.1", port: silent.port),
                                   options: ConnectionOptions(connectTimeoutMs: 300))
            }
        }
        XCTAssertEqual(error?.code, .unavailable)
        XCTAssertTrue(error?.message.contains("no answer within 300 ms") ?? false, "\(String(describing: error))")
        XCTAssertGreaterThanOrEqual(ms, 295)
        XCTAssertLessThan(ms, 2_000)
    }

    func testClientRetriesATimeoutThenGivesUp() throws {
        let silent = try SilentListener()
        let client = KamiClient(.init(
            endpoint: .tcp(host: "127.0.0.1", port: silent.port),
            connection: ConnectionOptions(encoding: .json, requestTimeoutMs: 150),
            retry: RetryPolicy(attempts: 2, backoffMsInitial: 10, backoffMsMax: 10)))
        var error: KamiError?
        let ms = elapsedMs { error = kamiError { try client.stock(sku: "vip") } }
        XCTAssertEqual(error?.code, .unavailable)
        XCTAssertTrue(error?.message.contains("gave up after 3 attempts") ?? false, "\(String(describing: error))")
        XCTAssertGreaterThanOrEqual(ms, 3 * 150, "three attempts, each timed out")
        XCTAssertEqual(client.idleConnections, 0, "every timed-out connection was dropped")
    }

    func testRefusedConnectionIsUnavailable() throws {
        let port = try refusedPort()
        let client = KamiClient(.init(
            endpoint: .tcp(host: "127.0.0.1", port: port),
            retry: RetryPolicy(attempts: 2, backoffMsInitial: 5, backoffMsMax: 10)))
        let error = kamiError { try client.ping() }
        XCTAssertEqual(error?.code, .unavailable)
        let message = error?.message ?? ""
        XCTAssertTrue(message.contains("cannot connect to kamid at 127.0.0.1:\(port)"), message)
        XCTAssertTrue(message.contains("Connection refused"), message)
        XCTAssertTrue(message.contains("gave up after 3 attempts"), message)
    }

    func testMissingUnixSocketIsUnavailable() throws {
        let error = kamiError { try KamiConnection(endpoint: .unix(path: "/nonexistent/kamid.sock")) }
        XCTAssertEqual(error?.code, .unavailable)
        XCTAssertTrue(error?.message.contains("unix:/nonexistent/kamid.sock") ?? false)
        let long = String(repeating: "d", count: ClientLimits.unixPathBytesMax + 1)
        XCTAssertEqual(kamiError { try KamiConnection(endpoint: .unix(path: long)) }?.code, .badRequest)
    }

    func testDaemonGoneMidConnectionIsUnavailable() throws {
        let kamid = try Kamid()
        let connection = try KamiConnection(
            endpoint: kamid.tcp, options: ConnectionOptions(credentials: try kamid.credentials))
        try connection.send(.ping()).successBody()
        XCTAssertEqual(kamid.stop(), 0)
        let error = kamiError { try connection.send(.ping()) }
        XCTAssertEqual(error?.code, .unavailable)
        XCTAssertTrue(error?.message.contains("repeat it with the same order id") ?? false,
                      "\(String(describing: error))")
        XCTAssertFalse(connection.isOpen)
    }

    func testUnresolvableHostIsUnavailable() throws {
        let error = kamiError { try KamiConnection(endpoint: .tcp(host: "no-such-host.invalid", port: 7420)) }
        XCTAssertEqual(error?.code, .unavailable)
        XCTAssertTrue(error?.message.contains("no-such-host.invalid") ?? false)
    }
}
