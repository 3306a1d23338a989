import CKamiLinux
import Glibc

/// Socket calls shared by the HTTP client and server.
enum SocketCalls {
    /// Resolves `host` (a name or a literal) to socket addresses, IPv4 and IPv6.
    static func resolve(host: String, port: UInt16) -> Result<[[UInt8]], SocketProblem> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let result = getaddrinfo(host, String(port), &hints, &list)
        guard result == 0, let first = list else {
            return .failure(SocketProblem("cannot resolve \(host): \(String(cString: gai_strerror(result)))"))
        }
        defer { freeaddrinfo(first) }
        var addresses: [[UInt8]] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let entry = node {
            if let address = entry.pointee.ai_addr {
                addresses.append(Array(UnsafeRawBufferPointer(start: address, count: Int(entry.pointee.ai_addrlen))))
            }
            node = entry.pointee.ai_next
        }
        return addresses.isEmpty ? .failure(SocketProblem("\(host) has no address")) : .success(addresses)
    }

    /// A non-blocking TCP socket connecting to `address`: the fd, and whether the connect
    /// is still in progress (wait for writable, then `connectError`).
    static func startConnect(_ address: [UInt8]) -> Result<(fd: Int32, inProgress: Bool), SocketProblem> {
        let family = address.withUnsafeBytes { $0.load(as: sockaddr.self).sa_family }
        let fd = socket(Int32(family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(SocketProblem("socket: \(String(cString: strerror(errno)))")) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = address.withUnsafeBytes { raw in
            connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        if result == 0 { return .success((fd, false)) }
        if errno == EINPROGRESS { return .success((fd, true)) }
        let message = String(cString: strerror(errno))
        close(fd)
        return .failure(SocketProblem("connect: \(message)"))
    }

    /// The outcome of a connect that was in progress: nil when connected.
    static func connectError(_ fd: Int32) -> String? {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error == 0 ? nil : "connect: \(String(cString: strerror(error)))"
    }

    /// A listening non-blocking TCP socket on `host:port` (port 0 picks one); the fd and port.
    static func listen(host: String, port: UInt16, backlog: Int32 = 512) -> Result<(fd: Int32, port: UInt16), SocketProblem> {
        let addresses: [[UInt8]]
        switch resolve(host: host, port: port) {
        case .success(let found): addresses = found
        case .failure(let problem): return .failure(problem)
        }
        let address = addresses[0]
        let family = address.withUnsafeBytes { $0.load(as: sockaddr.self).sa_family }
        let fd = socket(Int32(family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(SocketProblem("socket: \(String(cString: strerror(errno)))")) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = address.withUnsafeBytes { raw in
            bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let message = "bind \(host):\(port): \(String(cString: strerror(errno)))"
            close(fd)
            return .failure(SocketProblem(message))
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let actual: UInt16 = withUnsafeBytes(of: storage) { raw in
            let family = raw.load(as: sockaddr.self).sa_family
            if Int32(family) == AF_INET6 { return UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port) }
            return UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
        }
        return .success((fd, actual))
    }
}

/// A socket call that failed, named with the reason.
struct SocketProblem: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
