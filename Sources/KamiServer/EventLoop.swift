import CKamiLinux

import Glibc
import KamiCore
import KamiEngine
import KamiProtocol
import KamiStore
import Synchronization

/// One epoll loop on its own thread: its TCP listeners (SO_REUSEPORT: one socket per loop),
/// optionally the Unix listener, and the connections it accepted.
///
/// Completions come back from other threads (the commit writer) through `post`: they queue
/// in an inbox and one eventfd write wakes the loop for the whole batch, which it then
/// encodes and writes. Everything else of a loop is touched only by its thread.
final class EventLoop: @unchecked Sendable {
    // @unchecked: `connections`, `listeners`, buffers are confined to the loop thread; the
    // inbox is behind `inbox` (a lock) and the wake flag is atomic.

    /// A reply finished off the loop thread.
    struct Completion: Sendable {
        var connection: UInt64
        var slot: UInt64
        var op: Operation
        var reply: Reply
        /// monotonicNs when the request was dispatched (for the latency histogram).
        var startedNs: UInt64
        /// For `hello`: the client name that authenticated the connection.
        var authenticatedClient: String?
    }

    struct Listener {
        let fd: Int32
        let kind: Connection.Kind
    }

    let index: Int
    private let epfd: Int32
    private let wakeFD: Int32
    private unowned let server: Server
    private var listeners: [UInt64: Listener] = [:]
    /// Listeners taken out of epoll after accept ran out of descriptors or memory, with when
    /// to listen again (nginx's answer to EMFILE: a level-triggered listener left in epoll
    /// would wake the loop in a busy circle until a descriptor is freed).
    private var pausedListeners: [UInt64: Int64] = [:]
    /// When an accept pause was last logged (monotonic ms): at most one warning a second
    /// while descriptors stay short.
    private var lastPauseLogMs: Int64 = -1_000_000
    private var connections: [UInt64: Connection] = [:]
    private let inbox = Locked<[Completion]>([])
    private let wakePending = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private var thread: pthread_t?
    private var lastIdleCheckMs: Int64 = 0
    private let heartbeat = Atomic<Int64>(0)
    private let stallMs = Atomic<Int64>(0)
    /// Tokens in epoll's user data: 0 is the eventfd, listeners count down from UInt64.max,
    /// connections use their id.
    private static let wakeToken: UInt64 = 0

