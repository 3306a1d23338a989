import KamiCore

/// Decodes one JSON request line: a flat object whose values are scalars.
///
/// Syntax errors stop the scan. Other problems (a wrong type, a nested value, a duplicate
/// key, an unknown op) are remembered and the scan goes on, so that the reply can still
/// carry the request's id when it comes later in the line; the first problem is reported.
struct JSONRequestDecoder {
    private var scanner: JSONScanner
    private var request = Request(id: .none, op: .ping)
    private var op: Operation?
    private var seen: UInt128 = 0
    private var problem: String?
    /// Names of unknown fields seen so far, only created when there is one: duplicates
    /// are refused for them too, and they are rare.
    private var unknownKeys: Set<[UInt8]>?

    init(base: UnsafeRawPointer, start: Int, end: Int) {
        scanner = JSONScanner(base: base, start: start, end: end)
    }

    /// The request, or a BAD_REQUEST with the id (as far as it was read), either taking
    /// `consumed` bytes. Builds the `DecodeResult` here, from the request in place,
    /// because every copy of a `Request` (about 300 bytes) shows in the decode time.
    mutating func decode(consumed: Int) -> DecodeResult<Request> {
        do throws(JSONSyntaxError) {
            try object()
        } catch {
            return refuse(problem ?? error.message, consumed)
        }
        if let problem { return refuse(problem, consumed) }
        guard let op else { return refuse("missing field op; one of: \(Operation.namesList)", consumed) }
        request.op = op
        // 0 means "the server's default" in binary; JSON decodes to the same request.
        if request.ttlMs == 0 { request.ttlMs = nil }
        return .item(request, consumed: consumed)
    }

    private func refuse(_ message: String, _ consumed: Int) -> DecodeResult<Request> {
        .failure(id: request.id, error: KamiError(.badRequest, message), consumed: consumed, fatal: false)
    }

    private mutating func note(_ message: @autoclosure () -> String) {
        if problem == nil { problem = message() }
    }

    private mutating func object() throws(JSONSyntaxError) {
        scanner.skipWhitespace()
        try scanner.expect(UInt8(ascii: "{"), "'{' to start the request object")
        scanner.skipWhitespace()
        if scanner.current == UInt8(ascii: "}") {
            scanner.index += 1
        } else {
            while true {
                try member()
                scanner.skipWhitespace()
                guard let next = scanner.current else { throw scanner.error("line ends inside the object") }
                scanner.index += 1
                if next == UInt8(ascii: "}") { break }
                guard next == UInt8(ascii: ",") else {
                    scanner.index -= 1
                    throw scanner.error("expected ',' or '}'")
                }
                scanner.skipWhitespace()
            }
        }
        scanner.skipWhitespace()
        guard scanner.index == scanner.end else { throw scanner.error("unexpected bytes after the object") }
    }

    private mutating func member() throws(JSONSyntaxError) {
        guard scanner.current == UInt8(ascii: "\"") else { throw scanner.error("expected a field name in quotes") }
        let key = try scanner.string()
        scanner.skipWhitespace()
        try scanner.expect(UInt8(ascii: ":"), "':' after a field name")
        scanner.skipWhitespace()
        let field = lookUp(key)
        if let field {
            if seen & field.bit != 0 { note("field \(field.key) appears twice") }
            seen |= field.bit
        }
        if scanner.current == UInt8(ascii: "{") || scanner.current == UInt8(ascii: "[") {
            try scanner.skipNested()
            if let field {
                note("field \(field.key) must be a string, number, true, false or null, not an object or array")
            } else {
                note("request fields must be strings, numbers, true, false or null, not objects or arrays")
            }
            return
        }
        let value = try scanner.scalar()
        // After a problem only the id is still taken, for the error reply.
        if let field, problem == nil || field == .id { assign(field, value) }
    }

    /// The known field named by `key`, or nil after recording an unknown name (which is
    /// ignored, but still may not appear twice).
    private mutating func lookUp(_ key: JSONStringToken) -> JSONField? {
        if !key.hasEscapes, let field = JSONField.match(scanner.base + key.start, count: key.end - key.start) {
            return field
        }
        let bytes = scanner.bytes(of: key)
        if key.hasEscapes, let field = bytes.withUnsafeBytes({ JSONField.match($0.baseAddress!, count: $0.count) }) {
            return field
        }
        if unknownKeys == nil { unknownKeys = [] }
        if !unknownKeys!.insert(bytes).inserted { note("a field name appears twice") }
        return nil
    }

