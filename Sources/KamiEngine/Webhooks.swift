public import KamiCore
public import KamiStore
import KamiPool

extension Engine {
    /// The webhook outbox: events are written by the store in the transaction that makes them
    /// (for the endpoints set here); the delivery module reads what is due and journals what
    /// became of each attempt. Every change is durable and audited.
    public var webhooks: Webhooks { Webhooks(core: core) }
}

/// The outbox as the delivery module and the operator see it.
public struct Webhooks: Sendable {
    let core: EngineCore

    /// Which endpoints get a row for each event from the next batch on (none: events cost nothing).
    public func setRoutes(_ routes: [WebhookRoute]) { core.store.outboxRoutes.set(routes) }

    /// Pending rows of `endpoint` due at `nowMs`, oldest due first.
    public func due(endpoint: String, nowMs: Int64, limit: Int) throws(KamiError) -> [OutboxRow] {
        try core.store.outboxDue(endpoint: endpoint, nowMs: nowMs, limit: limit)
    }

    /// Rows in `state`, newest first (an operator's listing of the dead letters).
    public func rows(state: OutboxRow.State, endpoint: String? = nil, limit: Int = 100) throws(KamiError) -> [OutboxRow] {
        try core.store.outbox(state: state, endpoint: endpoint, limit: limit)
    }

    /// Rows per endpoint and state.
    public func counts() throws(KamiError) -> [(endpoint: String, state: OutboxRow.State, count: Int)] {
        try core.store.outboxCounts()
    }

    /// Journals delivery outcomes in one write; `completion` runs once it is durable.
    public func record(_ results: [WebhookResult], completion: @escaping @Sendable (Result<Void, KamiError>) -> Void) {
        guard !results.isEmpty else { return completion(.success(())) }
        var delivered: [Int64] = []
        var retried: [Int64] = []
        var dead: [Int64] = []
        for result in results {
            switch result.outcome {
            case .delivered: delivered.append(result.id)
            case .retry: retried.append(result.id)
            case .dead: dead.append(result.id)
            }
        }
        func list(_ ids: [Int64]) -> String { ids.isEmpty ? "-" : ids.map(String.init).joined(separator: ",") }
        let event = AuditEvent(
            "webhook-results", subject: "webhooks",
            detail: "delivered=\(list(delivered)) retry=\(list(retried)) dead=\(list(dead))")
        core.store.writer.submit(.webhookResults(results, audit: event)) { result in
            completion(result.map { _ in () })
        }
    }

    /// Queues dead-lettered rows again (`ids`; all of `endpoint`, or all, when empty) with a
    /// fresh retry budget; returns how many. `who` names the operator in the audit log.
    public func replay(ids: [Int64], endpoint: String?, who: String) throws(KamiError) -> Int64 {
        let what = ids.isEmpty ? "all" + (endpoint.map { " endpoint=\($0)" } ?? "") : "ids=" + ids.map(String.init).joined(separator: ",")
        let event = AuditEvent("webhook-replay", subject: "webhooks", detail: what + " by=\(who)")
        guard case .rowID(let count) = try core.submitAndWait(.webhookReplay(ids: ids, endpoint: endpoint, audit: event)) else {
            return 0
        }
        return count
    }

    /// Records an event that changes nothing else (stock low, a breaker opened): its outbox
    /// rows and audit entry, in one write.
    public func emit(_ event: OutboxEvent, subject: String,
                     completion: @escaping @Sendable (Result<Void, KamiError>) -> Void = { _ in }) {
        let audit = AuditEvent("webhook-event", subject: subject, detail: "")
        core.store.writer.submit(.webhookEvent(event, audit: audit)) { result in completion(result.map { _ in () }) }
    }

    /// Deletes delivered rows done before `beforeMs`, at most `limit`; how many.
    public func prune(beforeMs: Int64, limit: Int) throws(KamiError) -> Int64 {
        let event = AuditEvent("webhook-prune", subject: "webhooks", detail: "before_ms=\(beforeMs)")
        guard case .rowID(let count) = try core.submitAndWait(.webhookPrune(beforeMs: beforeMs, limit: limit, audit: event)) else {
            return 0
        }
        return count
    }

    /// SKUs with a low-water mark, with their stock now (for the stock-low watch).
    public func lowWaterLevels() -> [(sku: Sku, available: Int, lowWater: Int)] {
        core.skus().compactMap { sku in
            let mark = core.upstream.sourcing(sku.id).lowWater
            guard mark > 0 else { return nil }
            return (sku, core.pool.available(sku: sku.id), mark)
        }
    }
}
