public import KamiCore

/// Binary frames: the encoding for throughput. Every integer is little-endian; the layout
/// of each payload follows from the operation, so frames carry no field names and decode
/// without a scan. See `docs/protocol.md` for the tables.
///
/// Decoders are pure functions over the front of a connection's buffer; encoders append
/// to a caller's array. Neither does I/O or keeps state.
public enum BinaryCodec {
    // MARK: Requests

    /// Decodes the request frame at the front of `buffer`.
    ///
    /// Magic, version and the claimed length are checked first, as soon as their bytes are
    /// there; a failure of any of them is fatal. Then the rest of the frame must be in the
    /// buffer (`needMore` otherwise). A frame with nonzero flags, an unknown or operator
    /// op, or a payload that does not match its op's layout exactly is a non-fatal
    /// BAD_REQUEST that consumes exactly that frame and carries its request id.
    ///
    /// A `ttl_ms` of 0 decodes as `ttlMs == nil` (the server's default), and absent
    /// `optstr`s as nil; every other field of the op is set.
    ///
    /// `limit` is the largest frame accepted (the server's `max_request_bytes`), at most
    /// `ProtocolLimits.frameBytesMax`.
    public static func decodeRequest(_ buffer: UnsafeRawBufferPointer) -> DecodeResult<Request> {
        decodeRequest(buffer, limit: ProtocolLimits.frameBytesMax)
    }

    /// As `decodeRequest(_:)`, with a lower request size limit.
    public static func decodeRequest(_ buffer: UnsafeRawBufferPointer, limit: Int) -> DecodeResult<Request> {
        let header: FrameHeader
        switch FrameHeaderScan.scan(buffer, frameBytesMax: min(limit, ProtocolLimits.frameBytesMax)) {
        case .needMore: return .needMore
        case .fatal(let id, let error): return .failure(id: id, error: error, consumed: buffer.count, fatal: true)
        case .frame(let scanned): header = scanned
        }
        let consumed = header.frameCount
        guard buffer.count >= consumed else { return .needMore }
        let id = RequestID.number(Int64(header.requestID))
        func refuse(_ message: String) -> DecodeResult<Request> {
            .failure(id: id, error: KamiError(.badRequest, message), consumed: consumed, fatal: false)
        }
        guard header.flags == 0 else {
            return refuse("flags byte is \(header.flags); it is reserved and must be 0")
        }
        guard let op = Operation(rawValue: header.op) else { return refuse("unknown op \(header.op)") }
        guard !op.isOperator else {
            return refuse("\(op.name) is an operator operation: JSON only, on the Unix socket")
        }
        let payload = buffer.baseAddress! + ProtocolLimits.frameHeaderBytes
        var reader = PayloadReader(base: payload, end: header.payloadCount)
        var request = Request(id: id, op: op)
        do throws(PayloadError) {
            try readPayload(into: &request, &reader)
            try reader.finish()
        } catch {
            return refuse(error.message(op))
        }
        return .item(request, consumed: consumed)
    }

