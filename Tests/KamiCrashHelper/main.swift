// A process the crash tests run under load and kill with SIGKILL at a random moment.
//
//   kami-crash-helper DIR KEYFILE SEED [CODES]
//
// Opens an engine on DIR (durability full). On first use it creates SKU "hot" (per-user limit
// 1) with CODES codes and the bundle "pack" of "hot" + "side". Then 8 threads run a flash sale:
// issue, reserve+commit, reserve+release, with random order ids. Before each request it prints
// "SENT <order> <user> <sku> <op>"; after each durable success "ACK <order> <state> <codeIDs>".
// The test trusts only ACK lines: every one of them must survive the kill.
import Foundation
import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore
import Synchronization

let arguments = CommandLine.arguments
guard arguments.count >= 4, let seed = UInt64(arguments[3]) else {
    FileHandle.standardError.write("usage: kami-crash-helper DIR KEYFILE SEED [CODES]\n".data(using: .utf8)!)
    exit(2)
}
let directory = arguments[1]
let codes = arguments.count > 4 ? Int(arguments[4]) ?? 2_000 : 2_000
let key: MasterKey
do { key = try MasterKey.load(path: arguments[2]) } catch {
    FileHandle.standardError.write("\(error)\n".data(using: .utf8)!)
    exit(2)
}
var config = EngineConfig(directory: directory, sealer: Sealer(key: key))
config.durability = .full
let engine: Engine
do { engine = try Engine(config: config) } catch {
    FileHandle.standardError.write("open: \(error)\n".data(using: .utf8)!)
    exit(3)
}
// Events get outbox rows, so the crash loop covers them (verify checks them after each kill).
engine.webhooks.setRoutes([WebhookRoute(name: "shop")])

let output = Locked<Void>(())
@Sendable func say(_ line: String) {
    // One write(2) per line, under a lock: lines never interleave, and nothing is buffered in
    // the process when it is killed.
    let bytes = Array((line + "\n").utf8)
    output.withLock { _ in
        bytes.withUnsafeBytes { _ = write(1, $0.baseAddress, $0.count) }
    }
}

do {
    if engine.queries.skus().isEmpty {
        _ = try engine.admin.setSku(SkuDefinition(key: "hot", name: "Hot", priceCents: 100, perUserLimit: 1))
        _ = try engine.admin.setSku(SkuDefinition(key: "side", name: "Side", priceCents: 100, perUserLimit: 0))
        _ = try engine.admin.setSku(SkuDefinition(key: "pack", name: "Pack", priceCents: 150, perUserLimit: 0,
                                            components: [("hot", 1), ("side", 1)]))
    }
    // Every run tops the stock up, so that later kill cycles still sell.
    for sku in ["hot", "side"] {
            let rows = (0..<codes).map { ImportItem.row(CodeRow(line: $0 + 2, secret: Secret("\(sku)-\($0)-\(seed)"))) }
        _ = try engine.admin.importCodes(sku: sku, source: ArrayRowSource(rows), label: "crash-setup")
    }
} catch {
    FileHandle.standardError.write("setup: \(error)\n".data(using: .utf8)!)
    exit(4)
}
say("READY")

@Sendable func ack(_ result: Result<OrderReply, KamiError>) {
    if case .success(let reply) = result {
        say("ACK \(reply.orderID) \(reply.state) \(reply.codeIDs.map(String.init).joined(separator: ","))")
    }
}

let threads = 8
let group = DispatchGroup()
for worker in 0..<threads {
    group.enter()
    Thread.detachNewThread {
        var rng = SplitMix64(seed: seed &* 31 &+ UInt64(worker))
        for n in 0..<1_000_000 {
            let order = "s\(seed)-w\(worker)-\(n)"
            let user = "u\(seed)-\(rng.next() % 2_000)"
            let roll = rng.next() % 10
            let sku = roll == 0 ? "pack" : "hot"
            if roll < 6 {
                say("SENT \(order) \(user) \(sku) issue")
                let issued = engine.storefront.issueSync(order: order, user: user, sku: sku, paymentRef: "pay-\(order)")
                ack(issued)
                // A third of the buyers activate what they got at once.
                if case .success(let reply) = issued, reply.state == .committed, roll < 2,
                   case .success(let activated) = engine.storefront.activateSync(order: order, user: user) {
                    say("ACTIVATED \(order) \(activated.items.map { String($0.codeID) }.joined(separator: ","))")
                }
            } else {
                say("SENT \(order) \(user) \(sku) reserve")
                let held = engine.storefront.reserveSync(order: order, user: user, sku: sku, ttlMs: 2_000)
                ack(held)
                guard case .success = held else { continue }
                if roll < 9 {
                    ack(engine.storefront.commitSync(order: order, paymentRef: "pay-\(order)"))
                } else {
                    ack(engine.storefront.releaseSync(order: order))
                }
            }
        }
        group.leave()
    }
}
group.wait()
