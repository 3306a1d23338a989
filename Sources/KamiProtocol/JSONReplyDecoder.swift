import KamiCore

/// Why a reply line could not be read, with its id when it could be.
struct ReplyFailure: Error {
    var id: RequestID
    var error: KamiError
}

/// A small parser of whole JSON values, for replies: operator replies nest and have
/// free-form shapes, so they are parsed into `JSONValue`s first and mapped afterwards.
/// Replies are read by clients, not by the server's event loop, so a tree is affordable.
struct JSONValueParser {
    var scanner: JSONScanner

    /// Parses the line as exactly one value with only whitespace around it.
    mutating func document() throws(JSONSyntaxError) -> JSONValue {
        scanner.skipWhitespace()
        let value = try value(depth: 0)
        scanner.skipWhitespace()
        guard scanner.index == scanner.end else { throw scanner.error("unexpected bytes after the value") }
        return value
    }

    private mutating func value(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        switch scanner.current {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        default: break
        }
        let start = scanner.index
        switch try scanner.scalar() {
        case .null: return .null
        case .bool(let flag): return .bool(flag)
        case .string(let token): return .string(scanner.string(of: token))
        case .number(let token):
            guard let integer = token.integer else {
                throw scanner.error("numbers in replies are 64-bit integers", at: start)
            }
            return .int(integer)
        }
    }

    private mutating func enter(_ depth: Int) throws(JSONSyntaxError) {
        guard depth <= ProtocolLimits.jsonDepthMax else {
            throw scanner.error("nested deeper than \(ProtocolLimits.jsonDepthMax) levels")
        }
        scanner.index += 1
        scanner.skipWhitespace()
    }

    private mutating func array(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        try enter(depth)
        var items: [JSONValue] = []
        if scanner.current == UInt8(ascii: "]") {
            scanner.index += 1
            return .array(items)
        }
        while true {
            items.append(try value(depth: depth))
            scanner.skipWhitespace()
            if try endOfList(UInt8(ascii: "]")) { return .array(items) }
        }
    }

    private mutating func object(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        try enter(depth)
        var members: [(String, JSONValue)] = []
        var names = Set<String>()
        if scanner.current == UInt8(ascii: "}") {
            scanner.index += 1
            return .object(members)
        }
        while true {
            guard scanner.current == UInt8(ascii: "\"") else { throw scanner.error("expected a key in quotes") }
            let keyStart = scanner.index
            let name = scanner.string(of: try scanner.string())
            guard names.insert(name).inserted else { throw scanner.error("a key appears twice", at: keyStart) }
            scanner.skipWhitespace()
            try scanner.expect(UInt8(ascii: ":"), "':' after a key")
            scanner.skipWhitespace()
            members.append((name, try value(depth: depth)))
            scanner.skipWhitespace()
            if try endOfList(UInt8(ascii: "}")) { return .object(members) }
        }
    }

    /// Consumes `,` (returning false: more to come) or `closer` (returning true).
    private mutating func endOfList(_ closer: UInt8) throws(JSONSyntaxError) -> Bool {
        guard let next = scanner.current else { throw scanner.error("line ends inside an object or array") }
        if next == closer {
            scanner.index += 1
            return true
        }
        guard next == UInt8(ascii: ",") else { throw scanner.error("expected ',' or a closing bracket") }
        scanner.index += 1
        scanner.skipWhitespace()
        return false
    }
}

/// Maps a parsed reply line onto `Reply`.
enum JSONReplyDecoder {
    static func decode(base: UnsafeRawPointer, start: Int, end: Int, op: Operation?) -> Result<Reply, ReplyFailure> {
        var parser = JSONValueParser(scanner: JSONScanner(base: base, start: start, end: end))
        let document: JSONValue
        do throws(JSONSyntaxError) {
            document = try parser.document()
        } catch {
            return .failure(ReplyFailure(id: .none, error: KamiError(.badRequest, error.message)))
        }
        guard case .object(let members) = document else {
            return .failure(ReplyFailure(id: .none, error: KamiError(.badRequest, "a reply must be a JSON object")))
        }
        var id: RequestID = .none
        var ok: Bool?
        var errorValue: JSONValue?
        var rest: [(String, JSONValue)] = []
        for (name, value) in members {
            switch name {
            case "id":
                switch value {
                case .null: id = .none
                case .bool(let flag): id = .bool(flag)
                case .int(let number): id = .number(number)
                case .string(let text): id = .string(text)
                case .array, .object: return fail(.none, "reply id must be a scalar")
                }
            case "ok":
                guard case .bool(let flag) = value else { return fail(id, "reply field ok must be true or false") }
                ok = flag
            case "error":
                errorValue = value
            default:
                rest.append((name, value))
            }
        }
        guard let ok else { return fail(id, "reply has no field ok") }
        guard ok else { return error(id, errorValue) }
        guard errorValue == nil else { return fail(id, "a reply with ok true carries an error") }
        guard let op else { return .success(Reply(id: id, result: .success(body(rest)))) }
        guard let shaped = body(rest, kind: op.replyKind) else {
            return fail(id, "the \(op.name) reply lacks a field it must have, or has one of the wrong type")
        }
        return .success(Reply(id: id, result: .success(shaped)))
    }

    private static func fail(_ id: RequestID, _ message: String) -> Result<Reply, ReplyFailure> {
        .failure(ReplyFailure(id: id, error: KamiError(.badRequest, message)))
    }