    /// Reads the payload of a storefront operation into `request` (in place: a `Request`
    /// is about 300 bytes, and every copy of it shows in the decode time).
    private static func readPayload(into request: inout Request, _ r: inout PayloadReader) throws(PayloadError) {
        func waitMs(_ value: UInt32) -> Int64? { value == 0 ? nil : Int64(value) }
        switch request.op {
        case .hello:
            request.client = try r.str("client")
            request.token = try r.str("token")
        case .ping:
            break
        case .reserve:
            request.order = try r.str("order")
            request.user = try r.str("user")
            request.sku = try r.str("sku")
            request.qty = Int(try r.u32("qty"))
            let ttlMs = try r.i64("ttl_ms")
            request.ttlMs = ttlMs == 0 ? nil : ttlMs
            request.ip = try r.optStr("ip")
            request.device = try r.optStr("device")
            // Risk signals came later: a frame that ends here has none; money later still.
            if r.remaining > 0 { try readSignals(into: &request, &r) }
            if r.remaining > 0 { try readMoney(into: &request, &r) }
        case .commit:
            request.order = try r.str("order")
            request.paymentRef = try r.str("payment_ref")
            // Came later: a frame that ends here does not wait.
            if r.remaining > 0 { request.waitMs = waitMs(try r.u32("wait_ms")) }
            // Later still: the buyer, checked against the order's user when given.
            if r.remaining > 0 { request.user = try r.optStr("user") }
        case .issue:
            request.order = try r.str("order")
            request.user = try r.str("user")
            request.sku = try r.str("sku")
            request.qty = Int(try r.u32("qty"))
            request.paymentRef = try r.str("payment_ref")
            request.ip = try r.optStr("ip")
            request.device = try r.optStr("device")
            if r.remaining > 0 { request.waitMs = waitMs(try r.u32("wait_ms")) }
            if r.remaining > 0 { try readSignals(into: &request, &r) }
            if r.remaining > 0 { try readMoney(into: &request, &r) }
        case .release:
            request.order = try r.str("order")
        case .order:
            request.order = try r.str("order")
            // The owner and the buyer's IP (anti-scraping) came later.
            if r.remaining > 0 {
                request.user = try r.optStr("user")
                request.ip = try r.optStr("ip")
            }
        case .risk:
            request.event = try r.str("event")
            request.user = try r.optStr("user")
            request.ip = try r.optStr("ip")
            request.device = try r.optStr("device")
            request.sku = try r.optStr("sku")
            let qty = try r.u32("qty")
            request.qty = qty == 0 ? nil : Int(qty)
            try readSignals(into: &request, &r)
        case .wait:
            request.order = try r.str("order")
            request.waitMs = Int64(try r.u32("wait_ms"))
            // The owner and the buyer's IP came later (a storefront must name the user).
            if r.remaining > 0 {
                request.user = try r.optStr("user")
                request.ip = try r.optStr("ip")
            }
        case .entitlements:
            request.user = try r.str("user")
            // Paging came later: a frame that ends after the user asks for the first page.
            if r.remaining > 0 {
                let limit = try r.u32("limit")
                request.limit = limit == 0 ? nil : Int(limit)
                request.cursor = try r.optStr("cursor")
            }
            if r.remaining > 0 { request.ip = try r.optStr("ip") }
        case .stock:
            request.sku = try r.str("sku")
        case .activate:
            request.order = try r.optStr("order")
            request.user = try r.optStr("user")
            let code = try r.i64("code_id")
            request.codeID = code == 0 ? nil : code
            request.token = try r.optStr("token")
            request.ip = try r.optStr("ip")
        case .skuSet, .importCSV, .void, .refund, .export, .stats, .verify, .reload, .skuList, .auditVerify, .tokenNew, .jobs,
             .supplierList, .supplierShow, .supplierMap, .supplierUnmap, .supplierPause, .supplierResume, .supplierSync, .supplierReconcile, .skuSource, .upstreamFailed, .upstreamRetry, .riskBlock, .riskUnblock, .riskList, .riskTest, .auditReveals, .reviewList, .reviewApprove, .reviewDeny, .deliver, .campaignSet, .campaignList, .couponAdd, .couponList, .distributorSet, .distributorList, .distributorStatement, .reconcilePayments, .report, .caseOpen, .caseList, .caseResolve, .webhookList, .webhookReplay:
            // Refused before the payload is read; kept exhaustive so a new op must choose.
            throw .invalid("operator operations are JSON only")
        }
    }

    /// The risk signals block: `optstr payment_account, i64 amount_cents, i64
    /// account_age_days, u8 phone_verified, optstr challenge_token`; an absent number is
    /// `Int64.min`, `phone_verified` is 0 absent, 1 false, 2 true.
    private static func readSignals(into request: inout Request, _ r: inout PayloadReader) throws(PayloadError) {
        request.paymentAccount = try r.optStr("payment_account")
        let amount = try r.i64("amount_cents")
        request.amountCents = amount == Int64.min ? nil : amount
        let age = try r.i64("account_age_days")
        request.accountAgeDays = age == Int64.min ? nil : age
        switch try r.u8("phone_verified") {
        case 0: request.phoneVerified = nil
        case 1: request.phoneVerified = false
        case 2: request.phoneVerified = true
        default: throw .invalid("phone_verified must be 0 (absent), 1 (false) or 2 (true)")
        }
        request.challengeToken = try r.optStr("challenge_token")
    }

    /// The money block of `reserve` and `issue` (after the signals block): `optstr currency,
    /// optstr channel, optstr campaign, optstr coupon, optstr distributor`.
    private static func readMoney(into request: inout Request, _ r: inout PayloadReader) throws(PayloadError) {
        request.currency = try r.optStr("currency")
        request.channel = try r.optStr("channel")
        request.campaign = try r.optStr("campaign")
        request.coupon = try r.optStr("coupon")
        request.distributor = try r.optStr("distributor")
    }

