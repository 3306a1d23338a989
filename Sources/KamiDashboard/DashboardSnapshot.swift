/// Everything the dashboard page shows, as plain values: kamid's server builds one per page
/// view and `DashboardPage.render` turns it into HTML. Holds no secret, no order id, no user
/// id and no token: labels are SKU keys, supplier ids, error codes and fixed words.
public struct DashboardSnapshot: Sendable, Equatable {
    /// One SKU's codes by state (`kami_stock_codes`).
    public struct Stock: Sendable, Equatable {
        public var sku: String
        public var available: Int64
        public var reserved: Int64
        public var issued: Int64
        public var voided: Int64
        /// Issued and activated by the buyer or the brand.
        public var used: Int64

        /// Makes a stock line.
        public init(sku: String, available: Int64, reserved: Int64, issued: Int64, voided: Int64, used: Int64 = 0) {
            self.used = used
            self.sku = sku
            self.available = available
            self.reserved = reserved
            self.issued = issued
            self.voided = voided
        }
    }

    /// One minute of order traffic: successful issue and commit replies, and refusals of
    /// reserve, issue and commit by error code. The last minute of a series is still open.
    public struct Minute: Sendable, Equatable {
        /// Wall-clock start, Unix ms.
        public var startMs: Int64
        public var issued: Int
        /// Error code → refusals in this minute (codes with none are absent).
        public var rejects: [String: Int]

        /// Makes a minute.
        public init(startMs: Int64, issued: Int, rejects: [String: Int]) {
            self.startMs = startMs
            self.issued = issued
            self.rejects = rejects
        }
    }

    /// One upstream supplier's health.
    public struct Supplier: Sendable, Equatable {
        public var id: String
        /// `closed`, `open` or `half_open`.
        public var breaker: String
        public var paused: Bool
        public var inFlight: Int
        /// Share of the recent attempts that succeeded, 0...1.
        public var successRate: Double
        public var attempts: Int
        public var p95Ms: Int64?

        /// Makes a supplier line.
        public init(id: String, breaker: String, paused: Bool, inFlight: Int, successRate: Double, attempts: Int,
                    p95Ms: Int64?) {
            self.id = id
            self.breaker = breaker
            self.paused = paused
            self.inFlight = inFlight
            self.successRate = successRate
            self.attempts = attempts
            self.p95Ms = p95Ms
        }
    }

    /// Today's sales from the ledger (China Standard Time day, as `kamictl report sales`).
    public struct Sales: Sendable, Equatable {
        public var orders: Int64
        public var paidCents: Int64
        public var refundedCents: Int64
        public var costCents: Int64
        public var commissionCents: Int64
        /// paid − refunded − cost − commission.
        public var profitCents: Int64 { paidCents - refundedCents - costCents - commissionCents }

        /// Makes the day's figures.
        public init(orders: Int64, paidCents: Int64, refundedCents: Int64, costCents: Int64, commissionCents: Int64) {
            self.orders = orders
            self.paidCents = paidCents
            self.refundedCents = refundedCents
            self.costCents = costCents
            self.commissionCents = commissionCents
        }
    }

    /// Codes on hand of one SKU that expire within `expiringWithinDays` (expired included).
    public struct Expiring: Sendable, Equatable {
        public var sku: String
        public var codes: Int64

        /// Makes an expiring line.
        public init(sku: String, codes: Int64) {
            self.sku = sku
            self.codes = codes
        }
    }

    public var version: String
    /// Wall clock when the snapshot was taken, Unix ms.
    public var nowMs: Int64
    public var uptimeSeconds: Int64
    /// `/readyz`'s answer, and why not when not.
    public var ready: Bool
    public var readyReason: String
    public var stock: [Stock]
    /// Oldest first; the last one is the minute in progress.
    public var minutes: [Minute]
    /// p99 of reserve, issue and commit latency over `minutes` and over the last five of
    /// them, µs (upper bound of the histogram bucket it falls in); nil without traffic.
    /// `Int.max` means above the histogram's last bound.
    public var p99HourUs: Int?
    public var p99RecentUs: Int?
    /// nil: no upstream suppliers configured.
    public var suppliers: [Supplier]?
    public var reviewQueue: Int
    /// nil: the ledger could not be read.
    public var salesToday: Sales?
    public var expiring: [Expiring]
    public var expiringWithinDays: Int
    /// Age of the figures read from the database and the order table (sales, review queue,
    /// expiring codes): they are refreshed at most every `DashboardLimits.slowFiguresMaxAgeMs`.
    public var slowFiguresAgeMs: Int64
    public var holdsOutstanding: Int
    public var connections: Int

    /// Makes a snapshot.
    public init(
        version: String, nowMs: Int64, uptimeSeconds: Int64, ready: Bool, readyReason: String, stock: [Stock],
        minutes: [Minute], p99HourUs: Int?, p99RecentUs: Int?, suppliers: [Supplier]?, reviewQueue: Int,
        salesToday: Sales?, expiring: [Expiring], expiringWithinDays: Int, slowFiguresAgeMs: Int64,
        holdsOutstanding: Int, connections: Int
    ) {
        self.version = version
        self.nowMs = nowMs
        self.uptimeSeconds = uptimeSeconds
        self.ready = ready
        self.readyReason = readyReason
        self.stock = stock
        self.minutes = minutes
        self.p99HourUs = p99HourUs
        self.p99RecentUs = p99RecentUs
        self.suppliers = suppliers
        self.reviewQueue = reviewQueue
        self.salesToday = salesToday
        self.expiring = expiring
        self.expiringWithinDays = expiringWithinDays
        self.slowFiguresAgeMs = slowFiguresAgeMs
        self.holdsOutstanding = holdsOutstanding
        self.connections = connections
    }

    /// Successful issues over all of `minutes`.
    public var issuedTotal: Int { minutes.reduce(0) { $0 + $1.issued } }

    /// Refusals by error code over all of `minutes`, most frequent first (ties by name).
    public var rejectTotals: [(reason: String, count: Int)] {
        var totals: [String: Int] = [:]
        for minute in minutes {
            for (reason, count) in minute.rejects { totals[reason, default: 0] += count }
        }
        return totals.map { (reason: $0.key, count: $0.value) }
            .sorted { $0.count != $1.count ? $0.count > $1.count : $0.reason < $1.reason }
    }
}
