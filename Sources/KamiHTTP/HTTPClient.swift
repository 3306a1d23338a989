import CKamiLinux
import Glibc

/// Why a request got no response. `sent` says whether any byte of it left this process: when
/// false the server cannot have acted on it (safe to send elsewhere); when true the outcome
/// is unknown and must be found out, not assumed.
public struct HTTPClientError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        case resolve, connect, tls, timeout, closed, malformed, overloaded
    }

    public var kind: Kind
    public var message: String
    /// Whether bytes of the request were written (the server may have acted on it).
    public var sent: Bool

    public init(_ kind: Kind, _ message: String, sent: Bool) {
        self.kind = kind
        self.message = message
        self.sent = sent
    }

    public var description: String { "\(kind.rawValue): \(message)\(sent ? " (after the request was sent)" : "")" }
}

/// How one origin is talked to.
public struct HTTPClientOptions: Sendable, Hashable {
    /// Longest wait for TCP connect plus TLS handshake.
    public var connectTimeoutMs: Int64 = 3_000
    /// Longest time from writing the request on a connection to the whole response.
    public var timeoutMs: Int64 = 10_000
    /// Longest wait for a free connection before the request is sent (it then fails as
    /// `timeout` with `sent` false: it never left).
    public var queueTimeoutMs: Int64 = 30_000
    /// Most connections (so most requests in flight) to the origin at once.
    public var maxConnections = 64
    /// Most requests waiting for a connection; past it `send` fails at once (overloaded).
    public var queueMax = 100_000
    /// An idle keep-alive connection is closed after this long.
    public var idleMs: Int64 = 20_000
    /// Bounds on a response.
    public var limits = HTTPLimits(headerBytesMax: 32_768, bodyBytesMax: 4 << 20)

    public init() {}
}

/// An HTTP/1.1 client over an `IOLoop`: keep-alive connections per origin, at most
/// `maxConnections` each, requests beyond that queued in order, a total timeout per request,
/// TLS with certificate and host-name verification. Non-blocking throughout: thousands of
/// requests in flight cost sockets and buffers, not threads.
///
/// Requests are never retried by the client: a request whose bytes were sent may have been
/// acted on, and only the caller knows whether repeating it is safe.
public final class HTTPClient: @unchecked Sendable {
    // @unchecked: `pools` is touched only on the loop thread.
    public typealias Completion = @Sendable (Result<HTTPResponse, HTTPClientError>) -> Void

    public let loop: IOLoop
    private var pools: [String: Pool] = [:]

    /// A client whose sockets `loop` waits on.
    public init(loop: IOLoop) {
        self.loop = loop
    }

    /// Sends `request` to `url`'s origin (its target replaces the request's when the
    /// request's is empty). `tls` is required for https (a client context). `completion`
    /// runs on the loop thread exactly once.
    public func send(
        _ request: HTTPRequest, to url: HTTPURL, tls: TLSContext? = nil, options: HTTPClientOptions = HTTPClientOptions(),
        completion: @escaping Completion
    ) {
        var request = request
        if request.target.isEmpty { request.target = url.target }
        let sending = request
        loop.execute { [self] in
            if url.secure && tls == nil {
                return completion(.failure(HTTPClientError(.tls, "https URL without a TLS context", sent: false)))
            }
            // One pool per origin and TLS context: a connection verified under one trust
            // store is never reused by a request that asked for another.
            let key = "\(url.secure ? "https" : "http")://\(url.host):\(url.port)"
                + (url.secure ? "#\(ObjectIdentifier(tls!).hashValue)" : "")
            let pool = pools[key] ?? {
                let made = Pool(client: self, url: url, tls: url.secure ? tls : nil, options: options)
                pools[key] = made
                return made
            }()
            pool.options = options
            pool.submit(Pending(request: sending, completion: completion))
        }
    }

    /// Connections open now across origins (loop thread).
    public var openConnections: Int { pools.values.reduce(0) { $0 + $1.connections.count } }

    /// One request waiting or in flight.
    final class Pending {
        let request: HTTPRequest
        let completion: Completion
        var timer: IOLoop.TimerID?
        var done = false
        /// Sent again on a fresh connection once already (a kept-alive one had gone stale).
        var retried = false

