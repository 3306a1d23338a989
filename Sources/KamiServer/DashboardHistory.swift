import KamiCore
import KamiDashboard
import Synchronization

/// Cumulative counts of the order operations (reserve, issue, commit) read from `Metrics`'
/// atomics: successful issue and commit replies, refusals by result slot, and the latency
/// histogram's cells summed over the three. Reading one costs a few dozen atomic loads and
/// touches nothing the request path locks.
struct OrderSample: Sendable, Equatable {
    var issued: Int
    /// Indexed by `Metrics.results` slot (slot 0, `ok`, is unused).
    var rejects: [Int]
    /// Per latency bucket (not cumulative), then `+Inf`; bounds are `Metrics.latencyBoundsUs`.
    var latency: [Int]

    static func zero() -> OrderSample {
        OrderSample(issued: 0, rejects: Array(repeating: 0, count: Metrics.results.count),
                    latency: Array(repeating: 0, count: Metrics.latencyBoundsUs.count + 1))
    }

    /// `self - earlier`, never below zero (counters only grow; this guards a torn read).
    func minus(_ earlier: OrderSample) -> OrderSample {
        OrderSample(issued: max(0, issued - earlier.issued),
                    rejects: zip(rejects, earlier.rejects).map { max(0, $0 - $1) },
                    latency: zip(latency, earlier.latency).map { max(0, $0 - $1) })
    }

    static func + (a: OrderSample, b: OrderSample) -> OrderSample {
        OrderSample(issued: a.issued + b.issued, rejects: zip(a.rejects, b.rejects).map(+),
                    latency: zip(a.latency, b.latency).map(+))
    }
}

/// The last hour of order traffic, one bucket per minute, for the dashboard. It never runs
/// on the request path: the metrics port's loop calls `tick` once a minute, which reads the
/// cumulative counters once and keeps the difference from the previous minute; a page view
/// adds the minute in progress (counters now minus the last tick). Bounded: at most
/// `DashboardLimits.minutesShown - 1` closed minutes are kept.
final class DashboardHistory: Sendable {
    /// One closed (or, in `window`, open) minute.
    struct Minute: Sendable, Equatable {
        var startMs: Int64
        var counts: OrderSample
    }

    private struct State {
        var closed: [Minute] = []
        var last: OrderSample
        var lastStartMs: Int64
    }

    /// Closed minutes kept: with the open one, an hour.
    static let closedMinutesMax = DashboardLimits.minutesShown - 1
    /// How often `tick` should run.
    static let bucketMs: Int64 = 60_000

    private let state: Locked<State>

    /// Starts the history at `nowMs` (wall clock) from the counters as they are.
    init(sample: OrderSample, nowMs: Int64) {
        state = Locked(State(last: sample, lastStartMs: nowMs))
    }

    /// Closes the minute in progress at `nowMs` with the counters `sample`.
    func tick(sample: OrderSample, nowMs: Int64) {
        state.withLock { state in
            state.closed.append(Minute(startMs: state.lastStartMs, counts: sample.minus(state.last)))
            if state.closed.count > Self.closedMinutesMax {
                state.closed.removeFirst(state.closed.count - Self.closedMinutesMax)
            }
            state.last = sample
            state.lastStartMs = nowMs
        }
    }

    /// The closed minutes, oldest first, then the minute in progress (counters `sample`).
    func window(sample: OrderSample) -> [Minute] {
        state.withLock { state in
            state.closed + [Minute(startMs: state.lastStartMs, counts: sample.minus(state.last))]
        }
    }

    /// The `q` quantile (0...1) of the latency cells `cells` over `bounds`: the upper bound
    /// of the bucket it falls in, `Int.max` above the last bound, nil with no observation.
    static func quantile(_ q: Double, cells: [Int], bounds: [Int]) -> Int? {
        precondition(cells.count == bounds.count + 1, "cells \(cells.count) for \(bounds.count) bounds")
        let total = cells.reduce(0, +)
        guard total > 0 else { return nil }
        let rank = Int((q * Double(total)).rounded(.up))
        var running = 0
        for (index, count) in cells.enumerated() {
            running += count
            if running >= max(1, rank) { return index < bounds.count ? bounds[index] : Int.max }
        }
        return Int.max
    }

    /// The minutes as the page shows them: issues and refusals by error code name.
    static func pageMinutes(_ minutes: [Minute]) -> [DashboardSnapshot.Minute] {
        minutes.map { minute in
            var rejects: [String: Int] = [:]
            for (slot, count) in minute.counts.rejects.enumerated() where slot > 0 && count > 0 {
                rejects[Metrics.results[slot]] = count
            }
            return DashboardSnapshot.Minute(startMs: minute.startMs, issued: minute.counts.issued, rejects: rejects)
        }
    }
}
