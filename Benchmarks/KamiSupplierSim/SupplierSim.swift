import Foundation
public import KamiHTTP
public import KamiUpstream
import Synchronization

/// How the simulated supplier behaves. Rates are probabilities per order in 0...1.
public struct SimSettings: Sendable {
    public var id = "sim"
    public var style = SupplierStyle.form
    public var merchantID = "kami"
    public var key: [UInt8] = Array("sim-key".utf8)
    public var digest = SignDigest.md5
    /// Median latency of an answer, ms, and the spread (sigma of the log-normal).
    public var latencyMs: Double = 0
    public var latencySigma: Double = 0
    /// The supplier refuses (nothing sold).
    public var failRate: Double = 0
    /// It sells, then never answers (the client times out: an unknown outcome).
    public var timeoutRate: Double = 0
    /// It sells, and answers a state that means "unknown".
    public var unknownRate: Double = 0
    /// It answers "processing", sells, and calls back after `callbackDelayMs` (queries show
    /// processing until then).
    public var asyncRate: Double = 0
    public var callbackDelayMs: Int64 = 100
    /// A callback is sent twice.
    public var duplicateCallbackRate: Double = 0
    /// One more callback, this long after the first (0: none).
    public var lateCallbackMs: Int64 = 0
    /// Callbacks are signed with a wrong key (kamid must refuse them).
    public var badCallbackSignature = false
    /// Products: id -> (price in minor units, stock; nil stock is unlimited).
    public var products: [String: (price: Int64, stock: Int?)] = [:]
    public var balanceCents: Int64 = 1_000_000_000
    /// Orders that name an account are direct top-ups: credited, no card comes back.
    public var directTopUp = false
    /// Accounts credited by direct top-ups, in order.
    public var credited: [String] = []
    public var seed: UInt64 = 1

    public init() {}
}

/// One sale in the simulator's ledger.
public struct SimSale: Sendable, Hashable {
    public var customerOrderNo: String
    public var supplierRef: String
    public var productID: String
    public var quantity: Int
    public var priceCents: Int64
    public var atMs: Int64
}

/// A supplier speaking the generic API (any of its styles) over HTTP, with the faults a real
/// one has. Every sale is in `ledger`: tests prove from it that nothing was bought twice.
/// `GET /_sim/ledger` serves it as JSON; `POST /_sim/set` changes settings (form fields:
/// `price.PRODUCT`, `stock.PRODUCT`, `fail_rate`, `timeout_rate`, `unknown_rate`,
/// `async_rate`, `latency_ms`).
public final class SupplierSim: @unchecked Sendable {
    // @unchecked: `settings`, `orders`, `sales`, `rng` are touched only on `loop`'s thread.
    public let loop: IOLoop
    private var settings: SimSettings
    private var server: HTTPServer!
    private let client: HTTPClient
    private var orders: [String: SupplierWire.OrderView] = [:]
    private var orderProducts: [String: (product: String, notify: String?, readyAtMs: Int64)] = [:]
    private var sales: [SimSale] = []
    private var rng: SimRandom
    private var nextRef = 1
    private let ledgerBox = Mutex<[SimSale]>([])
    private let callbackCounts = Mutex<[Int]>([0, 0])
    private let callbackErrors = Mutex<[String]>([])

    /// Callbacks answered 200, and the others (refused or failed to send).
    public var callbacksSent: (ok: Int, refused: Int) { callbackCounts.withLock { ($0[0], $0[1]) } }

    /// Why callbacks could not be sent.
    public var callbackFailures: [String] { callbackErrors.withLock { $0 } }
    private let tls: TLSContext?
    private var requests = 0

    /// A simulator on `host:port` (0 picks one); TLS when `tls` is a server context.
    public init(settings: SimSettings, host: String = "127.0.0.1", port: UInt16 = 0, tls: TLSContext? = nil) {
        self.settings = settings
        self.tls = tls
        rng = SimRandom(seed: settings.seed)
        loop = IOLoop(name: "kami-sim")
        client = HTTPClient(loop: loop)
        var options = HTTPServerOptions()
        options.maxConnections = 20_000
        let box = WeakBox<SupplierSim>()
        server = HTTPServer(host: host, port: port, tls: tls, options: options, loop: loop) { request, responder in
            // Handlers run on the server's loop, which is this simulator's own.
            box.value?.handle(request, responder)
        }
        box.value = self
    }

    /// Binds and starts.
    public func start() throws(HTTPServerError) { try server.start() }

