public import KamiCore
public import KamiLedger

/// What `verify` checks the ledger against, read in one snapshot with SQL aggregates (a
/// ledger of tens of millions of lines is summed, not loaded).
public struct LedgerFigures: Sendable {
    public init() {}

    /// Per order: for each kind of line, the sum of its amounts and how many lines.
    public var byOrder: [OrderSeq: [JournalKind: (cents: Int64, lines: Int)]] = [:]
    /// Per account: debits minus credits.
    public var balances: [Account: Int64] = [:]
    /// Lines whose accounts do not parse.
    public var unknownAccounts: [String] = []
    /// What the codes in stock (available or reserved) cost.
    public var stockCostCents: Int64 = 0
    /// Per order: what the codes issued to it (issued, or voided since) cost.
    public var orderCodeCostCents: [OrderSeq: Int64] = [:]
    /// Every distinct shape of line: kind, accounts, whether it names an order, the least
    /// amount and how many lines.
    public var shapes: [(kind: Int64, debit: String, credit: String, hasOrder: Bool, leastCents: Int64, lines: Int)] = []
    /// Lines naming an order that does not exist.
    public var orphanLines = 0
    /// Per kind: (cents, lines) in the ledger and in the report summary.
    public var ledgerByKind: [Int64: (cents: Int64, lines: Int64)] = [:]
    public var summaryByKind: [Int64: (cents: Int64, lines: Int64)] = [:]
}

/// One row of a sales report: what a group of orders earned and cost.
public struct SalesRow: Sendable, Hashable {
    public var key: String
    /// Delivered orders (sale lines).
    public var orders: Int64
    /// What buyers paid.
    public var paidCents: Int64
    /// What campaigns and coupons took off list prices.
    public var subsidyCents: Int64
    /// Paid back by refunds.
    public var refundedCents: Int64
    public var costCents: Int64
    /// Commissions net of their reversals.
    public var commissionCents: Int64
    /// paid − refunded − cost − commission.
    public var profitCents: Int64 { paidCents - refundedCents - costCents - commissionCents }
}

extension Store {
    /// The ledger's figures for `verify`.
    public func ledgerFigures() throws(KamiError) -> LedgerFigures {
        try read { db throws(SQLiteError) in
            var figures = LedgerFigures()
            let perOrder = try db.prepare("""
                SELECT order_seq, kind, SUM(amount_cents), COUNT(*) FROM ledger WHERE order_seq IS NOT NULL
                GROUP BY order_seq, kind
                """)
            defer { perOrder.reset() }
            while try perOrder.step() {
                guard let raw = UInt8(exactly: perOrder.int64(1)), let kind = JournalKind(rawValue: raw) else { continue }
                figures.byOrder[perOrder.int64(0), default: [:]][kind] = (perOrder.int64(2), perOrder.int(3))
            }
            perOrder.reset()
            let accounts = try db.prepare("SELECT debit, credit, SUM(amount_cents) FROM ledger GROUP BY debit, credit")
            defer { accounts.reset() }
            while try accounts.step() {
                let debitName = accounts.text(0) ?? "", creditName = accounts.text(1) ?? ""
                guard let debit = Account(name: debitName), let credit = Account(name: creditName) else {
                    figures.unknownAccounts.append("\(debitName)/\(creditName)")
                    continue
                }
                figures.balances[debit, default: 0] &+= accounts.int64(2)
                figures.balances[credit, default: 0] &-= accounts.int64(2)
            }
            accounts.reset()
            figures.stockCostCents = try db.scalarInt("""
                SELECT COALESCE(SUM(COALESCE(c.cost_cents, 0)), 0) FROM codes c JOIN code_state s ON s.id = c.id
                WHERE s.state IN (0, 1)
                """) ?? 0
            let costs = try db.prepare("""
                SELECT s.order_seq, SUM(COALESCE(c.cost_cents, 0)) FROM code_state s JOIN codes c ON c.id = s.id
                WHERE s.order_seq IS NOT NULL AND s.state IN (2, 3, 4) GROUP BY s.order_seq
                """)
            defer { costs.reset() }
            while try costs.step() { figures.orderCodeCostCents[costs.int64(0)] = costs.int64(1) }
            costs.reset()
            let shapes = try db.prepare("""
                SELECT kind, debit, credit, order_seq IS NOT NULL, MIN(amount_cents), COUNT(*) FROM ledger
                GROUP BY kind, debit, credit, order_seq IS NOT NULL
                """)
            defer { shapes.reset() }
            while try shapes.step() {
                figures.shapes.append((shapes.int64(0), shapes.text(1) ?? "", shapes.text(2) ?? "", shapes.int64(3) != 0,
                                       shapes.int64(4), shapes.int(5)))
            }
            shapes.reset()
            for (table, sql) in [("ledger", "SELECT kind, SUM(amount_cents), COUNT(*) FROM ledger GROUP BY kind"),
                                 ("summary", "SELECT kind, SUM(cents), SUM(lines) FROM ledger_summary GROUP BY kind")] {
                let stmt = try db.prepare(sql)
                defer { stmt.reset() }
                while try stmt.step() {
                    if table == "ledger" {
                        figures.ledgerByKind[stmt.int64(0)] = (stmt.int64(1), stmt.int64(2))
                    } else {
                        figures.summaryByKind[stmt.int64(0)] = (stmt.int64(1), stmt.int64(2))
                    }
                }
                stmt.reset()
            }
            figures.orphanLines = Int(try db.scalarInt("""
                SELECT COUNT(*) FROM ledger l WHERE l.order_seq IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.seq = l.order_seq)
                """) ?? 0)
            return figures
        }
    }