    private static func error(_ id: RequestID, _ value: JSONValue?) -> Result<Reply, ReplyFailure> {
        guard case .object(let members) = value,
            let codeName = string(members, "code"), let message = string(members, "message")
        else { return fail(id, "reply with ok false has no error object with code and message strings") }
        // A code this version does not know is the server's error all the same: `.other`.
        var verdict: RiskVerdict? = nil
        if case .object(let risk)? = members.first(where: { $0.0 == "risk" })?.1 { verdict = self.verdict(Fields(risk)) }
        return .success(Reply(id: id, result: .failure(KamiError(ErrorCode(rawValue: codeName), message, verdict: verdict))))
    }

    private static func string(_ members: [(String, JSONValue)], _ name: String) -> String? {
        guard let value = members.first(where: { $0.0 == name })?.1, case .string(let text) = value else { return nil }
        return text
    }

    /// The body recognised by the keys it must have (extra keys are ignored), or `.fields`.
    static func body(_ members: [(String, JSONValue)]) -> ReplyBody {
        if members.isEmpty { return .empty }
        let names = Set(members.map(\.0))
        for kind in [ReplyKind.hello, .order, .stock, .codes, .risk] where names.isSuperset(of: kind.requiredKeys) {
            if let body = body(members, kind: kind) { return body }
        }
        return .fields(members)
    }

    /// The body of a reply of `kind`: its fields by name, extra ones ignored; nil when one it
    /// needs is missing or of the wrong type.
    static func body(_ members: [(String, JSONValue)], kind: ReplyKind) -> ReplyBody? {
        let fields = Fields(members)
        switch kind {
        case .empty:
            return .empty
        case .fields:
            return .fields(members)
        case .hello:
            guard let version = fields.int("protocol"), let server = fields.string("server"),
                case .array(let items)? = fields["features"] else { return nil }
            var features: [String] = []
            for item in items {
                guard case .string(let name) = item else { return nil }
                features.append(name)
            }
            return .hello(WireHello(protocolVersion: version, server: server, features: features))
        case .order:
            guard let order = fields.string("order"), let state = fields.string("state"), let sku = fields.string("sku"),
                let qty = fields.int("qty"), let expiresAtMs = fields.int("expires_at_ms"),
                let value = fields["codes"], let codes = codes(value, entitlements: false)
            else { return nil }
            return .order(WireOrder(order: order, state: WireOrderState(name: state), sku: sku, qty: Int(qty),
                                    expiresAtMs: expiresAtMs, codes: codes))
        case .codes:
            guard let value = fields["codes"], let codes = codes(value, entitlements: true) else { return nil }
            let next: String?
            switch fields["next_cursor"] {
            case nil, .null?: next = nil
            case .string(let cursor)?: next = cursor
            default: return nil
            }
            return .codes(codes, nextCursor: next)
        case .stock:
            guard let sku = fields.string("sku"), let available = fields.int("available"),
                let reserved = fields.int("reserved"), let issued = fields.int("issued"),
                let voided = fields.int("voided"), let imported = fields.int("imported")
            else { return nil }
            return .stock(WireStock(sku: sku, available: available, reserved: reserved, issued: issued,
                                    voided: voided, imported: imported))
        case .risk:
            return verdict(fields).map { .risk($0) }
        }
    }

    /// A verdict's fields; an unknown decision name is read as deny (the safe side).
    private static func verdict(_ fields: Fields) -> RiskVerdict? {
        guard let decision = fields.string("decision"), let reason = fields.string("reason"),
              case .array(let items)? = fields["rules"], let score = fields.int("score") else { return nil }
        var rules: [String] = []
        for item in items {
            guard case .string(let name) = item else { return nil }
            rules.append(name)
        }
        return RiskVerdict(decision: RiskVerdict.Decision(rawValue: decision) ?? .deny, reason: reason, rules: rules,
                           score: Int(clamping: score), challenge: fields.string("challenge"))
    }

    /// Members by name (a reply has a handful; the first of a name wins, names are unique).
    private struct Fields {
        let members: [(String, JSONValue)]
        init(_ members: [(String, JSONValue)]) { self.members = members }
        subscript(name: String) -> JSONValue? { members.first { $0.0 == name }?.1 }
        func string(_ name: String) -> String? {
            if case .string(let text)? = self[name] { return text }
            return nil
        }
        func int(_ name: String) -> Int64? {
            if case .int(let number)? = self[name] { return number }
            return nil
        }
    }

    private static func codes(_ value: JSONValue, entitlements: Bool) -> [WireCode]? {
        guard case .array(let items) = value else { return nil }
        var codes: [WireCode] = []
        codes.reserveCapacity(items.count)
        for item in items {
            guard case .object(let members) = item else { return nil }
            let fields = Fields(members)
            guard let codeID = fields.int("code_id"), let sku = fields.string("sku"),
                let secret = optional(fields["secret"]), let cardNumber = optional(fields["card_number"]),
                let activationURL = optional(fields["activation_url"])
            else { return nil }
            var code = WireCode(codeID: codeID, sku: sku, secret: secret.map { Secret(bytes: Array($0.utf8)) },
                                cardNumber: cardNumber, activationURL: activationURL)
            if entitlements {
                guard let order = optional(fields["order"]), let state = optional(fields["state"]) else { return nil }
                code.order = order
                code.state = state.map { WireCodeState(name: $0) }
                code.status = fields.string("status")
                code.skuName = fields.string("sku_name")
                code.usageGuide = fields.string("usage_guide")
                code.expiresAtMs = fields.int("expires_at_ms")
                code.orderedAtMs = fields.int("ordered_at_ms")
                code.usedAtMs = fields.int("used_at_ms")
            }
            codes.append(code)
        }
        return codes
    }

    /// `.some(nil)` for null or absent, `.some(text)` for a string, nil for anything else.
    private static func optional(_ value: JSONValue?) -> String?? {
        switch value {
        case nil, .null?: return .some(nil)
        case .string(let text)?: return .some(text)
        default: return nil
        }
    }
}
