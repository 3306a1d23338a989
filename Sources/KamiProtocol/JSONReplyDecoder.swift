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
    static func decode(base: UnsafeRawPointer, start: Int, end: Int) -> Result<Reply, ReplyFailure> {
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
        return .success(Reply(id: id, result: .success(body(rest))))
    }

    private static func fail(_ id: RequestID, _ message: String) -> Result<Reply, ReplyFailure> {
        .failure(ReplyFailure(id: id, error: KamiError(.badRequest, message)))
    }

    private static func error(_ id: RequestID, _ value: JSONValue?) -> Result<Reply, ReplyFailure> {
        guard case .object(let members) = value,
            let codeName = string(members, "code"), let message = string(members, "message")
        else { return fail(id, "reply with ok false has no error object with code and message strings") }
        guard let code = ErrorCode(rawValue: codeName) else {
            return fail(id, "error code \(codeName) is unknown to this client; the server said: \(message)")
        }
        return .success(Reply(id: id, result: .failure(KamiError(code, message))))
    }

    private static func string(_ members: [(String, JSONValue)], _ name: String) -> String? {
        guard let value = members.first(where: { $0.0 == name })?.1, case .string(let text) = value else { return nil }
        return text
    }

    /// The body with exactly the shape of one of the structured replies, or `.fields`.
    static func body(_ members: [(String, JSONValue)]) -> ReplyBody {
        if members.isEmpty { return .empty }
        if let values = exactly(members, ["order", "state", "sku", "qty", "expires_at_ms", "codes"]),
            case .string(let order) = values[0], case .string(let stateName) = values[1],
            let state = OrderState(name: stateName), case .string(let sku) = values[2],
            case .int(let qty) = values[3], case .int(let expiresAtMs) = values[4],
            let codes = codes(values[5], entitlements: false)
        {
            return .order(WireOrder(order: order, state: state, sku: sku, qty: Int(qty), expiresAtMs: expiresAtMs,
                                    codes: codes))
        }
        if let values = exactly(members, ["codes"]), let codes = codes(values[0], entitlements: true) {
            return .codes(codes)
        }
        if let values = exactly(members, ["sku", "available", "reserved", "issued", "voided", "imported"]),
            case .string(let sku) = values[0], case .int(let available) = values[1],
            case .int(let reserved) = values[2], case .int(let issued) = values[3],
            case .int(let voided) = values[4], case .int(let imported) = values[5]
        {
            return .stock(WireStock(sku: sku, available: available, reserved: reserved, issued: issued,
                                    voided: voided, imported: imported))
        }
        return .fields(members)
    }

    /// The values of `members` in the order of `names`, when the keys are exactly those.
    private static func exactly(_ members: [(String, JSONValue)], _ names: [String]) -> [JSONValue]? {
        guard members.count == names.count else { return nil }
        var values: [JSONValue] = []
        values.reserveCapacity(names.count)
        for name in names {
            guard let value = members.first(where: { $0.0 == name })?.1 else { return nil }
            values.append(value)
        }
        return values
    }

    private static func codes(_ value: JSONValue, entitlements: Bool) -> [WireCode]? {
        guard case .array(let items) = value else { return nil }
        var names = ["code_id", "sku", "secret", "card_number", "activation_url"]
        if entitlements { names += ["order", "state"] }
        var codes: [WireCode] = []
        codes.reserveCapacity(items.count)
        for item in items {
            guard case .object(let members) = item, let values = exactly(members, names),
                case .int(let codeID) = values[0], case .string(let sku) = values[1],
                let secret = optional(values[2]), let cardNumber = optional(values[3]),
                let activationURL = optional(values[4])
            else { return nil }
            var code = WireCode(codeID: codeID, sku: sku, secret: secret.map { Secret(bytes: Array($0.utf8)) },
                                cardNumber: cardNumber, activationURL: activationURL)
            if entitlements {
                guard let order = optional(values[5]), let state = optional(values[6]) else { return nil }
                code.order = order
                code.state = state
            }
            codes.append(code)
        }
        return codes
    }

    /// `.some(nil)` for null, `.some(text)` for a string, nil for anything else.
    private static func optional(_ value: JSONValue) -> String?? {
        switch value {
        case .null: return .some(nil)
        case .string(let text): return .some(text)
        default: return nil
        }
    }
}
