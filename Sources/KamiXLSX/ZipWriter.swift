import CZlib
import Glibc

/// Writes a ZIP archive to a file, each entry deflated as it is written (a sheet of a million
/// rows is never in memory whole). Entries use a data descriptor (flag bit 3): sizes and CRC
/// follow the data and are repeated in the central directory. No ZIP64: an entry or the
/// archive past 4 GiB is an error.
public final class ZipWriter {
    private struct Written {
        let name: [UInt8]
        let crc: UInt32
        let compressedSize: UInt64
        let size: UInt64
        let offset: UInt64
    }

    public let path: String
    private let fd: Int32
    private var offset: UInt64 = 0
    private var written: [Written] = []
    private var open: (name: [UInt8], offset: UInt64, crc: UInt, size: UInt64, compressed: UInt64)? = nil
    private var stream = z_stream()
    private var deflating = false
    private var closed = false
    /// Whether `finish` and deinit close the descriptor.
    private let ownsDescriptor: Bool

    /// Creates (or truncates) `path` with `mode`.
    public init(path: String, mode: UInt32 = 0o644) throws(XLSXError) {
        self.path = path
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(mode))
        guard fd >= 0 else { throw XLSXError(.io, "cannot create \(path): \(String(cString: strerror(errno)))") }
        ownsDescriptor = true
    }

    /// Writes to an open, empty file the caller made (and closes); `path` names it in errors.
    public init(fileDescriptor: Int32, path: String) {
        self.path = path
        fd = fileDescriptor
        ownsDescriptor = false
    }

    deinit {
        if deflating { deflateEnd(&stream) }
        if !closed && ownsDescriptor { Glibc.close(fd) }
    }

    private func put(_ bytes: [UInt8]) throws(XLSXError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw XLSXError(.io, "cannot write \(path): \(String(cString: strerror(errno)))") }
            done += n
        }
        offset += UInt64(bytes.count)
    }

    private static func le16(_ value: Int, _ out: inout [UInt8]) {
        out += [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF)]
    }

    private static func le32(_ value: UInt64, _ out: inout [UInt8]) {
        out += [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value >> 16 & 0xFF), UInt8(value >> 24 & 0xFF)]
    }

    /// Starts an entry; `write` its bytes, then `endEntry`.
    public func beginEntry(_ name: String) throws(XLSXError) {
        precondition(open == nil, "ZipWriter.beginEntry with an entry open")
        let nameBytes = Array(name.utf8)
        var header: [UInt8] = []
        ZipWriter.le32(0x0403_4B50, &header)
        ZipWriter.le16(20, &header)  // version needed: 2.0 (deflate)
        ZipWriter.le16(0x0808, &header)  // data descriptor; names in UTF-8
        ZipWriter.le16(8, &header)  // deflate
        ZipWriter.le16(0, &header)  // time
        ZipWriter.le16(0x21, &header)  // date: 1980-01-01
        ZipWriter.le32(0, &header)  // crc, sizes: in the descriptor
        ZipWriter.le32(0, &header)
        ZipWriter.le32(0, &header)
        ZipWriter.le16(nameBytes.count, &header)
        ZipWriter.le16(0, &header)
        header += nameBytes
        let start = offset
        try put(header)
        let status = deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY,
                                   ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else { throw XLSXError(.io, "zlib deflateInit2 failed (\(status))") }
        deflating = true
        open = (nameBytes, start, CZlib.crc32(0, nil, 0), 0, 0)
    }

    /// More bytes of the open entry.
    public func write(_ bytes: [UInt8]) throws(XLSXError) {
        guard var entry = open else { preconditionFailure("ZipWriter.write without an entry") }
        guard !bytes.isEmpty else { return }
        entry.crc = bytes.withUnsafeBufferPointer { CZlib.crc32(entry.crc, $0.baseAddress, uInt($0.count)) }
        entry.size += UInt64(bytes.count)
        guard entry.size < 0xFFFF_FFFF else { throw XLSXError(.tooLarge, "\(path): an entry over 4 GiB needs ZIP64, which is not written") }
        open = entry
        try deflate(bytes, flush: Z_NO_FLUSH)
    }

    private func deflate(_ bytes: [UInt8], flush: Int32) throws(XLSXError) {
        var input = bytes
        var output = [UInt8](repeating: 0, count: 64 * 1024)
        var produced: [UInt8] = []
        var status: Int32 = Z_OK
        input.withUnsafeMutableBufferPointer { inBuffer in
            stream.next_in = inBuffer.baseAddress
            stream.avail_in = uInt(inBuffer.count)
            repeat {
                output.withUnsafeMutableBufferPointer { outBuffer in
                    stream.next_out = outBuffer.baseAddress
                    stream.avail_out = uInt(outBuffer.count)
                    status = CZlib.deflate(&stream, flush)
                    produced += outBuffer[0..<(outBuffer.count - Int(stream.avail_out))]
                }
            } while stream.avail_out == 0 || (flush == Z_FINISH && status == Z_OK)
            stream.next_in = nil
            stream.next_out = nil
        }
        guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
            throw XLSXError(.io, "zlib deflate failed (\(status))")
        }
        open!.compressed += UInt64(produced.count)
        try put(produced)
    }

    /// Ends the open entry: the deflate stream's end and the data descriptor.
    public func endEntry() throws(XLSXError) {
        try deflate([], flush: Z_FINISH)
        deflateEnd(&stream)
        deflating = false
        guard let entry = open else { return }
        open = nil
        guard entry.compressed < 0xFFFF_FFFF, offset < 0xFFFF_FFFF else {
            throw XLSXError(.tooLarge, "\(path): over 4 GiB needs ZIP64, which is not written")
        }
        var descriptor: [UInt8] = []
        ZipWriter.le32(0x0807_4B50, &descriptor)
        ZipWriter.le32(UInt64(entry.crc), &descriptor)
        ZipWriter.le32(entry.compressed, &descriptor)
        ZipWriter.le32(entry.size, &descriptor)
        try put(descriptor)
        written.append(Written(name: entry.name, crc: UInt32(truncatingIfNeeded: entry.crc), compressedSize: entry.compressed,
                               size: entry.size, offset: entry.offset))
    }

    /// A whole entry at once.
    public func add(_ name: String, _ bytes: [UInt8]) throws(XLSXError) {
        try beginEntry(name)
        try write(bytes)
        try endEntry()
    }

    /// Writes the central directory, syncs and closes the file.
    public func finish() throws(XLSXError) {
        precondition(open == nil, "ZipWriter.finish with an entry open")
        let directoryStart = offset
        var directory: [UInt8] = []
        for entry in written {
            ZipWriter.le32(0x0201_4B50, &directory)
            ZipWriter.le16(20, &directory)  // made by
            ZipWriter.le16(20, &directory)  // needed
            ZipWriter.le16(0x0808, &directory)
            ZipWriter.le16(8, &directory)
            ZipWriter.le16(0, &directory)
            ZipWriter.le16(0x21, &directory)
            ZipWriter.le32(UInt64(entry.crc), &directory)
            ZipWriter.le32(entry.compressedSize, &directory)
            ZipWriter.le32(entry.size, &directory)
            ZipWriter.le16(entry.name.count, &directory)
            ZipWriter.le16(0, &directory)  // extra
            ZipWriter.le16(0, &directory)  // comment
            ZipWriter.le16(0, &directory)  // disk
            ZipWriter.le16(0, &directory)  // internal attributes
            ZipWriter.le32(0, &directory)  // external attributes
            ZipWriter.le32(entry.offset, &directory)
            directory += entry.name
        }
        guard written.count < 0xFFFF else { throw XLSXError(.tooLarge, "\(path): 65,535 entries or more need ZIP64") }
        var end: [UInt8] = []
        ZipWriter.le32(0x0605_4B50, &end)
        ZipWriter.le16(0, &end)
        ZipWriter.le16(0, &end)
        ZipWriter.le16(written.count, &end)
        ZipWriter.le16(written.count, &end)
        ZipWriter.le32(UInt64(directory.count), &end)
        ZipWriter.le32(directoryStart, &end)
        ZipWriter.le16(0, &end)
        try put(directory + end)
        guard fsync(fd) == 0 else { throw XLSXError(.io, "cannot sync \(path): \(String(cString: strerror(errno)))") }
        closed = true
        guard ownsDescriptor else { return }
        guard Glibc.close(fd) == 0 else { throw XLSXError(.io, "cannot close \(path): \(String(cString: strerror(errno)))") }
    }
}
