public import KamiCore

/// A campaign (营销): a price or a discount on one SKU for a time window, paid for out of a
/// subsidy budget, with a cap on uses per user. Its spend is what the live orders placed
/// under it were discounted: rebuilt from the orders at start, changed with each order, so
/// nothing but the orders themselves has to be durable.
public struct Campaign: Sendable, Hashable {
    public var key: String
    public var sku: SkuID
    /// The unit price under the campaign; else the SKU's price less `discountCents`.
    public var priceCents: Int64?
    public var discountCents: Int64
    public var startsAtMs: Int64
    public var endsAtMs: Int64
    /// The most the campaign may give away in all (list price − paid, summed over its orders).
    public var budgetCents: Int64
    /// Orders one user may place under it; 0: no limit.
    public var perUserUses: Int

    public init(key: String, sku: SkuID, priceCents: Int64?, discountCents: Int64, startsAtMs: Int64, endsAtMs: Int64,
                budgetCents: Int64, perUserUses: Int) {
        self.key = key
        self.sku = sku
        self.priceCents = priceCents
        self.discountCents = discountCents
        self.startsAtMs = startsAtMs
        self.endsAtMs = endsAtMs
        self.budgetCents = budgetCents
        self.perUserUses = perUserUses
    }

    /// The unit price under the campaign for a SKU listed at `listCents` (never negative).
    public func unitPrice(listCents: Int64) -> Int64 { max(0, priceCents ?? (listCents - discountCents)) }

    /// Refuses a campaign that cannot work; the error names the field.
    public func validate() throws(KamiError) {
        guard !key.isEmpty, key.utf8.count <= Limits.labelBytesMax, !key.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }) else {
            throw KamiError(.badRequest, "campaign must be 1...\(Limits.labelBytesMax) bytes without spaces or control characters")
        }
        if let priceCents, priceCents < 0 || priceCents > Limits.costCentsMax {
            throw KamiError(.badRequest, "campaign price_cents must be 0...\(Limits.costCentsMax)")
        }
        guard discountCents >= 0 && discountCents <= Limits.costCentsMax else {
            throw KamiError(.badRequest, "campaign discount_cents must be 0...\(Limits.costCentsMax)")
        }
        guard budgetCents >= 0 && budgetCents <= Limits.amountCentsMax else {
            throw KamiError(.badRequest, "campaign budget_cents must be 0...\(Limits.amountCentsMax)")
        }
        guard perUserUses >= 0 else { throw KamiError(.badRequest, "campaign per_user_limit must not be negative") }
        guard startsAtMs < endsAtMs else { throw KamiError(.badRequest, "campaign must end (until_ms) after it starts (since_ms)") }
    }
}

/// A batch of coupons: each code usable by one order at a time, for good once the order is
/// delivered; `discountCents` off the order; at most `perUserUses` codes of the batch per user.
public struct CouponBatch: Sendable, Hashable {
    public var key: String
    public var discountCents: Int64
    public var perUserUses: Int

    public init(key: String, discountCents: Int64, perUserUses: Int) {
        self.key = key
        self.discountCents = discountCents
        self.perUserUses = perUserUses
    }
}

/// A distributor (分销) with its commission rate, in basis points of the order's amount: a
/// default, and per SKU where the shop pays a different one.
public struct Distributor: Sendable, Hashable {
    public var key: String
    public var rateBps: Int
    public var skuRatesBps: [SkuID: Int]

    public init(key: String, rateBps: Int, skuRatesBps: [SkuID: Int] = [:]) {
        self.key = key
        self.rateBps = rateBps
        self.skuRatesBps = skuRatesBps
    }

    /// The commission on an order of `sku` paid `amountCents` (rounded down to the fen).
    public func commission(sku: SkuID, amountCents: Int64) -> Int64 {
        let rate = Int64(skuRatesBps[sku] ?? rateBps)
        let (product, overflow) = amountCents.multipliedReportingOverflow(by: rate)
        return overflow ? amountCents / 10_000 * rate : product / 10_000
    }

