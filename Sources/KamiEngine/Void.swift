import KamiLedger
import KamiCore
import KamiPool
import Synchronization
import KamiStore

extension EngineCore {
    /// Voids one code: an available code leaves the pool for good; an issued (leaked) code is
    /// marked voided and never served again. A code held by an unpaid order is skipped.
    func void(code: CodeID) throws(KamiError) -> VoidReport {
        guard try store.skuOfCode(code) != nil else { throw KamiError(.notFound, "no code \(code)") }
        return try void(codes: [code], label: "code:\(code)")
    }

    /// Voids every code of an import batch (a leaked batch), as `void(code:)` does for one.
    func void(batch: String) throws(KamiError) -> VoidReport {
        let ids = try store.codeIDs(batch: batch)
        guard !ids.isEmpty else { throw KamiError(.notFound, "no codes in batch \(batch)") }
        return try void(codes: ids, label: "batch:\(batch)")
    }

    private func void(codes ids: [CodeID], label: String) throws(KamiError) -> VoidReport {
        var report = VoidReport()
        let states = try store.codeStates(ids)
        var fromPool: [OrderCode] = []
        var issuedByOrder: [OrderSeq: [CodeID]] = [:]
        var skus: [CodeID: SkuID] = [:]
        for id in ids {
            guard let sku = try store.skuOfCode(id), let entry = states[id] else { continue }
            skus[id] = sku
            switch entry.state {
            case .voided: report.alreadyVoided += 1
            case .reserved: report.skippedReserved += 1
            case .available:
                // Taken from the pool here, it can no longer be reserved; a reserve that took it
                // first has it in flight and it is skipped as reserved.
                if pool.remove(sku: sku, code: id) {
                    fromPool.append(OrderCode(codeID: id, sku: sku))
                } else {
                    report.skippedReserved += 1
                }
            case .issued, .used:
                if let seq = entry.orderSeq { issuedByOrder[seq, default: []].append(id) }
            }
        }
        if !fromPool.isEmpty {
            let changes = fromPool.map { CodeChange(codeID: $0.codeID, from: .available, to: .voided, orderSeq: nil) }
            let event = AuditEvent("void", subject: label, detail: "available codes=\(EngineCore.codeIDList(fromPool))")
            do throws(KamiError) {
                _ = try submitAndWait(.setCodes(changes, audit: event, ledger: try writeOffs(fromPool)))
            } catch {
                for code in fromPool { pool.put(sku: code.sku, codes: [code.codeID]) }
                throw error
            }
            count(fromPool, from: .available, to: .voided)
            report.voided += fromPool.count
        }
        for (seq, codeIDs) in issuedByOrder.sorted(by: { $0.key < $1.key }) {
            report.voided += try voidIssued(codeIDs, orderSeq: seq, skus: skus, label: label)
        }
        return report
    }

    /// Voids issued codes of one committed order, with that order held in flight so that no
    /// refund or query races it.
    private func voidIssued(
        _ ids: [CodeID], orderSeq: OrderSeq, skus: [CodeID: SkuID], label: String
    ) throws(KamiError) -> Int {
        guard let orderID = try store.orderID(seq: orderSeq) else { return 0 }
        let order = try hold(orderID)
        defer { orders.end(orderID) }
        let current = try store.codeStates(ids)
        // Issued or already activated: a leaked code is voided either way.
        let still = ids.filter { [.issued, .used].contains(current[$0]?.state) }.map { OrderCode(codeID: $0, sku: skus[$0]!) }
        guard !still.isEmpty else { return 0 }
        let changes = still.map { CodeChange(codeID: $0.codeID, from: current[$0.codeID]!.state, to: .voided, orderSeq: order.seq) }
        let event = AuditEvent(
            "void", subject: label, detail: "order=\(order.orderID) issued codes=\(EngineCore.codeIDList(still))")
        _ = try submitAndWait(.setCodes(changes, audit: event))
        for state in [CodeState.issued, .used] {
            count(still.filter { current[$0.codeID]?.state == state }, from: state, to: .voided)
        }
        return still.count
    }

    /// Waits until the order is free and marks it in flight for the caller (end with `orders.end`).
    func hold(_ orderID: String) throws(KamiError) -> Order {
        while true {
            let free = Waiter<Bool>()
            switch orders.begin(orderID, create: false, retry: { free.set(.success(true)) }) {
            case .existing(let order): return order
            case .missing, .created: throw KamiError(.notFound, "no order \(orderID)")
            case .queued: _ = free.wait()
            }
        }
    }
}
