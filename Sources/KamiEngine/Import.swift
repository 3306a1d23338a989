public import KamiCore
import KamiPool
import Synchronization
public import KamiStore

extension Engine {
    /// Imports codes of a plain SKU from `source` (see `Store.importCodes`), then makes them
    /// available in the pool. Nothing becomes sellable before the import's commit is on disk.
    public func importCodes<Source: CodeRowSource & Sendable>(
        sku skuKey: String, source: Source, label: String, dryRun: Bool = false
    ) throws(KamiError) -> ImportReport {
        let sku = try self.sku(key: skuKey)
        guard !sku.isBundle else {
            throw KamiError(.badRequest, "\(sku.key) is a bundle; import codes into its component SKUs")
        }
        let report = try store.importCodes(sku: sku.id, source: source, sealer: sealer, label: label, dryRun: dryRun)
        if !dryRun && !report.codeIDs.isEmpty {
            pool.addSegment(sku: sku.id, codes: report.codeIDs)
            pool.put(sku: sku.id, codes: Array(report.codeIDs))
            stock.withLock { $0[sku.id, default: StockCounts()].available += report.codeIDs.count }
        }
        return report
    }
}