    /// Journal lines, oldest first, optionally of one order (for reports and tests).
    public func journal(orderSeq: OrderSeq? = nil, limit: Int = 1_000) throws(KamiError) -> [JournalLine] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("""
                SELECT kind, order_seq, sku_id, debit, credit, amount_cents, currency FROM ledger
                WHERE ?1 IS NULL OR order_seq = ?1 ORDER BY id LIMIT ?2
                """)
            defer { stmt.reset() }
            if let orderSeq { stmt.bind(1, orderSeq) } else { stmt.bindNull(1) }
            stmt.bind(2, limit)
            var lines: [JournalLine] = []
            while try stmt.step() {
                guard let kind = JournalKind(rawValue: UInt8(truncatingIfNeeded: stmt.int64(0))),
                      let debit = Account(name: stmt.text(3) ?? ""), let credit = Account(name: stmt.text(4) ?? "") else { continue }
                lines.append(JournalLine(kind: kind, orderSeq: stmt.isNull(1) ? nil : stmt.int64(1), sku: SkuID(stmt.int64(2)),
                                         debit: debit, credit: credit, amountCents: stmt.int64(5), currency: stmt.text(6)))
            }
            return lines
        }
    }
}

extension Store {
    /// Every campaign.
    public func campaigns() throws(KamiError) -> [Campaign] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("""
                SELECT key, sku_id, price_cents, discount_cents, starts_at_ms, ends_at_ms, budget_cents, per_user_uses
                FROM campaigns ORDER BY key
                """)
            defer { stmt.reset() }
            var result: [Campaign] = []
            while try stmt.step() {
                result.append(Campaign(
                    key: stmt.text(0) ?? "", sku: SkuID(stmt.int64(1)), priceCents: stmt.isNull(2) ? nil : stmt.int64(2),
                    discountCents: stmt.int64(3), startsAtMs: stmt.int64(4), endsAtMs: stmt.int64(5), budgetCents: stmt.int64(6),
                    perUserUses: stmt.int(7)))
            }
            return result
        }
    }

    /// Every coupon batch and every coupon code with its batch.
    public func coupons() throws(KamiError) -> (batches: [CouponBatch], codes: [(code: String, batch: String)]) {
        try read { db throws(SQLiteError) in
            let batches = try db.prepare("SELECT key, discount_cents, per_user_uses FROM coupon_batches ORDER BY key")
            defer { batches.reset() }
            var result: [CouponBatch] = []
            while try batches.step() {
                result.append(CouponBatch(key: batches.text(0) ?? "", discountCents: batches.int64(1), perUserUses: batches.int(2)))
            }
            batches.reset()
            let codes = try db.prepare("SELECT code, batch FROM coupons")
            defer { codes.reset() }
            var list: [(code: String, batch: String)] = []
            while try codes.step() { list.append((codes.text(0) ?? "", codes.text(1) ?? "")) }
            return (result, list)
        }
    }
}

