import KamiClient
import KamiCore
import KamiProtocol
import XCTest

/// Every typed storefront call against a real kamid, over each transport and encoding.
final class StorefrontTests: XCTestCase {
    func testTypedCallsOverTCPBinary() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 20)
        let client = KamiClient(endpoint: kamid.tcp, credentials: try kamid.credentials)
        XCTAssertEqual(client.configuration.endpoint.defaultEncoding, .binary)
        try exercise(client, kamid: kamid)
    }

    func testTypedCallsOverTCPJSON() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 20)
        let options = ConnectionOptions(encoding: .json, credentials: try kamid.credentials)
        try exercise(KamiClient(.init(endpoint: kamid.tcp, connection: options)), kamid: kamid)
    }

    func testTypedCallsOverUnixJSONWithoutHello() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 20)
        try exercise(KamiClient(endpoint: kamid.unix, credentials: nil), kamid: kamid)
    }

    func testTypedCallsOverUnixBinary() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 20)
        let options = ConnectionOptions(encoding: .binary)
        try exercise(KamiClient(.init(endpoint: kamid.unix, connection: options)), kamid: kamid)
    }

    /// The life of three orders and the error answers, checked field by field.
    private func exercise(_ client: KamiClient, kamid: Kamid) throws {
        try client.ping()

        let issued = try client.issue(order: "A1", user: "alice", sku: "vip", qty: 1, paymentRef: "pay-1")
        XCTAssertEqual(issued.order, "A1")
        XCTAssertEqual(issued.state, .committed)
        XCTAssertEqual(issued.sku, "vip")
        XCTAssertEqual(issued.qty, 1)
        XCTAssertEqual(issued.codes.count, 1)
        XCTAssertTrue(issued.codes[0].secret?.reveal().hasPrefix("vip-SECRET-") ?? false)
        let again = try client.issue(order: "A1", user: "alice", sku: "vip", qty: 1, paymentRef: "pay-1")
        XCTAssertEqual(again, issued, "a repeated issue answers with the same codes")

        let held = try client.reserve(order: "B1", user: "bob", sku: "vip", qty: 2, ttlMs: 60_000)
        XCTAssertEqual(held.state, .reserved)
        XCTAssertEqual(held.codes.count, 2)
        XCTAssertTrue(held.codes.allSatisfy { $0.secret == nil }, "a hold shows no secret")
        XCTAssertGreaterThan(held.expiresAtMs, 0)
        let paid = try client.commit(order: "B1", paymentRef: "pay-2")
        XCTAssertEqual(paid.state, .committed)
        XCTAssertEqual(paid.codes.map(\.codeID), held.codes.map(\.codeID), "commit delivers the held codes")
        XCTAssertTrue(paid.codes.allSatisfy { $0.secret != nil })

        _ = try client.reserve(order: "C1", user: "carol", sku: "vip", qty: 1)
        XCTAssertEqual(try client.release(order: "C1").state, .released)

        let looked = try client.order("A1", user: "alice")
        XCTAssertEqual(looked.codes, issued.codes, "order shows the committed codes again")
        XCTAssertEqual(try client.order("C1", user: "carol").state, .released)

        let owned = try client.entitlements(user: "bob")
        XCTAssertEqual(Set(owned.map(\.codeID)), Set(paid.codes.map(\.codeID)))
        XCTAssertTrue(owned.allSatisfy { $0.order == "B1" && $0.state == .issued && $0.secret != nil })
        XCTAssertEqual(try client.entitlements(user: "nobody"), [])

        let stock = try client.stock(sku: "vip")
        XCTAssertEqual(stock.sku, "vip")
        XCTAssertEqual([stock.available, stock.reserved, stock.issued, stock.voided, stock.imported], [17, 0, 3, 0, 20])

        // kamid's answers keep their codes.
        XCTAssertEqual(kamiError { try client.issue(order: "Z1", user: "u", sku: "nope", qty: 1, paymentRef: "p") }?
            .code, .notFound)
        XCTAssertEqual(kamiError { try client.commit(order: "A1", paymentRef: "other") }?.code, .conflict)
        XCTAssertEqual(kamiError { try client.order("missing", user: "nobody") }?.code, .notFound)
        XCTAssertEqual(kamiError { try client.reserve(order: "D1", user: "dave", sku: "vip", qty: 18) }?.code,
                       .soldOut)
        XCTAssertEqual(kamiError { try client.commit(order: "C1", paymentRef: "late") }?.code, .invalidState)
        XCTAssertEqual(kamiError { try client.stock(sku: "nope") }?.code, .notFound)
        XCTAssertEqual(try client.stock(sku: "vip").available, 17, "failed calls took nothing")

        // Every error was an answer on a healthy connection: none was dropped.
        XCTAssertGreaterThan(client.idleConnections, 0)
        XCTAssertFalse(kamid.log.contains(issued.codes[0].secret!.reveal()), "no secret in kamid's log")
    }

    func testPerUserLimitIsAnAnswerNotARetry() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 5, perUserLimit: 1)
        let client = KamiClient(endpoint: kamid.tcp, credentials: try kamid.credentials)
        _ = try client.issue(order: "L1", user: "lee", sku: "vip", qty: 1, paymentRef: "p1")
        XCTAssertEqual(kamiError { try client.issue(order: "L2", user: "lee", sku: "vip", qty: 1, paymentRef: "p2") }?
            .code, .limitReached)
    }

    func testWrongTokenIsUnauthorizedAndNotRetried() throws {
        let kamid = try Kamid()
        let bad = KamiCredentials(client: "default", token: "not-the-token")
        let client = KamiClient(.init(endpoint: kamid.tcp, connection: ConnectionOptions(credentials: bad),
                                      retry: RetryPolicy(attempts: 5, backoffMsInitial: 2_000, backoffMsMax: 2_000)))
        var error: KamiError?
        let ms = elapsedMs { error = kamiError { try client.ping() } }
        XCTAssertEqual(error?.code, .unauthorized)
        XCTAssertLessThan(ms, 1_000, "no backoff was slept: UNAUTHORIZED is an answer")
        XCTAssertFalse("\(bad)".contains("not-the-token"), "credentials never print their token")
    }

    func testTCPWithoutHelloIsUnauthorized() throws {
        let kamid = try Kamid()
        let connection = try KamiConnection(endpoint: kamid.tcp)
        XCTAssertEqual(try connection.send(.ping()).result.failureCode, .unauthorized)
        XCTAssertTrue(connection.isOpen, "a server error leaves the connection usable")
    }

    func testCallerIdsComeBackWhateverTheEncoding() throws {
        let kamid = try Kamid()
        for encoding in [WireEncoding.binary, .json] {
            let connection = try KamiConnection(
                endpoint: kamid.tcp, options: ConnectionOptions(encoding: encoding, credentials: try kamid.credentials))
            var ping = Request.ping()
            ping.id = .string("mine")
            XCTAssertEqual(try connection.send(ping).id, .string("mine"), "\(encoding)")
            ping.id = .number(-5)
            XCTAssertEqual(try connection.send(ping).id, .number(-5), "\(encoding)")
        }
    }

    func testOperatorOperationsInBinaryFailBeforeSending() throws {
        let kamid = try Kamid()
        let connection = try KamiConnection(endpoint: kamid.unix, options: ConnectionOptions(encoding: .binary))
        XCTAssertEqual(kamiError { try connection.send(Request(id: .none, op: .stats)) }?.code, .badRequest)
        XCTAssertTrue(connection.isOpen, "an encoding error sends nothing and keeps the connection")
        XCTAssertNoThrow(try connection.send(.ping()).successBody())
    }
}

extension Result where Failure == KamiError {
    var failureCode: ErrorCode? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}
