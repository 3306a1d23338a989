public import KamiCore
public import KamiLedger
public import KamiStore
import KamiCSV
import KamiPool

/// The issuance engine: every operation of the brief over the in-memory pool and the durable
/// store, the one API the server calls. Its operations come in three rooms, one per purpose,
/// so that the modules built on it (suppliers, risk, money) call a room instead of growing
/// the engine:
///
/// - `storefront`: the order state machine (reserve, issue, commit, release, refund, expiry);
/// - `queries`: what an order, a user or a SKU holds, read without changing anything;
/// - `admin`: the operator's catalog, import, export, void and verification.
///
/// The engine itself owns the lifecycle (open, recover, stop) and the settings reload
/// changes. Everything behind the rooms is `EngineCore`, internal to this module.
public final class Engine: Sendable {
    let core: EngineCore

    /// Opens the store in `config.directory`, recovers everything, and starts expiring holds.
    public init(config: EngineConfig) throws(KamiError) {
        core = try EngineCore(config: config)
    }

    /// Orders: reserve, issue, commit, release, refund, and expiry of holds.
    public var storefront: Storefront { Storefront(core: core) }

    /// Reads: orders, entitlements, stock, the catalog.
    public var queries: Queries { Queries(core: core) }

    /// The operator's operations: catalog changes, imports, exports, voids, verification.
    public var admin: Admin { Admin(core: core) }

    /// Orders fulfilled by suppliers: sourcing, mappings, and what the upstream module
    /// journals about its attempts.
    public var upstream: Upstream { Upstream(core: core) }

    /// Makes a running import stop at its next chunk (rolled back: nothing of it is imported)
    /// and refuses new ones. Called at the start of a shutdown; `close` calls it too.
    public func cancelJobs() { core.cancelJobs() }

    /// Stops expiring holds, commits everything queued, closes the database.
    public func close() { core.close() }

    /// The store underneath (for tools, metrics and tests).
    public var storage: Store { core.storage }

    /// Sets the hold TTL a reserve gets when it asks for none, and the longest it may ask
    /// for; both within `Limits.holdTTLMsMin...Limits.holdTTLMsMax`, default <= max.
    public func setHoldTTL(defaultMs: Int64, maxMs: Int64) { core.setHoldTTL(defaultMs: defaultMs, maxMs: maxMs) }

    /// How long an order held for review waits for an operator (then it is released).
    public func setReviewTTL(ms: Int64) { core.setReviewTTL(ms) }

    /// Orders held for review, oldest first.
    public func reviewQueue() -> [Order] { core.reviewQueue() }

    /// Unpaid holds (reserved, or held for review unpaid), for the risk gate's hold counts
    /// at start.
    public func unpaidHolds() -> [Order] { core.orders.all().filter { $0.state.isHold && $0.paymentRef == nil } }

    /// Approves an order held for review (a paid one is committed and delivered).
    public func approve(order: String, client: String? = nil, completion: @escaping OrderCompletion) {
        core.approve(order: order, client: client, completion: completion)
    }

    /// Denies an order held for review (its codes go back to the pool).
    public func deny(order: String, client: String? = nil, completion: @escaping OrderCompletion) {
        core.deny(order: order, client: client, completion: completion)
    }

    /// The hold TTL settings in effect: (default, max), ms.
    public var holdTTL: (defaultMs: Int64, maxMs: Int64) { core.holdTTL }

    /// How long an order held for review waits for an operator.
    public var reviewTTLMs: Int64 { core.reviewTTLMs }

    /// How long an order of `skuKey` held for review waits (the SKU's own TTL, else the
    /// daemon's); the daemon's for an unknown SKU.
    public func reviewTTLMs(sku skuKey: String?) -> Int64 {
        guard let skuKey, let sku = try? core.sku(key: skuKey) else { return core.reviewTTLMs }
        return core.reviewTTL(sku)
    }