    /// Rates are 0 to 10,000 basis points (100%).
    public static let rateBpsMax = 10_000
}

/// What an order took from the promotions: its amount and subsidy, and the campaign and
/// coupon it holds.
public struct PromotionClaim: Sendable, Hashable {
    public var amountCents: Int64
    public var subsidyCents: Int64
    public var campaign: String?
    public var coupon: String?

    public init(amountCents: Int64, subsidyCents: Int64, campaign: String?, coupon: String?) {
        self.amountCents = amountCents
        self.subsidyCents = subsidyCents
        self.campaign = campaign
        self.coupon = coupon
    }
}

/// The live state of every campaign and coupon: what each campaign has given away and which
/// coupon each live order holds. One lock for all of it: only orders that name a campaign or
/// a coupon come here, and a claim is a few dictionary operations.
public final class PromotionBook: Sendable {
    struct State {
        var campaigns: [String: Campaign] = [:]
        var batches: [String: CouponBatch] = [:]
        /// coupon code → its batch.
        var coupons: [String: String] = [:]
        var spent: [String: Int64] = [:]
        /// campaign → user → live orders.
        var campaignUses: [String: [String: Int]] = [:]
        /// coupon code → the order holding it.
        var couponHolder: [String: String] = [:]
        /// batch → user → coupons held.
        var batchUses: [String: [String: Int]] = [:]
        /// order id → its claim, while the order lives.
        var claims: [String: (user: String, claim: PromotionClaim)] = [:]
    }

    private let state = Locked(State())

    public init() {}

    /// Puts the catalog in force (at start, and after each change).
    public func load(campaigns: [Campaign], batches: [CouponBatch], coupons: [(code: String, batch: String)]) {
        state.withLock { state in
            state.campaigns = Dictionary(campaigns.map { ($0.key, $0) }, uniquingKeysWith: { _, last in last })
            state.batches = Dictionary(batches.map { ($0.key, $0) }, uniquingKeysWith: { _, last in last })
            state.coupons = Dictionary(coupons.map { ($0.code, $0.batch) }, uniquingKeysWith: { first, _ in first })
        }
    }

    public func campaign(_ key: String) -> Campaign? { state.withLock { $0.campaigns[key] } }
    public var campaigns: [Campaign] { state.withLock { Array($0.campaigns.values).sorted { $0.key < $1.key } } }
    public var batches: [CouponBatch] { state.withLock { Array($0.batches.values).sorted { $0.key < $1.key } } }

    /// What a campaign has given away to live orders, and how many it has.
    public func spent(_ campaign: String) -> (cents: Int64, orders: Int) {
        state.withLock { state in
            (state.spent[campaign] ?? 0, state.claims.values.filter { $0.claim.campaign == campaign }.count)
        }
    }

    /// Per batch: codes, codes held by live orders.
    public func couponFigures() -> [String: (codes: Int, held: Int)] {
        state.withLock { state in
            var result: [String: (codes: Int, held: Int)] = [:]
            for (code, batch) in state.coupons {
                result[batch, default: (0, 0)].codes += 1
                if state.couponHolder[code] != nil { result[batch, default: (0, 0)].held += 1 }
            }
            return result
        }
    }

