import Foundation
import Glibc
import KamiCore
public import KamiStore
public import KamiUpstream

/// kamid's settings: the embedded default (`Config/kamid.conf`), then a config file, then
/// the command line. Every key, its range and its trade-off are documented in that file.
public struct DaemonConfig: Sendable, Equatable {
    public var listen: [ListenAddress] = [.tcp(host: "127.0.0.1", port: 7420)]
    /// Relative to `dataDirectory` unless absolute.
    public var unixSocket = "kamid.sock"
    public var unixSocketMode: UInt32 = 0o660
    public var loopThreads = 0
    public var maxConnections = 10_000
    public var idleTimeoutMs: Int64 = 300_000
    public var requestTimeoutMs: Int64 = 10_000
    public var shutdownTimeoutMs: Int64 = 10_000
    public var maxRequestBytes = 65_536
    public var dataDirectory = "./kami-data"
    public var durability = Durability.full
    public var commitBatchMax = Limits.commitBatchMax
    public var commitDelayUs = 0
    public var holdTTLDefaultMs: Int64 = Limits.holdTTLMsDefault
    public var holdTTLMaxMs: Int64 = Limits.holdTTLMsMax
    /// Relative to `dataDirectory` unless absolute.
    public var tokenDirectory = "."
    /// client → token file (relative to `dataDirectory` unless absolute).
    public var tokenFiles: [String: String] = [:]
    /// Relative to `dataDirectory` unless absolute.
    public var masterKeyFile = "master.key"
    /// nil: no metrics endpoint.
    public var metricsListen: ListenAddress? = .tcp(host: "127.0.0.1", port: 9420)
    /// The dashboard's token file (nil: the dashboard is open on the loopback metrics port).
    /// Relative to `dataDirectory` unless absolute.
    public var dashboardTokenFile: String?
    public var logLevel = LogLevel.info
    /// Upstream suppliers by id (`supplier.ID.KEY`).
    public var suppliers: [String: SupplierConfig] = [:]
    /// Where suppliers' callbacks arrive (nil: no listener).
    public var upstreamCallbackListen: ListenAddress?
    /// The URL base suppliers are told to call back (nil: the listener's own address).
    public var upstreamCallbackURL: String?
    /// Price and stock sync period (0: never).
    public var upstreamSyncMs: Int64 = 60_000
    /// An order with no candidate under the `wait` policy (or every breaker open) gives up after this long.
    public var upstreamWaitMaxMs: Int64 = 600_000
    /// The risk gate's rules file (nil: no rules; lists and review still work). Relative to
    /// `dataDirectory` unless absolute.
    public var riskRules: String?
    /// The sizes of the risk gate's counters (restart keys: allocated once at start).
    public var riskRateEntries = 1 << 18
    public var riskDistinctEntries = 1 << 16
    public var riskSketchWidth = 1 << 16
    public var riskHoldEntries = 1 << 18
    /// Failed `order` lookups (unknown order, or another user's) allowed per user and per IP
    /// a minute before lookups are refused with LIMIT_REACHED.
    public var riskLookupFailuresPerMinute = 30
    /// How long an order held for review waits for an operator before it is released.
    public var reviewTTLMs: Int64 = 86_400_000
    /// Webhook endpoints by name (`webhook_url.NAME`, `webhook_secret_file.NAME`,
    /// `webhook_events.NAME`).
    public var webhooks: [String: WebhookConfig] = [:]
    /// Retries of a failed delivery: the first waits about `webhookBackoffMs`, each next
    /// twice as long up to `webhookBackoffMaxMs`, until `webhookRetryForMs` after the event.
    public var webhookBackoffMs: Int64 = 1_000
    public var webhookBackoffMaxMs: Int64 = 3_600_000
    public var webhookRetryForMs: Int64 = 86_400_000
    public var webhookTimeoutMs: Int64 = 10_000
    public var webhookConcurrency = 32

    /// One webhook endpoint as configured.
    public struct WebhookConfig: Sendable, Equatable {
        /// An http:// or https:// URL.
        public var url: String?
        /// The file holding the signing secret (relative to `dataDirectory` unless absolute).
        public var secretFile: String?
        /// Event type names it takes (nil: all).
        public var events: [String]?
        /// The line it was first named on (for errors).
        public var line = 0
    }