    /// Delivers a paid order waiting in the review queue by hand: `items`, one per unit, are
    /// sealed and issued to it (a secret kamid already has is a CONFLICT).
    public func deliver(
        order: String, items: [DeliveredItem], costCents: Int64 = 0, client: String? = nil,
        completion: @escaping OrderCompletion
    ) {
        core.deliver(order: order, items: items, costCents: costCents, client: client, completion: completion)
    }

    /// Reserved orders waiting for their commit, release or expiry.
    public var holdsOutstanding: Int { core.holdsOutstanding }

    /// Opens a read scope on this thread: the secret reads until `endReadScope` share one
    /// read snapshot (the event loop opens one per pass; see `Store.beginReadScope`).
    public func beginReadScope() { core.beginReadScope() }

    /// Ends this thread's read scope.
    public func endReadScope() { core.endReadScope() }

    /// The engine's clock, Unix ms.
    public var nowMs: Int64 { core.nowMs }
}

/// The order state machine: every call that changes an order. Completions run on whichever
/// thread finished the work (often the commit writer's): keep them short. `client` is the
/// storefront client that sent the call (its hello name), recorded on the order's audit
/// events. Repeating a call with the same order id and arguments returns the first answer.
public struct Storefront: Sendable {
    let core: EngineCore

    /// Holds `units` of `sku` for an unpaid order until `ttlMs` passes (nil: the default
    /// hold). Errors: SOLD_OUT, LIMIT_REACHED, NOT_FOUND, CONFLICT, BAD_REQUEST, BUSY,
    /// UNAVAILABLE.
    public func reserve(
        order: String, user: String, sku: String, units: Int, ttlMs: Int64? = nil, client: String? = nil,
        risk: String? = nil, review: Bool = false, terms: OrderTerms = .none, unscreened: Bool = false,
        completion: @escaping OrderCompletion
    ) {
        core.reserve(order: order, user: user, sku: sku, units: units, ttlMs: ttlMs, client: client, risk: risk, review: review,
                     terms: terms, unscreened: unscreened, completion: completion)
    }

    /// Reserves and commits at once, for an order already paid.
    /// A SKU sourced upstream answers `pending_upstream` at once, or when `waitMs` > 0 once
    /// delivered or failed (or when the wait runs out, still pending).
    public func issue(
        order: String, user: String, sku: String, units: Int, paymentRef: String, client: String? = nil,
        waitMs: Int64? = nil, risk: String? = nil, review: Bool = false, terms: OrderTerms = .none, unscreened: Bool = false,
        completion: @escaping OrderCompletion
    ) {
        core.issue(order: order, user: user, sku: sku, units: units, paymentRef: paymentRef, client: client, risk: risk, review: review,
                   terms: terms, unscreened: unscreened, completion: core.waiting(waitMs, completion))
    }

    /// Whether `sku`'s pool looks empty now (a hint: the server then tries an order without
    /// the risk gate, `unscreened`, and the engine checks again as it takes).
    public func looksSoldOut(sku key: String) -> Bool {
        guard let sku = core.catalog.withLock({ $0.byKey[key] }), !sku.isBundle else { return false }
        return core.pool.available(sku: sku.id) == 0
    }

    /// The order is paid: its codes become issued and their secrets are returned. After the
    /// hold expired it takes fresh codes while stock remains, else fails with EXPIRED (or, for
    /// a SKU with suppliers, goes pending upstream). `waitMs` as for `issue`.
    public func commit(
        order: String, paymentRef: String, client: String? = nil, waitMs: Int64? = nil, owner: String? = nil,
        completion: @escaping OrderCompletion
    ) {
        core.commit(order: order, paymentRef: paymentRef, client: client, owner: owner,
                    completion: core.waiting(waitMs, completion))
    }

    /// Waits until an order pending upstream is delivered or failed, or `timeoutMs` passes
    /// (then it answers the order as it is). Answers at once for any other order.
    public func wait(order: String, timeoutMs: Int64, completion: @escaping OrderCompletion) {
        core.waitForOrder(order, timeoutMs: timeoutMs, completion: completion)
    }

