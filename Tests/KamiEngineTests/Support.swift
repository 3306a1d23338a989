import Foundation
import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore
import Synchronization
import XCTest

/// A clock moved by hand.
final class ManualClock: Clock, Sendable {
    private let now: Atomic<Int64>
    init(_ start: Int64 = 1_800_000_000_000) { now = Atomic(start) }
    func nowMs() -> Int64 { now.load(ordering: .relaxed) }
    func advance(ms: Int64) { now.add(ms, ordering: .relaxed) }
}

/// A fresh temporary directory, removed by `cleanup`.
func makeTempDirectory(_ name: String = "kami") -> String {
    let path = NSTemporaryDirectory() + "\(name)-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// One engine on a temp directory with a fixed key, re-openable to test recovery.
final class Harness {
    let directory: String
    let key: MasterKey
    let clock = ManualClock()
    var engine: Engine!
    var pool: PoolKind
    var durability: Durability
    /// The SQLite VFS to open through (nil: the default; see FaultDisk).
    var vfs: String?
    /// Group-commit settings (nil: the defaults).
    var commit: CommitSettings?
    /// Webhook endpoints set on every (re)open, so that events get outbox rows and verify
    /// checks them.
    var webhookRoutes: [WebhookRoute] = []
    private var imports = 0

    /// `key`: a fixed one makes the database's layout (fingerprints are keyed) the same run
    /// after run, which a replayed simulation needs.
    init(pool: PoolKind = .lockFree, durability: Durability = .normal, open: Bool = true, key: MasterKey = .random()) {
        directory = makeTempDirectory()
        self.key = key
        self.pool = pool
        self.durability = durability
        if open { reopen() }
    }

    func config() -> EngineConfig {
        var config = EngineConfig(directory: directory, sealer: Sealer(key: key))
        config.clock = clock
        config.expiryThread = false
        config.pool = pool
        config.durability = durability
        config.vfs = vfs
        if let commit { config.commit = commit }
        return config
    }

    func reopen() {
        engine?.close()
        engine = try! Engine(config: config())
        if !webhookRoutes.isEmpty { engine.webhooks.setRoutes(webhookRoutes) }
    }

    func close() {
        engine?.close()
        engine = nil
    }

    deinit {
        engine?.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Creates a SKU and imports `count` codes named `<key>-<n>`; returns the secrets by code id.
    @discardableResult
    func stockSku(_ key: String, count: Int, limit: Int = 0, batch: String? = nil) -> [CodeID: String] {
        _ = try! engine.admin.setSku(SkuDefinition(key: key, name: key.uppercased(), priceCents: 990, perUserLimit: limit,
                                             activationURLTemplate: "https://example.test/activate?c={code_id}"))
        guard count > 0 else { return [:] }
        imports += 1
        let tag = imports
        let rows = (0..<count).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("\(key)-\(tag)-secret-\($0)"),
                                                             cardNumber: "card-\($0)", batch: batch)) }
        let report = try! engine.admin.importCodes(sku: key, source: ArrayRowSource(rows), label: "test")
        precondition(report.imported == count, "imported \(report.imported) of \(count): \(report.rejected)")
        var secrets: [CodeID: String] = [:]
        for (offset, id) in report.codeIDs.enumerated() { secrets[id] = "\(key)-\(tag)-secret-\(offset)" }
        return secrets
    }

    func assertInvariants(file: StaticString = #filePath, line: UInt = #line) {
        engine.admin.barrier()
        let violations = try! engine.admin.verify()
        XCTAssertEqual(violations, [], "invariants broken: \(violations)", file: file, line: line)
    }
}

extension Result {
    var value: Success? { if case .success(let v) = self { return v } else { return nil } }
    var failure: Failure? { if case .failure(let e) = self { return e } else { return nil } }
}
