import KamiCore
import KamiPool
import Synchronization
import KamiStore

extension EngineCore {
    /// Keeps the codes of `codes` that are in `state` now (a leaked code voided by an operator
    /// is never served again). One statement, whatever the count.
    func codes(_ codes: [OrderCode], in state: CodeState) throws(KamiError) -> [OrderCode] {
        guard !codes.isEmpty else { return [] }
        let rows = try store.codesWithState(codes.map(\.codeID))
        return codes.filter { rows[$0.codeID]?.state == state }
    }

    /// An order as it is now; once committed, with the secrets of its codes that are not voided.
    func order(_ orderID: String) throws(KamiError) -> OrderReply {
        try EngineCore.validate(orderID: orderID)
        guard let order = orders.get(orderID) else { throw KamiError(.notFound, "no order \(orderID)") }
        return try answerExisting(order).get()
    }

    /// Every code a user owns (all pages; for tools and tests; storefronts page with
    /// `entitlements(user:withSecrets:limit:cursor:)`).
    func entitlements(user: String, withSecrets: Bool = false) throws(KamiError) -> [Entitlement] {
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
    func entitlements(
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
        walk: for orderID in userOrders.ordersNewestFirst(of: user) {
            guard let order = orders.get(orderID) else { continue }
            if let start, order.seq > start.seq { continue }
            // Paid and waiting for its codes (a supplier, an operator): one pending line.
            let waiting = order.state == .pendingUpstream || (order.state == .review && order.paymentRef != nil)
            guard order.state == .committed || order.state == .refunded || waiting else { continue }
            let lines = waiting ? [OrderCode(codeID: 0, sku: order.sku)] : order.codes
            for (index, code) in lines.enumerated() {
                if let start, order.seq == start.seq, index < start.index { continue }
                if owned.count == pageMax {
                    next = EntitlementCursor(seq: order.seq, index: index)
                    break walk
                }
                owned.append((order, code))
            }
        }
        guard !owned.isEmpty else { return EntitlementsPage(items: [], nextCursor: nil) }
        let ids = owned.map(\.code.codeID).filter { $0 != 0 }
        let rows = try store.codesWithState(ids)
        let used = try store.activations(ids.filter { rows[$0]?.state == .used || rows[$0]?.state == .voided })
        var secrets: [CodeID: Secret] = [:]
        if withSecrets {
            let issued = owned.compactMap { rows[$0.code.codeID] }.filter { $0.state == .issued || $0.state == .used }.map(\.code)
            for code in try reveal(rows: issued) { secrets[code.codeID] = code.secret }
        }
        let now = clock.nowMs()
        let items = owned.map { entry in
            let sku = self.sku(id: entry.code.sku)
            let key = sku?.key ?? "#\(entry.code.sku)"
            guard entry.code.codeID != 0, let row = rows[entry.code.codeID] else {
                var pending = Entitlement(orderID: entry.order.orderID, skuKey: key, codeID: 0, state: .reserved)
                pending.status = .pending
                pending.skuName = sku?.name ?? key
                pending.usageGuide = sku?.usageGuide
                pending.orderedAtMs = entry.order.createdAtMs
                return pending
            }
            let status: Entitlement.Status
            switch (entry.order.state, row.state) {
            case (.refunded, _): status = .refunded
            case (_, .used): status = .used
            case (_, .voided): status = .voided
            case (_, .issued) where (row.code.expiresAtMs ?? Int64.max) < now: status = .expired
            default: status = .delivered
            }
            var item = Entitlement(
                orderID: entry.order.orderID, skuKey: key, codeID: entry.code.codeID, state: row.state,
                activationURL: status == .delivered
                    ? activationURL(sku?.activationURLTemplate, codeID: entry.code.codeID, cardNumber: row.code.cardNumber,
                                    order: entry.order, skuKey: key) : nil,
                secret: secrets[entry.code.codeID], cardNumber: row.code.cardNumber)
            item.status = status
            item.skuName = sku?.name ?? key
            item.usageGuide = sku?.usageGuide
            item.expiresAtMs = row.code.expiresAtMs
            item.orderedAtMs = entry.order.createdAtMs
            item.usedAtMs = used[entry.code.codeID]?.atMs
            return item
        }
        return EntitlementsPage(items: items, nextCursor: next?.text)
    }

    /// Stock of a SKU; for a bundle, `available` is the number of complete bundles.
    func stock(sku skuKey: String) throws(KamiError) -> StockReply {
        let sku = try self.sku(key: skuKey)
        if sku.isBundle {
            let available = sku.components.map { pool.available(sku: $0.sku) / $0.units }.min() ?? 0
            return StockReply(skuKey: sku.key, available: available, reserved: 0, issued: 0, voided: 0, imported: 0)
        }
        let counts = stock.withLock { $0[sku.id] } ?? StockCounts()
        return StockReply(
            skuKey: sku.key, available: pool.available(sku: sku.id), reserved: counts[.reserved], issued: counts[.issued],
            voided: counts[.voided], imported: counts.total, used: counts[.used])
    }

    /// Every SKU in the catalog, by id.
    func skus() -> [Sku] {
        catalog.withLock { Array($0.byID.values) }.sorted { $0.id < $1.id }
    }
}
