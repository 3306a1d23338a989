import Foundation
public import KamiStore

/// kamid's settings: the embedded defaults, then a config file, then the command line.
public struct DaemonConfig: Sendable {
    public var listen: [ListenAddress] = [.tcp(host: "127.0.0.1", port: 7420)]
    public var dataDirectory = "./kami-data"
    /// Default: `<data dir>/kamid.sock`.
    public var unixSocket: String?
    public var durability = Durability.full
    public var loopThreads = 0
    public var maxConnections = 10_000
    public var idleTimeoutMs: Int64 = 300_000
    /// Default: `<data dir>/master.key`, generated on first start.
    public var masterKeyFile: String?
    /// client → token file. The `default` client's token is generated on first start in
    /// `<data dir>/default.token` when no client is configured.
    public var tokenFiles: [String: String] = [:]
    public var logLevel = LogLevel.info

    public init() {}

    public var socketPath: String { unixSocket ?? dataDirectory + "/kamid.sock" }
    public var keyPath: String { masterKeyFile ?? dataDirectory + "/master.key" }

    /// A config error naming the file, line and key.
    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    /// Reads `key = value` lines (`#` comments) from `path` over the current values. Unknown
    /// keys and bad values are errors naming file:line:key.
    public mutating func load(path: String) throws(Problem) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw Problem(description: "\(path): cannot read the config file")
        }
        var listenSeen = false
        for (offset, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            let place = "\(path):\(offset + 1)"
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw Problem(description: "\(place): expected `key = value`")
            }
            let key = trimmed[..<eq].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            func bad(_ why: String) -> Problem { Problem(description: "\(place): \(key): \(why)") }
            switch key {
            case "listen":
                guard let address = ListenAddress(hostPort: value) else { throw bad("expected HOST:PORT, got \(value)") }
                if !listenSeen { listen = [] }
                listenSeen = true
                listen.append(address)
            case "data_dir": dataDirectory = value
            case "unix_socket": unixSocket = value
            case "durability":
                guard let mode = Durability(rawValue: value) else { throw bad("expected full or normal, got \(value)") }
                durability = mode
            case "loop_threads":
                guard let n = Int(value), n >= 0, n <= 64 else { throw bad("expected 0...64, got \(value)") }
                loopThreads = n
            case "max_connections":
                guard let n = Int(value), n >= 1, n <= 1_000_000 else { throw bad("expected 1...1000000, got \(value)") }
                maxConnections = n
            case "idle_timeout_ms":
                guard let n = Int64(value), n >= 1_000 else { throw bad("expected at least 1000, got \(value)") }
                idleTimeoutMs = n
            case "master_key_file": masterKeyFile = value
            case "log_level":
                guard let level = LogLevel(name: value) else { throw bad("expected error|warning|notice|info|debug") }
                logLevel = level
            default:
                if key.hasPrefix("token_file."), key.count > "token_file.".count {
                    tokenFiles[String(key.dropFirst("token_file.".count))] = value
                } else {
                    throw Problem(description: "\(place): unknown key \(key)")
                }
            }
        }
    }
}
