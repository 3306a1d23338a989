import KamiCore
import KamiLedger
import KamiStore

/// The money each change moves, as journal lines the store writes in the change's own
/// transaction (docs/money.md). The engine decides them; `KamiLedger` names the accounts.
extension EngineCore {
    /// An order delivered from the pool: its sale (when it has an amount) and what its codes
    /// cost, out of the inventory. `revealed` carries each code's cost as read to open it.
    func deliveredFromPool(_ order: Order, sku: Sku, codes: [OrderCode], revealed: [IssuedCode]) -> [JournalLine] {
        // An order holds a few codes: a search beats building a dictionary on every issue.
        func cost(_ id: CodeID) -> Int64 { revealed.first { $0.codeID == id }?.costCents ?? 0 }
        return labelled(order, Journal.delivered(
            orderSeq: order.seq, sku: order.sku, amountCents: order.amountCents, currency: order.labels?.currency,
            subsidyCents: order.subsidyCents, commission: commission(order), parts: parts(sku),
            costs: codes.map { (sku: $0.sku, costCents: cost($0.codeID), fromPool: true, source: nil) }))
    }

    /// An order delivered by a supplier (`source` `upstream:SUPPLIER`) or an operator's hand
    /// (`manual:WHO`): its sale and `costCents` a code, owed to that source.
    func deliveredFrom(source: String, _ order: Order, items: [(sku: SkuID, item: DeliveredItem)], costCents: Int64) -> [JournalLine] {
        labelled(order, Journal.delivered(
            orderSeq: order.seq, sku: order.sku, amountCents: order.amountCents, currency: order.labels?.currency,
            subsidyCents: order.subsidyCents, commission: commission(order), parts: sku(id: order.sku).map(parts) ?? [], costs: items.map { (sku: $0.sku, costCents: costCents, fromPool: false, source: source) }))
    }

    /// Stock voided before it was sold (available or reserved codes): written off at cost.
    /// Reads the codes' costs (voids and quarantines are rare); a failed read fails the void,
    /// never writes off a wrong amount.
    func writeOffs(_ codes: [OrderCode]) throws(KamiError) -> [JournalLine] {
        guard !codes.isEmpty else { return [] }
        let rows = try store.codes(codes.map(\.codeID))
        guard rows.count == codes.count else {
            throw KamiError(.unavailable, "could not read the cost of \(codes.count - rows.count) voided codes; try again")
        }
        var bySku: [(sku: SkuID, cents: Int64)] = []
        for row in rows {
            if let index = bySku.firstIndex(where: { $0.sku == row.sku }) {
                bySku[index].cents = Money.sum(bySku[index].cents, row.costCents ?? 0)
            } else {
                bySku.append((row.sku, row.costCents ?? 0))
            }
        }
        return bySku.map { Journal.writtenOff(sku: $0.sku, costCents: $0.cents) }
    }

    /// A bundle order's components weighted by their list prices (empty for a plain SKU).
    func parts(_ sku: Sku) -> [(sku: SkuID, weight: Int64)] {
        guard sku.isBundle else { return [] }
        return sku.components.map { component in
            (component.sku, Money.sum(0, (self.sku(id: component.sku)?.priceCents ?? 0) * Int64(component.units)))
        }
    }

    /// The commission of a delivered order its distributor referred, at the rate in force.
    func commission(_ order: Order) -> (distributor: String, cents: Int64)? {
        guard let key = order.labels?.distributor, let amount = order.amountCents,
              let distributor = distributors.withLock({ $0[key] }) else { return nil }
        return (key, distributor.commission(sku: order.sku, amountCents: amount))
    }

    /// A refund: the order's sale, discount and commission reversed exactly as they were
    /// booked (read from the ledger: a rate changed since does not matter).
    func refundLines(_ order: Order) throws(KamiError) -> [JournalLine] {
        guard order.amountCents != nil else { return [] }
        return labelled(order, Journal.refund(of: try store.journal(orderSeq: order.seq)))
    }

    /// `lines` with the order's channel and campaign, for the report summaries.
    func labelled(_ order: Order, _ lines: [JournalLine]) -> [JournalLine] {
        guard let labels = order.labels, labels.channel != nil || labels.campaign != nil else { return lines }
        return lines.map { line in
            var line = line
            line.channel = labels.channel
            line.campaign = labels.campaign
            return line
        }
    }

    /// Sets a distributor's commission rate, its default or (with `sku`) for one SKU.
    func setDistributor(_ key: String, rateBps: Int, sku skuKey: String?) throws(KamiError) -> Distributor {
        guard !key.isEmpty, key.utf8.count <= Limits.labelBytesMax, !key.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }) else {
            throw KamiError(.badRequest, "distributor must be 1...\(Limits.labelBytesMax) bytes without spaces")
        }
        guard rateBps >= 0 && rateBps <= Distributor.rateBpsMax else {
            throw KamiError(.badRequest, "a commission rate is 0...\(Distributor.rateBpsMax) basis points (0 to 100%)")
        }
        let skuID = try skuKey.map { (key: String) throws(KamiError) -> SkuID in try sku(key: key).id } ?? 0
        let event = AuditEvent("distributor-rate", subject: "distributor:\(key)",
                               detail: "sku=\(skuKey ?? "default") rate_bps=\(rateBps)")
        _ = try submitAndWait(.writeDistributorRate(distributor: key, sku: skuID, rateBps: rateBps, audit: event))
        let loaded = try store.distributors()
        distributors.withLock { $0 = Dictionary(loaded.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first }) }
        return distributors.withLock { $0[key] } ?? Distributor(key: key, rateBps: rateBps)
    }
}

// MARK: campaigns and coupons

