/// Where a SKU's codes come from.
public enum SourcePolicy: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// The local pool only (the default).
    case pool = 0
    /// Mapped upstream suppliers only.
    case upstream = 1
    /// The pool while it has stock, then suppliers.
    case poolThenUpstream = 2

    public var description: String {
        switch self {
        case .pool: "pool"
        case .upstream: "upstream"
        case .poolThenUpstream: "pool_then_upstream"
        }
    }

    /// Parses `description`.
    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = match
    }
}

/// How the candidates of an upstream order are ranked.
public enum RoutingStrategy: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Lowest cost first (ties: priority).
    case cheapest = 0
    /// Lowest p95 latency of the recent attempts first.
    case fastest = 1
    /// The operator's priority (lower first).
    case priority = 2
    /// Random by weight, scaled by recent success rate.
    case weighted = 3

    public var description: String {
        switch self {
        case .cheapest: "cheapest"
        case .fastest: "fastest"
        case .priority: "priority"
        case .weighted: "weighted"
        }
    }

    /// Parses `description`.
    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = match
    }
}

/// What happens to an order when no supplier may fulfil it (all paused, broken, or over the
/// margin guard).
public enum NoCandidatePolicy: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// The order fails at once with the reason (dead-letter list).
    case fail = 0
    /// The order waits (re-routed on a schedule) until a candidate appears or it times out.
    case wait = 1

    public var description: String { self == .fail ? "fail" : "wait" }

    /// Parses `description`.
    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = match
    }
}

/// A SKU's sourcing: catalog data in the database, set by the operator.
public struct SkuSourcing: Sendable, Hashable {
    public var sku: SkuID
    public var policy: SourcePolicy
    public var strategy: RoutingStrategy
    /// The margin guard: no supplier whose cost exceeds price - this is used.
    public var minMarginCents: Int64
    public var noCandidate: NoCandidatePolicy
    /// Buy ahead into the pool when available stock falls under this (0: never).
    public var lowWater: Int
    /// Codes bought per buy-ahead.
    public var buyAheadUnits: Int
    /// Most spent on buy-ahead per UTC day, minor units.
    public var buyAheadBudgetCents: Int64

    /// Makes a sourcing; defaults are pool-only with no guard beyond cost <= price.
    public init(
        sku: SkuID, policy: SourcePolicy = .pool, strategy: RoutingStrategy = .cheapest, minMarginCents: Int64 = 0,
        noCandidate: NoCandidatePolicy = .fail, lowWater: Int = 0, buyAheadUnits: Int = 0, buyAheadBudgetCents: Int64 = 0
    ) {
        self.sku = sku
        self.policy = policy
        self.strategy = strategy
        self.minMarginCents = minMarginCents
        self.noCandidate = noCandidate
        self.lowWater = lowWater
        self.buyAheadUnits = buyAheadUnits
        self.buyAheadBudgetCents = buyAheadBudgetCents
    }
}

/// One supplier that can fulfil one SKU: its product there, what it costs, and how the
/// operator ranks it.
public struct SupplierMapping: Sendable, Hashable {
    public var sku: SkuID
    /// The supplier's id in the config.
    public var supplier: String
    /// The SKU's product id at the supplier.
    public var productID: String
    /// Cost per unit, minor units (updated by sync).
    public var costCents: Int64
    /// Lower is preferred (`priority` strategy, and ties).
    public var priority: Int
    /// Relative weight for the `weighted` strategy.
    public var weight: Int
    /// Stock the supplier last reported (nil: unknown).
    public var stock: Int?
    public var updatedAtMs: Int64

    /// Makes a mapping.
    public init(sku: SkuID, supplier: String, productID: String, costCents: Int64, priority: Int = 0, weight: Int = 1,
                stock: Int? = nil, updatedAtMs: Int64 = 0) {
        self.sku = sku
        self.supplier = supplier
        self.productID = productID
        self.costCents = costCents
        self.priority = priority
        self.weight = weight
        self.stock = stock
        self.updatedAtMs = updatedAtMs
    }
}

