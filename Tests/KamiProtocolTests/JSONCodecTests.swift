import KamiCore
import KamiProtocol
import XCTest

final class JSONCodecTests: XCTestCase {
    private func line(_ request: Request) throws -> [UInt8] {
        var out: [UInt8] = []
        try JSONCodec.encode(request, into: &out)
        return out
    }

    private func line(_ reply: Reply) -> [UInt8] {
        var out: [UInt8] = []
        JSONCodec.encode(reply, into: &out)
        return out
    }

    private func decodeRequest(_ text: String) -> DecodeResult<Request> {
        bytes(text).decode(JSONCodec.decodeRequest)
    }

    /// Asserts that `text` is refused (not fatally) with exactly `message`, consuming all of
    /// it, and returns the id it carried.
    @discardableResult
    private func assertRefused(_ text: String, _ message: String, file: StaticString = #filePath, line: UInt = #line)
        -> RequestID?
    {
        guard let failure = expectFailure(decodeRequest(text), file: file, line: line) else { return nil }
        XCTAssertFalse(failure.fatal, file: file, line: line)
        XCTAssertEqual(failure.error.code, .badRequest, file: file, line: line)
        XCTAssertEqual(failure.error.message, message, file: file, line: line)
        XCTAssertEqual(failure.consumed, text.utf8.count, file: file, line: line)
        return failure.id
    }

    /// Asserts a refusal whose message contains `fragment`, and returns the id.
    @discardableResult
    private func assertRefused(_ text: String, containing fragment: String, file: StaticString = #filePath,
                               line: UInt = #line) -> RequestID?
    {
        guard let failure = expectFailure(decodeRequest(text), file: file, line: line) else { return nil }
        XCTAssertFalse(failure.fatal, file: file, line: line)
        XCTAssertEqual(failure.error.code, .badRequest, file: file, line: line)
        XCTAssertTrue(failure.error.message.contains(fragment), "\(failure.error.message)", file: file, line: line)
        XCTAssertEqual(failure.consumed, text.utf8.count, file: file, line: line)
        return failure.id
    }

    // MARK: Round trips

    func testEveryRequestRoundTrips() throws {
        for request in Fixtures.storefrontRequests + Fixtures.operatorRequests {
            let encoded = try line(request)
            XCTAssertEqual(encoded.last, 0x0A)
            XCTAssertEqual(encoded.filter { $0 == 0x0A }.count, 1, "one line")
            guard let (decoded, consumed) = expectItem(encoded.decode(JSONCodec.decodeRequest)) else { continue }
            XCTAssertEqual(decoded, request, "\(request.op)")
            XCTAssertEqual(consumed, encoded.count)
        }
    }

    func testEveryReplyBodyRoundTrips() {
        for reply in Fixtures.jsonReplies {
            let encoded = line(reply)
            guard let (decoded, consumed) = expectItem(encoded.decode(JSONCodec.decodeReply)) else { continue }
            XCTAssertEqual(decoded, reply, text(encoded))
            XCTAssertEqual(consumed, encoded.count)
        }
    }

    func testSecretsRoundTripByteExactAndNeverAsRedacted() {
        let order = WireOrder(order: "o", state: .committed, sku: "s", qty: 1, expiresAtMs: 0,
                              codes: [WireCode(codeID: 1, sku: "s", secret: Fixtures.trickySecret)])
        let encoded = line(Reply(id: .number(1), result: .success(.order(order))))
        XCTAssertFalse(text(encoded).contains("redacted"))
        guard let (reply, _) = expectItem(encoded.decode(JSONCodec.decodeReply)),
            case .success(.order(let decoded)) = reply.result
        else { return }
        XCTAssertEqual(decoded.codes[0].secret?.bytes, Fixtures.trickySecret.bytes)
    }

    // MARK: Exact output

    func testOrderReplyHasTheDocumentedShape() {
        let order = WireOrder(order: "o1", state: .committed, sku: "vip", qty: 1, expiresAtMs: 0,
                              codes: [WireCode(codeID: 123, sku: "vip", secret: Secret("S3CR3T"))])
        XCTAssertEqual(text(line(Reply(id: .number(1), result: .success(.order(order))))),
            #"{"id":1,"ok":true,"order":"o1","state":"committed","sku":"vip","qty":1,"expires_at_ms":0,"#
            + #""codes":[{"code_id":123,"sku":"vip","secret":"S3CR3T","card_number":null,"activation_url":null}]}"#
            + "\n")
    }

    func testEntitlementsStockEmptyAndFieldsHaveTheDocumentedShape() {
        let code = WireCode(codeID: 5, sku: "vip", secret: nil, cardNumber: "c", activationURL: "u",
                            state: .issued, order: "o1")
        XCTAssertEqual(text(line(Reply(id: .string("x"), result: .success(.codes([code], nextCursor: nil))))),
            #"{"id":"x","ok":true,"codes":[{"code_id":5,"sku":"vip","secret":null,"card_number":"c","#
            + #""activation_url":"u","order":"o1","state":"issued"}],"next_cursor":null}"# + "\n")
        XCTAssertEqual(text(line(Reply(id: .none, result: .success(.stock(Fixtures.stock))))),
            #"{"id":null,"ok":true,"sku":"vip","available":10,"reserved":2,"issued":5,"voided":1,"imported":18}"#
            + "\n")
        XCTAssertEqual(text(line(Reply(id: .bool(true), result: .success(.empty)))), #"{"id":true,"ok":true}"# + "\n")
        XCTAssertEqual(text(line(Reply(id: .number(-3), result: .success(.fields([
            ("a", .array([.int(1), .null])), ("b", .object([("c", .bool(false))])),
        ]))))), #"{"id":-3,"ok":true,"a":[1,null],"b":{"c":false}}"# + "\n")
    }

    func testErrorReplyHasTheDocumentedShapeAndEscapes() {
        let message = "q\" b\\ nl\n tab\t bell\u{07} del\u{7f} 中文 😀"
        XCTAssertEqual(text(line(Reply(id: .string("r-1"), result: .failure(KamiError(.soldOut, message))))),
            #"{"id":"r-1","ok":false,"error":{"code":"SOLD_OUT","message":"q\" b\\ nl\n tab\t bell\u0007 del"#
            + "\u{7f} 中文 😀\"}}\n")
    }

    func testReplyOverTheLimitBecomesTooLarge() {
        let code = WireCode(codeID: 1, sku: "s", secret: Secret(String(repeating: "\u{01}", count: 60_000)))
        let order = WireOrder(order: "o", state: .committed, sku: "s", qty: 10, expiresAtMs: 0,
                              codes: Array(repeating: code, count: 10))
        let encoded = line(Reply(id: .number(8), result: .success(.order(order))))
        guard let (reply, _) = expectItem(encoded.decode(JSONCodec.decodeReply)) else { return }
        XCTAssertEqual(reply.id, .number(8))
        guard case .failure(let error) = reply.result else { return XCTFail("expected TOO_LARGE") }
        XCTAssertEqual(error.code, .tooLarge)
    }

    func testRequestOverTheLineLimitIsNotEncoded() {
        var request = Request(id: .number(1), op: .stock)
        request.sku = String(repeating: "x", count: ProtocolLimits.jsonLineBytesMax)
        var out: [UInt8] = [7]
        XCTAssertThrowsError(try JSONCodec.encode(request, into: &out)) {
            XCTAssertEqual(($0 as? KamiError)?.code, .tooLarge)
        }
        XCTAssertEqual(out, [7])
    }

    // MARK: Framing

    func testEveryPrefixOfALineNeedsMore() throws {
        let encoded = try line(Fixtures.storefrontRequests[5])
        for cut in 0..<encoded.count {
            let result = Array(encoded[..<cut]).decode(JSONCodec.decodeRequest)
            XCTAssertTrue(isNeedMore(result), "cut at \(cut): \(describe(result))")
        }
        let reply = line(Reply(id: .number(1), result: .success(.order(Fixtures.committedOrder))))
        for cut in 0..<reply.count {
            XCTAssertTrue(isNeedMore(Array(reply[..<cut]).decode(JSONCodec.decodeReply)), "cut at \(cut)")
        }
    }

    func testTwoLinesBackToBackDecodeAsTwo() throws {
        let first = try line(Fixtures.storefrontRequests[2])
        let second = try line(Fixtures.operatorRequests[0])
        let stream = first + second + bytes("{\"id\"")
        guard let (one, used) = expectItem(stream.decode(JSONCodec.decodeRequest)) else { return }
        XCTAssertEqual(one, Fixtures.storefrontRequests[2])
        XCTAssertEqual(used, first.count)
        let rest = Array(stream[used...])
        guard let (two, usedAgain) = expectItem(rest.decode(JSONCodec.decodeRequest)) else { return }
        XCTAssertEqual(two, Fixtures.operatorRequests[0])
        XCTAssertEqual(usedAgain, second.count)
        XCTAssertTrue(isNeedMore(Array(rest[usedAgain...]).decode(JSONCodec.decodeRequest)))
    }

    func testCRLFIsAccepted() {
        let input = "{\"id\":1,\"op\":\"ping\"}\r\n"
        guard let (request, consumed) = expectItem(decodeRequest(input)) else { return }
        XCTAssertEqual(request, Request(id: .number(1), op: .ping))
        XCTAssertEqual(consumed, input.utf8.count)
    }

    func testBlankLinesAreSkippedAndConsumedWithTheNextLine() {
        let input = "\n\r\n  \t \n{\"op\":\"ping\"}\n{\"op\""
        guard let (request, consumed) = expectItem(decodeRequest(input)) else { return }
        XCTAssertEqual(request, Request(id: .none, op: .ping))
        XCTAssertEqual(consumed, "\n\r\n  \t \n{\"op\":\"ping\"}\n".utf8.count)
        XCTAssertTrue(isNeedMore(decodeRequest("\n\n \r\n")))
    }

    func testWhitespaceAroundTokensIsAccepted() {
        let input = "  { \"id\" : 1 ,\t\"op\" : \"stock\" , \"sku\":\"v\" }  \r\n"
        guard let (request, _) = expectItem(decodeRequest(input)) else { return }
        XCTAssertEqual(request.sku, "v")
        XCTAssertEqual(request.op, .stock)
    }

    func testALineOverTheLimitIsFatalTooLarge() {
        let long = [UInt8](repeating: UInt8(ascii: "a"), count: ProtocolLimits.jsonLineBytesMax)
        guard let failure = expectFailure(long.decode(JSONCodec.decodeRequest)) else { return }
        XCTAssertTrue(failure.fatal)
        XCTAssertEqual(failure.error.code, .tooLarge)
        XCTAssertEqual(failure.consumed, long.count)
        // Also when the newline arrives one byte too late, and when only blank lines came.
        XCTAssertTrue(expectFailure((long + [0x0A]).decode(JSONCodec.decodeRequest))?.fatal ?? false)
        let blanks = [UInt8](repeating: 0x0A, count: ProtocolLimits.jsonLineBytesMax)
        XCTAssertEqual(expectFailure(blanks.decode(JSONCodec.decodeRequest))?.error.code, .tooLarge)
        XCTAssertTrue(isNeedMore(Array(long.dropLast()).decode(JSONCodec.decodeRequest)))
    }

    func testALineOfExactlyTheLimitIsAccepted() {
        let head = "{\"id\":1,\"op\":\"ping\",\"pad\":\""
        let tail = "\"}\n"
        let pad = String(repeating: "p", count: ProtocolLimits.jsonLineBytesMax - head.utf8.count - tail.utf8.count)
        let input = head + pad + tail
        XCTAssertEqual(input.utf8.count, ProtocolLimits.jsonLineBytesMax)
        guard let (request, consumed) = expectItem(decodeRequest(input)) else { return }
        XCTAssertEqual(request.op, .ping)
        XCTAssertEqual(consumed, input.utf8.count)
    }

    // MARK: Refusals

    func testMalformedLinesAreRefusedWithTheIdWhenItWasRead() {
        XCTAssertEqual(assertRefused("{\"id\":1,\"op\":\"ping\"\n", containing: "malformed JSON"), .number(1))
        XCTAssertEqual(assertRefused("{\"id\":7, \"op\":\n", containing: "malformed JSON"), .number(7))
        XCTAssertEqual(assertRefused("not json\n", containing: "malformed JSON at byte 0"), RequestID.none)
        assertRefused("[1,2]\n", containing: "expected '{'")
        assertRefused("{\"op\":\"ping\"} x\n", containing: "unexpected bytes after the object")
        assertRefused("{\"op\":\"ping\",}\n", containing: "expected a field name")
        assertRefused("{\"op\" \"ping\"}\n", containing: "expected ':'")
        assertRefused("{\"op\":'ping'}\n", containing: "expected a value")
        assertRefused("{\"qty\":01,\"op\":\"ping\"}\n", containing: "leading zero")
        assertRefused("{\"qty\":-,\"op\":\"ping\"}\n", containing: "expected a digit")
        assertRefused("{\"op\":tru}\n", containing: "expected true")
        assertRefused("{\"op\":\"ping\"}{\"op\":\"ping\"}\n", containing: "unexpected bytes")
    }

    func testUnknownOpIsRefusedWithoutEchoingIt() {
        let id = assertRefused("{\"id\":\"a\",\"op\":\"fly-me-to-the-moon\"}\n",
                               containing: "unknown op; one of: hello")
        XCTAssertEqual(id, .string("a"))
        guard let failure = expectFailure(decodeRequest("{\"op\":\"fly-me-to-the-moon\"}\n")) else { return }
        XCTAssertFalse(failure.error.message.contains("moon"))
    }

    func testMissingOpIsRefused() {
        XCTAssertEqual(assertRefused("{\"id\":3}\n", containing: "missing field op"), .number(3))
        assertRefused("{}\n", containing: "missing field op")
        assertRefused("{\"op\":null,\"id\":4}\n", containing: "missing field op")
        assertRefused("{\"op\":5}\n", containing: "field op must be a string")
    }

    func testWrongTypesAreRefusedNamingTheField() {
        XCTAssertEqual(assertRefused("{\"id\":1,\"op\":\"reserve\",\"qty\":\"2\"}\n", "field qty must be an integer"),
                       .number(1))
        assertRefused("{\"op\":\"reserve\",\"qty\":2.5}\n", "field qty must be an integer (no fraction or exponent)")
        assertRefused("{\"op\":\"reserve\",\"qty\":1e2}\n", "field qty must be an integer (no fraction or exponent)")
        assertRefused("{\"op\":\"reserve\",\"ttl_ms\":99999999999999999999}\n",
                      "field ttl_ms is out of range for a 64-bit integer")
        assertRefused("{\"op\":\"issue\",\"order\":5}\n", "field order must be a string")
        assertRefused("{\"op\":\"export\",\"with_secrets\":1}\n", "field with_secrets must be true or false")
        assertRefused("{\"op\":\"sku_set\",\"price_cents\":true}\n", "field price_cents must be an integer")
    }

    func testTheIdIsCarriedEvenWhenItComesAfterTheProblem() {
        XCTAssertEqual(assertRefused("{\"op\":\"reserve\",\"qty\":\"2\",\"id\":9}\n", "field qty must be an integer"),
                       .number(9))
        XCTAssertEqual(assertRefused("{\"op\":\"ping\",\"x\":[1,{\"y\":\"]}\"}],\"id\":\"late\"}\n",
                                     containing: "not objects or arrays"), .string("late"))
    }

    func testNestedValuesAreRefused() {
        assertRefused("{\"id\":1,\"op\":\"issue\",\"order\":{\"a\":1}}\n",
                      "field order must be a string, number, true, false or null, not an object or array")
        assertRefused("{\"op\":\"ping\",\"future\":[]}\n", containing: "not objects or arrays")
        assertRefused("{\"op\":\"ping\",\"future\":[[[[\n", containing: "unterminated object or array")
    }

    func testDuplicateKeysAreRefused() {
        assertRefused("{\"id\":1,\"op\":\"ping\",\"op\":\"ping\"}\n", "field op appears twice")
        assertRefused("{\"op\":\"ping\",\"x\":1,\"x\":2}\n", "a field name appears twice")
        assertRefused("{\"op\":\"ping\",\"\\u006fp\":\"ping\"}\n", "field op appears twice")
        assertRefused("{\"op\":\"ping\",\"x\\u0041\":1,\"xA\":2}\n", "a field name appears twice")
    }

    func testUnknownScalarFieldsAreIgnored() {
        guard let (request, _) = expectItem(decodeRequest(
            "{\"id\":1,\"op\":\"ping\",\"future\":\"x\",\"ratio\":1.5,\"big\":1e400,\"flag\":false,\"n\":null}\n"))
        else { return }
        XCTAssertEqual(request, Request(id: .number(1), op: .ping))
    }

    func testNullMeansAbsent() {
        guard let (request, _) = expectItem(decodeRequest(
            "{\"op\":\"reserve\",\"ip\":null,\"device\":null,\"qty\":null,\"dry_run\":null,\"id\":null}\n"))
        else { return }
        XCTAssertEqual(request, Request(id: .none, op: .reserve))
    }

    func testTTLZeroMeansTheServerDefault() {
        guard let (request, _) = expectItem(decodeRequest("{\"op\":\"reserve\",\"ttl_ms\":0}\n")) else { return }
        XCTAssertNil(request.ttlMs)
    }

    // MARK: Strings

    func testEveryEscapeDecodes() {
        let input = #"{"op":"order","order":"a\"b\\c\/d\b\f\n\r\t\u00e9\u4E2D\ud83d\ude00\u0000end"}"# + "\n"
        guard let (request, _) = expectItem(decodeRequest(input)) else { return }
        XCTAssertEqual(request.order, "a\"b\\c/d\u{8}\u{c}\n\r\té中😀\u{0}end")
    }

    func testRawUTF8IsKeptAndCheckedAndEscapedKeysMatch() {
        let input = "{\"o\\u0070\":\"stock\",\"sku\":\"月卡-é-😀\"}\n"
        guard let (request, _) = expectItem(decodeRequest(input)) else { return }
        XCTAssertEqual(request.op, .stock)
        XCTAssertEqual(request.sku, "月卡-é-😀")
        var invalid = bytes("{\"op\":\"stock\",\"sku\":\"")
        invalid += [0xC3, 0x28]
        invalid += bytes("\"}\n")
        guard let failure = expectFailure(invalid.decode(JSONCodec.decodeRequest)) else { return }
        XCTAssertTrue(failure.error.message.contains("invalid UTF-8"), failure.error.message)
        XCTAssertFalse(failure.fatal)
    }

    /// The scanner skips plain bytes eight at a time; a special byte at any offset within
    /// or across those words must still be found.
    func testSpecialBytesAreFoundAtEveryOffset() {
        let specials: [(spelled: String, meaning: String)] = [
            ("\\\"", "\""), ("\\\\", "\\"), ("\\n", "\n"), ("é", "é"), ("😀", "😀"), ("\\u00e9", "é"),
            ("中", "中"), ("\\ud83d\\ude00", "😀"),
        ]
        for before in 0..<18 {
            for after in [0, 1, 7, 9] {
                for special in specials {
                    let head = String(repeating: "a", count: before)
                    let tail = String(repeating: "b", count: after)
                    let input = "{\"op\":\"order\",\"order\":\"\(head)\(special.spelled)\(tail)\"}\n"
                    guard let (request, _) = expectItem(decodeRequest(input)) else { continue }
                    XCTAssertEqual(request.order, head + special.meaning + tail, input)
                }
                var raw = bytes("{\"op\":\"order\",\"order\":\"" + String(repeating: "a", count: before))
                raw += [0x01] + bytes(String(repeating: "b", count: after) + "\"}\n")
                XCTAssertEqual(expectFailure(raw.decode(JSONCodec.decodeRequest))?.error.code, .badRequest)
            }
        }
    }

    func testBadEscapesAndSurrogatesAreRefused() {
        assertRefused(#"{"op":"order","order":"\ud83d"}"# + "\n", containing: "high surrogate")
        assertRefused(#"{"op":"order","order":"\ud83d\u0041"}"# + "\n", containing: "high surrogate")
        assertRefused(#"{"op":"order","order":"\ude00"}"# + "\n", containing: "lone low surrogate")
        assertRefused(#"{"op":"order","order":"\x41"}"# + "\n", containing: "invalid escape")
        assertRefused(#"{"op":"order","order":"\u12G4"}"# + "\n", containing: "four hex digits")
        assertRefused(#"{"op":"order","order":"\u12"}"# + "\n", containing: "four hex digits")
        assertRefused("{\"op\":\"order\",\"order\":\"tab\there\"}\n", containing: "raw control character")
        assertRefused("{\"op\":\"order\",\"order\":\"open\n", containing: "unterminated string")
    }

    // MARK: Ids

    func testIdsOfEveryScalarKindAreEchoed() throws {
        let cases: [(String, RequestID)] = [
            ("1", .number(1)), ("-42", .number(-42)), ("9223372036854775807", .number(Int64.max)),
            ("-9223372036854775808", .number(Int64.min)), ("\"r-1\"", .string("r-1")), ("\"\\u4e2d\"", .string("中")),
            ("true", .bool(true)), ("false", .bool(false)), ("null", .none),
        ]
        for (spelling, id) in cases {
            let input = "{\"id\":\(spelling),\"op\":\"ping\"}\n"
            guard let (request, _) = expectItem(decodeRequest(input)) else { continue }
            XCTAssertEqual(request.id, id, spelling)
            let reply = line(Reply(id: request.id, result: .success(.empty)))
            let expected = spelling == "\"\\u4e2d\"" ? "\"中\"" : spelling
            XCTAssertEqual(text(reply), "{\"id\":\(expected),\"ok\":true}\n")
            XCTAssertEqual(expectItem(reply.decode(JSONCodec.decodeReply))?.0.id, id)
        }
        guard let (noID, _) = expectItem(decodeRequest("{\"op\":\"ping\"}\n")) else { return }
        XCTAssertEqual(noID.id, RequestID.none)
    }

    func testNonIntegerNumberIdsAreRefused() {
        for spelling in ["1.5", "1e3", "9223372036854775808", "-0.0"] {
            let id = assertRefused("{\"id\":\(spelling),\"op\":\"ping\"}\n",
                                   "id must be an integer within 64 bits, a string, true, false or null")
            XCTAssertEqual(id, RequestID.none)
        }
    }

    // MARK: Reply decoding

    func testReplyBodiesAreRecognisedByTheirKeysOtherwiseFields() {
        let cases: [(String, ReplyBody)] = [
            ("{\"ok\":true,\"id\":1}", .empty),
            ("{\"ok\":true,\"codes\":[]}", .codes([], nextCursor: nil)),
            ("{\"ok\":true,\"codes\":5}", .fields([("codes", .int(5))])),
            ("{\"ok\":true,\"sku\":\"v\",\"available\":1}", .fields([("sku", .string("v")), ("available", .int(1))])),
            ("{\"ok\":true,\"imported\":3,\"duplicates\":[]}",
             .fields([("imported", .int(3)), ("duplicates", .array([]))])),
        ]
        for (input, body) in cases {
            guard let (reply, _) = expectItem(bytes(input + "\n").decode(JSONCodec.decodeReply)) else { continue }
            XCTAssertEqual(reply.result, .success(body), input)
        }
    }

    func testMalformedRepliesAreNonFatalFailures() {
        let cases = [
            "{\"id\":1}", "{\"id\":2,\"ok\":false}",
            "{\"ok\":true,\"n\":1.5}", "[1]", "{\"ok\":true,\"a\":1,\"a\":2}",
            String(repeating: "[", count: ProtocolLimits.jsonDepthMax + 2),
        ]
        for input in cases {
            guard let failure = expectFailure(bytes(input + "\n").decode(JSONCodec.decodeReply)) else { continue }
            XCTAssertFalse(failure.fatal, input)
            XCTAssertEqual(failure.consumed, input.utf8.count + 1, input)
        }
        // A reply to an op that lacks a field the op's body must have.
        let short = bytes("{\"id\":3,\"ok\":true,\"order\":\"A\"}\n")
        let failure = expectFailure(short.withUnsafeBytes { JSONCodec.decodeReply($0, op: .order) })
        XCTAssertEqual(failure?.id, .number(3))
        XCTAssertTrue(failure?.error.message.contains("order reply lacks") == true, failure?.error.message ?? "")
    }

    /// A newer server may add fields to any reply, states and error codes: an old client
    /// ignores the fields and reads the names as `.other`.
    func testRepliesFromANewerServerAreReadForwardCompatibly() {
        let order = #"{"id":1,"ok":true,"order":"A1","state":"in_review","sku":"vip","qty":1,"#
            + #""expires_at_ms":0,"amount_cents":990,"codes":[{"code_id":5,"sku":"vip","secret":"S","#
            + #""card_number":null,"activation_url":null,"used_at_ms":7}],"risk":{"score":3}}"# + "\n"
        for op: WireOp? in [nil, .order] {
            let result = bytes(order).withUnsafeBytes { JSONCodec.decodeReply($0, op: op) }
            guard let (reply, _) = expectItem(result), case .success(.order(let wire)) = reply.result else {
                XCTFail("order not read with op \(String(describing: op))")
                continue
            }
            XCTAssertEqual(wire.state, .other("in_review"))
            XCTAssertEqual(wire.state.name, "in_review")
            XCTAssertEqual(wire.codes.map(\.codeID), [5])
            XCTAssertEqual(wire.codes.first?.secret?.reveal(), "S")
        }
        let codes = #"{"id":2,"ok":true,"codes":[{"code_id":1,"sku":"v","secret":null,"card_number":null,"#
            + #""activation_url":null,"order":"o","state":"archived"}],"next_cursor":"9.0","total":40}"# + "\n"
        guard let (page, _) = expectItem(bytes(codes).withUnsafeBytes { JSONCodec.decodeReply($0, op: .entitlements) }),
            case .success(.codes(let items, let next)) = page.result
        else { return XCTFail("entitlements not read") }
        XCTAssertEqual(items.first?.state, .other("archived"))
        XCTAssertEqual(next, "9.0")
        let error = "{\"id\":3,\"ok\":false,\"error\":{\"code\":\"RISK_DENIED\",\"message\":\"m\"},\"retry_after_ms\":5}\n"
        guard let (denied, _) = expectItem(bytes(error).decode(JSONCodec.decodeReply)) else { return }
        XCTAssertEqual(denied.result, .failure(KamiError(.other("RISK_DENIED"), "m")))
        XCTAssertFalse(ErrorCode.other("RISK_DENIED").isKnown)
        let ping = "{\"id\":4,\"ok\":true,\"server_time_ms\":1}\n"
        guard let (pong, _) = expectItem(bytes(ping).withUnsafeBytes { JSONCodec.decodeReply($0, op: .ping) }) else { return }
        XCTAssertEqual(pong.result, .success(.empty))
        let hello = #"{"id":5,"ok":true,"protocol":2,"server":"kamid","features":["binary","webhooks"],"x":1}"# + "\n"
        guard let (said, _) = expectItem(bytes(hello).decode(JSONCodec.decodeReply)),
            case .success(.hello(let info)) = said.result
        else { return XCTFail("hello not read") }
        XCTAssertEqual(info, WireHello(protocolVersion: 2, server: "kamid", features: ["binary", "webhooks"]))
    }
}
