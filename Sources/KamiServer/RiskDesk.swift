import KamiCore
import KamiEngine
import KamiProtocol
import KamiRisk
import KamiStore
import Synchronization

/// Where the server meets the risk gate: it turns requests into signals, asks the gate,
/// keeps the gate's hold counts in step with the orders, guards lookups of secrets, and
/// writes decisions and reveals to the audit chain. The gate decides; this only carries.
final class RiskDesk: Sendable {
    let gate: RiskGate
    let lookups: LookupGuard
    private let engine: Engine
    private let logger: Logger?
    /// Audit entries for decisions that created nothing (denies, challenges) and for
    /// reveals, per second at most: a flood of denials must not become a flood of writes.
    /// What is over is counted, and the count written with the next entry that fits.
    static let auditPerSecondMax = 200
    private let auditWindow = Locked<(second: Int64, written: Int, skipped: Int)>((0, 0, 0))
    /// Secrets revealed through `order` and `entitlements`, for metrics.
    let reveals = Atomic<Int>(0)
    let lookupsRefused = Atomic<Int>(0)

    init(engine: Engine, gate: RiskGate, lookups: LookupGuard, logger: Logger?) {
        self.engine = engine
        self.gate = gate
        self.lookups = lookups
        self.logger = logger
    }

    /// The signals of a storefront request.
    static func signals(_ request: Request, event: String) -> RiskSignals {
        var signals = RiskSignals(event: event)
        signals.user = request.user
        signals.ip = request.ip
        signals.device = request.device
        signals.sku = request.sku
        signals.units = request.qty ?? (request.op == .risk ? nil : 1)
        signals.amountCents = request.amountCents
        signals.paymentAccount = request.paymentAccount
        signals.accountAgeDays = request.accountAgeDays
        signals.phoneVerified = request.phoneVerified
        signals.challengeToken = request.challengeToken
        return signals
    }

    /// Runs an order (`reserve`, `issue`) through the gate. Returns the verdict; a deny or
    /// challenge has been logged and audited.
    ///
    /// An allowed `reserve` counts as a hold at once, before it is durable: a storefront
    /// that pipelines a thousand reserves must meet the holds rules on the first ones, not
    /// after their commits. `failed` takes it back when the reserve does not happen.
    ///
    /// An order id kamid already has is a repeat (a retry after a lost reply) or a conflict:
    /// the engine answers it as it stands, so it is not screened or counted again.
    func screen(_ request: Request, client: String?) -> (verdict: RiskVerdict, placedHold: Bool) {
        if let order = request.order, engine.upstream.hasOrder(order) { return (.allowed, false) }
        let signals = RiskDesk.signals(request, event: request.op.name)
        let now = engine.nowMs
        let evaluation = gate.evaluate(signals, nowMs: now)
        note(evaluation, signals: signals, subject: "order:\(request.order ?? "")", client: client)
        var placedHold = false
        if request.op == .reserve && (evaluation.verdict.decision == .allow || evaluation.verdict.decision == .review),
           let order = request.order {
            // The engine refuses a TTL outside its range; clamped here so the deadline never
            // overflows whatever the client sent.
            let limits = engine.holdTTL
            var ttl = min(max(request.ttlMs.flatMap { $0 == 0 ? nil : $0 } ?? limits.defaultMs, Limits.holdTTLMsMin), limits.maxMs)
            if evaluation.verdict.decision == .review { ttl = engine.reviewTTLMs(sku: request.sku) }
            placedHold = gate.holdPlaced(order: order, signals, deadlineMs: now + ttl)
        }
        return (evaluation.verdict, placedHold)
    }

    /// Whether an order may be tried without the gate first: its SKU's pool looks empty, so it
    /// will most likely be SOLD_OUT, which takes nothing and needs no screening (in a flash
    /// sale, most requests). The engine checks again as it takes (`unscreened`): an order that
    /// finds a code after all, or would go to a supplier or an operator, comes back and is
    /// screened. So a SOLD_OUT answer is never screened nor counted by the gate's counters;
    /// everything that could take a code always is.
    func skipsSoldOut(_ request: Request) -> Bool {
        // With no rules the gate costs nothing to ask: the look at the pool is not worth it.
        guard gate.hasRules, let sku = request.sku, request.order != nil, request.user != nil else { return false }
        return engine.storefront.looksSoldOut(sku: sku)
    }