    /// Claims the campaign's budget and the coupon for a new order, all or nothing: the
    /// amount is the one given, else the campaign's price less the coupon's discount; the
    /// subsidy is what the order is paid under its list price. Refuses (LIMIT_REACHED) a
    /// budget that would be overspent, a coupon already held or used, a user past a limit;
    /// BAD_REQUEST an unknown or inactive campaign, a campaign for another SKU, an unknown
    /// coupon.
    public func claim(order: String, user: String, sku: SkuID, units: Int, listPriceCents: Int64, amountCents given: Int64?,
                      campaign campaignKey: String?, coupon: String?, nowMs: Int64) throws(KamiError) -> PromotionClaim {
        try state.withLock { (state: inout State) throws(KamiError) -> PromotionClaim in
            if let existing = state.claims[order] { return existing.claim }
            let (list, listOverflow) = listPriceCents.multipliedReportingOverflow(by: Int64(units))
            guard !listOverflow else { throw KamiError(.badRequest, "price × units overflows the amount") }
            var unitPrice = listPriceCents
            var campaign: Campaign?
            if let campaignKey {
                guard let found = state.campaigns[campaignKey] else {
                    throw KamiError(.badRequest, "no campaign \(campaignKey)")
                }
                guard found.sku == sku else { throw KamiError(.badRequest, "campaign \(campaignKey) is not for this SKU") }
                guard nowMs >= found.startsAtMs && nowMs < found.endsAtMs else {
                    throw KamiError(.badRequest, "campaign \(campaignKey) is not running now")
                }
                if found.perUserUses > 0 && (state.campaignUses[campaignKey]?[user] ?? 0) >= found.perUserUses {
                    throw KamiError(.limitReached, "user has used campaign \(campaignKey) \(found.perUserUses) times")
                }
                campaign = found
                unitPrice = found.unitPrice(listCents: listPriceCents)
            }
            var couponDiscount: Int64 = 0
            var batch: CouponBatch?
            if let coupon {
                guard let batchKey = state.coupons[coupon], let found = state.batches[batchKey] else {
                    throw KamiError(.badRequest, "no coupon \(coupon)")
                }
                if let holder = state.couponHolder[coupon], holder != order {
                    throw KamiError(.limitReached, "coupon \(coupon) is already used")
                }
                if found.perUserUses > 0 && (state.batchUses[batchKey]?[user] ?? 0) >= found.perUserUses {
                    throw KamiError(.limitReached, "user has used \(found.perUserUses) coupons of batch \(batchKey)")
                }
                batch = found
                couponDiscount = found.discountCents
            }
            let (computed, overflow) = unitPrice.multipliedReportingOverflow(by: Int64(units))
            guard !overflow else { throw KamiError(.badRequest, "price × units overflows the amount") }
            let amount = given ?? max(0, computed - couponDiscount)
            guard amount >= 0 && amount <= Limits.amountCentsMax else {
                throw KamiError(.badRequest, "amount_cents must be 0...\(Limits.amountCentsMax), got \(amount)")
            }
            let subsidy = max(0, list - amount)
            if let campaign {
                let spent = state.spent[campaign.key] ?? 0
                guard subsidy <= campaign.budgetCents - spent else {
                    throw KamiError(.limitReached, "campaign \(campaign.key)'s budget is spent (\(spent) of \(campaign.budgetCents))")
                }
                state.spent[campaign.key] = spent + subsidy
                state.campaignUses[campaign.key, default: [:]][user, default: 0] += 1
            }
            if let coupon, let batch {
                state.couponHolder[coupon] = order
                state.batchUses[batch.key, default: [:]][user, default: 0] += 1
            }
            let claim = PromotionClaim(amountCents: amount, subsidyCents: subsidy, campaign: campaign?.key, coupon: coupon)
            state.claims[order] = (user, claim)
            return claim
        }
    }

