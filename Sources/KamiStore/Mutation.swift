public import KamiCore
public import KamiLedger
public import KamiCrypto

/// One code's move as part of a mutation. The only way to change a code's state: the
/// move must be in `CodeState.moves` (another is a programmer error and traps here), and
/// the store applies it only when the code is still in `from` (otherwise the mutation
/// fails and nothing of it is written).
public struct CodeChange: Sendable, Hashable {
    public var codeID: CodeID
    /// The state the code is in now.
    public var from: CodeState
    /// The state it moves to.
    public var state: CodeState
    /// The order holding the code (nil when it returns to the pool or is voided while available).
    public var orderSeq: OrderSeq?

    /// Makes a change; traps on a move the state machine does not allow.
    public init(codeID: CodeID, from: CodeState, to state: CodeState, orderSeq: OrderSeq?) {
        precondition(from.canMove(to: state), "code \(codeID) cannot go from \(from) to \(state)")
        self.codeID = codeID
        self.from = from
        self.state = state
        self.orderSeq = orderSeq
    }
}

/// One durable change, journaled by the group-commit writer. Each carries its audit event.
public enum Mutation: Sendable {
    /// Inserts or updates an order row and the state of the codes it touches.
    /// `ledger`: the money it moves (a delivery's sale and cost, a refund), in the same
    /// transaction.
    case writeOrder(Order, codes: [CodeChange], audit: AuditEvent, ledger: [JournalLine] = [])
    /// Changes code states outside an order (void of available or issued codes); `ledger`:
    /// the stock written off.
    case setCodes([CodeChange], audit: AuditEvent, ledger: [JournalLine] = [])
    /// Inserts (id 0) or updates a SKU; the outcome carries its id.
    case writeSku(Sku, audit: AuditEvent)
    /// Sets a SKU's sourcing.
    case writeSourcing(SkuSourcing, audit: AuditEvent)
    /// Inserts or replaces a supplier mapping (and records its cost in the history when it changed).
    case writeMapping(SupplierMapping, audit: AuditEvent)
    /// Removes a supplier mapping (an absent one is fine).
    case deleteMapping(sku: SkuID, supplier: String, audit: AuditEvent)
    /// Pauses or resumes a supplier.
    case writeSupplierState(supplier: String, paused: Bool, audit: AuditEvent)
    /// Inserts or updates an upstream attempt, and the order with it when given (an order
    /// moving to failed or back to pending in the same transaction).
    case writeAttempt(UpstreamAttempt, order: Order?, audit: AuditEvent)
    /// A supplier delivered: its codes are sealed and stored as issued to the order, the
    /// order committed with them, the attempt succeeded, in one transaction.
    case deliverUpstream(UpstreamDelivery)
    /// Inserts (id 0) or updates a buy-ahead purchase; the outcome carries its id.
    case writeBuyAhead(BuyAhead, audit: AuditEvent)
    /// Adds (or, with `add` false, removes) a risk list entry.
    case writeRiskList(RiskListRow, add: Bool, audit: AuditEvent)
    /// Only an audit entry: a risk decision that created nothing, a reveal of secrets.
    case audit(AuditEvent)
    /// Inserts or replaces a campaign.
    case writeCampaign(Campaign, audit: AuditEvent)
    /// Inserts (id 0; the outcome carries its id) or updates an after-sales case.
    case writeCase(AfterSalesCase, audit: AuditEvent)
    /// A case resolved by a replacement: the order with its new code, the old one voided and
    /// the new one issued, the replacement's cost in the ledger, the case closed, at once.
    case replaceCode(Order, codes: [CodeChange], ledger: [JournalLine], closing: AfterSalesCase, audit: AuditEvent)
    /// Sets a distributor's commission rate (`sku` 0: its default).
    case writeDistributorRate(distributor: String, sku: SkuID, rateBps: Int, audit: AuditEvent)
    /// Inserts or replaces a coupon batch and adds its codes (a code already stored is
    /// skipped); the outcome's row id is how many were added.
    case writeCoupons(CouponBatch, codes: [String], audit: AuditEvent)
    /// Codes of `order` activated (issued → used, each with an activation row: when, and
    /// `via` whom: the storefront, a brand's token).
    case activate(Order, codes: [CodeChange], via: String, audit: AuditEvent)
    /// An event that changes nothing else (stock under its low-water mark, a breaker opened):
    /// its outbox rows and audit entry.
    case webhookEvent(OutboxEvent, audit: AuditEvent)
    /// Delivery outcomes of outbox rows.
    case webhookResults([WebhookResult], audit: AuditEvent)
    /// Dead-lettered rows (`ids`, or all of `endpoint` or all when `ids` is empty) queued
    /// again; the outcome's row id is how many.
    case webhookReplay(ids: [Int64], endpoint: String?, audit: AuditEvent)
    /// Delivered rows done before `beforeMs` deleted, at most `limit`; the outcome's row id is
    /// how many.
    case webhookPrune(beforeMs: Int64, limit: Int, audit: AuditEvent)
}

