import CKamiLinux
import Glibc

/// Where a listener listens.
public enum ListenAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }

    /// Parses `IPV4:PORT` or `[IPV6]:PORT`; nil when malformed (see `parse` for why).
    public init?(hostPort: String) {
        guard case .success(let address) = ListenAddress.parse(hostPort: hostPort) else { return nil }
        self = address
    }

    /// Parses `IPV4:PORT` or `[IPV6]:PORT`, checking the address with `inet_pton` as bind
    /// will: host names are not resolved (so `localhost` is refused, with a hint), and a
    /// malformed address fails here, at `--check-config`, rather than at start-up.
    /// The failure says why, without the `file:line: key:` prefix.
    public static func parse(hostPort: String) -> Result<ListenAddress, ListenAddressProblem> {
        func bad(_ why: String) -> Result<ListenAddress, ListenAddressProblem> { .failure(ListenAddressProblem(why: why)) }
        let host: Substring
        let portText: Substring
        let bracketed = hostPort.hasPrefix("[")
        if bracketed {
            guard let close = hostPort.firstIndex(of: "]") else { return bad("missing ] in \(shown(hostPort))") }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let rest = hostPort[hostPort.index(after: close)...]
            guard rest.hasPrefix(":") else { return bad("expected [IPV6]:PORT, got \(shown(hostPort))") }
            portText = rest.dropFirst()
        } else {
            guard let colon = hostPort.lastIndex(of: ":") else {
                return bad("expected IPV4:PORT or [IPV6]:PORT, got \(shown(hostPort))")
            }
            host = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        }
        guard !host.isEmpty else { return bad("no address before the port in \(shown(hostPort))") }
        guard !portText.isEmpty, portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let port = UInt16(portText) else {
            return bad("the port must be a number from 0 to 65535, got \(shown(String(portText)))")
        }
        let text = String(host)
        if host.lowercased() == "localhost" {
            return bad("localhost is not resolved; write 127.0.0.1:\(port) (or [::1]:\(port) for IPv6)")
        }
        if bracketed {
            var address = in6_addr()
            guard inet_pton(AF_INET6, text, &address) == 1 else {
                return bad("\(shown(text)) is not an IPv6 address")
            }
        } else {
            if host.contains(":") {
                return bad("an IPv6 address needs brackets: [\(text)]:PORT")
            }
            var address = in_addr()
            guard inet_pton(AF_INET, text, &address) == 1 else {
                return bad("\(shown(text)) is not an IPv4 address (host names are not resolved: write the address)")
            }
        }
        return .success(.tcp(host: text, port: port))
    }

    private static func shown(_ text: String) -> String {
        "`" + (text.count > 80 ? String(text.prefix(80)) + "…" : text) + "`"
    }
}

/// Why a listen address was refused (`ListenAddress.parse`).
public struct ListenAddressProblem: Error, Sendable, Equatable {
    public let why: String
}

/// Socket setup and the small calls around it, all through `Syscall`.
enum Sockets {
    /// Opens a non-blocking listening socket. TCP listeners use SO_REUSEPORT so that every
    /// loop thread has its own socket on the same port and the kernel spreads connections.
    static func listen(_ address: ListenAddress, backlog: Int32, unixMode: mode_t = 0o660) throws(SystemError) -> Int32 {
        switch address {
        case .tcp(let host, let port):
            let v6 = host.contains(":")
            let fd = try Syscall.must("socket", "\(address)") {
                socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
                    | Int32(SOCK_CLOEXEC.rawValue), 0)
            }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
            do throws(SystemError) {
                if v6 {
                    setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
                    var addr = sockaddr_in6()
                    addr.sin6_family = sa_family_t(AF_INET6)
                    addr.sin6_port = port.bigEndian
                    guard inet_pton(AF_INET6, host, &addr.sin6_addr) == 1 else {
                        throw SystemError(call: "inet_pton", errno: EINVAL, detail: host)
                    }
                    _ = try Syscall.must("bind", "\(address)") {
                        withUnsafePointer(to: &addr) {
                            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                            }
                        }
                    }
                } else {
                    var addr = sockaddr_in()
                    addr.sin_family = sa_family_t(AF_INET)
                    addr.sin_port = port.bigEndian
                    guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
                        throw SystemError(call: "inet_pton", errno: EINVAL, detail: host)
                    }
                    _ = try Syscall.must("bind", "\(address)") {
                        withUnsafePointer(to: &addr) {
                            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                            }
                        }
                    }
                }
                _ = try Syscall.must("listen", "\(address)") { Glibc.listen(fd, backlog) }
            } catch {
                close(fd)
                throw error
            }
            return fd
        case .unix(let path):
            let fd = try Syscall.must("socket", "\(address)") {
                socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            }
            do throws(SystemError) {
                var addr = sockaddr_un()
                addr.sun_family = sa_family_t(AF_UNIX)
                let bytes = Array(path.utf8)
                let capacity = MemoryLayout.size(ofValue: addr.sun_path)
                guard bytes.count < capacity else {
                    throw SystemError(call: "bind", errno: ENAMETOOLONG, detail: "unix socket path longer than \(capacity - 1) bytes")
                }
                withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                    raw.copyBytes(from: bytes)
                    raw[bytes.count] = 0
                }
                // A stale socket file from an earlier run that did not clean up.
                unlink(path)
                _ = try Syscall.must("bind", "\(address)") {
                    withUnsafePointer(to: &addr) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                        }
                    }
                }
                _ = try Syscall.must("chmod", path) { chmod(path, unixMode) }
                _ = try Syscall.must("listen", "\(address)") { Glibc.listen(fd, backlog) }
            } catch {
                close(fd)
                throw error
            }
            return fd
        }
    }

    /// Accepts one connection, non-blocking; nil when none is waiting.
    static func accept(_ listener: Int32) throws(SystemError) -> (fd: Int32, peer: String)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd: Int32? = try withUnsafeMutablePointer(to: &storage) { pointer throws(SystemError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(SystemError) in
                try Syscall.call("accept4") {
                    kami_accept4(listener, address, &length, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
            }
        }
        guard let fd else { return nil }
        return (fd, peerName(&storage))
    }

    static func peerName(_ storage: inout sockaddr_storage) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { addr in
                    var sin = addr.pointee.sin_addr
                    inet_ntop(AF_INET, &sin, &buffer, socklen_t(buffer.count))
                    return String(cString: buffer)
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { addr in
                    var sin = addr.pointee.sin6_addr
                    inet_ntop(AF_INET6, &sin, &buffer, socklen_t(buffer.count))
                    return String(cString: buffer)
                }
            }
        default:
            return "unix"
        }
    }

    /// The uid of the process at the other end of a Unix socket (SO_PEERCRED).
    static func peerUID(_ fd: Int32) -> uid_t? {
        let uid = kami_peer_uid(fd)
        return uid < 0 ? nil : uid_t(uid)
    }

    /// Disables Nagle: replies are small and latency matters more than packet count.
    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// The port a TCP listener is bound to (for `--listen 127.0.0.1:0`).
    static func boundPort(_ fd: Int32) -> UInt16? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { return nil }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
        default:
            return nil
        }
    }
}