    /// The `risk` op: any storefront event. Review means nothing outside an order, so it is
    /// answered as a challenge.
    func decide(_ request: Request, client: String?) throws(KamiError) -> RiskVerdict {
        guard let event = request.event, (1...64).contains(event.utf8.count),
              event.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0)) })
        else { throw KamiError(.badRequest, "event must be 1 to 64 letters, digits, '_', '-' or '.'") }
        let signals = RiskDesk.signals(request, event: event)
        var evaluation = gate.evaluate(signals, nowMs: engine.nowMs)
        if evaluation.verdict.decision == .review {
            evaluation.verdict.decision = .challenge
            evaluation.verdict.challenge = gate.challenge(for: signals, nowMs: engine.nowMs)
        }
        note(evaluation, signals: signals, subject: "event:\(event)", client: client)
        return evaluation.verdict
    }

    /// `kamictl risk test`: the verdict without counting anything.
    func test(_ request: Request) -> (RiskVerdict, [String]) {
        let signals = RiskDesk.signals(request, event: request.event ?? "issue")
        let evaluation = gate.evaluate(signals, nowMs: engine.nowMs, dryRun: true)
        return (evaluation.verdict, evaluation.shadowRules)
    }

    /// The error a deny or challenge answers with.
    static func refusal(_ verdict: RiskVerdict) -> KamiError {
        switch verdict.decision {
        case .challenge:
            KamiError(.challenge, "the risk gate wants a challenge passed first (\(verdict.reason)); retry with its challenge_token",
                      verdict: verdict)
        default:
            KamiError(.denied, "the risk gate denied this (\(verdict.reason); rules \(verdict.rules.joined(separator: ",")))",
                      verdict: verdict)
        }
    }

    private func note(_ evaluation: RiskEvaluation, signals: RiskSignals, subject: @autoclosure () -> String, client: String?) {
        if !evaluation.shadowRules.isEmpty {
            logger?.log(.info, "risk-shadow", pairs: [
                ("event", signals.event), ("rules", evaluation.shadowRules.joined(separator: ",")),
                ("decided", evaluation.verdict.decision.rawValue),
            ])
        }
        let verdict = evaluation.verdict
        guard verdict.decision == .deny || verdict.decision == .challenge else { return }
        logger?.log(.info, "risk-\(verdict.decision.rawValue)", pairs: [
            ("event", signals.event), ("reason", verdict.reason), ("rules", verdict.rules.joined(separator: ",")),
            ("score", String(verdict.score)),
        ])
        audit(AuditEvent("risk-\(verdict.decision.rawValue)", subject: subject(),
                         detail: "\(verdict) \(RiskDesk.who(signals))" + EngineCoreClient.field(client)))
    }

    /// `user=… ip=… device=…` of the signals present (never a token or a payment account
    /// in full: the account is a fingerprint the storefront made, shown as is).
    static func who(_ signals: RiskSignals) -> String {
        var parts: [String] = []
        if let user = signals.user { parts.append("user=\(user)") }
        if let ip = signals.ip { parts.append("ip=\(ip)") }
        if let device = signals.device { parts.append("device=\(device)") }
        if let payment = signals.paymentAccount { parts.append("payment=\(payment)") }
        return parts.joined(separator: " ")
    }

    /// Writes an audit-only entry, within `auditPerSecondMax`; the reply never waits for it.
    func audit(_ event: AuditEvent) {
        let second = engine.nowMs / 1_000
        let skipped: Int? = auditWindow.withLock { window in
            if window.second != second { window = (second, 0, window.skipped) }
            guard window.written < RiskDesk.auditPerSecondMax else {
                window.skipped += 1
                return nil
            }
            window.written += 1
            let skipped = window.skipped
            window.skipped = 0
            return skipped
        }
        guard let skipped else { return }
        var entry = event
        if skipped > 0 { entry.detail += " unaudited_before=\(skipped)" }
        engine.storage.writer.submit(.audit(entry)) { [logger] result in
            if case .failure(let error) = result {
                logger?.log(.warning, "risk-audit-failed", ["error": error.message])
            }
        }
    }

    // MARK: holds

    /// After a reserve: a hold this request placed that did not happen (refused, or a
    /// repeat answered with an order already paid) no longer counts. A repeat that placed
    /// nothing (the order was counted already) never ends the first one's count.
    func reserved(_ request: Request, _ result: Result<OrderReply, KamiError>, placedHold: Bool) {
        guard placedHold, let order = request.order else { return }
        switch result {
        case .success(let reply) where reply.state == .reserved || reply.state == .review: break
        default: gate.holdEnded(order: order)
        }
    }

    func ended(order: String) { gate.holdEnded(order: order) }

    /// A counted hold's deadline moved (a review approved unpaid).
    func rescheduled(order: String, deadlineMs: Int64) { gate.holdRescheduled(order: order, deadlineMs: deadlineMs) }

    // MARK: lookups

    /// Checks a storefront's `order` lookup: the owner must be named, and a user or IP that
    /// failed too many lookups is slowed down. A wrong owner is NOT_FOUND, the same as an
    /// unknown order, and counts as a failure.
    /// `activate` from a storefront: by `token` (a brand's page), or by `order` and the `user`
    /// who owns it (the operator may leave the user out). A forged or unknown token, an
    /// unknown order and another user's order count as failed lookups per user and IP, like
    /// `order`, so that activation cannot be used to probe for orders or tokens.
    func activate(_ request: Request, client: String?, trusted: Bool,
                  done: @escaping @Sendable (Result<ActivationReply, KamiError>) -> Void) throws(KamiError) {
        let now = engine.nowMs
        let user = request.user
        guard trusted || lookups.allows(user: user, ip: request.ip, nowMs: now) else {
            lookupsRefused.add(1, ordering: .relaxed)
            throw KamiError(.limitReached, "too many failed lookups for this user or IP; wait a minute")
        }
        let lookups = self.lookups
        let counted: @Sendable (Result<ActivationReply, KamiError>) -> Void = { result in
            if !trusted, case .failure(let error) = result, error.code == .notFound {
                lookups.failed(user: user, ip: request.ip, nowMs: now)
            }
            done(result)
        }
        if let token = request.token {
            guard request.order == nil else { throw KamiError(.badRequest, "activate takes token or order, not both") }
            return engine.storefront.activate(token: token, client: client, completion: counted)
        }
        let orderID = try need(request.order, "order")
        guard trusted || user != nil else {
            throw KamiError(.badRequest, "missing field user: a storefront activates an order for the user it belongs to")
        }
        // code_id 0 (or none) is every code of the order, in both encodings.
        engine.storefront.activate(order: orderID, user: user, codeIDs: request.codeID.flatMap { $0 == 0 ? nil : [$0] } ?? [], client: client,
                                   completion: counted)
    }

    func lookUp(_ request: Request, client: String?) throws(KamiError) -> OrderReply {
        let (reply, user) = try owned(request)
        revealed(reply.codes.map(\.codeID), user: user, ip: request.ip, subject: "order:\(reply.orderID)", client: client)
        return reply
    }

    /// The order `request` names, when `request.user` owns it: the owner must be named, a
    /// user or IP past its failed lookups is refused first, and an unknown order or another
    /// user's (NOT_FOUND, the same answer) counts as a failure.
    private func owned(_ request: Request) throws(KamiError) -> (OrderReply, user: String) {
        let orderID = try need(request.order, "order")
        guard let user = request.user else {
            throw KamiError(.badRequest, "missing field user: an order is shown only to the user it belongs to")
        }
        let now = engine.nowMs
        guard lookups.allows(user: user, ip: request.ip, nowMs: now) else {
            lookupsRefused.add(1, ordering: .relaxed)
            throw KamiError(.limitReached, "too many failed order lookups for this user or IP; wait a minute")
        }
        let reply: OrderReply
        do throws(KamiError) { reply = try engine.queries.order(orderID) } catch {
            if error.code == .notFound { lookups.failed(user: user, ip: request.ip, nowMs: now) }
            throw error
        }
        guard reply.user == user else {
            lookups.failed(user: user, ip: request.ip, nowMs: now)
            throw KamiError(.notFound, "no order \(orderID)")
        }
        return (reply, user)
    }

    /// A storefront's `wait`: like `order`, only for the order's own user (the answer can
    /// carry secrets), and a wrong user counts as a failed lookup.
    func wait(_ request: Request, client: String?, done: @escaping OrderCompletion) throws(KamiError) {
        // Checked before waiting: a stranger never waits on someone else's order.
        let (owner, user) = try owned(request)
        let orderID = owner.orderID
        engine.storefront.wait(order: orderID, timeoutMs: try need(request.waitMs, "wait_ms")) { [self] result in
            if case .success(let reply) = result {
                revealed(reply.codes.map(\.codeID), user: user, ip: request.ip, subject: "order:\(orderID)", client: client)
            }
            done(result)
        }
    }

    /// Counts and audits secrets shown to `user`.
    func revealed(_ codes: [CodeID], user: String, ip: String?, subject: String, client: String?) {
        guard !codes.isEmpty else { return }
        reveals.add(codes.count, ordering: .relaxed)
        audit(AuditEvent("reveal", subject: subject,
                         detail: "user=\(user)" + (ip.map { " ip=\($0)" } ?? "") + " codes=\(codes.map(String.init).joined(separator: ","))"
                            + EngineCoreClient.field(client)))
    }

    /// Counts the unpaid holds kamid recovered into the gate's holds rules (at start). An
    /// order keeps its user and SKU, not the buyer's IP or device: rules keyed by those
    /// alone count from zero after a restart (the holds themselves last minutes).
    /// Returns how many holds were counted.
    @discardableResult
    func rebuildHolds() -> Int {
        let keys = Dictionary(engine.queries.skus().map { ($0.id, $0.key) }, uniquingKeysWith: { first, _ in first })
        var counted = 0
        for order in engine.unpaidHolds() {
            var signals = RiskSignals(event: "reserve")
            signals.user = order.user
            signals.sku = keys[order.sku]
            signals.units = order.units
            if gate.holdPlaced(order: order.orderID, signals, deadlineMs: order.expiresAtMs) { counted += 1 }
        }
        return counted
    }

    // MARK: lists

    /// The database's entries into the gate (at start and after every change).
    func refreshLists() throws(KamiError) {
        let rows = try engine.storage.riskLists()
        var entries: [ListEntry] = []
        for row in rows {
            guard let kind = ListEntry.Kind(rawValue: row.kind), let entry = try? ListEntry(list: row.list, kind: kind, value: row.value)
            else { continue }
            entries.append(entry)
        }
        gate.setStoredEntries(entries)
    }

    /// `risk_block` / `risk_unblock`: durable, audited, in force when it returns.
    func setList(_ request: Request, add: Bool) throws(KamiError) -> [(String, JSONValue)] {
        let list = request.list ?? (request.op == .riskBlock || request.op == .riskUnblock ? "block" : "")
        guard let kindName = request.kind, let kind = ListEntry.Kind(rawValue: kindName == "payment_account" ? "payment" : kindName) else {
            throw KamiError(.badRequest, "kind must be user, ip, device or payment")
        }
        let entry = try ListEntry(list: list, kind: kind, value: try need(request.value, "value"))
        let row = RiskListRow(list: entry.list, kind: entry.kind.rawValue, value: entry.value, note: request.name ?? "")
        let event = AuditEvent(add ? "risk-list-add" : "risk-list-remove", subject: "risk-list:\(entry.list)",
                               detail: "\(entry.kind.rawValue)=\(entry.value)" + (row.note.isEmpty ? "" : " note=\(row.note)"))
        let box = ResultBox<MutationOutcome>()
        engine.storage.writer.submit(.writeRiskList(row, add: add, audit: event)) { box.set($0) }
        if case .failure(let error) = box.wait() { throw error }
        try refreshLists()
        logger?.log(.notice, add ? "risk-list-add" : "risk-list-remove", pairs: [
            ("list", entry.list), ("kind", entry.kind.rawValue), ("value", entry.value),
        ])
        return [("list", .string(entry.list)), ("kind", .string(entry.kind.rawValue)), ("value", .string(entry.value)),
                (add ? "added" : "removed", .bool(true))]
    }

    /// `risk_list`: the database's entries, the rules file's, and the rules with their figures.
    func listing() throws(KamiError) -> [(String, JSONValue)] {
        let rows = try engine.storage.riskLists()
        let rules = gate.rules
        return [
            ("entries", .array(rows.map { row in
                .object([("list", .string(row.list)), ("kind", .string(row.kind)), ("value", .string(row.value)),
                         ("note", .string(row.note)), ("added_at_ms", .int(row.addedAtMs)), ("source", .string("database"))])
            } + rules.entries.map { entry in
                .object([("list", .string(entry.list)), ("kind", .string(entry.kind.rawValue)), ("value", .string(entry.value)),
                         ("note", .string("")), ("added_at_ms", .null), ("source", .string("rules file"))])
            })),
            ("rules", .array(gate.ruleFigures.map { figure in
                .object([("name", .string(figure.name)), ("kind", .string(figure.kind)), ("shadow", .bool(figure.shadow)),
                         ("fired", .int(Int64(figure.fired))), ("shadow_fired", .int(Int64(figure.shadowFired)))])
            })),
            ("thresholds", .object([("challenge", .int(Int64(rules.thresholds.challenge))),
                                    ("review", .int(Int64(rules.thresholds.review))), ("deny", .int(Int64(rules.thresholds.deny)))])),
            ("memory_bytes", .int(Int64(gate.memoryBytes + lookups.memoryBytes))),
        ]
    }
}

/// The `client=` field of audit details, as the engine writes it.
enum EngineCoreClient {
    static func field(_ client: String?) -> String { client.map { " client=\($0)" } ?? "" }
}