/// One row of the risk gate's lists.
public struct RiskListRow: Sendable, Hashable {
    /// `block` or `allow`.
    public var list: String
    /// `user`, `ip`, `device`, `payment`.
    public var kind: String
    public var value: String
    public var note: String
    public var addedAtMs: Int64

    public init(list: String, kind: String, value: String, note: String = "", addedAtMs: Int64 = 0) {
        self.list = list
        self.kind = kind
        self.value = value
        self.note = note
        self.addedAtMs = addedAtMs
    }
}

/// What `Mutation.deliverUpstream` writes: codes a supplier (or an operator, by hand) delivered
/// for an order.
public struct UpstreamDelivery: Sendable {
    /// The order as it will be (committed; its `codes` are filled in by the store).
    public var order: Order
    /// The attempt as it will be (succeeded); nil for a manual delivery.
    public var attempt: UpstreamAttempt?
    /// The delivered items with the real SKU each belongs to.
    public var items: [(sku: SkuID, item: DeliveredItem)]
    /// Seals the secrets (the code id is part of the associated data, so sealing happens once
    /// the store has given ids).
    public var sealer: Sealer
    /// The audit entry; the store appends ` codes=<ids>`.
    public var audit: AuditEvent
    /// The import record's source (`upstream:<supplier>`, `manual:<who>`).
    public var source: String
    /// What each code cost.
    public var costCents: Int64
    /// The money it moves: the order's sale and the codes' cost (set by the engine).
    public var ledger: [JournalLine] = []

    /// Makes a supplier's delivery.
    public init(order: Order, attempt: UpstreamAttempt, items: [(sku: SkuID, item: DeliveredItem)], sealer: Sealer,
                audit: AuditEvent) {
        self.order = order
        self.attempt = attempt
        self.items = items
        self.sealer = sealer
        self.audit = audit
        self.source = "upstream:\(attempt.supplier)"
        self.costCents = attempt.costCents
    }

    /// Makes an operator's delivery by hand (no supplier attempt).
    public init(manual order: Order, items: [(sku: SkuID, item: DeliveredItem)], sealer: Sealer, audit: AuditEvent,
                source: String, costCents: Int64) {
        self.order = order
        self.attempt = nil
        self.items = items
        self.sealer = sealer
        self.audit = audit
        self.source = source
        self.costCents = costCents
    }
}

/// What a durable mutation produced.
public enum MutationOutcome: Sendable, Equatable {
    case done
    case skuID(SkuID)
    /// The codes an upstream delivery stored, in item order.
    case codes([OrderCode])
    /// A row id (a buy-ahead purchase).
    case rowID(Int64)
}

/// Called once per mutation, on the writer thread, after its batch is on disk (or failed).
/// Keep it short: the next batch waits for it.
public typealias MutationCompletion = @Sendable (Result<MutationOutcome, KamiError>) -> Void

/// An order's labels as one column: the five fields in a fixed order, separated by U+001F
/// (a control character no label may hold), an absent one empty.
enum LabelsText {
    static func encode(_ labels: OrderLabels) -> String {
        [labels.currency, labels.channel, labels.campaign, labels.coupon, labels.distributor].map { $0 ?? "" }
            .joined(separator: "\u{1F}")
    }

