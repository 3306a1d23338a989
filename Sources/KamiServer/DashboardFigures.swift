import KamiCore
import KamiDashboard
import KamiEngine
import KamiStore
import KamiUpstream
import Synchronization

/// Builds the dashboard's snapshot from a running kamid: stock, connections and holds as
/// they are (cheap reads of in-memory counts); the last hour from `DashboardHistory`;
/// supplier health from the upstream service; and, at most every
/// `DashboardLimits.slowFiguresMaxAgeMs`, the figures that cost a database query or a walk
/// of the order table (today's sales, the review queue, codes expiring soon). Nothing is
/// computed unless a page is viewed, except the once-a-minute `tick`.
final class DashboardFigures: Sendable {
    typealias Readiness = @Sendable () -> (ready: Bool, reason: String)

    private struct Slow: Sendable {
        var atNs: UInt64
        var sales: DashboardSnapshot.Sales?
        var reviewQueue: Int
        var expiring: [DashboardSnapshot.Expiring]
    }

    private let server: Server
    private let engine: Engine
    private let upstream: @Sendable () -> UpstreamService?
    private let readiness: Readiness
    private let version: String
    private let history: DashboardHistory
    private let startedNs = monotonicNs()
    private let slow = Locked<Slow?>(nil)

    init(server: Server, engine: Engine, version: String, readiness: @escaping Readiness,
         upstream: @escaping @Sendable () -> UpstreamService?) {
        self.server = server
        self.engine = engine
        self.version = version
        self.readiness = readiness
        self.upstream = upstream
        history = DashboardHistory(sample: server.metrics.orderSample(), nowMs: engine.nowMs)
    }

    /// Closes the minute in progress (the metrics port's loop calls it once a minute).
    func tick() { history.tick(sample: server.metrics.orderSample(), nowMs: engine.nowMs) }

    /// The page's figures now.
    func snapshot() -> DashboardSnapshot {
        let nowMs = engine.nowMs
        let minutes = history.window(sample: server.metrics.orderSample())
        let bounds = Metrics.latencyBoundsUs
        let hour = minutes.reduce(OrderSample.zero()) { $0 + $1.counts }
        let recent = minutes.suffix(DashboardLimits.recentMinutes).reduce(OrderSample.zero()) { $0 + $1.counts }
        var stock: [DashboardSnapshot.Stock] = []
        for sku in engine.queries.skus() {
            guard let line = try? engine.queries.stock(sku: sku.key) else { continue }
            stock.append(.init(sku: sku.key, available: Int64(line.available), reserved: Int64(line.reserved),
                               issued: Int64(line.issued), voided: Int64(line.voided), used: Int64(line.used)))
        }
        let suppliers = upstream().map { service in
            service.statuses.sorted { $0.id < $1.id }.map {
                DashboardSnapshot.Supplier(id: $0.id, breaker: $0.breaker.rawValue, paused: $0.paused,
                                           inFlight: $0.inFlight, successRate: $0.successRate, attempts: $0.attempts,
                                           p95Ms: $0.p95Ms)
            }
        }
        let slow = slowFigures(nowMs: nowMs)
        let (ready, reason) = readiness()
        return DashboardSnapshot(
            version: version, nowMs: nowMs, uptimeSeconds: Int64((monotonicNs() - startedNs) / 1_000_000_000),
            ready: ready, readyReason: reason, stock: stock, minutes: DashboardHistory.pageMinutes(minutes),
            p99HourUs: DashboardHistory.quantile(0.99, cells: hour.latency, bounds: bounds),
            p99RecentUs: DashboardHistory.quantile(0.99, cells: recent.latency, bounds: bounds),
            suppliers: suppliers, reviewQueue: slow.reviewQueue, salesToday: slow.sales, expiring: slow.expiring,
            expiringWithinDays: DashboardLimits.expiringWithinDays,
            slowFiguresAgeMs: Int64((monotonicNs() - slow.atNs) / 1_000_000),
            holdsOutstanding: engine.holdsOutstanding, connections: server.connections)
    }

    /// The cached slow figures, read again when older than their bound.
    private func slowFigures(nowMs: Int64) -> Slow {
        let maxAgeNs = UInt64(DashboardLimits.slowFiguresMaxAgeMs) * 1_000_000
        if let cached = slow.withLock({ $0 }), monotonicNs() - cached.atNs < maxAgeNs { return cached }
        // Read outside the lock: two page views at once may both read; neither waits on the other.
        let fresh = Slow(atNs: monotonicNs(), sales: salesToday(nowMs: nowMs), reviewQueue: engine.reviewQueue().count,
                         expiring: expiring())
        slow.withLock { $0 = fresh }
        return fresh
    }

    /// Today's sales (China Standard Time day) from the ledger, as `kamictl report sales`.
    private func salesToday(nowMs: Int64) -> DashboardSnapshot.Sales? {
        let cstOffsetMs: Int64 = 8 * 3_600_000
        let dayStartMs = (nowMs + cstOffsetMs) / 86_400_000 * 86_400_000 - cstOffsetMs
        guard let rows = try? engine.admin.salesReport(group: .day, sinceMs: dayStartMs, untilMs: Int64.max, sku: nil,
                                                       channel: nil, campaign: nil) else { return nil }
        let none = DashboardSnapshot.Sales(orders: 0, paidCents: 0, refundedCents: 0, costCents: 0, commissionCents: 0)
        return rows.reduce(none) {
            .init(orders: $0.orders + $1.orders, paidCents: $0.paidCents + $1.paidCents,
                  refundedCents: $0.refundedCents + $1.refundedCents, costCents: $0.costCents + $1.costCents,
                  commissionCents: $0.commissionCents + $1.commissionCents)
        }
    }

    /// Codes on hand expiring within `DashboardLimits.expiringWithinDays`, per SKU.
    private func expiring() -> [DashboardSnapshot.Expiring] {
        let withinMs = Int64(DashboardLimits.expiringWithinDays) * 86_400_000
        guard let rows = try? engine.admin.inventoryReport(expiringWithinMs: withinMs) else { return [] }
        return rows.map { DashboardSnapshot.Expiring(sku: $0.sku, codes: $0.row.expiringSoon) }
    }
}
