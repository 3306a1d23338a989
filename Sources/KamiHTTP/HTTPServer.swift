import CKamiLinux
import Glibc
import KamiCore
import Synchronization

/// Answers one request, from any thread, once. A request never answered is closed when the
/// server stops.
public final class HTTPResponder: Sendable {
    private let send: @Sendable (HTTPResponse) -> Void
    private let used = Atomic<Bool>(false)

    init(_ send: @escaping @Sendable (HTTPResponse) -> Void) { self.send = send }

    /// Sends `response` (later calls are ignored).
    public func respond(_ response: HTTPResponse) {
        guard !used.exchange(true, ordering: .acquiringAndReleasing) else { return }
        send(response)
    }
}

/// How an `HTTPServer` bounds its clients.
public struct HTTPServerOptions: Sendable, Hashable {
    /// Most connections at once; past it new ones are answered 503 (with `Retry-After: 1`) and
    /// closed at once (over TLS: closed, there is no handshake to answer in).
    public var maxConnections = 1_024
    /// A request must arrive whole within this long of its first byte (or of the connection).
    public var requestTimeoutMs: Int64 = 10_000
    /// An idle keep-alive connection is closed after this long.
    public var idleMs: Int64 = 30_000
    /// Bounds on a request.
    public var limits = HTTPLimits()
    /// false: every response carries `Connection: close` and ends its connection (one
    /// request per connection, as the metrics port has always answered scrapers).
    public var keepAlive = true
    /// true: a connection that sends no byte within `requestTimeoutMs` of its accept is
    /// answered 408 before it is closed (false: closed silently). An idle keep-alive
    /// connection is always closed silently: a 408 there could cross the client's next request.
    public var answerSilentConnections = false

    public init() {}
}

/// A small HTTP/1.1 server over an `IOLoop`: keep-alive, one request at a time per
/// connection (pipelined requests wait their turn), handlers that answer later from any
/// thread, optional TLS. Used for supplier callbacks and by the simulators.
public final class HTTPServer: @unchecked Sendable {
    // @unchecked: `listener`, `conns` and the rest are touched only on the loop thread, after
    // `start` (which runs there too).
    public typealias Handler = @Sendable (HTTPRequest, HTTPResponder) -> Void

    public let loop: IOLoop
    private let host: String
    private let requestedPort: UInt16
    private let tls: TLSContext?
    private let options: HTTPServerOptions
    private let handler: Handler
    private var listener: Int32 = -1
    private var conns: [Int32: ServerConn] = [:]
    /// The port bound (after `start`).
    public private(set) var port: UInt16 = 0

    /// A server on `host:port` (port 0 picks one) calling `handler` for each request.
    public init(host: String, port: UInt16, tls: TLSContext? = nil, options: HTTPServerOptions = HTTPServerOptions(),
                loop: IOLoop, handler: @escaping Handler) {
        self.host = host
        requestedPort = port
        self.tls = tls
        self.options = options
        self.loop = loop
        self.handler = handler
    }

    /// Binds and starts accepting; throws a message naming the address on failure.
    public func start() throws(HTTPServerError) {
        let result = Locked<Result<UInt16, HTTPServerError>?>(nil)
        loop.execute { [self] in
            switch SocketCalls.listen(host: host, port: requestedPort) {
            case .failure(let problem):
                result.withLock { $0 = .failure(HTTPServerError(message: problem.description)) }
            case .success(let bound):
                listener = bound.fd
                port = bound.port
                loop.register(listener, events: EPOLLIN.rawValue) { [self] _ in accept() }
                result.withLock { $0 = .success(bound.port) }
            }
        }
        while true {
            if let outcome = result.withLock({ $0 }) {
                switch outcome {
                case .success: return
                case .failure(let error): throw error
                }
            }
            usleep(200)
        }
    }

    /// Stops accepting and closes every connection (from any thread but the loop's).
    public func stop() {
        let done = Atomic<Bool>(false)
        loop.execute { [self] in
            if listener >= 0 {
                loop.unregister(listener)
                close(listener)
                listener = -1
            }
            for conn in conns.values { conn.close() }
            conns = [:]
            done.store(true, ordering: .releasing)
        }
        while !done.load(ordering: .acquiring) { usleep(200) }
    }

