import KamiCore
import KamiCrypto
public import KamiProtocol

/// kamid as another kamid's supplier (`style = kami`): the upstream kamid's storefront
/// protocol in JSON lines. `merchant_id` is the client name in `hello` and the user orders
/// are placed for; `credentials_file` holds that client's token. A place is an `issue` with
/// our order id as its order id (the upstream's idempotency key: a resend returns the same
/// codes) and `wait_ms`, so a delivery comes back in the reply; a query is `order`.
public enum KamiPeerWire {
    /// The order id used at the upstream kamid: ours in our merchant's namespace, so two
    /// shops on one upstream never share an order id (hashed when it would pass the
    /// upstream's 64-byte limit).
    public static func upstreamOrderID(_ customerOrderNo: String, merchant: String) -> String {
        let plain = "\(merchant).\(customerOrderNo)"
        if plain.utf8.count <= Limits.orderIDBytesMax { return plain }
        return "h." + Hex.encode(SHA256.hash(Array(plain.utf8)).prefix(30))
    }

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
            request.order = upstreamOrderID(order.customerOrderNo, merchant: merchant)
            // The merchant is the buyer at the other kamid: it owns the order there, and
            // names itself when it looks the order up (an order is shown only to its owner).
            request.user = merchant
            request.sku = order.productID
            request.qty = order.quantity
            request.paymentRef = "upstream:\(order.customerOrderNo)"
            request.waitMs = waitMs
        case .query(let number):
            request = Request(id: .number(1), op: .order)
            request.order = upstreamOrderID(number, merchant: merchant)
            request.user = merchant
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
    /// `firstSend`: whether this is the first place of the order at this upstream (a refusal
    /// of a resend may only mean its arguments changed since the first created the order).
    public static func parse(
        _ line: [UInt8], isPlace: Bool, customerOrderNo: String, merchant: String = "upstream", firstSend: Bool = true
    ) -> SupplierReply {
        guard let reply = decode(line, op: isPlace ? .issue : .order) else { return .unknown("not a kamid reply") }
        switch reply.result {
        case .success(.order(let order)):
            guard order.order == upstreamOrderID(customerOrderNo, merchant: merchant) else {
                return .unknown("the reply names another order")
            }
            switch order.state {
            case .known(.committed):
                let items = order.codes.compactMap { code -> WireItem? in
                    guard let secret = code.secret else { return nil }
                    return WireItem(secret: secret.reveal(), cardNumber: code.cardNumber)
                }
                guard items.count == order.codes.count else { return .unknown("a delivered code without its secret") }
                return .delivered(ref: order.order, items: items)
            case .known(.pendingUpstream): return .processing(ref: order.order)
            // In the upstream's dead-letter list its operator may still retry it: not final.
            case .known(.failed): return .unknown("the upstream kamid could not fulfil it yet (its dead-letter list)")
            case .known(.refunded): return .failed(code: "refunded", message: "the upstream kamid refunded it")
            default: return .unknown("the upstream order is \(order.state)")
            }
        case .success:
            return .unknown("not an order reply")
        case .failure(let error):
            switch error.code {
            case .notFound:
                if !isPlace { return .notFound }
                return firstSend ? .failed(code: "NOT_FOUND", message: error.message) : .unknown(error.message)
            case .soldOut, .limitReached:
                // Only a new order is refused so: nothing exists under this number upstream.
                return isPlace ? .failed(code: error.code.rawValue, message: error.message) : .unknown(error.message)
            case .badRequest, .tooLarge:
                return isPlace && firstSend ? .failed(code: error.code.rawValue, message: error.message) : .unknown(error.message)
            case .unauthorized: return .failed(code: "http_401", message: error.message)
            default: return .unknown("\(error.code.rawValue): \(error.message)")
            }
        }
    }
}