    static func decode(_ text: String?) -> OrderLabels? {
        guard let text else { return nil }
        let parts = text.split(separator: "\u{1F}", omittingEmptySubsequences: false).map { $0.isEmpty ? nil : String($0) }
        guard parts.count == 5 else { return nil }
        return OrderLabels.make(currency: parts[0], channel: parts[1], campaign: parts[2], coupon: parts[3], distributor: parts[4])
    }
}

/// Encoding of an order's code list in the `orders.codes` blob: per code its id (8 bytes)
/// and SKU (4 bytes), little-endian.
enum OrderCodesBlob {
    static let entryBytes = 12

    static func encode(_ codes: [OrderCode]) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(codes.count * entryBytes)
        for code in codes {
            var id = UInt64(bitPattern: code.codeID).littleEndian
            var sku = UInt32(bitPattern: code.sku).littleEndian
            withUnsafeBytes(of: &id) { bytes.append(contentsOf: $0) }
            withUnsafeBytes(of: &sku) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }

    static func decode(_ bytes: [UInt8]) -> [OrderCode]? {
        guard bytes.count % entryBytes == 0 else { return nil }
        var codes = [OrderCode]()
        codes.reserveCapacity(bytes.count / entryBytes)
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let id = raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                let sku = raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
                codes.append(OrderCode(codeID: CodeID(bitPattern: UInt64(littleEndian: id)),
                                       sku: SkuID(bitPattern: UInt32(littleEndian: sku))))
                offset += entryBytes
            }
        }
        return codes
    }
}

/// Components of a bundle in the `skus.components` column: `id:units,id:units`.
enum ComponentsText {
    static func encode(_ components: [BundleComponent]) -> String {
        components.map { "\($0.sku):\($0.units)" }.joined(separator: ",")
    }

    static func decode(_ text: String) -> [BundleComponent]? {
        if text.isEmpty { return [] }
        var result = [BundleComponent]()
        for part in text.split(separator: ",") {
            let pieces = part.split(separator: ":")
            guard pieces.count == 2, let sku = SkuID(pieces[0]), let units = Int(pieces[1]) else { return nil }
            result.append(BundleComponent(sku: sku, units: units))
        }
        return result
    }
}

/// Applies mutations to an open transaction. Statements are cached on the connection.
struct MutationApplier {
    let db: Connection
    /// The batch's summary accumulator (nil: summary rows are written with each line).
    var summary: SummaryAccumulator? = nil
    /// Writes the webhook events of each mutation (nil: no endpoint is configured).
    var outbox: OutboxWriter? = nil

    func apply(_ mutation: Mutation, atMs: Int64, audit: inout AuditChain) throws(SQLiteError) -> MutationOutcome {
        let outcome = try applyChange(mutation, atMs: atMs, audit: &audit)
        if let outbox { try outbox.write(try outbox.events(of: mutation, outcome: outcome), atMs: atMs) }
        return outcome
    }

