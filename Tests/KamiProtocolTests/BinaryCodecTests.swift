import KamiCore
import KamiProtocol
import XCTest

final class BinaryCodecTests: XCTestCase {
    private func encoded(_ request: Request) throws -> [UInt8] {
        var out: [UInt8] = []
        try BinaryCodec.encode(request, into: &out)
        return out
    }

    private func encoded(_ reply: Reply, _ op: WireOp) -> [UInt8] {
        var out: [UInt8] = []
        BinaryCodec.encode(reply, op: op, into: &out)
        return out
    }

    // MARK: Round trips

    func testEveryStorefrontRequestRoundTrips() throws {
        for request in Fixtures.storefrontRequests {
            let frame = try encoded(request)
            guard let (decoded, consumed) = expectItem(frame.decode(BinaryCodec.decodeRequest)) else { continue }
            XCTAssertEqual(decoded, request, "\(request.op)")
            XCTAssertEqual(consumed, frame.count)
        }
    }

    func testEveryReplyBodyRoundTripsWithItsOp() {
        for (reply, op) in Fixtures.binaryReplies {
            let frame = encoded(reply, op)
            guard let ((decoded, decodedOp), consumed) = expectItem(frame.decode(BinaryCodec.decodeReply)) else {
                continue
            }
            XCTAssertEqual(decoded, reply, "\(op)")
            XCTAssertEqual(decodedOp, op)
            XCTAssertEqual(consumed, frame.count)
        }
    }

    func testSecretsRoundTripByteExact() {
        let secret = Secret(bytes: Array("\u{0}\u{1f}\"\\ \u{7f}é中😀".utf8))
        let order = WireOrder(order: "o", state: .committed, sku: "s", qty: 1, expiresAtMs: 0,
                              codes: [WireCode(codeID: 1, sku: "s", secret: secret)])
        let frame = encoded(Reply(id: .number(1), result: .success(.order(order))), .commit)
        guard let ((reply, _), _) = expectItem(frame.decode(BinaryCodec.decodeReply)),
            case .success(.order(let decoded)) = reply.result
        else { return }
        XCTAssertEqual(decoded.codes[0].secret?.bytes, secret.bytes)
    }

    func testRequestFrameLayoutMatchesTheDocumentedBytes() throws {
        var request = Request(id: .number(0x0403_0201), op: .release)
        request.order = "A1"
        XCTAssertEqual(try encoded(request), [0xB1, 1, 6, 0, 1, 2, 3, 4, 4, 0, 0, 0, 2, 0, 0x41, 0x31])
    }

    func testErrorReplyLayoutCarriesStatusAndEchoesOp() {
        let frame = encoded(Reply(id: .number(7), result: .failure(KamiError(.soldOut, "no"))), .issue)
        XCTAssertEqual(frame, [0xB1, 1, 5, 4, 7, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0x6E, 0x6F])
    }

    func testStatusNumbersAreTheDocumentedTable() {
        let table: [ErrorCode: UInt8] = [
            .badRequest: 1, .unauthorized: 2, .notFound: 3, .soldOut: 4, .limitReached: 5, .conflict: 6,
            .expired: 7, .tooLarge: 8, .busy: 9, .unavailable: 10, .invalidState: 11, .integrity: 12,
            .denied: 13, .challenge: 14,
        ]
        XCTAssertEqual(table.count, ErrorCode.allCases.count)
        for code in ErrorCode.allCases {
            XCTAssertEqual(code.binaryStatus, table[code], "\(code)")
            XCTAssertEqual(ErrorCode(binaryStatus: code.binaryStatus), code)
        }
        XCTAssertNil(ErrorCode(binaryStatus: 0))
        XCTAssertEqual(ErrorCode(binaryStatus: 15), .other("STATUS_15"), "a newer server's code is kept, not refused")
    }

    // MARK: Framing

    func testEveryPrefixOfARequestFrameNeedsMore() throws {
        let frame = try encoded(Fixtures.storefrontRequests[5])
        for cut in 0..<frame.count {
            let result = Array(frame[..<cut]).decode(BinaryCodec.decodeRequest)
            XCTAssertTrue(isNeedMore(result), "cut at \(cut): \(describe(result))")
        }
    }