    /// The embedded defaults.
    public init() {}

    public var socketPath: String { resolve(unixSocket) }
    public var keyPath: String { resolve(masterKeyFile) }
    public var tokenDirectoryPath: String { resolve(tokenDirectory) }

    /// `path` made absolute against the data directory when it is relative.
    public func resolve(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        if path == "." { return dataDirectory }
        return dataDirectory + "/" + (path.hasPrefix("./") ? String(path.dropFirst(2)) : path)
    }

    /// Ranges of the numeric keys (also quoted in `Config/kamid.conf`).
    public enum Range {
        public static let loopThreads = 0...64
        public static let maxConnections = 1...1_000_000
        public static let idleTimeoutMs: ClosedRange<Int64> = 1_000...86_400_000
        public static let requestTimeoutMs: ClosedRange<Int64> = 100...600_000
        public static let shutdownTimeoutMs: ClosedRange<Int64> = 100...300_000
        public static let maxRequestBytes = 4_096...65_536
        public static let commitBatchMax = 1...Limits.commitBatchMax
        public static let commitDelayUs = 0...Limits.commitDelayUsMax
        public static let holdTTLMs: ClosedRange<Int64> = Limits.holdTTLMsMin...Limits.holdTTLMsMax
        public static let reviewTTLMs: ClosedRange<Int64> = Limits.holdTTLMsMin...Limits.reviewTTLMsMax
        public static let unixSocketMode: ClosedRange<UInt32> = 0o600...0o666
        public static let riskEntries = 1_024...(1 << 26)
        public static let riskLookupFailures = 1...100_000
        public static let webhookBackoffMs: ClosedRange<Int64> = 10...86_400_000
        public static let webhookRetryForMs: ClosedRange<Int64> = 1_000...(7 * 86_400_000)
        public static let webhookTimeoutMs: ClosedRange<Int64> = 100...120_000
        public static let webhookConcurrency = 1...1_024
    }

    /// Every key the parser knows, in the order of `Config/kamid.conf`; `token_file.CLIENT`
    /// stands for one key per client.
    public static let keys = [
        "listen", "unix_socket", "unix_socket_mode", "loop_threads", "max_connections", "idle_timeout_ms",
        "request_timeout_ms", "shutdown_timeout_ms", "max_request_bytes", "data_dir", "durability", "commit_batch_max", "commit_delay_us",
        "hold_ttl_default_ms", "hold_ttl_max_ms", "token_dir", "token_file.CLIENT", "master_key_file",
        "metrics_listen", "dashboard_token_file", "log_level", "upstream_callback_listen", "upstream_callback_url",
        "upstream_sync_ms",
        "upstream_wait_max_ms", "supplier.ID.KEY", "risk_rules", "risk_rate_entries", "risk_distinct_entries",
        "risk_sketch_width", "risk_hold_entries", "risk_lookup_failures_per_minute", "review_ttl_ms",
        "webhook_url.NAME", "webhook_secret_file.NAME", "webhook_events.NAME", "webhook_backoff_ms",
        "webhook_backoff_max_ms", "webhook_retry_for_ms", "webhook_timeout_ms", "webhook_concurrency",
    ]

    /// The embedded default config: the text of `Config/kamid.conf`.
    public static var embeddedDefaultText: String { DefaultConfig.text }

    /// Keys that only take effect at the next start.
    public static let restartKeys: Set<String> = [
        "listen", "unix_socket", "unix_socket_mode", "loop_threads", "data_dir", "durability",
        "master_key_file", "metrics_listen", "upstream_callback_listen",
        "risk_rate_entries", "risk_distinct_entries", "risk_sketch_width", "risk_hold_entries",
    ]

