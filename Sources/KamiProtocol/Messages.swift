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
    /// Long-polls an order pending upstream until it is delivered or failed (or `wait_ms`).
    case wait = 10
    /// Asks the risk gate about a storefront event (`register`, `login`, `pay`, …).
    case risk = 11
    /// Marks codes of an order used (by the storefront for its buyer, or by a brand's page
    /// with an activation token); answered like `entitlements`, one line per code.
    case activate = 12

    case skuSet = 32
    case importCSV = 33
    case void = 34
    case refund = 35
    case export = 36
    case stats = 37
    case verify = 38
    case reload = 39
    case skuList = 40
    case auditVerify = 41
    case tokenNew = 42
    case jobs = 43
    case supplierList = 44
    case supplierShow = 45
    case supplierMap = 46
    case supplierUnmap = 47
    case supplierPause = 48
    case supplierResume = 49
    case supplierSync = 50
    case supplierReconcile = 51
    case skuSource = 52
    case upstreamFailed = 53
    case upstreamRetry = 54
    case riskBlock = 55
    case riskUnblock = 56
    case riskList = 57
    case riskTest = 58
    case auditReveals = 59
    case reviewList = 60
    case reviewApprove = 61
    case reviewDeny = 62
    case deliver = 63
    case campaignSet = 64
    case campaignList = 65
    case couponAdd = 66
    case couponList = 67
    case distributorSet = 68
    case distributorList = 69
    case distributorStatement = 70
    case reconcilePayments = 71
    case report = 72
    case caseOpen = 73
    case caseList = 74
    case caseResolve = 75
    case webhookList = 76
    case webhookReplay = 77

    /// The name used in JSON (`"op": "reserve"`); the table is `wireName`.
    public var name: String { wireName.description }

    /// Looks an operation up by its JSON name.
    public init?(name: String) {
        guard let match = Operation.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }

    /// Whether only the operator (Unix socket, checked peer) may use it.
    /// Whether only the operator's Unix socket may send it. `case_open` is numbered with the
    /// operator's operations but a storefront may send it too, for its own buyer's order.
    public var isOperator: Bool { rawValue >= 32 && self != .caseOpen }
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
    /// Echoed in the reply.
    public var id: RequestID
    /// What to do.
    public var op: Operation
    // Storefront fields.
    /// The storefront's order id: the idempotency key (`order` on the wire).
    public var order: String?
    /// The buyer's id in the storefront (`user`).
    public var user: String?
    /// The SKU key (`sku`).
    public var sku: String?
    /// Units to reserve or issue (`qty`).
    public var qty: Int?
    /// Hold time for `reserve` (`ttl_ms`); nil (or 0 on the wire) is the server's default.
    public var ttlMs: Int64?
    /// The payment provider's reference (`payment_ref`).
    public var paymentRef: String?
    /// The buyer's IP address, for the risk gate (`ip`).
    public var ip: String?
    /// The buyer's device id, for the risk gate (`device`).
    public var device: String?
    /// Risk signals (`payment_account`, `amount_cents`, `account_age_days`,
    /// `phone_verified`, `challenge_token`) on `reserve`, `issue` and `risk`.
    public var paymentAccount: String?
    public var amountCents: Int64?
    public var accountAgeDays: Int64?
    public var phoneVerified: Bool?
    public var challengeToken: String?
    /// `risk`: the storefront's event name (`event`).
    public var event: String?
    /// `risk_block`, `risk_unblock`: the list (`block`, `allow`), the kind of value
    /// (`user`, `ip`, `device`, `payment`) and the value.
    public var list: String?
    public var kind: String?
    public var value: String?
    /// `hello`.
    public var client: String?
    /// `hello`: the client's token.
    public var token: String?
    // Operator fields.
    /// `sku_set`: display name.
    public var name: String?
    /// `sku_set`: price in minor units (`price_cents`).
    public var priceCents: Int64?
    /// `sku_set`: most units one user may hold (`per_user_limit`).
    public var perUserLimit: Int?
    /// `sku_set`: activation URL template (`activation_url`).
    public var activationURL: String?
    /// `sku_set`: how to use a code of the SKU, shown on the buyer's entitlements page (`usage_guide`).
    public var usageGuide: String?
    /// `import`: server-side path of the CSV file; `export`: path to write.
    public var path: String?
    /// `import`: batch name to record; `void`: batch to void.
    public var batch: String?
    /// `void`: one code (`code_id`).
    public var codeID: Int64?
    /// `export`: include secrets (`with_secrets`); false unless asked.
    public var withSecrets: Bool?
    /// `import`: check without importing (`dry_run`).
    public var dryRun: Bool?
    /// `export`: replace an existing regular file at `path` (never anything else).
    public var replace: Bool?
    /// `entitlements`: most codes in the page (`limit`); nil is the server's default.
    public var limit: Int?
    /// `entitlements`: where the page starts (`cursor`, from the last page's `next_cursor`).
    public var cursor: String?
    /// `issue`, `commit`: wait up to this long for an order fulfilled upstream; `wait`: how
    /// long to wait (`wait_ms`).
    public var waitMs: Int64?
    // Supplier fields (operator).
    /// A supplier's id in the config (`supplier`).
    public var supplier: String?
    /// The SKU's product id at the supplier (`product`).
    public var product: String?
    /// A supplier's cost per unit, minor units (`cost_cents`).
    public var costCents: Int64?
    /// Lower is preferred (`priority`).
    public var priority: Int64?
    /// Relative weight for the weighted strategy (`weight`).
    public var weight: Int64?
    /// `sku_source`: pool, upstream or pool_then_upstream (`source_policy`).
    public var sourcePolicy: String?
    /// `sku_source`: cheapest, fastest, priority or weighted (`strategy`).
    public var strategy: String?
    /// `sku_source`: the margin guard (`min_margin_cents`).
    public var minMarginCents: Int64?
    /// `sku_source`: fail or wait (`no_candidate`).
    public var noCandidate: String?
    /// `sku_source`: buy ahead under this many available codes (`low_water`).
    public var lowWater: Int64?
    /// `sku_source`: codes bought per buy-ahead (`buy_ahead_units`), and the most spent on
    /// buy-ahead per UTC day (`buy_ahead_budget_cents`).
    public var buyAheadUnits: Int64?
    public var buyAheadBudgetCents: Int64?
    /// `supplier_reconcile`: the window, Unix ms (`since_ms`, `until_ms`).
    public var sinceMs: Int64?
    public var untilMs: Int64?
    /// `sku_set`: whether an operator delivers the SKU's codes by hand (`manual_delivery`),
    /// and how long its orders wait in the review queue (`review_ttl_ms`; 0: the daemon's).
    public var manualDelivery: Bool?
    public var reviewTTLMs: Int64?
    /// `deliver`: the codes an operator hands out, one per line, each `secret` or
    /// `card_number<TAB>secret` (`secrets`). Never logged or echoed.
    public var secrets: Secret?
    /// `sku_set`: the SKU is a bundle of these components, `key:units,key:units`
    /// (`bundle`).
    public var bundle: String?
    /// `reserve`, `issue`: where the money came from and went (`currency`, ISO 4217, the
    /// shop's by default; `channel`, the storefront or marketplace; `campaign`, `coupon`,
    /// `distributor`, the referrer of a 分销 sale). `amount_cents` is what the buyer paid.
    public var currency: String?
    public var channel: String?
    public var campaign: String?
    public var coupon: String?
    public var distributor: String?
    /// `campaign_set`: `discount_cents` off the SKU's price, `budget_cents` in all.
    public var discountCents: Int64?
    public var budgetCents: Int64?
    /// `coupon_add`: the codes, one per line (`codes`), or how many to generate (`count`).
    public var codes: String?
    public var count: Int64?
    /// `distributor_set`: the commission rate in basis points (`rate_bps`).
    public var rateBps: Int64?
    /// `report`: how to group (`by`: sku, channel, campaign, day, week, month).
    public var by: String?
    /// `case_resolve`: the case (`case`); `case_open`: a note on it (`note`).
    public var caseID: Int64?
    public var note: String?

    /// Makes a request with only the id and operation set.
    public init(id: RequestID, op: Operation) {
        self.id = id
        self.op = op
    }
}

