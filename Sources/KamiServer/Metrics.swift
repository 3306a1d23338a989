import Foundation
import KamiCore
public import KamiEngine
import KamiProtocol
import KamiStore
public import KamiUpstream
import KamiRisk
import Synchronization

/// kamid's counters, and their rendering in the Prometheus text exposition format (0.0.4).
///
/// Hot-path updates are single atomic adds into fixed arrays indexed by operation number and
/// result; everything else (stock, connections, commit histograms) is read when scraped.
/// Nothing here ever holds a secret, a token, an order id or a user id: labels are operation
/// names, error codes, SKU keys (operator data) and fixed words.
public final class Metrics: Sendable {
    /// Operation numbers are below this; slot 0 counts requests that did not decode.
    /// One slot per operation number (the largest one and below).
    static let opSlots = Int(KamiProtocol.Operation.allCases.map(\.rawValue).max() ?? 0) + 1
    /// Result slot 0 is success; then one per error code.
    static let results = ["ok"] + ErrorCode.allCases.map(\.rawValue)

    private let requests = AtomicCounters(count: opSlots * results.count)
    /// Per operation: microseconds from the request decoded to its reply ready.
    private let latency: [Histogram]
    private let reloads = AtomicCounters(count: 2)
    private let accepted = Atomic<Int>(0)
    private let acceptPauses = Atomic<Int>(0)
    private let startedNs = monotonicNs()

    /// Latency bucket bounds, microseconds: 10 µs to 10 s in 1-2.5-5 steps.
    static let latencyBoundsUs = Histogram.oneTwoFive(from: 10, to: 10_000_000)

    public init() {
        latency = (0..<Metrics.opSlots).map { _ in Histogram(bounds: Metrics.latencyBoundsUs) }
    }

    /// Counts one reply to `op` (nil: a request that did not decode) and its latency.
    @inline(__always)
    func recordReply(op: KamiProtocol.Operation?, error: ErrorCode?, latencyNs: UInt64) {
        let opSlot = op.map { Int($0.rawValue) } ?? 0
        let resultSlot = error.map(Metrics.resultSlot) ?? 0
        requests.add(opSlot * Metrics.results.count + resultSlot)
        latency[opSlot].observe(Int(latencyNs / 1_000))
    }

    /// The result slot of an error code: its place in `ErrorCode.allCases`, after `ok`. A
    /// switch, not a dictionary: SOLD_OUT is most replies of a flash sale. A test checks it
    /// against `results`.
    static func resultSlot(_ code: ErrorCode) -> Int {
        switch code {
        case .badRequest: 1
        case .unauthorized: 2
        case .notFound: 3
        case .soldOut: 4
        case .limitReached: 5
        case .conflict: 6
        case .expired: 7
        case .tooLarge: 8
        case .busy: 9
        case .unavailable: 10
        case .invalidState: 11
        case .integrity: 12
        case .denied: 13
        case .challenge: 14
        // kamid never answers a code it does not know; counted as a bad request if it did.
        case .other: 1
        }
    }

    func recordAccepted() { accepted.wrappingAdd(1, ordering: .relaxed) }

    /// Counts a listener taken out of epoll because accept ran out of descriptors or memory.
    func recordAcceptPaused() { acceptPauses.wrappingAdd(1, ordering: .relaxed) }

    /// Counts a reload and whether it was applied (the daemon calls it).
    public func recordReload(applied: Bool) { reloads.add(applied ? 0 : 1) }

    /// Requests answered so far for `op` with `result` (`ok` or an error code name).
    public func requests(op: String, result: String) -> Int {
        guard let opSlot = Metrics.opSlot(named: op),
              let resultIndex = Metrics.results.firstIndex(of: result) else { return 0 }
        return requests.load(opSlot * Metrics.results.count + resultIndex)
    }

    static func opSlot(named name: String) -> Int? {
        name == "invalid" ? 0 : KamiProtocol.Operation(name: name).map { Int($0.rawValue) }
    }

