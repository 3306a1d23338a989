public import KamiProtocol

/// Builders for the storefront requests, for `KamiConnection.send` and `pipeline`. Each
/// has id `.none`: connections put their own ids on the wire and give the caller's back.
extension Request {
    /// `hello`: authenticates a TCP connection.
    public static func hello(client: String, token: String) -> Request {
        var request = Request(id: .none, op: .hello)
        request.client = client
        request.token = token
        return request
    }

    /// `ping`: an empty round trip.
    public static func ping() -> Request {
        Request(id: .none, op: .ping)
    }

    /// `reserve`: holds `qty` codes of `sku` for the unpaid `order`, for `ttlMs` (nil:
    /// kamid's default hold). `ip` and `device` feed kamid's risk gate.
    public static func reserve(
        order: String, user: String, sku: String, qty: Int, ttlMs: Int64? = nil, ip: String? = nil,
        device: String? = nil
    ) -> Request {
        var request = Request(id: .none, op: .reserve)
        request.order = order
        request.user = user
        request.sku = sku
        request.qty = qty
        request.ttlMs = ttlMs
        request.ip = ip
        request.device = device
        return request
    }

    /// `commit`: `order` is paid; its reply carries the codes' secrets.
    public static func commit(order: String, paymentRef: String) -> Request {
        var request = Request(id: .none, op: .commit)
        request.order = order
        request.paymentRef = paymentRef
        return request
    }

    /// `issue`: reserve and commit at once, for an order already paid.
    public static func issue(
        order: String, user: String, sku: String, qty: Int, paymentRef: String, ip: String? = nil,
        device: String? = nil
    ) -> Request {
        var request = Request(id: .none, op: .issue)
        request.order = order
        request.user = user
        request.sku = sku
        request.qty = qty
        request.paymentRef = paymentRef
        request.ip = ip
        request.device = device
        return request
    }

    /// `release`: gives the codes `order` holds back.
    public static func release(order: String) -> Request {
        var request = Request(id: .none, op: .release)
        request.order = order
        return request
    }

    /// `order`: the order in its current state (with its codes once committed).
    public static func lookUp(order: String, user: String, ip: String? = nil) -> Request {
        var request = Request(id: .none, op: .order)
        request.order = order
        request.user = user
        request.ip = ip
        return request
    }

    /// `entitlements`: everything `user` owns.
    public static func entitlements(user: String) -> Request {
        var request = Request(id: .none, op: .entitlements)
        request.user = user
        return request
    }

    /// `stock`: the counters of `sku`.
    public static func stock(sku: String) -> Request {
        var request = Request(id: .none, op: .stock)
        request.sku = sku
        return request
    }
}
