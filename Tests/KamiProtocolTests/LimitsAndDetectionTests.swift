import KamiCore
import KamiProtocol
import XCTest

final class LimitsAndDetectionTests: XCTestCase {
    func testLimitRelationsHold() {
        ProtocolLimits.check()
        XCTAssertEqual(ProtocolLimits.frameBytesMax, 65_536)
        XCTAssertEqual(ProtocolLimits.jsonLineBytesMax, 65_536)
        XCTAssertEqual(ProtocolLimits.frameHeaderBytes + ProtocolLimits.framePayloadBytesMax,
                       ProtocolLimits.frameBytesMax)
    }

    func testEncodingIsDetectedFromTheFirstByte() {
        XCTAssertEqual(WireEncoding.detect(firstByte: 0xB1), .binary)
        for byte in "{ \t\r\n".utf8 { XCTAssertEqual(WireEncoding.detect(firstByte: byte), .json, "\(byte)") }
        var others = 0
        for byte in UInt8.min...UInt8.max where !"{ \t\r\n".utf8.contains(byte) && byte != 0xB1 {
            XCTAssertNil(WireEncoding.detect(firstByte: byte), "\(byte)")
            others += 1
        }
        XCTAssertEqual(others, 250)
    }

    func testEveryEncodedRequestStartsWithTheByteThatDetectsIt() throws {
        for request in Fixtures.storefrontRequests {
            var binary: [UInt8] = []
            try BinaryCodec.encode(request, into: &binary)
            XCTAssertEqual(WireEncoding.detect(firstByte: binary[0]), .binary)
            var json: [UInt8] = []
            try JSONCodec.encode(request, into: &json)
            XCTAssertEqual(WireEncoding.detect(firstByte: json[0]), .json)
        }
    }
}

final class NameTableTests: XCTestCase {
    /// The decoder matches op and field names from byte tables; every name must decode to
    /// its own operation, and a near miss to none.
    func testEveryOpNameDecodesToItsOperation() {
        for op in WireOp.allCases {
            let result = bytes("{\"op\":\"\(op.name)\"}\n").decode(JSONCodec.decodeRequest)
            guard let (request, _) = expectItem(result) else { continue }
            XCTAssertEqual(request.op, op)
            for miss in [op.name + "x", String(op.name.dropLast()), op.name.uppercased()] {
                let result = bytes("{\"op\":\"\(miss)\"}\n").decode(JSONCodec.decodeRequest)
                XCTAssertEqual(expectFailure(result)?.error.code, .badRequest, miss)
            }
        }
    }

    /// Every request field is read under its documented name (and a request with all of
    /// them set round-trips through JSON).
    func testEveryFieldNameIsRecognised() throws {
        let line = "{\"id\":1,\"op\":\"sku_set\",\"order\":\"o\",\"user\":\"u\",\"sku\":\"s\",\"qty\":2,\"ttl_ms\":3,"
            + "\"payment_ref\":\"p\",\"ip\":\"i\",\"device\":\"d\",\"client\":\"c\",\"token\":\"t\",\"name\":\"n\","
            + "\"price_cents\":4,\"per_user_limit\":5,\"activation_url\":\"a\",\"path\":\"pa\",\"batch\":\"b\","
            + "\"code_id\":6,\"with_secrets\":true,\"dry_run\":false,\"replace\":true}\n"
        guard let (request, _) = expectItem(bytes(line).decode(JSONCodec.decodeRequest)) else { return }
        var expected = Request(id: .number(1), op: .skuSet)
        expected.order = "o"
        expected.user = "u"
        expected.sku = "s"
        expected.qty = 2
        expected.ttlMs = 3
        expected.paymentRef = "p"
        expected.ip = "i"
        expected.device = "d"
        expected.client = "c"
        expected.token = "t"
        expected.name = "n"
        expected.priceCents = 4
        expected.perUserLimit = 5
        expected.activationURL = "a"
        expected.path = "pa"
        expected.batch = "b"
        expected.codeID = 6
        expected.withSecrets = true
        expected.dryRun = false
        expected.replace = true
        XCTAssertEqual(request, expected)
        var out: [UInt8] = []
        try JSONCodec.encode(expected, into: &out)
        XCTAssertEqual(text(out), line)
    }
}
