import KamiHTTP
import KamiUpstream
import XCTest

/// The signatures against vectors computed apart (Python's hashlib and hmac), and each
/// shape's round trip between kamid's side and the supplier's.
final class SupplierWireTests: XCTestCase {
    let key = Array("secret".utf8)

    func testFormSignatureMatchesAnIndependentVector() {
        let parameters = ["merchant_id": "m1", "product_id": "P1", "quantity": "2", "customer_order_no": "o-1",
                          "timestamp": "1800000000", "notify_url": "", "sign": "ignored"]
        XCTAssertEqual(SupplierWire.formSign(parameters, key: key, digest: .md5), "ECE0F3E804FD7FC35887265FDF5BA279")
    }

    func testGatewaySignatureMatchesIndependentVectors() {
        let parameters = ["app_key": "m1", "method": "kami.order.add", "timestamp": "2027-01-15 08:00:00",
                          "biz_content": "{\"buy_num\":1}"]
        XCTAssertEqual(SupplierWire.gatewaySign(parameters, key: key, digest: .md5), "fc7f58104deb939e4ff6fdc1c68125b1")
        XCTAssertEqual(SupplierWire.gatewaySign(parameters, key: key, digest: .sha256),
                       "02d0fe603e49a5560b6fe45c2701c2c30b07d107503085003e2e084025485770")
        XCTAssertEqual(SupplierWire.gatewayTime(1_800_000_000), "2027-01-15 08:00:00")
        XCTAssertEqual(SupplierWire.gatewaySeconds("2027-01-15 08:00:00"), 1_800_000_000)
        XCTAssertNil(SupplierWire.gatewaySeconds("2027-13-15 08:00:00"))
    }

    func testHMACSignatureMatchesAnIndependentVector() {
        XCTAssertEqual(SupplierWire.hmacSign(method: "POST", path: "/v1/orders", timestamp: "1800000000",
                                             body: Array("{\"a\":1}".utf8), key: key),
                       "b61b3a2964d5bbe8e6f89fca0be41f89726f9fbd818cac0e789f8c5305b69246")
    }

    func testEveryStyleRoundTripsAPlaceAndItsAnswers() throws {
        let credentials = SupplierCredentials(merchantID: "m1", key: key)
        let order = PlaceOrder(customerOrderNo: "order 1/é", productID: "P1", quantity: 2, notifyURL: "http://127.0.0.1:1/cb")
        for style in [SupplierStyle.form, .gateway, .hmac] {
            let base = HTTPURL("http://127.0.0.1:9/api")!
            let request = SupplierWire.request(.place(order), style: style, base: base, credentials: credentials, nowSeconds: 1_800_000_000)
            // The supplier reads it back exactly.
            guard case .success(.place(let decoded)) = SupplierWire.decode(request, style: style, key: key, digest: .md5,
                                                                          nowSeconds: 1_800_000_010) else {
                return XCTFail("\(style): the supplier could not read the place request")
            }
            XCTAssertEqual(decoded, order, "\(style)")
            // A wrong key, or a stale timestamp, is refused.
            XCTAssertEqual(try? SupplierWire.decode(request, style: style, key: Array("other".utf8), digest: .md5,
                                                    nowSeconds: 1_800_000_010).get(), nil)
            if case .success = SupplierWire.decode(request, style: style, key: key, digest: .md5, nowSeconds: 1_800_001_000) {
                XCTFail("\(style): a request 1000 s old was accepted")
            }
            // Each answer reads back as what the supplier meant.
            let items = [WireItem(secret: "S1", cardNumber: "C1"), WireItem(secret: "S2")]
            let cases: [(SupplierWire.OrderView.State, SupplierReply)] = [
                (.succeeded, .delivered(ref: "R1", items: items)),
                (.processing, .processing(ref: "R1")),
                (.failed, .failed(code: "x", message: "no")),
            ]
            for (state, expected) in cases {
                let view = SupplierWire.OrderView(customerOrderNo: order.customerOrderNo, supplierRef: "R1", state: state,
                                                  items: state == .succeeded ? items : [], quantity: 2, failCode: "x", message: "no")
                let reply = SupplierWire.parse(SupplierWire.encode(view, style: style), style: style, quantity: 2)
                XCTAssertEqual(reply, expected, "\(style) \(state)")
            }
            // A state that means unknown is never a failure.
            let unknown = SupplierWire.OrderView(customerOrderNo: "o", supplierRef: "R", state: .unknown, quantity: 1)
            guard case .unknown = SupplierWire.parse(SupplierWire.encode(unknown, style: style), style: style, quantity: 1) else {
                return XCTFail("\(style): unknown state read as something else")
            }
            // Refusals that prove no sale are failures; not-found is notFound.
            guard case .failed = SupplierWire.parse(SupplierWire.encode(.outOfStock, style: style), style: style, quantity: 1) else {
                return XCTFail("\(style): out of stock is not a failure")
            }
            XCTAssertEqual(SupplierWire.parse(SupplierWire.encode(.notFound, style: style), style: style, quantity: 1), .notFound)
            // Garbage and server errors are unknown, never failures.
            for garbage in [HTTPResponse(status: 200, text: "<html>"), HTTPResponse(status: 502, text: "bad gateway"),
                            HTTPResponse(status: 200, text: "{\"code\":0}")] {
                guard case .unknown = SupplierWire.parse(garbage, style: style, quantity: 1) else {
                    return XCTFail("\(style): \(garbage.bodyText) was not unknown")
                }
            }
        }
    }

