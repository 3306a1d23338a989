import KamiCore

extension BinaryCodec {
    // MARK: Replies

    /// Appends `reply` to the request with operation `op` as a binary frame.
    ///
    /// Byte 2 echoes `op`; byte 3 is 0 for success or the error's `binaryStatus`. An error
    /// reply's payload is its message (cut at a character boundary to
    /// `ProtocolLimits.stringBytesMax`). A success body must be the one `op` returns (a
    /// programmer error otherwise: this traps), because the decoder finds the layout from
    /// the op. A `.fields` body (operator replies) becomes BAD_REQUEST "operator replies
    /// are JSON only", and a reply over `ProtocolLimits.replyBytesMax` becomes TOO_LARGE,
    /// so what is appended is always one well-formed frame.
    ///
    /// The id must be `.number` within `UInt32`, or `.none` (written as 0, for errors
    /// about frames whose id could not be read).
    public static func encode(_ reply: Reply, op: Operation, into out: inout [UInt8]) {
        let id = replyID(reply.id)
        switch reply.result {
        case .failure(let error):
            appendError(error, op: op, id: id, &out)
        case .success(.fields):
            appendError(KamiError(.badRequest, "operator replies are JSON only"), op: op, id: id, &out)
        case .success(let body):
            precondition(body.kind == op.replyKind, "reply body \(body.kind) does not belong to op \(op.name)")
            let start = out.count
            appendHeader(&out, op: op.rawValue, flags: 0, id: id)
            var fits = true
            appendBody(body, &out, &fits)
            let frameCount = out.count - start
            guard fits && frameCount <= ProtocolLimits.replyBytesMax else {
                out.removeSubrange(start...)
                let error = KamiError(.tooLarge, "the \(op.name) reply does not fit in a frame of "
                    + "\(ProtocolLimits.replyBytesMax) bytes")
                return appendError(error, op: op, id: id, &out)
            }
            out.setU32LE(UInt32(frameCount - ProtocolLimits.frameHeaderBytes), at: start + 8)
        }
    }

    private static func replyID(_ id: RequestID) -> UInt32 {
        switch id {
        case .none: return 0
        case .number(let number):
            guard let wire = UInt32(exactly: number) else {
                preconditionFailure("binary reply id \(number) is outside UInt32")
            }
            return wire
        case .string, .bool:
            preconditionFailure("binary replies carry numeric ids, got \(id)")
        }
    }

    private static func appendError(_ error: KamiError, op: Operation, id: UInt32, _ out: inout [UInt8]) {
        let start = out.count
        appendHeader(&out, op: op.rawValue, flags: error.code.binaryStatus, id: id)
        var message = Array(error.message.utf8)
        if message.count > ProtocolLimits.stringBytesMax {
            // Cut before a continuation byte so that the message stays valid UTF-8.
            var end = ProtocolLimits.stringBytesMax
            while end > 0 && message[end] & 0xC0 == 0x80 { end -= 1 }
            message.removeSubrange(end...)
        }
        out.appendU16LE(UInt16(message.count))
        out.append(contentsOf: message)
        // Risk verdicts came later, after everything older decoders read.
        if let verdict = error.verdict {
            var fits = true
            appendVerdict(verdict, &out, &fits)
            if !fits {
                out.removeSubrange((start + ProtocolLimits.frameHeaderBytes + 2 + message.count)...)
            }
        }
        out.setU32LE(UInt32(out.count - start - ProtocolLimits.frameHeaderBytes), at: start + 8)
    }

    /// `u8 decision, str reason, u16 count, str rule…, i64 score, optstr challenge`.
    private static func appendVerdict(_ verdict: RiskVerdict, _ out: inout [UInt8], _ fits: inout Bool) {
        out.append(UInt8(RiskVerdict.Decision.allCases.firstIndex(of: verdict.decision)!))
        appendString(verdict.reason, &out, &fits)
        guard appendCount(verdict.rules.count, &out, &fits) else { return }
        for rule in verdict.rules { appendString(rule, &out, &fits) }
        out.appendI64LE(Int64(verdict.score))
        appendOptional(verdict.challenge, &out, &fits)
    }