    /// Whether the request carries any money field of the money block.
    private static func hasMoney(_ request: Request) -> Bool {
        request.currency != nil || request.channel != nil || request.campaign != nil || request.coupon != nil
            || request.distributor != nil
    }

    /// Whether the request carries any risk signal (else the block is left out).
    private static func hasSignals(_ request: Request) -> Bool {
        request.paymentAccount != nil || request.amountCents != nil || request.accountAgeDays != nil
            || request.phoneVerified != nil || request.challengeToken != nil
    }

    /// Appends `request` as a binary frame, for clients.
    ///
    /// The request id must be `.number` within `UInt32` (a programmer error otherwise:
    /// this traps). Throws BAD_REQUEST for an operator op (JSON only), a missing field the
    /// op needs, or a `qty` outside `UInt32`; TOO_LARGE for a string over
    /// `ProtocolLimits.stringBytesMax` or a frame over `ProtocolLimits.frameBytesMax`.
    /// Nothing is appended when it throws.
    public static func encode(_ request: Request, into out: inout [UInt8]) throws(KamiError) {
        guard !request.op.isOperator else {
            throw KamiError(.badRequest, "\(request.op.name) is an operator operation: JSON only, on the Unix socket")
        }
        guard case .number(let number) = request.id, let id = UInt32(exactly: number) else {
            preconditionFailure("binary request ids are numbers in UInt32 range, got \(request.id)")
        }
        let start = out.count
        appendHeader(&out, op: request.op.rawValue, flags: 0, id: id)
        do throws(KamiError) {
            try writeRequestPayload(request, &out)
        } catch {
            out.removeSubrange(start...)
            throw error
        }
        let frameCount = out.count - start
        guard frameCount <= ProtocolLimits.frameBytesMax else {
            out.removeSubrange(start...)
            throw KamiError(.tooLarge, "\(request.op.name) request of \(frameCount) bytes is over the frame limit "
                + "of \(ProtocolLimits.frameBytesMax) bytes")
        }
        out.setU32LE(UInt32(frameCount - ProtocolLimits.frameHeaderBytes), at: start + 8)
    }