    func testCallbacksAreCheckedForSignatureAndWindowInEveryStyle() {
        let credentials = SupplierCredentials(merchantID: "m1", key: key)
        let notify = HTTPURL("http://127.0.0.1:9/upstream/callback/s1")!
        let view = SupplierWire.OrderView(customerOrderNo: "o-7", supplierRef: "R7", state: .succeeded,
                                          items: [WireItem(secret: "CODE-7")], quantity: 1)
        for style in [SupplierStyle.form, .gateway, .hmac] {
            let good = SupplierWire.callback(view, style: style, notify: notify, merchantID: "m1", key: key, digest: .md5,
                                             nowSeconds: 1_800_000_000)
            switch SupplierWire.verifyCallback(good, style: style, credentials: credentials, nowSeconds: 1_800_000_030) {
            case .success(let callback):
                XCTAssertEqual(callback.customerOrderNo, "o-7")
                XCTAssertEqual(callback.reply, .delivered(ref: "R7", items: [WireItem(secret: "CODE-7")]))
            case .failure(let problem): XCTFail("\(style): \(problem)")
            }
            let forged = SupplierWire.callback(view, style: style, notify: notify, merchantID: "m1", key: Array("guess".utf8),
                                               digest: .md5, nowSeconds: 1_800_000_000)
            XCTAssertEqual(try? SupplierWire.verifyCallback(forged, style: style, credentials: credentials, nowSeconds: 1_800_000_000).get(), nil)
            if case .failure(let problem) = SupplierWire.verifyCallback(forged, style: style, credentials: credentials, nowSeconds: 1_800_000_000) {
                XCTAssertEqual(problem.description, "bad signature")
            }
            // An edited body (the signature no longer covers it) is refused too.
            var edited = good
            edited.body = Array(String(decoding: good.body, as: UTF8.self).replacingOccurrences(of: "CODE-7", with: "CODE-8").utf8)
            XCTAssertEqual(try? SupplierWire.verifyCallback(edited, style: style, credentials: credentials, nowSeconds: 1_800_000_000).get(), nil)
            let late = SupplierWire.verifyCallback(good, style: style, credentials: credentials, nowSeconds: 1_800_000_000 + 1_000)
            if case .failure(let problem) = late {
                XCTAssertTrue(problem.description.contains("timestamp"), "\(style): \(problem)")
            } else {
                XCTFail("\(style): a callback 1000 s old was accepted")
            }
        }
    }

    func testFormEncodingRoundTripsAndRefusesBadEscapes() {
        let parameters = ["a": "x y&z=é", "b": "", "c": "100%"]
        XCTAssertEqual(HTTPForm.decode(HTTPForm.encode(parameters)), parameters)
        XCTAssertNil(HTTPForm.decode("a=%zz"))
        XCTAssertNil(HTTPForm.decode("a=1&a=2"))
    }
}