    static func opName(slot: Int) -> String? {
        slot == 0 ? "invalid" : KamiProtocol.Operation(rawValue: UInt8(slot))?.name
    }

    /// The order operations the dashboard charts: refusals of any of them, successes of
    /// the two that deliver.
    static let orderOps: [KamiProtocol.Operation] = [.reserve, .issue, .commit]
    static let deliveringOps: [KamiProtocol.Operation] = [.issue, .commit]

    /// The order operations' counters as they are now (for the dashboard's history; read
    /// once a minute and per page view, never on the request path).
    func orderSample() -> OrderSample {
        var sample = OrderSample.zero()
        for op in Metrics.orderOps {
            let base = Int(op.rawValue) * Metrics.results.count
            for slot in 1..<Metrics.results.count { sample.rejects[slot] += requests.load(base + slot) }
            if Metrics.deliveringOps.contains(op) { sample.issued += requests.load(base) }
            let cumulative = latency[Int(op.rawValue)].snapshot().cumulative
            for index in cumulative.indices {
                sample.latency[index] += cumulative[index] - (index == 0 ? 0 : cumulative[index - 1])
            }
        }
        return sample
    }

    // MARK: Rendering

    /// The whole exposition for a scrape.
    public func render(server: Server, engine: Engine, version: String, upstream: UpstreamService? = nil) -> String {
        var out = Exposition()
        out.family("kami_build_info", "gauge", "Version of this kamid.")
        out.sample("kami_build_info", [("version", version)], 1)
        out.family("kami_uptime_seconds", "gauge", "Seconds since kamid started.")
        out.sample("kami_uptime_seconds", [], Double(monotonicNs() - startedNs) / 1e9)

        out.family("kami_requests_total", "counter", "Requests answered, by operation and result (ok or error code).")
        for opSlot in 0..<Metrics.opSlots {
            guard let name = Metrics.opName(slot: opSlot) else { continue }
            for (resultIndex, result) in Metrics.results.enumerated() {
                let value = requests.load(opSlot * Metrics.results.count + resultIndex)
                if value > 0 { out.sample("kami_requests_total", [("op", name), ("result", result)], Double(value)) }
            }
        }
        out.family("kami_request_duration_seconds", "histogram",
                   "Time from a request decoded to its reply ready (durable for writes), by operation.")
        for opSlot in 0..<Metrics.opSlots {
            guard let name = Metrics.opName(slot: opSlot) else { continue }
            let snapshot = latency[opSlot].snapshot()
            if snapshot.count > 0 {
                out.histogram("kami_request_duration_seconds", [("op", name)], bounds: Metrics.latencyBoundsUs,
                              snapshot: snapshot, scale: 1e-6)
            }
        }

        out.family("kami_connections_open", "gauge", "Client connections open now.")
        out.sample("kami_connections_open", [], Double(server.connections))
        out.family("kami_connections_accepted_total", "counter", "Client connections accepted.")
        out.sample("kami_connections_accepted_total", [], Double(accepted.load(ordering: .relaxed)))
        out.family("kami_accept_paused_total", "counter",
                   "Times a listener paused because accept ran out of file descriptors or memory (EMFILE, ENFILE).")
        out.sample("kami_accept_paused_total", [], Double(acceptPauses.load(ordering: .relaxed)))

        let writer = engine.storage.writer
        let stats = writer.stats
        out.family("kami_commit_batches_total", "counter", "Group-commit transactions, by outcome.")
        out.sample("kami_commit_batches_total", [("result", "ok")], Double(stats.batches - stats.failedBatches))
        out.sample("kami_commit_batches_total", [("result", "failed")], Double(stats.failedBatches))
        out.family("kami_commit_batch_size", "histogram", "Mutations per group-commit transaction.")
        out.histogram("kami_commit_batch_size", [], bounds: writer.batchSizes.bounds,
                      snapshot: writer.batchSizes.snapshot(), scale: 1)
        out.family("kami_commit_fsync_seconds", "histogram",
                   "Duration of each COMMIT, which syncs the write-ahead log (durability full).")
        out.histogram("kami_commit_fsync_seconds", [], bounds: writer.commitLatencyUs.bounds,
                      snapshot: writer.commitLatencyUs.snapshot(), scale: 1e-6)
        out.family("kami_disk_failing", "gauge", "1 when the last commit failed because of the disk.")
        out.sample("kami_disk_failing", [], writer.diskFailing ? 1 : 0)

        out.family("kami_stock_codes", "gauge", "Codes per SKU and state.")
        var skus: [(String, StockReply)] = []
        for sku in engine.queries.skus() {
            if let stock = try? engine.queries.stock(sku: sku.key) { skus.append((sku.key, stock)) }
        }
        for (key, stock) in skus {
            for (state, value) in [("available", stock.available), ("reserved", stock.reserved),
                                   ("issued", stock.issued), ("used", stock.used), ("voided", stock.voided)] {
                out.sample("kami_stock_codes", [("sku", key), ("state", state)], Double(value))
            }
        }
        out.family("kami_holds_outstanding", "gauge", "Reserved orders waiting for commit, release or expiry.")
        out.sample("kami_holds_outstanding", [], Double(engine.holdsOutstanding))

        if let upstream { renderUpstream(upstream, into: &out) }
        renderRisk(server.dispatcher.risk, into: &out)

        out.family("kami_reloads_total", "counter", "Config reloads, by result.")
        out.sample("kami_reloads_total", [("result", "applied")], Double(reloads.load(0)))
        out.sample("kami_reloads_total", [("result", "rejected")], Double(reloads.load(1)))
        return out.text
    }
}

