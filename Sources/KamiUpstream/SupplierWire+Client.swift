import Foundation
import KamiCore
public import KamiHTTP

/// Who we are at a supplier and how we sign: our account id and the keys. Never printed.
public struct SupplierCredentials: Sendable, Hashable, CustomStringConvertible {
    public var merchantID: String
    public var key: [UInt8]
    /// The key callbacks are signed with (the signing key unless configured apart).
    public var callbackKey: [UInt8]
    public var digest: SignDigest

    public init(merchantID: String, key: [UInt8], callbackKey: [UInt8]? = nil, digest: SignDigest = .md5) {
        self.merchantID = merchantID
        self.key = key
        self.callbackKey = callbackKey ?? key
        self.digest = digest
    }

    public var description: String { "credentials(\(merchantID), <redacted>)" }
}

extension SupplierWire {
    /// The request for `call` in `style`, to the supplier at `base` (its path is the prefix).
    public static func request(
        _ call: Call, style: SupplierStyle, base: HTTPURL, credentials: SupplierCredentials, nowSeconds: Int64
    ) -> HTTPRequest {
        let prefix = base.target == "/" ? "" : base.target
        switch style {
        case .form, .kami:
            var parameters = ["merchant_id": credentials.merchantID, "timestamp": String(nowSeconds)]
            let path: String
            switch call {
            case .place(let order):
                path = "/order/place"
                parameters["product_id"] = order.productID
                parameters["quantity"] = String(order.quantity)
                parameters["customer_order_no"] = order.customerOrderNo
                if let notify = order.notifyURL { parameters["notify_url"] = notify }
                if let account = order.account { parameters["account"] = account }
            case .query(let number):
                path = "/order/query"
                parameters["customer_order_no"] = number
            case .products: path = "/products"
            case .balance: path = "/balance"
            }
            parameters["sign"] = formSign(parameters, key: credentials.key, digest: credentials.digest)
            return HTTPRequest(method: "POST", target: prefix + path,
                               headers: HTTPHeaders([("Content-Type", "application/x-www-form-urlencoded")]),
                               body: Array(HTTPForm.encode(parameters).utf8))
        case .gateway:
            let method: String
            var biz: [String: Any] = [:]
            switch call {
            case .place(let order):
                method = "kami.order.add"
                biz = ["customer_order_no": order.customerOrderNo, "product_id": order.productID, "buy_num": order.quantity]
                if let notify = order.notifyURL { biz["notify_url"] = notify }
                if let account = order.account { biz["charge_account"] = account }
            case .query(let number):
                method = "kami.order.get"
                biz = ["customer_order_no": number]
            case .products: method = "kami.goods.list"
            case .balance: method = "kami.balance.get"
            }
            var parameters = [
                "app_key": credentials.merchantID, "method": method, "timestamp": gatewayTime(nowSeconds), "version": "2.0",
                "format": "json", "charset": "utf-8", "sign_type": credentials.digest.rawValue, "biz_content": jsonText(biz),
            ]
            parameters["sign"] = gatewaySign(parameters, key: credentials.key, digest: credentials.digest)
            return HTTPRequest(method: "POST", target: base.target,
                               headers: HTTPHeaders([("Content-Type", "application/json")]), body: json(parameters))
        case .hmac:
            var method = "POST"
            var path = prefix + "/v1/orders"
            var body: [UInt8] = []
            switch call {
            case .place(let order):
                var object: [String: Any] = ["customer_order_no": order.customerOrderNo, "product_id": order.productID,
                                             "quantity": order.quantity]
                if let notify = order.notifyURL { object["notify_url"] = notify }
                if let account = order.account { object["account"] = account }
                body = json(object)
            case .query(let number):
                method = "GET"
                path = prefix + "/v1/orders/" + HTTPForm.percent(number)
            case .products:
                method = "GET"
                path = prefix + "/v1/products"
            case .balance:
                method = "GET"
                path = prefix + "/v1/balance"
            }
            let timestamp = String(nowSeconds)
            var headers = HTTPHeaders([
                ("X-Api-Key", credentials.merchantID), ("X-Timestamp", timestamp),
                ("X-Signature", hmacSign(method: method, path: path, timestamp: timestamp, body: body, key: credentials.key)),
            ])
            if !body.isEmpty { headers.add("Content-Type", "application/json") }
            return HTTPRequest(method: method, target: path, headers: headers, body: body)
        }
    }