extension Store {
    /// Every distributor with its rates.
    public func distributors() throws(KamiError) -> [Distributor] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT distributor, sku_id, rate_bps FROM distributor_rates ORDER BY distributor, sku_id")
            defer { stmt.reset() }
            var byKey: [String: Distributor] = [:]
            var order: [String] = []
            while try stmt.step() {
                let key = stmt.text(0) ?? ""
                if byKey[key] == nil {
                    byKey[key] = Distributor(key: key, rateBps: 0)
                    order.append(key)
                }
                let sku = SkuID(stmt.int64(1))
                if sku == 0 { byKey[key]?.rateBps = stmt.int(2) } else { byKey[key]?.skuRatesBps[sku] = stmt.int(2) }
            }
            return order.compactMap { byKey[$0] }
        }
    }

    /// A distributor's statement for `sinceMs` ≤ t < `untilMs`: commission accrued (and its
    /// orders), reversed by refunds, and what the shop owes it in all (every period).
    public func distributorStatement(_ distributor: String, sinceMs: Int64, untilMs: Int64) throws(KamiError)
        -> (accruedCents: Int64, orders: Int, reversedCents: Int64, reversals: Int, owedCents: Int64)
    {
        let account = Account.commissionPayable(distributor: distributor).description
        return try read { db throws(SQLiteError) in
            let stmt = try db.prepare("""
                SELECT kind, COALESCE(SUM(amount_cents), 0), COUNT(*) FROM ledger
                WHERE (credit = ?1 OR debit = ?1) AND at_ms >= ?2 AND at_ms < ?3 GROUP BY kind
                """)
            defer { stmt.reset() }
            stmt.bind(1, account)
            stmt.bind(2, sinceMs)
            stmt.bind(3, untilMs)
            var result: (accruedCents: Int64, orders: Int, reversedCents: Int64, reversals: Int, owedCents: Int64) = (0, 0, 0, 0, 0)
            while try stmt.step() {
                if stmt.int64(0) == Int64(JournalKind.commission.rawValue) {
                    result.accruedCents = stmt.int64(1)
                    result.orders = stmt.int(2)
                } else {
                    result.reversedCents = stmt.int64(1)
                    result.reversals = stmt.int(2)
                }
            }
            stmt.reset()
            let owed = try db.prepare("""
                SELECT COALESCE(SUM(CASE WHEN credit = ?1 THEN amount_cents ELSE -amount_cents END), 0) FROM ledger
                WHERE credit = ?1 OR debit = ?1
                """)
            defer { owed.reset() }
            owed.bind(1, account)
            if try owed.step() { result.owedCents = owed.int64(0) }
            return result
        }
    }
}

extension Store {
    /// How a sales report groups its rows.
    public enum ReportGroup: String, Sendable, CaseIterable {
        case sku, channel, campaign, source, day, week, month
    }

