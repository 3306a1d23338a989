import Foundation
import Glibc
import KamiClient
import KamiCore
import KamiProtocol
import XCTest

/// Safe retries: a lost reply is repeated with the same order id and arguments, and kamid's
/// idempotency turns the repeat into the first answer: never a second issue.
final class RetryTests: XCTestCase {
    private let quickRetries = RetryPolicy(attempts: 3, backoffMsInitial: 10, backoffMsMax: 50)

    func testLostCommitReplyIsRetriedAndGetsTheSameCodesInBinary() throws {
        try lostCommitReply(encoding: .binary)
    }

    func testLostCommitReplyIsRetriedAndGetsTheSameCodesInJSON() throws {
        try lostCommitReply(encoding: .json)
    }

    private func lostCommitReply(encoding: WireEncoding) throws {
        let kamid = try Kamid()
        try kamid.stock(count: 6)
        let direct = KamiClient(endpoint: kamid.unix, credentials: nil)
        let held = try direct.reserve(order: "R1", user: "rita", sku: "vip", qty: 2, ttlMs: 60_000)
        // Reply 0 on the first connection is the hello; reply 1, the commit's, is lost.
        let proxy = try LossyProxy(upstreamPort: kamid.port, cutReply: 1)
        defer { proxy.stop() }
        let client = KamiClient(.init(
            endpoint: .tcp(host: "127.0.0.1", port: proxy.port),
            connection: ConnectionOptions(encoding: encoding, credentials: try kamid.credentials),
            retry: quickRetries))

        let committed = try client.commit(order: "R1", paymentRef: "pay-r1")

        XCTAssertEqual(proxy.dropped, 1, "the first commit's reply was lost after kamid committed")
        XCTAssertEqual(proxy.connections, 2, "the retry went out on a new connection")
        XCTAssertEqual(proxy.requests, 4, "hello + commit, twice")
        XCTAssertEqual(committed.state, .committed)
        XCTAssertEqual(committed.codes.map(\.codeID), held.codes.map(\.codeID), "the held codes, delivered once")
        XCTAssertEqual(try direct.order("R1", user: "rita").codes, committed.codes)
        let stock = try direct.stock(sku: "vip")
        XCTAssertEqual([stock.issued, stock.available], [2, 4], "issued once, not twice")
    }

