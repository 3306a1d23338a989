import Foundation
public import KamiHTTP

/// The supplier's side of the generic API, for simulators and tests: read a request, answer
/// it, send a callback. Each style's encoding is the mirror of `SupplierWire.request` and
/// `SupplierWire.parse`.
extension SupplierWire {
    /// How a supplier refuses a request before selling anything.
    public enum Refusal: Error, Sendable, Hashable {
        case badSignature, staleTimestamp, malformed(String), outOfStock, noBalance, unknownProduct, notFound
    }

    /// What the supplier's side says about an order.
    public struct OrderView: Sendable, Hashable {
        public var customerOrderNo: String
        public var supplierRef: String
        public var state: State
        public var items: [WireItem]
        public var quantity: Int
        public var failCode: String
        public var message: String

        public enum State: Sendable, Hashable { case succeeded, failed, processing, partial(Int), unknown }

        public init(customerOrderNo: String, supplierRef: String, state: State, items: [WireItem] = [], quantity: Int,
                    failCode: String = "", message: String = "") {
            self.customerOrderNo = customerOrderNo
            self.supplierRef = supplierRef
            self.state = state
            self.items = items
            self.quantity = quantity
            self.failCode = failCode
            self.message = message
        }
    }

    /// Reads and checks a request as the supplier (signature with `key`, timestamp window).
    public static func decode(
        _ request: HTTPRequest, style: SupplierStyle, key: [UInt8], digest: SignDigest, nowSeconds: Int64
    ) -> Result<Call, Refusal> {
        let window = windowSeconds(style)
        switch style {
        case .form, .kami:
            guard let form = HTTPForm.decode(request.bodyText) else { return .failure(.malformed("form body")) }
            guard let sign = form["sign"], sameSignature(sign, formSign(form, key: key, digest: digest)) else {
                return .failure(.badSignature)
            }
            guard let stamp = form["timestamp"].flatMap({ Int64($0) }), abs(stamp - nowSeconds) <= window else {
                return .failure(.staleTimestamp)
            }
            switch request.path.split(separator: "/").last.map(String.init) ?? "" {
            case "place":
                guard let number = form["customer_order_no"], let product = form["product_id"],
                      let quantity = form["quantity"].flatMap({ Int($0) }), quantity > 0 else {
                    return .failure(.malformed("place needs customer_order_no, product_id, quantity"))
                }
                return .success(.place(PlaceOrder(customerOrderNo: number, productID: product, quantity: quantity,
                                                  notifyURL: form["notify_url"], account: form["account"])))
            case "query":
                guard let number = form["customer_order_no"] else { return .failure(.malformed("query needs customer_order_no")) }
                return .success(.query(customerOrderNo: number))
            case "products": return .success(.products)
            case "balance": return .success(.balance)
            default: return .failure(.malformed("unknown path \(request.path)"))
            }
        case .gateway:
            guard let object = object(request.body) else { return .failure(.malformed("JSON body")) }
            var parameters: [String: String] = [:]
            for (name, value) in object { if let text = string(value) { parameters[name] = text } }
            guard let sign = parameters["sign"], sameSignature(sign, gatewaySign(parameters, key: key, digest: digest)) else {
                return .failure(.badSignature)
            }
            guard let stamp = parameters["timestamp"].flatMap(gatewaySeconds), abs(stamp - nowSeconds) <= window else {
                return .failure(.staleTimestamp)
            }
            let biz = parameters["biz_content"].flatMap { SupplierWire.object(Array($0.utf8)) } ?? [:]
            switch parameters["method"] ?? "" {
            case "kami.order.add":
                guard let number = string(biz["customer_order_no"]), let product = string(biz["product_id"]),
                      let quantity = int(biz["buy_num"]), quantity > 0 else {
                    return .failure(.malformed("kami.order.add needs customer_order_no, product_id, buy_num"))
                }
                return .success(.place(PlaceOrder(customerOrderNo: number, productID: product, quantity: Int(quantity),
                                                  notifyURL: string(biz["notify_url"]), account: string(biz["charge_account"]))))
            case "kami.order.get":
                guard let number = string(biz["customer_order_no"]) else { return .failure(.malformed("customer_order_no")) }
                return .success(.query(customerOrderNo: number))
            case "kami.goods.list": return .success(.products)
            case "kami.balance.get": return .success(.balance)
            default: return .failure(.malformed("unknown method"))
            }
        case .hmac:
            guard let timestamp = request.headers["x-timestamp"], let signature = request.headers["x-signature"],
                  sameSignature(signature, hmacSign(method: request.method, path: request.path, timestamp: timestamp,
                                                    body: request.body, key: key)) else {
                return .failure(.badSignature)
            }
            guard let stamp = Int64(timestamp), abs(stamp - nowSeconds) <= window else { return .failure(.staleTimestamp) }
            let parts = request.path.split(separator: "/").map(String.init)
            if request.method == "POST", parts.last == "orders" {
                guard let object = object(request.body), let number = string(object["customer_order_no"]),
                      let product = string(object["product_id"]), let quantity = int(object["quantity"]), quantity > 0 else {
                    return .failure(.malformed("order needs customer_order_no, product_id, quantity"))
                }
                return .success(.place(PlaceOrder(customerOrderNo: number, productID: product, quantity: Int(quantity),
                                                  notifyURL: string(object["notify_url"]), account: string(object["account"]))))
            }
            if request.method == "GET", parts.count >= 2, parts[parts.count - 2] == "orders",
               let number = HTTPForm.unpercent(Substring(parts[parts.count - 1])) {
                return .success(.query(customerOrderNo: number))
            }
            if request.method == "GET", parts.last == "products" { return .success(.products) }
            if request.method == "GET", parts.last == "balance" { return .success(.balance) }
            return .failure(.malformed("unknown path \(request.path)"))
        }
    }

