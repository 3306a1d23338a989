import Foundation
import Glibc
import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore

/// The kamid process: parse arguments and config, prepare the data directory, recover the
/// engine, listen, tell systemd, then serve until SIGTERM/SIGINT (SIGHUP reloads), drain,
/// exit 0.
public enum Daemon {
    public static let version = "0.4.0"

    static let usage = """
        usage: kamid [--config FILE] [--listen ADDR:PORT]... [--data-dir DIR] [--socket PATH]
                     [--durability full|normal] [--master-key-file PATH] [--metrics-listen ADDR:PORT|off]
               kamid --check-config [--config FILE] [overrides...]
               kamid --print-default-config | --help | --version

        With no --config kamid runs on its embedded default (Config/kamid.conf; print it with
        --print-default-config): TCP 127.0.0.1:7420, metrics on 127.0.0.1:9420, data in
        ./kami-data, the Unix socket at ./kami-data/kamid.sock, and a master key and the token
        of client `default` generated in the data directory on first start. Options override
        the config file, at start and at every reload. --check-config validates the config
        (and reads the token files) and exits: 0 when it is good, 2 when not. ADDR is an IPv4
        address or an IPv6 one in brackets ([::1]); host names such as localhost are refused.

        Signals: SIGHUP reloads the config; SIGTERM and SIGINT stop gracefully.
        """

    /// Command-line values that override the config file (kept across reloads).
    struct Overrides: Sendable, Equatable {
        var listen: [ListenAddress] = []
        var dataDirectory: String?
        var unixSocket: String?
        var durability: Durability?
        var masterKeyFile: String?
        var metricsListen: ListenAddress??

        func apply(to config: inout DaemonConfig) {
            if !listen.isEmpty { config.listen = listen }
            if let dataDirectory { config.dataDirectory = dataDirectory }
            if let unixSocket { config.unixSocket = unixSocket }
            if let durability { config.durability = durability }
            if let masterKeyFile { config.masterKeyFile = masterKeyFile }
            if let metricsListen { config.metricsListen = metricsListen }
        }
    }

    /// Where the config comes from: a file (re-read at reload) or the embedded default.
    struct ConfigSource: Sendable {
        var path: String?
        var overrides: Overrides

        func load() throws(DaemonConfig.Problem) -> DaemonConfig {
            var config: DaemonConfig
            if let path {
                config = try DaemonConfig.load(path: path)
            } else {
                config = try DaemonConfig.parse(DefaultConfig.text, source: "(embedded default)")
            }
            overrides.apply(to: &config)
            return config
        }
    }

    /// Runs kamid; returns the exit status.
    public static func main(arguments: [String]) -> Int32 {
        var source = ConfigSource(path: nil, overrides: Overrides())
        var checkOnly = false
        var index = 0
        func value(_ flag: String) -> String? {
            index += 1
            guard index < arguments.count else {
                printError("kamid: \(flag) needs a value\n")
                return nil
            }
            return arguments[index]
        }
        while index < arguments.count {
            switch arguments[index] {
            case "--help", "-h":
                print(usage)
                return 0
            case "--version":
                print("kamid \(version)")
                return 0
            case "--print-default-config":
                print(DefaultConfig.text, terminator: "")
                return 0
            case "--check-config":
                checkOnly = true
            case "--config":
                guard let text = value("--config") else { return 2 }
                source.path = text
            case "--listen":
                guard let text = value("--listen") else { return 2 }
                switch ListenAddress.parse(hostPort: text) {
                case .success(let address): source.overrides.listen.append(address)
                case .failure(let problem):
                    printError("kamid: --listen expects IPV4:PORT or [IPV6]:PORT: \(problem.why)\n")
                    return 2
                }
            case "--data-dir":
                guard let text = value("--data-dir") else { return 2 }
                source.overrides.dataDirectory = text
            case "--socket":
                guard let text = value("--socket") else { return 2 }
                source.overrides.unixSocket = text
            case "--master-key-file":
                guard let text = value("--master-key-file") else { return 2 }
                source.overrides.masterKeyFile = text
            case "--metrics-listen":
                guard let text = value("--metrics-listen") else { return 2 }
                if text == "off" {
                    source.overrides.metricsListen = .some(nil)
                } else {
                    switch ListenAddress.parse(hostPort: text) {
                    case .success(let address) where address.isLoopback: source.overrides.metricsListen = .some(address)
                    case .success:
                        printError("kamid: --metrics-listen expects a loopback address (127.0.0.0/8 or [::1]) or off\n")
                        return 2
                    case .failure(let problem):
                        printError("kamid: --metrics-listen expects a loopback IPV4:PORT, [::1]:PORT or off: \(problem.why)\n")
                        return 2
                    }
                }
            case "--durability":
                guard let text = value("--durability"), let mode = Durability(rawValue: text) else {
                    printError("kamid: --durability expects full or normal\n")
                    return 2
                }
                source.overrides.durability = mode
            default:
                printError("kamid: unknown argument \(arguments[index])\n\(usage)\n")
                return 2
            }
            index += 1
        }
        let config: DaemonConfig
        do { config = try source.load() } catch {
            printError("kamid: \(error)\n")
            return 2
        }
        if checkOnly {
            do { _ = try TokenStore.load(config) } catch {
                printError("kamid: \(error.message)\n")
                return 2
            }
            do { _ = try DaemonRuntime.riskRules(config) } catch {
                printError("kamid: risk rules: \(error)\n")
                return 2
            }
            print("kamid: \(source.path ?? "the embedded default config") is valid")
            return 0
        }
        return DaemonRuntime(source: source, config: config).run()
    }
}

/// Writes a line to stderr (for command-line errors, before the logger exists).
func printError(_ text: String) {
    _ = text.withCString { write(2, $0, strlen($0)) }
}
