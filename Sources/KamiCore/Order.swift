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
    /// What the buyer pays for the whole order after discounts, minor units (`amount_cents`,
    /// else the SKU's price × units when placed); nil for an order placed before kamid
    /// recorded money (schema 7).
    public var amountCents: Int64?
    /// The order's currency, channel, campaign, coupon and distributor, when any was given.
    public var labels: OrderLabels?
    /// What a campaign or coupon took off its list price (0 without one).
    public var subsidyCents: Int64 = 0

    /// Makes an order.
    public init(
        seq: OrderSeq, orderID: String, user: String, sku: SkuID, units: Int, state: OrderState,
        paymentRef: String?, codes: [OrderCode], ttlMs: Int64, expiresAtMs: Int64, createdAtMs: Int64,
        updatedAtMs: Int64, amountCents: Int64? = nil, labels: OrderLabels? = nil
    ) {
        self.amountCents = amountCents
        self.labels = labels
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

/// The money an order is placed with (`reserve`, `issue`): the amount paid and its labels.
public struct OrderTerms: Sendable, Hashable {
    /// What the buyer pays for the whole order after discounts; nil: the SKU's price × units.
    public var amountCents: Int64?
    public var labels: OrderLabels?

    public init(amountCents: Int64? = nil, labels: OrderLabels? = nil) {
        self.amountCents = amountCents
        self.labels = labels
    }

    /// No amount and no labels: the SKU's price, the shop's currency.
    public static let none = OrderTerms()

    /// The order's amount: the one given (never negative), else price × units (refused when
    /// it overflows `Int64`).
    public func amount(priceCents: Int64, units: Int) throws(KamiError) -> Int64 {
        if let amountCents {
            guard amountCents >= 0 else { throw KamiError(.badRequest, "amount_cents must not be negative, got \(amountCents)") }
            guard amountCents <= Limits.amountCentsMax else {
                throw KamiError(.badRequest, "amount_cents \(amountCents) is over the limit of \(Limits.amountCentsMax)")
            }
            return amountCents
        }
        let (total, overflow) = priceCents.multipliedReportingOverflow(by: Int64(units))
        guard !overflow, total >= 0, total <= Limits.amountCentsMax else {
            throw KamiError(.badRequest, "price \(priceCents) × \(units) units overflows the amount; give amount_cents")
        }
        return total
    }

    /// Whether an existing order was placed with these terms (a repeat may leave the amount
    /// or the labels out; what it gives must match).
    public func matches(_ order: Order) -> Bool {
        if let amountCents, let stored = order.amountCents, amountCents != stored { return false }
        if let labels, labels != (order.labels ?? OrderLabels(currency: nil, channel: nil, campaign: nil, coupon: nil,
                                                             distributor: nil)) { return false }
        return true
    }
}

/// Where an order's money came from and went: shared by reference (most orders have none,
/// and an order in memory should stay small), never changed after the order is placed.
public final class OrderLabels: Sendable, Hashable, CustomStringConvertible {
    /// ISO 4217 code; nil is the shop's currency.
    public let currency: String?
    /// The storefront, app or marketplace the order came from.
    public let channel: String?
    public let campaign: String?
    public let coupon: String?
    /// The referrer of a 分销 sale.
    public let distributor: String?

    /// Labels, or nil when none is given.
    public static func make(currency: String?, channel: String?, campaign: String?, coupon: String?,
                            distributor: String?) -> OrderLabels? {
        guard currency != nil || channel != nil || campaign != nil || coupon != nil || distributor != nil else { return nil }
        return OrderLabels(currency: currency, channel: channel, campaign: campaign, coupon: coupon, distributor: distributor)
    }

    public init(currency: String?, channel: String?, campaign: String?, coupon: String?, distributor: String?) {
        self.currency = currency
        self.channel = channel
        self.campaign = campaign
        self.coupon = coupon
        self.distributor = distributor
    }

    /// Refuses a label that is empty, over 64 bytes or holds control characters, and a
    /// currency that is not three capital letters; the error names the field.
    public func validate() throws(KamiError) {
        for (name, value) in [("channel", channel), ("campaign", campaign), ("coupon", coupon), ("distributor", distributor)] {
            guard let value else { continue }
            guard !value.isEmpty, value.utf8.count <= Limits.labelBytesMax, !value.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F })
            else {
                throw KamiError(.badRequest, "\(name) must be 1...\(Limits.labelBytesMax) bytes of text")
            }
        }
        if let currency, currency.utf8.count != 3 || !currency.utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }) {
            throw KamiError(.badRequest, "currency must be three capital letters (ISO 4217, such as CNY), got \(currency)")
        }
    }

    public var description: String {
        [("currency", currency), ("channel", channel), ("campaign", campaign), ("coupon", coupon), ("distributor", distributor)]
            .compactMap { name, value in value.map { "\(name)=\($0)" } }.joined(separator: " ")
    }

    public static func == (a: OrderLabels, b: OrderLabels) -> Bool {
        a.currency == b.currency && a.channel == b.channel && a.campaign == b.campaign && a.coupon == b.coupon
            && a.distributor == b.distributor
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(currency)
        hasher.combine(channel)
        hasher.combine(campaign)
        hasher.combine(coupon)
        hasher.combine(distributor)
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