    /// Sales and profit from the report summary, grouped by `group`, for the China Standard
    /// Time days `sinceDay` ≤ d < `untilDay` (days since 1970-01-01), optionally of one SKU,
    /// channel or campaign. Reads the summary (a row per day, SKU, kind, source, channel and
    /// campaign), never the ledger's lines.
    public func salesReport(group: ReportGroup, sinceDay: Int64, untilDay: Int64, sku: SkuID?, channel: String?, campaign: String?)
        throws(KamiError) -> [SalesRow]
    {
        let keyExpression: String
        switch group {
        case .sku: keyExpression = "CAST(sku_id AS TEXT)"
        case .channel: keyExpression = "channel"
        case .campaign: keyExpression = "campaign"
        // Where the codes came from: the pool, a supplier's payable, purchases (by hand, imports);
        // refunds are not split by source.
        case .source: keyExpression = "CASE WHEN kind IN (1, 2, 6, 7) THEN (CASE account WHEN 'inventory' THEN 'pool' ELSE account END) ELSE '' END"
        case .day: keyExpression = "CAST(day AS TEXT)"
        // Weeks start on Monday (1970-01-01 was a Thursday).
        case .week: keyExpression = "CAST(((day + 3) / 7) * 7 - 3 AS TEXT)"
        case .month: keyExpression = "strftime('%Y-%m', day * 86400, 'unixepoch')"
        }
        return try read { db throws(SQLiteError) in
            let stmt = try db.prepare("""
                SELECT \(keyExpression) AS k, kind, account, SUM(cents), SUM(lines) FROM ledger_summary
                WHERE day >= ?1 AND day < ?2 AND (?3 IS NULL OR sku_id = ?3) AND (?4 IS NULL OR channel = ?4)
                    AND (?5 IS NULL OR campaign = ?5) AND kind IN (1, 2, 3, 6, 7)
                GROUP BY k, kind, account ORDER BY k
                """)
            defer { stmt.reset() }
            stmt.bind(1, sinceDay)
            stmt.bind(2, untilDay)
            if let sku { stmt.bind(3, Int64(sku)) } else { stmt.bindNull(3) }
            stmt.bind(4, channel)
            stmt.bind(5, campaign)
            var rows: [String: SalesRow] = [:]
            var order: [String] = []
            while try stmt.step() {
                let key = stmt.text(0) ?? ""
                if rows[key] == nil {
                    rows[key] = SalesRow(key: key, orders: 0, paidCents: 0, subsidyCents: 0, refundedCents: 0, costCents: 0,
                                         commissionCents: 0)
                    order.append(key)
                }
                let cents = stmt.int64(3)
                switch JournalKind(rawValue: UInt8(truncatingIfNeeded: stmt.int64(1))) {
                case .sale?:
                    // The summary counts orders for sale lines (a bundle's split sale is one).
                    rows[key]!.paidCents += cents
                    rows[key]!.orders += stmt.int64(4)
                case .subsidy?: rows[key]!.subsidyCents += cents
                case .cost?: rows[key]!.costCents += cents
                case .commission?: rows[key]!.commissionCents += cents
                case .refund?:
                    switch stmt.text(2) ?? "" {
                    case "clearing": rows[key]!.refundedCents += cents
                    case "subsidy": rows[key]!.subsidyCents -= cents
                    case "commission": rows[key]!.commissionCents -= cents
                    default: break
                    }
                default: break
                }
            }
            return order.compactMap { rows[$0] }
        }
    }

    /// What the shop owes each supplier and source of stock (credit balances of `payable:*`
    /// and `purchases`), from the summary.
    public func payables() throws(KamiError) -> [(account: String, owedCents: Int64)] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("""
                SELECT account, SUM(cents) FROM ledger_summary
                WHERE kind IN (2, 4) AND (account LIKE 'payable:%' OR account = 'purchases') GROUP BY account ORDER BY account
                """)
            defer { stmt.reset() }
            var result: [(account: String, owedCents: Int64)] = []
            while try stmt.step() { result.append((stmt.text(0) ?? "", stmt.int64(1))) }
            return result
        }
    }
}

extension Store {
    /// Every case, newest first (open ones only when `openOnly`).
    public func cases(openOnly: Bool = false) throws(KamiError) -> [AfterSalesCase] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("""
                SELECT id, order_seq, order_id, sku_id, code_id, reason, state, source, opened_at_ms, resolved_at_ms, note
                FROM cases WHERE ?1 = 0 OR state = 0 ORDER BY id DESC
                """)
            defer { stmt.reset() }
            stmt.bind(1, Int64(openOnly ? 1 : 0))
            var result: [AfterSalesCase] = []
            while try stmt.step() {
                result.append(AfterSalesCase(
                    id: stmt.int64(0), orderSeq: stmt.int64(1), orderID: stmt.text(2) ?? "", sku: SkuID(stmt.int64(3)),
                    codeID: stmt.isNull(4) ? nil : stmt.int64(4),
                    reason: AfterSalesCase.Reason(rawValue: stmt.text(5) ?? "") ?? .other,
                    state: AfterSalesCase.State(rawValue: UInt8(truncatingIfNeeded: stmt.int64(6))) ?? .open,
                    source: stmt.text(7) ?? "", openedAtMs: stmt.int64(8), resolvedAtMs: stmt.isNull(9) ? nil : stmt.int64(9),
                    note: stmt.text(10) ?? ""))
            }
            return result
        }
    }

    /// Where a code came from: its import's source (a file, `upstream:SUPPLIER`, `manual:…`).
    public func sourceOfCode(_ id: CodeID) throws(KamiError) -> String? {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT i.source FROM codes c JOIN imports i ON i.id = c.import_id WHERE c.id = ?")
            defer { stmt.reset() }
            stmt.bind(1, id)
            return try stmt.step() ? stmt.text(0) : nil
        }
    }
}

