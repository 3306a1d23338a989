import KamiCore
import KamiEngine
import KamiProtocol

/// The mapping between engine answers and wire messages, in one place: a new field of an
/// order or a code is added here and in the codecs, nowhere else.
enum WireMapping {
    /// The money a `reserve` or `issue` is placed with: `amount_cents` and the labels.
    static func terms(_ request: Request) -> OrderTerms {
        OrderTerms(
            amountCents: request.amountCents,
            labels: OrderLabels.make(currency: request.currency, channel: request.channel, campaign: request.campaign,
                                     coupon: request.coupon, distributor: request.distributor))
    }

    /// An import or export in progress.
    static func wire(_ job: JobProgress, nowMs: Int64) -> JSONValue {
        .object([
            ("kind", .string(job.kind)), ("sku", .string(job.sku)), ("rows", .int(Int64(job.rows))),
            ("file_bytes", job.fileBytes.map { .int($0) } ?? .null),
            ("elapsed_ms", .int(max(0, nowMs - job.startedAtMs))),
        ])
    }

    /// An order; a hold lists its codes without secrets, a committed order its codes with them.
    static func wire(_ reply: OrderReply) -> WireOrder {
        let codes: [WireCode] = reply.codes.isEmpty
            ? (reply.state == .reserved ? reply.codeIDs.map { WireCode(codeID: $0, sku: reply.skuKey) } : [])
            : reply.codes.map {
                WireCode(codeID: $0.codeID, sku: $0.skuKey, secret: $0.secret, cardNumber: $0.cardNumber,
                         activationURL: $0.activationURL)
            }
        return WireOrder(
            order: reply.orderID, state: .known(reply.state), sku: reply.skuKey, qty: reply.units, expiresAtMs: reply.expiresAtMs,
            codes: codes)
    }

    /// One code a user owns, with what the buyer's page shows of it.
    static func wire(_ item: Entitlement) -> WireCode {
        var code = WireCode(
            codeID: item.codeID, sku: item.skuKey, secret: item.secret, cardNumber: item.cardNumber,
            activationURL: item.activationURL, state: .known(item.state), order: item.orderID)
        code.status = item.status.rawValue
        code.skuName = item.skuName
        code.usageGuide = item.usageGuide
        code.expiresAtMs = item.expiresAtMs
        code.orderedAtMs = item.orderedAtMs
        code.usedAtMs = item.usedAtMs
        return code
    }

    /// The codes an activation names, each used (no secret: the brand identifies a code by
    /// its id and card number).
    static func wire(_ reply: ActivationReply) -> [WireCode] {
        reply.items.map { item in
            var code = WireCode(codeID: item.codeID, sku: reply.skuKey, cardNumber: item.cardNumber, state: .used,
                                order: reply.orderID)
            code.status = "used"
            code.usedAtMs = item.usedAtMs
            code.skuName = reply.skuName
            code.usageGuide = reply.usageGuide
            code.orderedAtMs = reply.orderedAtMs
            code.expiresAtMs = item.expiresAtMs
            return code
        }
    }
}