        init(request: HTTPRequest, completion: @escaping Completion) {
            self.request = request
            self.completion = completion
        }

        func finish(_ result: Result<HTTPResponse, HTTPClientError>, loop: IOLoop) {
            guard !done else { return }
            done = true
            if let timer { loop.cancel(timer) }
            completion(result)
        }
    }

    /// The connections and queue of one origin. @unchecked Sendable: closures run on the
    /// loop carry it; it is only ever touched there.
    final class Pool: @unchecked Sendable {
        let loop: IOLoop
        let url: HTTPURL
        let tls: TLSContext?
        var options: HTTPClientOptions
        var connections: Set<ObjectIdentifier> = []
        var all: [ObjectIdentifier: Conn] = [:]
        var idle: [Conn] = []
        var queue: [Pending] = []
        var queueHead = 0
        var addresses: [[UInt8]] = []

        init(client: HTTPClient, url: HTTPURL, tls: TLSContext?, options: HTTPClientOptions) {
            loop = client.loop
            self.url = url
            self.tls = tls
            self.options = options
        }

        /// (Re)starts the request's timer: the queue wait, then the request's own.
        func arm(_ pending: Pending, ms: Int64) {
            if let timer = pending.timer { loop.cancel(timer) }
            pending.timer = loop.schedule(afterMs: ms) { [weak self, weak pending] in
                guard let self, let pending, !pending.done else { return }
                self.timedOut(pending)
            }
        }

        func submit(_ pending: Pending) {
            arm(pending, ms: options.queueTimeoutMs)
            while let conn = idle.popLast() {
                if conn.usable {
                    conn.reused = true
                    conn.start(pending)
                    return
                }
                conn.close()
            }
            if connections.count < options.maxConnections {
                open(for: pending)
                return
            }
            guard queue.count - queueHead < options.queueMax else {
                return pending.finish(.failure(HTTPClientError(
                    .overloaded, "\(queue.count - queueHead) requests already wait for \(url.hostHeader)", sent: false)), loop: loop)
            }
            queue.append(pending)
        }

        private func timedOut(_ pending: Pending) {
            // In flight on a connection: that connection is closed (its state is unknown).
            if let conn = all.values.first(where: { $0.current === pending }) {
                let sent = conn.sentBytes > 0
                conn.close()
                pending.finish(.failure(HTTPClientError(.timeout, "no response from \(url.hostHeader) within \(options.timeoutMs) ms", sent: sent)), loop: loop)
                return
            }
            pending.finish(.failure(HTTPClientError(.timeout, "no free connection to \(url.hostHeader) within \(options.queueTimeoutMs) ms", sent: false)), loop: loop)
        }

        private func open(for pending: Pending) {
            if addresses.isEmpty {
                switch SocketCalls.resolve(host: url.host, port: url.port) {
                case .success(let found): addresses = found
                case .failure(let problem):
                    return pending.finish(.failure(HTTPClientError(.resolve, problem.description, sent: false)), loop: loop)
                }
            }
            let conn = Conn(pool: self)
            all[ObjectIdentifier(conn)] = conn
            connections.insert(ObjectIdentifier(conn))
            conn.connect(addresses[0], for: pending)
        }

        /// A connection finished its request and can take the next.
        func released(_ conn: Conn) {
            while queueHead < queue.count {
                let next = queue[queueHead]
                queueHead += 1
                if queueHead > 1_024 && queueHead * 2 > queue.count {
                    queue.removeFirst(queueHead)
                    queueHead = 0
                }
                if next.done { continue }
                conn.reused = true
                conn.start(next)
                return
            }
            idle.append(conn)
            conn.idleSince = IOLoop.nowNs()
        }

