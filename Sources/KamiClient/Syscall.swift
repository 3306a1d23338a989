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

    /// Whether `path` names something that exists (for kamictl's early check of a file
    /// that kamid is about to read).
    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// What `path` is when it exists (without following a symbolic link) and is not a
    /// regular file: "a directory", "a symbolic link", ...; nil when it is missing or regular.
    static func nonRegularFileKind(_ path: String) -> String? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symbolic link"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFIFO: return "a fifo"
        case S_IFSOCK: return "a socket"
        default: return "not a regular file"
        }
    }

    /// Now in UTC as `YYYYMMDD-HHMMSS`.
    static func utcTimestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y%m%d-%H%M%S", &parts)
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
