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
