public import KamiCore
import CSQLite
import KamiCrypto

/// Everything about suppliers the store holds, read at boot and by `verify`.
public struct UpstreamSnapshot: Sendable {
    public var sourcing: [SkuSourcing] = []
    public var mappings: [SupplierMapping] = []
    /// Suppliers the operator paused.
    public var paused: Set<String> = []
    public var attempts: [UpstreamAttempt] = []
    /// Buy-ahead purchases whose outcome is open.
    public var openBuyAheads: [BuyAhead] = []
}

/// One change of a supplier's cost for a SKU.
public struct CostChange: Sendable, Hashable {
    public var sku: SkuID
    public var supplier: String
    public var costCents: Int64
    public var stock: Int?
    public var atMs: Int64
}

extension Store {
    /// Sourcing, mappings, paused suppliers and every attempt.
    public func loadUpstream() throws(KamiError) -> UpstreamSnapshot {
        try read { db throws(SQLiteError) in
            var snapshot = UpstreamSnapshot()
            let sourcing = try db.prepare("""
                SELECT sku_id, policy, strategy, min_margin_cents, no_candidate, low_water, buy_ahead_units,
                    buy_ahead_budget_cents FROM sku_sourcing ORDER BY sku_id
                """)
            defer { sourcing.reset() }
            while try sourcing.step() {
                snapshot.sourcing.append(SkuSourcing(
                    sku: SkuID(sourcing.int64(0)),
                    policy: SourcePolicy(rawValue: UInt8(truncatingIfNeeded: sourcing.int64(1))) ?? .pool,
                    strategy: RoutingStrategy(rawValue: UInt8(truncatingIfNeeded: sourcing.int64(2))) ?? .cheapest,
                    minMarginCents: sourcing.int64(3),
                    noCandidate: NoCandidatePolicy(rawValue: UInt8(truncatingIfNeeded: sourcing.int64(4))) ?? .fail,
                    lowWater: sourcing.int(5), buyAheadUnits: sourcing.int(6), buyAheadBudgetCents: sourcing.int64(7)))
            }
            sourcing.reset()
            let mappings = try db.prepare("""
                SELECT sku_id, supplier, product_id, cost_cents, priority, weight, stock, updated_at_ms
                FROM supplier_mappings ORDER BY sku_id, supplier
                """)
            defer { mappings.reset() }
            while try mappings.step() {
                snapshot.mappings.append(SupplierMapping(
                    sku: SkuID(mappings.int64(0)), supplier: mappings.text(1) ?? "", productID: mappings.text(2) ?? "",
                    costCents: mappings.int64(3), priority: mappings.int(4), weight: mappings.int(5),
                    stock: mappings.isNull(6) ? nil : mappings.int(6), updatedAtMs: mappings.int64(7)))
            }
            mappings.reset()
            let paused = try db.prepare("SELECT supplier FROM supplier_state WHERE paused = 1")
            defer { paused.reset() }
            while try paused.step() { snapshot.paused.insert(paused.text(0) ?? "") }
            paused.reset()
            snapshot.attempts = try Store.attempts(db, whereClause: "", bind: { _ in })
            snapshot.openBuyAheads = try Store.buyAheads(db, whereClause: "WHERE state NOT IN (3, 4)", bind: { _ in })
            return snapshot
        }
    }

