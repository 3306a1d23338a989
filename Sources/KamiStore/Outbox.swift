public import KamiCore
import KamiLedger
import Synchronization

/// The events a webhook endpoint can be told about. Their names are the `type` of a delivery
/// and what `webhook_events.NAME` lists.
public enum WebhookEventType: String, Sendable, CaseIterable, Hashable {
    /// An order's codes were issued to it (from the pool, a supplier, an operator, a review).
    case orderDelivered = "order.delivered"
    /// An order is paid and waits for a supplier.
    case orderPendingUpstream = "order.pending_upstream"
    /// No supplier could fulfil an order; it is dead-lettered.
    case orderFailed = "order.failed"
    /// An order was refunded and its codes voided.
    case orderRefunded = "order.refunded"
    /// A paid order waits for an operator (manual delivery, or held for review).
    case orderHeld = "order.held"
    /// A paid order was released without its codes (denied or timed out in review): the
    /// storefront refunds the buyer.
    case orderReleased = "order.released"
    case caseOpened = "case.opened"
    /// A case was closed: refunded, replaced or rejected.
    case caseResolved = "case.resolved"
    /// A SKU's stock fell under its low-water mark.
    case stockLow = "stock.low"
    /// A supplier's circuit breaker opened.
    case supplierBreakerOpened = "supplier.breaker_opened"
    /// Codes of an order were activated (marked used) by the storefront or a brand's token.
    case codeActivated = "code.activated"
}

/// One configured endpoint as the writer sees it: its name and the events it takes (nil: all).
public struct WebhookRoute: Sendable, Hashable {
    public var name: String
    public var events: Set<WebhookEventType>?

    public init(name: String, events: Set<WebhookEventType>? = nil) {
        self.name = name
        self.events = events
    }

    func takes(_ type: WebhookEventType) -> Bool { events?.contains(type) ?? true }
}

/// The endpoints that get an outbox row for each event, read by the writer once per batch.
/// Set at start and on reload; with none, events cost nothing.
public final class OutboxRoutes: Sendable {
    private let routes = Locked<[WebhookRoute]>([])

    public init() {}

    public func set(_ routes: [WebhookRoute]) { self.routes.withLock { $0 = routes } }

    public var current: [WebhookRoute] { routes.withLock { $0 } }
}

/// An event's payload: its type and the `data` object, as JSON text built by `OutboxData`.
public struct OutboxEvent: Sendable, Hashable {
    public var type: WebhookEventType
    /// The JSON object delivered as `data`.
    public var data: String

    public init(type: WebhookEventType, data: String) {
        self.type = type
        self.data = data
    }
}

/// A row of the outbox.
public struct OutboxRow: Sendable, Hashable {
    public enum State: Int, Sendable, Hashable, CustomStringConvertible {
        case pending = 0, delivered = 1, dead = 2
        public var description: String {
            switch self {
            case .pending: "pending"
            case .delivered: "delivered"
            case .dead: "dead"
            }
        }
    }

    /// The event id (what receivers deduplicate on): unique, never reused.
    public var id: Int64
    public var endpoint: String
    public var type: String
    public var data: String
    public var createdAtMs: Int64
    /// Where the retry window starts: the event's time, or its last replay's.
    public var retryFromMs: Int64
    public var state: State
    public var attempts: Int
    public var nextAtMs: Int64
    public var lastError: String
    public var doneAtMs: Int64?

    public init(id: Int64, endpoint: String, type: String, data: String, createdAtMs: Int64, retryFromMs: Int64? = nil,
                state: State, attempts: Int, nextAtMs: Int64, lastError: String, doneAtMs: Int64?) {
        self.id = id
        self.endpoint = endpoint
        self.type = type
        self.data = data
        self.createdAtMs = createdAtMs
        self.retryFromMs = retryFromMs ?? createdAtMs
        self.state = state
        self.attempts = attempts
        self.nextAtMs = nextAtMs
        self.lastError = lastError
        self.doneAtMs = doneAtMs
    }

