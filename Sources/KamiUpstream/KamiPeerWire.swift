import KamiCore
public import KamiProtocol

/// kamid as another kamid's supplier (`style = kami`): the upstream kamid's storefront
/// protocol in JSON lines. `merchant_id` is the client name in `hello` and the user orders
/// are placed for; `credentials_file` holds that client's token. A place is an `issue` with
/// our order id as its order id (the upstream's idempotency key: a resend returns the same
/// codes) and `wait_ms`, so a delivery comes back in the reply; a query is `order`.
public enum KamiPeerWire {
    /// The `hello` line that opens every connection.
    public static func hello(client: String, token: [UInt8]) -> [UInt8] {
        var request = Request(id: .number(0), op: .hello)
        request.client = client
        request.token = String(decoding: token, as: UTF8.self)
        var out: [UInt8] = []
        try? JSONCodec.encode(request, into: &out)
        return out
    }

    /// nil when the hello reply accepts us, else why not.
    public static func checkHello(_ line: [UInt8]) -> String? {
        let reply = decode(line, op: .hello)
        switch reply?.result {
        case .success?: return nil
        case .failure(let error)?: return "\(error.code.rawValue): \(error.message)"
        case nil: return "not a kamid hello reply"
        }
    }

    /// The request line for `call` (nil for what another kamid has no operation for).
    public static func request(_ call: SupplierWire.Call, merchant: String, waitMs: Int64) -> [UInt8]? {
        var request: Request
        switch call {
        case .place(let order):
            request = Request(id: .number(1), op: .issue)
            request.order = order.customerOrderNo
            request.user = order.account ?? merchant
            request.sku = order.productID
            request.qty = order.quantity
            request.paymentRef = "upstream:\(order.customerOrderNo)"
            request.waitMs = waitMs
        case .query(let number):
            request = Request(id: .number(1), op: .order)
            request.order = number
        case .products, .balance:
            return nil
        }
        var out: [UInt8] = []
        do { try JSONCodec.encode(request, into: &out) } catch { return nil }
        return out
    }

    static func decode(_ line: [UInt8], op: Operation) -> Reply? {
        let framed = line + [10]
        return framed.withUnsafeBytes { raw -> Reply? in
            if case .item(let reply, _) = JSONCodec.decodeReply(raw, op: op) { return reply }
            return nil
        }
    }

    /// What the upstream kamid's reply says about the order.
    public static func parse(_ line: [UInt8], isPlace: Bool, customerOrderNo: String) -> SupplierReply {
        guard let reply = decode(line, op: isPlace ? .issue : .order) else { return .unknown("not a kamid reply") }
        switch reply.result {
        case .success(.order(let order)):
            guard order.order == customerOrderNo else { return .unknown("the reply names another order") }
            switch order.state {
            case .known(.committed):
                let items = order.codes.compactMap { code -> WireItem? in
                    guard let secret = code.secret else { return nil }
                    return WireItem(secret: secret.reveal(), cardNumber: code.cardNumber)
                }
                guard items.count == order.codes.count else { return .unknown("a delivered code without its secret") }
                return .delivered(ref: order.order, items: items)
            case .known(.pendingUpstream): return .processing(ref: order.order)
            case .known(.failed): return .failed(code: "upstream_failed", message: "the upstream kamid could not fulfil it")
            case .known(.refunded): return .failed(code: "refunded", message: "the upstream kamid refunded it")
            default: return .unknown("the upstream order is \(order.state)")
            }
        case .success:
            return .unknown("not an order reply")
        case .failure(let error):
            switch error.code {
            case .notFound: return isPlace ? .failed(code: "NOT_FOUND", message: error.message) : .notFound
            case .soldOut, .limitReached, .badRequest, .tooLarge:
                return isPlace ? .failed(code: error.code.rawValue, message: error.message) : .unknown(error.message)
            case .unauthorized: return .failed(code: "http_401", message: error.message)
            default: return .unknown("\(error.code.rawValue): \(error.message)")
            }
        }
    }
}