    /// The risk gate's list entries, by list, kind and value.
    public func riskLists() throws(KamiError) -> [RiskListRow] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT list, kind, value, note, added_at_ms FROM risk_lists ORDER BY list, kind, value")
            defer { stmt.reset() }
            var rows: [RiskListRow] = []
            while try stmt.step() {
                rows.append(RiskListRow(list: stmt.text(0) ?? "", kind: stmt.text(1) ?? "", value: stmt.text(2) ?? "",
                                        note: stmt.text(3) ?? "", addedAtMs: stmt.int64(4)))
            }
            return rows
        }
    }

    /// The stored code each fingerprint belongs to, or nil where the store has no such secret
    /// (a manual delivery refuses a code that was ever sold or stocked).
    public func codes(withFingerprints fingerprints: [[UInt8]]) throws(KamiError) -> [CodeID?] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT code_id FROM fingerprints WHERE fp = ?")
            defer { stmt.reset() }
            var found: [CodeID?] = []
            for fingerprint in fingerprints {
                stmt.bind(1, blob: fingerprint)
                found.append(try stmt.step() ? stmt.int64(0) : nil)
                stmt.reset()
            }
            return found
        }
    }

    /// The attempts for one order, oldest first.
    public func attempts(orderSeq: OrderSeq) throws(KamiError) -> [UpstreamAttempt] {
        try read { db throws(SQLiteError) in
            try Store.attempts(db, whereClause: "WHERE order_seq = ?", bind: { $0.bind(1, orderSeq) })
        }
    }

    /// The attempts at one supplier created within `fromMs..<toMs`, for reconciliation.
    public func attempts(supplier: String, fromMs: Int64, toMs: Int64) throws(KamiError) -> [UpstreamAttempt] {
        try read { db throws(SQLiteError) in
            try Store.attempts(db, whereClause: "WHERE supplier = ? AND created_at_ms >= ? AND created_at_ms < ?", bind: {
                $0.bind(1, supplier)
                $0.bind(2, fromMs)
                $0.bind(3, toMs)
            })
        }
    }

    /// The cost history of a SKU (all suppliers), oldest first, at most `limit` entries.
    public func costHistory(sku: SkuID, limit: Int = 1_000) throws(KamiError) -> [CostChange] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("""
                SELECT sku_id, supplier, cost_cents, stock, at_ms FROM supplier_costs WHERE sku_id = ?
                ORDER BY id DESC LIMIT ?
                """)
            defer { stmt.reset() }
            stmt.bind(1, Int64(sku))
            stmt.bind(2, limit)
            var result: [CostChange] = []
            while try stmt.step() {
                result.append(CostChange(sku: SkuID(stmt.int64(0)), supplier: stmt.text(1) ?? "", costCents: stmt.int64(2),
                                         stock: stmt.isNull(3) ? nil : stmt.int(3), atMs: stmt.int64(4)))
            }
            return result.reversed()
        }
    }

    /// Buy-ahead purchases of a SKU created at or after `sinceMs` (the day's spending).
    public func buyAheads(sku: SkuID, sinceMs: Int64) throws(KamiError) -> [BuyAhead] {
        try read { db throws(SQLiteError) in
            try Store.buyAheads(db, whereClause: "WHERE sku_id = ? AND created_at_ms >= ?", bind: {
                $0.bind(1, Int64(sku))
                $0.bind(2, sinceMs)
            })
        }
    }

    private static func buyAheads(
        _ db: Connection, whereClause: String, bind: (Statement) -> Void
    ) throws(SQLiteError) -> [BuyAhead] {
        let stmt = try db.prepare("""
            SELECT id, sku_id, supplier, customer_no, units, cost_cents, state, detail, created_at_ms, updated_at_ms, sends
            FROM buy_ahead \(whereClause) ORDER BY id
            """)
        defer { stmt.reset() }
        bind(stmt)
        var result: [BuyAhead] = []
        while try stmt.step() {
            result.append(BuyAhead(
                id: stmt.int64(0), sku: SkuID(stmt.int64(1)), supplier: stmt.text(2) ?? "", customerOrderNo: stmt.text(3) ?? "",
                units: stmt.int(4), costCents: stmt.int64(5), sends: stmt.int(10),
                state: AttemptState(rawValue: UInt8(truncatingIfNeeded: stmt.int64(6))) ?? .unknown,
                detail: stmt.text(7) ?? "", createdAtMs: stmt.int64(8), updatedAtMs: stmt.int64(9)))
        }
        return result
    }

    private static func attempts(
        _ db: Connection, whereClause: String, bind: (Statement) -> Void
    ) throws(SQLiteError) -> [UpstreamAttempt] {
        let stmt = try db.prepare("""
            SELECT order_seq, supplier, sends, customer_no, state, supplier_ref, cost_cents, detail, created_at_ms,
                updated_at_ms FROM upstream_attempts \(whereClause) ORDER BY created_at_ms, order_seq
            """)
        defer { stmt.reset() }
        bind(stmt)
        var result: [UpstreamAttempt] = []
        while try stmt.step() {
            guard let state = AttemptState(rawValue: UInt8(truncatingIfNeeded: stmt.int64(4))) else {
                throw SQLiteError(resultCode: 0, context: "attempts", message: "attempt of order \(stmt.int64(0)) has state \(stmt.int64(4))")
            }
            result.append(UpstreamAttempt(
                orderSeq: stmt.int64(0), supplier: stmt.text(1) ?? "", sends: stmt.int(2), customerOrderNo: stmt.text(3) ?? "",
                state: state, supplierRef: stmt.text(5), costCents: stmt.int64(6), detail: stmt.text(7) ?? "",
                createdAtMs: stmt.int64(8), updatedAtMs: stmt.int64(9)))
        }
        return result
    }
}