/// Where one upstream attempt stands. An attempt is one supplier's handling of one order
/// under one customer order number (our order id): resending it is the same attempt, so the
/// supplier's own idempotency on that number prevents a second sale.
///
/// `placing` is written before the request leaves; `unknown` means the request may have
/// reached the supplier (timeout, dropped connection, a state the supplier calls unknown)
/// and must be resolved by a query before anything else is bought for the order.
public enum AttemptState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case placing = 0
    case processing = 1
    case unknown = 2
    case succeeded = 3
    /// The supplier refused, or proved it did not sell: the next candidate may be tried.
    case failed = 4

    /// Every legal move, as (from, to).
    public static let moves: Set<Move> = [
        Move(.placing, .processing), Move(.placing, .unknown), Move(.placing, .succeeded), Move(.placing, .failed),
        Move(.processing, .unknown), Move(.processing, .succeeded), Move(.processing, .failed),
        Move(.unknown, .processing), Move(.unknown, .succeeded), Move(.unknown, .failed), Move(.unknown, .placing),
        Move(.processing, .processing), Move(.unknown, .unknown), Move(.failed, .placing),
        // A supplier that delivers after kamid took an answer as proof of no sale: the
        // purchase is recorded as it happened (verify then reports the order bought twice).
        Move(.failed, .succeeded),
    ]

    /// One move between two states.
    public struct Move: Sendable, Hashable {
        public let from: AttemptState
        public let to: AttemptState
        public init(_ from: AttemptState, _ to: AttemptState) {
            self.from = from
            self.to = to
        }
    }

    /// Whether the move is legal.
    public func canMove(to next: AttemptState) -> Bool { AttemptState.moves.contains(Move(self, next)) }

    /// Whether the outcome is settled (no more requests for this attempt).
    public var isFinal: Bool { self == .succeeded || self == .failed }

    /// Whether the supplier may have sold (or may yet sell) on this attempt.
    public var mayHaveSold: Bool { self != .failed }

    public var description: String {
        switch self {
        case .placing: "placing"
        case .processing: "processing"
        case .unknown: "unknown"
        case .succeeded: "succeeded"
        case .failed: "failed"
        }
    }

    /// Parses `description`.
    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = match
    }
}

/// One order at one supplier, as journaled.
public struct UpstreamAttempt: Sendable, Hashable {
    public var orderSeq: OrderSeq
    public var supplier: String
    /// How many times the request was sent (the first is 1); always the same customer number.
    public var sends: Int
    /// The number the supplier knows the order by (our order id).
    public var customerOrderNo: String
    public var state: AttemptState
    /// The supplier's own order number, once known.
    public var supplierRef: String?
    /// Cost per unit at the time of the attempt.
    public var costCents: Int64
    /// The last thing the supplier said (a code and message, never a secret).
    public var detail: String
    public var createdAtMs: Int64
    public var updatedAtMs: Int64

    /// Makes an attempt.
    public init(orderSeq: OrderSeq, supplier: String, sends: Int, customerOrderNo: String, state: AttemptState,
                supplierRef: String? = nil, costCents: Int64, detail: String = "", createdAtMs: Int64, updatedAtMs: Int64) {
        self.orderSeq = orderSeq
        self.supplier = supplier
        self.sends = sends
        self.customerOrderNo = customerOrderNo
        self.state = state
        self.supplierRef = supplierRef
        self.costCents = costCents
        self.detail = detail
        self.createdAtMs = createdAtMs
        self.updatedAtMs = updatedAtMs
    }

    /// The attempt moved to `next`; traps on an illegal move.
    public func moved(to next: AttemptState, detail: String, atMs: Int64) -> UpstreamAttempt {
        precondition(state.canMove(to: next), "attempt \(orderSeq)@\(supplier) cannot go from \(state) to \(next)")
        var copy = self
        copy.state = next
        copy.detail = detail
        copy.updatedAtMs = atMs
        return copy
    }
}

/// One purchase of codes into the pool (buy-ahead), as journaled. Its customer order
/// number is its own (`buyahead-SKU-N`), the same on every resend.
public struct BuyAhead: Sendable, Hashable {
    /// Row id (0 before the first write).
    public var id: Int64
    public var sku: SkuID
    public var supplier: String
    public var customerOrderNo: String
    public var units: Int
    /// Cost per unit.
    public var costCents: Int64
    /// How many times the place was sent (journaled before each send).
    public var sends: Int
    public var state: AttemptState
    public var detail: String
    public var createdAtMs: Int64
    public var updatedAtMs: Int64

    public init(id: Int64 = 0, sku: SkuID, supplier: String, customerOrderNo: String, units: Int, costCents: Int64,
                sends: Int = 1, state: AttemptState, detail: String = "", createdAtMs: Int64, updatedAtMs: Int64) {
        self.sends = sends
        self.id = id
        self.sku = sku
        self.supplier = supplier
        self.customerOrderNo = customerOrderNo
        self.units = units
        self.costCents = costCents
        self.state = state
        self.detail = detail
        self.createdAtMs = createdAtMs
        self.updatedAtMs = updatedAtMs
    }

    /// The purchase moved to `next`; traps on an illegal move.
    public func moved(to next: AttemptState, detail: String, atMs: Int64) -> BuyAhead {
        precondition(state.canMove(to: next), "buy-ahead \(customerOrderNo) cannot go from \(state) to \(next)")
        var copy = self
        copy.state = next
        copy.detail = detail
        copy.updatedAtMs = atMs
        return copy
    }
}

/// One item a supplier delivered for an order: a card key (secret, maybe a card number), or
/// for a direct top-up the supplier's receipt (no secret to reveal, kept as the code's text).
public struct DeliveredItem: Sendable, Hashable {
    public var secret: Secret
    public var cardNumber: String?
    public var expiresAtMs: Int64?

    public init(secret: Secret, cardNumber: String? = nil, expiresAtMs: Int64? = nil) {
        self.secret = secret
        self.cardNumber = cardNumber
        self.expiresAtMs = expiresAtMs
    }
}