    /// What a place or query response says. Anything not understood for certain is
    /// `.unknown` (a 5xx, a body that is not the shape, a state we do not know).
    public static func parse(
        _ response: HTTPResponse, style: SupplierStyle, quantity: Int, customerOrderNo: String? = nil
    ) -> SupplierReply {
        var named: String?
        let reply = parseBody(response, style: style, named: &named)
        // An answer about another order (a connection out of step, a confused proxy) says
        // nothing about this one.
        if let customerOrderNo, let named, named != customerOrderNo {
            return .unknown("the reply names another order")
        }
        return reply
    }

    /// Codes that refuse a request (signature, timestamp, malformed) rather than an order:
    /// proof of no sale only for the first send of a place.
    public static func isRequestRefusal(_ code: String) -> Bool {
        ["4001", "4002", "4003", "1001", "1002", "1003", "bad_signature", "stale_timestamp", "malformed",
         "http_400", "http_401", "http_403"].contains(code)
    }

    static func parseBody(_ response: HTTPResponse, style: SupplierStyle, named: inout String?) -> SupplierReply {
        switch style {
        case .form, .kami:
            guard response.status == 200, let object = object(response.body), let code = int(object["code"]) else {
                return .unknown("HTTP \(response.status): not a form-style reply")
            }
            named = string(object["customer_order_no"])
            guard code == 0 else { return formError(code, string(object["message"]) ?? "") }
            return formOrder(object)
        case .gateway:
            guard response.status == 200, let object = object(response.body), let code = int(object["code"]) else {
                return .unknown("HTTP \(response.status): not a gateway reply")
            }
            guard code == 0 else { return gatewayError(code, string(object["message"]) ?? "") }
            guard let resultText = string(object["result"]), let result = SupplierWire.object(Array(resultText.utf8)) else {
                return .unknown("gateway reply without a result")
            }
            named = string(result["customer_order_no"])
            return gatewayOrder(result)
        case .hmac:
            let object = object(response.body)
            named = string(object?["customer_order_no"])
            switch response.status {
            case 200, 201, 202:
                guard let object else { return .unknown("HTTP \(response.status) without a JSON body") }
                return hmacOrder(object)
            case 404:
                return .notFound
            case 400, 401, 403, 409, 422:
                let error = object?["error"] as? [String: Any]
                let code = string(error?["code"]) ?? "http_\(response.status)"
                // The supplier says whether it sold; a refusal that does not say is unknown.
                if let sold = error?["sold"] as? Bool, sold == false {
                    return .failed(code: code, message: string(error?["message"]) ?? "")
                }
                if response.status == 401 || response.status == 403 {
                    return .failed(code: code == "http_\(response.status)" ? code : code, message: string(error?["message"]) ?? "refused")
                }
                return .unknown("HTTP \(response.status) \(code)")
            default:
                return .unknown("HTTP \(response.status)")
            }
        }
    }

    /// A form-style error code: the ones that prove no sale are failures; others unknown.
    static func formError(_ code: Int64, _ message: String) -> SupplierReply {
        switch code {
        case 1001: .notFound
        case 2001, 2002, 2003, 4001, 4002: .failed(code: String(code), message: message)
        default: .unknown("code \(code): \(message.prefix(100))")
        }
    }