extension Metrics {
    /// The risk gate's decisions, each rule's hits, its tables and the lookup guard.
    func renderRisk(_ desk: RiskDesk, into out: inout Exposition) {
        let gate = desk.gate
        out.family("kami_risk_decisions_total", "counter", "Risk gate decisions, by decision.")
        for (decision, count) in gate.decisionCounts {
            out.sample("kami_risk_decisions_total", [("decision", decision.rawValue)], Double(count))
        }
        out.family("kami_risk_rule_hits_total", "counter", "Times each rule fired; mode shadow decided nothing.")
        for figure in gate.ruleFigures {
            out.sample("kami_risk_rule_hits_total", [("rule", figure.name), ("mode", "enforce")], Double(figure.fired))
            out.sample("kami_risk_rule_hits_total", [("rule", figure.name), ("mode", "shadow")], Double(figure.shadowFired))
        }
        let tables = gate.tableFigures
        out.family("kami_risk_evictions_total", "counter", "Counter keys pushed out of a full table, by table.")
        out.sample("kami_risk_evictions_total", [("table", "rate")], Double(tables.rateEvictions))
        out.sample("kami_risk_evictions_total", [("table", "distinct")], Double(tables.distinctEvictions))
        out.family("kami_risk_holds_tracked", "gauge", "Unpaid holds counted by holds rules.")
        out.sample("kami_risk_holds_tracked", [], Double(tables.holdsTracked))
        out.family("kami_risk_holds_untracked_total", "counter", "Holds not counted because the hold table was full.")
        out.sample("kami_risk_holds_untracked_total", [], Double(tables.holdsDropped))
        out.family("kami_risk_memory_bytes", "gauge", "The bound on the risk gate's counter memory.")
        out.sample("kami_risk_memory_bytes", [], Double(gate.memoryBytes + desk.lookups.memoryBytes))
        out.family("kami_secrets_revealed_total", "counter", "Secrets shown by order and entitlements lookups.")
        out.sample("kami_secrets_revealed_total", [], Double(desk.reveals.load(ordering: .relaxed)))
        out.family("kami_lookups_refused_total", "counter", "Order lookups refused after too many failed ones.")
        out.sample("kami_lookups_refused_total", [], Double(desk.lookupsRefused.load(ordering: .relaxed)))
    }