    private func applyChange(_ mutation: Mutation, atMs: Int64, audit: inout AuditChain) throws(SQLiteError) -> MutationOutcome {
        switch mutation {
        case .writeOrder(let order, let codes, let event, let ledger):
            try writeOrder(order)
            try setCodes(codes)
            try writeLedger(ledger, atMs: atMs)
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .setCodes(let codes, let event, let ledger):
            try setCodes(codes)
            try writeLedger(ledger, atMs: atMs)
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .writeSku(let sku, let event):
            let id = try writeSku(sku, atMs: atMs)
            try audit.append(event, atMs: atMs, db: db)
            return .skuID(id)
        case .writeSourcing(let sourcing, let event):
            try writeSourcing(sourcing, atMs: atMs)
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .writeMapping(let mapping, let event):
            try writeMapping(mapping, atMs: atMs)
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .deleteMapping(let sku, let supplier, let event):
            try deleteMapping(sku: sku, supplier: supplier)
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .writeSupplierState(let supplier, let paused, let event):
            try writeSupplierState(supplier, paused: paused, atMs: atMs)
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .writeAttempt(let attempt, let order, let event):
            try writeAttempt(attempt)
            if let order { try writeOrder(order) }
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .writeBuyAhead(let purchase, let event):
            let id = try writeBuyAhead(purchase)
            try audit.append(event, atMs: atMs, db: db)
            return .rowID(id)
        case .writeRiskList(let row, let add, let event):
            if add {
                let stmt = try db.prepare("INSERT OR REPLACE INTO risk_lists(list, kind, value, note, added_at_ms) VALUES(?,?,?,?,?)")
                stmt.bind(1, row.list)
                stmt.bind(2, row.kind)
                stmt.bind(3, row.value)
                stmt.bind(4, row.note)
                stmt.bind(5, atMs)
                try stmt.run()
            } else {
                let stmt = try db.prepare("DELETE FROM risk_lists WHERE list = ? AND kind = ? AND value = ?")
                stmt.bind(1, row.list)
                stmt.bind(2, row.kind)
                stmt.bind(3, row.value)
                try stmt.run()
            }
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .audit(let event):
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .writeCase(let item, let event):
            let id = try writeCase(item)
            try audit.append(event, atMs: atMs, db: db)
            return .rowID(id)
        case .replaceCode(let order, let codes, let ledger, let closing, let event):
            try writeOrder(order)
            try setCodes(codes)
            try writeLedger(ledger, atMs: atMs)
            _ = try writeCase(closing)
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .writeDistributorRate(let distributor, let sku, let rate, let event):
            let stmt = try db.prepare("""
                INSERT OR REPLACE INTO distributor_rates(distributor, sku_id, rate_bps, updated_at_ms) VALUES(?,?,?,?)
                """)
            stmt.bind(1, distributor)
            stmt.bind(2, Int64(sku))
            stmt.bind(3, rate)
            stmt.bind(4, atMs)
            try stmt.run()
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .writeCampaign(let campaign, let event):
            let stmt = try db.prepare("""
                INSERT OR REPLACE INTO campaigns(key, sku_id, price_cents, discount_cents, starts_at_ms, ends_at_ms, budget_cents,
                    per_user_uses, updated_at_ms) VALUES(?,?,?,?,?,?,?,?,?)
                """)
            stmt.bind(1, campaign.key)
            stmt.bind(2, Int64(campaign.sku))
            if let price = campaign.priceCents { stmt.bind(3, price) } else { stmt.bindNull(3) }
            stmt.bind(4, campaign.discountCents)
            stmt.bind(5, campaign.startsAtMs)
            stmt.bind(6, campaign.endsAtMs)
            stmt.bind(7, campaign.budgetCents)
            stmt.bind(8, campaign.perUserUses)
            stmt.bind(9, atMs)
            try stmt.run()
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .writeCoupons(let batch, let codes, var event):
            let stmt = try db.prepare("""
                INSERT OR REPLACE INTO coupon_batches(key, discount_cents, per_user_uses, updated_at_ms) VALUES(?,?,?,?)
                """)
            stmt.bind(1, batch.key)
            stmt.bind(2, batch.discountCents)
            stmt.bind(3, batch.perUserUses)
            stmt.bind(4, atMs)
            try stmt.run()
            let insert = try db.prepare("INSERT INTO coupons(code, batch, added_at_ms) VALUES(?,?,?) ON CONFLICT(code) DO NOTHING")
            var added: Int64 = 0
            for code in codes {
                insert.bind(1, code)
                insert.bind(2, batch.key)
                insert.bind(3, atMs)
                try insert.run()
                added += Int64(db.changes)
            }
            event.detail += " added=\(added)"
            try audit.append(event, atMs: atMs, db: db)
            return .rowID(added)
        case .activate(let order, let codes, let via, let event):
            try setCodes(codes)
            let stmt = try db.prepare("INSERT INTO activations(code_id, order_seq, at_ms, via) VALUES(?,?,?,?)")
            for change in codes {
                stmt.bind(1, change.codeID)
                stmt.bind(2, order.seq)
                stmt.bind(3, atMs)
                stmt.bind(4, via)
                try stmt.run()
            }
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .webhookEvent(let event, var entry):
            entry.detail += " type=\(event.type.rawValue)"
            try audit.append(entry, atMs: atMs, db: db)
            return .done
        case .webhookResults(let results, let event):
            try OutboxWriter.record(results, db: db, atMs: atMs)
            try audit.append(event, atMs: atMs, db: db)
            return .done
        case .webhookReplay(let ids, let endpoint, var event):
            let count = try OutboxWriter.replay(ids: ids, endpoint: endpoint, db: db, atMs: atMs)
            event.detail += " replayed=\(count)"
            try audit.append(event, atMs: atMs, db: db)
            return .rowID(count)
        case .webhookPrune(let beforeMs, let limit, var event):
            let count = try OutboxWriter.prune(beforeMs: beforeMs, limit: limit, db: db)
            event.detail += " pruned=\(count)"
            try audit.append(event, atMs: atMs, db: db)
            return .rowID(count)
        case .deliverUpstream(let delivery):
            let (codes, resold) = try deliver(delivery, atMs: atMs)
            var event = delivery.audit
            event.detail += " codes=" + codes.map { String($0.codeID) }.joined(separator: ",")
            // A code the store already had: the supplier sold it before (here or elsewhere).
            if !resold.isEmpty { event.detail += " resold=" + resold.map(String.init).joined(separator: ",") }
            try audit.append(event, atMs: atMs, db: db)
            return .codes(codes)
        }
    }

