import KamiCore
import KamiPool
import KamiLedger
import KamiStore

/// After-sales (售后): cases opened on delivered orders, resolved by replacing the code (the bad
/// one voided and marked, a new one from the pool issued to the same order, its cost in the
/// ledger), by a refund, or rejected.
extension EngineCore {
    /// Opens a case on a delivered order (about one of its codes, or the whole order).
    func openCase(order orderID: String, codeID: CodeID?, reason: AfterSalesCase.Reason, note: String) throws(KamiError) -> AfterSalesCase {
        try EngineCore.validate(orderID: orderID)
        guard note.utf8.count <= 500 else { throw KamiError(.badRequest, "a case's note is at most 500 bytes") }
        guard let order = orders.get(orderID) else { throw KamiError(.notFound, "no order \(orderID)") }
        guard order.state == .committed else {
            throw KamiError(.invalidState, "order \(orderID) is \(order.state): cases are opened on delivered orders")
        }
        if let codeID, !order.codes.contains(where: { $0.codeID == codeID }) {
            throw KamiError(.badRequest, "code \(codeID) is not one of order \(orderID)'s codes")
        }
        let ofOrder = try store.cases().filter { $0.orderSeq == order.seq }
        guard ofOrder.count < Limits.casesPerOrderMax else {
            throw KamiError(.limitReached, "order \(orderID) has had \(Limits.casesPerOrderMax) cases; the operator takes it from here")
        }
        if ofOrder.contains(where: { $0.state == .open && $0.codeID == codeID }) {
            throw KamiError(.conflict, "order \(orderID) already has an open case about \(codeID.map { "code \($0)" } ?? "it")")
        }
        let code = codeID ?? order.codes.first?.codeID
        let source = try code.flatMap { (id: CodeID) throws(KamiError) -> String? in try store.sourceOfCode(id) } ?? "pool"
        var item = AfterSalesCase(
            id: 0, orderSeq: order.seq, orderID: orderID, sku: order.sku, codeID: codeID, reason: reason, state: .open,
            source: source.hasPrefix("upstream:") ? source : "pool", openedAtMs: clock.nowMs(), resolvedAtMs: nil, note: note)
        let event = AuditEvent("case-open", subject: "order:\(orderID)",
                               detail: "seq=\(order.seq) reason=\(reason.rawValue) code=\(codeID.map(String.init) ?? "-") source=\(item.source)")
        if case .rowID(let id) = try submitAndWait(.writeCase(item, audit: event)) { item.id = id }
        return item
    }

    /// Resolves an open case by rejecting it (nothing changes for the order).
    func rejectCase(_ id: Int64, note: String) throws(KamiError) -> AfterSalesCase {
        var item = try openCase(id)
        item.state = .rejected
        item.resolvedAtMs = clock.nowMs()
        item.note = note.isEmpty ? item.note : note
        _ = try submitAndWait(.writeCase(item, audit: AuditEvent("case-reject", subject: "order:\(item.orderID)", detail: "case=\(id)")))
        return item
    }

    /// Marks an open case refunded (after the order's refund succeeded).
    func closeCaseRefunded(_ id: Int64) throws(KamiError) -> AfterSalesCase {
        var item = try openCase(id)
        item.state = .refunded
        item.resolvedAtMs = clock.nowMs()
        _ = try submitAndWait(.writeCase(item, audit: AuditEvent("case-refund", subject: "order:\(item.orderID)", detail: "case=\(id)")))
        return item
    }

    /// The open case `id`.
    func openCase(_ id: Int64) throws(KamiError) -> AfterSalesCase {
        guard let item = try store.cases().first(where: { $0.id == id }) else { throw KamiError(.notFound, "no case \(id)") }
        guard item.state == .open else { throw KamiError(.invalidState, "case \(id) is \(item.state) already") }
        return item
    }

