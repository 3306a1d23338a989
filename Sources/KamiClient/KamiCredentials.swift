import Glibc
public import KamiCore

/// The client name and token a TCP connection presents in its `hello`.
///
/// The token is a password: it never appears in `description` or in an error message.
public struct KamiCredentials: Sendable, Hashable, CustomStringConvertible {
    /// The client's name in kamid's config (`default` out of the box).
    public var client: String
    /// The client's token.
    public var token: String

    /// Credentials from a name and a token.
    public init(client: String, token: String) {
        self.client = client
        self.token = token
    }

    /// Largest token file read: a token is a few dozen bytes, and a file much larger than
    /// that is not a token file.
    public static let tokenFileBytesMax = 4_096

    /// Reads the token kamid wrote for `client` (`<dataDirectory>/<client>.token`, mode
    /// 0600, written on first start), trimming surrounding whitespace.
    ///
    /// Throws NOT_FOUND when the file cannot be read, BAD_REQUEST when it is empty or over
    /// `tokenFileBytesMax` bytes.
    public static func load(dataDirectory: String, client: String = "default") throws(KamiError) -> KamiCredentials {
        let path = dataDirectory + "/" + client + ".token"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw KamiError(.notFound, "cannot read token file \(path): \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(fd) }
        var bytes = [UInt8](repeating: 0, count: tokenFileBytesMax + 1)
        var count = 0
        while count < bytes.count {
            let result = bytes.withUnsafeMutableBytes { buffer in
                Result { () throws(SystemCallError) in
                    try Syscall.call("read") { read(fd, buffer.baseAddress! + count, buffer.count - count) }
                }
            }
            let n: Int
            do throws(SystemCallError) {
                n = try result.get()
            } catch {
                throw KamiError(.notFound, "cannot read token file \(path): \(error)")
            }
            guard n > 0 else { break }
            count += n
        }
        guard count <= tokenFileBytesMax else {
            throw KamiError(.badRequest, "token file \(path) is over \(tokenFileBytesMax) bytes; is it a token file?")
        }
        let token = String(decoding: bytes[..<count], as: UTF8.self).trimmingWhitespace()
        guard !token.isEmpty else { throw KamiError(.badRequest, "token file \(path) is empty") }
        return KamiCredentials(client: client, token: token)
    }

    /// The client name only: the token stays out of logs.
    public var description: String { "KamiCredentials(client: \(client), token: <redacted>)" }
}

extension String {
    /// Without leading and trailing whitespace (Foundation stays out of the library).
    func trimmingWhitespace() -> String {
        guard let first = firstIndex(where: { !$0.isWhitespace }),
            let last = lastIndex(where: { !$0.isWhitespace })
        else { return "" }
        return String(self[first...last])
    }
}