    static func readVerdict(_ r: inout PayloadReader) throws(PayloadError) -> RiskVerdict {
        let number = Int(try r.u8("decision"))
        // A decision this version does not know is read as deny (the safe side).
        let decision = number < RiskVerdict.Decision.allCases.count ? RiskVerdict.Decision.allCases[number] : .deny
        let reason = try r.str("reason")
        let count = Int(try r.u16("count"))
        var rules: [String] = []
        for _ in 0..<count { rules.append(try r.str("rule")) }
        let score = Int(clamping: try r.i64("score"))
        return RiskVerdict(decision: decision, reason: reason, rules: rules, score: score, challenge: try r.optStr("challenge"))
    }

    private static func appendBody(_ body: ReplyBody, _ out: inout [UInt8], _ fits: inout Bool) {
        switch body {
        case .risk(let verdict):
            appendVerdict(verdict, &out, &fits)
        case .empty, .fields:
            break
        case .hello(let hello):
            guard let version = UInt16(exactly: hello.protocolVersion) else {
                preconditionFailure("protocol version \(hello.protocolVersion) outside UInt16")
            }
            out.appendU16LE(version)
            appendString(hello.server, &out, &fits)
            guard appendCount(hello.features.count, &out, &fits) else { return }
            for feature in hello.features { appendString(feature, &out, &fits) }
        case .order(let order):
            appendString(order.order, &out, &fits)
            out.append(number(order.state))
            appendString(order.sku, &out, &fits)
            guard let qty = UInt32(exactly: order.qty) else {
                preconditionFailure("order qty \(order.qty) outside UInt32")
            }
            out.appendU32LE(qty)
            out.appendI64LE(order.expiresAtMs)
            guard appendCount(order.codes.count, &out, &fits) else { return }
            for code in order.codes {
                out.appendI64LE(code.codeID)
                appendString(code.sku, &out, &fits)
                appendOptional(code.secret?.bytes, &out, &fits)
                appendOptional(code.cardNumber, &out, &fits)
                appendOptional(code.activationURL, &out, &fits)
            }
        case .codes(let codes, let nextCursor):
            guard appendCount(codes.count, &out, &fits) else { return }
            for code in codes {
                guard let order = code.order else {
                    preconditionFailure("entitlement code \(code.codeID) has no order")
                }
                guard let state = code.state else {
                    preconditionFailure("entitlement code \(code.codeID) has no state")
                }
                appendString(order, &out, &fits)
                out.appendI64LE(code.codeID)
                appendString(code.sku, &out, &fits)
                out.append(number(state))
                appendOptional(code.secret?.bytes, &out, &fits)
                appendOptional(code.cardNumber, &out, &fits)
                appendOptional(code.activationURL, &out, &fits)
            }
            // Added with paging, after everything older decoders read (they skip it).
            appendOptional(nextCursor, &out, &fits)
            // Added with activation, after that: per code, the buyer's view (an older decoder
            // stops before it).
            guard appendCount(codes.count, &out, &fits) else { return }
            for code in codes {
                appendOptional(code.status, &out, &fits)
                appendOptional(code.skuName, &out, &fits)
                appendOptional(code.usageGuide, &out, &fits)
                out.appendI64LE(code.expiresAtMs ?? -1)
                out.appendI64LE(code.orderedAtMs ?? -1)
                out.appendI64LE(code.usedAtMs ?? -1)
            }
        case .stock(let stock):
            appendString(stock.sku, &out, &fits)
            out.appendI64LE(stock.available)
            out.appendI64LE(stock.reserved)
            out.appendI64LE(stock.issued)
            out.appendI64LE(stock.voided)
            out.appendI64LE(stock.imported)
        }
    }

