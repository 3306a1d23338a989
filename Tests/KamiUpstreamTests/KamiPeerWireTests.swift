import KamiCore
import KamiProtocol
import KamiUpstream
import XCTest

/// The kamid-to-kamid shape: requests as another kamid reads them, its replies as answers.
final class KamiPeerWireTests: XCTestCase {
    func testPlaceAndQueryLinesAndTheirAnswers() throws {
        let place = try XCTUnwrap(KamiPeerWire.request(
            .place(PlaceOrder(customerOrderNo: "k1", productID: "gold", quantity: 2)), merchant: "shop", waitMs: 4_500))
        let text = String(decoding: place, as: UTF8.self)
        XCTAssertTrue(text.contains(#""op":"issue""#) && text.contains(#""order":"shop.k1""#) && text.contains(#""wait_ms":4500"#), text)
        XCTAssertTrue(text.hasSuffix("\n"))
        let query = try XCTUnwrap(KamiPeerWire.request(.query(customerOrderNo: "k1"), merchant: "shop", waitMs: 0))
        XCTAssertTrue(String(decoding: query, as: UTF8.self).contains(#""op":"order""#))
        XCTAssertNil(KamiPeerWire.request(.products, merchant: "shop", waitMs: 0))

        let delivered = Array(#"{"id":1,"ok":true,"order":"upstream.k1","state":"committed","sku":"gold","qty":2,"expires_at_ms":0,"codes":[{"code_id":7,"sku":"gold","secret":"S-7"},{"code_id":8,"sku":"gold","secret":"S-8"}]}"#.utf8)
        XCTAssertEqual(KamiPeerWire.parse(delivered, isPlace: true, customerOrderNo: "k1"),
                       .delivered(ref: "upstream.k1", items: [WireItem(secret: "S-7"), WireItem(secret: "S-8")]))
        XCTAssertEqual(KamiPeerWire.parse(delivered, isPlace: true, customerOrderNo: "other"), .unknown("the reply names another order"))
        let soldOut = Array(#"{"id":1,"ok":false,"error":{"code":"SOLD_OUT","message":"gold is sold out"}}"#.utf8)
        XCTAssertEqual(KamiPeerWire.parse(soldOut, isPlace: true, customerOrderNo: "k1"), .failed(code: "SOLD_OUT", message: "gold is sold out"))
        XCTAssertEqual(KamiPeerWire.parse(soldOut, isPlace: false, customerOrderNo: "k1"), .unknown("gold is sold out"))
        let missing = Array(#"{"id":1,"ok":false,"error":{"code":"NOT_FOUND","message":"no order k1"}}"#.utf8)
        XCTAssertEqual(KamiPeerWire.parse(missing, isPlace: false, customerOrderNo: "k1"), .notFound)
        let busy = Array(#"{"id":1,"ok":false,"error":{"code":"BUSY","message":"retry"}}"#.utf8)
        guard case .unknown = KamiPeerWire.parse(busy, isPlace: true, customerOrderNo: "k1") else { return XCTFail("BUSY is not unknown") }
        // A resend refused for its arguments says nothing (the first send may have created it);
        // an upstream order in its dead-letter list may still be delivered.
        let badRequest = Array(#"{"id":1,"ok":false,"error":{"code":"BAD_REQUEST","message":"x"}}"#.utf8)
        guard case .unknown = KamiPeerWire.parse(badRequest, isPlace: true, customerOrderNo: "k1", firstSend: false) else {
            return XCTFail("a refused resend was taken as proof of no sale")
        }
        let failedUpstream = Array(#"{"id":1,"ok":true,"order":"upstream.k1","state":"failed","sku":"gold","qty":1,"expires_at_ms":0,"codes":[]}"#.utf8)
        guard case .unknown = KamiPeerWire.parse(failedUpstream, isPlace: false, customerOrderNo: "k1") else {
            return XCTFail("an upstream dead letter was taken as final")
        }
        XCTAssertEqual(KamiPeerWire.upstreamOrderID("k1", merchant: "shop"), "shop.k1")
        XCTAssertEqual(KamiPeerWire.upstreamOrderID(String(repeating: "x", count: 64), merchant: "shop").count, 62)
        XCTAssertNil(KamiPeerWire.checkHello(Array(#"{"id":0,"ok":true,"protocol":1,"server":"kamid","features":[]}"#.utf8)))
        XCTAssertNotNil(KamiPeerWire.checkHello(Array(#"{"id":0,"ok":false,"error":{"code":"UNAUTHORIZED","message":"bad token"}}"#.utf8)))
    }
}