    /// Claims again, for an order whose hold lapsed, exactly what it claimed when placed (its
    /// stored amount and subsidy): refused when the budget, the coupon or a per-user cap no
    /// longer allows it.
    public func reclaim(order: String, user: String, claim: PromotionClaim) throws(KamiError) {
        try state.withLock { (state: inout State) throws(KamiError) in
            guard state.claims[order] == nil else { return }
            if let key = claim.campaign {
                guard let campaign = state.campaigns[key] else { throw KamiError(.badRequest, "no campaign \(key)") }
                if campaign.perUserUses > 0 && (state.campaignUses[key]?[user] ?? 0) >= campaign.perUserUses {
                    throw KamiError(.limitReached, "user has used campaign \(key) \(campaign.perUserUses) times")
                }
                let spent = state.spent[key] ?? 0
                guard claim.subsidyCents <= campaign.budgetCents - spent else {
                    throw KamiError(.limitReached, "campaign \(key)'s budget is spent (\(spent) of \(campaign.budgetCents))")
                }
            }
            if let coupon = claim.coupon {
                guard let batchKey = state.coupons[coupon], let batch = state.batches[batchKey] else {
                    throw KamiError(.badRequest, "no coupon \(coupon)")
                }
                if let holder = state.couponHolder[coupon], holder != order {
                    throw KamiError(.limitReached, "coupon \(coupon) is already used")
                }
                if batch.perUserUses > 0 && (state.batchUses[batchKey]?[user] ?? 0) >= batch.perUserUses {
                    throw KamiError(.limitReached, "user has used \(batch.perUserUses) coupons of batch \(batchKey)")
                }
            }
            if let key = claim.campaign {
                state.spent[key, default: 0] += claim.subsidyCents
                state.campaignUses[key, default: [:]][user, default: 0] += 1
            }
            if let coupon = claim.coupon, let batchKey = state.coupons[coupon] {
                state.couponHolder[coupon] = order
                state.batchUses[batchKey, default: [:]][user, default: 0] += 1
            }
            state.claims[order] = (user, claim)
        }
    }

    /// The order is over without a sale (released, expired, refunded, or never written):
    /// its subsidy goes back to the campaign's budget and its coupon is free again.
    public func release(order: String) {
        state.withLock { state in
            guard let (user, claim) = state.claims.removeValue(forKey: order) else { return }
            if let campaign = claim.campaign {
                state.spent[campaign, default: 0] -= claim.subsidyCents
                state.campaignUses[campaign]?[user, default: 1] -= 1
            }
            if let coupon = claim.coupon {
                if state.couponHolder[coupon] == order { state.couponHolder[coupon] = nil }
                if let batch = state.coupons[coupon] { state.batchUses[batch]?[user, default: 1] -= 1 }
            }
        }
    }

    /// A live order found at start: its claim is counted again, whatever the limits say now.
    public func restore(order: String, user: String, claim: PromotionClaim) {
        state.withLock { state in
            guard state.claims[order] == nil else { return }
            if let campaign = claim.campaign {
                state.spent[campaign, default: 0] += claim.subsidyCents
                state.campaignUses[campaign, default: [:]][user, default: 0] += 1
            }
            if let coupon = claim.coupon {
                state.couponHolder[coupon] = order
                if let batch = state.coupons[coupon] { state.batchUses[batch, default: [:]][user, default: 0] += 1 }
            }
            state.claims[order] = (user, claim)
        }
    }
}

/// An after-sales case (售后) on a delivered order: a code that does not work, a code the
/// buyer never got, anything else; resolved by replacing the code, by a refund, or rejected.
public struct AfterSalesCase: Sendable, Hashable {
    public enum Reason: String, Sendable, CaseIterable {
        case invalidCode = "invalid_code", notReceived = "not_received", other
    }
    public enum State: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        case open = 0, replaced = 1, refunded = 2, rejected = 3
        public var description: String {
            switch self {
            case .open: "open"
            case .replaced: "replaced"
            case .refunded: "refunded"
            case .rejected: "rejected"
            }
        }
    }
    public var id: Int64
    public var orderSeq: OrderSeq
    public var orderID: String
    public var sku: SkuID
    /// The code complained about (nil: the order as a whole).
    public var codeID: CodeID?
    public var reason: Reason
    public var state: State
    /// Where the code came from: `pool`, or the import's source (`upstream:SUPPLIER`, a file).
    public var source: String
    public var openedAtMs: Int64
    public var resolvedAtMs: Int64?
    public var note: String

    public init(id: Int64, orderSeq: OrderSeq, orderID: String, sku: SkuID, codeID: CodeID?, reason: Reason, state: State,
                source: String, openedAtMs: Int64, resolvedAtMs: Int64?, note: String) {
        self.id = id
        self.orderSeq = orderSeq
        self.orderID = orderID
        self.sku = sku
        self.codeID = codeID
        self.reason = reason
        self.state = state
        self.source = source
        self.openedAtMs = openedAtMs
        self.resolvedAtMs = resolvedAtMs
        self.note = note
    }
}
