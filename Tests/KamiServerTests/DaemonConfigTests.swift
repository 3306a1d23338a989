import Foundation
import KamiCore
@testable import KamiServer
import KamiStore
import XCTest

/// The config file: every documented key parses, every kind of mistake names file:line:key,
/// and the embedded default is `Config/kamid.conf` exactly.
final class DaemonConfigTests: XCTestCase {
    static var repoConfigPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Config/kamid.conf").path
    }

    func testEmbeddedDefaultIsTheConfigFileAndRoundTrips() throws {
        let file = try String(contentsOfFile: DaemonConfigTests.repoConfigPath, encoding: .utf8)
        XCTAssertEqual(DaemonConfig.embeddedDefaultText, file, "Config/kamid.conf and the embedded default differ")
        let parsed = try DaemonConfig.parse(file, source: "kamid.conf", environment: [:])
        XCTAssertEqual(parsed, DaemonConfig(), "the file's values are the built-in defaults")
    }

    func testEveryKeyIsDocumentedInTheFileAndEveryDocumentedKeyIsKnown() throws {
        let file = DaemonConfig.embeddedDefaultText
        // A key's documentation paragraph (after a blank line) starts `# key [restart]: ...` or `# key: ...`.
        var documented: [String] = []
        let lines = file.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() where index > 0 && lines[index - 1].isEmpty && line.hasPrefix("# ") {
            let words = line.dropFirst(2).split(separator: ":", maxSplits: 1)
            guard words.count == 2 else { continue }
            let head = words[0].replacingOccurrences(of: " [restart]", with: "")
            if !head.contains(" "), let first = head.first, first.isLowercase { documented.append(head) }
        }
        XCTAssertEqual(documented, DaemonConfig.keys)
        for key in DaemonConfig.keys where !["token_file.CLIENT", "supplier.ID.KEY", "webhook_url.NAME", "webhook_secret_file.NAME",
                                             "webhook_events.NAME"].contains(key) {
            XCTAssertTrue(file.contains("\n\(key) = "), "\(key) has its default value in the file")
        }
        for key in DaemonConfig.restartKeys {
            XCTAssertTrue(file.contains("# \(key) [restart]:"), "\(key) is marked [restart]")
        }
    }

    func testLoopThreadsZeroLeavesOneCoreToTheCommitWriter() {
        XCTAssertEqual([1, 2, 3, 4, 16, 65, 128].map { Server.defaultLoopThreads(cores: $0) }, [1, 1, 2, 3, 15, 64, 64])
        XCTAssertEqual(Server.defaultLoopThreads(cores: 0), 1, "sysconf failing still gives one loop")
        XCTAssertEqual(DaemonConfig().loopThreads, 0, "the default config asks for the automatic count")
    }

    func testEveryKeyParsesToItsField() throws {
        let text = """
            listen = 127.0.0.1:8000
            listen = [::1]:8001   # two addresses
            unix_socket = /run/kami/kamid.sock
            unix_socket_mode = 0600
            loop_threads = 3
            max_connections = 1_000
            idle_timeout_ms = 2000
            request_timeout_ms = 750
            shutdown_timeout_ms = 500
            max_request_bytes = 8192
            data_dir = "/var/lib/kami # not a comment"
            durability = normal
            commit_batch_max = 64
            commit_delay_us = 250
            hold_ttl_default_ms = 60000
            hold_ttl_max_ms = 120000
            token_dir = ${STATE}/tokens
            token_file.shop-1 = ${CREDS}/shop1.token
            token_file.shop.two = two.token
            master_key_file = ${CREDS}/master.key
            metrics_listen = [::1]:9999
            log_level = debug
            """
        let config = try DaemonConfig.parse(text, source: "t.conf", environment: ["CREDS": "/run/creds", "STATE": "/var/lib/kami"])
        XCTAssertEqual(config.listen, [.tcp(host: "127.0.0.1", port: 8000), .tcp(host: "::1", port: 8001)])
        XCTAssertEqual(config.socketPath, "/run/kami/kamid.sock")
        XCTAssertEqual(config.unixSocketMode, 0o600)
        XCTAssertEqual(config.loopThreads, 3)
        XCTAssertEqual(config.maxConnections, 1_000)
        XCTAssertEqual(config.idleTimeoutMs, 2_000)
        XCTAssertEqual(config.requestTimeoutMs, 750)
        XCTAssertEqual(config.shutdownTimeoutMs, 500)
        XCTAssertEqual(config.maxRequestBytes, 8_192)
        XCTAssertEqual(config.dataDirectory, "/var/lib/kami # not a comment")
        XCTAssertEqual(config.durability, .normal)
        XCTAssertEqual(config.commitBatchMax, 64)
        XCTAssertEqual(config.commitDelayUs, 250)
        XCTAssertEqual(config.holdTTLDefaultMs, 60_000)
        XCTAssertEqual(config.holdTTLMaxMs, 120_000)
        XCTAssertEqual(config.tokenDirectoryPath, "/var/lib/kami/tokens")
        XCTAssertEqual(config.tokenFiles, ["shop-1": "/run/creds/shop1.token", "shop.two": "two.token"])
        XCTAssertEqual(config.resolve(config.tokenFiles["shop.two"]!), "/var/lib/kami # not a comment/two.token")
        XCTAssertEqual(config.keyPath, "/run/creds/master.key")
        XCTAssertEqual(config.metricsListen, .tcp(host: "::1", port: 9999))
        XCTAssertEqual(config.logLevel, .debug)

        let off = try DaemonConfig.parse("listen = none\nmetrics_listen = off\n", source: "t", environment: [:])
        XCTAssertEqual(off.listen, [])
        XCTAssertNil(off.metricsListen)
        XCTAssertEqual(DaemonConfig().socketPath, "./kami-data/kamid.sock", "relative paths are under data_dir")
        XCTAssertEqual(DaemonConfig().keyPath, "./kami-data/master.key")
        XCTAssertEqual(DaemonConfig().tokenDirectoryPath, "./kami-data")
    }

    func testEachKindOfMistakeNamesFileLineAndKey() {
        let cases: [(text: String, line: Int, mentions: [String])] = [
            ("max_conections = 3", 1, ["unknown key", "max_conections"]),
            ("# c\n\nlog_level = loud", 3, ["log_level", "loud"]),
            ("max_connections = 0", 1, ["max_connections", "out of range", "1...1000000"]),
            ("max_connections = 10x", 1, ["max_connections", "integer"]),
            ("idle_timeout_ms = 999", 1, ["idle_timeout_ms", "out of range"]),
            ("max_request_bytes = 1048576", 1, ["max_request_bytes", "65536"]),
            ("commit_batch_max = 1025", 1, ["commit_batch_max"]),
            ("commit_delay_us = -1", 1, ["commit_delay_us"]),
            ("loop_threads = 65", 1, ["loop_threads"]),
            ("durability = always", 1, ["durability", "full or normal"]),
            ("log_level = info\nlog_level = debug", 2, ["log_level", "twice", "line 1"]),
            ("log_level =", 1, ["log_level", "missing value"]),
            ("just words", 1, ["key = value"]),
            ("data_dir = \"/x", 1, ["data_dir", "not closed"]),
            ("data_dir = \"/x\" trailing", 1, ["data_dir", "after the quoted value"]),
            ("master_key_file = ${NOPE_NOT_SET}/k", 1, ["master_key_file", "NOPE_NOT_SET"]),
            ("listen = localhost", 1, ["listen", "IPV4:PORT"]),
            ("# c\nlisten = localhost:7420", 2, ["listen", "localhost is not resolved", "127.0.0.1:7420", "[::1]:7420"]),
            ("listen = LocalHost:7420", 1, ["listen", "localhost is not resolved"]),
            ("listen = 256.0.0.1:7420", 1, ["listen", "`256.0.0.1` is not an IPv4 address"]),
            ("listen = 127.1:7420", 1, ["listen", "`127.1` is not an IPv4 address"]),
            ("listen = kami.example.com:7420", 1, ["listen", "not an IPv4 address", "not resolved"]),
            ("listen = [::1::2]:7420", 1, ["listen", "`::1::2` is not an IPv6 address"]),
            ("listen = [127.0.0.1]:7420", 1, ["listen", "not an IPv6 address"]),
            ("listen = ::1:7420", 1, ["listen", "needs brackets"]),
            ("listen = [::1]7420", 1, ["listen", "[IPV6]:PORT"]),
            ("listen = 127.0.0.1:70000", 1, ["listen", "port", "65535"]),
            ("listen = 127.0.0.1:+1", 1, ["listen", "port"]),
            ("listen = :7420", 1, ["listen", "no address"]),
            ("metrics_listen = localhost:9420", 1, ["metrics_listen", "localhost is not resolved"]),
            ("metrics_listen = 127.0.0.1.1:9420", 1, ["metrics_listen", "not an IPv4 address"]),
            ("listen = 127.0.0.1:1\nlisten = 127.0.0.1:1", 2, ["listen", "twice"]),
            ("listen = 127.0.0.1:1\nlisten = none", 2, ["listen", "none"]),
            ("metrics_listen = 0.0.0.0:9420", 1, ["metrics_listen", "loopback"]),
            ("unix_socket_mode = 0777", 1, ["unix_socket_mode"]),
            ("unix_socket_mode = 0066", 1, ["unix_socket_mode"]),
            ("token_file.bad/name = x", 1, ["token_file.bad/name", "client name"]),
            ("hold_ttl_max_ms = 5000\nhold_ttl_default_ms = 6000", 2, ["hold_ttl_default_ms", "above"]),
        ]
        for (text, line, mentions) in cases {
            do {
                _ = try DaemonConfig.parse(text, source: "/etc/kami/kamid.conf", environment: [:])
                XCTFail("accepted: \(text)")
            } catch {
                let message = error.description
                XCTAssertTrue(message.hasPrefix("/etc/kami/kamid.conf:\(line):"), "\(text) → \(message)")
                for word in mentions {
                    XCTAssertTrue(message.contains(word), "\(text) → \(message) lacks \(word)")
                }
            }
        }
    }

    /// Every address that parses is one bind accepts: IPv4 dotted quads and bracketed IPv6,
    /// checked with inet_pton; loopback is 127.0.0.0/8 and ::1 in any spelling, never a name.
    func testListenAddressesAreCheckedLikeBindWill() throws {
        let config = try DaemonConfig.parse("""
            listen = 0.0.0.0:7420
            listen = [::]:7421
            listen = [fe80::1]:7422
            listen = 10.1.2.3:0
            metrics_listen = [0:0:0:0:0:0:0:1]:9420
            """, source: "t", environment: [:])
        XCTAssertEqual(config.listen, [.tcp(host: "0.0.0.0", port: 7420), .tcp(host: "::", port: 7421),
                                       .tcp(host: "fe80::1", port: 7422), .tcp(host: "10.1.2.3", port: 0)])
        XCTAssertEqual(config.metricsListen, .tcp(host: "0:0:0:0:0:0:0:1", port: 9420))
        XCTAssertTrue(ListenAddress.tcp(host: "127.8.9.10", port: 1).isLoopback)
        XCTAssertTrue(ListenAddress.tcp(host: "::1", port: 1).isLoopback)
        XCTAssertFalse(ListenAddress.tcp(host: "localhost", port: 1).isLoopback, "a name is not an address")
        XCTAssertFalse(ListenAddress.tcp(host: "127.example.com", port: 1).isLoopback)
        XCTAssertFalse(ListenAddress.tcp(host: "::2", port: 1).isLoopback)
        XCTAssertNil(ListenAddress(hostPort: "localhost:1"))
        XCTAssertNil(ListenAddress(hostPort: "999.1.1.1:1"))
    }

    func testWebhookEndpointsParseAndEachMistakeIsNamedByLine() throws {
        let good = try DaemonConfig.parse("""
            webhook_url.shop = https://shop.example.com/kami
            webhook_secret_file.shop = shop.whsec
            webhook_events.shop = order.delivered, stock.low
            """, source: "k.conf", environment: [:])
        XCTAssertEqual(good.webhooks["shop"]?.url, "https://shop.example.com/kami")
        XCTAssertEqual(good.webhooks["shop"]?.events, ["order.delivered", "stock.low"])
        let cases: [(String, String)] = [
            ("webhook_url.shop = ftp://x.example\nwebhook_secret_file.shop = s", "k.conf:1: webhook_url.shop: expected an http:// or https:// URL"),
            ("webhook_url.shop = https://u:p@x.example/\nwebhook_secret_file.shop = s", "k.conf:1: webhook_url.shop: expected"),
            ("webhook_url.shop = https://x.example/?token=abc\nwebhook_secret_file.shop = s", "without credentials or a query"),
            ("\nwebhook_url.shop = https://x.example/", "k.conf:2: webhook shop: webhook_secret_file.shop is not set"),
            ("webhook_secret_file.shop = s", "k.conf:1: webhook shop: webhook_url.shop is not set"),
            ("webhook_events.shop = order.shipped", "k.conf:1: webhook_events.shop: unknown event `order.shipped`"),
            ("webhook_url.sh op = https://x.example/", "expected `key = value`"),
            ("webhook_url.a/b = https://x.example/", "endpoint name must be"),
            ("webhook_backoff_ms = 5000\nwebhook_backoff_max_ms = 100", "webhook_backoff_ms: 5000 is above webhook_backoff_max_ms 100"),
            ("webhook_retry_for_ms = 10", "k.conf:1: webhook_retry_for_ms: 10 is out of range"),
        ]
        for (text, expected) in cases {
            do {
                _ = try DaemonConfig.parse(text, source: "k.conf", environment: [:])
                XCTFail("accepted: \(text)")
            } catch {
                XCTAssertTrue(error.description.contains(expected), "\(text): \(error.description)")
            }
        }
    }

    func testWindowsLineEndingsAreLines() throws {
        let config = try DaemonConfig.parse("# c\r\nlog_level = debug\r\nmax_connections = 7\r\n", source: "w.conf",
                                            environment: [:])
        XCTAssertEqual(config.logLevel, .debug)
        XCTAssertEqual(config.maxConnections, 7)
        XCTAssertThrowsError(try DaemonConfig.parse("# c\r\nmax_connections = 0\r\n", source: "w.conf", environment: [:])) {
            XCTAssertTrue("\($0)".hasPrefix("w.conf:2: max_connections"), "\($0)")
        }
    }

    func testAMissingFileIsNamed() {
        XCTAssertThrowsError(try DaemonConfig.load(path: "/nonexistent/kamid.conf", environment: [:])) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/kamid.conf"), "\(error)")
        }
    }

    func testChangedKeysSplitIntoLiveAndRestart() throws {
        let old = DaemonConfig()
        var new = old
        new.logLevel = .debug
        new.maxConnections = 5
        new.listen = [.tcp(host: "127.0.0.1", port: 1)]
        new.durability = .normal
        let changed = DaemonRuntime.changedKeys(old, new)
        XCTAssertEqual(Set(changed), ["log_level", "max_connections", "listen", "durability"])
        XCTAssertEqual(Set(changed.filter { DaemonConfig.restartKeys.contains($0) }), ["listen", "durability"])
        XCTAssertEqual(DaemonRuntime.changedKeys(old, old), [])
        // Keeping the restart keys undoes exactly those changes, and only those.
        XCTAssertEqual(Set(DaemonRuntime.changedKeys(old, new.keepingRestartKeys(of: old))), ["log_level", "max_connections"])
        var everything = try DaemonConfig.parse("""

            listen = 127.0.0.1:1
            unix_socket = /s
            unix_socket_mode = 0600
            loop_threads = 2
            data_dir = /d
            durability = normal
            master_key_file = /k
            metrics_listen = off
            upstream_callback_listen = 127.0.0.1:2
            risk_rate_entries = 2048
            risk_distinct_entries = 2048
            risk_sketch_width = 2048
            risk_hold_entries = 2048
            """, source: "r.conf", environment: [:])
        XCTAssertEqual(Set(DaemonRuntime.changedKeys(old, everything)), DaemonConfig.restartKeys.union(["token_dir"]),
                       "token_dir resolves against data_dir")
        everything = everything.keepingRestartKeys(of: old)
        XCTAssertEqual(DaemonRuntime.changedKeys(old, everything), [], "every restart key is kept")
    }
}
