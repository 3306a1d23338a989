import KamiCore
import KamiHTTP
import KamiRisk
import KamiStore
import KamiUpstream
import KamiWebhooks

/// What kamid builds from a config before using it: suppliers and webhook endpoints with
/// their secret files read, the dashboard's token, the risk gate's sizes and rules, and which
/// keys a reload changed. Pure functions of the config (and the files it names).
extension DaemonRuntime {
    /// The configured suppliers with their secrets read; the error names the supplier and file.
    static func endpoints(_ config: DaemonConfig) throws(ConfigValueError) -> [SupplierEndpoint] {
        var result: [SupplierEndpoint] = []
        for supplier in config.suppliers.values.sorted(by: { $0.id < $1.id }) {
            result.append(try SupplierEndpoint(config: supplier, resolve: config.resolve))
        }
        return result
    }

    /// The configured webhook endpoints with their secrets read; errors name the endpoint and
    /// file (never the secret). A secret file must be 0600 or stricter and hold one word of at
    /// least `ServerLimits.tokenCharactersMin` characters.
    static func webhookEndpoints(_ config: DaemonConfig) throws(KamiError) -> [WebhookEndpoint] {
        var endpoints: [WebhookEndpoint] = []
        for (name, hook) in config.webhooks.sorted(by: { $0.key < $1.key }) {
            guard let text = hook.url, let url = HTTPURL(text) else {
                throw KamiError(.badRequest, "webhook \(name): webhook_url.\(name) is not a usable http(s) URL")
            }
            guard let file = hook.secretFile else {
                throw KamiError(.badRequest, "webhook \(name): webhook_secret_file.\(name) is not set")
            }
            let secret = try TokenStore.read(config.resolve(file), client: name, what: "webhook secret file")
            let events = hook.events.map { Set($0.compactMap(WebhookEventType.init(rawValue:))) }
            endpoints.append(WebhookEndpoint(name: name, url: url, secret: Array(secret.utf8), events: events))
        }
        return endpoints
    }

    /// Delivery pacing from the config.
    static func webhookSettings(_ config: DaemonConfig) -> WebhookSettings {
        var settings = WebhookSettings()
        settings.backoffMs = config.webhookBackoffMs
        settings.backoffMaxMs = config.webhookBackoffMaxMs
        settings.retryForMs = config.webhookRetryForMs
        settings.timeoutMs = config.webhookTimeoutMs
        settings.concurrency = config.webhookConcurrency
        return settings
    }

    /// The dashboard's token, read from `dashboard_token_file` (nil when none is set); the
    /// file must be as strict as a client's token file.
    static func dashboardToken(_ config: DaemonConfig) throws(KamiError) -> String? {
        guard let file = config.dashboardTokenFile else { return nil }
        return try TokenStore.read(config.resolve(file), client: "dashboard")
    }

    /// The counters' sizes from the config.
    static func riskLimits(_ config: DaemonConfig) -> RiskLimits {
        RiskLimits(rateEntries: config.riskRateEntries, distinctEntries: config.riskDistinctEntries,
                   sketchWidth: config.riskSketchWidth, holdEntries: config.riskHoldEntries)
    }

    /// The rules file the config names, parsed (no rules when it names none).
    static func riskRules(_ config: DaemonConfig) throws(RulesFileError) -> RiskRules {
        guard let path = config.riskRules else { return .none }
        return try RulesFile.load(path: config.resolve(path))
    }

    /// Config keys whose values differ.
    static func changedKeys(_ a: DaemonConfig, _ b: DaemonConfig) -> [String] {
        var keys: [String] = []
        func check<T: Equatable>(_ key: String, _ path: KeyPath<DaemonConfig, T>) {
            if a[keyPath: path] != b[keyPath: path] { keys.append(key) }
        }
        check("listen", \.listen)
        check("unix_socket", \.socketPath)
        check("unix_socket_mode", \.unixSocketMode)
        check("loop_threads", \.loopThreads)
        check("max_connections", \.maxConnections)
        check("idle_timeout_ms", \.idleTimeoutMs)
        check("request_timeout_ms", \.requestTimeoutMs)
        check("shutdown_timeout_ms", \.shutdownTimeoutMs)
        check("max_request_bytes", \.maxRequestBytes)
        check("data_dir", \.dataDirectory)
        check("durability", \.durability)
        check("commit_batch_max", \.commitBatchMax)
        check("commit_delay_us", \.commitDelayUs)
        check("hold_ttl_default_ms", \.holdTTLDefaultMs)
        check("hold_ttl_max_ms", \.holdTTLMaxMs)
        check("token_dir", \.tokenDirectoryPath)
        check("token_file", \.tokenFiles)
        check("master_key_file", \.keyPath)
        check("metrics_listen", \.metricsListen)
        check("dashboard_token_file", \.dashboardTokenFile)
        check("log_level", \.logLevel)
        check("upstream_callback_listen", \.upstreamCallbackListen)
        check("upstream_callback_url", \.upstreamCallbackURL)
        check("upstream_sync_ms", \.upstreamSyncMs)
        check("upstream_wait_max_ms", \.upstreamWaitMaxMs)
        check("risk_rules", \.riskRules)
        check("risk_rate_entries", \.riskRateEntries)
        check("risk_distinct_entries", \.riskDistinctEntries)
        check("risk_sketch_width", \.riskSketchWidth)
        check("risk_hold_entries", \.riskHoldEntries)
        check("risk_lookup_failures_per_minute", \.riskLookupFailuresPerMinute)
        check("review_ttl_ms", \.reviewTTLMs)
        check("webhooks", \.webhooks)
        check("webhook_backoff_ms", \.webhookBackoffMs)
        check("webhook_backoff_max_ms", \.webhookBackoffMaxMs)
        check("webhook_retry_for_ms", \.webhookRetryForMs)
        check("webhook_timeout_ms", \.webhookTimeoutMs)
        check("webhook_concurrency", \.webhookConcurrency)
        return keys
    }
}