    /// The response refusing a request.
    public static func encode(_ refusal: Refusal, style: SupplierStyle) -> HTTPResponse {
        let (form, gateway, hmacCode, status, message): (Int, Int, String, Int, String) = switch refusal {
        case .badSignature: (4001, 1001, "bad_signature", 401, "bad signature")
        case .staleTimestamp: (4002, 1002, "stale_timestamp", 401, "timestamp outside the window")
        case .malformed(let what): (4003, 1003, "malformed", 400, "malformed: \(what)")
        case .outOfStock: (2001, 3001, "out_of_stock", 409, "out of stock")
        case .noBalance: (2002, 3002, "insufficient_balance", 409, "insufficient balance")
        case .unknownProduct: (2003, 3003, "unknown_product", 422, "no such product")
        case .notFound: (1001, 2001, "not_found", 404, "order not found")
        }
        switch style {
        case .form, .kami:
            return HTTPResponse(status: 200, headers: jsonHeaders, body: json(["code": form, "message": message]))
        case .gateway:
            return HTTPResponse(status: 200, headers: jsonHeaders, body: json(["code": gateway, "message": message]))
        case .hmac:
            return HTTPResponse(status: status, headers: jsonHeaders,
                                body: json(["error": ["code": hmacCode, "message": message, "sold": false] as [String: Any]]))
        }
    }

    static var jsonHeaders: HTTPHeaders { HTTPHeaders([("Content-Type", "application/json")]) }

    /// The order as a reply body object in `style` (place, query and callbacks share it).
    static func orderObject(_ view: OrderView, style: SupplierStyle) -> [String: Any] {
        switch style {
        case .form, .kami:
            var object: [String: Any] = ["code": 0, "message": "ok", "order_no": view.supplierRef,
                                         "customer_order_no": view.customerOrderNo]
            switch view.state {
            case .succeeded:
                object["status"] = 1
                object["delivered"] = view.items.count
                object["cards"] = view.items.map { item -> [String: Any] in
                    var card: [String: Any] = ["secret": item.secret]
                    if let number = item.cardNumber { card["no"] = number }
                    if let expires = item.expiresAtMs { card["expires_ms"] = expires }
                    return card
                }
            case .failed:
                object["status"] = 2
                object["fail_code"] = view.failCode
                object["message"] = view.message
            case .partial(let delivered):
                object["status"] = 3
                object["delivered"] = delivered
            case .processing: object["status"] = 4
            case .unknown: object["status"] = 0
            }
            return object
        case .gateway:
            var result: [String: Any] = ["order_id": view.supplierRef, "customer_order_no": view.customerOrderNo,
                                         "buy_num": view.quantity]
            switch view.state {
            case .succeeded:
                result["order_state"] = "success"
                result["cards"] = view.items.map { item -> [String: Any] in
                    var card: [String: Any] = ["card_pwd": item.secret]
                    if let number = item.cardNumber { card["card_number"] = number }
                    if let expires = item.expiresAtMs { card["card_deadline_ms"] = expires }
                    return card
                }
            case .failed:
                result["order_state"] = "failed"
                result["fail_code"] = view.failCode
                result["message"] = view.message
            case .processing, .partial: result["order_state"] = "processing"
            case .unknown: result["order_state"] = "untreated"
            }
            return result
        case .hmac:
            var object: [String: Any] = ["order_id": view.supplierRef, "customer_order_no": view.customerOrderNo,
                                         "quantity": view.quantity]
            switch view.state {
            case .succeeded:
                object["status"] = "succeeded"
                object["items"] = view.items.map { item -> [String: Any] in
                    var entry: [String: Any] = ["code": item.secret]
                    if let number = item.cardNumber { entry["serial"] = number }
                    if let expires = item.expiresAtMs { entry["expires_at_ms"] = expires }
                    return entry
                }
            case .failed:
                object["status"] = "failed"
                object["error"] = ["code": view.failCode, "message": view.message]
            case .partial(let delivered):
                object["status"] = "partial"
                object["delivered"] = delivered
            case .processing: object["status"] = "processing"
            case .unknown: object["status"] = "unknown"
            }
            return object
        }
    }