extension MutationApplier {
    func writeSourcing(_ sourcing: SkuSourcing, atMs: Int64) throws(SQLiteError) {
        let stmt = try db.prepare("""
            INSERT OR REPLACE INTO sku_sourcing(sku_id, policy, strategy, min_margin_cents, no_candidate, low_water,
                buy_ahead_units, buy_ahead_budget_cents, updated_at_ms) VALUES(?,?,?,?,?,?,?,?,?)
            """)
        stmt.bind(1, Int64(sourcing.sku))
        stmt.bind(2, Int64(sourcing.policy.rawValue))
        stmt.bind(3, Int64(sourcing.strategy.rawValue))
        stmt.bind(4, sourcing.minMarginCents)
        stmt.bind(5, Int64(sourcing.noCandidate.rawValue))
        stmt.bind(6, sourcing.lowWater)
        stmt.bind(7, sourcing.buyAheadUnits)
        stmt.bind(8, sourcing.buyAheadBudgetCents)
        stmt.bind(9, atMs)
        try stmt.run()
    }

    func writeMapping(_ mapping: SupplierMapping, atMs: Int64) throws(SQLiteError) {
        let previous = try db.prepare("SELECT cost_cents, stock FROM supplier_mappings WHERE sku_id = ? AND supplier = ?")
        previous.bind(1, Int64(mapping.sku))
        previous.bind(2, mapping.supplier)
        var changed = true
        if try previous.step() {
            let stock: Int? = previous.isNull(1) ? nil : previous.int(1)
            changed = previous.int64(0) != mapping.costCents || stock != mapping.stock
        }
        previous.reset()
        let stmt = try db.prepare("""
            INSERT OR REPLACE INTO supplier_mappings(sku_id, supplier, product_id, cost_cents, priority, weight, stock,
                updated_at_ms) VALUES(?,?,?,?,?,?,?,?)
            """)
        stmt.bind(1, Int64(mapping.sku))
        stmt.bind(2, mapping.supplier)
        stmt.bind(3, mapping.productID)
        stmt.bind(4, mapping.costCents)
        stmt.bind(5, mapping.priority)
        stmt.bind(6, mapping.weight)
        if let stock = mapping.stock { stmt.bind(7, stock) } else { stmt.bindNull(7) }
        stmt.bind(8, atMs)
        try stmt.run()
        guard changed else { return }
        let history = try db.prepare("INSERT INTO supplier_costs(sku_id, supplier, cost_cents, stock, at_ms) VALUES(?,?,?,?,?)")
        history.bind(1, Int64(mapping.sku))
        history.bind(2, mapping.supplier)
        history.bind(3, mapping.costCents)
        if let stock = mapping.stock { history.bind(4, stock) } else { history.bindNull(4) }
        history.bind(5, atMs)
        try history.run()
    }

