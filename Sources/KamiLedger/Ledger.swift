public import KamiCore

/// The shop's ledger of record for fulfilment: every money movement kamid causes is one
/// journal line, a debit to one account and a credit to another of the same amount (so the
/// books balance by construction), written in the same transaction as the state change that
/// causes it. Amounts are minor units (`Int64`, fen or cents) of the order's currency.
///
/// The accounts (docs/money.md):
/// - `clearing`: what buyers paid, held by the payment provider until settled (an asset);
/// - `revenue`: sales;
/// - `cogs`: the cost of the codes sold (an expense);
/// - `inventory`: codes in stock, at cost (an asset);
/// - `purchases`: codes bought outside kamid (CSV imports, codes delivered by hand), owed to
///   or already paid to whoever sold them (a liability);
/// - `payable:SUPPLIER`: what kamid's purchases owe one supplier (a liability);
/// - `writeoff`: stock voided before it was sold (an expense).
public enum Account: Sendable, Hashable, CustomStringConvertible, Comparable {
    case clearing
    case revenue
    case cogs
    case inventory
    case purchases
    case payable(supplier: String)
    case writeOff
    /// What campaigns and coupons gave away (an expense against the list-price revenue).
    case subsidy
    /// Distributors' commissions (an expense).
    case commission
    /// What the shop owes one distributor (分账, a liability).
    case commissionPayable(distributor: String)

    public var description: String {
        switch self {
        case .clearing: "clearing"
        case .revenue: "revenue"
        case .cogs: "cogs"
        case .inventory: "inventory"
        case .purchases: "purchases"
        case .payable(let supplier): "payable:\(supplier)"
        case .writeOff: "writeoff"
        case .subsidy: "subsidy"
        case .commission: "commission"
        case .commissionPayable(let distributor): "commission_payable:\(distributor)"
        }
    }

    /// The account named `name` (as `description` writes it); nil for anything else.
    public init?(name: String) {
        switch name {
        case "clearing": self = .clearing
        case "revenue": self = .revenue
        case "cogs": self = .cogs
        case "inventory": self = .inventory
        case "purchases": self = .purchases
        case "writeoff": self = .writeOff
        case "subsidy": self = .subsidy
        case "commission": self = .commission
        default:
            if name.hasPrefix("commission_payable:"), name.count > "commission_payable:".count {
                self = .commissionPayable(distributor: String(name.dropFirst("commission_payable:".count)))
                return
            }
            guard name.hasPrefix("payable:"), name.count > "payable:".count else { return nil }
            self = .payable(supplier: String(name.dropFirst("payable:".count)))
        }
    }

    /// The account stock of `source` is owed to: `upstream:SUPPLIER` (a supplier's delivery
    /// or a buy-ahead) is that supplier's payable, anything else (a CSV import, an operator's
    /// hand) is `purchases`.
    public static func creditor(source: String?) -> Account {
        if let source, source.hasPrefix("upstream:"), source.count > "upstream:".count {
            return .payable(supplier: String(source.dropFirst("upstream:".count)))
        }
        return .purchases
    }

    public static func < (a: Account, b: Account) -> Bool { a.description < b.description }
}

/// Why a journal line was written.
public enum JournalKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// A delivered order's price: clearing ← revenue.
    case sale = 1
    /// What the delivered codes cost: cogs ← inventory (pool), payable (supplier), purchases (by hand).
    case cost = 2
    /// A refund: the sale reversed exactly, revenue ← clearing.
    case refund = 3
    /// Codes into stock: inventory ← purchases or a supplier's payable.
    case stock = 4
    /// Codes in stock voided: writeoff ← inventory.
    case writeOff = 5
    /// What a campaign or coupon took off the list price: subsidy ← revenue (so revenue is
    /// booked at list price and the discount is the campaign's cost).
    case subsidy = 6
    /// A distributor's commission on a delivered order: commission ← commission_payable:D.
    case commission = 7

    public var description: String {
        switch self {
        case .sale: "sale"
        case .cost: "cost"
        case .refund: "refund"
        case .stock: "stock"
        case .writeOff: "writeoff"
        case .subsidy: "subsidy"
        case .commission: "commission"
        }
    }
}

