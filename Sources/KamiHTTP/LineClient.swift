import CKamiLinux
import Glibc

/// A client for newline-delimited request/reply protocols (kamid's own JSON lines) over an
/// `IOLoop`: up to `maxConnections` connections to one server, each opened with a
/// handshake line whose reply must come back before anything else is sent (kamid's
/// `hello`), then one request at a time per connection. Errors say, as `HTTPClientError`
/// does, whether the request may have reached the server.
public final class LineClient: @unchecked Sendable {
    // @unchecked: every var is touched only on the loop thread.
    public typealias Completion = @Sendable (Result<[UInt8], HTTPClientError>) -> Void
    /// Checks the handshake's reply line; a message when it refuses.
    public typealias HandshakeCheck = @Sendable ([UInt8]) -> String?

    public let loop: IOLoop
    private let host: String
    private let port: UInt16
    private let handshake: [UInt8]
    private let check: HandshakeCheck
    private let options: HTTPClientOptions
    private var idle: [LineConn] = []
    /// Every open connection (the loop's handlers hold them weakly).
    private var conns: [ObjectIdentifier: LineConn] = [:]
    private var open = 0
    private var queue: [Pending] = []
    private var addresses: [[UInt8]] = []

    /// A client of `host:port`; `handshake` (a whole line) starts every connection.
    public init(loop: IOLoop, host: String, port: UInt16, handshake: [UInt8], options: HTTPClientOptions,
                check: @escaping HandshakeCheck) {
        self.loop = loop
        self.host = host
        self.port = port
        self.handshake = handshake
        self.options = options
        self.check = check
    }

    final class Pending {
        let line: [UInt8]
        let completion: Completion
        var done = false
        var timer: IOLoop.TimerID?
        init(line: [UInt8], completion: @escaping Completion) {
            self.line = line
            self.completion = completion
        }
    }

    /// Sends one request line (newline included) and calls `completion` on the loop with the
    /// reply line (without its newline), exactly once.
    public func send(_ line: [UInt8], completion: @escaping Completion) {
        loop.execute { [self] in
            let pending = Pending(line: line, completion: completion)
            pending.timer = loop.schedule(afterMs: options.queueTimeoutMs) { [weak self, weak pending] in
                guard let self, let pending, !pending.done else { return }
                self.queue.removeAll { $0 === pending }
                self.finish(pending, .failure(HTTPClientError(.timeout, "no free connection to \(self.host):\(self.port)", sent: false)))
            }
            while let conn = idle.popLast() {
                if conn.usable { return conn.start(pending) }
                conn.close()
            }
            if open < options.maxConnections { return connect(for: pending) }
            queue.append(pending)
        }
    }

    fileprivate func finish(_ pending: Pending, _ result: Result<[UInt8], HTTPClientError>) {
        guard !pending.done else { return }
        pending.done = true
        if let timer = pending.timer { loop.cancel(timer) }
        pending.completion(result)
    }

    private func connect(for pending: Pending) {
        if addresses.isEmpty {
            switch SocketCalls.resolve(host: host, port: port) {
            case .success(let found): addresses = found
            case .failure(let problem): return finish(pending, .failure(HTTPClientError(.resolve, problem.description, sent: false)))
            }
        }
        open += 1
        let conn = LineConn(client: self)
        conns[ObjectIdentifier(conn)] = conn
        conn.connect(addresses[0], for: pending)
    }

    fileprivate func released(_ conn: LineConn) {
        while !queue.isEmpty {
            let next = queue.removeFirst()
            if next.done { continue }
            return conn.start(next)
        }
        conn.idleSince = IOLoop.nowNs()
        idle.append(conn)
    }

    fileprivate func closed(_ conn: LineConn) {
        open -= 1
        conns[ObjectIdentifier(conn)] = nil
        idle.removeAll { $0 === conn }
        if !conn.connected { addresses = [] }  // resolve again only after a failed connect
        guard !queue.isEmpty else { return }
        loop.execute { [self] in
            while open < options.maxConnections, !queue.isEmpty {
                let next = queue.removeFirst()
                if !next.done { connect(for: next) }
            }
        }
    }

    /// One connection.
    final class LineConn {
        let client: LineClient
        var fd: Int32 = -1
        var current: Pending?
        var output: [UInt8] = []
        var written = 0
        var sentBytes = 0
        var input: [UInt8] = []
        var greeted = false
        var closedFlag = false
        var requestTimer: IOLoop.TimerID?
        var connected = false
        var idleSince: UInt64 = 0