    /// Resolves an open case about one code by replacing it: the code is voided (it stays on
    /// record with the order), a new code of its SKU from the pool is issued to the order in
    /// its place, its cost goes to the ledger, and the case is closed, in one write.
    func replaceCode(caseID: Int64, completion: @escaping OrderCompletion) {
        let item: AfterSalesCase
        do throws(KamiError) { item = try openCase(caseID) } catch { return completion(.failure(error)) }
        guard let bad = item.codeID else {
            return completion(.failure(KamiError(.badRequest, "case \(caseID) names no code to replace: refund or reject it")))
        }
        let retry: @Sendable () -> Void = { [self] in replaceCode(caseID: caseID, completion: completion) }
        switch orders.begin(item.orderID, create: false, retry: retry) {
        case .queued: return
        case .missing, .created: return completion(.failure(KamiError(.notFound, "no order \(item.orderID)")))
        case .existing(let order):
            guard order.state == .committed, let index = order.codes.firstIndex(where: { $0.codeID == bad }) else {
                orders.end(order.orderID)
                return completion(.failure(KamiError(.invalidState, "order \(order.orderID) is \(order.state) or no longer holds code \(bad)")))
            }
            let old = order.codes[index]
            guard let taken = pool.take(sku: old.sku, count: 1)?.first else {
                orders.end(order.orderID)
                let hint = upstream.sourcing(old.sku).policy == .pool ? "refund instead"
                    : "its suppliers refill the pool through buy-ahead (kamictl sku source --buy-ahead); replace again then, or refund"
                return completion(.failure(KamiError(.soldOut, "\(skuKey(old.sku)) has no code to replace code \(bad) with; \(hint)")))
            }
            let fresh = OrderCode(codeID: taken, sku: old.sku)
            // A code the buyer already activated ("it was used before me") is replaced too.
            let oldState: CodeState
            do throws(KamiError) { oldState = try store.codeStates([bad])[bad]?.state ?? .voided } catch {
                returnToPool([fresh])
                orders.end(order.orderID)
                return completion(.failure(error))
            }
            guard oldState == .issued || oldState == .used else {
                returnToPool([fresh])
                orders.end(order.orderID)
                return completion(.failure(KamiError(.invalidState, "code \(bad) of order \(order.orderID) is \(oldState)")))
            }
            let opened: (revealed: [IssuedCode], bad: [OrderCode])
            do throws(KamiError) { opened = try openSecrets([fresh]) } catch {
                returnToPool([fresh])
                orders.end(order.orderID)
                return completion(.failure(error))
            }
            guard opened.bad.isEmpty else {
                quarantine(opened.bad)
                orders.end(order.orderID)
                return completion(.failure(EngineCore.integrityFailure(opened.bad)))
            }
            var replaced = order
            replaced.codes[index] = fresh
            replaced.updatedAtMs = clock.nowMs()
            let changes = [CodeChange(codeID: bad, from: oldState, to: .voided, orderSeq: order.seq),
                           CodeChange(codeID: taken, from: .available, to: .issued, orderSeq: order.seq)]
            let cost = labelled(order, Journal.delivered(
                orderSeq: order.seq, sku: order.sku, amountCents: nil, currency: nil,
                costs: [(sku: old.sku, costCents: opened.revealed.first?.costCents ?? 0, fromPool: true, source: nil)]))
            var closing = item
            closing.state = .replaced
            closing.resolvedAtMs = replaced.updatedAtMs
            let event = AuditEvent("case-replace", subject: "order:\(order.orderID)",
                                   detail: "case=\(caseID) seq=\(order.seq) voided=\(bad) codes=\(taken)")
            let published = replaced
            store.writer.submit(.replaceCode(replaced, codes: changes, ledger: cost, closing: closing, audit: event)) { [self] result in
                switch result {
                case .failure(let error):
                    returnToPool([fresh])
                    orders.end(order.orderID)
                    completion(.failure(error))
                case .success:
                    count([fresh], from: .available, to: .issued)
                    count([old], from: oldState, to: .voided)
                    orders.publish(published)
                    completion(.success(reply(published, codes: opened.revealed)))
                }
            }
        }
    }
}
