public import KamiCore

/// JSON lines: the encoding for anyone with a socket. One object per `\n`-terminated line,
/// UTF-8; a `\r` before the `\n` is accepted and blank lines are skipped. Requests are flat
/// objects of scalars; replies echo the request's `id` and add `ok` and a body or an
/// `error`. See `docs/protocol.md`.
///
/// Decoders are pure functions over the front of a connection's buffer; encoders append
/// one whole line (newline included) to a caller's array.
public enum JSONCodec {
    // MARK: Requests

    /// Decodes the request line at the front of `buffer`.
    ///
    /// `needMore` until a `\n` ends a non-blank line. A buffer holding
    /// `ProtocolLimits.jsonLineBytesMax` bytes without one (blank lines before a line
    /// count too) is a fatal TOO_LARGE. Anything wrong inside a complete line is a
    /// non-fatal BAD_REQUEST that consumes that line and carries the id when it could be
    /// read: malformed JSON, a missing or unknown `op`, a field of the wrong type (`"qty":
    /// "2"` is "field qty must be an integer"), an object or array value, a key given
    /// twice. Unknown fields are ignored (newer clients, older server); `null` is the same
    /// as leaving a field out; `"ttl_ms": 0` decodes as nil (the server's default), as in
    /// binary. The `id` may be any scalar except a number that is not a 64-bit integer.
    ///
    /// `limit` is the longest line accepted (the server's `max_request_bytes`), at most
    /// `ProtocolLimits.jsonLineBytesMax`.
    public static func decodeRequest(_ buffer: UnsafeRawBufferPointer) -> DecodeResult<Request> {
        decodeRequest(buffer, limit: ProtocolLimits.jsonLineBytesMax)
    }

    /// As `decodeRequest(_:)`, with a lower request size limit.
    public static func decodeRequest(_ buffer: UnsafeRawBufferPointer, limit: Int) -> DecodeResult<Request> {
        let limit = min(limit, ProtocolLimits.jsonLineBytesMax)
        switch JSONLineFramer.scan(buffer, limit: limit) {
        case .needMore:
            return .needMore
        case .tooLong:
            return .failure(id: .none, error: KamiError(.tooLarge, "no end of line within "
                + "\(limit) bytes; a request line must be shorter"),
                consumed: buffer.count, fatal: true)
        case .line(let start, let end, let consumed):
            var decoder = JSONRequestDecoder(base: buffer.baseAddress!, start: start, end: end)
            return decoder.decode(consumed: consumed)
        }
    }

