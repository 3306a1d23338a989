import Foundation
import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore

/// `kami-bench queries`: the bounded queries of a user who owns many codes. One user holds
/// `codes` codes across orders of `perOrder` codes; measured: reading one order (one
/// statement for its codes), a page of entitlements (default and largest), walking every page,
/// and, for comparison in the same run, reading the same codes one statement per code (as
/// queries did before).
enum QueryBench {
    static func run(codes: Int, perOrder: Int, rounds: Int) {
        let directory = NSTemporaryDirectory() + "kami-bench-queries-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = EngineConfig(directory: directory, sealer: Sealer(key: MasterKey.random()))
        config.durability = .normal
        let engine = try! Engine(config: config)
        defer { engine.close() }
        _ = try! engine.admin.setSku(SkuDefinition(key: "vip", name: "VIP"))
        let rows = (0..<codes).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("QUERY-\($0)-c0ffee"))) }
        _ = try! engine.admin.importCodes(sku: "vip", source: ArrayRowSource(rows), label: "bench")
        var orders: [String] = []
        var made = 0
        while made < codes {
            let units = min(perOrder, codes - made)
            let id = "o\(orders.count)"
            _ = try! engine.storefront.issueSync(order: id, user: "heavy", sku: "vip", units: units, paymentRef: "p").get()
            orders.append(id)
            made += units
        }
        print("queries: one user with \(codes) codes in \(orders.count) orders of \(perOrder), \(rounds) rounds each")
        print("| query | codes read | µs per call | µs per code |\n|---|---:|---:|---:|")
        func measure(_ name: String, codes count: Int, _ body: () -> Void) {
            body()
            let start = monotonicNs()
            for _ in 0..<rounds { body() }
            let us = Double(monotonicNs() - start) / 1_000 / Double(rounds)
            print(String(format: "| %@ | %d | %.0f | %.2f |", name, count, us, us / Double(max(1, count))))
        }
        let last = orders.last!
        measure("order (one statement)", codes: perOrder) { _ = try! engine.queries.order(last) }
        let codeIDs = try! engine.queries.order(last).codeIDs
        measure("same codes, one statement per code", codes: codeIDs.count) {
            _ = try! engine.storage.codeStates(codeIDs)
            _ = try! engine.storage.codes(codeIDs)
        }
        measure("entitlements page (default \(Limits.entitlementsPageDefault))", codes: Limits.entitlementsPageDefault) {
            _ = try! engine.queries.entitlements(user: "heavy", withSecrets: true, limit: nil, cursor: nil)
        }
        measure("entitlements page (max \(Limits.entitlementsPageMax))", codes: Limits.entitlementsPageMax) {
            _ = try! engine.queries.entitlements(user: "heavy", withSecrets: true, limit: Limits.entitlementsPageMax,
                                                 cursor: nil)
        }
        let all = try! engine.queries.entitlements(user: "heavy", withSecrets: false)
        let allIDs = all.map(\.codeID)
        measure("all pages (\(Limits.entitlementsPageMax) each, no secrets)", codes: all.count) {
            _ = try! engine.queries.entitlements(user: "heavy", withSecrets: false)
        }
        measure("all codes, one statement per code", codes: allIDs.count) {
            _ = try! engine.storage.codeStates(allIDs)
            _ = try! engine.storage.codes(allIDs)
        }
    }
}
