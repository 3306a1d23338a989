import Glibc

/// A failed system call: which call, on what, and errno. Never holds payload bytes.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    public let call: String
    public let errno: Int32
    public let detail: String

    public var description: String {
        "\(call)\(detail.isEmpty ? "" : " \(detail)"): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// The one funnel every system call of the server goes through (after swift-nio's
/// `SystemCallHelpers`): EINTR is retried, EAGAIN/EWOULDBLOCK becomes `nil` ("would block"),
/// anything else a `SystemError` naming the call.
enum Syscall {
    /// Runs `body` until it does not fail with EINTR. Returns nil for EAGAIN.
    @inline(__always)
    static func call<T: BinaryInteger>(_ name: StaticString, _ detail: @autoclosure () -> String = "", _ body: () -> T)
        throws(SystemError) -> T?
    {
        while true {
            let result = body()
            if result >= 0 { return result }
            let error = Glibc.errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK { return nil }
            throw SystemError(call: "\(name)", errno: error, detail: detail())
        }
    }

    /// As `call`, for calls where EAGAIN is an error too.
    @inline(__always)
    static func must<T: BinaryInteger>(_ name: StaticString, _ detail: @autoclosure () -> String = "", _ body: () -> T)
        throws(SystemError) -> T
    {
        guard let result = try call(name, detail(), body) else {
            throw SystemError(call: "\(name)", errno: EAGAIN, detail: detail())
        }
        return result
    }
}
