public import KamiCore
import KamiPool
import KamiCSV
import Synchronization
import Glibc
public import KamiStore

extension EngineCore {
    /// Imports codes of a plain SKU from `source` (see `Store.importCodes`), then makes them
    /// available in the pool. Nothing becomes sellable before the import's commit is on disk.
    func importCodes<Source: CodeRowSource & Sendable>(
        sku skuKey: String, source: Source, label: String, dryRun: Bool = false
    ) throws(KamiError) -> ImportReport {
        adminLock.lock()
        defer { adminLock.unlock() }
        let sku = try self.sku(key: skuKey)
        guard !sku.isBundle else {
            throw KamiError(.badRequest, "\(sku.key) is a bundle; import codes into its component SKUs")
        }
        let report = try store.importCodes(sku: sku.id, source: source, sealer: sealer, label: label, dryRun: dryRun)
        if !dryRun { makeAvailable(report.codeIDs, sku: sku.id) }
        return report
    }
}

extension EngineCore {
    /// Refuses to import from anything but a regular file (after symbolic links): a device
    /// such as `/dev/zero` or a fifo could be read forever, and the import holds the writer.
    static func checkImportFile(_ path: String) throws(KamiError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw KamiError(.badRequest, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            throw KamiError(.badRequest, "\(path) is \(fileKindName(kind)), not a regular file; only regular files are imported")
        }
    }

    /// Puts freshly imported (durable) codes into the pool and the stock counts.
    private func makeAvailable(_ codes: Range<CodeID>, sku: SkuID) {
        guard !codes.isEmpty else { return }
        pool.addSegment(sku: sku, codes: codes)
        pool.put(sku: sku, codes: Array(codes))
        stock.withLock { $0[sku, default: StockCounts()][.available] += codes.count }
    }

    /// Imports a CSV file as shops have them (UTF-8 with or without BOM, or GBK/GB18030; see
    /// KamiCSV), streaming it with bounded memory. Rows without a batch column get `batch`.
    func importCSV(
        path: String, sku skuKey: String, batch: String? = nil, dryRun: Bool = false, sheet: String? = nil
    ) throws(KamiError) -> ImportReport {
        if sheet != nil && !path.lowercased().hasSuffix(".xlsx") {
            throw KamiError(.badRequest, "a sheet is named only for an .xlsx workbook; \(path) is read as CSV")
        }
        adminLock.lock()
        defer { adminLock.unlock() }
        let sku = try self.sku(key: skuKey)
        guard !sku.isBundle else {
            throw KamiError(.badRequest, "\(sku.key) is a bundle; import codes into its component SKUs")
        }
        // Checked here, off the writer thread, so that a device or a fifo never reaches it
        // (CSVFileImport checks the opened file again).
        try EngineCore.checkImportFile(path)
        guard !jobsCancelled.load(ordering: .acquiring) else {
            throw KamiError(.unavailable, "kamid is stopping; import of \(path) not started")
        }
        let progress = beginJob(kind: "import", sku: sku.key, path: path)
        defer { progress.end() }
        let report = try store.importCodes(sku: sku.id, sealer: sealer, label: path, dryRun: dryRun) { [self] sink in
            do {
                let isCancelled = { self.jobsCancelled.load(ordering: .acquiring) }
                let take = { (item: CSVImportItem) throws -> Void in
                    progress.count()
                    switch item {
                    case .row(let row):
                        try sink(.row(CodeRow(
                            line: row.line, secret: row.secret, cardNumber: row.cardNumber, costCents: row.costCents,
                            expiresAtMs: row.expiresAtMs, batch: row.batch ?? batch)))
                    case .reject(let reject):
                        try sink(.rejected(RejectedRow(line: reject.line, reason: reject.reason)))
                    }
                }
                // An Excel workbook (the named sheet, or its first) is read with the same rules, row by row.
                if path.lowercased().hasSuffix(".xlsx") {
                    _ = try XLSXFileImport.importCodes(path: path, sheet: sheet, isCancelled: isCancelled, take)
                } else {
                    _ = try CSVFileImport.importCodes(path: path, isCancelled: isCancelled, take)
                }
            } catch let error as CSVImportError where error.code == .cancelled {
                throw KamiError(.unavailable, "import of \(path) cancelled: kamid is stopping; nothing was imported")
            } catch let error as CSVImportError where error.code == .notRegularFile {
                throw KamiError(.badRequest, error.message)
            } catch let error as CSVImportError {
                throw KamiError(.badRequest, "\(path): \(error.message)")
            }
        }
        if !dryRun { makeAvailable(report.codeIDs, sku: sku.id) }
        return report
    }
}