    /// Appends `request` as one JSON line, for clients: `id` and `op` first, then every
    /// field that is set, in a fixed order. Throws TOO_LARGE, appending nothing, when the
    /// line would exceed `ProtocolLimits.jsonLineBytesMax` (the server would have to close
    /// the connection on it).
    public static func encode(_ request: Request, into out: inout [UInt8]) throws(KamiError) {
        let start = out.count
        out.append(UInt8(ascii: "{"))
        JSONWriter.key("id", &out, first: true)
        JSONWriter.id(request.id, &out)
        JSONWriter.key("op", &out)
        JSONWriter.string(request.op.name, &out)
        func text(_ field: JSONField, _ value: String?) {
            guard let value else { return }
            JSONWriter.key(field.key, &out)
            JSONWriter.string(value, &out)
        }
        func number(_ field: JSONField, _ value: Int64?) {
            guard let value else { return }
            JSONWriter.key(field.key, &out)
            out.appendDecimal(value)
        }
        func flag(_ field: JSONField, _ value: Bool?) {
            guard let value else { return }
            JSONWriter.key(field.key, &out)
            JSONWriter.bool(value, &out)
        }
        text(.order, request.order)
        text(.user, request.user)
        text(.sku, request.sku)
        number(.qty, request.qty.map { Int64($0) })
        number(.ttlMs, request.ttlMs)
        text(.paymentRef, request.paymentRef)
        text(.ip, request.ip)
        text(.device, request.device)
        text(.client, request.client)
        text(.token, request.token)
        text(.name, request.name)
        number(.priceCents, request.priceCents)
        number(.perUserLimit, request.perUserLimit.map { Int64($0) })
        text(.activationURL, request.activationURL)
        text(.usageGuide, request.usageGuide)
        text(.path, request.path)
        text(.batch, request.batch)
        number(.codeID, request.codeID)
        flag(.withSecrets, request.withSecrets)
        flag(.dryRun, request.dryRun)
        flag(.replace, request.replace)
        number(.limit, request.limit.map { Int64($0) })
        text(.cursor, request.cursor)
        number(.waitMs, request.waitMs)
        text(.supplier, request.supplier)
        text(.product, request.product)
        number(.costCents, request.costCents)
        number(.priority, request.priority)
        number(.weight, request.weight)
        text(.sourcePolicy, request.sourcePolicy)
        text(.strategy, request.strategy)
        number(.minMarginCents, request.minMarginCents)
        text(.noCandidate, request.noCandidate)
        number(.lowWater, request.lowWater)
        number(.sinceMs, request.sinceMs)
        number(.untilMs, request.untilMs)
        number(.buyAheadUnits, request.buyAheadUnits)
        number(.buyAheadBudgetCents, request.buyAheadBudgetCents)
        text(.paymentAccount, request.paymentAccount)
        number(.amountCents, request.amountCents)
        number(.accountAgeDays, request.accountAgeDays)
        flag(.phoneVerified, request.phoneVerified)
        text(.challengeToken, request.challengeToken)
        text(.event, request.event)
        text(.list, request.list)
        text(.kind, request.kind)
        text(.value, request.value)
        flag(.manualDelivery, request.manualDelivery)
        number(.reviewTTLMs, request.reviewTTLMs)
        text(.bundle, request.bundle)
        text(.currency, request.currency)
        text(.channel, request.channel)
        text(.campaign, request.campaign)
        text(.coupon, request.coupon)
        text(.distributor, request.distributor)
        number(.discountCents, request.discountCents)
        number(.budgetCents, request.budgetCents)
        text(.codes, request.codes)
        number(.count, request.count)
        number(.rateBps, request.rateBps)
        text(.by, request.by)
        number(.caseID, request.caseID)
        text(.note, request.note)
        if let secrets = request.secrets {
            JSONWriter.key(JSONField.secrets.key, &out)
            JSONWriter.string(secrets.reveal(), &out)
        }
        out.appendStatic("}\n")
        let lineCount = out.count - start
        guard lineCount <= ProtocolLimits.jsonLineBytesMax else {
            out.removeSubrange(start...)
            throw KamiError(.tooLarge, "\(request.op.name) request of \(lineCount) bytes is over the line limit of "
                + "\(ProtocolLimits.jsonLineBytesMax) bytes")
        }
    }

    // MARK: Replies

    /// Appends `reply` as one JSON line:
    /// `{"id":…,"ok":true,…body…}` or `{"id":…,"ok":false,"error":{"code":"SOLD_OUT","message":"…"}}`.
    ///
    /// Bodies keep a stable shape: every key is written, absent values as `null`. Codes in
    /// an order carry `code_id`, `sku`, `secret`, `card_number`, `activation_url`;
    /// entitlements add `order` and `state`. `.fields` members are appended in order
    /// after `ok` and may not be named `id`, `ok` or `error` (a programmer error: this
    /// traps). Secrets are written from `Secret.bytes`. A line over
    /// `ProtocolLimits.replyBytesMax` is replaced by a TOO_LARGE error.
    public static func encode(_ reply: Reply, into out: inout [UInt8]) {
        let start = out.count
        out.append(UInt8(ascii: "{"))
        JSONWriter.key("id", &out, first: true)
        JSONWriter.id(reply.id, &out)
        switch reply.result {
        case .failure(let error):
            appendError(error, &out)
            return
        case .success(let body):
            out.appendStatic(",\"ok\":true")
            appendBody(body, &out)
        }
        out.appendStatic("}\n")
        guard out.count - start <= ProtocolLimits.replyBytesMax else {
            out.removeSubrange(start...)
            let error = KamiError(.tooLarge,
                "the reply does not fit in a line of \(ProtocolLimits.replyBytesMax) bytes")
            return encode(Reply(id: reply.id, result: .failure(error)), into: &out)
        }
    }

