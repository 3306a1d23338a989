public import KamiCore
import KamiPool
import Synchronization

/// One code revealed to its owner.
public struct IssuedCode: Sendable, Hashable {
    public var codeID: CodeID
    /// Key of the SKU the code belongs to (a component's key for a bundle).
    public var skuKey: String
    /// The plaintext; prints as `<redacted>`.
    public var secret: Secret
    public var cardNumber: String?
    /// The SKU's activation link, its placeholders filled in and percent-encoded (see
    /// `ActivationTemplate`); set when the reply is made, where the order is known.
    public var activationURL: String?
    public var expiresAtMs: Int64?
    /// What the code cost the shop (for the ledger; never sent to a storefront).
    public var costCents: Int64? = nil
    /// The code's SKU's activation template, expanded into `activationURL` by the reply.
    var activationTemplate: String? = nil
}

/// The answer to an order operation or query.
public struct OrderReply: Sendable, Hashable {
    public var orderID: String
    public var user: String
    public var skuKey: String
    public var units: Int
    public var state: OrderState
    public var paymentRef: String?
    /// Codes held (reserved) or owned (committed), without secrets.
    public var codeIDs: [CodeID]
    /// When the hold expires (reserved orders), Unix ms.
    public var expiresAtMs: Int64
    /// The secrets, present when the order is committed and secrets were asked for.
    public var codes: [IssuedCode]
}

/// Counts of one SKU's codes by state, and what can still be sold.
public struct StockReply: Sendable, Hashable {
    public var skuKey: String
    /// Units that can be reserved now (for a bundle: complete bundles).
    public var available: Int
    public var reserved: Int
    /// Sold and not activated.
    public var issued: Int
    public var voided: Int
    public var imported: Int
    /// Sold and activated (`activate`).
    public var used: Int = 0
}

/// One code a user owns, for "my codes".
public struct Entitlement: Sendable, Hashable {
    /// What the buyer's page shows: 待发货 pending (paid, no code yet), delivered, used,
    /// expired (the code's own expiry passed unused), refunded, voided (replaced or withdrawn).
    public enum Status: String, Sendable, Hashable, CaseIterable {
        case pending, delivered, used, expired, refunded, voided
    }

    public var orderID: String
    public var skuKey: String
    /// 0 for a pending order (no code yet).
    public var codeID: CodeID
    public var state: CodeState
    public var activationURL: String?
    /// Present when asked for and the code is issued or used (not voided).
    public var secret: Secret?
    public var cardNumber: String?
    public var status: Status = .delivered
    public var skuName: String = ""
    /// How to use it (the SKU's usage guide).
    public var usageGuide: String?
    /// The code's own expiry, Unix ms.
    public var expiresAtMs: Int64?
    /// When the order was placed, Unix ms (the list is newest first).
    public var orderedAtMs: Int64 = 0
    /// When it was activated, Unix ms.
    public var usedAtMs: Int64?
}

/// One page of a user's entitlements.
public struct EntitlementsPage: Sendable, Hashable {
    /// The codes, newest order first.
    public var items: [Entitlement]
    /// Where the next page starts, or nil when this is the last.
    public var nextCursor: String?
}

/// Where a page of entitlements starts: the order (by sequence number, newest first) and
/// the index of the code in it. On the wire, `<seq>.<index>`; only what kamid gave is read.
struct EntitlementCursor: Sendable, Hashable {
    var seq: OrderSeq
    var index: Int

    init(seq: OrderSeq, index: Int) {
        self.seq = seq
        self.index = index
    }

    init(_ text: String) throws(KamiError) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard text.utf8.count <= 40, parts.count == 2, let seq = OrderSeq(parts[0]), let index = Int(parts[1]),
            seq > 0, index >= 0, index < Limits.codesPerOrderMax
        else { throw KamiError(.badRequest, "cursor is not one kamid gave (expected the next_cursor of a page)") }
        self.seq = seq
        self.index = index
    }

    var text: String { "\(seq).\(index)" }
}

/// What `void` did.
public struct VoidReport: Sendable, Hashable {
    public var voided: Int = 0
    /// Already voided before.
    public var alreadyVoided: Int = 0
    /// Held by an unpaid order (release it first, or let it expire, then void again).
    public var skippedReserved: Int = 0
}
