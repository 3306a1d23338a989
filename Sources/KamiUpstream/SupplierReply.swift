/// One item as a supplier sends it: a card key, maybe a card number and an expiry.
public struct WireItem: Sendable, Hashable {
    public var secret: String
    public var cardNumber: String?
    public var expiresAtMs: Int64?

    public init(secret: String, cardNumber: String? = nil, expiresAtMs: Int64? = nil) {
        self.secret = secret
        self.cardNumber = cardNumber
        self.expiresAtMs = expiresAtMs
    }
}

/// What a supplier said about one order (to a place, a query, or in a callback). Only
/// `failed` proves nothing was sold; anything the adapter cannot read for certain is
/// `unknown`, resolved by a query, never taken as a failure.
public enum SupplierReply: Sendable, Hashable {
    /// Sold and delivered.
    case delivered(ref: String?, items: [WireItem])
    /// Accepted; the result comes later (a callback, or a query).
    case processing(ref: String?)
    /// Part delivered (`delivered` of the quantity); the rest comes later.
    case partial(ref: String?, delivered: Int)
    /// Refused, and nothing was sold: the next candidate may be tried.
    case failed(code: String, message: String)
    /// The supplier has no order under this number (a query).
    case notFound
    /// Cannot tell: the outcome must be found out.
    case unknown(String)

    /// A one-line summary for logs and the attempt's record (never a secret).
    public var summary: String {
        switch self {
        case .delivered(let ref, let items): "delivered \(items.count) item(s)" + (ref.map { " ref \($0)" } ?? "")
        case .processing(let ref): "processing" + (ref.map { " ref \($0)" } ?? "")
        case .partial(_, let delivered): "partial: \(delivered) delivered"
        case .failed(let code, let message): "failed \(code): \(message.prefix(200))"
        case .notFound: "not found"
        case .unknown(let why): "unknown: \(why.prefix(200))"
        }
    }
}

/// A product in a supplier's list: its price to us and its stock (nil: not said).
public struct SupplierProduct: Sendable, Hashable {
    public var productID: String
    public var priceCents: Int64
    public var stock: Int?

    public init(productID: String, priceCents: Int64, stock: Int?) {
        self.productID = productID
        self.priceCents = priceCents
        self.stock = stock
    }
}

/// An order as we place it at a supplier.
public struct PlaceOrder: Sendable, Hashable {
    /// Our order id: the supplier's customer order number, the same on every resend.
    public var customerOrderNo: String
    public var productID: String
    public var quantity: Int
    /// Where the supplier sends its callback.
    public var notifyURL: String?
    /// A direct top-up's target account (the buyer's user id at the storefront).
    public var account: String?

    public init(customerOrderNo: String, productID: String, quantity: Int, notifyURL: String? = nil, account: String? = nil) {
        self.customerOrderNo = customerOrderNo
        self.productID = productID
        self.quantity = quantity
        self.notifyURL = notifyURL
        self.account = account
    }
}