/// One journal line: `amountCents` moves from `credit` to `debit`.
public struct JournalLine: Sendable, Hashable {
    public var kind: JournalKind
    /// The order it belongs to (sale, cost, refund), nil for stock movements.
    public var orderSeq: OrderSeq?
    /// The SKU it belongs to (for reports per SKU; a bundle's component for its codes).
    public var sku: SkuID
    public var debit: Account
    public var credit: Account
    public var amountCents: Int64
    /// The order's currency (nil: the shop's).
    public var currency: String?
    /// The order's channel and campaign, for the report summaries (not stored in the line).
    public var channel: String?
    public var campaign: String?
    /// Where a delivered order's codes came from (the creditor of its first cost line), on its
    /// sale, subsidy and commission lines, for the report by source (not stored in the line).
    public var source: String?
    /// How many orders a sale line counts for in the summary: 1, and 0 for the later lines of
    /// a bundle's split sale (one order, several lines).
    public var orderCount: Int64 = 1

    /// Lines are equal when what the ledger stores is (the summary's extras aside).
    public static func == (a: JournalLine, b: JournalLine) -> Bool {
        a.kind == b.kind && a.orderSeq == b.orderSeq && a.sku == b.sku && a.debit == b.debit && a.credit == b.credit
            && a.amountCents == b.amountCents && a.currency == b.currency
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(kind)
        hasher.combine(orderSeq)
        hasher.combine(sku)
        hasher.combine(amountCents)
    }

    public init(kind: JournalKind, orderSeq: OrderSeq?, sku: SkuID, debit: Account, credit: Account, amountCents: Int64,
                currency: String? = nil) {
        self.kind = kind
        self.orderSeq = orderSeq
        self.sku = sku
        self.debit = debit
        self.credit = credit
        self.amountCents = amountCents
        self.currency = currency
    }
}

/// The journal lines of each event, built by the engine and written by the store with the
/// state change.
public enum Journal {
    /// A delivered order: its sale, and what its codes cost. `costs` is each delivered code's
    /// SKU, cost and where it came from (`pool`: the inventory; else the creditor of its source).
    /// An order placed before kamid recorded money (`amountCents` nil) has no sale line. A
    /// discounted order (`subsidyCents` > 0) books the discount too, and an order a
    /// distributor referred its commission.
    public static func delivered(
        orderSeq: OrderSeq, sku: SkuID, amountCents: Int64?, currency: String?, subsidyCents: Int64 = 0,
        commission: (distributor: String, cents: Int64)? = nil, parts: [(sku: SkuID, weight: Int64)] = [],
        costs: [(sku: SkuID, costCents: Int64, fromPool: Bool, source: String?)]
    ) -> [JournalLine] {
        var lines: [JournalLine] = []
        if let amountCents {
            // A bundle's sale is booked per component, in proportion to the components' list
            // prices (the last takes what rounding leaves), so reports show what each part earned.
            for (index, (sku, cents)) in split(amountCents, over: parts, whole: sku).enumerated() {
                var line = JournalLine(kind: .sale, orderSeq: orderSeq, sku: sku, debit: .clearing, credit: .revenue,
                                       amountCents: cents, currency: currency)
                line.orderCount = index == 0 ? 1 : 0
                lines.append(line)
            }
        }
        if subsidyCents > 0 {
            lines.append(JournalLine(kind: .subsidy, orderSeq: orderSeq, sku: sku, debit: .subsidy, credit: .revenue,
                                     amountCents: subsidyCents, currency: currency))
        }
        if let commission, amountCents != nil {
            lines.append(JournalLine(kind: .commission, orderSeq: orderSeq, sku: sku, debit: .commission,
                                     credit: .commissionPayable(distributor: commission.distributor),
                                     amountCents: commission.cents, currency: currency))
        }
        // One cost line per component SKU and creditor, in the order first seen.
        var grouped: [(sku: SkuID, credit: Account, cents: Int64)] = []
        for cost in costs {
            let credit = cost.fromPool ? Account.inventory : Account.creditor(source: cost.source)
            if let index = grouped.firstIndex(where: { $0.sku == cost.sku && $0.credit == credit }) {
                grouped[index].cents = Money.sum(grouped[index].cents, cost.costCents)
            } else {
                grouped.append((cost.sku, credit, cost.costCents))
            }
        }
        // Costs are in the shop's currency (what the codes were bought for), whatever the
        // buyer paid in.
        for group in grouped {
            lines.append(JournalLine(kind: .cost, orderSeq: orderSeq, sku: group.sku, debit: .cogs, credit: group.credit,
                                     amountCents: group.cents))
        }
        if let source = grouped.first?.credit.description {
            for index in lines.indices where lines[index].kind != .cost { lines[index].source = source }
        }
        return lines
    }

