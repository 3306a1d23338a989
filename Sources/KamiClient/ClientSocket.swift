import Glibc
import KamiCore

/// One connected, non-blocking stream socket: the only code of the client that talks to the
/// kernel about sockets. Every wait is a `poll(2)` bounded by a deadline, so no call can
/// block longer than its caller's timeout (blocking sockets with SO_RCVTIMEO would restart
/// the timeout on every partial read, and could not watch for "writable" and "readable" at
/// once, which pipelining needs to never deadlock on full socket buffers).
///
/// Owned by exactly one `ConnectionCore`; it is a plain descriptor, closed by `close()`.
struct ClientSocket {
    let fd: Int32

    /// What one `poll` reported.
    struct Readiness {
        /// Bytes (or end of file, or an error) are waiting: `read` will not block.
        var readable: Bool
        /// `write` will accept bytes.
        var writable: Bool
    }

    // MARK: Connecting

    /// Connects to `endpoint` within `deadline`. Throws UNAVAILABLE naming the endpoint
    /// and the cause (refused, no such socket, timed out, cannot resolve).
    static func connect(to endpoint: KamiEndpoint, deadline: Deadline) throws(KamiError) -> ClientSocket {
        switch endpoint {
        case .tcp(let host, let port): try connectTCP(host: host, port: port, endpoint: endpoint, deadline: deadline)
        case .unix(let path): try connectUnix(path: path, endpoint: endpoint, deadline: deadline)
        }
    }

    private static func connectTCP(host: String, port: UInt16, endpoint: KamiEndpoint, deadline: Deadline)
        throws(KamiError) -> ClientSocket
    {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw KamiError(.unavailable, "cannot resolve kamid host \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(first) }
        // Try every address the resolver gave (localhost is ::1 and 127.0.0.1), keeping the
        // last refusal for the message; a timeout ends the search, the deadline is spent.
        var lastError: SystemCallError?
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let entry = next {
            next = entry.pointee.ai_next
            let socket: ClientSocket
            let connected: Bool
            do throws(SystemCallError) {
                socket = try open(family: entry.pointee.ai_family)
            } catch {
                lastError = error
                continue
            }
            do throws(SystemCallError) {
                connected = try socket.connect(entry.pointee.ai_addr, entry.pointee.ai_addrlen, deadline: deadline)
            } catch {
                socket.close()
                lastError = error
                continue
            }
            guard connected else {
                socket.close()
                throw timedOut(endpoint, deadline)
            }
            var one: Int32 = 1
            // Requests are small and latency-bound: Nagle would hold a pipelined request
            // back until the previous reply's ACK.
            _ = setsockopt(socket.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return socket
        }
        let cause = lastError.map { "\($0)" } ?? "no address"
        throw KamiError(.unavailable, "cannot connect to kamid at \(endpoint): \(cause)")
    }

    private static func connectUnix(path: String, endpoint: KamiEndpoint, deadline: Deadline)
        throws(KamiError) -> ClientSocket
    {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= ClientLimits.unixPathBytesMax else {
            throw KamiError(.badRequest, "Unix socket path is \(bytes.count) bytes; it must be 1 to "
                + "\(ClientLimits.unixPathBytesMax)")
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let socket: ClientSocket
        let connected: Bool
        do throws(SystemCallError) {
            socket = try open(family: AF_UNIX)
        } catch {
            throw KamiError(.unavailable, "cannot connect to kamid at \(endpoint): \(error)")
        }
        do throws(SystemCallError) {
            connected = try withUnsafePointer(to: &address) { pointer throws(SystemCallError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw throws(SystemCallError) in
                    try socket.connect(raw, socklen_t(MemoryLayout<sockaddr_un>.size), deadline: deadline)
                }
            }
        } catch {
            socket.close()
            throw KamiError(.unavailable, "cannot connect to kamid at \(endpoint): \(error)")
        }
        guard connected else {
            socket.close()
            throw timedOut(endpoint, deadline)
        }
        return socket
    }

    private static func timedOut(_ endpoint: KamiEndpoint, _ deadline: Deadline) -> KamiError {
        KamiError(.unavailable, "cannot connect to kamid at \(endpoint): no answer within \(deadline.timeoutMs) ms")
    }

    private static func open(family: Int32) throws(SystemCallError) -> ClientSocket {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        return ClientSocket(fd: try Syscall.call("socket") { socket(family, type, 0) })
    }

    /// Starts a non-blocking connect and waits for it; false when the deadline passed.
    private func connect(_ address: UnsafePointer<sockaddr>, _ length: socklen_t, deadline: Deadline)
        throws(SystemCallError) -> Bool
    {
        while true {
            do throws(SystemCallError) {
                _ = try Syscall.call("connect") { Glibc.connect(fd, address, length) }
                return true
            } catch where error.errno == EINPROGRESS {
                // TCP: the handshake is under way; writable means done, SO_ERROR says how.
                guard try poll(readable: false, writable: true, deadline: deadline) != nil else { return false }
                var code: Int32 = 0
                var size = socklen_t(MemoryLayout<Int32>.size)
                _ = try Syscall.call("getsockopt") { getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &size) }
                guard code == 0 else { throw SystemCallError(call: "connect", errno: code) }
                return true
            } catch where error.errno == EAGAIN {
                // Unix: kamid's accept backlog is full. A Unix connect cannot be polled for
                // completion, so try again shortly, until the deadline.
                guard deadline.remainingMs() > 0 else { return false }
                Syscall.sleep(ms: min(ClientSocket.unixBacklogRetryMs, deadline.remainingMs()))
            }
        }
    }

    /// Pause between Unix connect attempts while kamid's backlog is full: short against a
    /// connect timeout of seconds, long enough not to spin.
    static let unixBacklogRetryMs = 5

    // MARK: I/O

    /// Writes what the kernel takes of `bytes` without blocking: the count written, 0 when
    /// the socket buffer is full.
    func write(_ bytes: UnsafeRawBufferPointer) throws(SystemCallError) -> Int {
        do throws(SystemCallError) {
            // MSG_NOSIGNAL: a peer that closed must fail this call, not kill the host process
            // with SIGPIPE.
            return try Syscall.call("send") { send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
        } catch where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
            return 0
        }
    }

    /// Reads what is there without blocking: the count read, 0 at end of file, nil when
    /// nothing is waiting.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int? {
        do throws(SystemCallError) {
            return try Syscall.call("recv") { recv(fd, buffer.baseAddress, buffer.count, 0) }
        } catch where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
            return nil
        }
    }

