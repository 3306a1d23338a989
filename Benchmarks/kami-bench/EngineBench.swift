import CKamiLinux
import Foundation
import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore
import KamiXLSX
import Synchronization

/// Benchmarks of the engine and the store alone (no network): group-commit throughput, boot
/// time and memory with millions of codes, CSV import speed. Each prints a small table.
enum EngineBench {
    static func tempDirectory(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "kami-bench-\(name)-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func seconds(since start: UInt64) -> Double { Double(monotonicNs() - start) / 1e9 }

    /// Durable group-commit throughput of the store alone: each mutation is one issue (an
    /// issue-log record; its order row and code state derived behind), batches kept full,
    /// durability as given. `mutations/s` counts acknowledged (durable) issues, with the
    /// derivations the writer ran meanwhile; `derived/s` also waits for the last records to
    /// be derived.
    static func store(batchSizes: [Int], durability: Durability, secondsMax: Double) {
        print("store group commit, durability \(durability.rawValue), one issue per mutation")
        print("| batch max | mutations | batches (commits) | mutations/s | derived/s | commits/s | mean COMMIT ms | derives | mean derive ms |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for batch in batchSizes {
            let directory = tempDirectory("store")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let store = try! Store(directory: directory, durability: durability, settings: CommitSettings(batchMax: batch))
            let skuID = createSku(store)
            // Enough codes for the time budget at this batch size.
            let codes = min(2_000_000, max(20_000, batch * 600))
            let report = try! store.importCodes(sku: skuID, sealer: Sealer(key: MasterKey.random()), label: "bench") { sink in
                for n in 0..<codes { try sink(.row(CodeRow(line: n + 2, secret: Secret("S-\(n)-bench")))) }
            }
            let window = DispatchSemaphore(value: batch * 4)
            let group = DispatchGroup()
            let before = store.writer.stats
            let start = monotonicNs()
            var submitted = 0
            for offset in 0..<codes {
                if seconds(since: start) > secondsMax { break }
                window.wait()
                group.enter()
                let seq = Int64(offset + 1)
                let code = report.codeIDs.lowerBound + Int64(offset)
                let order = Order(
                    seq: seq, orderID: "bench-\(offset)", user: "u\(offset % 1000)", sku: skuID, units: 1,
                    state: .committed, paymentRef: "p", codes: [OrderCode(codeID: code, sku: skuID)], ttlMs: 0,
                    expiresAtMs: 0, createdAtMs: 0, updatedAtMs: 0)
                store.writer.submit(.writeOrder(
                    order, codes: [CodeChange(codeID: code, from: .available, to: .issued, orderSeq: seq)],
                    audit: AuditEvent("issue", subject: "order:bench-\(offset)", detail: "codes=\(code)"))) { _ in
                    window.signal()
                    group.leave()
                }
                submitted += 1
            }
            group.wait()
            let elapsed = seconds(since: start)
            try! store.writer.catchUp()
            let elapsedDerived = seconds(since: start)
            let stats = store.writer.stats
            let batches = stats.batches - before.batches
            let derives = stats.derives - before.derives
            let meanCommitMs = Double(stats.commitNsTotal - before.commitNsTotal) / Double(max(1, batches)) / 1e6
            let meanDeriveMs = Double(stats.deriveNsTotal - before.deriveNsTotal) / Double(max(1, derives)) / 1e6
            print(String(format: "| %d | %d | %d | %.0f | %.0f | %.0f | %.3f | %d | %.2f |", batch, submitted, batches,
                         Double(submitted) / elapsed, Double(submitted) / elapsedDerived, Double(batches) / elapsed,
                         meanCommitMs, derives, meanDeriveMs))
            store.close()
        }
    }

    static func createSku(_ store: Store) -> SkuID {
        let waiter = DispatchSemaphore(value: 0)
        let id = Mutex<SkuID>(0)
        store.writer.submit(.writeSku(
            Sku(id: 0, key: "bench", name: "Bench", priceCents: 100, perUserLimit: 0, activationURLTemplate: nil),
            audit: AuditEvent("sku-create", subject: "sku:bench", detail: ""))) { result in
            if case .success(.skuID(let value)) = result { id.withLock { $0 = value } }
            waiter.signal()
        }
        waiter.wait()
        return id.withLock { $0 }
    }

    /// Builds a data directory with `codes` available codes (imports of 1M rows each), then
    /// opens it in a fresh child process and reports time to ready and resident memory.
    /// `longIDs`: order ids (30 bytes) and user ids (25 bytes, one user per two orders) as
    /// shops send them, too long for Swift's inline strings; else short ones, ten orders a user.
    static func boot(codes: Int, orders: Int = 0, longIDs: Bool = false, keep: String?) {
        let directory = keep ?? tempDirectory("boot")
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let keyPath = directory + "/master.key"
        if !FileManager.default.fileExists(atPath: keyPath) {
            let key = try! MasterKey.generate(path: keyPath)
            var config = EngineConfig(directory: directory + "/data", sealer: Sealer(key: key))
            config.durability = .normal
            let engine = try! Engine(config: config)
            _ = try! engine.admin.setSku(SkuDefinition(key: "bulk", name: "Bulk"))
            var made = 0
            let start = monotonicNs()
            while made < codes {
                let count = min(1_000_000, codes - made)
                let base = made
                let report = try! engine.storage.importCodes(
                    sku: engine.queries.skus()[0].id, sealer: Sealer(key: key), label: "boot-bench"
                ) { sink in
                    for n in base..<(base + count) {
                        try sink(.row(CodeRow(line: n + 2, secret: Secret("BOOT-\(n)-7f3a9c"))))
                    }
                }
                made += report.imported
                print(String(format: "  imported %d codes (%.0f rows/s)", made, Double(made) / seconds(since: start)))
            }
            // Past orders: each one issued one code (through the issue log, as kamid writes them).
            let sku = engine.queries.skus()[0].id
            let first = CodeID(1)
            let store = engine.storage
            let window = DispatchSemaphore(value: 4_096)
            let group = DispatchGroup()
            let ordersStart = monotonicNs()
            for n in 0..<min(orders, codes) {
                window.wait()
                group.enter()
                let seq = Int64(n + 1)
                let code = first + Int64(n)
                let order = Order(
                    seq: seq, orderID: longIDs ? "TB2026120512\(String(1_000_000_000_000_000 + n).dropFirst())" : "past-\(n)",
                    user: longIDs ? "wx_oA1b2C3d4E5f6-\(10_000_000 + n / 2)" : "u\(n % 1_000_000)", sku: sku, units: 1,
                    state: .committed, paymentRef: "pay-\(n)", codes: [OrderCode(codeID: code, sku: sku)], ttlMs: 0, expiresAtMs: 0,
                    createdAtMs: 1_700_000_000_000, updatedAtMs: 1_700_000_000_000, amountCents: 990)
                store.writer.submit(.writeOrder(
                    order, codes: [CodeChange(codeID: code, from: .available, to: .issued, orderSeq: seq)],
                    audit: AuditEvent("issue", subject: "order:\(order.orderID)", detail: "seq=\(seq) codes=\(code)"))) { result in
                    if case .failure(let error) = result { fatalError("past order \(n): \(error)") }
                    window.signal()
                    group.leave()
                }
                if (n + 1) % 1_000_000 == 0 {
                    print(String(format: "  wrote %d past orders (%.0f/s)", n + 1, Double(n + 1) / seconds(since: ordersStart)))
                }
            }
            group.wait()
            engine.close()
        }
        print("boot with \(codes) codes and \(min(orders, codes)) past orders\(longIDs ? " (long ids)" : "") (fresh process, durability full):")
        let output = runChild(["boot-open", directory])
        print(output)
        if keep == nil { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// The child side of `boot`: open, report.
    static func bootOpen(directory: String) {
        let key = try! MasterKey.load(path: directory + "/master.key")
        let start = monotonicNs()
        let engine = try! Engine(config: EngineConfig(directory: directory + "/data", sealer: Sealer(key: key)))
        let readyMs = Double(monotonicNs() - start) / 1e6
        let stock = try! engine.queries.stock(sku: "bulk")
        let rss = kami_resident_bytes()
        print(String(format: "| available codes | issued codes | ready ms | RSS MiB | peak RSS MiB | bytes per code |\n|---:|---:|---:|---:|---:|---:|\n| %d | %d | %.0f | %.0f | %.0f | %.1f |",
                     stock.available, stock.issued, readyMs, Double(rss) / 1_048_576,
                     Double(kami_peak_resident_bytes()) / 1_048_576, Double(rss) / Double(max(1, stock.available + stock.issued))))
        engine.close()
    }

    /// Writes a CSV file of `rows` codes and imports it in a child process.
    static func importCSV(rows: Int) {
        let directory = tempDirectory("import")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/codes.csv"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let file = FileHandle(forWritingAtPath: path)!
        var chunk = "\u{FEFF}卡号,卡密,成本,有效期,批次\n"
        for n in 0..<rows {
            chunk += "\(6_200_000_000 + n),IMP-\(n)-c0ffee-\(n % 97),12.50,2027-12-31,批次\(n / 100_000)\n"
            if chunk.utf8.count > 1 << 20 {
                file.write(chunk.data(using: .utf8)!)
                chunk = ""
            }
        }
        file.write(chunk.data(using: .utf8)!)
        try? file.close()
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        print("CSV import of \(rows) rows (\(size / 1_048_576) MiB, UTF-8 with BOM, Chinese headers), durability full:")
        print(runChild(["import-run", directory, path]))
    }

    /// Writes an .xlsx workbook of `rows` codes (the CSV benchmark's rows, card numbers as
    /// text, costs as numbers) and imports it in a child process.
    static func importXLSX(rows: Int) {
        let directory = tempDirectory("import-xlsx")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/codes.xlsx"
        let writeStart = monotonicNs()
        let sheet = try! XLSXWriter(path: path, sheetName: "卡密")
        try! sheet.add([.text("卡号"), .text("卡密"), .text("成本"), .text("有效期"), .text("批次")])
        for n in 0..<rows {
            try! sheet.add([.text(String(6_200_000_000 + n)), .text("IMP-\(n)-c0ffee-\(n % 97)"), .number("12.5"),
                            .text("2027-12-31"), .text("批次\(n / 100_000)")])
        }
        try! sheet.finish()
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        print(String(format: "XLSX import of %d rows (%.1f MiB compressed, written in %.1f s), durability full:",
                     rows, Double(size) / 1_048_576, seconds(since: writeStart)))
        print(runChild(["import-run", directory, path]))
    }

    static func importRun(directory: String, path: String) {
        var config = EngineConfig(directory: directory + "/data", sealer: Sealer(key: MasterKey.random()))
        config.durability = .full
        let engine = try! Engine(config: config)
        _ = try! engine.admin.setSku(SkuDefinition(key: "bulk", name: "Bulk"))
        let before = kami_peak_resident_bytes()
        let start = monotonicNs()
        let report = try! engine.admin.importCSV(path: path, sku: "bulk")
        let elapsed = seconds(since: start)
        print(String(format: "| rows imported | rejected | seconds | rows/s | peak RSS MiB (before) |\n|---:|---:|---:|---:|---:|\n| %d | %d | %.1f | %.0f | %.0f (%.0f) |",
                     report.imported, report.rejectedCount, elapsed, Double(report.imported) / elapsed,
                     Double(kami_peak_resident_bytes()) / 1_048_576, Double(before) / 1_048_576))
        engine.close()
    }

    static func runChild(_ arguments: [String]) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0].hasPrefix("/")
            ? CommandLine.arguments[0] : FileManager.default.currentDirectoryPath + "/" + CommandLine.arguments[0])
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try! process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