    /// The response carrying an order.
    public static func encode(_ view: OrderView, style: SupplierStyle) -> HTTPResponse {
        let object = orderObject(view, style: style)
        if style == .gateway {
            return HTTPResponse(status: 200, headers: jsonHeaders, body: json(["code": 0, "message": "success", "result": jsonText(object)]))
        }
        return HTTPResponse(status: 200, headers: jsonHeaders, body: json(object))
    }

    /// The response listing products (and, for balance, the balance).
    public static func encode(products: [SupplierProduct], balanceCents: Int64, style: SupplierStyle) -> HTTPResponse {
        var object: [String: Any] = ["balance_cents": balanceCents, "products": products.map { product -> [String: Any] in
            var entry: [String: Any] = ["product_id": product.productID, "price_cents": product.priceCents]
            if let stock = product.stock { entry["stock"] = stock }
            return entry
        }]
        if style == .gateway {
            return HTTPResponse(status: 200, headers: jsonHeaders, body: json(["code": 0, "message": "success", "result": jsonText(object)]))
        }
        if style != .hmac { object["code"] = 0 }
        return HTTPResponse(status: 200, headers: jsonHeaders, body: json(object))
    }

    /// The callback a supplier sends about `view`, signed with `key`, to `notify`'s path.
    public static func callback(
        _ view: OrderView, style: SupplierStyle, notify: HTTPURL, merchantID: String, key: [UInt8], digest: SignDigest,
        nowSeconds: Int64
    ) -> HTTPRequest {
        let object = orderObject(view, style: style)
        switch style {
        case .form, .kami:
            var form: [String: String] = ["merchant_id": merchantID, "timestamp": String(nowSeconds)]
            for (name, value) in object where name != "code" {
                if name == "cards" { form[name] = jsonText(value) } else if let text = string(value) { form[name] = text }
            }
            form["sign"] = formSign(form, key: key, digest: digest)
            return HTTPRequest(method: "POST", target: notify.target,
                               headers: HTTPHeaders([("Content-Type", "application/x-www-form-urlencoded")]),
                               body: Array(HTTPForm.encode(form).utf8))
        case .gateway:
            var parameters = ["app_key": merchantID, "method": "kami.order.notify", "timestamp": gatewayTime(nowSeconds),
                              "sign_type": digest.rawValue, "biz_content": jsonText(object)]
            parameters["sign"] = gatewaySign(parameters, key: key, digest: digest)
            return HTTPRequest(method: "POST", target: notify.target, headers: jsonHeaders, body: json(parameters))
        case .hmac:
            let body = json(object)
            let timestamp = String(nowSeconds)
            return HTTPRequest(method: "POST", target: notify.target, headers: HTTPHeaders([
                ("Content-Type", "application/json"), ("X-Timestamp", timestamp),
                ("X-Signature", hmacSign(method: "POST", path: notify.path, timestamp: timestamp, body: body, key: key)),
            ]), body: body)
        }
    }
}

extension HTTPURL {
    /// The target's path without the query.
    public var path: String {
        guard let mark = target.firstIndex(of: "?") else { return target }
        return String(target[..<mark])
    }
}
