public import KamiCore

/// The operations of the protocol, with their numbers in binary frames. Numbers are never
/// reused. Storefront operations are below 32; operator operations (Unix socket only, JSON
/// only) from 32.
public enum Operation: UInt8, Sendable, CaseIterable {
    case hello = 1
    case ping = 2
    case reserve = 3
    case commit = 4
    case issue = 5
    case release = 6
    case order = 7
    case entitlements = 8
    case stock = 9

    case skuSet = 32
    case importCSV = 33
    case void = 34
    case refund = 35
    case export = 36
    case stats = 37
    case verify = 38
    case reload = 39

    /// The name used in JSON (`"op": "reserve"`).
    public var name: String {
        switch self {
        case .hello: "hello"
        case .ping: "ping"
        case .reserve: "reserve"
        case .commit: "commit"
        case .issue: "issue"
        case .release: "release"
        case .order: "order"
        case .entitlements: "entitlements"
        case .stock: "stock"
        case .skuSet: "sku_set"
        case .importCSV: "import"
        case .void: "void"
        case .refund: "refund"
        case .export: "export"
        case .stats: "stats"
        case .verify: "verify"
        case .reload: "reload"
        }
    }

    /// Looks an operation up by its JSON name.
    public init?(name: String) {
        guard let match = Operation.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }

    /// Whether only the operator (Unix socket, checked peer) may use it.
    public var isOperator: Bool { rawValue >= 32 }
}

/// The id a client gave its request, echoed in the reply. JSON allows any scalar; binary
/// frames carry a `UInt32`.
public enum RequestID: Sendable, Hashable {
    /// No id was given (JSON only); the reply carries `"id": null`.
    case none
    /// A JSON number or a binary request id.
    case number(Int64)
    /// A JSON string.
    case string(String)
    /// `true` / `false` in JSON.
    case bool(Bool)
}

/// One request, decoded from either encoding. Fields an operation does not use are nil; the
/// server checks the ones it needs and answers BAD_REQUEST naming a missing one.
public struct Request: Sendable, Hashable {
    public var id: RequestID
    public var op: Operation
    // Storefront fields.
    public var order: String?
    public var user: String?
    public var sku: String?
    public var qty: Int?
    public var ttlMs: Int64?
    public var paymentRef: String?
    public var ip: String?
    public var device: String?
    /// `hello`.
    public var client: String?
    public var token: String?
    // Operator fields.
    public var name: String?
    public var priceCents: Int64?
    public var perUserLimit: Int?
    public var activationURL: String?
    /// `import`: server-side path of the CSV file; `export`: path to write.
    public var path: String?
    public var batch: String?
    public var codeID: Int64?
    public var withSecrets: Bool?
    public var dryRun: Bool?

    /// Makes a request with only the id and operation set.
    public init(id: RequestID, op: Operation) {
        self.id = id
        self.op = op
    }
}

/// One code in a reply.
public struct WireCode: Sendable, Hashable {
    public var codeID: Int64
    public var sku: String
    /// Present only where the owner may see it (a committed order).
    public var secret: Secret?
    public var cardNumber: String?
    public var activationURL: String?
    /// Code state name for entitlements (`issued`, `voided`); nil elsewhere.
    public var state: String?
    /// Owning order for entitlements; nil elsewhere.
    public var order: String?

    public init(
        codeID: Int64, sku: String, secret: Secret? = nil, cardNumber: String? = nil, activationURL: String? = nil,
        state: String? = nil, order: String? = nil
    ) {
        self.codeID = codeID
        self.sku = sku
        self.secret = secret
        self.cardNumber = cardNumber
        self.activationURL = activationURL
        self.state = state
        self.order = order
    }
}

/// An order in a reply.
public struct WireOrder: Sendable, Hashable {
    public var order: String
    public var state: OrderState
    public var sku: String
    public var qty: Int
    /// Hold deadline (reserved orders), Unix ms; 0 otherwise.
    public var expiresAtMs: Int64
    public var codes: [WireCode]

    public init(order: String, state: OrderState, sku: String, qty: Int, expiresAtMs: Int64, codes: [WireCode]) {
        self.order = order
        self.state = state
        self.sku = sku
        self.qty = qty
        self.expiresAtMs = expiresAtMs
        self.codes = codes
    }
}

/// Stock of one SKU in a reply.
public struct WireStock: Sendable, Hashable {
    public var sku: String
    public var available: Int64
    public var reserved: Int64
    public var issued: Int64
    public var voided: Int64
    public var imported: Int64

    public init(sku: String, available: Int64, reserved: Int64, issued: Int64, voided: Int64, imported: Int64) {
        self.sku = sku
        self.available = available
        self.reserved = reserved
        self.issued = issued
        self.voided = voided
        self.imported = imported
    }
}

/// A small JSON value, for operator replies (stats, verify, import reports) whose shape is
/// free-form. Binary frames do not carry them (operator operations are JSON only).
public indirect enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case string(String)
    case array([JSONValue])
    /// Keys in the order given (replies are stable and diff-able).
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.int(let x), .int(let y)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x.map(\.0) == y.map(\.0) && x.map(\.1) == y.map(\.1)
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) { hasher.combine("\(self)") }
}

/// What a successful reply carries.
public enum ReplyBody: Sendable, Hashable {
    /// `hello`, `ping`: nothing more than `"ok": true`.
    case empty
    /// `reserve`, `commit`, `issue`, `release`, `order`, `refund`.
    case order(WireOrder)
    /// `entitlements`: the user's codes.
    case codes([WireCode])
    /// `stock`.
    case stock(WireStock)
    /// Operator replies: extra top-level fields.
    case fields([(String, JSONValue)])

    public static func == (a: ReplyBody, b: ReplyBody) -> Bool {
        switch (a, b) {
        case (.empty, .empty): true
        case (.order(let x), .order(let y)): x == y
        case (.codes(let x), .codes(let y)): x == y
        case (.stock(let x), .stock(let y)): x == y
        case (.fields(let x), .fields(let y)): JSONValue.object(x) == JSONValue.object(y)
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) { hasher.combine("\(self)") }
}

/// One reply: the request's id and either a body or an error.
public struct Reply: Sendable, Hashable {
    public var id: RequestID
    public var result: Result<ReplyBody, KamiError>

    public init(id: RequestID, result: Result<ReplyBody, KamiError>) {
        self.id = id
        self.result = result
    }

    public static func == (a: Reply, b: Reply) -> Bool {
        guard a.id == b.id else { return false }
        switch (a.result, b.result) {
        case (.success(let x), .success(let y)): return x == y
        case (.failure(let x), .failure(let y)): return x == y
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(id) }
}