    func with(retryFromMs: Int64) -> OutboxRow {
        var row = self
        row.retryFromMs = retryFromMs
        return row
    }

    /// The body a delivery carries: the event's id, type and time around its data.
    public var body: String {
        "{\"id\":\(id),\"type\":\(OutboxData.quoted(type)),\"created_ms\":\(createdAtMs),\"data\":\(data)}"
    }
}

/// What became of one delivery attempt.
public struct WebhookResult: Sendable, Hashable {
    public enum Outcome: Sendable, Hashable {
        /// The receiver answered 2xx.
        case delivered
        /// Try again at `atMs`.
        case retry(atMs: Int64)
        /// The last retry failed: dead-lettered.
        case dead
    }

    public var id: Int64
    public var outcome: Outcome
    /// What went wrong (status or transport error; never the body), empty when delivered.
    public var error: String

    public init(id: Int64, outcome: Outcome, error: String = "") {
        self.id = id
        self.outcome = outcome
        self.error = error
    }
}

/// Builds the `data` objects of events: JSON text from plain values (no secrets reach here:
/// the writer is given ids, keys and counts).
public enum OutboxData {
    /// `text` as a JSON string literal.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// A JSON object of `fields` (values already JSON).
    public static func object(_ fields: [(String, String)]) -> String {
        "{" + fields.map { quoted($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
    }

    /// An order event's data, built in one string (it is on the issue path, in the writer's
    /// transaction: no arrays of parts, and identifiers, which are plain ASCII, copied whole).
    public static func order(_ order: Order, skuKey: String, codes: [CodeID]) -> String {
        var out = "{\"order\":"
        out.reserveCapacity(64 + order.orderID.utf8.count + skuKey.utf8.count + codes.count * 8)
        appendQuoted(order.orderID, to: &out)
        out += ",\"sku\":"
        appendQuoted(skuKey, to: &out)
        out += ",\"units\":"
        out += String(order.units)
        out += ",\"state\":\""
        out += order.state.description
        out += "\",\"code_ids\":["
        for (index, code) in codes.enumerated() {
            if index > 0 { out += "," }
            out += String(code)
        }
        out += "]}"
        return out
    }

    /// `text` as a JSON string literal appended to `out`; text with nothing to escape (order
    /// ids and SKU keys are printable ASCII) is copied as it is.
    static func appendQuoted(_ text: String, to out: inout String) {
        let plain = text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
        if plain {
            out += "\""
            out += text
            out += "\""
        } else {
            out += quoted(text)
        }
    }
}

/// Turns the mutations of a batch into outbox rows, in the same transaction (writer thread).
final class OutboxWriter {
    let db: Connection
    let routes: [WebhookRoute]
    /// SKU keys looked up in this batch.
    private var skuKeys: [SkuID: String] = [:]

    init(db: Connection, routes: [WebhookRoute]) {
        self.db = db
        self.routes = routes
    }

    /// The events `mutation` (with its `outcome`) makes, in order.
    func events(of mutation: Mutation, outcome: MutationOutcome) throws(SQLiteError) -> [OutboxEvent] {
        switch mutation {
        case .writeOrder(let order, _, let audit, _):
            return try orderEvent(order, audit: audit.event).map { [$0] } ?? []
        case .writeAttempt(_, let order?, _) where order.state == .failed:
            return [OutboxEvent(type: .orderFailed, data: try orderData(order))]
        case .deliverUpstream(let delivery):
            guard case .codes(let codes) = outcome else { return [] }
            var order = delivery.order
            order.codes = codes
            return [OutboxEvent(type: .orderDelivered, data: try orderData(order))]
        case .writeCase(let item, let audit):
            let id: Int64 = if case .rowID(let made) = outcome { made } else { item.id }
            let data = try caseData(item, id: id)
            switch audit.event {
            case "case-open": return [OutboxEvent(type: .caseOpened, data: data)]
            case "case-reject", "case-refund": return [OutboxEvent(type: .caseResolved, data: data)]
            default: return []
            }
        case .replaceCode(_, _, _, let closing, _):
            return [OutboxEvent(type: .caseResolved, data: try caseData(closing, id: closing.id))]
        case .webhookEvent(let event, _):
            return [event]
        case .activate(let order, let codes, let via, _):
            let data = OutboxData.object([
                ("order", OutboxData.quoted(order.orderID)), ("sku", OutboxData.quoted(try skuKey(order.sku))),
                ("code_ids", "[" + codes.map { String($0.codeID) }.joined(separator: ",") + "]"), ("via", OutboxData.quoted(via)),
            ])
            return [OutboxEvent(type: .codeActivated, data: data)]
        default:
            return []
        }
    }

    private func orderEvent(_ order: Order, audit: String) throws(SQLiteError) -> OutboxEvent? {
        guard let type = OutboxWriter.orderEventType(order, audit: audit) else { return nil }
        return OutboxEvent(type: type, data: try orderData(order))
    }

    /// Writes the event of an order's write (from the issue log) to `endpoints`, those that
    /// took its type when the record was written.
    func writeOrderEvent(_ order: Order, audit: String, endpoints: [String], atMs: Int64) throws(SQLiteError) {
        guard let event = try orderEvent(order, audit: audit) else { return }
        try write([event], atMs: atMs, to: endpoints)
    }

    /// The names of the endpoints in `routes` that take the event of an order's write.
    static func endpoints(of order: Order, audit: String, routes: [WebhookRoute]) -> [String] {
        guard !routes.isEmpty, let type = orderEventType(order, audit: audit) else { return [] }
        return routes.filter { $0.takes(type) }.map(\.name)
    }

    /// Which webhook event an order's write is, if any.
    static func orderEventType(_ order: Order, audit: String) -> WebhookEventType? {
        let type: WebhookEventType
        switch (order.state, audit) {
        case (.committed, "issue"), (.committed, "commit"), (.committed, "commit-late"), (.committed, "review-approve"):
            type = .orderDelivered
        case (.pendingUpstream, "issue-upstream"), (.pendingUpstream, "commit-upstream"), (.pendingUpstream, "upstream-retry"):
            type = .orderPendingUpstream
        case (.failed, _): type = .orderFailed
        case (.refunded, "refund"): type = .orderRefunded
        // Paid and waiting for an operator: manual delivery, or a hold paid while in review.
        case (.review, _) where order.paymentRef != nil: type = .orderHeld
        case (.released, _), (.expired, _): guard order.paymentRef != nil else { return nil }
            type = .orderReleased
        default: return nil
        }
        return type
    }

    private func orderData(_ order: Order) throws(SQLiteError) -> String {
        OutboxData.order(order, skuKey: try skuKey(order.sku), codes: order.codes.map(\.codeID))
    }

    private func caseData(_ item: AfterSalesCase, id: Int64) throws(SQLiteError) -> String {
        OutboxData.object([
            ("case", String(id)), ("order", OutboxData.quoted(item.orderID)),
            ("sku", OutboxData.quoted(try skuKey(item.sku))),
            ("code_id", item.codeID.map(String.init) ?? "null"),
            ("reason", OutboxData.quoted(item.reason.rawValue)), ("state", OutboxData.quoted("\(item.state)")),
        ])
    }

    private func skuKey(_ sku: SkuID) throws(SQLiteError) -> String {
        if let known = skuKeys[sku] { return known }
        let stmt = try db.prepare("SELECT key FROM skus WHERE id = ?")
        defer { stmt.reset() }
        stmt.bind(1, Int64(sku))
        let key = try stmt.step() ? stmt.text(0) ?? "" : ""
        skuKeys[sku] = key
        return key
    }

    /// Writes one row per endpoint that takes each event.
    func write(_ events: [OutboxEvent], atMs: Int64) throws(SQLiteError) {
        for event in events {
            try write([event], atMs: atMs, to: routes.filter { $0.takes(event.type) }.map(\.name))
        }
    }

    /// Writes one row per event for each of `endpoints`.
    private func write(_ events: [OutboxEvent], atMs: Int64, to endpoints: [String]) throws(SQLiteError) {
        guard !events.isEmpty, !endpoints.isEmpty else { return }
        let insert = try db.prepare("""
            INSERT INTO webhook_outbox(endpoint, type, data, created_ms, retry_from_ms, state, attempts, next_ms, last_error)
            VALUES(?1,?2,?3,?4,?4,0,0,?4,'')
            """)
        for event in events {
            for endpoint in endpoints {
                insert.bind(1, endpoint)
                insert.bind(2, event.type.rawValue)
                insert.bind(3, event.data)
                insert.bind(4, atMs)
                try insert.run()
            }
        }
    }

    /// Records delivery outcomes (a row already delivered or dead is left as it is).
    static func record(_ results: [WebhookResult], db: Connection, atMs: Int64) throws(SQLiteError) {
        let stmt = try db.prepare("""
            UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, next_ms = ?, last_error = ?, done_ms = ?
            WHERE id = ? AND state = 0
            """)
        for result in results {
            switch result.outcome {
            case .delivered:
                stmt.bind(1, OutboxRow.State.delivered.rawValue)
                stmt.bind(2, atMs)
                stmt.bind(4, atMs)
            case .retry(let at):
                stmt.bind(1, OutboxRow.State.pending.rawValue)
                stmt.bind(2, at)
                stmt.bindNull(4)
            case .dead:
                stmt.bind(1, OutboxRow.State.dead.rawValue)
                stmt.bind(2, atMs)
                stmt.bind(4, atMs)
            }
            stmt.bind(3, String(result.error.prefix(OutboxLimits.errorCharactersMax)))
            stmt.bind(5, result.id)
            try stmt.run()
        }
    }

    /// Puts dead rows (all, or those of `ids`, or of `endpoint`) back in the queue, due now
    /// and with a fresh retry budget; returns how many.
    static func replay(ids: [Int64], endpoint: String?, db: Connection, atMs: Int64) throws(SQLiteError) -> Int64 {
        var replayed: Int64 = 0
        if ids.isEmpty {
            let stmt = try db.prepare("""
                UPDATE webhook_outbox SET state = 0, attempts = 0, next_ms = ?, retry_from_ms = ?, done_ms = NULL
                WHERE state = 2 AND (? IS NULL OR endpoint = ?)
                """)
            stmt.bind(1, atMs)
            stmt.bind(2, atMs)
            stmt.bind(3, endpoint)
            stmt.bind(4, endpoint)
            try stmt.run()
            return Int64(db.changes)
        }
        let stmt = try db.prepare("""
            UPDATE webhook_outbox SET state = 0, attempts = 0, next_ms = ?, retry_from_ms = ?, done_ms = NULL
            WHERE id = ? AND state = 2
            """)
        for id in ids {
            stmt.bind(1, atMs)
            stmt.bind(2, atMs)
            stmt.bind(3, id)
            try stmt.run()
            replayed += Int64(db.changes)
        }
        return replayed
    }

    /// Deletes delivered rows done before `beforeMs`, at most `limit`; returns how many. The
    /// newest row always stays: the next id is one past it, so no id is ever given twice.
    static func prune(beforeMs: Int64, limit: Int, db: Connection) throws(SQLiteError) -> Int64 {
        let stmt = try db.prepare("""
            DELETE FROM webhook_outbox WHERE id IN (
                SELECT id FROM webhook_outbox WHERE state = 1 AND done_ms < ?
                    AND id < (SELECT MAX(id) FROM webhook_outbox) ORDER BY id LIMIT ?)
            """)
        stmt.bind(1, beforeMs)
        stmt.bind(2, limit)
        try stmt.run()
        return Int64(db.changes)
    }
}

/// Bounds of the outbox.
public enum OutboxLimits {
    /// A recorded error is cut to this many characters.
    public static let errorCharactersMax = 200
}

extension Store {
    /// Pending rows of `endpoint` due at `nowMs`, oldest due first, at most `limit`.
    public func outboxDue(endpoint: String, nowMs: Int64, limit: Int) throws(KamiError) -> [OutboxRow] {
        try outboxRows("""
            SELECT id, endpoint, type, data, created_ms, state, attempts, next_ms, last_error, done_ms, retry_from_ms
            FROM webhook_outbox WHERE endpoint = ?1 AND state = 0 AND next_ms <= ?2 ORDER BY next_ms, id LIMIT ?3
            """, endpoint: endpoint, number: nowMs, limit: limit)
    }

    /// Rows in `state` (any endpoint when nil), newest first, at most `limit`.
    public func outbox(state: OutboxRow.State, endpoint: String?, limit: Int) throws(KamiError) -> [OutboxRow] {
        // The state as a literal: the dead-letter listing then uses its partial index.
        try outboxRows("""
            SELECT id, endpoint, type, data, created_ms, state, attempts, next_ms, last_error, done_ms, retry_from_ms
            FROM webhook_outbox WHERE state = \(state.rawValue) AND ?2 = ?2 AND (?1 IS NULL OR endpoint = ?1)
            ORDER BY id DESC LIMIT ?3
            """, endpoint: endpoint, number: 0, limit: limit)
    }

    /// Every row (for `verify` and tests), in id order.
    public func outboxAll() throws(KamiError) -> [OutboxRow] {
        try outboxRows("""
            SELECT id, endpoint, type, data, created_ms, state, attempts, next_ms, last_error, done_ms, retry_from_ms
            FROM webhook_outbox WHERE ?1 IS NULL AND ?2 = ?2 ORDER BY id LIMIT ?3
            """, endpoint: nil, number: 0, limit: Int.max)
    }

    /// Rows per endpoint and state.
    public func outboxCounts() throws(KamiError) -> [(endpoint: String, state: OutboxRow.State, count: Int)] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare("SELECT endpoint, state, COUNT(*) FROM webhook_outbox GROUP BY endpoint, state")
            defer { stmt.reset() }
            var rows: [(endpoint: String, state: OutboxRow.State, count: Int)] = []
            while try stmt.step() {
                rows.append((stmt.text(0) ?? "", OutboxRow.State(rawValue: stmt.int(1)) ?? .pending, stmt.int(2)))
            }
            return rows
        }
    }

    private func outboxRows(_ sql: String, endpoint: String?, number: Int64, limit: Int) throws(KamiError) -> [OutboxRow] {
        try read { db throws(SQLiteError) in
            let stmt = try db.prepare(sql)
            defer { stmt.reset() }
            stmt.bind(1, endpoint)
            stmt.bind(2, number)
            stmt.bind(3, Int64(min(limit, Int(Int64.max))))
            var rows: [OutboxRow] = []
            while try stmt.step() {
                rows.append(OutboxRow(
                    id: stmt.int64(0), endpoint: stmt.text(1) ?? "", type: stmt.text(2) ?? "", data: stmt.text(3) ?? "",
                    createdAtMs: stmt.int64(4), state: OutboxRow.State(rawValue: stmt.int(5)) ?? .pending,
                    attempts: stmt.int(6), nextAtMs: stmt.int64(7), lastError: stmt.text(8) ?? "",
                    doneAtMs: stmt.isNull(9) ? nil : stmt.int64(9))
                    .with(retryFromMs: stmt.int64(10)))
            }
            return rows
        }
    }
}