/// One code in a reply.
public struct WireCode: Sendable, Hashable {
    /// The code's id (`code_id`).
    public var codeID: Int64
    /// The code's SKU key.
    public var sku: String
    /// Present only where the owner may see it (a committed order).
    public var secret: Secret?
    /// The card number, for cards sold as number plus password (`card_number`).
    public var cardNumber: String?
    /// The SKU's activation link for this code (`activation_url`).
    public var activationURL: String?
    /// Code state for entitlements (`issued`, `voided`); nil elsewhere.
    public var state: WireCodeState?
    /// Owning order for entitlements; nil elsewhere.
    public var order: String?
    /// Entitlements and activations: what the buyer's page shows (`status`: pending,
    /// delivered, used, expired, refunded, voided), the SKU's name and usage guide, the
    /// code's expiry, when the order was placed and when the code was activated (Unix ms).
    public var status: String?
    public var skuName: String?
    public var usageGuide: String?
    public var expiresAtMs: Int64?
    public var orderedAtMs: Int64?
    public var usedAtMs: Int64?

    /// Makes a code; the optional parts default to absent.
    public init(
        codeID: Int64, sku: String, secret: Secret? = nil, cardNumber: String? = nil, activationURL: String? = nil,
        state: WireCodeState? = nil, order: String? = nil
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
    /// The storefront's order id.
    public var order: String
    /// Where the order is in its life (a newer server's state this version does not know
    /// is `.other(name)`).
    public var state: WireOrderState
    /// The SKU key.
    public var sku: String
    /// Units ordered.
    public var qty: Int
    /// Hold deadline (reserved orders), Unix ms; 0 otherwise.
    public var expiresAtMs: Int64
    /// The order's codes (with secrets once committed).
    public var codes: [WireCode]

    /// Makes an order reply.
    public init(order: String, state: WireOrderState, sku: String, qty: Int, expiresAtMs: Int64, codes: [WireCode]) {
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
    /// The SKU key.
    public var sku: String
    /// Codes that can be sold now.
    public var available: Int64
    /// Codes held by unpaid orders.
    public var reserved: Int64
    /// Codes delivered.
    public var issued: Int64
    /// Codes taken out of sale.
    public var voided: Int64
    /// Codes ever imported: available + reserved + issued + voided.
    public var imported: Int64

    /// Makes a stock reply.
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

    /// Structural equality; object members compare in order.
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

    /// Hashes the value's printed form (operator replies are never hashed on a hot path).
    public func hash(into hasher: inout Hasher) { hasher.combine("\(self)") }
}

/// What a successful reply carries.
public enum ReplyBody: Sendable, Hashable {
    /// `ping`: nothing more than `"ok": true`.
    case empty
    /// `hello`: the protocol version and features of the server.
    case hello(WireHello)
    /// `reserve`, `commit`, `issue`, `release`, `order`, `refund`.
    case order(WireOrder)
    /// `entitlements`: one page of the user's codes, newest first, and the cursor of the
    /// next page (nil on the last).
    case codes([WireCode], nextCursor: String?)
    /// `stock`.
    case stock(WireStock)
    /// `risk`: the gate's verdict.
    case risk(RiskVerdict)
    /// Operator replies: extra top-level fields.
    case fields([(String, JSONValue)])

    /// Equality by case and contents; `fields` compare in order.
    public static func == (a: ReplyBody, b: ReplyBody) -> Bool {
        switch (a, b) {
        case (.empty, .empty): true
        case (.hello(let x), .hello(let y)): x == y
        case (.order(let x), .order(let y)): x == y
        case (.codes(let x, let xc), .codes(let y, let yc)): x == y && xc == yc
        case (.stock(let x), .stock(let y)): x == y
        case (.risk(let x), .risk(let y)): x == y
        case (.fields(let x), .fields(let y)): JSONValue.object(x) == JSONValue.object(y)
        default: false
        }
    }

    /// Hashes the body's printed form (secrets print as `<redacted>`).
    public func hash(into hasher: inout Hasher) { hasher.combine("\(self)") }
}

/// One reply: the request's id and either a body or an error.
public struct Reply: Sendable, Hashable {
    /// The id of the request this answers.
    public var id: RequestID
    /// The body, or the error.
    public var result: Result<ReplyBody, KamiError>

    /// Makes a reply.
    public init(id: RequestID, result: Result<ReplyBody, KamiError>) {
        self.id = id
        self.result = result
    }

    /// Equality of id and result.
    public static func == (a: Reply, b: Reply) -> Bool {
        guard a.id == b.id else { return false }
        switch (a.result, b.result) {
        case (.success(let x), .success(let y)): return x == y
        case (.failure(let x), .failure(let y)): return x == y
        default: return false
        }
    }

    /// Hashes the id only.
    public func hash(into hasher: inout Hasher) { hasher.combine(id) }
}
