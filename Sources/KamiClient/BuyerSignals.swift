public import KamiProtocol

/// What the storefront knows about the buyer beyond user, IP and device, for kamid's risk
/// gate. Every field is optional; rules that need a missing one do not fire.
public struct BuyerSignals: Sendable, Hashable {
    /// The order's amount in minor units.
    public var amountCents: Int64?
    /// A fingerprint of the payment account (never a card number).
    public var paymentAccount: String?
    /// The storefront account's age in days.
    public var accountAgeDays: Int64?
    /// Whether the account has a verified phone.
    public var phoneVerified: Bool?
    /// The token of a challenge the buyer passed (from a CHALLENGE_REQUIRED verdict).
    public var challengeToken: String?

    public init(amountCents: Int64? = nil, paymentAccount: String? = nil, accountAgeDays: Int64? = nil,
                phoneVerified: Bool? = nil, challengeToken: String? = nil) {
        self.amountCents = amountCents
        self.paymentAccount = paymentAccount
        self.accountAgeDays = accountAgeDays
        self.phoneVerified = phoneVerified
        self.challengeToken = challengeToken
    }

    /// Sets the request's signal fields.
    public func apply(to request: inout Request) {
        request.amountCents = amountCents
        request.paymentAccount = paymentAccount
        request.accountAgeDays = accountAgeDays
        request.phoneVerified = phoneVerified
        request.challengeToken = challengeToken
    }
}
