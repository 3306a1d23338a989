/// The field names of a JSON request, in the order the request encoder writes them. The
/// raw value is the field's bit in the decoder's "seen" mask (duplicate detection).
enum JSONField: UInt8, CaseIterable {
    case id, op, order, user, sku, qty, ttlMs, paymentRef, ip, device, client, token
    case name, priceCents, perUserLimit, activationURL, path, batch, codeID, withSecrets, dryRun, replace
    case limit, cursor
    case waitMs, supplier, product, costCents, priority, weight, sourcePolicy, strategy, minMarginCents, noCandidate
    case lowWater, sinceMs, untilMs, buyAheadUnits, buyAheadBudgetCents
    case paymentAccount, amountCents, accountAgeDays, phoneVerified, challengeToken, event, list, kind, value
    case manualDelivery, reviewTTLMs, secrets
    case bundle, currency, channel, campaign, coupon, distributor
    case discountCents, budgetCents, codes, count, rateBps, by, caseID, note
    case usageGuide

    /// The name on the wire.
    var key: StaticString {
        switch self {
        case .id: "id"
        case .op: "op"
        case .order: "order"
        case .user: "user"
        case .sku: "sku"
        case .qty: "qty"
        case .ttlMs: "ttl_ms"
        case .paymentRef: "payment_ref"
        case .ip: "ip"
        case .device: "device"
        case .client: "client"
        case .token: "token"
        case .name: "name"
        case .priceCents: "price_cents"
        case .perUserLimit: "per_user_limit"
        case .activationURL: "activation_url"
        case .path: "path"
        case .batch: "batch"
        case .codeID: "code_id"
        case .withSecrets: "with_secrets"
        case .dryRun: "dry_run"
        case .replace: "replace"
        case .limit: "limit"
        case .cursor: "cursor"
        case .waitMs: "wait_ms"
        case .supplier: "supplier"
        case .product: "product"
        case .costCents: "cost_cents"
        case .priority: "priority"
        case .weight: "weight"
        case .sourcePolicy: "source_policy"
        case .strategy: "strategy"
        case .minMarginCents: "min_margin_cents"
        case .noCandidate: "no_candidate"
        case .lowWater: "low_water"
        case .sinceMs: "since_ms"
        case .untilMs: "until_ms"
        case .buyAheadUnits: "buy_ahead_units"
        case .buyAheadBudgetCents: "buy_ahead_budget_cents"
        case .paymentAccount: "payment_account"
        case .amountCents: "amount_cents"
        case .accountAgeDays: "account_age_days"
        case .phoneVerified: "phone_verified"
        case .challengeToken: "challenge_token"
        case .event: "event"
        case .list: "list"
        case .kind: "kind"
        case .value: "value"
        case .manualDelivery: "manual_delivery"
        case .reviewTTLMs: "review_ttl_ms"
        case .secrets: "secrets"
        case .bundle: "bundle"
        case .currency: "currency"
        case .channel: "channel"
        case .campaign: "campaign"
        case .coupon: "coupon"
        case .distributor: "distributor"
        case .discountCents: "discount_cents"
        case .budgetCents: "budget_cents"
        case .codes: "codes"
        case .count: "count"
        case .rateBps: "rate_bps"
        case .by: "by"
        case .caseID: "case"
        case .note: "note"
        case .usageGuide: "usage_guide"
        }
    }

    /// 128 bits: there are more than 64 fields.
    var bit: UInt128 { 1 << UInt128(rawValue) }

    /// The field whose name is the `count` bytes at `p`, or nil for a name this version
    /// does not know (ignored, for forward compatibility). A switch on the length picks
    /// the two or three candidates to compare, with no table to look up or retain; a test
    /// checks that it agrees with `key` for every field.
    @inline(__always)
    static func match(_ p: UnsafeRawPointer, count: Int) -> JSONField? {
        let candidates: (JSONField, JSONField?, JSONField?, JSONField?, JSONField?, JSONField?, JSONField?, JSONField?)
        switch count {
        case 2: candidates = (.id, .op, .ip, .by, nil, nil, nil, nil)
        case 3: candidates = (.sku, .qty, nil, nil, nil, nil, nil, nil)
        case 4: candidates = (.user, .name, .path, .list, .kind, .caseID, .note, nil)
        case 5: candidates = (.order, .token, .batch, .limit, .event, .value, .codes, .count)
        case 6: candidates = (.ttlMs, .client, .device, .cursor, .weight, .bundle, .coupon, nil)
        case 7: candidates = (.codeID, .dryRun, .replace, .waitMs, .product, .secrets, .channel, nil)
        case 8: candidates = (.supplier, .priority, .strategy, .sinceMs, .untilMs, .currency, .campaign, .rateBps)
        case 9: candidates = (.lowWater, nil, nil, nil, nil, nil, nil, nil)
        case 10: candidates = (.costCents, nil, nil, nil, nil, nil, nil, nil)
        case 11: candidates = (.paymentRef, .priceCents, .distributor, .usageGuide, nil, nil, nil, nil)
        case 12: candidates = (.withSecrets, .noCandidate, .amountCents, .budgetCents, nil, nil, nil, nil)
        case 13: candidates = (.sourcePolicy, .reviewTTLMs, nil, nil, nil, nil, nil, nil)
        case 14: candidates = (.perUserLimit, .activationURL, .phoneVerified, .discountCents, nil, nil, nil, nil)
        case 15: candidates = (.buyAheadUnits, .paymentAccount, .challengeToken, .manualDelivery, nil, nil, nil, nil)
        case 22: candidates = (.buyAheadBudgetCents, nil, nil, nil, nil, nil, nil, nil)
        case 16: candidates = (.minMarginCents, .accountAgeDays, nil, nil, nil, nil, nil, nil)
        default: return nil
        }
        if candidates.0.key.matches(p, count: count) { return candidates.0 }
        if let field = candidates.1, field.key.matches(p, count: count) { return field }
        if let field = candidates.2, field.key.matches(p, count: count) { return field }
        if let field = candidates.3, field.key.matches(p, count: count) { return field }
        if let field = candidates.4, field.key.matches(p, count: count) { return field }
        if let field = candidates.5, field.key.matches(p, count: count) { return field }
        if let field = candidates.6, field.key.matches(p, count: count) { return field }
        if let field = candidates.7, field.key.matches(p, count: count) { return field }
        return nil
    }
}
