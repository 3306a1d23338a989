import KamiCore
import KamiLedger
import KamiStore

/// The money each change moves, as journal lines the store writes in the change's own
/// transaction (docs/money.md). The engine decides them; `KamiLedger` names the accounts.
extension EngineCore {
    /// An order delivered from the pool: its sale (when it has an amount) and what its codes
    /// cost, out of the inventory. `revealed` carries each code's cost as read to open it.
    func deliveredFromPool(_ order: Order, codes: [OrderCode], revealed: [IssuedCode]) -> [JournalLine] {
        let cost = Dictionary(revealed.map { ($0.codeID, $0.costCents ?? 0) }, uniquingKeysWith: { first, _ in first })
        return Journal.delivered(
            orderSeq: order.seq, sku: order.sku, amountCents: order.amountCents, currency: order.labels?.currency,
            costs: codes.map { (sku: $0.sku, costCents: cost[$0.codeID] ?? 0, fromPool: true, source: nil) })
    }

    /// An order delivered by a supplier (`source` `upstream:SUPPLIER`) or an operator's hand
    /// (`manual:WHO`): its sale and `costCents` a code, owed to that source.
    func deliveredFrom(source: String, _ order: Order, items: [(sku: SkuID, item: DeliveredItem)], costCents: Int64) -> [JournalLine] {
        Journal.delivered(
            orderSeq: order.seq, sku: order.sku, amountCents: order.amountCents, currency: order.labels?.currency,
            costs: items.map { (sku: $0.sku, costCents: costCents, fromPool: false, source: source) })
    }

    /// Stock voided before it was sold (available or reserved codes): written off at cost.
    /// Reads the codes' costs (voids and quarantines are rare; a failed read writes off 0 and
    /// `verify` reports the difference).
    func writeOffs(_ codes: [OrderCode]) -> [JournalLine] {
        guard !codes.isEmpty else { return [] }
        let rows = (try? store.codes(codes.map(\.codeID))) ?? []
        var bySku: [(sku: SkuID, cents: Int64)] = []
        for row in rows {
            if let index = bySku.firstIndex(where: { $0.sku == row.sku }) {
                bySku[index].cents += row.costCents ?? 0
            } else {
                bySku.append((row.sku, row.costCents ?? 0))
            }
        }
        return bySku.map { Journal.writtenOff(sku: $0.sku, costCents: $0.cents) }
    }

    /// A refund: the order's sale reversed exactly (none for an order without an amount).
    func refundLines(_ order: Order) -> [JournalLine] {
        guard let amount = order.amountCents else { return [] }
        return Journal.refund(of: [JournalLine(
            kind: .sale, orderSeq: order.seq, sku: order.sku, debit: .clearing, credit: .revenue, amountCents: amount,
            currency: order.labels?.currency)])
    }
}