    /// Gives the held codes back (a released or expired order is answered as it is).
    public func release(order: String, client: String? = nil, completion: @escaping OrderCompletion) {
        core.release(order: order, client: client, completion: completion)
    }

    /// Refunds a committed order: its codes are voided for good.
    public func refund(order: String, client: String? = nil, completion: @escaping OrderCompletion) {
        core.refund(order: order, client: client, completion: completion)
    }

    /// Expires every hold whose deadline has passed (the expiry thread calls it; tests with a
    /// manual clock call it directly). Returns how many holds it began to expire.
    @discardableResult
    public func expireDue() -> Int { core.expireDue() }

    /// `reserve`, waiting for the result (tools, tests, anything not on an event loop).
    public func reserveSync(
        order: String, user: String, sku: String, units: Int = 1, ttlMs: Int64? = nil, client: String? = nil,
        terms: OrderTerms = .none
    ) -> Result<OrderReply, KamiError> {
        core.reserveSync(order: order, user: user, sku: sku, units: units, ttlMs: ttlMs, client: client, terms: terms)
    }

    /// `issue`, waiting for the result.
    public func issueSync(
        order: String, user: String, sku: String, units: Int = 1, paymentRef: String, client: String? = nil,
        terms: OrderTerms = .none
    ) -> Result<OrderReply, KamiError> {
        core.issueSync(order: order, user: user, sku: sku, units: units, paymentRef: paymentRef, client: client, terms: terms)
    }

    /// `commit`, waiting for the result.
    public func commitSync(order: String, paymentRef: String, client: String? = nil) -> Result<OrderReply, KamiError> {
        core.commitSync(order: order, paymentRef: paymentRef, client: client)
    }

    /// `release`, waiting for the result.
    public func releaseSync(order: String) -> Result<OrderReply, KamiError> { core.releaseSync(order: order) }

    /// `refund`, waiting for the result.
    public func refundSync(order: String) -> Result<OrderReply, KamiError> { core.refundSync(order: order) }
}

/// Reads that change nothing. A query sees only durable state: nothing in flight.
public struct Queries: Sendable {
    let core: EngineCore

    /// An order as it is now; once committed, with the secrets of its codes that are not voided.
    public func order(_ order: String) throws(KamiError) -> OrderReply { try core.order(order) }

    /// One page of what a user owns, newest order first (`limit` nil: the default page).
    public func entitlements(
        user: String, withSecrets: Bool, limit: Int?, cursor: String?
    ) throws(KamiError) -> EntitlementsPage {
        try core.entitlements(user: user, withSecrets: withSecrets, limit: limit, cursor: cursor)
    }

    /// Every code a user owns, all pages (tools and tests).
    public func entitlements(user: String, withSecrets: Bool = false) throws(KamiError) -> [Entitlement] {
        try core.entitlements(user: user, withSecrets: withSecrets)
    }

    /// Stock of a SKU; for a bundle, `available` is the number of complete bundles.
    public func stock(sku: String) throws(KamiError) -> StockReply { try core.stock(sku: sku) }

    /// Every SKU in the catalog, by id.
    public func skus() -> [Sku] { core.skus() }

    /// The import or export running now, if any.
    public var currentJob: JobProgress? { core.currentJob }
}

/// The operator's operations. Each may take seconds (imports, exports, verify): never call
/// them on an event loop thread.
public struct Admin: Sendable {
    let core: EngineCore

    /// Creates or replaces a campaign (durable, audited); its budget cannot go under what it
    /// has already given away.
    public func setCampaign(_ campaign: Campaign) throws(KamiError) { try core.setCampaign(campaign) }

    /// Every campaign with what it has given away to live orders and how many.
    public func campaigns() -> [(campaign: Campaign, spentCents: Int64, orders: Int)] {
        core.promotions.campaigns.map { campaign in
            let spent = core.promotions.spent(campaign.key)
            return (campaign, spent.cents, spent.orders)
        }
    }

