// Reading files for an import: open, read and pread through one funnel that retries EINTR
// and turns every other failure into a CSVImportError naming the call.
private import Glibc

/// Imports a CSV file from a path or a file descriptor, `CSVLimits.readChunkBytes` at a time.
///
/// ```swift
/// let summary = try CSVFileImport.importCodes(path: "/tmp/codes.csv") { item in
///     switch item {
///     case .row(let row): try batch.add(row)
///     case .reject(let reject): print(reject)  // "line 7: secret is empty"
///     }
/// }
/// ```
public enum CSVFileImport {
    /// Imports the regular file at `path` (a device, fifo, socket or directory is refused
    /// before a byte is read: `/dev/zero` or a fifo would never end). With `encoding` nil,
    /// the file is read twice: once by `CSVEncodingDetector`, once to import.
    ///
    /// `isCancelled` is asked before every chunk of `CSVLimits.readChunkBytes`, in both
    /// passes; once it says true the import ends with `CSVImportError.Code.cancelled`.
    public static func importCodes(path: String, encoding: CSVEncoding? = nil,
                                   isCancelled: () -> Bool = { false },
                                   _ body: (CSVImportItem) throws -> Void) throws -> CSVImportSummary
    {
        let fd = try FileIO.openRegularFile(path)
        defer { _ = close(fd) }
        return try importCodes(fileDescriptor: fd, encoding: encoding, isCancelled: isCancelled, body)
    }

    /// Imports from an open descriptor, which stays open. With `encoding` nil the descriptor
    /// must be a regular file: it is read with `pread` from offset 0, twice (detection, then
    /// import). With an encoding it is read sequentially with `read`, so pipes work too.
    public static func importCodes(fileDescriptor fd: Int32, encoding: CSVEncoding? = nil,
                                   isCancelled: () -> Bool = { false },
                                   _ body: (CSVImportItem) throws -> Void) throws -> CSVImportSummary
    {
        let chosen = try encoding ?? detectEncoding(fileDescriptor: fd, isCancelled: isCancelled)
        var importer = try CSVCodeImporter(encoding: chosen)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: CSVLimits.readChunkBytes, alignment: 16)
        defer { buffer.deallocate() }
        var position: Int64? = encoding == nil ? 0 : nil
        while true {
            if isCancelled() { throw FileIO.cancelled }
            let count = try FileIO.read(fd, into: buffer, at: position)
            if count == 0 { break }
            position = position.map { $0 + Int64(count) }
            try importer.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), body)
        }
        return try importer.finish(body)
    }

    /// Reads the whole regular file behind `fd` with `pread` (the descriptor's offset does
    /// not move) and returns the encoding `CSVEncodingDetector` picks.
    public static func detectEncoding(fileDescriptor fd: Int32, isCancelled: () -> Bool = { false })
        throws(CSVImportError) -> CSVEncoding
    {
        var detector = CSVEncodingDetector()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: CSVLimits.readChunkBytes, alignment: 16)
        defer { buffer.deallocate() }
        var position: Int64 = 0
        while true {
            if isCancelled() { throw FileIO.cancelled }
            let count = try FileIO.read(fd, into: buffer, at: position)
            if count == 0 { break }
            position += Int64(count)
            detector.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        return detector.encoding
    }
}

/// The system calls of file import, each retried on EINTR.
enum FileIO {
    /// Opens `path` for reading and checks that it is a regular file. O_NONBLOCK makes the
    /// open of a fifo return at once instead of waiting for a writer; it changes nothing for a
    /// regular file.
    static func openRegularFile(_ path: String) throws(CSVImportError) -> Int32 {
        var fd: Int32
        while true {
            fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
            if fd >= 0 { break }
            let error = errno
            if error != EINTR { throw failure("open", error, path: path) }
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = errno
            _ = close(fd)
            throw failure("fstat", error, path: path)
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            _ = close(fd)
            throw CSVImportError(.notRegularFile, "\(path) is \(kindName(kind)), not a regular file; only regular files are imported")
        }
        return fd
    }

    /// "a directory", "a fifo", ... for an error message.
    fileprivate static func kindName(_ kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: "a directory"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFIFO: "a fifo"
        case S_IFSOCK: "a socket"
        default: "of an unknown kind"
        }
    }

    static let cancelled = CSVImportError(.cancelled, "import cancelled")

    /// `pread` at `position`, or `read` when `position` is nil. Returns 0 at end of file.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at position: Int64?)
        throws(CSVImportError) -> Int
    {
        while true {
            let count = if let position {
                Glibc.pread(fd, buffer.baseAddress, buffer.count, off_t(position))
            } else {
                Glibc.read(fd, buffer.baseAddress, buffer.count)
            }
            if count >= 0 { return count }
            let error = errno
            if error != EINTR { throw failure(position == nil ? "read" : "pread", error, path: nil) }
        }
    }

    private static func failure(_ call: String, _ error: Int32, path: String?) -> CSVImportError {
        let reason = String(cString: strerror(error))
        let subject = path.map { " \($0)" } ?? ""
        var message = "\(call)\(subject) failed: \(reason) (errno \(error))"
        if error == ESPIPE { message += "; the encoding cannot be detected on a pipe, give it explicitly" }
        return CSVImportError(.ioFailed, message)
    }
}