    /// A state's binary number. The server sends only states it knows; `.other` here is a
    /// programmer error.
    private static func number<Known>(_ state: WireState<Known>) -> UInt8 {
        guard case .known(let known) = state else { preconditionFailure("state \(state.name) has no number here") }
        return known.rawValue
    }

    private static func appendCount(_ count: Int, _ out: inout [UInt8], _ fits: inout Bool) -> Bool {
        guard count <= ProtocolLimits.codesPerReplyMax else {
            fits = false
            return false
        }
        out.appendU16LE(UInt16(count))
        return true
    }

    /// A string too long for its u16 length marks the frame as not fitting (it is then
    /// replaced by TOO_LARGE) instead of writing a length that would lie.
    private static func appendString(_ value: String, _ out: inout [UInt8], _ fits: inout Bool) {
        let count = value.utf8.count
        guard count <= ProtocolLimits.stringBytesMax else {
            fits = false
            return
        }
        out.appendU16LE(UInt16(count))
        out.append(contentsOf: value.utf8)
    }

    private static func appendOptional(_ value: String?, _ out: inout [UInt8], _ fits: inout Bool) {
        guard let value else { return out.appendU16LE(BinaryFrame.absentLength) }
        appendString(value, &out, &fits)
    }

    /// Secrets are written from their bytes: a secret never passes through a `String` or
    /// its `description` on the way out.
    private static func appendOptional(_ value: [UInt8]?, _ out: inout [UInt8], _ fits: inout Bool) {
        guard let value else { return out.appendU16LE(BinaryFrame.absentLength) }
        guard value.count <= ProtocolLimits.stringBytesMax else {
            fits = false
            return
        }
        out.appendU16LE(UInt16(value.count))
        out.append(contentsOf: value)
    }

    /// Decodes the reply frame at the front of `buffer`, for clients, with the op the
    /// frame echoes (which tells the body's layout).
    ///
    /// Frames up to `ProtocolLimits.replyBytesMax` are accepted. Bad magic, version or
    /// length are fatal. A payload that does not match its op's layout, an unknown status,
    /// or an ok status for an op this side does not know is a non-fatal failure carrying
    /// the reply's id. An error reply whose op byte this side does not know (a server may
    /// echo any op byte when it could not decode a request) also comes back as a
    /// non-fatal `failure` carrying the server's error: the request with that id failed.
    public static func decodeReply(_ buffer: UnsafeRawBufferPointer) -> DecodeResult<(Reply, Operation)> {
        let header: FrameHeader
        switch FrameHeaderScan.scan(buffer, frameBytesMax: ProtocolLimits.replyBytesMax) {
        case .needMore: return .needMore
        case .fatal(let id, let error): return .failure(id: id, error: error, consumed: buffer.count, fatal: true)
        case .frame(let scanned): header = scanned
        }
        let consumed = header.frameCount
        guard buffer.count >= consumed else { return .needMore }
        let id = RequestID.number(Int64(header.requestID))
        func refuse(_ message: String) -> DecodeResult<(Reply, Operation)> {
            .failure(id: id, error: KamiError(.badRequest, message), consumed: consumed, fatal: false)
        }
        let payload = buffer.baseAddress! + ProtocolLimits.frameHeaderBytes
        var reader = PayloadReader(base: payload, end: header.payloadCount)
        let op = Operation(rawValue: header.op)
        if header.flags != 0 {
            let message: String
            var verdict: RiskVerdict? = nil
            do throws(PayloadError) {
                message = try reader.str("message")
                if reader.remaining > 0 { verdict = try readVerdict(&reader) }
            } catch {
                return refuse(error.message(prefix: "error reply"))
            }
            guard let code = ErrorCode(binaryStatus: header.flags) else {
                return refuse("reply status \(header.flags) is unknown to this client; the server said: \(message)")
            }
            let error = KamiError(code, message, verdict: verdict)
            guard let op else { return .failure(id: id, error: error, consumed: consumed, fatal: false) }
            return .item((Reply(id: id, result: .failure(error)), op), consumed: consumed)
        }
        guard let op else { return refuse("reply names unknown op \(header.op)") }
        do throws(PayloadError) {
            // Bytes after the fields this version knows are fields a newer server added:
            // skipped, not an error (forward compatibility, docs/protocol.md).
            let body = try readBody(op, &reader)
            return .item((Reply(id: id, result: .success(body)), op), consumed: consumed)
        } catch {
            return refuse(error.message(prefix: "reply to \(op.name)"))
        }
    }

