/// An `http://` or `https://` URL split into what a client needs: where to connect, and
/// the path to ask for. No user info, no fragments.
public struct HTTPURL: Sendable, Hashable, CustomStringConvertible {
    public var secure: Bool
    public var host: String
    public var port: UInt16
    /// Path and query, starting with `/`.
    public var target: String

    /// Parses `text`; nil when it is not an absolute http(s) URL with a host.
    public init?(_ text: String) {
        let rest: Substring
        if text.hasPrefix("https://") {
            secure = true
            rest = text.dropFirst(8)
        } else if text.hasPrefix("http://") {
            secure = false
            rest = text.dropFirst(7)
        } else {
            return nil
        }
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<slash]
        var path = String(rest[slash...])
        if path.isEmpty { path = "/" } else if path.hasPrefix("?") { path = "/" + path }
        if path.contains("#") || authority.contains("@") || authority.isEmpty { return nil }
        var hostPart = Substring(authority)
        var portValue: UInt16 = secure ? 443 : 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let value = UInt16(after.dropFirst()) else { return nil }
                portValue = value
            }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            guard let value = UInt16(authority[authority.index(after: colon)...]) else { return nil }
            portValue = value
        }
        guard !hostPart.isEmpty, portValue > 0 else { return nil }
        host = String(hostPart)
        port = portValue
        target = path
    }

    /// The URL with `path` (and query) in place of this one's.
    public func with(target: String) -> HTTPURL {
        var copy = self
        copy.target = target.hasPrefix("/") ? target : "/" + target
        return copy
    }

    /// The `Host` header's value.
    public var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == (secure ? 443 : 80) ? name : "\(name):\(port)"
    }

    public var description: String { "\(secure ? "https" : "http")://\(hostHeader)\(target)" }
}
