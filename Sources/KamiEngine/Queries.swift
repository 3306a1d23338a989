public import KamiCore
import KamiPool
import Synchronization
import KamiStore

extension Engine {
    /// Keeps the codes of `codes` that are in `state` now (a leaked code voided by an operator
    /// is never served again). One statement, whatever the count.
    func codes(_ codes: [OrderCode], in state: CodeState) throws(KamiError) -> [OrderCode] {
        guard !codes.isEmpty else { return [] }
        let rows = try store.codesWithState(codes.map(\.codeID))
        return codes.filter { rows[$0.codeID]?.state == state }
    }

    /// An order as it is now; once committed, with the secrets of its codes that are not voided.
    public func order(_ orderID: String) throws(KamiError) -> OrderReply {
        try Engine.validate(orderID: orderID)
        guard let order = orders.get(orderID) else { throw KamiError(.notFound, "no order \(orderID)") }
        return try answerExisting(order).get()
    }

    /// Every code a user owns (all pages; for tools and tests; storefronts page with
    /// `entitlements(user:withSecrets:limit:cursor:)`).
    public func entitlements(user: String, withSecrets: Bool = false) throws(KamiError) -> [Entitlement] {
        var all: [Entitlement] = []
        var cursor: String?
        repeat {
            let page = try entitlements(user: user, withSecrets: withSecrets, limit: Limits.entitlementsPageMax,
                                        cursor: cursor)
            all += page.items
            cursor = page.nextCursor
        } while cursor != nil
        return all
    }

    /// One page of what a user owns: the codes of their committed and refunded orders,
    /// newest order first (an order's codes in their order), with state and activation link,
    /// and secrets of issued codes when `withSecrets`. At most `limit` codes (default
    /// `Limits.entitlementsPageDefault`, at most `Limits.entitlementsPageMax`); `cursor` is
    /// the `nextCursor` of the page before. The page's codes are read in one statement.
    public func entitlements(
        user: String, withSecrets: Bool, limit: Int?, cursor: String?
    ) throws(KamiError) -> EntitlementsPage {
        if let problem = IdentifierRules.problem(user, field: "user", maxBytes: Limits.userIDBytesMax) {
            throw KamiError(.badRequest, problem)
        }
        let pageMax = limit ?? Limits.entitlementsPageDefault
        guard pageMax >= 1 && pageMax <= Limits.entitlementsPageMax else {
            throw KamiError(.badRequest, "limit \(pageMax) is outside 1...\(Limits.entitlementsPageMax)")
        }
        let start = try cursor.map { cursor throws(KamiError) in try EntitlementCursor(cursor) }
        var owned: [(order: Order, code: OrderCode)] = []
        var next: EntitlementCursor?
        walk: for orderID in userOrders.orders(of: user).reversed() {
            guard let order = orders.get(orderID), order.state == .committed || order.state == .refunded else { continue }
            if let start, order.seq > start.seq { continue }
            for (index, code) in order.codes.enumerated() {
                if let start, order.seq == start.seq, index < start.index { continue }
                if owned.count == pageMax {
                    next = EntitlementCursor(seq: order.seq, index: index)
                    break walk
                }
                owned.append((order, code))
            }
        }
        guard !owned.isEmpty else { return EntitlementsPage(items: [], nextCursor: nil) }
        let rows = try store.codesWithState(owned.map(\.code.codeID))
        var secrets: [CodeID: Secret] = [:]
        if withSecrets {
            let issued = owned.compactMap { rows[$0.code.codeID] }.filter { $0.state == .issued }.map(\.code)
            for code in try reveal(rows: issued) { secrets[code.codeID] = code.secret }
        }
        let items = owned.map { entry in
            let sku = self.sku(id: entry.code.sku)
            let row = rows[entry.code.codeID]
            return Entitlement(
                orderID: entry.order.orderID, skuKey: sku?.key ?? "#\(entry.code.sku)", codeID: entry.code.codeID,
                state: row?.state ?? .voided,
                activationURL: Engine.activationURL(sku?.activationURLTemplate, codeID: entry.code.codeID,
                                                    cardNumber: row?.code.cardNumber),
                secret: secrets[entry.code.codeID], cardNumber: row?.code.cardNumber)
        }
        return EntitlementsPage(items: items, nextCursor: next?.text)
    }

    /// Stock of a SKU; for a bundle, `available` is the number of complete bundles.
    public func stock(sku skuKey: String) throws(KamiError) -> StockReply {
        let sku = try self.sku(key: skuKey)
        if sku.isBundle {
            let available = sku.components.map { pool.available(sku: $0.sku) / $0.units }.min() ?? 0
            return StockReply(skuKey: sku.key, available: available, reserved: 0, issued: 0, voided: 0, imported: 0)
        }
        let counts = stock.withLock { $0[sku.id] } ?? StockCounts()
        return StockReply(
            skuKey: sku.key, available: pool.available(sku: sku.id), reserved: counts[.reserved], issued: counts[.issued],
            voided: counts[.voided], imported: counts.total)
    }