    private mutating func assign(_ field: JSONField, _ value: JSONScalarToken) {
        switch field {
        case .id: assignID(value)
        case .op: assignOp(value)
        case .order: request.order = string(field, value)
        case .user: request.user = string(field, value)
        case .sku: request.sku = string(field, value)
        case .paymentRef: request.paymentRef = string(field, value)
        case .ip: request.ip = string(field, value)
        case .device: request.device = string(field, value)
        case .client: request.client = string(field, value)
        case .token: request.token = string(field, value)
        case .name: request.name = string(field, value)
        case .activationURL: request.activationURL = string(field, value)
        case .usageGuide: request.usageGuide = string(field, value)
        case .path: request.path = string(field, value)
        case .batch: request.batch = string(field, value)
        case .qty: request.qty = integer(field, value).map { Int($0) }
        case .perUserLimit: request.perUserLimit = integer(field, value).map { Int($0) }
        case .ttlMs: request.ttlMs = integer(field, value)
        case .priceCents: request.priceCents = integer(field, value)
        case .codeID: request.codeID = integer(field, value)
        case .withSecrets: request.withSecrets = bool(field, value)
        case .dryRun: request.dryRun = bool(field, value)
        case .replace: request.replace = bool(field, value)
        case .limit: request.limit = integer(field, value).map { Int($0) }
        case .cursor: request.cursor = string(field, value)
        case .waitMs: request.waitMs = integer(field, value)
        case .supplier: request.supplier = string(field, value)
        case .product: request.product = string(field, value)
        case .costCents: request.costCents = integer(field, value)
        case .priority: request.priority = integer(field, value)
        case .weight: request.weight = integer(field, value)
        case .sourcePolicy: request.sourcePolicy = string(field, value)
        case .strategy: request.strategy = string(field, value)
        case .minMarginCents: request.minMarginCents = integer(field, value)
        case .noCandidate: request.noCandidate = string(field, value)
        case .lowWater: request.lowWater = integer(field, value)
        case .sinceMs: request.sinceMs = integer(field, value)
        case .untilMs: request.untilMs = integer(field, value)
        case .buyAheadUnits: request.buyAheadUnits = integer(field, value)
        case .buyAheadBudgetCents: request.buyAheadBudgetCents = integer(field, value)
        case .paymentAccount: request.paymentAccount = string(field, value)
        case .amountCents: request.amountCents = integer(field, value)
        case .accountAgeDays: request.accountAgeDays = integer(field, value)
        case .phoneVerified: request.phoneVerified = bool(field, value)
        case .challengeToken: request.challengeToken = string(field, value)
        case .event: request.event = string(field, value)
        case .list: request.list = string(field, value)
        case .kind: request.kind = string(field, value)
        case .value: request.value = string(field, value)
        case .manualDelivery: request.manualDelivery = bool(field, value)
        case .reviewTTLMs: request.reviewTTLMs = integer(field, value)
        case .secrets: request.secrets = string(field, value).map { Secret($0) }
        case .bundle: request.bundle = string(field, value)
        case .currency: request.currency = string(field, value)
        case .channel: request.channel = string(field, value)
        case .campaign: request.campaign = string(field, value)
        case .coupon: request.coupon = string(field, value)
        case .distributor: request.distributor = string(field, value)
        case .discountCents: request.discountCents = integer(field, value)
        case .budgetCents: request.budgetCents = integer(field, value)
        case .codes: request.codes = string(field, value)
        case .count: request.count = integer(field, value)
        case .rateBps: request.rateBps = integer(field, value)
        case .by: request.by = string(field, value)
        case .caseID: request.caseID = integer(field, value)
        case .note: request.note = string(field, value)
        }
    }

    /// Any scalar is an id. A number must be an integer within 64 bits: a fraction would
    /// come back in another spelling (or as a string), and a client matching replies by id
    /// would never find its own.
    private mutating func assignID(_ value: JSONScalarToken) {
        switch value {
        case .null: request.id = .none
        case .bool(let flag): request.id = .bool(flag)
        case .string(let token): request.id = .string(scanner.string(of: token))
        case .number(let token):
            guard let integer = token.integer else {
                return note("id must be an integer within 64 bits, a string, true, false or null")
            }
            request.id = .number(integer)
        }
    }

    private mutating func assignOp(_ value: JSONScalarToken) {
        switch value {
        case .null:
            op = nil  // null is absence, so the line is answered "missing field op"
        case .string(let token):
            let found: Operation?
            if token.hasEscapes {
                found = scanner.bytes(of: token).withUnsafeBytes { Operation.named($0.baseAddress!, count: $0.count) }
            } else {
                found = Operation.named(scanner.base + token.start, count: token.end - token.start)
            }
            // The unknown name itself is not repeated: error messages never echo values.
            guard let found else { return note("unknown op; one of: \(Operation.namesList)") }
            op = found
        default:
            note("field op must be a string, one of: \(Operation.namesList)")
        }
    }

    private mutating func string(_ field: JSONField, _ value: JSONScalarToken) -> String? {
        switch value {
        case .string(let token): return scanner.string(of: token)
        case .null: return nil
        default:
            note("field \(field.key) must be a string")
            return nil
        }
    }

    private mutating func integer(_ field: JSONField, _ value: JSONScalarToken) -> Int64? {
        switch value {
        case .number(let token):
            if let integer = token.integer { return integer }
            if token.isFractional {
                note("field \(field.key) must be an integer (no fraction or exponent)")
            } else {
                note("field \(field.key) is out of range for a 64-bit integer")
            }
            return nil
        case .null: return nil
        default:
            note("field \(field.key) must be an integer")
            return nil
        }
    }

    private mutating func bool(_ field: JSONField, _ value: JSONScalarToken) -> Bool? {
        switch value {
        case .bool(let flag): return flag
        case .null: return nil
        default:
            note("field \(field.key) must be true or false")
            return nil
        }
    }
}