    /// The upstream service's counters and each supplier's state.
    func renderUpstream(_ upstream: UpstreamService, into out: inout Exposition) {
        let counters = upstream.snapshot
        out.family("kami_upstream_orders_total", "counter", "Orders fulfilled upstream, by outcome.")
        out.sample("kami_upstream_orders_total", [("result", "delivered")], Double(counters.delivered))
        out.sample("kami_upstream_orders_total", [("result", "failed")], Double(counters.failedOrders))
        out.family("kami_upstream_in_flight", "gauge", "Orders pending upstream being worked on now.")
        out.sample("kami_upstream_in_flight", [], Double(counters.inFlight))
        out.family("kami_upstream_margin_guard_total", "counter",
                   "Times a supplier was skipped because its cost passed the margin guard (成本倒挂).")
        out.sample("kami_upstream_margin_guard_total", [], Double(counters.marginGuard))
        out.family("kami_upstream_requests_total", "counter", "Requests to suppliers, by kind.")
        out.sample("kami_upstream_requests_total", [("kind", "place")], Double(counters.placed))
        out.sample("kami_upstream_requests_total", [("kind", "resend")], Double(counters.resent))
        out.sample("kami_upstream_requests_total", [("kind", "query")], Double(counters.queries))
        out.family("kami_upstream_unknown_outcomes_total", "counter", "Supplier answers (or silences) of unknown outcome.")
        out.sample("kami_upstream_unknown_outcomes_total", [], Double(counters.unknownOutcomes))
        out.family("kami_upstream_failovers_total", "counter", "Attempts refused by a supplier, so the next was tried.")
        out.sample("kami_upstream_failovers_total", [], Double(counters.failovers))
        out.family("kami_upstream_callbacks_total", "counter", "Supplier callbacks, by result.")
        out.sample("kami_upstream_callbacks_total", [("result", "accepted")], Double(counters.callbacksAccepted))
        out.sample("kami_upstream_callbacks_total", [("result", "rejected")], Double(counters.callbacksRejected))
        out.sample("kami_upstream_callbacks_total", [("result", "replayed")], Double(counters.callbacksReplayed))
        out.family("kami_supplier_breaker_open", "gauge", "1 while a supplier's circuit breaker is open or half-open.")
        out.family("kami_supplier_paused", "gauge", "1 while the operator has paused a supplier.")
        out.family("kami_supplier_in_flight", "gauge", "Requests in flight to a supplier.")
        for status in upstream.statuses {
            out.sample("kami_supplier_breaker_open", [("supplier", status.id)], status.breaker == .closed ? 0 : 1)
            out.sample("kami_supplier_paused", [("supplier", status.id)], status.paused ? 1 : 0)
            out.sample("kami_supplier_in_flight", [("supplier", status.id)], Double(status.inFlight))
        }
    }
}

/// Builds Prometheus text: `# HELP` / `# TYPE` per family, then its samples.
struct Exposition {
    var text = ""

    mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.0)=\"\(Exposition.escape($0.1))\"" }.joined(separator: ",") + "}"
        }
        text += " " + Exposition.format(value) + "\n"
    }

    mutating func histogram(
        _ name: String, _ labels: [(String, String)], bounds: [Int],
        snapshot: (cumulative: [Int], sum: Int, count: Int), scale: Double
    ) {
        for (index, bound) in bounds.enumerated() {
            sample(name + "_bucket", labels + [("le", Exposition.format(Double(bound) * scale))],
                   Double(snapshot.cumulative[index]))
        }
        sample(name + "_bucket", labels + [("le", "+Inf")], Double(snapshot.count))
        sample(name + "_sum", labels, Double(snapshot.sum) * scale)
        sample(name + "_count", labels, Double(snapshot.count))
    }

    /// Label values escape backslash, double quote and newline.
    static func escape(_ value: String) -> String {
        var out = ""
        for ch in value {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out
    }

    /// Integers without a fraction; others in the shortest form that reads back exactly.
    static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