    func writeOrder(_ order: Order) throws(SQLiteError) {
        let stmt = try db.prepare(HotSQL.writeOrder)
        stmt.bind(1, order.seq)
        stmt.bind(2, order.orderID)
        stmt.bind(3, order.user)
        stmt.bind(4, Int64(order.sku))
        stmt.bind(5, order.units)
        stmt.bind(6, Int64(order.state.rawValue))
        stmt.bind(7, order.paymentRef)
        stmt.bind(8, blob: OrderCodesBlob.encode(order.codes))
        stmt.bind(9, order.ttlMs)
        stmt.bind(10, order.expiresAtMs)
        stmt.bind(11, order.createdAtMs)
        stmt.bind(12, order.updatedAtMs)
        if let amount = order.amountCents { stmt.bind(13, amount) } else { stmt.bindNull(13) }
        if let labels = order.labels { stmt.bind(14, LabelsText.encode(labels)) } else { stmt.bindNull(14) }
        stmt.bind(15, order.subsidyCents)
        try stmt.run()
    }

    /// Inserts (id 0) or updates a case; its id.
    func writeCase(_ item: AfterSalesCase) throws(SQLiteError) -> Int64 {
        let stmt = try db.prepare("""
            INSERT INTO cases(id, order_seq, order_id, sku_id, code_id, reason, state, source, opened_at_ms, resolved_at_ms, note)
            VALUES(?,?,?,?,?,?,?,?,?,?,?)
            ON CONFLICT(id) DO UPDATE SET state = excluded.state, resolved_at_ms = excluded.resolved_at_ms, note = excluded.note
            """)
        if item.id == 0 { stmt.bindNull(1) } else { stmt.bind(1, item.id) }
        stmt.bind(2, item.orderSeq)
        stmt.bind(3, item.orderID)
        stmt.bind(4, Int64(item.sku))
        if let code = item.codeID { stmt.bind(5, code) } else { stmt.bindNull(5) }
        stmt.bind(6, item.reason.rawValue)
        stmt.bind(7, Int64(item.state.rawValue))
        stmt.bind(8, item.source)
        stmt.bind(9, item.openedAtMs)
        if let resolved = item.resolvedAtMs { stmt.bind(10, resolved) } else { stmt.bindNull(10) }
        stmt.bind(11, item.note)
        try stmt.run()
        return item.id == 0 ? db.lastInsertRowID : item.id
    }

