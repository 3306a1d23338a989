public import KamiProtocol

/// Where a kamid listens: a TCP address for storefronts, or its Unix socket for the
/// operator and for storefronts on the same machine.
public enum KamiEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// A host name or IP address and a port. Host names are resolved with `getaddrinfo`
    /// on every connect, outside the connect timeout (resolution is the system's job and
    /// has its own timeouts in `resolv.conf`); IP addresses never touch the resolver.
    case tcp(host: String, port: UInt16)
    /// A Unix stream socket path, at most `ClientLimits.unixPathBytesMax` bytes.
    case unix(path: String)

    /// kamid's default TCP listener.
    public static let defaultTCP = KamiEndpoint.tcp(host: "127.0.0.1", port: 7420)

    /// kamid's default Unix socket, relative to the directory kamid was started in.
    public static let defaultUnixPath = "./kami-data/kamid.sock"

    /// Parses `host:port`, `[ipv6]:port`, or a Unix socket path (anything containing a
    /// `/`, optionally prefixed `unix:`). Nil for anything else.
    public init?(parsing text: String) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { return nil }
            self = .unix(path: path)
            return
        }
        if text.contains("/") {
            self = .unix(path: text)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            return nil
        }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty else { return nil }
        self = .tcp(host: String(host), port: port)
    }

    /// The encoding a connection to this endpoint uses unless told otherwise: binary over
    /// TCP (storefront throughput), JSON over the Unix socket (operator operations are
    /// JSON only, and that is where the operator connects).
    public var defaultEncoding: WireEncoding {
        switch self {
        case .tcp: .binary
        case .unix: .json
        }
    }

    /// `host:port` (IPv6 hosts in brackets) or `unix:path`, for messages.
    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}