    /// Sets a distributor's commission rate (basis points), its default or for one SKU.
    @discardableResult
    public func setDistributor(_ key: String, rateBps: Int, sku: String? = nil) throws(KamiError) -> Distributor {
        try core.setDistributor(key, rateBps: rateBps, sku: sku)
    }

    /// Every distributor with its rates and what the shop owes it now.
    public func distributors() throws(KamiError) -> [(distributor: Distributor, owedCents: Int64)] {
        var result: [(distributor: Distributor, owedCents: Int64)] = []
        for distributor in core.distributors.withLock({ Array($0.values) }).sorted(by: { $0.key < $1.key }) {
            result.append((distributor, try core.storage.distributorStatement(distributor.key, sinceMs: 0, untilMs: Int64.max).owedCents))
        }
        return result
    }

    /// A distributor's settlement statement for `sinceMs` ≤ t < `untilMs`.
    public func distributorStatement(_ key: String, sinceMs: Int64, untilMs: Int64) throws(KamiError)
        -> (accruedCents: Int64, orders: Int, reversedCents: Int64, reversals: Int, owedCents: Int64)
    {
        guard core.distributors.withLock({ $0[key] }) != nil else { throw KamiError(.notFound, "no distributor \(key)") }
        return try core.storage.distributorStatement(key, sinceMs: sinceMs, untilMs: untilMs)
    }

    /// Matches a payment provider's bill (a file kamid reads: Alipay, WeChat Pay or the generic
    /// layout, GBK or UTF-8) with the orders: reports, changes nothing.
    public func reconcilePayments(path: String, format: PaymentBill.Format?, sinceMs: Int64?, untilMs: Int64?) throws(KamiError)
        -> (format: PaymentBill.Format, payments: Int, matched: Int, mismatches: [PaymentMismatch])
    {
        let table: (encoding: CSVEncoding, records: [(line: Int, fields: [String])], rejects: [CSVReject])
        do throws(CSVImportError) {
            table = try CSVTable.read(try CSVTable.readFile(path, limit: Limits.billBytesMax))
        } catch {
            throw KamiError(.badRequest, error.message)
        }
        if let reject = table.rejects.first {
            throw KamiError(.badRequest, "line \(reject.line) of the bill: \(reject.reason)")
        }
        let bill = try PaymentBill.parse(table.records, format: format)
        let orders = core.orders.all().map { ($0.orderID, $0.state, $0.paymentRef, $0.amountCents, $0.createdAtMs) }
        let result = PaymentReconciliation.reconcile(bill.payments, orders: orders.map {
            (id: $0.0, state: $0.1, paymentRef: $0.2, amountCents: $0.3, createdAtMs: $0.4)
        }, sinceMs: sinceMs, untilMs: untilMs)
        return (bill.format, bill.payments.count, result.matched, result.mismatches)
    }

    /// Sales and profit grouped by `group` over `sinceMs` ≤ t < `untilMs` (whole China
    /// Standard Time days), optionally of one SKU, channel or campaign (docs/money.md).
    public func salesReport(group: Store.ReportGroup, sinceMs: Int64, untilMs: Int64, sku: String?, channel: String?,
                            campaign: String?) throws(KamiError) -> [SalesRow] {
        let skuID = try sku.map { (key: String) throws(KamiError) -> SkuID in try core.sku(key: key).id }
        func day(_ ms: Int64) -> Int64 { ms == Int64.max ? Int64.max : (ms / 1_000 + 8 * 3_600) / 86_400 }
        var rows = try core.storage.salesReport(group: group, sinceDay: day(sinceMs), untilDay: untilMs == Int64.max ? Int64.max : day(untilMs - 1) + 1,
                                                sku: skuID, channel: channel, campaign: campaign)
        if group == .sku {
            let keys = Dictionary(core.skus().map { (String($0.id), $0.key) }, uniquingKeysWith: { first, _ in first })
            for index in rows.indices { rows[index].key = keys[rows[index].key] ?? rows[index].key }
        }
        return rows
    }