    func testLostIssueReplyIsRetriedAndIssuesOnce() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 6)
        let proxy = try LossyProxy(upstreamPort: kamid.port, cutReply: 1)
        defer { proxy.stop() }
        let client = KamiClient(.init(
            endpoint: .tcp(host: "127.0.0.1", port: proxy.port),
            connection: ConnectionOptions(credentials: try kamid.credentials), retry: quickRetries))

        let issued = try client.issue(order: "I1", user: "ivan", sku: "vip", qty: 3, paymentRef: "pay-i1")

        XCTAssertEqual(proxy.dropped, 1)
        XCTAssertEqual(issued.codes.count, 3)
        let direct = KamiClient(endpoint: kamid.unix, credentials: nil)
        XCTAssertEqual(try direct.order("I1", user: "ivan").codes, issued.codes, "the repeat answered with the first codes")
        XCTAssertEqual(try direct.stock(sku: "vip").issued, 3, "three codes issued, not six")
        XCTAssertEqual(Set(try direct.entitlements(user: "ivan").map(\.codeID)), Set(issued.codes.map(\.codeID)))
    }

    func testCommitSentThenAbandonedAndRepeatedGetsTheFirstCodes() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 4)
        let direct = KamiClient(endpoint: kamid.unix, credentials: nil)
        _ = try direct.reserve(order: "X1", user: "xena", sku: "vip", qty: 2)
        // A storefront sends the commit and dies before reading the reply.
        let raw = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = kamid.port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(raw, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        XCTAssertEqual(connected, 0)
        var bytes: [UInt8] = []
        let credentials = try kamid.credentials
        try JSONCodec.encode(.hello(client: credentials.client, token: credentials.token), into: &bytes)
        try JSONCodec.encode(.commit(order: "X1", paymentRef: "pay-x1"), into: &bytes)
        XCTAssertEqual(bytes.withUnsafeBytes { send(raw, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }, bytes.count)
        close(raw)
        // Wait until kamid has done it, so that the repeat below really is a repeat.
        var first: WireOrder?
        for _ in 0..<200 {
            let order = try direct.order("X1", user: "xena")
            if order.state == .committed {
                first = order
                break
            }
            usleep(10_000)
        }
        let firstCodes = try XCTUnwrap(first, "the abandoned commit was done").codes

        let client = KamiClient(endpoint: kamid.tcp, credentials: credentials)
        let repeated = try client.commit(order: "X1", paymentRef: "pay-x1")
        XCTAssertEqual(repeated.codes, firstCodes, "the same codes as the first commit")
        XCTAssertEqual(try client.stock(sku: "vip").issued, 2)
    }

    func testRetryRidesOverKill9AndRestart() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 5)
        let client = KamiClient(.init(
            endpoint: kamid.tcp, connection: ConnectionOptions(credentials: try kamid.credentials),
            retry: RetryPolicy(attempts: 60, backoffMsInitial: 25, backoffMsMax: 200)))
        let first = try client.issue(order: "K1", user: "kim", sku: "vip", qty: 2, paymentRef: "pay-k1")
        kamid.kill9()
        let restarted = Thread { [kamid] in
            usleep(300_000)
            try? kamid.restart()
        }
        restarted.start()
        var again: WireOrder?
        let ms = try elapsedMs {
            again = try client.issue(order: "K1", user: "kim", sku: "vip", qty: 2, paymentRef: "pay-k1")
        }
        XCTAssertGreaterThanOrEqual(ms, 250, "the call waited for kamid to come back")
        XCTAssertEqual(again?.codes, first.codes, "the committed codes survived kill -9 and came back the same")
        _ = try client.issue(order: "K2", user: "kim", sku: "vip", qty: 1, paymentRef: "pay-k2")
        XCTAssertEqual(try client.stock(sku: "vip").issued, 3)
        XCTAssertEqual(kamid.stop(), 0)
    }

    func testServerErrorsAreNeverRetried() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 2)
        let proxy = try LossyProxy(upstreamPort: kamid.port, cutReply: -1)
        defer { proxy.stop() }
        let client = KamiClient(.init(
            endpoint: .tcp(host: "127.0.0.1", port: proxy.port),
            connection: ConnectionOptions(credentials: try kamid.credentials),
            retry: RetryPolicy(attempts: 5, backoffMsInitial: 2_000, backoffMsMax: 2_000)))
        _ = try client.issue(order: "E1", user: "eve", sku: "vip", qty: 1, paymentRef: "p")
        XCTAssertEqual(proxy.requests, 2)
        let expected: [(ErrorCode, () throws -> Void)] = [
            (.notFound, { _ = try client.commit(order: "nope", paymentRef: "p") }),
            (.conflict, { _ = try client.issue(order: "E1", user: "eve", sku: "vip", qty: 2, paymentRef: "p") }),
            (.soldOut, { _ = try client.issue(order: "E2", user: "eve", sku: "vip", qty: 5, paymentRef: "p") }),
            (.badRequest, { _ = try client.issue(order: "E3", user: "eve", sku: "vip", qty: -1, paymentRef: "p") }),
        ]
        for (index, (code, call)) in expected.enumerated() {
            var error: KamiError?
            let ms = elapsedMs { error = kamiError(call) }
            XCTAssertEqual(error?.code, code)
            XCTAssertLessThan(ms, 1_000, "\(code) was answered without a backoff")
            // BAD_REQUEST for qty -1 is refused by the encoder: nothing reaches kamid.
            XCTAssertEqual(proxy.requests, 2 + min(index + 1, 3), "\(code) was sent once")
        }
        XCTAssertEqual(proxy.connections, 1, "the connection survived every error")
    }

    func testBusyOnAcceptIsRetriedUntilASlotFrees() throws {
        let kamid = try Kamid(config: ["max_connections = 1"])
        let holder = try KamiConnection(endpoint: kamid.unix)
        try holder.send(.ping()).successBody()
        // Binary: kamid's refusal is a JSON line, which the client must still read.
        let impatient = KamiClient(.init(
            endpoint: kamid.tcp, connection: ConnectionOptions(credentials: try kamid.credentials), retry: .never))
        let error = kamiError { try impatient.ping() }
        XCTAssertEqual(error?.code, .busy)
        XCTAssertTrue(error?.message.contains("too many connections") ?? false, "\(String(describing: error))")

        let patient = KamiClient(.init(
            endpoint: kamid.tcp, connection: ConnectionOptions(credentials: try kamid.credentials),
            retry: RetryPolicy(attempts: 50, backoffMsInitial: 10, backoffMsMax: 40)))
        let release = Thread {
            usleep(300_000)
            holder.close()
        }
        release.start()
        let ms = try elapsedMs { try patient.ping() }
        XCTAssertGreaterThanOrEqual(ms, 250, "BUSY was retried until the holder left")
    }
}
