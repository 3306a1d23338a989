private import Glibc

// Reading and creating master key files. Plain POSIX calls rather than Foundation,
// because the checks must be made on the opened descriptor (fstat), not on the path:
// checking the path and then opening it would let the file be swapped in between.

/// File type bits of `st_mode` (S_IFMT) and the regular-file type (S_IFREG).
private let fileTypeMask: UInt32 = 0o170_000
private let regularFileType: UInt32 = 0o100_000
/// Permission bits for group and other users: any of them set means the key is exposed.
private let groupOtherBits: UInt32 = 0o077
/// Mode of a generated key file: read and write for the owner only.
private let keyFileMode: UInt32 = 0o600
/// Longest file worth reading: a hex key plus "\r\n". Anything longer is rejected
/// without reading it into memory.
private let keyFileBytesMax = MasterKey.keyBytes * 2 + 2

/// `strerror` text for `errno`.
func systemErrorMessage(_ errno: Int32) -> String {
    String(cString: strerror(errno))
}

/// Calls `body` again while it fails with EINTR (a signal arrived mid-call); returns its result or -1 with errno set.
private func retryingEINTR(_ body: () -> Int32) -> Int32 {
    while true {
        let result = body()
        if result >= 0 || errno != EINTR { return result }
    }
}

extension MasterKey {
    /// Loads the master key from `path`.
    ///
    /// The file holds either the 32 raw key bytes or 64 hex digits (either case),
    /// optionally followed by a newline (LF or CRLF). It must be a regular file (a symlink to one
    /// is fine) that neither group nor other users can access: mode 0600 or 0400.
    public static func load(path: String) throws(KeyFileError) -> MasterKey {
        // O_NONBLOCK so that opening a FIFO by mistake does not hang start-up; it has
        // no effect on a regular file. O_NOCTTY for the same reason with a terminal.
        let fd = retryingEINTR { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) }
        if fd < 0 {
            let error = errno
            throw error == ENOENT ? .missing(path: path) : .systemCall(path: path, call: "open", errno: error)
        }
        defer { close(fd) }

        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .systemCall(path: path, call: "fstat", errno: errno) }
        let mode = UInt32(info.st_mode)
        guard mode & fileTypeMask == regularFileType else { throw .notRegularFile(path: path) }
        guard mode & groupOtherBits == 0 else { throw .permissionsTooOpen(path: path, mode: mode & 0o7777) }

        let content = try readAll(fd: fd, path: path, fileBytes: Int(info.st_size))
        return try parse(content, path: path)
    }

    private static func readAll(fd: Int32, path: String, fileBytes: Int) throws(KeyFileError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: keyFileBytesMax + 1)
        var total = 0
        while total < buffer.count {
            let count = buffer.withUnsafeMutableBytes { raw in read(fd, raw.baseAddress! + total, raw.count - total) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw .systemCall(path: path, call: "read", errno: errno)
            }
            total += count
        }
        // Reading one byte past the longest valid file tells "too long" apart without
        // reading a huge file; the size from fstat then makes the message exact.
        if total > keyFileBytesMax { throw .wrongLength(path: path, bytes: max(fileBytes, total)) }
        return Array(buffer.prefix(total))
    }

    /// Decodes the content of a key file: raw bytes, or hex with an optional newline.
    static func parse(_ content: [UInt8], path: String) throws(KeyFileError) -> MasterKey {
        if content.count == keyBytes { return MasterKey(bytes: content) }
        var hex = content[...]
        if hex.last == UInt8(ascii: "\n") { hex = hex.dropLast() }
        if hex.last == UInt8(ascii: "\r") { hex = hex.dropLast() }
        guard hex.count == keyBytes * 2 else { throw .wrongLength(path: path, bytes: content.count) }

        var key = [UInt8]()
        key.reserveCapacity(keyBytes)
        var index = hex.startIndex
        while index < hex.endIndex {
            guard let high = Hex.value(of: hex[index]) else { throw .invalidHex(path: path, offset: index) }
            guard let low = Hex.value(of: hex[index + 1]) else { throw .invalidHex(path: path, offset: index + 1) }
            key.append(high << 4 | low)
            index += 2
        }
        return MasterKey(bytes: key)
    }

    /// Creates a new random key file at `path` with mode 0600 and returns its key.
    ///
    /// The key is written as 64 lowercase hex digits and a newline, so that an operator
    /// can back it up or compare it by eye. The file and its directory are fsynced
    /// before returning: a key lost in a crash would make every secret sealed with it
    /// unreadable. An existing file (or symlink) at `path` is never replaced.
    public static func generate(path: String) throws(KeyFileError) -> MasterKey {
        let key = MasterKey.random()
        // O_EXCL with O_CREAT fails on any existing entry, including a dangling
        // symlink, so an attacker-placed link cannot redirect the write.
        let fd = retryingEINTR { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, keyFileMode) }
        if fd < 0 {
            let error = errno
            throw error == EEXIST ? .alreadyExists(path: path) : .systemCall(path: path, call: "open", errno: error)
        }
        do throws(KeyFileError) {
            // The umask may have cleared owner bits from the mode given to open; set it exactly.
            guard fchmod(fd, keyFileMode) == 0 else { throw .systemCall(path: path, call: "fchmod", errno: errno) }
            try writeAll(fd: fd, bytes: Array((Hex.encode(key.bytes) + "\n").utf8), path: path)
            guard retryingEINTR({ fsync(fd) }) == 0 else {
                throw .systemCall(path: path, call: "fsync", errno: errno)
            }
        } catch {
            close(fd)
            unlink(path)
            throw error
        }
        close(fd)
        try syncParentDirectory(of: path)
        return key
    }

    private static func writeAll(fd: Int32, bytes: [UInt8], path: String) throws(KeyFileError) {
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { raw in write(fd, raw.baseAddress! + written, raw.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .systemCall(path: path, call: "write", errno: errno)
            }
            written += count
        }
    }

    /// Makes the new directory entry durable: fsync of the file alone does not persist its name.
    private static func syncParentDirectory(of path: String) throws(KeyFileError) {
        let directory: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        let fd = retryingEINTR { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { throw .systemCall(path: directory, call: "open", errno: errno) }
        defer { close(fd) }
        guard retryingEINTR({ fsync(fd) }) == 0 else { throw .systemCall(path: directory, call: "fsync", errno: errno) }
    }
}
