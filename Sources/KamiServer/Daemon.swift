import Foundation
import Glibc
import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore

/// The kamid process: parse arguments, prepare the data directory, recover the engine, listen,
/// wait for SIGTERM/SIGINT, drain, exit 0.
public enum Daemon {
    public static let version = "0.3.0"

    static let usage = """
        usage: kamid [--config FILE] [--listen HOST:PORT]... [--data-dir DIR] [--socket PATH]
                     [--durability full|normal] [--help] [--version]

        With no arguments kamid runs on its embedded defaults: TCP 127.0.0.1:7420, data in
        ./kami-data, the Unix socket at ./kami-data/kamid.sock, a master key and the token of
        client `default` generated in the data directory on first start.
        """

    /// Runs kamid; returns the exit status.
    public static func main(arguments: [String]) -> Int32 {
        var config = DaemonConfig()
        var cliListen: [ListenAddress] = []
        var index = 0
        func value(_ flag: String) -> String? {
            index += 1
            guard index < arguments.count else {
                printError("kamid: \(flag) needs a value\n")
                return nil
            }
            return arguments[index]
        }
        // --config first, so that the other flags override it wherever they stand.
        if let at = arguments.firstIndex(of: "--config"), at + 1 < arguments.count {
            do { try config.load(path: arguments[at + 1]) } catch {
                printError("kamid: \(error)\n")
                return 2
            }
        }
        while index < arguments.count {
            switch arguments[index] {
            case "--help", "-h":
                print(usage)
                return 0
            case "--version":
                print("kamid \(version)")
                return 0
            case "--config":
                index += 1
            case "--listen":
                guard let text = value("--listen"), let address = ListenAddress(hostPort: text) else {
                    printError("kamid: --listen expects HOST:PORT\n")
                    return 2
                }
                cliListen.append(address)
            case "--data-dir":
                guard let text = value("--data-dir") else { return 2 }
                config.dataDirectory = text
            case "--socket":
                guard let text = value("--socket") else { return 2 }
                config.unixSocket = text
            case "--durability":
                guard let text = value("--durability"), let mode = Durability(rawValue: text) else {
                    printError("kamid: --durability expects full or normal\n")
                    return 2
                }
                config.durability = mode
            default:
                printError("kamid: unknown argument \(arguments[index])\n\(usage)\n")
                return 2
            }
            index += 1
        }
        if !cliListen.isEmpty { config.listen = cliListen }
        return run(config)
    }

    static func run(_ config: DaemonConfig) -> Int32 {
        let logger = Logger(level: config.logLevel)
        // Signals are taken by sigwait on this thread; block them before any thread starts so
        // every thread inherits the mask.
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let engine: Engine
        let tokens: [String: String]
        do {
            try FileManager.default.createDirectory(
                atPath: config.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let key = try loadOrCreateKey(config, logger: logger)
            tokens = try loadTokens(config, logger: logger)
            var engineConfig = EngineConfig(directory: config.dataDirectory, sealer: Sealer(key: key))
            engineConfig.durability = config.durability
            let started = monotonicNs()
            engine = try Engine(config: engineConfig)
            logger.log(.notice, "recovered", [
                "data_dir": config.dataDirectory, "durability": config.durability.rawValue,
                "ms": String((monotonicNs() - started) / 1_000_000),
            ])
        } catch {
            logger.log(.error, "startup-failed", ["error": "\(error)"])
            return 1
        }
        var serverConfig = ServerConfig()
        serverConfig.tcp = config.listen
        serverConfig.unixSocket = config.socketPath
        serverConfig.loopThreads = config.loopThreads
        serverConfig.maxConnections = config.maxConnections
        serverConfig.idleTimeoutMs = config.idleTimeoutMs
        serverConfig.tokens = tokens
        let server = Server(engine: engine, config: serverConfig, logger: logger)
        do { try server.start() } catch {
            logger.log(.error, "listen-failed", ["error": "\(error)"])
            engine.close()
            return 1
        }
        logger.log(.notice, "ready", [
            "tcp": server.boundPorts.map(String.init).joined(separator: ","), "unix": config.socketPath,
        ])
        while true {
            var received: Int32 = 0
            sigwait(&signals, &received)
            if received == SIGHUP {
                logger.log(.notice, "reload-ignored", ["reason": "reload arrives with the operations issue"])
                continue
            }
            logger.log(.notice, "stopping", ["signal": String(received)])
            break
        }
        server.stop()
        engine.close()
        logger.log(.notice, "stopped")
        return 0
    }

    static func loadOrCreateKey(_ config: DaemonConfig, logger: Logger) throws -> MasterKey {
        let path = config.keyPath
        if config.masterKeyFile == nil && !FileManager.default.fileExists(atPath: path) {
            let key = try MasterKey.generate(path: path)
            logger.log(.notice, "master-key-created", ["path": path, "note": "back this file up: without it no code can be read"])
            return key
        }
        return try MasterKey.load(path: path)
    }

    static func loadTokens(_ config: DaemonConfig, logger: Logger) throws -> [String: String] {
        var files = config.tokenFiles
        if files.isEmpty {
            let path = config.dataDirectory + "/default.token"
            if !FileManager.default.fileExists(atPath: path) {
                let token = SecureRandom.token(bytes: 24)
                let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw KamiError(.unavailable, "cannot create \(path): \(String(cString: strerror(errno)))") }
                let bytes = Array((token + "\n").utf8)
                let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                fsync(fd)
                close(fd)
                guard written == bytes.count else { throw KamiError(.unavailable, "cannot write \(path)") }
                logger.log(.notice, "token-created", ["client": "default", "path": path])
            }
            files["default"] = path
        }
        var tokens: [String: String] = [:]
        for (client, path) in files {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw KamiError(.unavailable, "cannot read the token file of client \(client): \(path)")
            }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard token.utf8.count >= ServerLimits.tokenCharactersMin else {
                throw KamiError(.badRequest,
                    "token file \(path) of client \(client) holds fewer than \(ServerLimits.tokenCharactersMin) characters")
            }
            tokens[client] = token
        }
        return tokens
    }
}

/// Writes a line to stderr (for command-line errors, before the logger exists).
func printError(_ text: String) {
    _ = text.withCString { write(2, $0, strlen($0)) }
}