    /// Opens an after-sales case on a delivered order (about one code, or the order).
    public func openCase(order: String, code: CodeID?, reason: AfterSalesCase.Reason, note: String = "") throws(KamiError) -> AfterSalesCase {
        try core.openCase(order: order, codeID: code, reason: reason, note: note)
    }

    /// Every case, newest first.
    public func cases(openOnly: Bool = false) throws(KamiError) -> [AfterSalesCase] { try core.storage.cases(openOnly: openOnly) }

    /// Resolves a case by replacing its code from the pool (blocks for the commit).
    public func replaceCase(_ id: Int64) throws(KamiError) -> OrderReply {
        let waiter = Waiter<OrderReply>()
        core.replaceCode(caseID: id) { waiter.set($0) }
        return try waiter.wait().get()
    }

    /// Resolves a case by refunding its order (blocks for the commit).
    public func refundCase(_ id: Int64) throws(KamiError) -> AfterSalesCase {
        let item = try core.openCase(id)
        _ = try core.refundSync(order: item.orderID).get()
        return try core.closeCaseRefunded(id)
    }

    /// Closes a case without changing the order.
    public func rejectCase(_ id: Int64, note: String = "") throws(KamiError) -> AfterSalesCase { try core.rejectCase(id, note: note) }

    /// Stock on hand per SKU key: count, cost, age buckets, codes expiring within `expiringWithinMs`.
    /// Per SKU: sold, used, activated in the window, through a brand's token.
    public func activationReport(sinceMs: Int64, untilMs: Int64) throws(KamiError) -> [(sku: String, row: ActivationRow)] {
        let keys = Dictionary(core.skus().map { ($0.id, $0.key) }, uniquingKeysWith: { first, _ in first })
        return try core.storage.activationReport(sinceMs: sinceMs, untilMs: untilMs).map { (keys[$0.sku] ?? "#\($0.sku)", $0) }
    }

    public func inventoryReport(expiringWithinMs: Int64) throws(KamiError) -> [(sku: String, row: InventoryRow)] {
        let keys = Dictionary(core.skus().map { ($0.id, $0.key) }, uniquingKeysWith: { first, _ in first })
        return try core.storage.inventoryReport(nowMs: core.clock.nowMs(), expiringWithinMs: expiringWithinMs).map {
            (keys[$0.sku] ?? "#\($0.sku)", $0)
        }
    }

    /// Per SKU: buyers, those who bought more than once, and the mean days between a buyer's
    /// consecutive delivered orders (from the orders in memory).
    public func repeatBuyers() -> [(sku: String, buyers: Int, repeat: Int, meanIntervalDays: Double?)] {
        var bySku: [SkuID: [String: [Int64]]] = [:]
        for order in core.orders.all() where order.state == .committed {
            bySku[order.sku, default: [:]][order.user, default: []].append(order.createdAtMs)
        }
        let keys = Dictionary(core.skus().map { ($0.id, $0.key) }, uniquingKeysWith: { first, _ in first })
        return bySku.map { sku, users in
            var intervals: [Int64] = []
            for times in users.values where times.count > 1 {
                let sorted = times.sorted()
                for index in 1..<sorted.count { intervals.append(sorted[index] - sorted[index - 1]) }
            }
            let mean = intervals.isEmpty ? nil : Double(intervals.reduce(0, +)) / Double(intervals.count) / 86_400_000
            return (keys[sku] ?? "#\(sku)", users.count, users.values.filter { $0.count > 1 }.count, mean)
        }.sorted { $0.sku < $1.sku }
    }

