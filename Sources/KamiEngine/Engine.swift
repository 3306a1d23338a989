public import KamiCore
public import KamiStore

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

    /// The hold TTL settings in effect: (default, max), ms.
    public var holdTTL: (defaultMs: Int64, maxMs: Int64) { core.holdTTL }

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
        completion: @escaping OrderCompletion
    ) {
        core.reserve(order: order, user: user, sku: sku, units: units, ttlMs: ttlMs, client: client,
                     completion: completion)
    }

    /// Reserves and commits at once, for an order already paid.
    public func issue(
        order: String, user: String, sku: String, units: Int, paymentRef: String, client: String? = nil,
        completion: @escaping OrderCompletion
    ) {
        core.issue(order: order, user: user, sku: sku, units: units, paymentRef: paymentRef, client: client,
                   completion: completion)
    }

    /// The order is paid: its codes become issued and their secrets are returned. After the
    /// hold expired it takes fresh codes while stock remains, else fails with EXPIRED.
    public func commit(order: String, paymentRef: String, client: String? = nil, completion: @escaping OrderCompletion) {
        core.commit(order: order, paymentRef: paymentRef, client: client, completion: completion)
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
        order: String, user: String, sku: String, units: Int = 1, ttlMs: Int64? = nil, client: String? = nil
    ) -> Result<OrderReply, KamiError> {
        core.reserveSync(order: order, user: user, sku: sku, units: units, ttlMs: ttlMs, client: client)
    }

    /// `issue`, waiting for the result.
    public func issueSync(
        order: String, user: String, sku: String, units: Int = 1, paymentRef: String, client: String? = nil
    ) -> Result<OrderReply, KamiError> {
        core.issueSync(order: order, user: user, sku: sku, units: units, paymentRef: paymentRef, client: client)
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
        path: String, sku: String, batch: String? = nil, dryRun: Bool = false
    ) throws(KamiError) -> ImportReport {
        try core.importCSV(path: path, sku: sku, batch: batch, dryRun: dryRun)
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
