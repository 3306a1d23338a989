import KamiClient
import KamiCore
import KamiCtl
import KamiProtocol
import XCTest

/// Against a real kamid: `hello` announces the protocol version and features, and
/// `entitlements` comes in pages, newest order first, over each encoding and through kamictl.
final class PagingAndHelloTests: XCTestCase {
    func testHelloAnnouncesTheProtocolAndFeatures() throws {
        let kamid = try Kamid()
        for encoding in [WireEncoding.binary, .json] {
            let connection = try KamiConnection(
                endpoint: kamid.tcp, options: ConnectionOptions(encoding: encoding, credentials: try kamid.credentials))
            defer { connection.close() }
            let server = try XCTUnwrap(connection.server, "\(encoding)")
            XCTAssertEqual(server.protocolVersion, WireHello.currentProtocolVersion)
            XCTAssertEqual(server.server, "kamid")
            XCTAssertTrue(server.features.contains("entitlements_pages"), "\(server.features)")
        }
        // On the Unix socket hello is not needed, but answers the same.
        let unix = try KamiConnection(endpoint: kamid.unix)
        defer { unix.close() }
        XCTAssertEqual(try unix.sayHello(client: "ops", token: "").features, WireHello.currentFeatures)
    }

    func testEntitlementsComeInPagesNewestOrderFirst() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 12)
        for encoding in [WireEncoding.binary, .json] {
            let options = ConnectionOptions(encoding: encoding, credentials: try kamid.credentials)
            let client = KamiClient(.init(endpoint: kamid.tcp, connection: options))
            defer { client.close() }
            let user = "pager-\(encoding)"
            var placed: [[Int64]] = []
            for n in 0..<3 {
                let order = try client.issue(order: "\(user)-\(n)", user: user, sku: "vip", qty: 2, paymentRef: "p\(n)")
                placed.append(order.codes.map(\.codeID))
            }
            var seen: [Int64] = []
            var cursor: String?
            var pages = 0
            repeat {
                let page = try client.entitlementsPage(user: user, limit: 4, cursor: cursor)
                XCTAssertLessThanOrEqual(page.codes.count, 4)
                XCTAssertTrue(page.codes.allSatisfy { $0.secret != nil && $0.state == .issued })
                seen += page.codes.map(\.codeID)
                cursor = page.nextCursor
                pages += 1
            } while cursor != nil && pages < 10
            XCTAssertEqual(pages, 2, "\(encoding)")
            XCTAssertEqual(seen, placed.reversed().flatMap { $0 }, "newest order first, each order's codes in order")
            // The limit is bounded, and a cursor kamid did not give is refused.
            XCTAssertThrowsError(try client.entitlementsPage(user: user, limit: Limits.entitlementsPageMax + 1)) { error in
                XCTAssertEqual((error as? KamiError)?.code, .badRequest)
            }
            XCTAssertThrowsError(try client.entitlementsPage(user: user, cursor: "nonsense")) { error in
                XCTAssertEqual((error as? KamiError)?.code, .badRequest)
            }
        }
        // kamictl pages too, and says where the next page starts.
        let socket = ["--socket", kamid.socketPath]
        let first = try KamictlRun(socket + ["entitlements", "pager-json", "--limit", "5"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let more = try XCTUnwrap(first.stdout.split(separator: "\n").first { $0.contains("next page starts at cursor") })
        let next = String(try XCTUnwrap(more.split(separator: " ").last)).trimmingCharacters(in: CharacterSet(charactersIn: ")"))
        let second = try KamictlRun(socket + ["entitlements", "pager-json", "--limit", "5", "--cursor", next])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertFalse(second.stdout.contains("next page"), second.stdout)
        XCTAssertEqual(second.stdout.split(separator: "\n").filter { $0.contains("delivered") }.count, 1)
    }
}