    /// Connections open now (loop thread).
    var openConnections: Int { conns.count }

    private func accept() {
        while true {
            let fd = kami_accept4(listener, nil, nil, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
            if fd < 0 {
                // Out of descriptors: the listener stays readable, so stop watching it for a
                // moment rather than spin.
                if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM {
                    let listening = listener
                    loop.modify(listening, events: 0)
                    loop.schedule(afterMs: 100) { [weak self] in
                        guard let self, self.listener == listening else { return }
                        self.loop.modify(listening, events: EPOLLIN.rawValue)
                    }
                }
                return
            }
            guard conns.count < options.maxConnections else {
                // Over the limit: a plain client is told so (503, as nginx's limit_conn does)
                // rather than cut off; a TLS one cannot be without a handshake.
                if tls == nil { HTTPServer.refuseBusy(fd) }
                close(fd)
                continue
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let transport: Transport
            if let tls {
                do { transport = try Transport(fd: fd, tls: tls, host: nil) } catch {
                    close(fd)
                    continue
                }
            } else {
                transport = Transport(fd: fd)
            }
            let conn = ServerConn(server: self, fd: fd, transport: transport)
            conns[fd] = conn
            loop.register(fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue) { [weak conn] events in conn?.ready(events) }
            conn.armTimer(options.requestTimeoutMs)
            conn.ready(EPOLLIN.rawValue)
        }
    }

    fileprivate func closed(_ fd: Int32) { conns[fd] = nil }

    /// What a connection over `maxConnections` gets before it is closed.
    static let busyResponse: [UInt8] = {
        var headers = HTTPHeaders([("Content-Type", "text/plain; charset=utf-8")])
        headers.add("Retry-After", "1")
        return HTTPResponse(status: 503, headers: headers, body: Array("too many connections; retry later\n".utf8))
            .serialized(close: true)
    }()

    /// Writes the 503 to a just-accepted socket (its send buffer is empty, so one
    /// non-blocking send takes it all), ends the sending side, and reads what the client sent
    /// so far, so that closing does not reset the connection before the client reads the 503.
    private static func refuseBusy(_ fd: Int32) {
        _ = busyResponse.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
        shutdown(fd, Int32(SHUT_WR))
        var scratch = [UInt8](repeating: 0, count: 4_096)
        var reads = 0
        while reads < 4, recv(fd, &scratch, scratch.count, Int32(MSG_DONTWAIT)) > 0 { reads += 1 }
    }

    fileprivate func dispatch(_ request: HTTPRequest, conn: ServerConn) {
        let generation = conn.generation
        weak let target = conn
        let responder = HTTPResponder { [loop] response in
            loop.execute { target?.respond(response, generation: generation) }
        }
        handler(request, responder)
    }

    /// One accepted connection. @unchecked Sendable: a responder on another thread holds a
    /// weak reference to it only to hand it back to the loop, where every use happens.
    fileprivate final class ServerConn: @unchecked Sendable {
        // Strong: the server keeps its open connections in `conns`, and a closed one leaves it.
        let server: HTTPServer
        let fd: Int32
        let transport: Transport
        var parser: HTTPParser
        var output: [UInt8] = []
        var written = 0
        var busy = false
        var closeAfter = false
        var closedFlag = false
        var timer: IOLoop.TimerID?
        var generation: UInt64 = 0
        /// The events asked of epoll now.
        var interest: UInt32 = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        /// The peer closed its side (no more requests; answer the one in hand, then close).
        var peerClosed = false
        /// The TLS handshake waits for the socket to be writable.
        var handshakeWantsWrite = false
        /// The request in hand is a HEAD: its response goes without a body.
        var headRequest = false
        /// Requests taken from this connection so far.
        var requests = 0

        init(server: HTTPServer, fd: Int32, transport: Transport) {
            self.server = server
            self.fd = fd
            self.transport = transport
            parser = HTTPParser(kind: .request, limits: server.options.limits)
        }

        var loop: IOLoop { server.loop }

        func armTimer(_ ms: Int64) {
            if let timer { loop.cancel(timer) }
            timer = loop.schedule(afterMs: ms) { [weak self] in
                guard let self, !self.closedFlag, !self.busy else { return }
                if self.parser.inMessage || (self.requests == 0 && self.server.options.answerSilentConnections) {
                    self.fail(HTTPParseError(status: 408, message: "request not complete within \(self.server.options.requestTimeoutMs) ms"))
                } else {
                    self.close()
                }
            }
        }

        func ready(_ events: UInt32) {
            guard !closedFlag else { return }
            if let waiting = transport.handshake() {
                switch waiting {
                case .wait(let writable):
                    handshakeWantsWrite = writable
                    return updateInterest()
                default: return close()
                }
            }
            handshakeWantsWrite = false
            // The peer is gone (a reset): its request's answer has nowhere to go.
            if busy && events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { return close() }
            if written < output.count { flush() }
            if closedFlag { return }
            if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { receive() }
            updateInterest()
        }

        /// Asks epoll for what the connection can use now: reads unless the peer closed or a
        /// request is in hand with enough buffered behind it; writes only with bytes to write.
        func updateInterest() {
            guard !closedFlag else { return }
            let limit = server.options.limits.headerBytesMax + server.options.limits.bodyBytesMax
            var wanted: UInt32 = 0
            if !peerClosed && !(busy && parser.buffered > limit) { wanted |= EPOLLIN.rawValue | EPOLLRDHUP.rawValue }
            if written < output.count || handshakeWantsWrite { wanted |= EPOLLOUT.rawValue }
            guard wanted != interest else { return }
            interest = wanted
            loop.modify(fd, events: wanted)
        }

        private func watch(write: Bool) { updateInterest() }

        private func receive() {
            while !closedFlag {
                // A busy connection reads no more than one request ahead (bounded by the parser).
                if busy && parser.buffered > server.options.limits.headerBytesMax + server.options.limits.bodyBytesMax { return }
                let result = IOBuffer.shared.withRead { transport.read(into: $0) }
                switch result {
                case .bytes(let count):
                    IOBuffer.shared.withBytes(count) { parser.feed($0) }
                    if !busy { nextRequest() }
                case .wait(let writable):
                    if writable { watch(write: true) }
                    return
                case .closed, .failed:
                    if busy || written < output.count {
                        // Half-closed: answer (or finish answering), then close.
                        closeAfter = true
                        peerClosed = true
                        return updateInterest()
                    }
                    return close()
                }
            }
        }

        private func nextRequest() {
            guard !busy, !closedFlag else { return }
            let message: HTTPParser.Message?
            do { message = try parser.next() } catch { return fail(error) }
            guard let message else { return }
            busy = true
            requests += 1
            closeAfter = message.close || !server.options.keepAlive
            headRequest = message.head.first == "HEAD"
            if let timer { loop.cancel(timer) }
            generation += 1
            server.dispatch(message.request, conn: self)
        }

        func respond(_ response: HTTPResponse, generation: UInt64) {
            guard !closedFlag, busy, generation == self.generation else { return }
            output.append(contentsOf: response.serialized(close: closeAfter, headOnly: headRequest))
            busy = false
            flush()
            if closeAfter || closedFlag { return }
            armTimer(server.options.idleMs)
            nextRequest()
            updateInterest()
        }

        private func fail(_ error: HTTPParseError) {
            closeAfter = true
            output.append(contentsOf: HTTPResponse(status: error.status, text: error.message + "\n").serialized(close: true))
            flush()
        }

        private func flush() {
            while written < output.count {
                let result = output.withUnsafeBytes { transport.write(UnsafeRawBufferPointer(rebasing: $0[written...])) }
                switch result {
                case .bytes(let count): written += count
                case .wait: return watch(write: true)
                case .closed, .failed: return close()
                }
            }
            output.removeAll(keepingCapacity: true)
            written = 0
            watch(write: false)
            if closeAfter && !busy { close() }
        }

        func close() {
            guard !closedFlag else { return }
            closedFlag = true
            if let timer { loop.cancel(timer) }
            loop.unregister(fd)
            Glibc.close(fd)
            server.closed(fd)
        }
    }
}

/// A server that could not start, naming the address and the reason.
public struct HTTPServerError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

