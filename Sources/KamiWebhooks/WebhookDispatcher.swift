import CKamiLinux
import Glibc
public import KamiCore
public import KamiEngine
public import KamiHTTP
public import KamiStore
import Synchronization

/// Delivers the outbox: on its own loop thread (never an event loop of the storefront
/// protocol, so delivery never slows issuing), it reads what is due per endpoint, POSTs each
/// event signed (`WebhookSignature`), and journals what became of each attempt in batches
/// through the group-commit writer. A row is sent at most once at a time: it stays in the
/// in-flight set from its read until its outcome is durable.
///
/// It also watches stock against each SKU's low-water mark (an event when it falls under it,
/// once until it is back at or over it) and prunes old delivered rows.
public final class WebhookDispatcher: @unchecked Sendable {
    // @unchecked: every var below is touched only on `loop`'s thread.
    public typealias Log = @Sendable (_ event: String, _ fields: [String: String]) -> Void

    private let engine: Engine
    private let loop: IOLoop
    private let client: HTTPClient
    private let log: Log
    private let clock: any Clock
    private var endpoints: [String: WebhookEndpoint] = [:]
    private var settings: WebhookSettings
    private var tls: TLSContext?
    /// Rows read and not yet settled (sent, or outcome not yet durable).
    private var inFlight: Set<Int64> = []
    private var sending: [String: Int] = [:]
    private var results: [WebhookResult] = []
    private var flushing = false
    /// SKUs under their low-water mark whose event was recorded.
    private var lowSkus: Set<SkuID> = []
    /// SKUs whose stock-low event is being written.
    private var emitting: Set<SkuID> = []
    private var lastWatchMs: Int64 = 0
    private var lastPruneMs: Int64 = 0
    private var started = false
    /// A pull is queued on the loop (completions free room; one pull serves them all).
    private var pullQueued = false
    private let stopped = Atomic<Bool>(false)
    private let countersBox = Locked(WebhookCounters())

    /// The loop thread's nice value (19: the lowest priority).
    static let threadNice: Int32 = 19
    /// Wait before journaling outcomes again after a failed write, ms.
    static let journalRetryMs: Int64 = 1_000
    /// Watch stock this often, ms.
    static let watchEveryMs: Int64 = 1_000
    /// Prune delivered rows this often, ms, at most `pruneBatch` at a time.
    static let pruneEveryMs: Int64 = 60_000
    static let pruneBatch = 10_000

    public init(engine: Engine, endpoints: [WebhookEndpoint], settings: WebhookSettings, clock: any Clock = SystemClock(),
                log: @escaping Log) {
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.log = log
        loop = IOLoop(name: "kami-webhooks")
        client = HTTPClient(loop: loop)
        self.endpoints = Dictionary(endpoints.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        engine.webhooks.setRoutes(endpoints.map(\.route))
    }

    /// Starts polling (the outbox left by the last run is delivered first).
    public func start() {
        loop.execute { [self] in
            // Delivery takes the CPU that issuing leaves: the loop thread runs at the lowest
            // priority, so a flood of events (or a receiver failing every request) never
            // competes with the storefront's requests on a busy machine.
            _ = kami_thread_nice(WebhookDispatcher.threadNice)
            started = true
            tick()
        }
    }

    /// Stops the loop; rows in flight stay pending and are sent again at the next start.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // The routes stay: events committed while kamid shuts down still get their rows.
        let done = Locked(false)
        loop.execute { [self] in
            flush()
            done.withLock { $0 = true }
        }
        for _ in 0..<200 where !done.withLock({ $0 }) { usleep(5_000) }
        loop.stop()
    }

