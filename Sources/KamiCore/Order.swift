/// One code held by an order: its id and the SKU it belongs to (a bundle order holds codes of
/// several SKUs).
public struct OrderCode: Sendable, Hashable {
    /// The code.
    public var codeID: CodeID
    /// The real (non-bundle) SKU of the code.
    public var sku: SkuID

    /// Makes an entry.
    public init(codeID: CodeID, sku: SkuID) {
        self.codeID = codeID
        self.sku = sku
    }
}

/// An order as the engine and the journal know it. The storefront's `orderID` is the
/// idempotency key; `seq` is the internal id.
public struct Order: Sendable, Hashable {
    public var seq: OrderSeq
    public var orderID: String
    public var user: String
    /// The SKU ordered (possibly a bundle).
    public var sku: SkuID
    /// Units of `sku` ordered.
    public var units: Int
    public var state: OrderState
    /// Set once committed.
    public var paymentRef: String?
    /// The codes held (reserved or issued); kept after release/expiry/refund for the record.
    public var codes: [OrderCode]
    /// The hold's TTL as asked (0 for an `issue`).
    public var ttlMs: Int64
    /// When the hold expires (0 for an `issue`).
    public var expiresAtMs: Int64
    public var createdAtMs: Int64
    public var updatedAtMs: Int64

    /// Makes an order.
    public init(
        seq: OrderSeq, orderID: String, user: String, sku: SkuID, units: Int, state: OrderState,
        paymentRef: String?, codes: [OrderCode], ttlMs: Int64, expiresAtMs: Int64, createdAtMs: Int64,
        updatedAtMs: Int64
    ) {
        self.seq = seq
        self.orderID = orderID
        self.user = user
        self.sku = sku
        self.units = units
        self.state = state
        self.paymentRef = paymentRef
        self.codes = codes
        self.ttlMs = ttlMs
        self.expiresAtMs = expiresAtMs
        self.createdAtMs = createdAtMs
        self.updatedAtMs = updatedAtMs
    }
}

extension Order {
    /// Moves the order to `next` at `atMs`. A move that is not in `OrderState.moves` is a
    /// programmer error (the engine checks the state before it decides): it traps, naming
    /// the order and both states.
    public mutating func move(to next: OrderState, atMs: Int64) {
        precondition(state.canMove(to: next), "order \(orderID) (seq \(seq)) cannot go from \(state) to \(next)")
        state = next
        updatedAtMs = atMs
    }

    /// The order after `move(to:atMs:)`.
    public func moved(to next: OrderState, atMs: Int64) -> Order {
        var copy = self
        copy.move(to: next, atMs: atMs)
        return copy
    }
}

/// A source of wall-clock time in Unix milliseconds, so tests can drive time by hand.
public protocol Clock: Sendable {
    /// Milliseconds since the Unix epoch.
    func nowMs() -> Int64
}