    /// Appends `,"ok":false,"error":{…}}` and the newline.
    private static func appendError(_ error: KamiError, _ out: inout [UInt8]) {
        out.appendStatic(",\"ok\":false,\"error\":{\"code\":")
        JSONWriter.string(error.code.rawValue, &out)
        JSONWriter.key("message", &out)
        JSONWriter.string(error.message, &out)
        if let verdict = error.verdict {
            JSONWriter.key("risk", &out)
            out.append(UInt8(ascii: "{"))
            appendVerdict(verdict, &out, first: true)
            out.append(UInt8(ascii: "}"))
        }
        out.appendStatic("}}\n")
    }

    /// `"decision":…,"reason":…,"rules":[…],"score":…,"challenge":…`.
    private static func appendVerdict(_ verdict: RiskVerdict, _ out: inout [UInt8], first: Bool) {
        JSONWriter.key("decision", &out, first: first)
        JSONWriter.string(verdict.decision.rawValue, &out)
        JSONWriter.key("reason", &out)
        JSONWriter.string(verdict.reason, &out)
        JSONWriter.key("rules", &out)
        out.append(UInt8(ascii: "["))
        for (i, rule) in verdict.rules.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.string(rule, &out)
        }
        out.append(UInt8(ascii: "]"))
        JSONWriter.key("score", &out)
        out.appendDecimal(Int64(verdict.score))
        JSONWriter.key("challenge", &out)
        JSONWriter.optionalString(verdict.challenge, &out)
    }

    private static func appendBody(_ body: ReplyBody, _ out: inout [UInt8]) {
        switch body {
        case .empty:
            break
        case .hello(let hello):
            JSONWriter.key("protocol", &out)
            out.appendDecimal(hello.protocolVersion)
            JSONWriter.key("server", &out)
            JSONWriter.string(hello.server, &out)
            JSONWriter.key("features", &out)
            out.append(UInt8(ascii: "["))
            for (i, feature) in hello.features.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.string(feature, &out)
            }
            out.append(UInt8(ascii: "]"))
        case .order(let order):
            JSONWriter.key("order", &out)
            JSONWriter.string(order.order, &out)
            JSONWriter.key("state", &out)
            JSONWriter.string(order.state.name, &out)
            JSONWriter.key("sku", &out)
            JSONWriter.string(order.sku, &out)
            JSONWriter.key("qty", &out)
            out.appendDecimal(Int64(order.qty))
            JSONWriter.key("expires_at_ms", &out)
            out.appendDecimal(order.expiresAtMs)
            appendCodes(order.codes, entitlements: false, &out)
        case .codes(let codes, let nextCursor):
            appendCodes(codes, entitlements: true, &out)
            JSONWriter.key("next_cursor", &out)
            JSONWriter.optionalString(nextCursor, &out)
        case .stock(let stock):
            JSONWriter.key("sku", &out)
            JSONWriter.string(stock.sku, &out)
            JSONWriter.key("available", &out)
            out.appendDecimal(stock.available)
            JSONWriter.key("reserved", &out)
            out.appendDecimal(stock.reserved)
            JSONWriter.key("issued", &out)
            out.appendDecimal(stock.issued)
            JSONWriter.key("voided", &out)
            out.appendDecimal(stock.voided)
            JSONWriter.key("imported", &out)
            out.appendDecimal(stock.imported)
        case .risk(let verdict):
            appendVerdict(verdict, &out, first: false)
        case .fields(let members):
            for (name, value) in members {
                precondition(name != "id" && name != "ok" && name != "error",
                             "reply field \(name) would collide with the envelope")
                out.append(UInt8(ascii: ","))
                JSONWriter.string(name, &out)
                out.append(UInt8(ascii: ":"))
                JSONWriter.value(value, &out)
            }
        }
    }

    private static func appendCodes(_ codes: [WireCode], entitlements: Bool, _ out: inout [UInt8]) {
        JSONWriter.key("codes", &out)
        out.append(UInt8(ascii: "["))
        for (i, code) in codes.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "{"))
            JSONWriter.key("code_id", &out, first: true)
            out.appendDecimal(code.codeID)
            JSONWriter.key("sku", &out)
            JSONWriter.string(code.sku, &out)
            JSONWriter.key("secret", &out)
            if let secret = code.secret { JSONWriter.secret(secret, &out) } else { out.appendStatic("null") }
            JSONWriter.key("card_number", &out)
            JSONWriter.optionalString(code.cardNumber, &out)
            JSONWriter.key("activation_url", &out)
            JSONWriter.optionalString(code.activationURL, &out)
            if entitlements {
                JSONWriter.key("order", &out)
                JSONWriter.optionalString(code.order, &out)
                JSONWriter.key("state", &out)
                JSONWriter.optionalString(code.state?.name, &out)
                if let status = code.status {
                    JSONWriter.key("status", &out)
                    JSONWriter.string(status, &out)
                    JSONWriter.key("sku_name", &out)
                    JSONWriter.optionalString(code.skuName, &out)
                    JSONWriter.key("usage_guide", &out)
                    JSONWriter.optionalString(code.usageGuide, &out)
                    let times: [(StaticString, Int64?)] = [("expires_at_ms", code.expiresAtMs), ("ordered_at_ms", code.orderedAtMs),
                                                           ("used_at_ms", code.usedAtMs)]
                    for (name, value) in times {
                        JSONWriter.key(name, &out)
                        if let value { out.appendDecimal(value) } else { out.appendStatic("null") }
                    }
                }
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
    }

    /// Decodes the reply line at the front of `buffer`, for clients.
    ///
    /// Lines up to `ProtocolLimits.replyBytesMax` are accepted (longer is fatal). Replies are
    /// read forward compatibly: fields this version does not know are ignored, an order or
    /// code state it does not know is `.other(name)`, an error code is `ErrorCode.other`.
    /// With `op` (the operation the reply answers; a client knows it) the body's shape
    /// follows from the op. Without it the shape is recognised by the keys it must have:
    /// `protocol` → `.hello`; `order state sku qty expires_at_ms codes` → `.order`; `codes`
    /// (each with `order` and `state`) → `.codes`; `sku available reserved issued voided
    /// imported` → `.stock`; no key → `.empty`; anything else → `.fields` in the order given.
    /// Numbers must be integers. A line that is not such a reply is a non-fatal BAD_REQUEST
    /// failure that consumes it.
    public static func decodeReply(_ buffer: UnsafeRawBufferPointer) -> DecodeResult<Reply> {
        decodeReply(buffer, op: nil)
    }

    /// `decodeReply(_:)` for a reply to `op` (nil: the shape is recognised by its keys).
    public static func decodeReply(_ buffer: UnsafeRawBufferPointer, op: Operation?) -> DecodeResult<Reply> {
        switch JSONLineFramer.scan(buffer, limit: ProtocolLimits.replyBytesMax) {
        case .needMore:
            return .needMore
        case .tooLong:
            return .failure(id: .none, error: KamiError(.tooLarge, "no end of line within "
                + "\(ProtocolLimits.replyBytesMax) bytes of reply"), consumed: buffer.count, fatal: true)
        case .line(let start, let end, let consumed):
            switch JSONReplyDecoder.decode(base: buffer.baseAddress!, start: start, end: end, op: op) {
            case .success(let reply):
                return .item(reply, consumed: consumed)
            case .failure(let failure):
                return .failure(id: failure.id, error: failure.error, consumed: consumed, fatal: false)
            }
        }
    }
}