    /// This config with every key of `restartKeys` set to its value in `running`: what a
    /// reload can apply while kamid keeps the listeners, data directory and key it started with.
    public func keepingRestartKeys(of running: DaemonConfig) -> DaemonConfig {
        var kept = self
        kept.listen = running.listen
        kept.unixSocket = running.unixSocket
        kept.unixSocketMode = running.unixSocketMode
        kept.loopThreads = running.loopThreads
        kept.dataDirectory = running.dataDirectory
        kept.durability = running.durability
        kept.masterKeyFile = running.masterKeyFile
        kept.metricsListen = running.metricsListen
        kept.upstreamCallbackListen = running.upstreamCallbackListen
        kept.riskRateEntries = running.riskRateEntries
        kept.riskDistinctEntries = running.riskDistinctEntries
        kept.riskSketchWidth = running.riskSketchWidth
        kept.riskHoldEntries = running.riskHoldEntries
        return kept
    }

    /// A config error naming the file, line and key.
    public struct Problem: Error, Sendable, CustomStringConvertible, Equatable {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// Parses config text over the embedded defaults. `source` names the text in errors
    /// (the file's path); `environment` supplies `${NAME}` substitutions.
    public static func parse(
        _ text: String, source: String, environment: [String: String]? = nil
    ) throws(Problem) -> DaemonConfig {
        let environment = environment ?? ProcessInfo.processInfo.environment
        var config = DaemonConfig()
        var seen: [String: Int] = [:]
        var listenSeen = false
        var supplierLines: [String: Int] = [:]
        var number = 0
        // Lines end in \n or \r\n (a file edited on Windows). Swift sees "\r\n" as one
        // Character, so split the scalars, not the Characters.
        let lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            String(String.UnicodeScalarView(line.last == "\r" ? line.dropLast() : line[...]))
        }
        for raw in lines {
            number += 1
            let place = "\(source):\(number)"
            guard let (key, rawValue) = try splitLine(String(raw), place: place) else { continue }
            func bad(_ why: String) -> Problem { Problem("\(place): \(key): \(why)") }
            let value = try expand(rawValue, environment: environment, bad: bad)
            if key != "listen", let first = seen[key] {
                throw bad("set twice (first on line \(first))")
            }
            seen[key] = number
            switch key {
            case "listen":
                if value == "none" {
                    guard !listenSeen || config.listen.isEmpty else { throw bad("`none` cannot be combined with addresses") }
                    config.listen = []
                    listenSeen = true
                    continue
                }
                let address: ListenAddress
                switch ListenAddress.parse(hostPort: value) {
                case .success(let parsed): address = parsed
                case .failure(let problem): throw bad(problem.why)
                }
                if !listenSeen { config.listen = [] } else if config.listen.isEmpty {
                    throw bad("`none` cannot be combined with addresses")
                }
                guard !config.listen.contains(address) else { throw bad("\(address) is listed twice") }
                listenSeen = true
                config.listen.append(address)
            case "unix_socket": config.unixSocket = try path(value, bad: bad)
            case "unix_socket_mode":
                guard value.count == 4, value.hasPrefix("0"), let mode = UInt32(value, radix: 8),
                      Range.unixSocketMode.contains(mode), mode & 0o600 == 0o600, mode & 0o111 == 0
                else { throw bad("expected an octal mode from 0600 to 0666 with owner read and write, got \(quoted(value))") }
                config.unixSocketMode = mode
            case "loop_threads": config.loopThreads = try integer(value, Range.loopThreads, bad: bad)
            case "max_connections": config.maxConnections = try integer(value, Range.maxConnections, bad: bad)
            case "idle_timeout_ms": config.idleTimeoutMs = try integer(value, Range.idleTimeoutMs, bad: bad)
            case "request_timeout_ms": config.requestTimeoutMs = try integer(value, Range.requestTimeoutMs, bad: bad)
            case "shutdown_timeout_ms": config.shutdownTimeoutMs = try integer(value, Range.shutdownTimeoutMs, bad: bad)
            case "max_request_bytes": config.maxRequestBytes = try integer(value, Range.maxRequestBytes, bad: bad)
            case "data_dir": config.dataDirectory = try path(value, bad: bad)
            case "durability":
                guard let mode = Durability(rawValue: value) else { throw bad("expected full or normal, got \(quoted(value))") }
                config.durability = mode
            case "commit_batch_max": config.commitBatchMax = try integer(value, Range.commitBatchMax, bad: bad)
            case "commit_delay_us": config.commitDelayUs = try integer(value, Range.commitDelayUs, bad: bad)
            case "hold_ttl_default_ms": config.holdTTLDefaultMs = try integer(value, Range.holdTTLMs, bad: bad)
            case "hold_ttl_max_ms": config.holdTTLMaxMs = try integer(value, Range.holdTTLMs, bad: bad)
            case "token_dir": config.tokenDirectory = try path(value, bad: bad)
            case "master_key_file": config.masterKeyFile = try path(value, bad: bad)
            case "metrics_listen":
                if value == "off" {
                    config.metricsListen = nil
                } else {
                    let address: ListenAddress
                    switch ListenAddress.parse(hostPort: value) {
                    case .success(let parsed): address = parsed
                    case .failure(let problem): throw bad(problem.why)
                    }
                    guard address.isLoopback else { throw bad("\(value) is not a loopback address (127.0.0.0/8 or ::1)") }
                    config.metricsListen = address
                }
            case "dashboard_token_file": config.dashboardTokenFile = value == "none" ? nil : try path(value, bad: bad)
            case "upstream_callback_listen":
                if value == "off" {
                    config.upstreamCallbackListen = nil
                } else {
                    switch ListenAddress.parse(hostPort: value) {
                    case .success(let parsed): config.upstreamCallbackListen = parsed
                    case .failure(let problem): throw bad(problem.why)
                    }
                }
            case "upstream_callback_url":
                if value == "auto" {
                    config.upstreamCallbackURL = nil
                    continue
                }
                guard let url = URL(string: value), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                    throw bad("expected an http:// or https:// URL, got \(quoted(value))")
                }
                config.upstreamCallbackURL = value
            case "upstream_sync_ms": config.upstreamSyncMs = try integer(value, 0...86_400_000, bad: bad)
            case "upstream_wait_max_ms": config.upstreamWaitMaxMs = try integer(value, 1_000...86_400_000, bad: bad)
            case "risk_rules": config.riskRules = value == "none" ? nil : try path(value, bad: bad)
            case "risk_rate_entries": config.riskRateEntries = try integer(value, Range.riskEntries, bad: bad)
            case "risk_distinct_entries": config.riskDistinctEntries = try integer(value, Range.riskEntries, bad: bad)
            case "risk_sketch_width": config.riskSketchWidth = try integer(value, Range.riskEntries, bad: bad)
            case "risk_hold_entries": config.riskHoldEntries = try integer(value, Range.riskEntries, bad: bad)
            case "review_ttl_ms": config.reviewTTLMs = try integer(value, Range.reviewTTLMs, bad: bad)
            case "risk_lookup_failures_per_minute":
                config.riskLookupFailuresPerMinute = try integer(value, Range.riskLookupFailures, bad: bad)
            case "webhook_backoff_ms": config.webhookBackoffMs = try integer(value, Range.webhookBackoffMs, bad: bad)
            case "webhook_backoff_max_ms": config.webhookBackoffMaxMs = try integer(value, Range.webhookBackoffMs, bad: bad)
            case "webhook_retry_for_ms": config.webhookRetryForMs = try integer(value, Range.webhookRetryForMs, bad: bad)
            case "webhook_timeout_ms": config.webhookTimeoutMs = try integer(value, Range.webhookTimeoutMs, bad: bad)
            case "webhook_concurrency": config.webhookConcurrency = try integer(value, Range.webhookConcurrency, bad: bad)
            case "log_level":
                guard let level = LogLevel(name: value) else {
                    throw bad("expected error, warning, notice, info or debug, got \(quoted(value))")
                }
                config.logLevel = level
            default:
                if key.hasPrefix(supplierPrefix) {
                    let rest = key.dropFirst(supplierPrefix.count)
                    guard let dot = rest.firstIndex(of: "."), DaemonConfig.isValidClientName(String(rest[..<dot])) else {
                        throw bad("expected supplier.ID.KEY with an id of 1-64 letters, digits, `-`, `_` or `.`")
                    }
                    let id = String(rest[..<dot])
                    var supplier = config.suppliers[id] ?? SupplierConfig(id: id)
                    do throws(ConfigValueError) { try supplier.set(String(rest[rest.index(after: dot)...]), value) } catch {
                        throw bad(error.description)
                    }
                    config.suppliers[id] = supplier
                    supplierLines[id] = supplierLines[id] ?? number
                    continue
                }
                if let prefix = webhookPrefixes.first(where: { key.hasPrefix($0) }) {
                    let name = String(key.dropFirst(prefix.count))
                    guard DaemonConfig.isValidClientName(name) else {
                        throw bad("endpoint name must be 1-64 letters, digits, `-`, `_` or `.`")
                    }
                    var hook = config.webhooks[name] ?? WebhookConfig(line: number)
                    switch prefix {
                    case "webhook_url.":
                        guard let url = URL(string: value), ["http", "https"].contains(url.scheme ?? ""), url.host != nil,
                              url.user == nil, url.password == nil, url.query == nil
                        else { throw bad("expected an http:// or https:// URL without credentials or a query, got \(quoted(value))") }
                        hook.url = value
                    case "webhook_secret_file.": hook.secretFile = try path(value, bad: bad)
                    default:
                        let names = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                        let known = Set(WebhookEventType.allCases.map(\.rawValue))
                        if let unknown = names.first(where: { !known.contains($0) }) {
                            throw bad("unknown event \(quoted(unknown)) (known: "
                                + WebhookEventType.allCases.map(\.rawValue).joined(separator: ", ") + ")")
                        }
                        hook.events = names
                    }
                    config.webhooks[name] = hook
                    continue
                }
                guard key.hasPrefix(tokenFilePrefix) else { throw Problem("\(place): unknown key \(key)") }
                let client = String(key.dropFirst(tokenFilePrefix.count))
                guard DaemonConfig.isValidClientName(client) else {
                    throw bad("client name must be 1-64 letters, digits, `-`, `_` or `.`")
                }
                config.tokenFiles[client] = try path(value, bad: bad)
            }
        }
        for (id, supplier) in config.suppliers.sorted(by: { $0.key < $1.key }) {
            if let missing = supplier.missing {
                throw Problem("\(source):\(supplierLines[id] ?? 0): supplier.\(id): \(missing) is not set (supplier.\(id).\(missing))")
            }
        }
        for (name, hook) in config.webhooks.sorted(by: { $0.key < $1.key }) {
            if hook.url == nil { throw Problem("\(source):\(hook.line): webhook \(name): webhook_url.\(name) is not set") }
            if hook.secretFile == nil {
                throw Problem("\(source):\(hook.line): webhook \(name): webhook_secret_file.\(name) is not set")
            }
        }
        guard config.webhookBackoffMs <= config.webhookBackoffMaxMs else {
            throw Problem("\(source):\(seen["webhook_backoff_ms"] ?? seen["webhook_backoff_max_ms"] ?? 0): webhook_backoff_ms: "
                + "\(config.webhookBackoffMs) is above webhook_backoff_max_ms \(config.webhookBackoffMaxMs)")
        }
        guard config.holdTTLDefaultMs <= config.holdTTLMaxMs else {
            let line = seen["hold_ttl_default_ms"] ?? seen["hold_ttl_max_ms"] ?? 0
            throw Problem("\(source):\(line): hold_ttl_default_ms: \(config.holdTTLDefaultMs) is above "
                + "hold_ttl_max_ms \(config.holdTTLMaxMs)")
        }
        return config
    }

    /// Reads and parses the file at `path`.
    public static func load(path: String, environment: [String: String]? = nil)
        throws(Problem) -> DaemonConfig
    {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw Problem("\(path): cannot read the config file: \((error as NSError).localizedDescription)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Problem("\(path): the config file is not valid UTF-8")
        }
        return try parse(text, source: path, environment: environment)
    }

    /// Whether `name` can name a client (in `token_file.NAME` and token file names).
    public static func isValidClientName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name != "." && name != ".."
            && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                    || c == 0x2D || c == 0x5F || c == 0x2E
            }
    }

    static let tokenFilePrefix = "token_file."
    static let webhookPrefixes = ["webhook_url.", "webhook_secret_file.", "webhook_events."]
    static let supplierPrefix = "supplier."

    /// Splits a line into key and raw value; nil for blank and comment lines.
    private static func splitLine(_ line: String, place: String) throws(Problem) -> (String, String)? {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty || trimmed.hasPrefix("#") { return nil }
        guard let eq = trimmed.firstIndex(of: "=") else {
            throw Problem("\(place): expected `key = value`, got \(quoted(trimmed))")
        }
        let key = trimmed[..<eq].trimmingCharacters(in: .whitespaces)
        guard !key.isEmpty, !key.contains(where: { $0.isWhitespace }) else {
            throw Problem("\(place): expected `key = value`, got \(quoted(trimmed))")
        }
        var rest = Substring(trimmed[trimmed.index(after: eq)...]).drop(while: { $0 == " " || $0 == "\t" })
        var value = ""
        if rest.first == "\"" {
            rest = rest.dropFirst()
            var closed = false
            while let ch = rest.first {
                rest = rest.dropFirst()
                if ch == "\"" { closed = true; break }
                if ch == "\\" {
                    guard let next = rest.first, next == "\"" || next == "\\" else {
                        throw Problem("\(place): \(key): only \\\" and \\\\ are escapes in a quoted value")
                    }
                    value.append(next)
                    rest = rest.dropFirst()
                } else {
                    value.append(ch)
                }
            }
            guard closed else { throw Problem("\(place): \(key): the quoted value is not closed") }
            let after = rest.trimmingCharacters(in: .whitespaces)
            guard after.isEmpty || after.hasPrefix("#") else {
                throw Problem("\(place): \(key): unexpected text after the quoted value: \(quoted(after))")
            }
        } else {
            // A comment starts at a `#` preceded by whitespace.
            var previous: Character = " "
            for ch in rest {
                if ch == "#" && (previous == " " || previous == "\t") { break }
                value.append(ch)
                previous = ch
            }
            value = value.trimmingCharacters(in: .whitespaces)
            guard !value.isEmpty else { throw Problem("\(place): \(key): missing value") }
        }
        return (key, value)
    }

    /// Replaces `${NAME}` with the environment's value.
    private static func expand(
        _ value: String, environment: [String: String], bad: (String) -> Problem
    ) throws(Problem) -> String {
        guard value.contains("${") else { return value }
        var out = ""
        var rest = Substring(value)
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else { throw bad("unclosed ${ in \(quoted(value))") }
            let name = String(rest[start.upperBound..<end])
            guard let replacement = environment[name] else {
                throw bad("environment variable \(name) is not set")
            }
            out += replacement
            rest = rest[rest.index(after: end)...]
        }
        return out + rest
    }

    private static func integer<T: FixedWidthInteger>(
        _ value: String, _ range: ClosedRange<T>, bad: (String) -> Problem
    ) throws(Problem) -> T {
        let digits = value.replacingOccurrences(of: "_", with: "")
        guard let number = T(digits, radix: 10) else { throw bad("expected an integer, got \(quoted(value))") }
        guard range.contains(number) else {
            throw bad("\(number) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    private static func path(_ value: String, bad: (String) -> Problem) throws(Problem) -> String {
        guard !value.utf8.contains(0), value.utf8.count <= 4_096 else { throw bad("not a usable path") }
        return value
    }

    private static func quoted(_ text: String) -> String {
        let shown = text.count > 80 ? String(text.prefix(80)) + "…" : text
        return "`\(shown)`"
    }
}

extension ListenAddress {
    /// 127.0.0.0/8 or ::1 (host names are never listen addresses: see `parse(hostPort:)`).
    public var isLoopback: Bool {
        guard case .tcp(let host, _) = self else { return true }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { $0.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) }
        }
        var v4 = in_addr()
        guard inet_pton(AF_INET, host, &v4) == 1 else { return false }
        return withUnsafeBytes(of: &v4) { $0.first == 127 }
    }
}