    public var port: UInt16 { server.port }

    public func stop() {
        server.stop()
        loop.stop()
    }

    /// Changes the settings (on the simulator's thread, before its next request).
    public func update(_ change: @escaping @Sendable (inout SimSettings) -> Void) {
        let done = Box()
        loop.execute { [self] in
            change(&settings)
            done.flag.store(true, ordering: .releasing)
        }
        while !done.flag.load(ordering: .acquiring) { usleep(200) }
    }

    private final class Box: Sendable { let flag = Atomic<Bool>(false) }

    /// Every sale so far.
    public var ledger: [SimSale] { ledgerBox.withLock { $0 } }

    private func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000) }

    private func handle(_ request: HTTPRequest, _ responder: HTTPResponder) {
        requests += 1
        if request.path == "/_sim/ledger" { return responder.respond(ledgerResponse()) }
        if request.path == "/_sim/set" { return responder.respond(set(request)) }
        let call: SupplierWire.Call
        switch SupplierWire.decode(request, style: settings.style, key: settings.key, digest: settings.digest,
                                   nowSeconds: nowMs() / 1_000) {
        case .failure(let refusal):
            return answer(responder, SupplierWire.encode(refusal, style: settings.style))
        case .success(let decoded): call = decoded
        }
        switch call {
        case .products, .balance:
            let products = settings.products.map { SupplierProduct(productID: $0.key, priceCents: $0.value.price, stock: $0.value.stock) }
                .sorted { $0.productID < $1.productID }
            answer(responder, SupplierWire.encode(products: products, balanceCents: settings.balanceCents, style: settings.style))
        case .query(let number):
            guard var view = orders[number] else {
                return answer(responder, SupplierWire.encode(.notFound, style: settings.style))
            }
            if view.state == .processing, let extra = orderProducts[number], nowMs() >= extra.readyAtMs {
                view.state = .succeeded
                orders[number] = view
            }
            answer(responder, SupplierWire.encode(presented(view), style: settings.style))
        case .place(let order):
            place(order, responder)
        }
    }

    /// What the outside sees of an order: processing ones show no items.
    private func presented(_ view: SupplierWire.OrderView) -> SupplierWire.OrderView {
        var shown = view
        if view.state != .succeeded { shown.items = [] }
        return shown
    }

    private func place(_ order: PlaceOrder, _ responder: HTTPResponder) {
        // The same customer number again is the same order: answered as it stands.
        if let existing = orders[order.customerOrderNo] {
            var view = existing
            if view.state == .processing, let extra = orderProducts[order.customerOrderNo], nowMs() >= extra.readyAtMs {
                view.state = .succeeded
                orders[order.customerOrderNo] = view
            }
            return answer(responder, SupplierWire.encode(presented(view), style: settings.style))
        }
        guard let product = settings.products[order.productID] else {
            return answer(responder, SupplierWire.encode(.unknownProduct, style: settings.style))
        }
        if let stock = product.stock, stock < order.quantity {
            return answer(responder, SupplierWire.encode(.outOfStock, style: settings.style))
        }
        let ref = "\(settings.id.uppercased())\(nextRef)"
        nextRef += 1
        if rng.chance(settings.failRate) {
            let view = SupplierWire.OrderView(customerOrderNo: order.customerOrderNo, supplierRef: ref, state: .failed,
                                              quantity: order.quantity, failCode: "channel_error", message: "upstream channel refused")
            orders[order.customerOrderNo] = view
            return answer(responder, SupplierWire.encode(view, style: settings.style))
        }
        // Sold.
        if let stock = product.stock { settings.products[order.productID] = (product.price, stock - order.quantity) }
        let topUp = settings.directTopUp && order.account != nil
        if topUp { settings.credited.append(order.account!) }
        let items = topUp ? [] : (0..<order.quantity).map { index in
            WireItem(secret: "SIM-\(settings.id)-\(ref)-\(index)-\(rng.next() % 1_000_000_000)", cardNumber: "\(ref)-\(index)")
        }
        let sale = SimSale(customerOrderNo: order.customerOrderNo, supplierRef: ref, productID: order.productID,
                           quantity: order.quantity, priceCents: product.price, atMs: nowMs())
        sales.append(sale)
        ledgerBox.withLock { $0.append(sale) }
        let async = rng.chance(settings.asyncRate)
        var view = SupplierWire.OrderView(customerOrderNo: order.customerOrderNo, supplierRef: ref,
                                          state: async ? .processing : .succeeded, items: items, quantity: order.quantity)
        orders[order.customerOrderNo] = view
        orderProducts[order.customerOrderNo] = (order.productID, order.notifyURL, async ? nowMs() + settings.callbackDelayMs : 0)
        if async, let notify = order.notifyURL.flatMap(HTTPURL.init) {
            scheduleCallbacks(order.customerOrderNo, notify: notify)
        }
        if rng.chance(settings.timeoutRate) { return }  // sold, never answered
        if rng.chance(settings.unknownRate) { view.state = .unknown }
        answer(responder, SupplierWire.encode(presented(view), style: settings.style))
    }

    private func scheduleCallbacks(_ number: String, notify: HTTPURL) {
        var delays = [settings.callbackDelayMs]
        if rng.chance(settings.duplicateCallbackRate) { delays.append(settings.callbackDelayMs + 5) }
        if settings.lateCallbackMs > 0 { delays.append(settings.callbackDelayMs + settings.lateCallbackMs) }
        for delay in delays {
            loop.schedule(afterMs: delay) { [weak self] in
                guard let self, var view = self.orders[number] else { return }
                view.state = .succeeded
                self.orders[number] = view
                let key = self.settings.badCallbackSignature ? Array("not-the-key".utf8) : self.settings.key
                let request = SupplierWire.callback(view, style: self.settings.style, notify: notify,
                                                    merchantID: self.settings.merchantID, key: key, digest: self.settings.digest,
                                                    nowSeconds: self.nowMs() / 1_000)
                self.client.send(request, to: notify) { [weak self] result in
                    guard let self else { return }
                    let ok: Bool = if case .success(let response) = result { response.status == 200 } else { false }
                    self.callbackCounts.withLock { $0[ok ? 0 : 1] += 1 }
                    if case .failure(let error) = result { self.callbackErrors.withLock { $0.append(error.description) } }
                }
            }
        }
    }

    private func answer(_ responder: HTTPResponder, _ response: HTTPResponse) {
        let delay = settings.latencyMs <= 0 ? 0 : settings.latencyMs * exp(settings.latencySigma * rng.gaussian())
        if delay < 1 { return responder.respond(response) }
        loop.schedule(afterMs: Int64(delay)) { responder.respond(response) }
    }

    private func ledgerResponse() -> HTTPResponse {
        let list = sales.map { sale -> [String: Any] in
            ["customer_order_no": sale.customerOrderNo, "supplier_ref": sale.supplierRef, "product_id": sale.productID,
             "quantity": sale.quantity, "price_cents": sale.priceCents, "at_ms": sale.atMs]
        }
        let body = (try? JSONSerialization.data(withJSONObject: ["supplier": settings.id, "requests": requests, "sales": list],
                                                options: [.sortedKeys])) ?? Data()
        return HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "application/json")]), body: [UInt8](body))
    }

    private func set(_ request: HTTPRequest) -> HTTPResponse {
        guard request.method == "POST", let form = HTTPForm.decode(request.bodyText) else {
            return HTTPResponse(status: 400, text: "POST form fields\n")
        }
        for (name, value) in form {
            if name.hasPrefix("price."), let price = Int64(value) {
                let product = String(name.dropFirst(6))
                settings.products[product] = (price, settings.products[product]?.stock)
            } else if name.hasPrefix("stock.") {
                let product = String(name.dropFirst(6))
                settings.products[product] = (settings.products[product]?.price ?? 0, Int(value))
            } else if let number = Double(value) {
                switch name {
                case "fail_rate": settings.failRate = number
                case "timeout_rate": settings.timeoutRate = number
                case "unknown_rate": settings.unknownRate = number
                case "async_rate": settings.asyncRate = number
                case "latency_ms": settings.latencyMs = number
                default: return HTTPResponse(status: 400, text: "unknown setting \(name)\n")
                }
            } else {
                return HTTPResponse(status: 400, text: "bad value for \(name)\n")
            }
        }
        return HTTPResponse(status: 200, text: "ok\n")
    }
}

/// A small deterministic generator (splitmix64) so a seeded run repeats.
struct SimRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    mutating func chance(_ rate: Double) -> Bool { rate > 0 && unit() < rate }

    /// A standard normal sample (Box-Muller).
    mutating func gaussian() -> Double {
        let u = max(unit(), 1e-12)
        let v = unit()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}

/// A weak reference a Sendable closure may hold (set once before use).
final class WeakBox<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
}
