public import KamiHTTP
public import KamiStore

/// One endpoint a storefront asked to be called at: `webhook_url.NAME`,
/// `webhook_secret_file.NAME` and, optionally, `webhook_events.NAME` in kamid's config.
public struct WebhookEndpoint: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
    /// The endpoint's name (a storefront client's name); rows of the outbox carry it.
    public var name: String
    public var url: HTTPURL
    /// The signing secret (from its file; never logged).
    public var secret: [UInt8]
    /// The events it takes (nil: every event).
    public var events: Set<WebhookEventType>?

    public init(name: String, url: HTTPURL, secret: [UInt8], events: Set<WebhookEventType>? = nil) {
        self.name = name
        self.url = url
        self.secret = secret
        self.events = events
    }

    /// Never the secret.
    public var description: String { "webhook \(name) \(url)" }
    public var customMirror: Mirror { Mirror(self, children: ["name": name, "url": url], displayStyle: .struct) }

    /// The writer's view of it.
    public var route: WebhookRoute { WebhookRoute(name: name, events: events) }
}

/// How deliveries are paced and retried (`webhook_*` keys of kamid's config).
public struct WebhookSettings: Sendable, Hashable {
    /// The first retry waits about this long; each next one twice as long.
    public var backoffMs: Int64 = 1_000
    /// No wait between retries is longer than this.
    public var backoffMaxMs: Int64 = 3_600_000
    /// After this long since the event, its last failure dead-letters it (a day).
    public var retryForMs: Int64 = 86_400_000
    /// Longest wait for a receiver's whole answer.
    public var timeoutMs: Int64 = 10_000
    /// Most deliveries in flight to one endpoint at once.
    public var concurrency = 32
    /// Delivered rows are deleted this long after delivery (a week).
    public var keepDeliveredMs: Int64 = 604_800_000
    /// How often the outbox is looked at for due rows (new events also wake the dispatcher).
    public var pollMs: Int64 = 200

    public init() {}

    /// The wait before the retry that follows `attempts` failed attempts (1, 2, ...), with
    /// "equal jitter": half fixed, half random (`unit` in 0..<1), so receivers that failed
    /// together are not all retried in the same instant.
    public func backoff(afterAttempts attempts: Int, unit: Double) -> Int64 {
        let shift = min(max(attempts - 1, 0), 40)
        let full = min(backoffMaxMs, backoffMs.multipliedReportingOverflow(by: Int64(1) << shift).overflow
            ? backoffMaxMs : backoffMs << shift)
        let half = full / 2
        return half + Int64(Double(full - half) * min(max(unit, 0), 0.999_999))
    }
}
