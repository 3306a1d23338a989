public import KamiCore

/// A supplier's circuit breaker: closed (normal), open (no orders, after too many errors in
/// the window), half-open (one probe at a time after the open period; a success closes it,
/// a failure opens it again).
public struct CircuitBreaker: Sendable, Hashable {
    public enum State: String, Sendable, Hashable { case closed, open, halfOpen = "half_open" }

    public private(set) var state = State.closed
    private var outcomes: [Bool] = []
    private var next = 0
    private var openedAtMs: Int64 = 0
    private var probing = false
    public let window: Int
    public let errorRate: Double
    public let openMs: Int64
    /// Times it opened.
    public private(set) var openings = 0

    public init(window: Int, errorRate: Double, openMs: Int64) {
        self.window = window
        self.errorRate = errorRate
        self.openMs = openMs
    }

    /// Whether an order may go to the supplier now; in half-open, only one probe at a time.
    public mutating func allows(nowMs: Int64) -> Bool {
        switch state {
        case .closed: return true
        case .open:
            guard nowMs - openedAtMs >= openMs else { return false }
            state = .halfOpen
            probing = true
            return true
        case .halfOpen:
            guard !probing else { return false }
            probing = true
            return true
        }
    }

    /// Whether it would allow without taking the probe (for listing).
    public func wouldAllow(nowMs: Int64) -> Bool {
        switch state {
        case .closed: true
        case .open: nowMs - openedAtMs >= openMs
        case .halfOpen: !probing
        }
    }

    /// Gives back a half-open probe taken by `allows` whose request never went out.
    public mutating func releaseProbe() {
        if state == .halfOpen { probing = false }
    }

    /// Records an attempt's outcome (`success`: the supplier answered as a working supplier
    /// does; a refusal for stock is a success of the supplier, a timeout or a 5xx is not).
    public mutating func record(success: Bool, nowMs: Int64) {
        switch state {
        case .halfOpen:
            probing = false
            if success {
                state = .closed
                outcomes = []
                next = 0
            } else {
                trip(nowMs)
            }
        case .open:
            return
        case .closed:
            if outcomes.count < window {
                outcomes.append(success)
            } else {
                outcomes[next] = success
                next = (next + 1) % window
            }
            let failures = outcomes.filter { !$0 }.count
            if outcomes.count >= max(2, window / 2) && Double(failures) / Double(outcomes.count) >= errorRate {
                trip(nowMs)
            }
        }
    }

    private mutating func trip(_ nowMs: Int64) {
        state = .open
        openedAtMs = nowMs
        probing = false
        outcomes = []
        next = 0
        openings += 1
    }
}

/// The last attempts at a supplier: latencies and outcomes, for `fastest` and `weighted`.
public struct SupplierStats: Sendable, Hashable {
    private var latencies: [Int64] = []
    private var successes: [Bool] = []
    private var next = 0
    public let capacity: Int
    public private(set) var total = 0
    public private(set) var failures = 0

    public init(capacity: Int = 100) { self.capacity = capacity }

    public mutating func record(latencyMs: Int64, success: Bool) {
        total += 1
        if !success { failures += 1 }
        if latencies.count < capacity {
            latencies.append(latencyMs)
            successes.append(success)
        } else {
            latencies[next] = latencyMs
            successes[next] = success
            next = (next + 1) % capacity
        }
    }

    /// p95 of the recent latencies, ms (nil before any).
    public var p95Ms: Int64? {
        guard !latencies.isEmpty else { return nil }
        let sorted = latencies.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.95))]
    }

    /// Share of recent attempts that succeeded (1 before any).
    public var successRate: Double {
        successes.isEmpty ? 1 : Double(successes.filter { $0 }.count) / Double(successes.count)
    }
}

/// One supplier that could take an order, with what routing knows of it.
public struct Candidate: Sendable, Hashable {
    public var mapping: SupplierMapping
    public var p95Ms: Int64?
    public var successRate: Double

    public init(mapping: SupplierMapping, p95Ms: Int64?, successRate: Double) {
        self.mapping = mapping
        self.p95Ms = p95Ms
        self.successRate = successRate
    }
}

/// Why a mapped supplier is not a candidate for an order now.
public enum Exclusion: Sendable, Hashable, CustomStringConvertible {
    case paused, breakerOpen, unconfigured, outOfStock, triedAndRefused
    /// 成本倒挂: the cost is above the sale price minus the minimum margin.
    case marginGuard(costCents: Int64, limitCents: Int64)

    public var description: String {
        switch self {
        case .paused: "paused"
        case .breakerOpen: "circuit breaker open"
        case .unconfigured: "not in the config"
        case .outOfStock: "out of stock"
        case .triedAndRefused: "refused this order already"
        case .marginGuard(let cost, let limit): "cost \(cost) above the margin guard's \(limit) (成本倒挂)"
        }
    }
}

/// Orders the candidates of one order by the SKU's strategy. Pure: the coordinator gives it
/// the live state, so it is tested without suppliers.
public enum Router {
    /// The margin guard's highest cost for a SKU: price minus the minimum margin.
    public static func costLimit(priceCents: Int64, sourcing: SkuSourcing) -> Int64 {
        priceCents - sourcing.minMarginCents
    }

    /// Ranks `candidates` (already filtered) by `strategy`; `random` in 0..<1 drives `weighted`.
    public static func rank(_ candidates: [Candidate], strategy: RoutingStrategy, random: Double) -> [Candidate] {
        let byPriority: (Candidate, Candidate) -> Bool = {
            ($0.mapping.priority, $0.mapping.costCents, $0.mapping.supplier) < ($1.mapping.priority, $1.mapping.costCents, $1.mapping.supplier)
        }
        switch strategy {
        case .cheapest:
            return candidates.sorted {
                ($0.mapping.costCents, $0.mapping.priority, $0.mapping.supplier) < ($1.mapping.costCents, $1.mapping.priority, $1.mapping.supplier)
            }
        case .priority:
            return candidates.sorted(by: byPriority)
        case .fastest:
            // Unknown latency sorts first, so a new supplier gets measured.
            return candidates.sorted {
                ($0.p95Ms ?? -1, $0.mapping.priority, $0.mapping.supplier) < ($1.p95Ms ?? -1, $1.mapping.priority, $1.mapping.supplier)
            }
        case .weighted:
            let scored = candidates.map { ($0, Double(max(0, $0.mapping.weight)) * max(0.01, $0.successRate)) }
            let total = scored.reduce(0) { $0 + $1.1 }
            guard total > 0 else { return candidates.sorted(by: byPriority) }
            var target = random * total
            var chosen = 0
            for (index, entry) in scored.enumerated() {
                target -= entry.1
                if target < 0 {
                    chosen = index
                    break
                }
            }
            var rest = candidates
            let first = rest.remove(at: chosen)
            return [first] + rest.sorted(by: byPriority)
        }
    }
}