    static func formOrder(_ object: [String: Any]) -> SupplierReply {
        let ref = string(object["order_no"])
        switch int(object["status"]) {
        case 1:
            let cards = (object["cards"] as? [[String: Any]]) ?? (string(object["cards"]).flatMap { text in
                (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [[String: Any]] })
            // No cards: a direct top-up's success (the service decides what that means).
            guard let cards else { return .delivered(ref: ref, items: []) }
            let items = cards.compactMap { card -> WireItem? in
                guard let secret = string(card["secret"]), !secret.isEmpty else { return nil }
                return WireItem(secret: secret, cardNumber: string(card["no"]), expiresAtMs: int(card["expires_ms"]))
            }
            guard items.count == cards.count else { return .unknown("a card without a secret") }
            return .delivered(ref: ref, items: items)
        case 2: return .failed(code: string(object["fail_code"]) ?? "2", message: string(object["message"]) ?? "failed")
        case 3: return .partial(ref: ref, delivered: Int(int(object["delivered"]) ?? 0))
        case 4: return .processing(ref: ref)
        default: return .unknown("status \(string(object["status"]) ?? "missing")")
        }
    }

    static func gatewayError(_ code: Int64, _ message: String) -> SupplierReply {
        switch code {
        case 2001: .notFound
        case 1001, 1002, 3001, 3002, 3003: .failed(code: String(code), message: message)
        default: .unknown("code \(code): \(message.prefix(100))")
        }
    }

    static func gatewayOrder(_ result: [String: Any]) -> SupplierReply {
        let ref = string(result["order_id"])
        switch string(result["order_state"]) {
        case "success":
            guard let cards = result["cards"] as? [[String: Any]] else { return .delivered(ref: ref, items: []) }
            let items = cards.compactMap { card -> WireItem? in
                guard let secret = string(card["card_pwd"]), !secret.isEmpty else { return nil }
                return WireItem(secret: secret, cardNumber: string(card["card_number"]), expiresAtMs: int(card["card_deadline_ms"]))
            }
            guard items.count == cards.count else { return .unknown("a card without a password") }
            return .delivered(ref: ref, items: items)
        case "processing": return .processing(ref: ref)
        case "failed": return .failed(code: string(result["fail_code"]) ?? "failed", message: string(result["message"]) ?? "failed")
        case "untreated": return .unknown("the supplier says untreated")
        default: return .unknown("order_state \(string(result["order_state"]) ?? "missing")")
        }
    }

    static func hmacOrder(_ object: [String: Any]) -> SupplierReply {
        let ref = string(object["order_id"])
        switch string(object["status"]) {
        case "succeeded":
            guard let list = object["items"] as? [[String: Any]] else { return .delivered(ref: ref, items: []) }
            let items = list.compactMap { item -> WireItem? in
                guard let secret = string(item["code"]), !secret.isEmpty else { return nil }
                return WireItem(secret: secret, cardNumber: string(item["serial"]), expiresAtMs: int(item["expires_at_ms"]))
            }
            guard items.count == list.count else { return .unknown("an item without a code") }
            return .delivered(ref: ref, items: items)
        case "processing": return .processing(ref: ref)
        case "partial": return .partial(ref: ref, delivered: Int(int(object["delivered"]) ?? 0))
        case "failed":
            let error = object["error"] as? [String: Any]
            return .failed(code: string(error?["code"]) ?? "failed", message: string(error?["message"]) ?? "failed")
        default: return .unknown("status \(string(object["status"]) ?? "missing")")
        }
    }

    /// A products response: every product with its price and stock; nil when unreadable.
    public static func parseProducts(_ response: HTTPResponse, style: SupplierStyle) -> [SupplierProduct]? {
        guard response.status == 200, var object = object(response.body) else { return nil }
        if style == .gateway {
            guard int(object["code"]) == 0, let text = string(object["result"]), let result = SupplierWire.object(Array(text.utf8)) else { return nil }
            object = result
        } else if style != .hmac {
            guard int(object["code"]) == 0 else { return nil }
        }
        guard let list = object["products"] as? [[String: Any]] else { return nil }
        return list.compactMap { entry in
            // A price outside 0...costCentsMax is garbage, not a price (it would pass the margin
            // guard if negative, or overflow the books if huge).
            guard let id = string(entry["product_id"]), let price = int(entry["price_cents"]), price >= 0,
                  price <= Limits.costCentsMax else { return nil }
            return SupplierProduct(productID: id, priceCents: price, stock: int(entry["stock"]).map(Int.init))
        }
    }

    /// A balance response, minor units; nil when unreadable.
    public static func parseBalance(_ response: HTTPResponse, style: SupplierStyle) -> Int64? {
        guard response.status == 200, var object = object(response.body) else { return nil }
        if style == .gateway {
            guard let text = string(object["result"]), let result = SupplierWire.object(Array(text.utf8)) else { return nil }
            object = result
        }
        return int(object["balance_cents"])
    }

    // MARK: callbacks

    /// A callback that passed its checks: which order, what it says, and the key replays are
    /// recognised by.
    public struct Callback: Sendable, Hashable {
        public var customerOrderNo: String
        public var reply: SupplierReply
        public var replayKey: String
    }

    /// Checks a callback's signature and timestamp window and reads it; the error names what
    /// was wrong (never a secret).
    public static func verifyCallback(
        _ request: HTTPRequest, style: SupplierStyle, credentials: SupplierCredentials, nowSeconds: Int64
    ) -> Result<Callback, CallbackProblem> {
        let window = windowSeconds(style)
        switch style {
        case .form, .kami:
            guard let form = HTTPForm.decode(request.bodyText) ?? HTTPForm.decode(request.query) else {
                return .failure(CallbackProblem("malformed form body"))
            }
            guard let sign = form["sign"], sameSignature(sign, formSign(form, key: credentials.callbackKey, digest: credentials.digest)) else {
                return .failure(CallbackProblem("bad signature"))
            }
            guard let stamp = form["timestamp"].flatMap({ Int64($0) }), abs(stamp - nowSeconds) <= window else {
                return .failure(CallbackProblem("timestamp outside ±\(window) s"))
            }
            guard let number = form["customer_order_no"], !number.isEmpty else { return .failure(CallbackProblem("no customer_order_no")) }
            var object: [String: Any] = [:]
            for (key, value) in form { object[key] = value }
            return .success(Callback(customerOrderNo: number, reply: formOrder(object), replayKey: "form:" + sign.lowercased()))
        case .gateway:
            guard let object = object(request.body) else { return .failure(CallbackProblem("malformed JSON body")) }
            var parameters: [String: String] = [:]
            for (key, value) in object { if let text = string(value) { parameters[key] = text } }
            guard let sign = parameters["sign"],
                  sameSignature(sign, gatewaySign(parameters, key: credentials.callbackKey, digest: credentials.digest)) else {
                return .failure(CallbackProblem("bad signature"))
            }
            guard let stamp = parameters["timestamp"].flatMap(gatewaySeconds), abs(stamp - nowSeconds) <= window else {
                return .failure(CallbackProblem("timestamp outside ±\(window) s"))
            }
            guard let biz = parameters["biz_content"], let result = SupplierWire.object(Array(biz.utf8)),
                  let number = string(result["customer_order_no"]) else {
                return .failure(CallbackProblem("biz_content without customer_order_no"))
            }
            return .success(Callback(customerOrderNo: number, reply: gatewayOrder(result), replayKey: "gateway:" + sign.lowercased()))
        case .hmac:
            guard let timestamp = request.headers["x-timestamp"], let signature = request.headers["x-signature"] else {
                return .failure(CallbackProblem("missing X-Timestamp or X-Signature"))
            }
            let expected = hmacSign(method: request.method, path: request.path, timestamp: timestamp, body: request.body,
                                    key: credentials.callbackKey)
            guard sameSignature(signature, expected) else { return .failure(CallbackProblem("bad signature")) }
            guard let stamp = Int64(timestamp), abs(stamp - nowSeconds) <= window else {
                return .failure(CallbackProblem("timestamp outside ±\(window) s"))
            }
            guard let object = object(request.body), let number = string(object["customer_order_no"]) else {
                return .failure(CallbackProblem("body without customer_order_no"))
            }
            return .success(Callback(customerOrderNo: number, reply: hmacOrder(object), replayKey: "hmac:" + signature.lowercased()))
        }
    }

    /// The answer a supplier expects to a callback it may stop sending.
    public static func callbackAck(_ style: SupplierStyle) -> HTTPResponse {
        switch style {
        case .form, .kami: HTTPResponse(status: 200, text: "success")
        case .gateway: HTTPResponse(status: 200, text: "{\"code\":0,\"message\":\"success\"}", contentType: "application/json")
        case .hmac: HTTPResponse(status: 200, text: "{\"ok\":true}", contentType: "application/json")
        }
    }
}

/// Why a callback was refused.
public struct CallbackProblem: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
