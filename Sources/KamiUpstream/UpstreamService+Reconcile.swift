import Foundation
public import KamiCore
import KamiHTTP
import KamiEngine
import Synchronization

/// One line of a supplier's statement: an order it says it handled.
public struct StatementRow: Sendable, Hashable {
    public var customerOrderNo: String
    /// `success`, `failed`, or anything else the supplier writes (compared as text).
    public var state: String
    /// What it charged, minor units (nil: not given).
    public var amountCents: Int64?

    public init(customerOrderNo: String, state: String, amountCents: Int64?) {
        self.customerOrderNo = customerOrderNo
        self.state = state
        self.amountCents = amountCents
    }

    /// Parses a statement CSV: a header naming `customer_order_no`, `state` and optionally
    /// `amount_cents`, then one row per order. Errors name the line.
    public static func parse(csv text: String) throws(ConfigValueError) -> [StatementRow] {
        var lines = text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map { String($0).trimmingCharacters(in: .whitespaces) }
        lines.removeAll { $0.isEmpty }
        guard let header = lines.first?.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }),
              let number = header.firstIndex(of: "customer_order_no"), let state = header.firstIndex(of: "state") else {
            throw ConfigValueError("statement: the header must name customer_order_no and state")
        }
        let amount = header.firstIndex(of: "amount_cents")
        var rows: [StatementRow] = []
        for (index, line) in lines.dropFirst().enumerated() {
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count == header.count else {
                throw ConfigValueError("statement line \(index + 2): \(cells.count) cells, the header has \(header.count)")
            }
            var cents: Int64?
            if let amount, !cells[amount].isEmpty {
                guard let value = Int64(cells[amount]) else {
                    throw ConfigValueError("statement line \(index + 2): amount_cents \"\(cells[amount].prefix(20))\" is not an integer")
                }
                cents = value
            }
            rows.append(StatementRow(customerOrderNo: cells[number], state: cells[state].lowercased(), amountCents: cents))
        }
        return rows
    }
}

/// One difference between kamid's attempts and a supplier's records.
public struct Mismatch: Sendable, Hashable {
    public var customerOrderNo: String
    /// `sold_there_not_here`, `delivered_here_not_there`, `open_here`, `amount`, `no_attempt_here`.
    public var kind: String
    public var here: String
    public var there: String
}

/// What `reconcile` found.
public struct ReconcileReport: Sendable {
    public var supplier: String
    public var attempts: Int
    public var matched: Int
    public var mismatches: [Mismatch]
}

extension UpstreamService {
    /// Compares kamid's attempts at `supplierID` created in `fromMs..<toMs` with what the
    /// supplier says of each (its query API), and with `statement` when given (which also
    /// finds orders the supplier sold that kamid has no attempt for). Blocks; call it off
    /// any event loop. At most `timeoutMs` in all.
    public func reconcile(
        supplier supplierID: String, fromMs: Int64, toMs: Int64, statement: [StatementRow]? = nil, timeoutMs: Int64 = 120_000
    ) throws(KamiError) -> ReconcileReport {
        guard let endpoint = onLoop({ [self] in suppliers[supplierID] }) else {
            throw KamiError(.notFound, "no supplier \(supplierID) in the config")
        }
        let attempts = try engine.upstream.attempts(supplier: supplierID, fromMs: fromMs, toMs: toMs)
        let answers = Mutex<[String: SupplierReply]>([:])
        let remaining = Atomic<Int>(attempts.count)
        let done = Atomic<Bool>(attempts.isEmpty)
        var options = HTTPClientOptions()
        options.timeoutMs = endpoint.config.timeoutMs
        options.maxConnections = endpoint.config.maxConcurrent
        var peer: LineClient?
        if endpoint.config.style == .kami {
            let fixed = options
            peer = onLoop { [self] () -> LineClient in self.peer(endpoint, options: fixed) }
        }
        for attempt in attempts {
            let record: @Sendable (SupplierReply) -> Void = { reply in
                answers.withLock { $0[attempt.customerOrderNo] = reply }
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { done.store(true, ordering: .releasing) }
            }
            if let peer {
                guard let line = KamiPeerWire.request(.query(customerOrderNo: attempt.customerOrderNo),
                                                      merchant: endpoint.credentials.merchantID, waitMs: 0) else { continue }
                peer.send(line) { result in
                    switch result {
                    case .success(let reply):
                        record(KamiPeerWire.parse(reply, isPlace: false, customerOrderNo: attempt.customerOrderNo,
                                                  merchant: endpoint.credentials.merchantID))
                    case .failure(let error): record(.unknown(error.description))
                    }
                }
                continue
            }
            let request = SupplierWire.request(.query(customerOrderNo: attempt.customerOrderNo), style: endpoint.config.style,
                                               base: endpoint.url, credentials: endpoint.credentials, nowSeconds: nowMs() / 1_000)
            client.send(request, to: endpoint.url, tls: endpoint.tls, options: options) { result in
                switch result {
                case .success(let response): record(SupplierWire.parse(response, style: endpoint.config.style, quantity: 1))
                case .failure(let error): record(.unknown(error.description))
                }
            }
        }
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1_000)
        while !done.load(ordering: .acquiring) && Date() < deadline { usleep(5_000) }
        let replies = answers.withLock { $0 }
        var mismatches: [Mismatch] = []
        var matched = 0
        var units: [OrderSeq: Int] = [:]
        for attempt in attempts {
            let here = "\(attempt.state)"
            let there = replies[attempt.customerOrderNo] ?? .unknown("no answer in time")
            func differ(_ kind: String) {
                mismatches.append(Mismatch(customerOrderNo: attempt.customerOrderNo, kind: kind, here: here, there: there.summary))
            }
            switch (attempt.state, there) {
            case (.succeeded, .delivered), (.failed, .failed), (.failed, .notFound):
                matched += 1
            case (.succeeded, _):
                differ("delivered_here_not_there")
            case (.failed, .delivered), (.failed, .processing), (.failed, .partial):
                differ("sold_there_not_here")
            default:
                differ("open_here")
            }
            units[attempt.orderSeq] = engine.upstream.order(attempt.customerOrderNo)?.units ?? 1
        }
        if let statement {
            let byNumber = Dictionary(attempts.map { ($0.customerOrderNo, $0) }, uniquingKeysWith: { first, _ in first })
            for row in statement {
                guard let attempt = byNumber[row.customerOrderNo] else {
                    if row.state == "success" || row.state == "succeeded" {
                        mismatches.append(Mismatch(customerOrderNo: row.customerOrderNo, kind: "no_attempt_here",
                                                   here: "none", there: row.state))
                    }
                    continue
                }
                let sold = row.state == "success" || row.state == "succeeded"
                if sold && attempt.state == .failed {
                    mismatches.append(Mismatch(customerOrderNo: row.customerOrderNo, kind: "sold_there_not_here",
                                               here: "\(attempt.state)", there: "statement \(row.state)"))
                }
                if sold, let amount = row.amountCents {
                    let expected = attempt.costCents * Int64(units[attempt.orderSeq] ?? 1)
                    if amount != expected {
                        mismatches.append(Mismatch(customerOrderNo: row.customerOrderNo, kind: "amount",
                                                   here: "\(expected)", there: "\(amount)"))
                    }
                }
            }
        }
        return ReconcileReport(supplier: supplierID, attempts: attempts.count, matched: matched, mismatches: mismatches)
    }
}