        /// Idle for less than `idleMs` (an older one may have been dropped by a NAT or the peer).
        var usable: Bool { !closedFlag && IOLoop.nowNs() - idleSince < UInt64(client.options.idleMs) * 1_000_000 }

        init(client: LineClient) { self.client = client }

        var loop: IOLoop { client.loop }
        var name: String { "\(client.host):\(client.port)" }

        func connect(_ address: [UInt8], for pending: Pending) {
            current = pending
            // Taken from the queue: its own timers run from here.
            if let timer = pending.timer { loop.cancel(timer) }
            switch SocketCalls.startConnect(address) {
            case .failure(let problem):
                return fail(.connect, "\(name): \(problem)")
            case .success(let started):
                fd = started.fd
                loop.register(fd, events: EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue) { [weak self] events in
                    self?.ready(events)
                }
                arm(client.options.connectTimeoutMs + client.options.timeoutMs)
                output = client.handshake
                written = 0
            }
        }

        func start(_ pending: Pending) {
            current = pending
            if let timer = pending.timer { loop.cancel(timer) }
            output = pending.line
            written = 0
            sentBytes = 0
            arm(client.options.timeoutMs)
            flush()
        }

        private func arm(_ ms: Int64) {
            if let requestTimer { loop.cancel(requestTimer) }
            requestTimer = loop.schedule(afterMs: ms) { [weak self] in
                guard let self, !self.closedFlag, self.current != nil else { return }
                // Never connected or never greeted: the request never left.
                if !self.connected || !self.greeted {
                    return self.fail(.connect, "\(self.name) did not connect and answer the handshake within \(ms) ms")
                }
                self.fail(.timeout, "no reply from \(self.name) within \(ms) ms")
            }
        }

        private func ready(_ events: UInt32) {
            guard !closedFlag else { return }
            if !connected {
                guard events & (EPOLLOUT.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 else { return }
                if let error = SocketCalls.connectError(fd) { return fail(.connect, "\(name): \(error)") }
                connected = true
            }
            if written < output.count { flush() }
            if !closedFlag && events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
                receive()
            }
        }

        private func flush() {
            guard connected else { return }
            while written < output.count {
                let count = output.withUnsafeBytes { raw in
                    Glibc.send(fd, raw.baseAddress! + written, raw.count - written, Int32(MSG_NOSIGNAL))
                }
                if count > 0 {
                    written += count
                    if greeted { sentBytes += count }
                } else if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    loop.modify(fd, events: EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue)
                    return
                } else {
                    return fail(.closed, "\(name): send failed")
                }
            }
            loop.modify(fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue)
        }

        private func receive() {
            while !closedFlag {
                let result = IOBuffer.shared.withRead { Glibc.read(fd, $0.baseAddress, $0.count) }
                if result > 0 {
                    IOBuffer.shared.withBytes(result) { input.append(contentsOf: $0) }
                    while let newline = input.firstIndex(of: 10) {
                        let line = Array(input[..<newline])
                        input.removeSubrange(...newline)
                        handle(line)
                        if closedFlag { return }
                    }
                    if input.count > client.options.limits.bodyBytesMax { return fail(.malformed, "\(name): a reply line too long") }
                } else if result == 0 {
                    return fail(.closed, "\(name) closed the connection")
                } else {
                    if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
                    return fail(.closed, "\(name): read failed")
                }
            }
        }

        private func handle(_ line: [UInt8]) {
            if !greeted {
                if let refusal = client.check(line) { return fail(.connect, "\(name) refused the handshake: \(refusal)") }
                greeted = true
                guard let pending = current, !pending.done else {
                    current = nil
                    return client.released(self)
                }
                output = pending.line
                written = 0
                sentBytes = 0
                arm(client.options.timeoutMs)
                return flush()
            }
            guard let pending = current, written >= output.count else {
                return fail(.malformed, "\(name) sent a line nobody asked for (or before the request was written)")
            }
            current = nil
            if let requestTimer { loop.cancel(requestTimer) }
            client.finish(pending, .success(line))
            if input.isEmpty { client.released(self) } else { close() }
        }

        private func fail(_ kind: HTTPClientError.Kind, _ message: String) {
            let pending = current
            current = nil
            let sent = sentBytes > 0
            close()
            if let pending { client.finish(pending, .failure(HTTPClientError(kind, message, sent: sent && kind != .connect))) }
        }

        func close() {
            guard !closedFlag else { return }
            closedFlag = true
            if let requestTimer { loop.cancel(requestTimer) }
            if fd >= 0 {
                loop.unregister(fd)
                Glibc.close(fd)
                fd = -1
            }
            client.closed(self)
        }
    }
}