    func testEveryPrefixOfAReplyFrameNeedsMore() {
        let frame = encoded(Reply(id: .number(4), result: .success(.order(Fixtures.committedOrder))), .commit)
        for cut in 0..<frame.count {
            let result = Array(frame[..<cut]).decode(BinaryCodec.decodeReply)
            XCTAssertTrue(isNeedMore(result), "cut at \(cut): \(describe(result))")
        }
    }

    func testTwoFramesBackToBackDecodeAsTwo() throws {
        let first = try encoded(Fixtures.storefrontRequests[2])
        let second = try encoded(Fixtures.storefrontRequests[1])
        let stream = first + second + [0xB1]
        guard let (one, used) = expectItem(stream.decode(BinaryCodec.decodeRequest)) else { return }
        XCTAssertEqual(one, Fixtures.storefrontRequests[2])
        XCTAssertEqual(used, first.count)
        let rest = Array(stream[used...])
        guard let (two, usedAgain) = expectItem(rest.decode(BinaryCodec.decodeRequest)) else { return }
        XCTAssertEqual(two, Fixtures.storefrontRequests[1])
        XCTAssertEqual(usedAgain, second.count)
        XCTAssertTrue(isNeedMore(Array(rest[usedAgain...]).decode(BinaryCodec.decodeRequest)))
    }

    func testTwoRepliesBackToBackDecodeAsTwo() {
        let first = encoded(Reply(id: .number(1), result: .success(.stock(Fixtures.stock))), .stock)
        let second = encoded(Reply(id: .number(2), result: .failure(KamiError(.busy, "later"))), .issue)
        let stream = first + second
        guard let ((one, _), used) = expectItem(stream.decode(BinaryCodec.decodeReply)) else { return }
        XCTAssertEqual(one.id, .number(1))
        XCTAssertEqual(used, first.count)
        guard let ((two, op), usedAgain) = expectItem(Array(stream[used...]).decode(BinaryCodec.decodeReply)) else {
            return
        }
        XCTAssertEqual(two, Reply(id: .number(2), result: .failure(KamiError(.busy, "later"))))
        XCTAssertEqual(op, .issue)
        XCTAssertEqual(usedAgain, second.count)
    }

    // MARK: Fatal framing errors

    func testBadMagicIsFatalFromTheFirstByte() {
        for input in [[0x7B], [0x00, 1, 2], Array(repeating: UInt8(0xB0), count: 20)] as [[UInt8]] {
            guard let failure = expectFailure(input.decode(BinaryCodec.decodeRequest)) else { continue }
            XCTAssertTrue(failure.fatal)
            XCTAssertEqual(failure.error.code, .badRequest)
            XCTAssertEqual(failure.consumed, input.count)
            XCTAssertEqual(failure.id, RequestID.none)
        }
    }

    func testBadVersionIsFatalFromTheSecondByte() {
        for input in [[0xB1, 2], frame(version: 0, op: 2, payload: [])] as [[UInt8]] {
            guard let failure = expectFailure(input.decode(BinaryCodec.decodeRequest)) else { continue }
            XCTAssertTrue(failure.fatal)
            XCTAssertTrue(failure.error.message.contains("version"), failure.error.message)
        }
    }

    func testFrameClaimingFourGiBIsFatalFromTheHeaderAlone() {
        // Only the 12 header bytes exist: the decoder must refuse on the claim, not wait for
        // (or allocate) 4 GiB.
        let header = frame(op: 5, id: 99, claimedLength: UInt32.max, payload: [])
        XCTAssertEqual(header.count, 12)
        guard let failure = expectFailure(header.decode(BinaryCodec.decodeRequest)) else { return }
        XCTAssertTrue(failure.fatal)
        XCTAssertEqual(failure.error.code, .tooLarge)
        XCTAssertEqual(failure.id, .number(99))
        XCTAssertEqual(failure.consumed, 12)
    }

