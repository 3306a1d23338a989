import Glibc

/// A failed system call: which call, on what, and errno. Holds no payload bytes, so it can
/// go into an error message as is.
struct SystemCallError: Error, Sendable, CustomStringConvertible {
    let call: StaticString
    let errno: Int32

    var description: String { "\(call): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// The one funnel every system call of the client goes through: EINTR is retried (a signal
/// handler installed by the host application must not fail a request), and -1 becomes a
/// `SystemCallError` naming the call. Callers look at `errno` for EAGAIN or EINPROGRESS,
/// which are states rather than failures for a non-blocking socket.
enum Syscall {
    @inline(__always)
    static func call<T: BinaryInteger>(_ name: StaticString, _ body: () -> T) throws(SystemCallError) -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            let error = Glibc.errno
            if error == EINTR { continue }
            throw SystemCallError(call: name, errno: error)
        }
    }

    /// Sleeps for `ms` milliseconds, resuming after signals until the whole time has passed.
    static func sleep(ms: Int) {
        guard ms > 0 else { return }
        var request = timespec(tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000)
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && Glibc.errno == EINTR {
            request = remaining
        }
    }
}
