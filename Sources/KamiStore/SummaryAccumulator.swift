import KamiCore
import KamiLedger

/// The report summary's changes of one transaction, added up per key and written once per
/// key before the commit. A mutation's lines are pending until it is kept (a mutation rolled
/// back to its savepoint drops them).
final class SummaryAccumulator {
    private var pending: [SummaryKey: (cents: Int64, lines: Int64)] = [:]
    private var kept: [SummaryKey: (cents: Int64, lines: Int64)] = [:]

    func add(_ line: JournalLine, atMs: Int64) {
        let key = SummaryKey(line: line, atMs: atMs)
        let old = pending[key] ?? (0, 0)
        pending[key] = (Money.sum(old.cents, line.amountCents), old.lines + SummaryAccumulator.count(line))
    }

    /// The mutation that added the pending lines is applied.
    func keep() {
        for (key, value) in pending {
            let old = kept[key] ?? (0, 0)
            kept[key] = (Money.sum(old.cents, value.cents), old.lines + value.lines)
        }
        pending.removeAll(keepingCapacity: true)
    }

    /// The mutation that added the pending lines was rolled back.
    func drop() { pending.removeAll(keepingCapacity: true) }

    /// A new transaction: nothing kept.
    func reset() {
        pending.removeAll(keepingCapacity: true)
        kept.removeAll(keepingCapacity: true)
    }

    /// Writes what was kept (inside the transaction, before its commit).
    func flush(_ db: Connection) throws(SQLiteError) {
        keep()
        guard !kept.isEmpty else { return }
        try SummaryAccumulator.write(kept, db)
        kept.removeAll(keepingCapacity: true)
    }

    /// What a line adds to its summary row's `lines`: orders for sale lines (a bundle's split
    /// sale is one order), lines for the rest.
    static func count(_ line: JournalLine) -> Int64 { line.kind == .sale ? line.orderCount : 1 }

    static func write(_ rows: [SummaryKey: (cents: Int64, lines: Int64)], _ db: Connection) throws(SQLiteError) {
        let stmt = try db.prepare("""
            INSERT INTO ledger_summary(day, sku_id, kind, account, channel, campaign, cents, lines) VALUES(?,?,?,?,?,?,?,?)
            ON CONFLICT(day, sku_id, kind, account, channel, campaign)
            DO UPDATE SET cents = cents + excluded.cents, lines = lines + excluded.lines
            """)
        for (key, value) in rows {
            stmt.bind(1, key.day)
            stmt.bind(2, Int64(key.sku))
            stmt.bind(3, Int64(key.kind.rawValue))
            stmt.bind(4, key.account)
            stmt.bind(5, key.channel)
            stmt.bind(6, key.campaign)
            stmt.bind(7, value.cents)
            stmt.bind(8, value.lines)
            try stmt.run()
        }
    }
}