    init(index: Int, server: Server) throws(SystemError) {
        self.index = index
        self.server = server
        epfd = try Syscall.must("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        wakeFD = try Syscall.must("eventfd") { eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC)) }
        try add(fd: wakeFD, token: EventLoop.wakeToken, events: EPOLLIN.rawValue)
    }

    deinit {
        close(wakeFD)
        close(epfd)
    }

    private func pause(_ listener: Listener, token: UInt64, errno code: Int32) {
        var event = epoll_event()
        event.events = 0
        event.data.u64 = token
        epoll_ctl(epfd, EPOLL_CTL_MOD, listener.fd, &event)
        // Monotonic: a wall clock stepped back must not keep the listener out for the step.
        let now = EventLoop.monotonicMs()
        pausedListeners[token] = now + ServerLimits.acceptPauseMs
        server.metrics.recordAcceptPaused()
        if now - lastPauseLogMs >= ServerLimits.acceptPauseLogIntervalMs {
            lastPauseLogMs = now
            server.logger.log(.warning, "accept-paused", [
                "reason": String(cString: strerror(code)), "retry_ms": String(ServerLimits.acceptPauseMs),
            ])
        }
    }

    private static func monotonicMs() -> Int64 { Int64(monotonicNs() / 1_000_000) }

    /// How long epoll may sleep before a paused listener is due back, ms (nil: none paused).
    private func msUntilResume() -> Int32? {
        guard let due = pausedListeners.values.min() else { return nil }
        return Int32(clamping: max(0, due - EventLoop.monotonicMs()))
    }

    private func resumeListeners() {
        let now = EventLoop.monotonicMs()
        for (token, until) in pausedListeners where now >= until {
            guard let listener = listeners[token] else {
                pausedListeners[token] = nil
                continue
            }
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.u64 = token
            epoll_ctl(epfd, EPOLL_CTL_MOD, listener.fd, &event)
            pausedListeners[token] = nil
        }
    }

    private func add(fd: Int32, token: UInt64, events: UInt32) throws(SystemError) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = token
        _ = try Syscall.must("epoll_ctl", "add") { epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) }
    }

    /// Registers a listening socket (before `start`).
    func addListener(fd: Int32, kind: Connection.Kind) throws(SystemError) {
        let token = UInt64.max - UInt64(listeners.count)
        listeners[token] = Listener(fd: fd, kind: kind)
        try add(fd: fd, token: token, events: EPOLLIN.rawValue)
    }

    func start() {
        let box = Unmanaged.passRetained(self)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        var handle = pthread_t()
        let rc = pthread_create(&handle, &attributes, { raw in
            let loop = Unmanaged<EventLoop>.fromOpaque(raw!).takeRetainedValue()
            loop.run()
            return nil
        }, box.toOpaque())
        precondition(rc == 0, "pthread_create failed: \(rc)")
        thread = handle
    }

    /// Asks the loop to stop accepting and finish; `join` waits for it.
    func stop() {
        stopping.store(true, ordering: .releasing)
        wake()
    }

    func join() {
        if let thread { pthread_join(thread, nil) }
    }

    /// Hands a finished reply to the loop (any thread). One eventfd write per batch; none
    /// when the loop itself posts (a reply known at once), since it drains the inbox before
    /// it sleeps again.
    func post(_ completion: Completion) {
        inbox.withLock { $0.append(completion) }
        if loopThreadID.load(ordering: .relaxed) == UInt(pthread_self()) { return }
        if !wakePending.exchange(true, ordering: .acquiringAndReleasing) { wake() }
    }

    private let loopThreadID = Atomic<UInt>(0)

    /// Monotonic ms of this loop's last pass (for the watchdog).
    var heartbeatMs: Int64 { heartbeat.load(ordering: .relaxed) }

    /// For tests: the loop's thread sleeps `ms` at its next pass.
    func stall(forMs ms: Int64) {
        stallMs.store(ms, ordering: .relaxed)
        wake()
    }

    /// How long epoll may sleep when nothing is pending: often enough for idle checks, and
    /// for the watchdog's heartbeat at twice its interval's rate.
    private var passIntervalMs: Int32 {
        let watchdog = server.watchdogIntervalMs.map { max(1, $0 / 2) } ?? ServerLimits.idleCheckIntervalMs
        return Int32(min(ServerLimits.idleCheckIntervalMs, watchdog))
    }

    private func wake() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(wakeFD, $0.baseAddress, 8) }
    }

    // MARK: The loop

    private func run() {
        loopThreadID.store(UInt(pthread_self()), ordering: .relaxed)
        var events = [epoll_event](repeating: epoll_event(), count: ServerLimits.epollEventsMax)
        let passInterval = passIntervalMs
        while true {
            let beat = EventLoop.monotonicMs()
            heartbeat.store(beat, ordering: .relaxed)
            if index == 0 { server.feedWatchdog(nowMs: beat) }
            let stall = stallMs.exchange(0, ordering: .relaxed)
            if stall > 0 { usleep(UInt32(stall * 1_000)) }
            let stoppingNow = stopping.load(ordering: .acquiring)
            if stoppingNow {
                closeListeners()
                if connections.values.allSatisfy({ $0.inFlight == 0 && $0.unsentBytes == 0 }) || server.drainExpired {
                    break
                }
            }
            // Replies posted by this loop itself while it handled the last events (queries
            // answered at once) are in the inbox without a wake-up: do not sleep on them.
            let pendingOwn = inbox.withLock { !$0.isEmpty }
            var timeoutMs: Int32 = pendingOwn ? 0 : (stoppingNow ? min(20, passInterval) : passInterval)
            if let resume = msUntilResume() { timeoutMs = min(timeoutMs, resume) }
            let count = epoll_wait(epfd, &events, Int32(events.count), timeoutMs)
            if count < 0 {
                if errno == EINTR { continue }
                server.logger.log(.error, "epoll_wait-failed", ["errno": String(errno)])
                break
            }
            // The code reads of this pass's requests share one read snapshot (see
            // `Store.beginReadScope`); it ends before completions run and before epoll sleeps.
            let engine = server.dispatcher.engine
            engine.beginReadScope()
            for i in 0..<Int(count) {
                let token = events[i].data.u64
                let flags = events[i].events
                if token == EventLoop.wakeToken {
                    var value: UInt64 = 0
                    _ = withUnsafeMutableBytes(of: &value) { read(wakeFD, $0.baseAddress, 8) }
                } else if let listener = listeners[token] {
                    acceptAll(listener, token: token)
                } else if let connection = connections[token] {
                    handle(connection, flags: flags)
                }
            }
            engine.endReadScope()
            drainInbox()
            let now = server.clock.nowMs()
            if now - lastIdleCheckMs >= ServerLimits.idleCheckIntervalMs {
                lastIdleCheckMs = now
                closeIdle(now: now)
            }
            if !pausedListeners.isEmpty && !stoppingNow { resumeListeners() }
        }
        for connection in Array(connections.values) { closeConnection(connection) }
    }

    private func closeListeners() {
        for listener in listeners.values {
            epoll_ctl(epfd, EPOLL_CTL_DEL, listener.fd, nil)
            close(listener.fd)
        }
        listeners.removeAll()
    }

    private func acceptAll(_ listener: Listener, token: UInt64) {
        while true {
            let accepted: (fd: Int32, peer: String)?
            do { accepted = try Sockets.accept(listener.fd) } catch {
                switch error.errno {
                case ECONNABORTED, EPROTO, EPERM:
                    // That peer gave up (or a filter refused it) before we took it: next.
                    continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: stop listening for a while; the pending
                    // connections wait in the backlog, the open ones go on being served.
                    pause(listener, token: token, errno: error.errno)
                default:
                    server.logger.log(.warning, "accept-failed", ["error": "\(error)"])
                }
                return
            }
            guard let (fd, peer) = accepted else { return }
            let now = server.clock.nowMs()
            guard server.admitConnection() else {
                // Past the limit: say so in the one format any client can read, then close.
                let message = Array("{\"id\":null,\"ok\":false,\"error\":{\"code\":\"BUSY\",\"message\":\"too many connections\"}}\n".utf8)
                _ = message.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(fd)
                server.logger.log(.warning, "connection-refused", ["peer": peer, "reason": "max-connections"])
                continue
            }
            var isOperator = false
            if listener.kind == .unix {
                // The Unix socket is trusted by who is on the other end, not by a token.
                guard let uid = Sockets.peerUID(fd), uid == getuid() || uid == 0 else {
                    let message = Array("{\"id\":null,\"ok\":false,\"error\":{\"code\":\"UNAUTHORIZED\",\"message\":\"peer uid not allowed\"}}\n".utf8)
                    _ = message.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    close(fd)
                    server.releaseConnection()
                    server.logger.log(.warning, "connection-refused", ["peer": "unix", "reason": "peer-uid"])
                    continue
                }
                isOperator = true
            } else {
                Sockets.setNoDelay(fd)
            }
            let connection = Connection(
                id: server.nextConnectionID(), fd: fd, kind: listener.kind, peer: peer, isOperator: isOperator,
                nowMs: now)
            do {
                try add(fd: fd, token: connection.id,
                        events: EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue)
            } catch {
                close(fd)
                server.releaseConnection()
                continue
            }
            connections[connection.id] = connection
            server.metrics.recordAccepted()
            if server.logger.isEnabled(.debug) {
                server.logger.log(.debug, "connection-open", [
                    "id": String(connection.id), "peer": peer, "kind": listener.kind == .unix ? "unix" : "tcp",
                ])
            }
            // Edge-triggered: data may already be waiting.
            readAvailable(connection)
        }
    }

    private func handle(_ connection: Connection, flags: UInt32) {
        if flags & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 && flags & EPOLLIN.rawValue == 0 {
            closeConnection(connection)
            return
        }
        if flags & EPOLLOUT.rawValue != 0 {
            connection.waitingWritable = false
            flush(connection)
        }
        if flags & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue) != 0 && connection.state == .open {
            readAvailable(connection, drain: flags & (EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0)
        }
    }

    // MARK: Reading and decoding

    /// Reads and decodes what the socket holds. `drain` reads until EAGAIN or end of stream
    /// even after a short read: needed when the event said the peer closed its side (the end
    /// of stream then raises no new edge) and when reading resumes after a pause.
    private func readAvailable(_ connection: Connection, drain: Bool = true) {
        while connection.state == .open && !connection.readPaused {
            if connection.inputEnd == connection.input.count { connection.compactInput() }
            let free = connection.input.count - connection.inputEnd
            if free == 0 {
                // A request larger than the buffer so far: make room for it.
                if connection.growInput() { continue }
                // A full buffer that holds no complete request: the decoders already answered
                // TOO_LARGE for it; this is a safety net.
                fail(connection, KamiError(.tooLarge, "request larger than \(ServerLimits.readBufferBytes) bytes"))
                return
            }
            let n = connection.input.withUnsafeMutableBytes { raw in
                recv(connection.fd, raw.baseAddress! + connection.inputEnd, free, 0)
            }
            if n > 0 {
                connection.inputEnd += n
                connection.lastActivityMs = server.clock.nowMs()
                decodeAll(connection)
                // A short read emptied the socket's receive queue: anything arriving later
                // raises a new edge, so the recv that would only say EAGAIN is skipped (one
                // system call less per request at one request in flight). Exceptions, which
                // only stall the client that causes them until its idle timeout: TCP urgent
                // data (recv stops at the mark) and descriptors passed over the Unix socket
                // (recv stops after their message); no client of ours sends either.
                if n < free && !drain { return }
                continue
            }
            if n == 0 {
                // The peer closed its side: answer what it sent, then close.
                connection.state = .draining
                finishIfDone(connection)
                return
            }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return }
            closeConnection(connection)
            return
        }
    }

    private func decodeAll(_ connection: Connection) {
        let requestLimit = server.requestBytesMax
        while connection.state == .open && connection.inputStart < connection.inputEnd {
            if connection.mustPause {
                connection.readPaused = true
                connection.partialSinceMs = nil
                return
            }
            if connection.encoding == nil {
                guard let encoding = WireEncoding.detect(firstByte: connection.input[connection.inputStart]) else {
                    // Garbage: neither protocol. Close without a reply it could not parse anyway.
                    server.logger.log(.info, "connection-garbage", ["peer": connection.peer])
                    closeConnection(connection)
                    return
                }
                connection.encoding = encoding
            }
            let result: DecodeResult<Request> = connection.input.withUnsafeBytes { raw in
                let window = UnsafeRawBufferPointer(rebasing: raw[connection.inputStart..<connection.inputEnd])
                return connection.encoding == .binary
                    ? BinaryCodec.decodeRequest(window, limit: requestLimit) : JSONCodec.decodeRequest(window, limit: requestLimit)
            }
            switch result {
            case .needMore:
                if connection.partialSinceMs == nil { connection.partialSinceMs = server.clock.nowMs() }
                connection.compactInput()
                return
            case .item(let request, let consumed):
                connection.partialSinceMs = nil
                connection.inputStart += consumed
                dispatch(request, on: connection)
            case .failure(let id, let error, let consumed, let fatal):
                connection.partialSinceMs = nil
                connection.inputStart += consumed
                server.metrics.recordReply(op: nil, error: error.code, latencyNs: 0)
                let seq = connection.openSlot()
                _ = connection.fill(seq, bytes: encode(Reply(id: id, result: .failure(error)), op: .ping, for: connection),
                                    closeAfter: fatal)
                if fatal {
                    connection.state = .draining
                    flush(connection)
                    return
                }
                flush(connection)
            }
        }
        if connection.inputStart == connection.inputEnd { connection.compactInput() }
    }

    private func dispatch(_ request: Request, on connection: Connection) {
        let seq = connection.openSlot()
        let started = monotonicNs()
        func answer(_ connection: Connection, seq: UInt64, op: Operation, _ reply: Reply) {
            self.answer(connection, seq: seq, op: op, reply, startedNs: started)
        }
        if !connection.authenticated && request.op != .hello {
            answer(connection, seq: seq, op: request.op, Reply(id: request.id, result: .failure(
                KamiError(.unauthorized, "send hello with your client name and token first"))))
            return
        }
        if request.op.isOperator && !connection.isOperator {
            answer(connection, seq: seq, op: request.op, Reply(id: request.id, result: .failure(
                KamiError(.unauthorized, "\(request.op.name) is an operator operation, allowed only on the Unix socket"))))
            return
        }
        if request.op == .hello && connection.kind == .tcp {
            guard let client = request.client, let token = request.token else {
                answer(connection, seq: seq, op: .hello, Reply(id: request.id, result: .failure(
                    KamiError(.badRequest, "hello needs client and token"))))
                return
            }
            if let error = server.authenticator.check(client: client, token: token, peer: connection.peer,
                                                      nowMs: server.clock.nowMs()) {
                server.logger.log(.warning, "hello-refused", ["peer": connection.peer, "client": Logger.untrusted(client)])
                answer(connection, seq: seq, op: .hello, Reply(id: request.id, result: .failure(error)))
                return
            }
            connection.authenticated = true
            connection.client = client
            answer(connection, seq: seq, op: .hello, Reply(id: request.id, result: .success(.hello(WireHello.current))))
            return
        }
        if (request.op == .order || request.op == .entitlements || request.op == .stock)
            && connection.hasUnfilledSlot(before: seq)
        {
            // Read your own writes: a query pipelined behind a write of the same connection is
            // answered after that write is durable, not before.
            connection.deferred.append((seq, request, started))
            return
        }
        run(request, seq: seq, on: connection, startedNs: started)
    }

    private func run(_ request: Request, seq: UInt64, on connection: Connection, startedNs: UInt64) {
        let connectionID = connection.id
        let op = request.op
        let client = connection.client ?? (connection.isOperator ? "operator" : nil)
        server.dispatcher.handle(request, client: client, trusted: connection.isOperator) { [self] reply in
            post(Completion(connection: connectionID, slot: seq, op: op, reply: reply, startedNs: startedNs))
        }
    }

    private func answer(_ connection: Connection, seq: UInt64, op: Operation, _ reply: Reply, startedNs: UInt64) {
        record(op: op, reply, startedNs: startedNs)
        _ = connection.fill(seq, bytes: encode(reply, op: op, for: connection))
        flush(connection)
    }

    @inline(__always)
    private func record(op: Operation, _ reply: Reply, startedNs: UInt64) {
        let error: ErrorCode?
        if case .failure(let failure) = reply.result { error = failure.code } else { error = nil }
        server.metrics.recordReply(op: op, error: error, latencyNs: monotonicNs() &- startedNs)
    }

    private func encode(_ reply: Reply, op: Operation, for connection: Connection) -> [UInt8] {
        var bytes: [UInt8] = []
        if connection.encoding == .binary {
            BinaryCodec.encode(reply, op: op, into: &bytes)
        } else {
            JSONCodec.encode(reply, into: &bytes)
        }
        return bytes
    }

    private func fail(_ connection: Connection, _ error: KamiError) {
        server.metrics.recordReply(op: nil, error: error.code, latencyNs: 0)
        let seq = connection.openSlot()
        _ = connection.fill(seq, bytes: encode(Reply(id: .none, result: .failure(error)), op: .ping, for: connection),
                            closeAfter: true)
        connection.state = .draining
        flush(connection)
    }

    // MARK: Completions and writing

    private func drainInbox() {
        wakePending.store(false, ordering: .releasing)
        let items = inbox.withLock { items -> [Completion] in
            let taken = items
            items.removeAll(keepingCapacity: true)
            return taken
        }
        var touched: [UInt64: Connection] = [:]
        for item in items {
            record(op: item.op, item.reply, startedNs: item.startedNs)
            guard let connection = connections[item.connection] else { continue }
            _ = connection.fill(item.slot, bytes: encode(item.reply, op: item.op, for: connection))
            touched[connection.id] = connection
        }
        for connection in touched.values {
            while let (seq, request, started) = connection.deferred.first, !connection.hasUnfilledSlot(before: seq) {
                connection.deferred.removeFirst()
                run(request, seq: seq, on: connection, startedNs: started)
            }
        }
        for connection in touched.values { flush(connection) }
    }

    /// Writes what is ready; resumes reading when backpressure eases; closes when done.
    private func flush(_ connection: Connection) {
        guard connection.state != .closed else { return }
        let closeAfter = connection.collectReady()
        while connection.unsentBytes > 0 && !connection.waitingWritable {
            let n = connection.output.withUnsafeBytes { raw in
                send(connection.fd, raw.baseAddress! + connection.outputSent, connection.unsentBytes, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                connection.outputSent += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                connection.waitingWritable = true
                break
            }
            closeConnection(connection)
            return
        }
        if connection.unsentBytes == 0 {
            connection.output.removeAll(keepingCapacity: connection.output.capacity <= ServerLimits.outputCapacityKeptBytes)
            connection.outputSent = 0
        }
        if closeAfter {
            connection.state = .draining
        }
        if connection.readPaused && connection.mayResume && connection.state == .open {
            connection.readPaused = false
            decodeAll(connection)
            readAvailable(connection)
        }
        finishIfDone(connection)
    }

    private func finishIfDone(_ connection: Connection) {
        if connection.state == .draining && connection.inFlight == 0 && connection.unsentBytes == 0 {
            closeConnection(connection)
        }
    }

    private func closeConnection(_ connection: Connection) {
        guard connection.state != .closed else { return }
        connection.state = .closed
        epoll_ctl(epfd, EPOLL_CTL_DEL, connection.fd, nil)
        close(connection.fd)
        connections[connection.id] = nil
        server.releaseConnection()
        if server.logger.isEnabled(.debug) {
            server.logger.log(.debug, "connection-closed", ["id": String(connection.id), "peer": connection.peer])
        }
    }

    private func closeIdle(now: Int64) {
        let limit = server.idleTimeoutMs
        let requestLimit = server.requestTimeoutMs
        for connection in Array(connections.values) {
            if connection.inFlight == 0 && now - connection.lastActivityMs > limit {
                server.logger.log(.debug, "connection-idle-closed", ["peer": connection.peer])
                closeConnection(connection)
            } else if let since = connection.partialSinceMs, now - since > requestLimit {
                // Bytes keep coming but never a whole request: a slow or hostile client.
                server.logger.log(.info, "connection-request-timeout", ["peer": connection.peer])
                closeConnection(connection)
            }
        }
    }

    var connectionCount: Int { connections.count }
}
