import Glibc

/// kamictl's checks of the files it names to kamid, before it asks (kamid checks again).
enum FileChecks {
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

    /// A problem reading a file, for the operator.
    struct ReadProblem: Error {
        var message: String
    }

    /// The bytes of the regular file at `path`, at most `limit` of them.
    static func read(_ path: String, limit: Int) -> Result<[UInt8], ReadProblem> {
        if let kind = nonRegularFileKind(path), kind != "a symbolic link" {
            return .failure(ReadProblem(message: "is \(kind), not a regular file"))
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(ReadProblem(message: String(cString: strerror(errno)))) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(ReadProblem(message: String(cString: strerror(errno))))
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
            if bytes.count > limit {
                return .failure(ReadProblem(message: "is over \(limit) bytes; deliver fewer codes at a time"))
            }
        }
        return .success(bytes)
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