    /// `amount` over `parts` by weight (nothing but `whole` when there are no parts or no weight).
    public static func split(_ amount: Int64, over parts: [(sku: SkuID, weight: Int64)], whole: SkuID) -> [(SkuID, Int64)] {
        let total = parts.reduce(Int64(0)) { Money.sum($0, max(0, $1.weight)) }
        guard parts.count > 1, total > 0 else { return [(whole, amount)] }
        var result: [(SkuID, Int64)] = []
        var given: Int64 = 0
        for (index, part) in parts.enumerated() {
            if index == parts.count - 1 {
                result.append((part.sku, amount - given))
            } else {
                let (product, overflow) = amount.multipliedReportingOverflow(by: max(0, part.weight))
                let share = overflow ? amount / total * max(0, part.weight) : product / total
                result.append((part.sku, share))
                given += share
            }
        }
        return result
    }

    /// A refund: every sale, subsidy and commission line of the order reversed, amount for
    /// amount (a commission is reversed as it was booked, whatever the rate is now).
    public static func refund(of sales: [JournalLine]) -> [JournalLine] {
        sales.filter { $0.kind == .sale || $0.kind == .subsidy || $0.kind == .commission }.map {
            JournalLine(kind: .refund, orderSeq: $0.orderSeq, sku: $0.sku, debit: $0.credit, credit: $0.debit,
                        amountCents: $0.amountCents, currency: $0.currency)
        }
    }

    /// Codes of `sku` into stock at `costCents` in all, owed to the creditor of `source`.
    public static func stocked(sku: SkuID, costCents: Int64, source: String?) -> JournalLine {
        JournalLine(kind: .stock, orderSeq: nil, sku: sku, debit: .inventory, credit: Account.creditor(source: source),
                    amountCents: costCents)
    }

    /// Codes of `sku` in stock voided, `costCents` in all.
    public static func writtenOff(sku: SkuID, costCents: Int64) -> JournalLine {
        JournalLine(kind: .writeOff, orderSeq: nil, sku: sku, debit: .writeOff, credit: .inventory, amountCents: costCents)
    }
}

/// The report summary's key of a line: the China Standard Time day it was written on, its
/// SKU, kind, the account that tells its source or what it reverses (a cost's creditor, a
/// refund's credit, a stock line's creditor), its order's channel and campaign.
public struct SummaryKey: Hashable, Sendable {
    public var day: Int64
    public var sku: SkuID
    public var kind: JournalKind
    public var account: String
    public var channel: String
    public var campaign: String

    public init(line: JournalLine, atMs: Int64) {
        day = (atMs / 1_000 + 8 * 3_600) / 86_400
        sku = line.sku
        kind = line.kind
        switch line.kind {
        case .cost, .refund, .stock: account = line.credit.description
        case .sale, .subsidy, .commission: account = line.source ?? ""
        case .writeOff: account = ""
        }
        channel = line.channel ?? ""
        campaign = line.campaign ?? ""
    }

    public init(day: Int64, sku: SkuID, kind: JournalKind, account: String, channel: String, campaign: String) {
        self.day = day
        self.sku = sku
        self.kind = kind
        self.account = account
        self.channel = channel
        self.campaign = campaign
    }
}

/// Balances per account: debits minus credits.
public struct TrialBalance: Sendable {
    public private(set) var balances: [Account: Int64] = [:]

    public init(_ lines: some Sequence<JournalLine>) {
        for line in lines { add(line) }
    }

    public mutating func add(_ line: JournalLine) {
        balances[line.debit, default: 0] &+= line.amountCents
        balances[line.credit, default: 0] &-= line.amountCents
    }

    /// The sum over every account: zero when the books balance.
    public var total: Int64 { balances.values.reduce(0, &+) }

    public subscript(_ account: Account) -> Int64 { balances[account] ?? 0 }
}

/// Checks on money amounts: never negative, never past what `Int64` holds when multiplied or
/// added up.
public enum Money {
    /// `a + b`, held at `Int64.max` rather than trapping (kamid's limits keep real sums far
    /// below it; a database from before them must not crash kamid).
    public static func sum(_ a: Int64, _ b: Int64) -> Int64 {
        let (total, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? .max : .min) : total
    }

    /// `price × units`, or nil when it would overflow.
    public static func total(priceCents: Int64, units: Int) -> Int64? {
        let (product, overflow) = priceCents.multipliedReportingOverflow(by: Int64(units))
        return overflow || product < 0 ? nil : product
    }
}
