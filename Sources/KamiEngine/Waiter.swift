import KamiCore
import KamiPool
import Synchronization
import KamiStore

/// A one-shot result handed from a completion to a thread that waits for it.
typealias Waiter = ResultBox

/// Blocking forms of the operations, for tools, tests and anything not on an event loop.
extension EngineCore {
    /// `reserve`, waiting for the result.
    func reserveSync(
        order: String, user: String, sku: String, units: Int = 1, ttlMs: Int64? = nil, client: String? = nil,
        terms: OrderTerms = .none
    ) -> Result<OrderReply, KamiError> {
        let waiter = Waiter<OrderReply>()
        reserve(order: order, user: user, sku: sku, units: units, ttlMs: ttlMs, client: client, terms: terms) { waiter.set($0) }
        return waiter.wait()
    }

    /// `commit`, waiting for the result.
    func commitSync(order: String, paymentRef: String, client: String? = nil) -> Result<OrderReply, KamiError> {
        let waiter = Waiter<OrderReply>()
        commit(order: order, paymentRef: paymentRef, client: client) { waiter.set($0) }
        return waiter.wait()
    }

    /// `issue`, waiting for the result.
    func issueSync(
        order: String, user: String, sku: String, units: Int = 1, paymentRef: String, client: String? = nil,
        terms: OrderTerms = .none
    ) -> Result<OrderReply, KamiError> {
        let waiter = Waiter<OrderReply>()
        issue(order: order, user: user, sku: sku, units: units, paymentRef: paymentRef, client: client, terms: terms) {
            waiter.set($0)
        }
        return waiter.wait()
    }

    /// `release`, waiting for the result.
    func releaseSync(order: String) -> Result<OrderReply, KamiError> {
        let waiter = Waiter<OrderReply>()
        release(order: order) { waiter.set($0) }
        return waiter.wait()
    }

    /// `refund`, waiting for the result.
    func refundSync(order: String) -> Result<OrderReply, KamiError> {
        let waiter = Waiter<OrderReply>()
        refund(order: order) { waiter.set($0) }
        return waiter.wait()
    }
}

extension EngineCore {
    /// Returns once every mutation submitted before the call is durable and its completion has
    /// run (a job queued behind them on the writer).
    func barrier() {
        _ = try? store.writer.perform { (_: inout WriterContext) throws(KamiError) in () }
    }
}
