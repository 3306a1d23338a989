import CKamiLinux
import Foundation
import Glibc
import KamiCore
import KamiStore
import Synchronization

/// A small HTTP/1.1 endpoint on a loopback address, on its own thread (never on an event
/// loop): `GET /metrics` (Prometheus text), `GET /healthz` (alive), `GET /readyz` (ready to
/// take writes). One request per connection (`Connection: close`), at most
/// `MetricsServer.clientsMax` clients at once, each given `requestTimeoutMs` to send its
/// request line and headers (at most `requestBytesMax`).
public final class MetricsServer: @unchecked Sendable {
    // @unchecked: `listener`, `thread`, `port` are set in `start` before the thread runs and
    // read-only after; the thread owns the client table.
    public typealias Readiness = @Sendable () -> (ready: Bool, reason: String)

    static let clientsMax = 32
    static let requestBytesMax = 8_192
    static let requestTimeoutMs: Int64 = 2_000

    private let address: ListenAddress
    private let render: @Sendable () -> String
    private let readiness: Readiness
    private let logger: Logger
    private var listener: Int32 = -1
    private var thread: Thread?
    private let stopping = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)
    /// The port bound (useful with port 0).
    public private(set) var port: UInt16 = 0

    /// An endpoint at `address` (must be loopback) serving `render()` at /metrics.
    public init(address: ListenAddress, logger: Logger, readiness: @escaping Readiness,
                render: @escaping @Sendable () -> String) {
        self.address = address
        self.render = render
        self.readiness = readiness
        self.logger = logger
    }

    /// Binds and starts the thread.
    public func start() throws(SystemError) {
        guard address.isLoopback, case .tcp = address else {
            throw SystemError(call: "metrics_listen", errno: EINVAL, detail: "\(address) is not a loopback TCP address")
        }
        listener = try Sockets.listen(address, backlog: 64)
        port = Sockets.boundPort(listener) ?? 0
        let thread = Thread { [self] in serve() }
        thread.name = "kami-metrics"
        self.thread = thread
        thread.start()
        logger.log(.notice, "metrics-listening", ["address": "\(address)", "port": String(port)])
    }

    /// Stops the thread and closes every socket.
    public func stop() {
        guard thread != nil else { return }
        stopping.store(true, ordering: .relaxed)
        while !finished.load(ordering: .acquiring) { usleep(5_000) }
    }

    private struct Client {
        let fd: Int32
        var request: [UInt8] = []
        let deadlineMs: Int64
    }

    private static func nowMs() -> Int64 { Int64(monotonicNs() / 1_000_000) }

    private func serve() {
        var clients: [Client] = []
        while !stopping.load(ordering: .relaxed) {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            fds += clients.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), 100)
            let now = MetricsServer.nowMs()
            if ready > 0 && fds[0].revents != 0 {
                acceptAll(into: &clients, now: now)
            }
            var kept: [Client] = []
            for (index, var client) in clients.enumerated() {
                let events = index + 1 < fds.count ? fds[index + 1].revents : 0
                if events != 0, !readMore(&client) {
                    close(client.fd)
                    continue
                }
                if let end = MetricsServer.headerEnd(client.request) {
                    respond(client.fd, Array(client.request[..<end]))
                    close(client.fd)
                } else if client.request.count > MetricsServer.requestBytesMax {
                    write(client.fd, status: "431 Request Header Fields Too Large", body: "request headers too large\n")
                    close(client.fd)
                } else if now > client.deadlineMs {
                    write(client.fd, status: "408 Request Timeout", body: "no complete request within "
                        + "\(MetricsServer.requestTimeoutMs) ms\n")
                    close(client.fd)
                } else {
                    kept.append(client)
                }
            }
            clients = kept
        }
        for client in clients { close(client.fd) }
        close(listener)
        finished.store(true, ordering: .releasing)
    }

    private func acceptAll(into clients: inout [Client], now: Int64) {
        while true {
            let accepted: (fd: Int32, peer: String)?
            do { accepted = try Sockets.accept(listener) } catch { return }
            guard let (fd, _) = accepted else { return }
            guard clients.count < MetricsServer.clientsMax else {
                write(fd, status: "503 Service Unavailable", body: "too many metrics clients\n")
                close(fd)
                continue
            }
            clients.append(Client(fd: fd, deadlineMs: now + MetricsServer.requestTimeoutMs))
        }
    }

    /// Reads what is there; false on EOF or error.
    private func readMore(_ client: inout Client) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4_096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                client.request += chunk[0..<n]
                if client.request.count > MetricsServer.requestBytesMax { return true }
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return true }
            if n < 0 && errno == EINTR { continue }
            return false
        }
    }

    /// Index just past `\r\n\r\n` (or `\n\n`), if the headers are complete.
    static func headerEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        for index in 1..<bytes.count where bytes[index] == 0x0A {
            if bytes[index - 1] == 0x0A { return index + 1 }
            if index >= 3 && bytes[index - 1] == 0x0D && bytes[index - 2] == 0x0A && bytes[index - 3] == 0x0D {
                return index + 1
            }
        }
        return nil
    }

    private func respond(_ fd: Int32, _ head: [UInt8]) {
        let firstLine = String(decoding: head.prefix { $0 != 0x0D && $0 != 0x0A }, as: UTF8.self)
        let parts = firstLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1."), parts[1].hasPrefix("/") else {
            write(fd, status: "400 Bad Request", body: "expected `GET /path HTTP/1.1`\n")
            return
        }
        let method = parts[0]
        let path = parts[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard ["/metrics", "/healthz", "/readyz"].contains(path) else {
            write(fd, status: "404 Not Found", body: "try /metrics, /healthz or /readyz\n")
            return
        }
        guard method == "GET" || method == "HEAD" else {
            write(fd, status: "405 Method Not Allowed", body: "only GET and HEAD\n", extra: "Allow: GET, HEAD\r\n")
            return
        }
        let head = method == "HEAD"
        switch path {
        case "/metrics":
            write(fd, status: "200 OK", body: render(), type: "text/plain; version=0.0.4; charset=utf-8", headOnly: head)
        case "/healthz":
            write(fd, status: "200 OK", body: "ok\n", headOnly: head)
        default:
            let (ready, reason) = readiness()
            write(fd, status: ready ? "200 OK" : "503 Service Unavailable", body: (ready ? "ready" : reason) + "\n",
                  headOnly: head)
        }
    }

    private func write(_ fd: Int32, status: String, body: String, type: String = "text/plain; charset=utf-8",
                       extra: String = "", headOnly: Bool = false) {
        let payload = Array(body.utf8)
        var bytes = Array(("HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(payload.count)\r\n"
            + "Connection: close\r\n\(extra)\r\n").utf8)
        if !headOnly { bytes += payload }
        // The socket is non-blocking: a reader that does not read gets what fits, then the close.
        var sent = 0
        var waits = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && waits < 20 {
                waits += 1
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&pfd, 1, 100)
                continue
            }
            return
        }
    }
}