    private static func readBody(_ op: Operation, _ r: inout PayloadReader) throws(PayloadError) -> ReplyBody {
        switch op.replyKind {
        case .empty:
            return .empty
        case .hello:
            let version = Int64(try r.u16("protocol"))
            let server = try r.str("server")
            let count = Int(try r.u16("count"))
            var features: [String] = []
            for _ in 0..<count { features.append(try r.str("feature")) }
            return .hello(WireHello(protocolVersion: version, server: server, features: features))
        case .order:
            let order = try r.str("order")
            let state = WireOrderState(number: try r.u8("state"))
            let sku = try r.str("sku")
            let qty = Int(try r.u32("qty"))
            let expiresAtMs = try r.i64("expires_at_ms")
            let count = Int(try r.u16("count"))
            var codes: [WireCode] = []
            codes.reserveCapacity(min(count, r.remaining / 16))
            for _ in 0..<count {
                let codeID = try r.i64("code_id")
                let codeSku = try r.str("sku")
                let secret = try r.optSecret("secret")
                let cardNumber = try r.optStr("card_number")
                let activationURL = try r.optStr("activation_url")
                codes.append(WireCode(codeID: codeID, sku: codeSku, secret: secret, cardNumber: cardNumber,
                                      activationURL: activationURL))
            }
            return .order(WireOrder(order: order, state: state, sku: sku, qty: qty, expiresAtMs: expiresAtMs,
                                    codes: codes))
        case .codes:
            let count = Int(try r.u16("count"))
            var codes: [WireCode] = []
            codes.reserveCapacity(min(count, r.remaining / 24))
            for _ in 0..<count {
                let order = try r.str("order")
                let codeID = try r.i64("code_id")
                let sku = try r.str("sku")
                let state = WireCodeState(number: try r.u8("state"))
                let secret = try r.optSecret("secret")
                let cardNumber = try r.optStr("card_number")
                let activationURL = try r.optStr("activation_url")
                codes.append(WireCode(codeID: codeID, sku: sku, secret: secret, cardNumber: cardNumber,
                                      activationURL: activationURL, state: state, order: order))
            }
            let next = r.remaining > 0 ? try r.optStr("next_cursor") : nil
            // Details of each line (status, name, times); a block that does not fit the codes
            // is something newer than this version and is skipped like any unknown field.
            if r.remaining >= 2, Int(try r.u16("details")) == codes.count {
                for index in 0..<codes.count {
                    codes[index].status = try r.optStr("status")
                    codes[index].skuName = try r.optStr("sku_name")
                    codes[index].usageGuide = try r.optStr("usage_guide")
                    let times = (try r.i64("expires_at_ms"), try r.i64("ordered_at_ms"), try r.i64("used_at_ms"))
                    codes[index].expiresAtMs = times.0 < 0 ? nil : times.0
                    codes[index].orderedAtMs = times.1 < 0 ? nil : times.1
                    codes[index].usedAtMs = times.2 < 0 ? nil : times.2
                }
            }
            return .codes(codes, nextCursor: next)
        case .stock:
            return .stock(WireStock(
                sku: try r.str("sku"), available: try r.i64("available"), reserved: try r.i64("reserved"),
                issued: try r.i64("issued"), voided: try r.i64("voided"), imported: try r.i64("imported")))
        case .risk:
            return .risk(try readVerdict(&r))
        case .fields:
            throw .invalid("operator replies are JSON only")
        }
    }
}
