import KamiClient
import KamiCore
import KamiProtocol
import XCTest

/// Many requests in flight on one connection.
final class PipelineTests: XCTestCase {
    func testFiveHundredPipelinedIssuesInBinary() throws {
        try pipelineFiveHundred(encoding: .binary)
    }

    func testFiveHundredPipelinedIssuesInJSON() throws {
        try pipelineFiveHundred(encoding: .json)
    }

    private func pipelineFiveHundred(encoding: WireEncoding) throws {
        let kamid = try Kamid()
        try kamid.stock(count: 500)
        let connection = try KamiConnection(
            endpoint: kamid.tcp, options: ConnectionOptions(encoding: encoding, credentials: try kamid.credentials))
        let requests = (0..<500).map { index in
            var request = Request.issue(order: "P\(index)", user: "user\(index % 50)", sku: "vip", qty: 1,
                                        paymentRef: "pay-\(index)")
            request.id = .string("r\(index)")
            return request
        }
        let replies = try connection.pipeline(requests)
        XCTAssertEqual(replies.count, 500)
        var codeIDs = Set<Int64>()
        for (index, reply) in replies.enumerated() {
            XCTAssertEqual(reply.id, .string("r\(index)"), "replies in request order with the caller's ids")
            guard case .success(.order(let order)) = reply.result else {
                return XCTFail("reply \(index): \(reply)")
            }
            XCTAssertEqual(order.order, "P\(index)", "reply \(index) answers its own request")
            XCTAssertEqual(order.state, .committed)
            codeIDs.formUnion(order.codes.map(\.codeID))
        }
        XCTAssertEqual(codeIDs.count, 500, "500 distinct codes, none twice")
        let stock = try connection.send(.stock(sku: "vip"))
        guard case .success(.stock(let counters)) = stock.result else { return XCTFail("\(stock)") }
        XCTAssertEqual([counters.available, counters.issued], [0, 500])

        // The same batch again: every order answers with its first codes, nothing more issued.
        let repeated = try connection.pipeline(requests)
        XCTAssertEqual(repeated.map(\.result), replies.map(\.result))
        XCTAssertTrue(connection.isOpen)
    }

    func testPipelineWithFailuresInPlace() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 3)
        for encoding in [WireEncoding.binary, .json] {
            let connection = try KamiConnection(
                endpoint: kamid.unix, options: ConnectionOptions(encoding: encoding))
            let prefix = encoding == .binary ? "b" : "j"
            let requests: [Request] = [
                .ping(),
                .issue(order: "\(prefix)1", user: "u", sku: "vip", qty: 1, paymentRef: "p"),
                .stock(sku: "nope"),
                .lookUp(order: "missing", user: "nobody"),
                .issue(order: "\(prefix)2", user: "u", sku: "vip", qty: 5, paymentRef: "p"),
                .ping(),
            ]
            let replies = try connection.pipeline(requests)
            XCTAssertEqual(replies.map(\.result.failureCode), [nil, nil, .notFound, .notFound, .soldOut, nil],
                           "\(encoding)")
            guard case .success(.order(let issued)) = replies[1].result,
                case .success(.order(let looked)) = try connection.send(.lookUp(order: "\(prefix)1", user: "u")).result
            else { return XCTFail("\(replies)") }
            XCTAssertEqual(issued.codes, looked.codes)
        }
    }

    func testEmptyAndOversizedPipelines() throws {
        let kamid = try Kamid()
        let connection = try KamiConnection(endpoint: kamid.unix)
        XCTAssertEqual(try connection.pipeline([]), [])
        let tooMany = Array(repeating: Request.ping(), count: ClientLimits.pipelineRequestsMax + 1)
        XCTAssertEqual(kamiError { try connection.pipeline(tooMany) }?.code, .badRequest)
        XCTAssertTrue(connection.isOpen, "refused before anything was sent")
        XCTAssertEqual(try connection.pipeline(Array(repeating: .ping(), count: 2_000)).count, 2_000)
    }

    func testClientPipelineUsesThePool() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 10)
        let client = KamiClient(endpoint: kamid.tcp, credentials: try kamid.credentials)
        let replies = try client.pipeline((0..<10).map {
            .issue(order: "Q\($0)", user: "u\($0)", sku: "vip", qty: 1, paymentRef: "p")
        })
        XCTAssertEqual(replies.compactMap { try? $0.successBody() }.count, 10)
        XCTAssertEqual(client.idleConnections, 1)
    }
}