        /// A connection closed (any reason).
        func closed(_ conn: Conn) {
            let id = ObjectIdentifier(conn)
            connections.remove(id)
            all[id] = nil
            idle.removeAll { $0 === conn }
            // Someone queued may now open a connection of their own: on the next turn of the
            // loop, so that a run of failing connects never recurses.
            guard queueHead < queue.count, !drainScheduled else { return }
            drainScheduled = true
            loop.execute { [self] in
                drainScheduled = false
                while queueHead < queue.count && connections.count < options.maxConnections {
                    let next = queue[queueHead]
                    queueHead += 1
                    if next.done { continue }
                    open(for: next)
                }
            }
        }

        var drainScheduled = false

        /// A request that failed before a byte of it was written on a kept-alive connection
        /// (the server had closed it): sent again once, on a fresh connection.
        func resubmit(_ pending: Pending) {
            pending.retried = true
            if connections.count < options.maxConnections {
                open(for: pending)
            } else {
                queue.insert(pending, at: queueHead)
            }
        }

        func connectFailed(_ message: String) {
            addresses = []  // resolve again next time
            _ = message
        }
    }

    /// One connection of a pool.
    final class Conn {
        // Strong: the pool keeps its open connections in `all`, and a closed one leaves it.
        let pool: Pool
        var fd: Int32 = -1
        var transport: Transport?
        var parser: HTTPParser
        var current: Pending?
        var output: [UInt8] = []
        var written = 0
        var sentBytes = 0
        var connected = false
        var closedFlag = false
        var idleSince: UInt64 = 0
        var connectTimer: IOLoop.TimerID?
        var watchingWrite = false
        /// Taken from the idle list (its server may have closed it meanwhile).
        var reused = false
        /// A TLS read that must wait for the socket to be writable.
        var readWantsWrite = false

        init(pool: Pool) {
            self.pool = pool
            parser = HTTPParser(kind: .response, limits: pool.options.limits)
        }

        var loop: IOLoop { pool.loop }

        var usable: Bool {
            !closedFlag && connected && IOLoop.nowNs() - idleSince < UInt64(pool.options.idleMs) * 1_000_000
        }

        func connect(_ address: [UInt8], for pending: Pending) {
            current = pending
            switch SocketCalls.startConnect(address) {
            case .failure(let problem):
                pool.connectFailed(problem.description)
                fail(.connect, "\(pool.url.hostHeader): \(problem)")
                return
            case .success(let started):
                fd = started.fd
                loop.register(fd, events: EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue) { [weak self] events in
                    self?.ready(events)
                }
                watchingWrite = true
                connectTimer = loop.schedule(afterMs: pool.options.connectTimeoutMs) { [weak self] in
                    guard let self, !self.connected, !self.closedFlag else { return }
                    self.fail(.connect, "\(self.pool.url.hostHeader): connect timed out after \(self.pool.options.connectTimeoutMs) ms")
                }
                if !started.inProgress { ready(EPOLLOUT.rawValue) }
            }
        }

        func start(_ pending: Pending) {
            current = pending
            pool.arm(pending, ms: pool.options.timeoutMs)
            parser = HTTPParser(kind: .response, limits: pool.options.limits)
            parser.expectNoBody = pending.request.method == "HEAD"
            output = pending.request.serialized(host: pool.url.hostHeader)
            written = 0
            sentBytes = 0
            flush()
        }

