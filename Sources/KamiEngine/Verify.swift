import KamiLedger
import KamiCore
import KamiPool
import Synchronization
import KamiStore

/// One broken invariant found by `EngineCore.verify()`.
public struct Violation: Sendable, Hashable, CustomStringConvertible {
    /// Which invariant: `conservation`, `double-issue`, `order-codes`, `user-limit`, `memory`, `audit`, `storage`, `upstream`, `risk-lists`, `ledger`, `outbox`, `activation`, `issue-log`.
    public var invariant: String
    /// What exactly is wrong.
    public var detail: String
    public var description: String { "\(invariant): \(detail)" }
}

extension EngineCore {
    /// Checks every invariant of the brief against the database and memory, and returns each
    /// violation (empty when all hold). The database is read in one read transaction, so its
    /// checks hold at any time; memory is compared with the disk, so those checks are exact
    /// only at rest (no operation in flight).
    func verify() throws(KamiError) -> [Violation] {
        // The audit anchor before the snapshot: it may lag the chain in it, never lead it.
        let anchor = store.auditAnchor()
        var violations = try store.consistentRead { () throws(KamiError) in try verifyInSnapshot(anchor: anchor) }
        // 7. SQLite's own structure: every page, index and constraint.
        let integrity = try store.integrityCheck()
        if integrity != "ok" {
            violations.append(Violation(invariant: "storage", detail: "integrity_check: \(integrity.prefix(500))"))
        }
        return violations
    }