    func deleteMapping(sku: SkuID, supplier: String) throws(SQLiteError) {
        let stmt = try db.prepare("DELETE FROM supplier_mappings WHERE sku_id = ? AND supplier = ?")
        stmt.bind(1, Int64(sku))
        stmt.bind(2, supplier)
        try stmt.run()
    }

    func writeBuyAhead(_ purchase: BuyAhead) throws(SQLiteError) -> Int64 {
        let stmt = try db.prepare(purchase.id == 0 ? """
            INSERT INTO buy_ahead(sku_id, supplier, customer_no, units, cost_cents, state, detail, created_at_ms, updated_at_ms,
                sends) VALUES(?,?,?,?,?,?,?,?,?,?)
            """ : """
            UPDATE buy_ahead SET sku_id = ?, supplier = ?, customer_no = ?, units = ?, cost_cents = ?, state = ?, detail = ?,
                created_at_ms = ?, updated_at_ms = ?, sends = ? WHERE id = ?
            """)
        stmt.bind(1, Int64(purchase.sku))
        stmt.bind(2, purchase.supplier)
        stmt.bind(3, purchase.customerOrderNo)
        stmt.bind(4, purchase.units)
        stmt.bind(5, purchase.costCents)
        stmt.bind(6, Int64(purchase.state.rawValue))
        stmt.bind(7, purchase.detail)
        stmt.bind(8, purchase.createdAtMs)
        stmt.bind(9, purchase.updatedAtMs)
        stmt.bind(10, purchase.sends)
        if purchase.id != 0 { stmt.bind(11, purchase.id) }
        try stmt.run()
        return purchase.id == 0 ? db.lastInsertRowID : purchase.id
    }

    func writeSupplierState(_ supplier: String, paused: Bool, atMs: Int64) throws(SQLiteError) {
        let stmt = try db.prepare("INSERT OR REPLACE INTO supplier_state(supplier, paused, updated_at_ms) VALUES(?,?,?)")
        stmt.bind(1, supplier)
        stmt.bind(2, paused ? 1 : 0)
        stmt.bind(3, atMs)
        try stmt.run()
    }

    func writeAttempt(_ attempt: UpstreamAttempt) throws(SQLiteError) {
        let stmt = try db.prepare("""
            INSERT OR REPLACE INTO upstream_attempts(order_seq, supplier, sends, customer_no, state, supplier_ref,
                cost_cents, detail, created_at_ms, updated_at_ms) VALUES(?,?,?,?,?,?,?,?,?,?)
            """)
        stmt.bind(1, attempt.orderSeq)
        stmt.bind(2, attempt.supplier)
        stmt.bind(3, attempt.sends)
        stmt.bind(4, attempt.customerOrderNo)
        stmt.bind(5, Int64(attempt.state.rawValue))
        stmt.bind(6, attempt.supplierRef)
        stmt.bind(7, attempt.costCents)
        stmt.bind(8, attempt.detail)
        stmt.bind(9, attempt.createdAtMs)
        stmt.bind(10, attempt.updatedAtMs)
        try stmt.run()
    }