        private func ready(_ events: UInt32) {
            guard !closedFlag else { return }
            if !connected {
                // Before TCP connects only writability means anything; during the TLS
                // handshake either direction may move it on.
                guard transport != nil || events & (EPOLLOUT.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 else { return }
                if transport == nil {
                    if let error = SocketCalls.connectError(fd) {
                        pool.connectFailed(error)
                        return fail(.connect, "\(pool.url.hostHeader): \(error)")
                    }
                    if let tls = pool.tls {
                        do { transport = try Transport(fd: fd, tls: tls, host: pool.url.host) } catch {
                            return fail(.tls, error.message)
                        }
                    } else {
                        transport = Transport(fd: fd)
                    }
                }
                if let waiting = transport!.handshake() {
                    switch waiting {
                    case .wait(let writable): return watch(write: writable)
                    case .failed(let message): return fail(.tls, "\(pool.url.hostHeader): \(message)")
                    default: return fail(.tls, "\(pool.url.hostHeader): connection closed during the TLS handshake")
                    }
                }
                connected = true
                if let timer = connectTimer { loop.cancel(timer) }
                if let pending = current { start(pending) }
                return
            }
            if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0
                || (readWantsWrite && events & EPOLLOUT.rawValue != 0) {
                readWantsWrite = false
                receive()
            }
            // A write waits on either direction under TLS: retry it on any event.
            if !closedFlag && written < output.count { flush() }
        }

        private func watch(write: Bool) {
            guard write != watchingWrite, fd >= 0 else { return }
            watchingWrite = write
            loop.modify(fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue | (write ? EPOLLOUT.rawValue : 0))
        }

        private func flush() {
            guard let transport else { return }
            while written < output.count {
                let result = output.withUnsafeBytes { raw in
                    transport.write(UnsafeRawBufferPointer(rebasing: raw[written...]))
                }
                switch result {
                case .bytes(let count):
                    written += count
                    sentBytes += count
                case .wait(let writable):
                    return watch(write: writable)
                case .closed:
                    return fail(.closed, "\(pool.url.hostHeader) closed the connection while the request was sent")
                case .failed(let message):
                    return fail(.closed, "\(pool.url.hostHeader): \(message)")
                }
            }
            output = []
            written = 0
            watch(write: false)
        }

        private func receive() {
            guard let transport else { return }
            while !closedFlag {
                let result = IOBuffer.shared.withRead { transport.read(into: $0) }
                switch result {
                case .bytes(let count):
                    IOBuffer.shared.withBytes(count) { parser.feed($0) }
                    if !deliver() { return }
                case .wait(let writable):
                    if writable {
                        readWantsWrite = true
                        watch(write: true)
                    }
                    return
                case .closed:
                    guard current != nil else { return close() }
                    do {
                        if let message = try parser.finish() {
                            let pending = current
                            current = nil
                            close()
                            pending?.finish(.success(message.response), loop: loop)
                            return
                        }
                    } catch {
                        return fail(.malformed, "\(pool.url.hostHeader): \(error.message)")
                    }
                    return fail(.closed, "\(pool.url.hostHeader) closed the connection before answering")
                case .failed(let message):
                    return fail(.closed, "\(pool.url.hostHeader): \(message)")
                }
            }
        }

        /// Hands a complete response to its request; false when the connection is done.
        private func deliver() -> Bool {
            let message: HTTPParser.Message?
            do { message = try parser.next() } catch {
                fail(.malformed, "\(pool.url.hostHeader) answered a malformed response: \(error.message)")
                return false
            }
            guard var message else { return true }
            // Interim answers (100 Continue, 103 Early Hints) precede the real one.
            while let status = Int(message.head.second), status >= 100 && status < 200 && status != 101 {
                let next: HTTPParser.Message?
                do { next = try parser.next() } catch {
                    fail(.malformed, "\(pool.url.hostHeader) answered a malformed response: \(error.message)")
                    return false
                }
                guard let next else { return true }
                message = next
            }
            guard let pending = current else {
                // Bytes nobody asked for: the connection is out of step.
                close()
                return false
            }
            current = nil
            // Reused only when in step: the request was all written and nothing more arrived.
            if message.close || parser.buffered > 0 || written < output.count {
                close()
                pending.finish(.success(message.response), loop: loop)
                return false
            }
            pending.finish(.success(message.response), loop: loop)
            if !closedFlag { pool.released(self) }
            return !closedFlag
        }

        private func fail(_ kind: HTTPClientError.Kind, _ message: String) {
            let pending = current
            current = nil
            let sent = sentBytes > 0
            let stale = reused && !sent && kind != .connect
            close()
            if stale, let pending, !pending.retried, !pending.done {
                return pool.resubmit(pending)
            }
            pending?.finish(.failure(HTTPClientError(kind, message, sent: sent && kind != .connect)), loop: loop)
        }

        func close() {
            guard !closedFlag else { return }
            closedFlag = true
            if let timer = connectTimer { loop.cancel(timer) }
            if fd >= 0 {
                loop.unregister(fd)
                transport = nil
                Glibc.close(fd)
                fd = -1
            }
            pool.closed(self)
        }
    }
}