    /// Every SKU in the catalog, by id.
    public func skus() -> [Sku] {
        catalog.withLock { Array($0.byID.values) }.sorted { $0.id < $1.id }
    }

    /// Creates or updates a SKU (catalog data, journaled and audited like everything else).
    public func setSku(_ definition: SkuDefinition) throws(KamiError) -> Sku {
        if let problem = IdentifierRules.problem(definition.key, field: "sku", maxBytes: Limits.skuKeyBytesMax) {
            throw KamiError(.badRequest, problem)
        }
        adminLock.lock()
        defer { adminLock.unlock() }
        let (existing, count) = catalog.withLock { ($0.byKey[definition.key], $0.byID.count) }
        if existing == nil && count >= Limits.skusMax - 1 {
            throw KamiError(.tooLarge, "the catalog holds \(count) SKUs, the most kamid supports")
        }
        var sku = existing ?? Sku(
            id: 0, key: definition.key, name: definition.key, priceCents: 0, perUserLimit: 0,
            activationURLTemplate: nil)
        if let name = definition.name {
            guard !name.isEmpty, name.utf8.count <= Limits.skuNameBytesMax else {
                throw KamiError(.badRequest, "name must be 1...\(Limits.skuNameBytesMax) bytes")
            }
            sku.name = name
        }
        if let price = definition.priceCents {
            guard price >= 0 else { throw KamiError(.badRequest, "price \(price) is negative") }
            sku.priceCents = price
        }
        if let limit = definition.perUserLimit {
            guard limit >= 0 && limit <= 1_000_000 else { throw KamiError(.badRequest, "per-user limit \(limit) out of range") }
            sku.perUserLimit = limit
        }
        if let url = definition.activationURLTemplate {
            guard url.utf8.count <= Limits.activationURLBytesMax else {
                throw KamiError(.badRequest, "activation URL longer than \(Limits.activationURLBytesMax) bytes")
            }
            sku.activationURLTemplate = url.isEmpty ? nil : url
        }
        if let components = definition.components {
            sku.components = try resolveComponents(components, bundleKey: definition.key, existing: existing)
        }
        let event = AuditEvent(
            existing == nil ? "sku-create" : "sku-update", subject: "sku:\(sku.key)",
            detail: "price=\(sku.priceCents) limit=\(sku.perUserLimit) components=\(sku.components.map { "\($0.sku)x\($0.units)" })")
        let outcome = try submitAndWait(.writeSku(sku, audit: event))
        if case .skuID(let id) = outcome { sku.id = id }
        let stored = sku
        catalog.withLock { $0.insert(stored) }
        return stored
    }

    private func resolveComponents(
        _ components: [(key: String, units: Int)], bundleKey: String, existing: Sku?
    ) throws(KamiError) -> [BundleComponent] {
        guard !components.isEmpty, components.count <= Limits.bundleComponentsMax else {
            throw KamiError(.badRequest, "a bundle needs 1...\(Limits.bundleComponentsMax) components")
        }
        if let existing, !existing.isBundle, (stock.withLock { $0[existing.id] }?.total ?? 0) > 0 {
            throw KamiError(.invalidState, "\(bundleKey) has codes of its own and cannot become a bundle")
        }
        var result: [BundleComponent] = []
        var codesPerUnit = 0
        for (key, units) in components {
            let component = try sku(key: key)
            guard !component.isBundle, key != bundleKey else {
                throw KamiError(.badRequest, "bundle component \(key) must be a plain SKU, not a bundle")
            }
            guard units >= 1 && units <= Limits.unitsPerOrderMax else {
                throw KamiError(.badRequest, "component \(key) units \(units) out of range")
            }
            guard !result.contains(where: { $0.sku == component.id }) else {
                throw KamiError(.badRequest, "component \(key) listed twice")
            }
            codesPerUnit += units
            result.append(BundleComponent(sku: component.id, units: units))
        }
        guard codesPerUnit <= Limits.codesPerOrderMax else {
            throw KamiError(.badRequest, "a bundle unit takes \(codesPerUnit) codes, more than \(Limits.codesPerOrderMax)")
        }
        return result
    }

    func submitAndWait(_ mutation: Mutation) throws(KamiError) -> MutationOutcome {
        let waiter = Waiter<MutationOutcome>()
        store.writer.submit(mutation) { waiter.set($0) }
        return try waiter.wait().get()
    }
}
