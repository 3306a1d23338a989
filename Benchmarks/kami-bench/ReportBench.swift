import Foundation
import KamiCore
import KamiStore

/// `kami-bench report`: how long the money reports take over a year of orders. The ledger's
/// summary is filled as the writer would leave it after `orders` delivered orders spread over
/// `days` days, `skus` SKUs, 4 channels and 3 campaigns (none, and two), each with a sale and
/// a cost line and, under a campaign, a subsidy line; then each report runs over the year.
enum ReportBench {
    static func run(orders: Int, days: Int, skus: Int) {
        let directory = NSTemporaryDirectory() + "kami-bench-report-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try! Store(directory: directory, durability: .normal)
        defer { store.close() }
        let channels = ["app", "h5", "taobao", "pdd"]
        let campaigns = ["", "618", "double11"]
        let keys = days * skus * channels.count * campaigns.count
        let perKey = max(1, orders / keys)
        let firstDay: Int64 = 20_000
        let started = Date()
        let rows = try! store.writer.perform { (context: inout WriterContext) throws(KamiError) -> Int in
            var rows = 0
            do {
                try context.db.execute("BEGIN")
                let stmt = try context.db.prepare("""
                    INSERT INTO ledger_summary(day, sku_id, kind, account, channel, campaign, cents, lines) VALUES(?,?,?,?,?,?,?,?)
                    """)
                for day in 0..<days {
                    for sku in 1...skus {
                        for channel in channels {
                            for campaign in campaigns {
                                var kinds: [(Int64, String, Int64)] = [(1, "", 990), (2, sku % 3 == 0 ? "payable:fulu" : "inventory", 400)]
                                if !campaign.isEmpty { kinds.append((6, "", 100)) }
                                for (kind, account, cents) in kinds {
                                    stmt.bind(1, firstDay + Int64(day))
                                    stmt.bind(2, Int64(sku))
                                    stmt.bind(3, kind)
                                    stmt.bind(4, account)
                                    stmt.bind(5, channel)
                                    stmt.bind(6, campaign)
                                    stmt.bind(7, cents * Int64(perKey))
                                    stmt.bind(8, Int64(perKey))
                                    try stmt.run()
                                    rows += 1
                                }
                            }
                        }
                    }
                }
                try context.db.execute("COMMIT")
                return rows
            } catch {
                throw KamiError(.unavailable, "\(error)")
            }
        }
        print("report summary of \(perKey * keys) orders over \(days) days, \(skus) SKUs: \(rows) rows written in "
              + String(format: "%.1f s", Date().timeIntervalSince(started)))
        print("| report | rows out | seconds |")
        print("|---|---:|---:|")
        let until = firstDay + Int64(days)
        for group in Store.ReportGroup.allCases {
            let start = Date()
            let out = try! store.salesReport(group: group, sinceDay: firstDay, untilDay: until, sku: nil, channel: nil, campaign: nil)
            print("| sales by \(group.rawValue) | \(out.count) | " + String(format: "%.3f", Date().timeIntervalSince(start)) + " |")
        }
        var start = Date()
        let one = try! store.salesReport(group: .day, sinceDay: firstDay, untilDay: until, sku: 7, channel: "app", campaign: nil)
        print("| sales of one SKU and channel by day | \(one.count) | " + String(format: "%.3f", Date().timeIntervalSince(start)) + " |")
        start = Date()
        let owed = try! store.payables()
        print("| payables | \(owed.count) | " + String(format: "%.3f", Date().timeIntervalSince(start)) + " |")
    }
}