extension EngineCore {
    /// The amount and subsidy a new order is placed with: its campaign's budget and its
    /// coupon are claimed now (all or nothing) when it names either, else the terms' amount.
    /// A claim is released if the order is not written (`releaseClaim`).
    func price(_ orderID: String, user: String, sku: Sku, units: Int, terms: OrderTerms) throws(KamiError) -> (amount: Int64, subsidy: Int64) {
        guard let labels = terms.labels, labels.campaign != nil || labels.coupon != nil else {
            return (try terms.amount(priceCents: sku.priceCents, units: units), 0)
        }
        if let amount = terms.amountCents, amount < 0 {
            throw KamiError(.badRequest, "amount_cents must not be negative, got \(amount)")
        }
        let claim = try promotions.claim(
            order: orderID, user: user, sku: sku.id, units: units, listPriceCents: sku.priceCents, amountCents: terms.amountCents,
            campaign: labels.campaign, coupon: labels.coupon, nowMs: clock.nowMs())
        return (claim.amountCents, claim.subsidyCents)
    }

    /// A completion that gives the order's claim back when the order fails to be placed.
    func releasingClaim(_ orderID: String, _ completion: @escaping OrderCompletion) -> OrderCompletion {
        { [promotions] result in
            if case .failure = result { promotions.release(order: orderID) }
            completion(result)
        }
    }

    /// Claims again for an order whose hold lapsed (its claim was given back at expiry):
    /// nil when it names no campaign or coupon, else the completion to use (it gives the
    /// claim back if the late commit fails).
    func reclaim(_ order: Order, sku: Sku, completion: @escaping OrderCompletion) throws(KamiError) -> OrderCompletion? {
        guard let labels = order.labels, labels.campaign != nil || labels.coupon != nil else { return nil }
        try promotions.reclaim(order: order.orderID, user: order.user, claim: PromotionClaim(
            amountCents: order.amountCents ?? 0, subsidyCents: order.subsidyCents, campaign: labels.campaign, coupon: labels.coupon))
        return releasingClaim(order.orderID, completion)
    }

    /// ` amount=… subsidy=… campaign=… coupon=… distributor=…` for an order's audit entry (the
    /// chain covers what each order was worth; the ledger's lines are derived from it).
    static func moneyField(_ order: Order) -> String {
        guard let amount = order.amountCents else { return "" }
        var field = " amount=\(amount)"
        if order.subsidyCents > 0 { field += " subsidy=\(order.subsidyCents)" }
        if let labels = order.labels {
            for (name, value) in [("campaign", labels.campaign), ("coupon", labels.coupon), ("distributor", labels.distributor)] {
                if let value { field += " \(name)=\(value)" }
            }
        }
        return field
    }

    /// The order is over without a sale (released, expired, refunded): what it held of a
    /// campaign and its coupon go back.
    func releasePromotion(_ order: Order) {
        guard let labels = order.labels, labels.campaign != nil || labels.coupon != nil else { return }
        promotions.release(order: order.orderID)
    }

    /// Sets a campaign (durable, audited) and puts it in force.
    func setCampaign(_ campaign: Campaign) throws(KamiError) {
        try campaign.validate()
        let spent = promotions.spent(campaign.key).cents
        guard campaign.budgetCents >= spent else {
            throw KamiError(.badRequest, "campaign \(campaign.key) has already given away \(spent): its budget cannot be less")
        }
        guard let sku = sku(id: campaign.sku) else { throw KamiError(.notFound, "no SKU for the campaign") }
        let event = AuditEvent("campaign-set", subject: "campaign:\(campaign.key)", detail:
            "sku=\(sku.key) price=\(campaign.priceCents.map(String.init) ?? "-") discount=\(campaign.discountCents) "
            + "from=\(campaign.startsAtMs) to=\(campaign.endsAtMs) budget=\(campaign.budgetCents) per_user=\(campaign.perUserUses)")
        _ = try submitAndWait(.writeCampaign(campaign, audit: event))
        try reloadPromotions()
    }

    /// Adds coupon codes to a batch (the batch is created or its terms replaced); returns how
    /// many codes were new.
    func addCoupons(_ batch: CouponBatch, codes: [String]) throws(KamiError) -> Int {
        guard !batch.key.isEmpty, batch.key.utf8.count <= Limits.labelBytesMax else {
            throw KamiError(.badRequest, "batch must be 1...\(Limits.labelBytesMax) bytes")
        }
        guard batch.discountCents >= 0, batch.discountCents <= Limits.costCentsMax, batch.perUserUses >= 0 else {
            throw KamiError(.badRequest, "discount_cents and per_user_limit must not be negative")
        }
        guard codes.count <= Limits.couponsPerRequestMax else {
            throw KamiError(.badRequest, "at most \(Limits.couponsPerRequestMax) coupons at a time")
        }
        for (index, code) in codes.enumerated() {
            guard !code.isEmpty, code.utf8.count <= Limits.labelBytesMax, !code.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }) else {
                throw KamiError(.badRequest, "coupon \(index + 1) must be 1...\(Limits.labelBytesMax) bytes without spaces")
            }
        }
        let event = AuditEvent("coupons-add", subject: "coupon-batch:\(batch.key)",
                               detail: "discount=\(batch.discountCents) per_user=\(batch.perUserUses) codes=\(codes.count)")
        let outcome = try submitAndWait(.writeCoupons(batch, codes: codes, audit: event))
        try reloadPromotions()
        if case .rowID(let added) = outcome { return Int(added) }
        return 0
    }

    private func reloadPromotions() throws(KamiError) {
        let coupons = try store.coupons()
        promotions.load(campaigns: try store.campaigns(), batches: coupons.batches, coupons: coupons.codes)
    }
}