    /// A flash sale's summary for one SKU over `sinceMs` ≤ t < `untilMs`: orders placed,
    /// the busiest second, the first and last order, when it sold out (the last order that
    /// took codes, if none is left now), and refusals by reason since kamid started.
    public func flashSaleSummary(sku key: String, sinceMs: Int64, untilMs: Int64) throws(KamiError)
        -> (orders: Int, peakPerSecond: Int, firstMs: Int64?, lastMs: Int64?, soldOutMs: Int64?, soldOut: Int, limitReached: Int, denied: Int)
    {
        let sku = try core.sku(key: key)
        let placed = core.orders.all().filter { $0.sku == sku.id && $0.createdAtMs >= sinceMs && $0.createdAtMs < untilMs }
        var perSecond: [Int64: Int] = [:]
        for order in placed { perSecond[order.createdAtMs / 1_000, default: 0] += 1 }
        let holding = placed.filter { !$0.codes.isEmpty }.map(\.createdAtMs)
        let empty = try core.stock(sku: key).available == 0
        let slot = Int(sku.id) * 3
        return (placed.count, perSecond.values.max() ?? 0, placed.map(\.createdAtMs).min(), placed.map(\.createdAtMs).max(),
                empty ? holding.max() : nil, core.rejects.load(slot), core.rejects.load(slot + 1), core.rejects.load(slot + 2))
    }

    /// Counts an order the risk gate refused (for the flash-sale summary).
    public func noteDenied(sku key: String) {
        guard let sku = try? core.sku(key: key) else { return }
        core.rejects.add(Int(sku.id) * 3 + 2)
    }

    /// What the shop owes each supplier and other source of stock.
    public func payables() throws(KamiError) -> [(account: String, owedCents: Int64)] { try core.storage.payables() }

    /// Adds coupon codes to a batch (created, or its terms replaced); returns how many were new.
    public func addCoupons(_ batch: CouponBatch, codes: [String]) throws(KamiError) -> Int { try core.addCoupons(batch, codes: codes) }

    /// Every coupon batch with its codes and how many live orders hold one.
    public func couponBatches() -> [(batch: CouponBatch, codes: Int, held: Int)] {
        let figures = core.promotions.couponFigures()
        return core.promotions.batches.map { ($0, figures[$0.key]?.codes ?? 0, figures[$0.key]?.held ?? 0) }
    }

    /// Creates or updates a SKU (journaled and audited like everything else).
    public func setSku(_ definition: SkuDefinition) throws(KamiError) -> Sku { try core.setSku(definition) }

    /// Imports codes of a plain SKU from `source`; nothing is sellable before its commit.
    public func importCodes<Source: CodeRowSource & Sendable>(
        sku: String, source: Source, label: String, dryRun: Bool = false
    ) throws(KamiError) -> ImportReport {
        try core.importCodes(sku: sku, source: source, label: label, dryRun: dryRun)
    }

    /// Imports a CSV file as shops have them (UTF-8 with or without BOM, or GBK/GB18030).
    public func importCSV(
        path: String, sku: String, batch: String? = nil, dryRun: Bool = false, sheet: String? = nil
    ) throws(KamiError) -> ImportReport {
        try core.importCSV(path: path, sku: sku, batch: batch, dryRun: dryRun, sheet: sheet)
    }

    /// Exports a SKU's codes to a CSV file (secrets only when asked); returns the row count.
    public func exportCSV(
        sku: String, to path: String, withSecrets: Bool = false, replace: Bool = false
    ) throws(KamiError) -> Int {
        try core.exportCSV(sku: sku, to: path, withSecrets: withSecrets, replace: replace)
    }

    /// Voids one code (available: out of the pool for good; issued: never served again).
    public func void(code: CodeID) throws(KamiError) -> VoidReport { try core.void(code: code) }

    /// Voids every code of an import batch.
    public func void(batch: String) throws(KamiError) -> VoidReport { try core.void(batch: batch) }

    /// Checks every invariant against the database and memory; empty when all hold.
    public func verify() throws(KamiError) -> [Violation] { try core.verify() }

    /// Returns once everything submitted before is durable and its completion has run.
    public func barrier() { core.barrier() }
}