    func testFrameOfExactlyTheMaximumIsAcceptedAndOneMoreIsNot() {
        let padding = ProtocolLimits.frameBytesMax - ProtocolLimits.frameHeaderBytes - 2
        let atLimit = frame(op: WireOp.stock.rawValue, payload: str(String(repeating: "s", count: padding)))
        XCTAssertEqual(atLimit.count, ProtocolLimits.frameBytesMax)
        guard let (request, consumed) = expectItem(atLimit.decode(BinaryCodec.decodeRequest)) else { return }
        XCTAssertEqual(request.sku?.utf8.count, padding)
        XCTAssertEqual(consumed, atLimit.count)

        let over = frame(op: WireOp.stock.rawValue, claimedLength: UInt32(padding + 3), payload: [])
        guard let failure = expectFailure(over.decode(BinaryCodec.decodeRequest)) else { return }
        XCTAssertTrue(failure.fatal)
        XCTAssertEqual(failure.error.code, .tooLarge)
    }

    // MARK: Non-fatal frame errors

    private func assertRefused(_ input: [UInt8], _ expected: String, file: StaticString = #filePath,
                               line: UInt = #line)
    {
        let result = input.decode(BinaryCodec.decodeRequest)
        guard let failure = expectFailure(result, file: file, line: line) else { return }
        XCTAssertFalse(failure.fatal, file: file, line: line)
        XCTAssertEqual(failure.error.code, .badRequest, file: file, line: line)
        XCTAssertEqual(failure.error.message, expected, file: file, line: line)
        XCTAssertEqual(failure.consumed, input.count, "consumes exactly the bad frame", file: file, line: line)
        XCTAssertEqual(failure.id, .number(42), file: file, line: line)
    }

    func testTruncatedPayloadNamesOpAndField() {
        assertRefused(frame(op: 6, payload: [5, 0, 0x41, 0x42]), "release: payload ends inside field order")
        assertRefused(frame(op: 4, payload: str("A1")), "commit: payload ends inside field payment_ref")
        assertRefused(frame(op: 3, payload: str("o") + str("u") + str("s") + [1, 0]),
                      "reserve: payload ends inside field qty")
    }

    func testLeftoverPayloadBytesAreRefused() {
        assertRefused(frame(op: 6, payload: str("A1") + [0]), "release: 1 bytes left over after the last field")
        assertRefused(frame(op: 2, payload: [1, 2, 3]), "ping: 3 bytes left over after the last field")
    }

    func testInvalidUTF8InAStringIsRefused() {
        // Bad continuation, overlong NUL, a surrogate, past U+10FFFF, cut short.
        let invalid: [[UInt8]] = [[0xC3, 0x28], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
                                  [0xE2, 0x82]]
        for bad in invalid {
            assertRefused(frame(op: 8, payload: strBytes(bad)), "entitlements: field user is not valid UTF-8")
        }
    }

    func testAbsentMarkerInARequiredStringIsRefused() {
        assertRefused(frame(op: 9, payload: [0xFF, 0xFF]),
                      "stock: field sku has length 0xffff, which marks an absent value and is not allowed here")
    }

    func testOperatorOpInBinaryIsRefused() {
        for op in WireOp.allCases where op.isOperator {
            assertRefused(frame(op: op.rawValue, payload: []),
                          "\(op.name) is an operator operation: JSON only, on the Unix socket")
        }
    }

    func testUnknownOpAndNonzeroFlagsAreRefused() {
        assertRefused(frame(op: 200, payload: []), "unknown op 200")
        assertRefused(frame(op: 0, payload: []), "unknown op 0")
        assertRefused(frame(op: 2, flags: 1, payload: []), "flags byte is 1; it is reserved and must be 0")
    }

    func testAFrameAfterABadOneStillDecodes() throws {
        let bad = frame(op: 200, payload: [1, 2, 3])
        let good = try encoded(Fixtures.storefrontRequests[6])
        let stream = bad + good
        guard let failure = expectFailure(stream.decode(BinaryCodec.decodeRequest)) else { return }
        XCTAssertEqual(failure.consumed, bad.count)
        guard let (request, _) = expectItem(Array(stream[failure.consumed...]).decode(BinaryCodec.decodeRequest)) else {
            return
        }
        XCTAssertEqual(request, Fixtures.storefrontRequests[6])
    }

    // MARK: Encoding rules

    func testEncodingARequestRefusesOperatorOpsAndMissingFieldsAndAppendsNothing() {
        var out: [UInt8] = [9, 9]
        XCTAssertThrowsError(try BinaryCodec.encode(Fixtures.operatorRequests[0], into: &out)) {
            XCTAssertEqual(($0 as? KamiError)?.code, .badRequest)
        }
        var commit = Request(id: .number(1), op: .commit)
        commit.order = "A1"
        XCTAssertThrowsError(try BinaryCodec.encode(commit, into: &out)) {
            XCTAssertEqual($0 as? KamiError, KamiError(.badRequest, "commit needs field payment_ref"))
        }
        var negative = Fixtures.storefrontRequests[5]
        negative.qty = -1
        XCTAssertThrowsError(try BinaryCodec.encode(negative, into: &out))
        var huge = Request(id: .number(1), op: .stock)
        huge.sku = String(repeating: "x", count: ProtocolLimits.frameBytesMax)
        XCTAssertThrowsError(try BinaryCodec.encode(huge, into: &out)) {
            XCTAssertEqual(($0 as? KamiError)?.code, .tooLarge)
        }
        XCTAssertEqual(out, [9, 9])
    }

    func testEncodingAppendsAfterExistingBytes() throws {
        var out: [UInt8] = [1, 2, 3]
        try BinaryCodec.encode(Fixtures.storefrontRequests[1], into: &out)
        XCTAssertEqual(Array(out[..<3]), [1, 2, 3])
        guard let (request, consumed) = expectItem(Array(out[3...]).decode(BinaryCodec.decodeRequest)) else { return }
        XCTAssertEqual(request, Fixtures.storefrontRequests[1])
        XCTAssertEqual(consumed, out.count - 3)
    }

    func testTTLZeroMeansTheServerDefault() throws {
        var reserve = Fixtures.storefrontRequests[2]
        reserve.ttlMs = 0
        guard let (decoded, _) = expectItem(try encoded(reserve).decode(BinaryCodec.decodeRequest)) else { return }
        XCTAssertNil(decoded.ttlMs)
    }

    func testOperatorFieldsReplyBecomesBadRequest() {
        let frame = encoded(Reply(id: .number(3), result: .success(.fields(Fixtures.operatorFields))), .stats)
        guard let ((reply, op), _) = expectItem(frame.decode(BinaryCodec.decodeReply)) else { return }
        XCTAssertEqual(op, .stats)
        XCTAssertEqual(reply, Reply(id: .number(3), result: .failure(KamiError(.badRequest,
            "operator replies are JSON only"))))
    }

    func testReplyOverTheLimitBecomesTooLarge() {
        let code = WireCode(codeID: 1, sku: "s", secret: Secret(String(repeating: "k", count: 60_000)))
        let order = WireOrder(order: "o", state: .committed, sku: "s", qty: 40, expiresAtMs: 0,
                              codes: Array(repeating: code, count: 40))
        let frame = encoded(Reply(id: .number(5), result: .success(.order(order))), .commit)
        XCTAssertLessThan(frame.count, 200)
        guard let ((reply, _), consumed) = expectItem(frame.decode(BinaryCodec.decodeReply)) else { return }
        XCTAssertEqual(consumed, frame.count)
        guard case .failure(let error) = reply.result else { return XCTFail("expected TOO_LARGE") }
        XCTAssertEqual(error.code, .tooLarge)
        XCTAssertEqual(reply.id, .number(5))
    }

    func testLargeOrderReplyWithinTheReplyLimitIsKept() {
        let codes = (0..<500).map {
            let secret = Secret("SECRET-\($0)-" + String(repeating: "x", count: 500))
            return WireCode(codeID: Int64($0), sku: "vip", secret: secret)
        }
        let order = WireOrder(order: "bulk", state: .committed, sku: "vip", qty: 500, expiresAtMs: 0, codes: codes)
        let reply = Reply(id: .number(5), result: .success(.order(order)))
        let frame = encoded(reply, .issue)
        XCTAssertGreaterThan(frame.count, ProtocolLimits.frameBytesMax)
        guard let ((decoded, _), _) = expectItem(frame.decode(BinaryCodec.decodeReply)) else { return }
        XCTAssertEqual(decoded, reply)
    }

    func testReplyWithNoIdIsWrittenAsZero() {
        let frame = encoded(Reply(id: .none, result: .failure(KamiError(.tooLarge, "x"))), .ping)
        XCTAssertEqual(Array(frame[4..<8]), [0, 0, 0, 0])
    }

    func testErrorReplyWithAnUnknownOpByteComesBackAsAFailureWithTheServersError() {
        let input = frame(op: 199, flags: 4, id: 5, payload: str("sold out"))
        guard let failure = expectFailure(input.decode(BinaryCodec.decodeReply)) else { return }
        XCTAssertEqual(failure.error, KamiError(.soldOut, "sold out"))
        XCTAssertEqual(failure.id, .number(5))
        XCTAssertFalse(failure.fatal)
    }

    func testReplyWithAnUnknownStatusIsTheServersErrorAsOther() {
        let input = frame(op: 2, flags: 250, payload: str("future"))
        guard let ((reply, op), consumed) = expectItem(input.decode(BinaryCodec.decodeReply)) else { return }
        XCTAssertEqual(op, .ping)
        XCTAssertEqual(consumed, input.count)
        XCTAssertEqual(reply.result, .failure(KamiError(.other("STATUS_250"), "future")))
    }

    /// A newer server's order state decodes to `.other` carrying its number, and the rest of
    /// the reply (codes included) is read as usual.
    func testReplyWithAnUnknownOrderStateDecodesAsOther() {
        var payload = str("o") + [9] + str("s") + [1, 0, 0, 0]
        payload += [UInt8](repeating: 0, count: 8) + [0, 0]
        guard let ((reply, _), _) = expectItem(frame(op: 7, payload: payload).decode(BinaryCodec.decodeReply)),
            case .success(.order(let order)) = reply.result
        else { return XCTFail("no order") }
        XCTAssertEqual(order.state, .other("#9"))
        XCTAssertEqual(order.state.name, "#9")
        XCTAssertNil(order.state.known)
        XCTAssertEqual(order.order, "o")
    }

    /// Fields a newer server appends after the ones this version knows are skipped, in every
    /// reply body; an unknown code state in entitlements is `.other`.
    func testBytesAfterTheKnownFieldsAreSkipped() {
        for (reply, op) in Fixtures.binaryReplies {
            guard case .success = reply.result else { continue }
            let extended = withTrailingBytes(encoded(reply, op), [0xAA, 0xBB, 0x01, 0x00, 0x7A])
            guard let ((decoded, decodedOp), consumed) = expectItem(extended.decode(BinaryCodec.decodeReply)) else {
                continue
            }
            XCTAssertEqual(decoded, reply, "\(op)")
            XCTAssertEqual(decodedOp, op)
            XCTAssertEqual(consumed, extended.count)
        }
        // One entitlement with state 7 (unknown here), then a future field.
        var payload: [UInt8] = [1, 0] + str("o1") + [5, 0, 0, 0, 0, 0, 0, 0] + str("vip") + [7]
        payload += [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + [0xFF, 0xFF] + [9, 9, 9]
        guard let ((reply, _), _) = expectItem(frame(op: 8, payload: payload).decode(BinaryCodec.decodeReply)),
            case .success(.codes(let codes, _)) = reply.result
        else { return XCTFail("no codes") }
        XCTAssertEqual(codes.first?.state, .other("#7"))
        XCTAssertEqual(codes.first?.order, "o1")
    }

    func testHelloAnswersTheProtocolVersionAndFeatures() {
        let reply = Reply(id: .number(1), result: .success(.hello(WireHello.current)))
        guard let ((decoded, op), _) = expectItem(encoded(reply, .hello).decode(BinaryCodec.decodeReply)),
            case .success(.hello(let hello)) = decoded.result
        else { return XCTFail("no hello") }
        XCTAssertEqual(op, .hello)
        XCTAssertEqual(hello.protocolVersion, 1)
        XCTAssertEqual(hello.server, "kamid")
        XCTAssertTrue(hello.features.contains("entitlements_pages"))
        XCTAssertTrue(hello.features.contains("forward_compatible"))
    }

    /// Appends `extra` to a frame's payload and fixes its length field.
    private func withTrailingBytes(_ frame: [UInt8], _ extra: [UInt8]) -> [UInt8] {
        var out = frame + extra
        let length = UInt32(out.count - ProtocolLimits.frameHeaderBytes)
        out[8] = UInt8(length & 0xFF)
        out[9] = UInt8((length >> 8) & 0xFF)
        out[10] = UInt8((length >> 16) & 0xFF)
        out[11] = UInt8(length >> 24)
        return out
    }
}
