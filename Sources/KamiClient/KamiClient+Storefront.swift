public import KamiCore
public import KamiProtocol

/// The storefront operations, typed. Each sends one request with the retries described on
/// `KamiClient` and returns the successful reply's body, or throws kamid's error (code and
/// message as sent) or UNAVAILABLE for a transport failure that outlasted the retries.
extension KamiClient {
    /// Holds `qty` codes of `sku` for the unpaid `order` of `user`, for `ttlMs` (nil:
    /// kamid's default hold). The codes carry no secrets yet. SOLD_OUT, LIMIT_REACHED,
    /// CONFLICT (the order id exists with other arguments) are kamid's answers.
    public func reserve(
        order: String, user: String, sku: String, qty: Int, ttlMs: Int64? = nil, ip: String? = nil,
        device: String? = nil, signals: BuyerSignals = BuyerSignals()
    ) throws(KamiError) -> WireOrder {
        var request = Request.reserve(order: order, user: user, sku: sku, qty: qty, ttlMs: ttlMs, ip: ip, device: device)
        signals.apply(to: &request)
        return try send(request).wireOrder(.reserve)
    }

    /// Marks `order` paid and returns it committed, with the codes' secrets. A commit after
    /// the hold expired still delivers when stock remains (SOLD_OUT otherwise: refund).
    /// With `user`, kamid pays the order only if it is that user's (NOT_FOUND otherwise).
    public func commit(order: String, paymentRef: String, user: String? = nil) throws(KamiError) -> WireOrder {
        var request = Request.commit(order: order, paymentRef: paymentRef)
        request.user = user
        return try send(request).wireOrder(.commit)
    }

    /// Reserves and commits at once, for an order already paid; returns it with secrets.
    public func issue(
        order: String, user: String, sku: String, qty: Int, paymentRef: String, ip: String? = nil,
        device: String? = nil, signals: BuyerSignals = BuyerSignals()
    ) throws(KamiError) -> WireOrder {
        var request = Request.issue(order: order, user: user, sku: sku, qty: qty, paymentRef: paymentRef, ip: ip, device: device)
        signals.apply(to: &request)
        return try send(request).wireOrder(.issue)
    }

    /// Gives back the codes `order` holds; returns it released.
    public func release(order: String) throws(KamiError) -> WireOrder {
        try send(.release(order: order)).wireOrder(.release)
    }

    /// The order in its current state, with its codes (and secrets) once committed. `user`
    /// is the buyer asking: an order is shown only to the user it belongs to (another user
    /// gets NOT_FOUND); `ip` is the buyer's, for kamid's limit on failed lookups.
    public func order(_ order: String, user: String, ip: String? = nil) throws(KamiError) -> WireOrder {
        try send(.lookUp(order: order, user: user, ip: ip)).wireOrder(.order)
    }

    /// Asks the risk gate about a storefront event (`register`, `login`, `pay`, …):
    /// allow, challenge (show a captcha, then send the verdict's token back in
    /// `signals.challengeToken`) or deny, with the reason and the rules that fired.
    public func risk(
        event: String, user: String? = nil, ip: String? = nil, device: String? = nil, sku: String? = nil,
        signals: BuyerSignals = BuyerSignals()
    ) throws(KamiError) -> RiskVerdict {
        var request = Request(id: .none, op: .risk)
        request.event = event
        request.user = user
        request.ip = ip
        request.device = device
        request.sku = sku
        signals.apply(to: &request)
        return try send(request).verdict(.risk)
    }

    /// The first page of what `user` owns, newest first: each code with its state, owning
    /// order and activation link (at most the server's default page; see `entitlementsPage`).
    public func entitlements(user: String) throws(KamiError) -> [WireCode] {
        try send(.entitlements(user: user)).wireCodes(.entitlements).codes
    }

    /// One page of what `user` owns, newest first, and the cursor of the next page (nil on
    /// the last). `limit` nil is the server's default page size; the server caps it.
    public func entitlementsPage(
        user: String, limit: Int? = nil, cursor: String? = nil
    ) throws(KamiError) -> (codes: [WireCode], nextCursor: String?) {
        var request = Request.entitlements(user: user)
        request.limit = limit
        request.cursor = cursor
        return try send(request).wireCodes(.entitlements)
    }

    /// Marks codes of `order` used for its buyer `user` (every code of the order when `codeID`
    /// is nil); one line per code with its activation time. Activating again is not an error.
    public func activate(order: String, user: String, codeID: Int64? = nil, ip: String? = nil) throws(KamiError) -> [WireCode] {
        var request = Request(id: .none, op: .activate)
        request.order = order
        request.user = user
        request.codeID = codeID
        request.ip = ip
        return try send(request).wireCodes(.activate).codes
    }

    /// Marks used the code an activation token (`{token}` of an activation link) names: what
    /// a brand's page does with the token it was handed.
    public func activate(token: String, ip: String? = nil) throws(KamiError) -> [WireCode] {
        var request = Request(id: .none, op: .activate)
        request.token = token
        request.ip = ip
        return try send(request).wireCodes(.activate).codes
    }

    /// The stock counters of `sku`.
    public func stock(sku: String) throws(KamiError) -> WireStock {
        try send(.stock(sku: sku)).wireStock(.stock)
    }

    /// An empty round trip: returns when kamid answered, throws when it cannot be reached.
    public func ping() throws(KamiError) {
        try send(.ping()).empty(.ping)
    }
}