/// One SKU's stock on hand: how many codes, what they cost, how old they are, how many expire soon.
/// One SKU's activations: codes sold (issued or used now), used, activated in a window, and
/// of those, how many through a brand's token.
public struct ActivationRow: Sendable, Hashable {
    public var sku: SkuID
    public var sold: Int64
    public var used: Int64
    public var activatedInWindow: Int64
    public var byToken: Int64
}

extension Store {
    /// Per SKU: codes sold and used now, and activations with `sinceMs <= at < untilMs`.
    public func activationReport(sinceMs: Int64, untilMs: Int64) throws(KamiError) -> [ActivationRow] {
        try read { db throws(SQLiteError) in
            var rows: [SkuID: ActivationRow] = [:]
            let sold = try db.prepare("SELECT sku_id, SUM(state IN (2, 4)), SUM(state = 4) FROM code_state GROUP BY sku_id")
            defer { sold.reset() }
            while try sold.step() {
                let sku = SkuID(sold.int64(0))
                rows[sku] = ActivationRow(sku: sku, sold: sold.int64(1), used: sold.int64(2), activatedInWindow: 0, byToken: 0)
            }
            sold.reset()
            let window = try db.prepare("""
                SELECT s.sku_id, COUNT(*), SUM(a.via LIKE 'token%') FROM activations a JOIN code_state s ON s.id = a.code_id
                WHERE a.at_ms >= ? AND a.at_ms < ? GROUP BY s.sku_id
                """)
            defer { window.reset() }
            window.bind(1, sinceMs)
            window.bind(2, untilMs)
            while try window.step() {
                let sku = SkuID(window.int64(0))
                var row = rows[sku] ?? ActivationRow(sku: sku, sold: 0, used: 0, activatedInWindow: 0, byToken: 0)
                row.activatedInWindow = window.int64(1)
                row.byToken = window.int64(2)
                rows[sku] = row
            }
            return rows.values.filter { $0.sold > 0 || $0.activatedInWindow > 0 }.sorted { $0.sku < $1.sku }
        }
    }
}

public struct InventoryRow: Sendable, Hashable {
    public var sku: SkuID
    public var codes: Int64
    public var costCents: Int64
    /// Codes by age since their import: under 7 days, 7 to 30, 30 to 90, over 90.
    public var ageBuckets: [Int64]
    /// Codes that expire within the window asked for (already expired ones included).
    public var expiringSoon: Int64
}

extension Store {
    /// Stock on hand per SKU (available and reserved codes): count, cost, age, expiring.
    public func inventoryReport(nowMs: Int64, expiringWithinMs: Int64) throws(KamiError) -> [InventoryRow] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("""
                SELECT c.sku_id, COUNT(*), COALESCE(SUM(COALESCE(c.cost_cents, 0)), 0),
                    SUM(?1 - i.created_at_ms < 604800000),
                    SUM(?1 - i.created_at_ms >= 604800000 AND ?1 - i.created_at_ms < 2592000000),
                    SUM(?1 - i.created_at_ms >= 2592000000 AND ?1 - i.created_at_ms < 7776000000),
                    SUM(?1 - i.created_at_ms >= 7776000000),
                    SUM(c.expires_at_ms IS NOT NULL AND c.expires_at_ms < ?1 + ?2)
                FROM code_state s JOIN codes c ON c.id = s.id JOIN imports i ON i.id = c.import_id
                WHERE s.state IN (0, 1) GROUP BY c.sku_id ORDER BY c.sku_id
                """)
            defer { stmt.reset() }
            stmt.bind(1, nowMs)
            stmt.bind(2, expiringWithinMs)
            var rows: [InventoryRow] = []
            while try stmt.step() {
                rows.append(InventoryRow(sku: SkuID(stmt.int64(0)), codes: stmt.int64(1), costCents: stmt.int64(2),
                                         ageBuckets: [stmt.int64(3), stmt.int64(4), stmt.int64(5), stmt.int64(6)],
                                         expiringSoon: stmt.int64(7)))
            }
            return rows
        }
    }
}