/// Orders fulfilled upstream. The upstream module (routing, adapters, the HTTP client) calls
/// these: it decides, the engine journals. Every call that changes something is durable and
/// audited before its completion runs.
public struct Upstream: Sendable {
    let core: EngineCore

    /// Who fulfils orders pending upstream (set once at start, before the listeners open).
    public func setSink(_ sink: (any UpstreamSink)?) { core.upstream.sink = sink }

    /// Every order pending upstream, oldest first, with its SKU.
    public func pendingOrders() -> [(order: Order, sku: Sku)] { core.pendingUpstreamOrders() }

    /// Every order in the dead-letter list (failed upstream), oldest first.
    public func failedOrders() -> [Order] {
        core.orders.all().filter { $0.state == .failed }.sorted { $0.seq < $1.seq }
    }

    /// The order with this id, as durable now.
    public func order(_ orderID: String) -> Order? { core.orders.get(orderID) }

    /// Whether kamid has an order with this id (cheaper than `order`).
    public func hasOrder(_ orderID: String) -> Bool { core.orders.contains(orderID) }

    /// Journals an attempt: before its request leaves, and at each change of its state.
    public func recordAttempt(_ attempt: UpstreamAttempt, completion: @escaping @Sendable (Result<Void, KamiError>) -> Void) {
        core.recordAttempt(attempt, completion: completion)
    }

    /// The supplier delivered: codes stored and issued, order committed, attempt succeeded.
    public func deliver(orderID: String, attempt: UpstreamAttempt, items: [DeliveredItem], completion: @escaping OrderCompletion) {
        core.deliverUpstream(orderID: orderID, attempt: attempt, items: items, completion: completion)
    }

    /// No candidate can fulfil the order: it goes to the dead-letter list with `reason`.
    public func fail(orderID: String, attempt: UpstreamAttempt?, reason: String, completion: @escaping OrderCompletion) {
        core.failUpstream(orderID: orderID, attempt: attempt, reason: reason, completion: completion)
    }

    /// The operator retries a failed order (routed anew).
    public func retry(orderID: String, completion: @escaping OrderCompletion) {
        core.retryUpstream(orderID: orderID, completion: completion)
    }

    /// The attempts of an order, oldest first.
    public func attempts(orderSeq: OrderSeq) throws(KamiError) -> [UpstreamAttempt] {
        try core.store.attempts(orderSeq: orderSeq)
    }

    /// The attempts at a supplier created in `fromMs..<toMs` (reconciliation).
    public func attempts(supplier: String, fromMs: Int64, toMs: Int64) throws(KamiError) -> [UpstreamAttempt] {
        try core.store.attempts(supplier: supplier, fromMs: fromMs, toMs: toMs)
    }

    /// A SKU's sourcing (the default, pool only, when never set).
    public func sourcing(_ sku: SkuID) -> SkuSourcing { core.upstream.sourcing(sku) }

    /// Every SKU's mappings.
    public func mappings() -> [SkuID: [SupplierMapping]] { core.upstream.data.withLock { $0.mappings } }

    /// Suppliers the operator paused.
    public func pausedSuppliers() -> Set<String> { core.upstream.data.withLock { $0.paused } }

    /// Sets a SKU's sourcing (nil fields keep their value). Blocks for the commit.
    public func setSourcing(
        sku: String, policy: SourcePolicy? = nil, strategy: RoutingStrategy? = nil, minMarginCents: Int64? = nil,
        noCandidate: NoCandidatePolicy? = nil, lowWater: Int? = nil, buyAheadUnits: Int? = nil,
        buyAheadBudgetCents: Int64? = nil
    ) throws(KamiError) -> SkuSourcing {
        try core.setSourcing(skuKey: sku, policy: policy, strategy: strategy, minMarginCents: minMarginCents,
                             noCandidate: noCandidate, lowWater: lowWater, buyAheadUnits: buyAheadUnits,
                             buyAheadBudgetCents: buyAheadBudgetCents)
    }