    private func verifyInSnapshot(anchor: AuditAnchorReading) throws(KamiError) -> [Violation] {
        var violations: [Violation] = []
        func fail(_ invariant: String, _ detail: String) {
            violations.append(Violation(invariant: invariant, detail: detail))
        }
        let counts = try store.stateCounts()
        let snapshot = try store.loadSnapshot()

        // 0. The issue log: nothing derived that is not in it, and no record whose code moves
        // found their codes elsewhere (the engine and the disk disagreed).
        let log = try store.issueLogStatus()
        if log.derived < 0 || log.derived > log.last {
            fail("issue-log", "meta.issue_log_derived says record \(log.derived) is derived, but the log ends at \(log.last)")
        }
        let conflicts = log.conflicts
        if conflicts != 0 {
            fail("issue-log", "\(conflicts) code moves of issue-log records found their code in another state than the "
                + "record says it left (see the order-codes findings)")
        }

        // 2. Conservation: available + reserved + issued + voided = imported, per SKU.
        for sku in Set(counts.states.keys).union(counts.imported.keys) {
            let disk = StockCounts(byState: counts.states[sku] ?? CodeState.zeroCounts)
            let imported = counts.imported[sku] ?? 0
            if disk.total != imported || (counts.rows[sku] ?? 0) != imported {
                fail("conservation", "SKU \(skuKey(sku)): states (\(disk)) sum to \(disk.total), "
                    + "code rows \(counts.rows[sku] ?? 0), imported \(imported)")
            }
            let memory = stock.withLock { $0[sku] } ?? StockCounts()
            if memory != disk {
                fail("memory", "SKU \(skuKey(sku)): memory counts (\(memory)) differ from disk (\(disk))")
            }
            if pool.available(sku: sku) != disk[.available] {
                fail("memory", "SKU \(skuKey(sku)): pool has \(pool.available(sku: sku)) available, disk \(disk[.available])")
            }
        }

        // 1. A code is held by at most one order, and each order's codes are in a state its own
        // state allows (`OrderState.codeStates`, the one table of what an order implies).
        var holder: [CodeID: OrderSeq] = [:]
        var heldCodes: [CodeID] = []
        for order in snapshot.orders where order.state.codeStates != nil {
            for code in order.codes {
                if let other = holder[code.codeID] {
                    fail("double-issue", "code \(code.codeID) is on orders \(other) and \(order.seq)")
                }
                holder[code.codeID] = order.seq
                heldCodes.append(code.codeID)
            }
        }
        let codeStates = try store.codeStates(heldCodes)
        var expectedHeld = StockCounts()
        for order in snapshot.orders {
            guard let allowed = order.state.codeStates else { continue }
            for code in order.codes {
                guard let entry = codeStates[code.codeID] else {
                    fail("order-codes", "order \(order.orderID) holds unknown code \(code.codeID)")
                    continue
                }
                if !allowed.contains(entry.state) || entry.orderSeq != order.seq {
                    fail("order-codes", "order \(order.orderID) (\(order.state)) has code \(code.codeID) in state "
                        + "\(entry.state) held by \(entry.orderSeq.map(String.init) ?? "nobody")")
                }
                if entry.state.isHeld { expectedHeld[entry.state] += 1 }
            }
        }
        // Every code in a held state (reserved, issued) belongs to an order.
        var totals = StockCounts()
        for perSku in counts.states.values {
            for state in CodeState.allCases { totals[state] += perSku[Int(state.rawValue)] }
        }
        for state in CodeState.allCases where state.isHeld && totals[state] != expectedHeld[state] {
            fail("order-codes", "disk has \(totals[state]) \(state) codes but orders hold \(expectedHeld[state])")
        }

        // 4. Per-user limits.
        var units: [String: [SkuID: Int]] = [:]
        for order in snapshot.orders where order.state.holdsCodes {
            units[order.user, default: [:]][order.sku, default: 0] += order.units
        }
        for (user, perSku) in units {
            for (skuID, held) in perSku {
                if let sku = sku(id: skuID), sku.perUserLimit > 0, held > sku.perUserLimit {
                    fail("user-limit", "user \(user) holds \(held) units of \(sku.key), limit \(sku.perUserLimit)")
                }
                if userLimits.units(user: user, sku: skuID) != held {
                    fail("memory", "user \(user) SKU \(skuKey(skuID)): memory counts "
                        + "\(userLimits.units(user: user, sku: skuID)) units, disk \(held)")
                }
            }
        }

        // Memory orders agree with disk, every field (memory holds them packed).
        for order in snapshot.orders {
            guard let memory = orders.get(order.orderID) else {
                fail("memory", "order \(order.orderID) is on disk but not in memory")
                continue
            }
            if memory.state != order.state || memory.codes != order.codes {
                fail("memory", "order \(order.orderID): memory says \(memory.state), disk says \(order.state)")
            } else if memory != order {
                let fields: [(String, Bool)] = [
                    ("seq", memory.seq == order.seq), ("user", memory.user == order.user), ("sku", memory.sku == order.sku),
                    ("units", memory.units == order.units), ("payment_ref", memory.paymentRef == order.paymentRef),
                    ("ttl_ms", memory.ttlMs == order.ttlMs), ("expires_at_ms", memory.expiresAtMs == order.expiresAtMs),
                    ("created_at_ms", memory.createdAtMs == order.createdAtMs),
                    ("updated_at_ms", memory.updatedAtMs == order.updatedAtMs),
                    ("amount_cents", memory.amountCents == order.amountCents), ("labels", memory.labels == order.labels),
                    ("subsidy_cents", memory.subsidyCents == order.subsidyCents),
                ]
                fail("memory", "order \(order.orderID): memory and disk differ in "
                    + fields.filter { !$0.1 }.map(\.0).joined(separator: ", "))
            }
        }

        // 7. Upstream: one order is bought at most once. A delivered upstream order has
        // exactly one succeeded attempt and no order has two; an order still pending has
        // none; a failed order has no attempt whose outcome is open (it was never failed
        // while a supplier might still sell); and no order has two open attempts at once.
        let upstreamSnapshot = try store.loadUpstream()
        var attemptsByOrder: [OrderSeq: [UpstreamAttempt]] = [:]
        for attempt in upstreamSnapshot.attempts { attemptsByOrder[attempt.orderSeq, default: []].append(attempt) }
        let ordersBySeq = Dictionary(snapshot.orders.map { ($0.seq, $0) }, uniquingKeysWith: { first, _ in first })
        for (seq, attempts) in attemptsByOrder {
            guard let order = ordersBySeq[seq] else {
                fail("upstream", "attempts at \(attempts.map(\.supplier)) for unknown order seq \(seq)")
                continue
            }
            let succeeded = attempts.filter { $0.state == .succeeded }
            let open = attempts.filter { !$0.state.isFinal }
            if succeeded.count > 1 {
                fail("upstream", "order \(order.orderID) was bought twice: at \(succeeded.map(\.supplier).joined(separator: " and "))")
            }
            if open.count > 1 {
                fail("upstream", "order \(order.orderID) has open attempts at \(open.map(\.supplier).joined(separator: " and ")) at once")
            }
            switch order.state {
            case .refunded:
                if !open.isEmpty {
                    fail("upstream", "order \(order.orderID) was refunded while \(open[0].supplier) may still sell it")
                }
            case .committed:
                if succeeded.count != 1 {
                    fail("upstream", "order \(order.orderID) (\(order.state)) was fulfilled upstream with \(succeeded.count) successful attempts")
                }
            case .pendingUpstream:
                if !succeeded.isEmpty {
                    fail("upstream", "order \(order.orderID) is pending but \(succeeded[0].supplier) delivered it")
                }
            case .failed:
                if !succeeded.isEmpty || !open.isEmpty {
                    fail("upstream", "order \(order.orderID) failed while attempts at "
                        + (succeeded + open).map { "\($0.supplier) (\($0.state))" }.joined(separator: ", ") + " may have sold")
                }
            case .reserved, .released, .expired, .review:
                fail("upstream", "order \(order.orderID) (\(order.state)) has upstream attempts")
            }
        }

        // 7b. Buy-ahead: one purchase open per SKU at a time (a second would buy the same
        // shortfall twice), and every row well-formed: some units, a cost, sent at least once
        // once it left the placing state, for a SKU that exists.
        let skuIDs = Set(snapshot.skus.map(\.id))
        var openBuyAhead: [SkuID: String] = [:]
        for sku in snapshot.skus where !sku.isBundle {
            for purchase in try store.buyAheads(sku: sku.id, sinceMs: 0) {
                if purchase.units <= 0 || purchase.costCents < 0 || purchase.sends < 0 || (purchase.state != .placing && purchase.sends < 1) {
                    fail("upstream", "buy-ahead \(purchase.customerOrderNo) is malformed: \(purchase.units) units at "
                        + "\(purchase.costCents), \(purchase.sends) sends, \(purchase.state)")
                }
                guard !purchase.state.isFinal else { continue }
                if let other = openBuyAhead[sku.id] {
                    fail("upstream", "buy-ahead purchases \(other) and \(purchase.customerOrderNo) of \(sku.key) are open at once")
                }
                openBuyAhead[sku.id] = purchase.customerOrderNo
            }
        }
        for purchase in upstreamSnapshot.openBuyAheads where !skuIDs.contains(purchase.sku) {
            fail("upstream", "buy-ahead \(purchase.customerOrderNo) is for unknown SKU id \(purchase.sku)")
        }

        // 9. Money (the ledger): every account balances (debits = credits, by construction of
        // a journal line, and no line names an unknown account); every delivered order placed
        // with an amount has its one sale line of that amount and cost lines adding up to
        // what its codes cost; a refunded one has its sale reversed exactly; the inventory
        // account holds what the codes in stock cost.
        let money: LedgerFigures
        do throws(KamiError) { money = try store.ledgerFigures() } catch {
            // SQLite refuses a SUM past 64 bits: amounts no kamid could write.
            fail("ledger", "the ledger cannot be summed: \(error.message)")
            money = LedgerFigures()
        }
        for pair in money.unknownAccounts.prefix(20) { fail("ledger", "lines name an unknown account: \(pair)") }
        // Every line has a shape its kind allows: its two accounts, whether it names an order,
        // an amount of at least 0.
        for shape in money.shapes {
            let debit = Account(name: shape.debit), credit = Account(name: shape.credit)
            let allowed: Bool
            switch JournalKind(rawValue: UInt8(exactly: shape.kind) ?? 0) {
            case .sale?: allowed = debit == .clearing && credit == .revenue && shape.hasOrder
            case .cost?:
                if case .payable? = credit { allowed = debit == .cogs && shape.hasOrder } else {
                    allowed = debit == .cogs && (credit == .inventory || credit == .purchases) && shape.hasOrder
                }
            case .refund?:
                if case .commissionPayable? = debit { allowed = credit == .commission && shape.hasOrder } else {
                    allowed = debit == .revenue && (credit == .clearing || credit == .subsidy) && shape.hasOrder
                }
            case .commission?:
                if case .commissionPayable? = credit { allowed = debit == .commission && shape.hasOrder } else { allowed = false }
            case .stock?:
                if case .payable? = credit { allowed = debit == .inventory && !shape.hasOrder } else {
                    allowed = debit == .inventory && credit == .purchases && !shape.hasOrder
                }
            case .writeOff?: allowed = debit == .writeOff && credit == .inventory && !shape.hasOrder
            case .subsidy?: allowed = debit == .subsidy && credit == .revenue && shape.hasOrder
            case nil: allowed = false
            }
            if !allowed {
                fail("ledger", "\(shape.lines) lines of kind \(shape.kind) move \(shape.credit) to \(shape.debit)"
                    + (shape.hasOrder ? " for an order" : " for no order") + ": no such movement")
            }
            if shape.leastCents < 0 {
                fail("ledger", "lines of kind \(shape.kind) (\(shape.credit) to \(shape.debit)) have a negative amount")
            }
        }
        if money.orphanLines > 0 { fail("ledger", "\(money.orphanLines) lines name an order that does not exist") }
        // The reports' summary adds up to the ledger, kind by kind.
        for kind in Set(money.ledgerByKind.keys).union(money.summaryByKind.keys).sorted() {
            let ledger = money.ledgerByKind[kind] ?? (0, 0), summary = money.summaryByKind[kind] ?? (0, 0)
            // For sale lines the summary counts orders (a bundle's split sale is one), so only
            // the amounts compare; for every other kind, lines too.
            if ledger.cents != summary.cents || (kind != Int64(JournalKind.sale.rawValue) && ledger.lines != summary.lines) {
                fail("ledger", "the report summary of kind \(kind) holds \(summary.lines) lines of \(summary.cents), "
                    + "the ledger \(ledger.lines) of \(ledger.cents)")
            }
        }
        let total = money.balances.values.reduce(0, &+)
        if total != 0 { fail("ledger", "the accounts do not balance: they add up to \(total)") }
        for order in snapshot.orders {
            let lines = money.byOrder[order.seq] ?? [:]
            guard let amount = order.amountCents else {
                if let sale = lines[.sale] { fail("ledger", "order \(order.orderID) has no amount but \(sale.lines) sale lines") }
                continue
            }
            // A refunded order that had failed upstream was never delivered: no codes, no sale.
            let delivered = order.state == .committed || (order.state == .refunded && !order.codes.isEmpty)
            let sale = lines[.sale]
            if delivered {
                if (sale?.lines ?? 0) < 1 || sale?.cents != amount {
                    fail("ledger", "order \(order.orderID) (\(order.state), amount \(amount)) has sale lines "
                        + "\(sale.map { "\($0.lines) of \($0.cents)" } ?? "none")")
                }
                let costs = lines[.cost]?.cents ?? 0
                let expected = money.orderCodeCostCents[order.seq] ?? 0
                if costs != expected && !order.codes.isEmpty {
                    fail("ledger", "order \(order.orderID)'s cost lines add up to \(costs), its codes cost \(expected)")
                }
            } else if sale != nil || lines[.cost] != nil {
                fail("ledger", "order \(order.orderID) is \(order.state) but has sale or cost lines")
            }
            let subsidyLine = lines[.subsidy]
            if delivered && order.subsidyCents > 0 && (subsidyLine?.lines != 1 || subsidyLine?.cents != order.subsidyCents) {
                fail("ledger", "order \(order.orderID) (subsidy \(order.subsidyCents)) has subsidy lines "
                    + "\(subsidyLine.map { "\($0.lines) of \($0.cents)" } ?? "none")")
            }
            let commission = lines[.commission]
            if (commission?.lines ?? 0) > 1 || (commission != nil && !delivered) {
                fail("ledger", "order \(order.orderID) (\(order.state)) has \(commission?.lines ?? 0) commission lines")
            }
            let refund = lines[.refund]
            let refundLines = (sale?.lines ?? 0) + (subsidyLine?.lines ?? 0) + (commission?.lines ?? 0)
            if order.state == .refunded && delivered
                && (refund?.cents != amount + order.subsidyCents + (commission?.cents ?? 0) || refund?.lines != refundLines) {
                fail("ledger", "refunded order \(order.orderID) (amount \(amount)) has refund lines "
                    + "\(refund.map { "\($0.lines) of \($0.cents)" } ?? "none")")
            } else if !(order.state == .refunded && delivered) && refund != nil {
                fail("ledger", "order \(order.orderID) is \(order.state) but has a refund line")
            }
        }
        // 10. Campaigns and coupons: no campaign gave away more than its budget, no coupon is
        // held by two live orders, and every one an order names exists.
        let campaigns = Dictionary(try store.campaigns().map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let couponCodes = Set(try store.coupons().codes.map(\.code))
        var spent: [String: Int64] = [:]
        var couponHolder: [String: String] = [:]
        for order in snapshot.orders where order.state.holdsPromotion {
            if let campaign = order.labels?.campaign {
                if campaigns[campaign] == nil { fail("ledger", "order \(order.orderID) names unknown campaign \(campaign)") }
                spent[campaign, default: 0] += order.subsidyCents
            }
            if let coupon = order.labels?.coupon {
                if !couponCodes.contains(coupon) { fail("ledger", "order \(order.orderID) names unknown coupon \(coupon)") }
                if let other = couponHolder[coupon] {
                    fail("ledger", "coupon \(coupon) is held by orders \(other) and \(order.orderID)")
                }
                couponHolder[coupon] = order.orderID
            }
        }
        for (key, cents) in spent.sorted(by: { $0.key < $1.key }) {
            if let budget = campaigns[key]?.budgetCents, cents > budget {
                fail("ledger", "campaign \(key) gave away \(cents), over its budget of \(budget)")
            }
        }
        let inventory = money.balances[.inventory] ?? 0
        if inventory != money.stockCostCents {
            fail("ledger", "the inventory account holds \(inventory) but the codes in stock cost \(money.stockCostCents)")
        }

        // 8. The risk gate's lists are what their audited changes made them: the table equals
        // the replay of every risk-list-add and risk-list-remove entry, in order (a row
        // edited or slipped in behind kamid's back is found here).
        var replayed = Set<String>()
        let changes = (try store.auditEntries(event: "risk-list-add", limit: Int.max).map { ($0, true) }
            + store.auditEntries(event: "risk-list-remove", limit: Int.max).map { ($0, false) })
            .sorted { $0.0.seq < $1.0.seq }
        for (entry, added) in changes {
            let list = entry.subject.hasPrefix("risk-list:") ? String(entry.subject.dropFirst("risk-list:".count)) : entry.subject
            let item = entry.detail.firstRange(of: " note=").map { String(entry.detail[..<$0.lowerBound]) } ?? entry.detail
            let key = "\(list) \(item)"
            if added { replayed.insert(key) } else { replayed.remove(key) }
        }
        let stored = Set(try store.riskLists().map { "\($0.list) \($0.kind)=\($0.value)" })
        for extra in stored.subtracting(replayed).sorted().prefix(20) {
            fail("risk-lists", "list entry \(extra) is in the table but no audited change put it there")
        }
        for missing in replayed.subtracting(stored).sorted().prefix(20) {
            fail("risk-lists", "list entry \(missing) was added by an audited change but is missing from the table")
        }

        // 5b. Activations: every used code has its activation row, for its own order, and a
        // row names a code that is used (or voided since: a refund after activation).
        let used = try store.codes(inState: .used)
        let activations = try store.allActivations()
        for (code, seq) in used.sorted(by: { $0.key < $1.key }).prefix(1_000_000) {
            guard let row = activations[code] else {
                fail("activation", "code \(code) is used but has no activation")
                continue
            }
            if row != seq { fail("activation", "code \(code) is held by order seq \(seq.map(String.init) ?? "none") but was activated for \(row)") }
        }
        let states = try store.codeStates(activations.keys.filter { used[$0] == nil }.sorted())
        for (code, seq) in activations.sorted(by: { $0.key < $1.key }) where used[code] == nil {
            if states[code]?.state != .voided {
                fail("activation", "code \(code) (order seq \(seq)) was activated but is \(states[code].map { "\($0.state)" } ?? "missing")")
            }
        }

        // 5c. The webhook outbox: well-formed rows, each event true of its order.
        let ordersByID = Dictionary(snapshot.orders.map { ($0.orderID, $0) }, uniquingKeysWith: { first, _ in first })
        for problem in try outboxProblems(orders: ordersByID).prefix(20) { fail("outbox", problem) }

        // 6. The audit chain.
        if let broken = try store.verifyAuditChain(anchoredBefore: anchor) {
            fail("audit", broken.reason)
        }
        return violations
    }
}
