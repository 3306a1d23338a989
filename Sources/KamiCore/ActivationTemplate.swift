/// A SKU's activation link template, e.g. `https://brand.example/redeem?card={card_number}&o={order}`.
///
/// Placeholders are `{code_id}`, `{card_number}`, `{order}`, `{user}`, `{sku}` and `{token}` (a
/// signed activation token good for `Limits.activationTokenTTLMs`, minted each time the link is
/// shown, that the brand's page hands back to kamid's `activate`); every value is
/// percent-encoded (RFC 3986: only `A-Z a-z 0-9 - . _ ~` pass as they are), so a card number
/// with `&` or a user with `/` or a space cannot change the link's meaning. A secret never goes
/// in a link (it would sit in browser histories and proxy logs): `{secret}` is refused.
public enum ActivationTemplate {
    /// The placeholders a template may use.
    public static let placeholders = ["code_id", "card_number", "order", "user", "sku", "token"]

    /// What one code's link is made from.
    public struct Values: Sendable {
        public var codeID: CodeID
        public var cardNumber: String?
        public var order: String
        public var user: String
        public var sku: String
        /// The activation token (minted only when the template has `{token}`).
        public var token: String?

        public init(codeID: CodeID, cardNumber: String?, order: String, user: String, sku: String, token: String? = nil) {
            self.token = token
            self.codeID = codeID
            self.cardNumber = cardNumber
            self.order = order
            self.user = user
            self.sku = sku
        }
    }

    /// Checks a template before it is stored: braces balanced, every placeholder known, no
    /// secret, no control characters or spaces (a link is one token).
    public static func validate(_ template: String) throws(KamiError) {
        var seen: Set<String> = []
        var rest = Substring(template)
        while let open = rest.firstIndex(where: { $0 == "{" || $0 == "}" }) {
            guard rest[open] == "{" else {
                throw KamiError(.badRequest, "activation URL has a '}' without its '{'")
            }
            let after = rest.index(after: open)
            guard let close = rest[after...].firstIndex(where: { $0 == "}" || $0 == "{" }), rest[close] == "}" else {
                throw KamiError(.badRequest, "activation URL has a '{' without its '}'")
            }
            let name = String(rest[after..<close])
            if name == "secret" || name == "code" {
                throw KamiError(.badRequest, "activation URL may not carry the secret ({\(name)}): links end up in "
                    + "browser histories and proxy logs; use {code_id} or {card_number}")
            }
            guard placeholders.contains(name) else {
                throw KamiError(.badRequest, "activation URL has an unknown placeholder {\(name)}; known: "
                    + placeholders.map { "{\($0)}" }.joined(separator: ", "))
            }
            // Each at most once: the links of a 500-code order must fit in one reply.
            guard seen.insert(name).inserted else {
                throw KamiError(.badRequest, "activation URL uses {\(name)} twice; each placeholder may appear once")
            }
            rest = rest[rest.index(after: close)...]
        }
        if let bad = template.unicodeScalars.first(where: { $0.value <= 0x20 || $0.value == 0x7F }) {
            throw KamiError(.badRequest, "activation URL has a space or control character (U+"
                + String(bad.value, radix: 16, uppercase: true) + "); encode it as %XX")
        }
    }

    /// Whether expanding `template` needs a token (so one is minted only then).
    public static func needsToken(_ template: String) -> Bool { template.contains("{token}") }

    /// The link for one code. A placeholder that is not known (a template stored before
    /// templates were checked) stays as written.
    public static func expand(_ template: String, _ values: Values) -> String {
        var out = ""
        out.reserveCapacity(template.utf8.count + 32)
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            let after = rest.index(after: open)
            guard let close = rest[after...].firstIndex(of: "}") else {
                out += rest[open...]
                return out
            }
            let name = rest[after..<close]
            let value: String? = switch name {
            case "code_id": String(values.codeID)
            case "card_number": values.cardNumber ?? ""
            case "order": values.order
            case "user": values.user
            case "sku": values.sku
            case "token": values.token ?? ""
            default: nil
            }
            if let value { out += percentEncoded(value) } else { out += rest[open...close] }
            rest = rest[rest.index(after: close)...]
        }
        out += rest
        return out
    }

    /// `value` with every byte outside RFC 3986's unreserved set written as `%XX` (UTF-8).
    public static func percentEncoded(_ value: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(value.utf8.count)
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                bytes.append(byte)
            default:
                bytes += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