    /// Maps a supplier (one of `knownSuppliers`, the config's) to a SKU. Blocks for the commit.
    public func map(
        sku: String, supplier: String, productID: String, costCents: Int64, priority: Int = 0, weight: Int = 1,
        knownSuppliers: Set<String>
    ) throws(KamiError) -> SupplierMapping {
        try core.mapSupplier(skuKey: sku, supplier: supplier, productID: productID, costCents: costCents,
                             priority: priority, weight: weight, knownSuppliers: knownSuppliers)
    }

    /// Removes a mapping; false when there was none. Blocks for the commit.
    public func unmap(sku: String, supplier: String) throws(KamiError) -> Bool {
        try core.unmapSupplier(skuKey: sku, supplier: supplier)
    }

    /// Pauses or resumes a supplier. Blocks for the commit.
    public func setPaused(_ supplier: String, paused: Bool) throws(KamiError) {
        try core.setSupplierPaused(supplier, paused: paused)
    }

    /// A supplier's cost or stock for a SKU changed (journaled with its time when it differs).
    public func updateCost(sku: SkuID, supplier: String, costCents: Int64, stock: Int?) {
        core.updateSupplierCost(sku: sku, supplier: supplier, costCents: costCents, stock: stock)
    }

    /// The cost history of a SKU, oldest first.
    public func costHistory(sku: SkuID) throws(KamiError) -> [CostChange] { try core.store.costHistory(sku: sku) }

    /// Available codes of a SKU in the pool now.
    public func available(sku: SkuID) -> Int { core.pool.available(sku: sku) }

    /// Journals a buy-ahead purchase (before its request leaves, and at each change); the
    /// completion gets its row id.
    public func recordBuyAhead(_ purchase: BuyAhead, completion: @escaping @Sendable (Result<Int64, KamiError>) -> Void) {
        let event = AuditEvent(
            "buy-ahead", subject: "sku:\(core.skuKey(purchase.sku))",
            detail: "no=\(purchase.customerOrderNo) supplier=\(purchase.supplier) units=\(purchase.units) "
                + "cost=\(purchase.costCents) state=\(purchase.state)" + (purchase.detail.isEmpty ? "" : " detail=\(purchase.detail)"))
        core.store.writer.submit(.writeBuyAhead(purchase, audit: event)) { result in
            completion(result.map { outcome in
                if case .rowID(let id) = outcome { return id }
                return purchase.id
            })
        }
    }

    /// Buy-ahead purchases of a SKU since `sinceMs` (a day's spending).
    public func buyAheads(sku: SkuID, sinceMs: Int64) throws(KamiError) -> [BuyAhead] {
        try core.store.buyAheads(sku: sku, sinceMs: sinceMs)
    }

    /// Buy-ahead purchases whose outcome was open at the last start.
    public func openBuyAheads() throws(KamiError) -> [BuyAhead] { try core.store.loadUpstream().openBuyAheads }

    /// Buys ahead: stores `items` bought from `supplier` into the pool as available codes of
    /// `sku` (an import whose label names the supplier). Blocks for the commit.
    public func addToPool(sku: String, items: [DeliveredItem], supplier: String, costCents: Int64) throws(KamiError) -> ImportReport {
        guard costCents >= 0 && costCents <= Limits.costCentsMax else {
            throw KamiError(.badRequest, "a supplier's cost of \(costCents) is outside 0...\(Limits.costCentsMax)")
        }
        let rows = items.enumerated().map { ImportItem.row(CodeRow(
            line: $0.offset + 1, secret: $0.element.secret, cardNumber: $0.element.cardNumber, costCents: costCents,
            expiresAtMs: $0.element.expiresAtMs, batch: "buy-ahead:\(supplier)")) }
        return try core.importCodes(sku: sku, source: ArrayRowSource(rows), label: "upstream:\(supplier)")
    }
}