    /// Appends journal lines (the caller's transaction makes them one with the change).
    func writeLedger(_ lines: [JournalLine], atMs: Int64) throws(SQLiteError) {
        guard !lines.isEmpty else { return }
        let stmt = try db.prepare(HotSQL.writeLedger)
        for line in lines {
            stmt.bind(1, Int64(line.kind.rawValue))
            if let seq = line.orderSeq { stmt.bind(2, seq) } else { stmt.bindNull(2) }
            stmt.bind(3, Int64(line.sku))
            stmt.bind(4, line.debit.description)
            stmt.bind(5, line.credit.description)
            stmt.bind(6, line.amountCents)
            stmt.bind(7, line.currency)
            stmt.bind(8, atMs)
            try stmt.run()
        }
        if let summary {
            for line in lines { summary.add(line, atMs: atMs) }
        } else {
            var rows: [SummaryKey: (cents: Int64, lines: Int64)] = [:]
            for line in lines {
                let key = SummaryKey(line: line, atMs: atMs)
                let old = rows[key] ?? (0, 0)
                rows[key] = (Money.sum(old.cents, line.amountCents), old.lines + SummaryAccumulator.count(line))
            }
            try SummaryAccumulator.write(rows, db)
        }
    }

    /// Applies the code moves of an issue-log record: a code no longer in the state the
    /// record says it left is counted (returned) rather than failing the derivation, because
    /// the record is already the committed fact (`verify` reports the disagreement).
    func setCodesDerived(_ codes: [CodeChange]) throws(SQLiteError) -> Int { try move(codes).count }

    private func setCodes(_ codes: [CodeChange]) throws(SQLiteError) {
        if let id = try move(codes).first {
            throw SQLiteError(resultCode: 0, context: "set code state",
                              message: "code \(id) is not \(codes.first { $0.codeID == id }!.from) (or has no state row)")
        }
    }

    /// Moves each code that is still in its `from` state; returns the ids that were not.
    private func move(_ codes: [CodeChange]) throws(SQLiteError) -> [CodeID] {
        guard !codes.isEmpty else { return [] }
        let stmt = try db.prepare(HotSQL.setCodeState)
        var missed: [CodeID] = []
        for change in codes {
            stmt.bind(1, Int64(change.state.rawValue))
            if let seq = change.orderSeq { stmt.bind(2, seq) } else { stmt.bindNull(2) }
            stmt.bind(3, change.codeID)
            stmt.bind(4, Int64(change.from.rawValue))
            try stmt.run()
            if db.changes != 1 { missed.append(change.codeID) }
        }
        return missed
    }

    private func writeSku(_ sku: Sku, atMs: Int64) throws(SQLiteError) -> SkuID {
        if sku.id == 0 {
            let stmt = try db.prepare("""
                INSERT INTO skus(key, name, price_cents, per_user_limit, activation_url, components,
                    created_at_ms, updated_at_ms, manual_delivery, review_ttl_ms, usage_guide) VALUES(?,?,?,?,?,?,?,?,?,?,?)
                """)
            stmt.bind(1, sku.key)
            stmt.bind(2, sku.name)
            stmt.bind(3, sku.priceCents)
            stmt.bind(4, sku.perUserLimit)
            stmt.bind(5, sku.activationURLTemplate)
            stmt.bind(6, ComponentsText.encode(sku.components))
            stmt.bind(7, atMs)
            stmt.bind(8, atMs)
            stmt.bind(9, Int64(sku.manualDelivery ? 1 : 0))
            stmt.bind(10, sku.reviewTTLMs)
            stmt.bind(11, sku.usageGuide)
            try stmt.run()
            return SkuID(db.lastInsertRowID)
        }
        let stmt = try db.prepare("""
            UPDATE skus SET name = ?, price_cents = ?, per_user_limit = ?, activation_url = ?, components = ?,
                updated_at_ms = ?, manual_delivery = ?, review_ttl_ms = ?, usage_guide = ? WHERE id = ?
            """)
        stmt.bind(1, sku.name)
        stmt.bind(2, sku.priceCents)
        stmt.bind(3, sku.perUserLimit)
        stmt.bind(4, sku.activationURLTemplate)
        stmt.bind(5, ComponentsText.encode(sku.components))
        stmt.bind(6, atMs)
        stmt.bind(7, Int64(sku.manualDelivery ? 1 : 0))
        stmt.bind(8, sku.reviewTTLMs)
        stmt.bind(9, sku.usageGuide)
        stmt.bind(10, Int64(sku.id))
        try stmt.run()
        return sku.id
    }
}