    /// Stores delivered items as codes issued to the order (one import record per delivery,
    /// so conservation holds: every code row belongs to an import), then the order and the
    /// attempt. A secret the store already has (by fingerprint) is still stored for this
    /// order (the buyer paid and the supplier delivered; a resold code is the supplier's
    /// fraud to take up, not the buyer's loss); its fingerprint keeps pointing at the first.
    func deliver(_ delivery: UpstreamDelivery, atMs: Int64) throws(SQLiteError) -> (codes: [OrderCode], resold: [CodeID]) {
        guard !delivery.items.isEmpty else {
            throw SQLiteError(resultCode: 0, context: "deliver", message: "an upstream delivery without items")
        }
        let firstID = (try db.scalarInt("SELECT MAX(id) FROM codes") ?? 0) + 1
        let importID = (try db.scalarInt("SELECT MAX(id) FROM imports") ?? 0) + 1
        let insertCode = try db.prepare("""
            INSERT INTO codes(id, sku_id, import_id, batch, card_number, cost_cents, expires_at_ms, key_id, nonce,
                sealed) VALUES(?,?,?,?,?,?,?,?,?,?)
            """)
        let insertState = try db.prepare("INSERT INTO code_state(id, sku_id, state, order_seq) VALUES(?,?,?,?)")
        let insertFingerprint = try db.prepare(
            "INSERT INTO fingerprints(fp, code_id) VALUES(?, ?) ON CONFLICT(fp) DO NOTHING")
        // Grouped by SKU (stable), so each SKU's codes are one contiguous id range with its
        // own import row, as the pool's segments expect at boot.
        var groups: [(sku: SkuID, items: [DeliveredItem])] = []
        for entry in delivery.items {
            if let index = groups.firstIndex(where: { $0.sku == entry.sku }) {
                groups[index].items.append(entry.item)
            } else {
                groups.append((entry.sku, [entry.item]))
            }
        }
        let record = try db.prepare("""
            INSERT INTO imports(id, sku_id, first_code_id, last_code_id, imported, rejected, batch, source,
                created_at_ms) VALUES(?,?,?,?,?,0,NULL,?,?)
            """)
        var codes: [OrderCode] = []
        var resold: [CodeID] = []
        var id = firstID
        for (offset, group) in groups.enumerated() {
            let groupImport = importID + Int64(offset)
            let groupFirst = id
            for item in group.items {
                let sealed = delivery.sealer.seal(item.secret, aad: Sealer.associatedData(codeID: id, skuID: group.sku))
                insertCode.bind(1, id)
                insertCode.bind(2, Int64(group.sku))
                insertCode.bind(3, groupImport)
                insertCode.bindNull(4)
                insertCode.bind(5, item.cardNumber)
                insertCode.bind(6, delivery.costCents)
                if let expires = item.expiresAtMs { insertCode.bind(7, expires) } else { insertCode.bindNull(7) }
                insertCode.bind(8, Int64(sealed.keyID))
                insertCode.bind(9, blob: sealed.nonce)
                insertCode.bind(10, blob: sealed.ciphertextAndTag)
                try insertCode.run()
                insertState.bind(1, id)
                insertState.bind(2, Int64(group.sku))
                insertState.bind(3, Int64(CodeState.issued.rawValue))
                insertState.bind(4, delivery.order.seq)
                try insertState.run()
                insertFingerprint.bind(1, blob: delivery.sealer.fingerprint(item.secret))
                insertFingerprint.bind(2, id)
                try insertFingerprint.run()
                if db.changes == 0 {
                    // An operator's code is checked before it is sent here, but a supplier's
                    // delivery or buy-ahead may have stored the same secret since: refused
                    // here, in the write, a code by hand is never handed out twice.
                    guard delivery.attempt != nil else {
                        throw SQLiteError(
                            resultCode: SQLITE_CONSTRAINT, context: SQLiteError.manualDuplicateContext,
                            message: "code \(codes.count + 1) of the delivery is already stored; a code is handed out once")
                    }
                    resold.append(id)
                }
                codes.append(OrderCode(codeID: id, sku: group.sku))
                id += 1
            }
            record.bind(1, groupImport)
            record.bind(2, Int64(group.sku))
            record.bind(3, groupFirst)
            record.bind(4, id - 1)
            record.bind(5, group.items.count)
            record.bind(6, delivery.source)
            record.bind(7, atMs)
            try record.run()
        }
        var order = delivery.order
        order.codes = codes
        try writeOrder(order)
        try writeLedger(delivery.ledger, atMs: atMs)
        if let attempt = delivery.attempt { try writeAttempt(attempt) }
        return (codes, resold)
    }
}