    /// Waits until the socket is readable or (when asked) writable; nil when `deadline`
    /// passed first. Errors and hang-ups count as readable: the next `read` reports them.
    func poll(readable: Bool, writable: Bool, deadline: Deadline) throws(SystemCallError) -> Readiness? {
        var events: Int16 = 0
        if readable { events |= Int16(POLLIN) }
        if writable { events |= Int16(POLLOUT) }
        while true {
            let waitMs = deadline.remainingMs()
            guard waitMs > 0 else { return nil }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = try Syscall.call("poll") { Glibc.poll(&entry, 1, Int32(waitMs)) }
            guard ready > 0 else { continue }
            let failed = entry.revents & Int16(POLLERR | POLLHUP) != 0
            return Readiness(
                readable: entry.revents & Int16(POLLIN) != 0 || failed,
                writable: entry.revents & Int16(POLLOUT) != 0 || (failed && writable))
        }
    }

    /// Whether bytes, end of file or an error wait on a connection that has no request in
    /// flight. Such a connection is dead or out of step (kamid restarted, or closed it for
    /// idling): nothing should be sent on it. One `poll` with a zero timeout.
    func hasUnexpectedInput() -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = Glibc.poll(&entry, 1, 0)
            if ready == -1 && Glibc.errno == EINTR { continue }
            return ready != 0
        }
    }

    /// Closes the descriptor. Errors are ignored: after close(2) fails on Linux the
    /// descriptor is gone anyway, and retrying could close someone else's.
    func close() {
        _ = Glibc.close(fd)
    }
}