    private static func writeRequestPayload(_ request: Request, _ out: inout [UInt8]) throws(KamiError) {
        let op = request.op
        func required(_ value: String?, _ field: StaticString) throws(KamiError) {
            guard let value else { throw KamiError(.badRequest, "\(op.name) needs field \(field)") }
            try appendRequestString(value, field, &out)
        }
        func optional(_ value: String?, _ field: StaticString) throws(KamiError) {
            guard let value else { return out.appendU16LE(BinaryFrame.absentLength) }
            try appendRequestString(value, field, &out)
        }
        func quantity() throws(KamiError) {
            guard let qty = request.qty else { throw KamiError(.badRequest, "\(op.name) needs field qty") }
            guard let wire = UInt32(exactly: qty) else {
                throw KamiError(.badRequest, "qty must be between 0 and \(UInt32.max), got \(qty)")
            }
            out.appendU32LE(wire)
        }
        func signals() throws(KamiError) {
            try optional(request.paymentAccount, "payment_account")
            out.appendI64LE(request.amountCents ?? Int64.min)
            out.appendI64LE(request.accountAgeDays ?? Int64.min)
            out.append(request.phoneVerified.map { $0 ? 2 : 1 } ?? 0)
            try optional(request.challengeToken, "challenge_token")
        }
        func money() throws(KamiError) {
            try optional(request.currency, "currency")
            try optional(request.channel, "channel")
            try optional(request.campaign, "campaign")
            try optional(request.coupon, "coupon")
            try optional(request.distributor, "distributor")
        }
        func wait(required: Bool) throws(KamiError) {
            guard required || request.waitMs != nil else { return }
            guard let wire = UInt32(exactly: request.waitMs ?? 0) else {
                throw KamiError(.badRequest, "wait_ms must be between 0 and \(UInt32.max), got \(request.waitMs ?? 0)")
            }
            out.appendU32LE(wire)
        }
        switch op {
        case .hello:
            try required(request.client, "client")
            try required(request.token, "token")
        case .ping:
            break
        case .reserve:
            try required(request.order, "order")
            try required(request.user, "user")
            try required(request.sku, "sku")
            try quantity()
            out.appendI64LE(request.ttlMs ?? 0)
            try optional(request.ip, "ip")
            try optional(request.device, "device")
            if hasSignals(request) || hasMoney(request) { try signals() }
            if hasMoney(request) { try money() }
        case .commit:
            try required(request.order, "order")
            try required(request.paymentRef, "payment_ref")
            if request.user != nil {
                try wait(required: true)
                try optional(request.user, "user")
            } else {
                try wait(required: false)
            }
        case .issue:
            try required(request.order, "order")
            try required(request.user, "user")
            try required(request.sku, "sku")
            try quantity()
            try required(request.paymentRef, "payment_ref")
            try optional(request.ip, "ip")
            try optional(request.device, "device")
            if hasSignals(request) || hasMoney(request) {
                try wait(required: true)
                try signals()
                if hasMoney(request) { try money() }
            } else {
                try wait(required: false)
            }
        case .release:
            try required(request.order, "order")
        case .order:
            try required(request.order, "order")
            if request.user != nil || request.ip != nil {
                try optional(request.user, "user")
                try optional(request.ip, "ip")
            }
        case .risk:
            try required(request.event, "event")
            try optional(request.user, "user")
            try optional(request.ip, "ip")
            try optional(request.device, "device")
            try optional(request.sku, "sku")
            guard let qty = UInt32(exactly: request.qty ?? 0) else {
                throw KamiError(.badRequest, "qty must be between 0 and \(UInt32.max), got \(request.qty ?? 0)")
            }
            out.appendU32LE(qty)
            try signals()
        case .wait:
            try required(request.order, "order")
            try wait(required: true)
            if request.user != nil || request.ip != nil {
                try optional(request.user, "user")
                try optional(request.ip, "ip")
            }
        case .entitlements:
            try required(request.user, "user")
            if request.limit != nil || request.cursor != nil || request.ip != nil {
                guard let limit = UInt32(exactly: request.limit ?? 0) else {
                    throw KamiError(.badRequest, "limit must be between 0 and \(UInt32.max), got \(request.limit ?? 0)")
                }
                out.appendU32LE(limit)
                try optional(request.cursor, "cursor")
                if request.ip != nil { try optional(request.ip, "ip") }
            }
        case .activate:
            try optional(request.order, "order")
            try optional(request.user, "user")
            out.appendI64LE(request.codeID ?? 0)
            try optional(request.token, "token")
            try optional(request.ip, "ip")
        case .stock:
            try required(request.sku, "sku")
        case .skuSet, .importCSV, .void, .refund, .export, .stats, .verify, .reload, .skuList, .auditVerify, .tokenNew, .jobs,
             .supplierList, .supplierShow, .supplierMap, .supplierUnmap, .supplierPause, .supplierResume, .supplierSync, .supplierReconcile, .skuSource, .upstreamFailed, .upstreamRetry, .riskBlock, .riskUnblock, .riskList, .riskTest, .auditReveals, .reviewList, .reviewApprove, .reviewDeny, .deliver, .campaignSet, .campaignList, .couponAdd, .couponList, .distributorSet, .distributorList, .distributorStatement, .reconcilePayments, .report, .caseOpen, .caseList, .caseResolve, .webhookList, .webhookReplay:
            throw KamiError(.badRequest, "\(op.name) is an operator operation: JSON only, on the Unix socket")
        }
    }

    private static func appendRequestString(_ value: String, _ field: StaticString, _ out: inout [UInt8])
        throws(KamiError)
    {
        let count = value.utf8.count
        guard count <= ProtocolLimits.stringBytesMax else {
            throw KamiError(.tooLarge, "field \(field) is \(count) bytes, over the limit of "
                + "\(ProtocolLimits.stringBytesMax)")
        }
        out.appendU16LE(UInt16(count))
        out.append(contentsOf: value.utf8)
    }

    /// Appends a 12-byte header with a zero payload length, to be patched once the payload
    /// is written.
    static func appendHeader(_ out: inout [UInt8], op: UInt8, flags: UInt8, id: UInt32) {
        out.append(BinaryFrame.magic)
        out.append(BinaryFrame.version)
        out.append(op)
        out.append(flags)
        out.appendU32LE(id)
        out.appendU32LE(0)
    }
}