    /// Replaces endpoints and settings (a config reload). Rows of a removed endpoint stay in
    /// the outbox and are sent again if it comes back.
    public func reload(endpoints: [WebhookEndpoint], settings: WebhookSettings) {
        engine.webhooks.setRoutes(endpoints.map(\.route))
        loop.execute { [self] in
            self.endpoints = Dictionary(endpoints.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
            self.settings = settings
        }
    }

    /// Counters since start.
    public var counters: WebhookCounters { countersBox.withLock { $0 } }

    private func tick() {
        guard !stopped.load(ordering: .acquiring) else { return }
        let now = clock.nowMs()
        for endpoint in endpoints.values.sorted(by: { $0.name < $1.name }) { pull(endpoint, nowMs: now) }
        flush()
        if now - lastWatchMs >= WebhookDispatcher.watchEveryMs {
            lastWatchMs = now
            watchStock()
        }
        if now - lastPruneMs >= WebhookDispatcher.pruneEveryMs {
            lastPruneMs = now
            prune(nowMs: now)
        }
        _ = loop.schedule(afterMs: settings.pollMs) { [self] in tick() }
    }

    /// Sends what is due for `endpoint`, up to its concurrency.
    private func pull(_ endpoint: WebhookEndpoint, nowMs: Int64) {
        let room = settings.concurrency - sending[endpoint.name, default: 0]
        guard room > 0 else { return }
        let rows: [OutboxRow]
        do {
            rows = try engine.webhooks.due(endpoint: endpoint.name, nowMs: nowMs, limit: room + inFlight.count)
        } catch {
            log("webhook-read-failed", ["endpoint": endpoint.name, "error": "\(error)"])
            return
        }
        var sent = 0
        for row in rows where sent < room && !inFlight.contains(row.id) {
            inFlight.insert(row.id)
            sent += 1
            send(row, to: endpoint)
        }
    }

    private func send(_ row: OutboxRow, to endpoint: WebhookEndpoint) {
        sending[endpoint.name, default: 0] += 1
        let body = Array(row.body.utf8)
        let timestamp = clock.nowMs() / 1_000
        let headers = HTTPHeaders([
            ("Content-Type", "application/json"),
            ("User-Agent", "kamid-webhooks"),
            (WebhookSignature.eventIDHeader, String(row.id)),
            (WebhookSignature.eventTypeHeader, row.type),
            (WebhookSignature.timestampHeader, String(timestamp)),
            (WebhookSignature.signatureHeader, WebhookSignature.sign(secret: endpoint.secret, timestamp: timestamp, body: body)),
        ])
        var options = HTTPClientOptions()
        options.timeoutMs = settings.timeoutMs
        options.connectTimeoutMs = min(settings.timeoutMs, options.connectTimeoutMs)
        options.maxConnections = max(1, settings.concurrency)
        if endpoint.url.secure && tls == nil {
            do { tls = try TLSContext.client() } catch {
                log("webhook-tls-failed", ["endpoint": endpoint.name, "error": "\(error)"])
            }
        }
        let request = HTTPRequest(method: "POST", target: "", headers: headers, body: body)
        client.send(request, to: endpoint.url, tls: tls, options: options) { [self] result in
            // On the loop thread.
            sending[endpoint.name, default: 1] -= 1
            switch result {
            case .success(let response) where (200..<300).contains(response.status):
                settle(row, outcome: .delivered, error: "")
            case .success(let response):
                settle(row, failed: "HTTP \(response.status)")
            case .failure(let error):
                settle(row, failed: "\(error.kind.rawValue): \(error.message)")
            }
        }
    }

    private func settle(_ row: OutboxRow, failed error: String) {
        let now = clock.nowMs()
        let attempts = row.attempts + 1
        let next = now + settings.backoff(afterAttempts: attempts, unit: Double.random(in: 0..<1))
        if next - row.retryFromMs > settings.retryForMs {
            settle(row, outcome: .dead, error: error)
            log("webhook-dead", ["endpoint": row.endpoint, "id": String(row.id), "type": row.type,
                                 "attempts": String(attempts), "error": error])
        } else {
            settle(row, outcome: .retry(atMs: next), error: error)
        }
    }

    private func settle(_ row: OutboxRow, outcome: WebhookResult.Outcome, error: String) {
        results.append(WebhookResult(id: row.id, outcome: outcome, error: error))
        countersBox.withLock { counters in
            switch outcome {
            case .delivered: counters.delivered += 1
            case .retry: counters.failed += 1
            case .dead: counters.failed += 1; counters.dead += 1
            }
        }
        flush()
        pullSoon()
    }

    /// Pulls every endpoint again once the loop has handled what is ready now.
    private func pullSoon() {
        guard !pullQueued, !stopped.load(ordering: .acquiring) else { return }
        pullQueued = true
        loop.execute { [self] in
            pullQueued = false
            let now = clock.nowMs()
            for endpoint in endpoints.values.sorted(by: { $0.name < $1.name }) { pull(endpoint, nowMs: now) }
        }
    }

    /// Journals the outcomes gathered so far in one write (one at a time); their rows leave
    /// the in-flight set once durable.
    private func flush() {
        guard !flushing, !results.isEmpty else { return }
        let batch = results
        results = []
        flushing = true
        engine.webhooks.record(batch) { [self] outcome in
            loop.execute { [self] in
                flushing = false
                if case .failure(let error) = outcome {
                    // Not durable: the outcomes are kept (their rows stay in flight, not sent
                    // again) and written again shortly; a busy writer is not hammered.
                    log("webhook-journal-failed", ["count": String(batch.count), "error": "\(error)"])
                    results = batch + results
                    _ = loop.schedule(afterMs: WebhookDispatcher.journalRetryMs) { [self] in flush() }
                    return
                }
                for result in batch { inFlight.remove(result.id) }
                // What gathered meanwhile goes in the next write (a group commit of outcomes).
                flush()
                pullSoon()
            }
        }
    }

    private func watchStock() {
        guard endpoints.values.contains(where: { $0.events?.contains(.stockLow) ?? true }) else { return }
        for level in engine.webhooks.lowWaterLevels() {
            if level.available >= level.lowWater {
                lowSkus.remove(level.sku.id)
            } else if !lowSkus.contains(level.sku.id) && !emitting.contains(level.sku.id) {
                // Marked low only once its event is durable: a failed write is tried again at
                // the next watch. (After a restart a SKU still low is told again: at least once.)
                emitting.insert(level.sku.id)
                let sku = level.sku.id
                let data = OutboxData.object([
                    ("sku", OutboxData.quoted(level.sku.key)), ("available", String(level.available)),
                    ("low_water", String(level.lowWater)),
                ])
                engine.webhooks.emit(OutboxEvent(type: .stockLow, data: data), subject: "sku:\(level.sku.key)") { [self] result in
                    loop.execute { [self] in
                        emitting.remove(sku)
                        if case .success = result { lowSkus.insert(sku) }
                    }
                }
            }
        }
    }

    private func prune(nowMs: Int64) {
        do {
            let pruned = try engine.webhooks.prune(beforeMs: nowMs - settings.keepDeliveredMs, limit: WebhookDispatcher.pruneBatch)
            if pruned > 0 { log("webhook-pruned", ["rows": String(pruned)]) }
        } catch {
            log("webhook-prune-failed", ["error": "\(error)"])
        }
    }

    /// Records that a supplier's breaker opened (called by the upstream module).
    public func breakerOpened(supplier: String) {
        guard !stopped.load(ordering: .acquiring) else { return }
        let data = OutboxData.object([("supplier", OutboxData.quoted(supplier))])
        engine.webhooks.emit(OutboxEvent(type: .supplierBreakerOpened, data: data), subject: "supplier:\(supplier)")
    }
}

/// What the dispatcher did since start.
public struct WebhookCounters: Sendable, Hashable {
    public var delivered = 0
    /// Attempts that failed (each retry counts).
    public var failed = 0
    /// Rows dead-lettered.
    public var dead = 0
}
