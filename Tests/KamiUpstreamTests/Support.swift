import Foundation
import KamiCore
import KamiCrypto
import KamiEngine
import KamiHTTP
import KamiStore
import KamiSupplierSim
import KamiUpstream
import Synchronization
import XCTest

/// A fresh temporary directory.
func makeTempDirectory(_ name: String = "kami-up") -> String {
    let path = NSTemporaryDirectory() + "\(name)-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Waits up to `seconds` for `condition`, polling.
func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// A result handed from a callback thread to the test.
final class Box<T: Sendable>: @unchecked Sendable {
    private let lock = NSCondition()
    private var value: T?

    func set(_ new: T) {
        lock.lock()
        value = new
        lock.broadcast()
        lock.unlock()
    }

    func wait(_ seconds: Double = 15) -> T? {
        lock.lock()
        defer { lock.unlock() }
        let deadline = Date().addingTimeInterval(seconds)
        while value == nil && lock.wait(until: deadline) {}
        return value
    }
}

/// An engine and an upstream service on a temp directory, with simulators to map.
final class UpstreamHarness {
    let directory = makeTempDirectory()
    let key = MasterKey.random()
    var engine: Engine!
    var service: UpstreamService!
    var sims: [String: SupplierSim] = [:]
    var endpoints: [SupplierEndpoint] = []
    let logs = LogLines()
    var settings = UpstreamSettings()

    init() {
        openEngine()
    }

    func openEngine() {
        var config = EngineConfig(directory: directory, sealer: Sealer(key: key))
        config.durability = .normal
        engine = try! Engine(config: config)
    }

    /// Starts a simulator and an endpoint for it (form style unless told).
    @discardableResult
    func addSim(_ id: String, style: SupplierStyle = .form, configure: (inout SimSettings) -> Void = { _ in },
                supplier: (inout SupplierConfig) -> Void = { _ in }) -> SupplierSim {
        var settings = SimSettings()
        settings.id = id
        settings.style = style
        settings.merchantID = "kami-\(id)"
        settings.key = Array("key-of-\(id)".utf8)
        settings.products = ["P-\(id)": (price: 500, stock: nil)]
        configure(&settings)
        let sim = SupplierSim(settings: settings)
        try! sim.start()
        sims[id] = sim
        var config = SupplierConfig(id: id)
        config.url = "http://127.0.0.1:\(sim.port)"
        config.style = style
        config.merchantID = settings.merchantID
        config.credentialsFile = "unused"
        config.timeoutMs = 2_000
        config.pollMs = 20
        config.pollMaxMs = 200
        supplier(&config)
        endpoints.append(SupplierEndpoint(
            config: config, credentials: SupplierCredentials(merchantID: settings.merchantID, key: settings.key, digest: settings.digest),
            url: HTTPURL(config.url)!, tls: nil))
        return sim
    }

    /// Starts the service; with `callbacks`, a listener on loopback that suppliers call back.
    func startService(callbacks: Bool = false) {
        let logs = self.logs
        service = UpstreamService(engine: engine, suppliers: endpoints, settings: settings) { level, event, fields in
            logs.append("\(level) \(event) " + fields.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
        }
        try! service.start(callbackListen: callbacks ? (host: "127.0.0.1", port: 0) : nil)
    }

    /// A plain SKU sourced upstream, mapped to `suppliers` at `cost`.
    func upstreamSku(_ key: String, price: Int64 = 1_000, policy: SourcePolicy = .upstream, strategy: RoutingStrategy = .cheapest,
                     minMargin: Int64 = 0, mappings: [(String, Int64)]) {
        _ = try! engine.admin.setSku(SkuDefinition(key: key, name: key, priceCents: price, perUserLimit: 0))
        _ = try! engine.upstream.setSourcing(sku: key, policy: policy, strategy: strategy, minMarginCents: minMargin)
        let known = Set(endpoints.map(\.config.id))
        for (index, (supplier, cost)) in mappings.enumerated() {
            _ = try! engine.upstream.map(sku: key, supplier: supplier, productID: "P-\(supplier)", costCents: cost,
                                         priority: index, knownSuppliers: known)
        }
    }

    /// `issue`, waiting for the reply (and up to `waitMs` for delivery).
    func issue(_ order: String, sku: String, user: String = "u1", units: Int = 1, waitMs: Int64? = nil, amountCents: Int64? = nil)
        -> Result<OrderReply, KamiError>
    {
        let box = Box<Result<OrderReply, KamiError>>()
        engine.storefront.issue(order: order, user: user, sku: sku, units: units, paymentRef: "pay-\(order)", waitMs: waitMs,
                                terms: OrderTerms(amountCents: amountCents)) {
            box.set($0)
        }
        return box.wait(30) ?? .failure(KamiError(.busy, "no reply"))
    }

    func wait(_ order: String, ms: Int64 = 10_000) -> Result<OrderReply, KamiError> {
        let box = Box<Result<OrderReply, KamiError>>()
        engine.storefront.wait(order: order, timeoutMs: ms) { box.set($0) }
        return box.wait(Double(ms) / 1000 + 10) ?? .failure(KamiError(.busy, "no reply"))
    }

    /// Every sale across simulators, by customer order number.
    func salesByOrder() -> [String: [String]] {
        var result: [String: [String]] = [:]
        for (id, sim) in sims {
            for sale in sim.ledger { result[sale.customerOrderNo, default: []].append(id) }
        }
        return result
    }

    func close() {
        service?.stop()
        for sim in sims.values { sim.stop() }
        engine?.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Log lines a service wrote.
final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}
