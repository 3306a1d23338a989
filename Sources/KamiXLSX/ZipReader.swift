import CZlib
import Glibc

/// Reads the entries of a ZIP archive from a file, each streamed through inflate in chunks
/// (so a 100 MB sheet never sits in memory whole). Handles what spreadsheet programs write:
/// stored and deflated entries, data descriptors; refuses ZIP64, encryption and other methods
/// with an error saying so.
public final class ZipReader {
    public struct Entry: Sendable, Hashable {
        public let name: String
        let method: UInt16
        let flags: UInt16
        let crc: UInt32
        public let compressedSize: UInt64
        public let size: UInt64
        let localHeaderOffset: UInt64
    }

    private let fd: Int32
    private let fileSize: UInt64
    public let path: String
    /// The entries in central-directory order.
    public private(set) var entries: [Entry] = []

    /// Opens `path` and reads its central directory.
    public init(path: String) throws(XLSXError) {
        self.path = path
        // O_NONBLOCK: a fifo opens at once (and is refused below) instead of waiting for a writer.
        fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw XLSXError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            close(fd)
            throw XLSXError(.io, "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw XLSXError(.io, "\(path) is not a regular file")
        }
        fileSize = UInt64(info.st_size)
        do throws(XLSXError) { try readDirectory() } catch {
            close(fd)
            throw error
        }
    }

    deinit { Glibc.close(fd) }

    /// The entry named `name` (exact, as stored).
    public func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }

    func read(at offset: UInt64, count: Int) throws(XLSXError) -> [UInt8] {
        guard offset <= fileSize, UInt64(count) <= fileSize - offset else {
            throw XLSXError(.corrupt, "\(path): a header points past the end of the file (offset \(offset))")
        }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw XLSXError(.io, "cannot read \(path) at \(offset): \(n < 0 ? String(cString: strerror(errno)) : "end of file")") }
            done += n
        }
        return bytes
    }

    static func u16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
    static func u32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
    }

    private func readDirectory() throws(XLSXError) {
        guard fileSize >= 22 else { throw XLSXError(.notAnArchive, "\(path) is too short to be an .xlsx (a ZIP archive)") }
        // The end-of-central-directory record is in the last 22 bytes plus a comment of up to 64 KiB.
        let tailCount = Int(min(fileSize, 22 + 65_535))
        let tail = try read(at: fileSize - UInt64(tailCount), count: tailCount)
        var end: Int? = nil
        var index = tail.count - 22
        while index >= 0 {
            if tail[index] == 0x50 && tail[index + 1] == 0x4B && tail[index + 2] == 0x05 && tail[index + 3] == 0x06 {
                end = index
                break
            }
            index -= 1
        }
        guard let end else {
            throw XLSXError(.notAnArchive, "\(path) is not an .xlsx: no ZIP end-of-directory record (is it an old .xls or a CSV?)")
        }
        let count = Int(ZipReader.u16(tail, end + 10))
        let directorySize = UInt64(ZipReader.u32(tail, end + 12))
        let directoryOffset = UInt64(ZipReader.u32(tail, end + 16))
        guard count != 0xFFFF, directoryOffset != 0xFFFF_FFFF else {
            throw XLSXError(.notAnArchive, "\(path) is a ZIP64 archive, which is not supported; save it again as .xlsx")
        }
        guard directorySize <= 64 << 20 else { throw XLSXError(.tooLarge, "\(path): central directory over 64 MiB") }
        let directory = try read(at: directoryOffset, count: Int(directorySize))
        var at = 0
        for number in 0..<count {
            guard at + 46 <= directory.count, ZipReader.u32(directory, at) == 0x0201_4B50 else {
                throw XLSXError(.corrupt, "\(path): central directory entry \(number + 1) of \(count) is damaged")
            }
            let flags = ZipReader.u16(directory, at + 8)
            let method = ZipReader.u16(directory, at + 10)
            let crc = ZipReader.u32(directory, at + 16)
            let compressed = UInt64(ZipReader.u32(directory, at + 20))
            let size = UInt64(ZipReader.u32(directory, at + 24))
            let nameLength = Int(ZipReader.u16(directory, at + 28))
            let extraLength = Int(ZipReader.u16(directory, at + 30))
            let commentLength = Int(ZipReader.u16(directory, at + 32))
            let offset = UInt64(ZipReader.u32(directory, at + 42))
            guard at + 46 + nameLength + extraLength + commentLength <= directory.count else {
                throw XLSXError(.corrupt, "\(path): central directory entry \(number + 1) runs past the directory")
            }
            let name = String(decoding: directory[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self)
            guard compressed != 0xFFFF_FFFF, size != 0xFFFF_FFFF, offset != 0xFFFF_FFFF else {
                throw XLSXError(.notAnArchive, "\(path): entry \(name) needs ZIP64, which is not supported")
            }
            entries.append(Entry(name: name, method: method, flags: flags, crc: crc, compressedSize: compressed,
                                 size: size, localHeaderOffset: offset))
            at += 46 + nameLength + extraLength + commentLength
        }
    }

    /// A stream over `entry`'s uncompressed bytes.
    public func open(_ entry: Entry) throws(XLSXError) -> ZipEntryStream {
        guard entry.flags & 1 == 0 else { throw XLSXError(.notAnArchive, "\(path): \(entry.name) is encrypted; save it without a password") }
        guard entry.method == 0 || entry.method == 8 else {
            throw XLSXError(.notAnArchive, "\(path): \(entry.name) uses compression method \(entry.method); only stored and deflate are read")
        }
        let local = try read(at: entry.localHeaderOffset, count: 30)
        guard ZipReader.u32(local, 0) == 0x0403_4B50 else {
            throw XLSXError(.corrupt, "\(path): the local header of \(entry.name) is damaged")
        }
        let dataOffset = entry.localHeaderOffset + 30 + UInt64(ZipReader.u16(local, 26)) + UInt64(ZipReader.u16(local, 28))
        guard dataOffset <= fileSize, entry.compressedSize <= fileSize - dataOffset else {
            throw XLSXError(.corrupt, "\(path): \(entry.name)'s data runs past the end of the file")
        }
        return try ZipEntryStream(reader: self, entry: entry, dataOffset: dataOffset)
    }

    /// The whole of a small entry (at most `limit` bytes uncompressed).
    public func contents(_ entry: Entry, limit: Int) throws(XLSXError) -> [UInt8] {
        guard entry.size <= UInt64(limit) else {
            throw XLSXError(.tooLarge, "\(path): \(entry.name) is \(entry.size) bytes, over the \(limit) read whole")
        }
        let stream = try open(entry)
        var out: [UInt8] = []
        out.reserveCapacity(Int(entry.size))
        while let chunk = try stream.next() {
            out += chunk
            guard out.count <= limit else { throw XLSXError(.tooLarge, "\(path): \(entry.name) inflates past \(limit) bytes") }
        }
        return out
    }
}

/// One entry's bytes, inflated a chunk at a time; the CRC and size are checked at the end.
public final class ZipEntryStream {
    static let chunkBytes = 64 * 1024

    private let reader: ZipReader
    private let entry: ZipReader.Entry
    private var offset: UInt64
    private var remaining: UInt64
    private var stream = z_stream()
    private var inflating = false
    private var input: [UInt8] = []
    private var finished = false
    private var produced: UInt64 = 0
    private var crc: UInt = 0

    init(reader: ZipReader, entry: ZipReader.Entry, dataOffset: UInt64) throws(XLSXError) {
        self.reader = reader
        self.entry = entry
        offset = dataOffset
        remaining = entry.compressedSize
        crc = CZlib.crc32(0, nil, 0)
        if entry.method == 8 {
            let status = inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
            guard status == Z_OK else { throw XLSXError(.io, "zlib inflateInit2 failed (\(status))") }
            inflating = true
        }
    }

    deinit { if inflating { inflateEnd(&stream) } }

    /// The next chunk, or nil at the end (after the CRC and size were checked).
    public func next() throws(XLSXError) -> [UInt8]? {
        guard !finished else { return nil }
        var out: [UInt8]
        if entry.method == 0 {
            guard remaining > 0 else { return try finish() }
            let count = Int(min(remaining, UInt64(ZipEntryStream.chunkBytes)))
            out = try reader.read(at: offset, count: count)
            offset += UInt64(count)
            remaining -= UInt64(count)
        } else {
            if pendingEnd { return try finish() }
            out = [UInt8](repeating: 0, count: ZipEntryStream.chunkBytes)
            while true {
                if stream.avail_in == 0 && remaining > 0 {
                    let count = Int(min(remaining, UInt64(ZipEntryStream.chunkBytes)))
                    input = try reader.read(at: offset, count: count)
                    offset += UInt64(count)
                    remaining -= UInt64(count)
                    stream.avail_in = uInt(count)
                }
                var written = 0
                let status: Int32 = input.withUnsafeMutableBufferPointer { inBuffer in
                    out.withUnsafeMutableBufferPointer { outBuffer in
                        stream.next_in = inBuffer.baseAddress.map { $0 + (inBuffer.count - Int(stream.avail_in)) }
                        stream.next_out = outBuffer.baseAddress!
                        stream.avail_out = uInt(outBuffer.count)
                        let status = inflate(&stream, Z_NO_FLUSH)
                        written = outBuffer.count - Int(stream.avail_out)
                        stream.next_in = nil
                        stream.next_out = nil
                        return status
                    }
                }
                if status == Z_STREAM_END { pendingEnd = true }
                guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                    throw XLSXError(.corrupt, "\(reader.path): \(entry.name) does not inflate (zlib \(status))")
                }
                if written > 0 {
                    out.removeLast(out.count - written)
                    break
                }
                if pendingEnd { return try finish() }
                guard stream.avail_in > 0 || remaining > 0 else {
                    throw XLSXError(.corrupt, "\(reader.path): \(entry.name) ends before its compressed data does")
                }
            }
        }
        try absorb(out)
        return out
    }

    private var pendingEnd = false

    private func absorb(_ bytes: [UInt8]) throws(XLSXError) {
        produced += UInt64(bytes.count)
        // A part that inflates past the size its directory entry declares is damaged (or a
        // decompression bomb): stopped now, not at the end.
        guard produced <= entry.size else {
            throw XLSXError(.corrupt, "\(reader.path): \(entry.name) inflates past the \(entry.size) bytes its directory entry says")
        }
        crc = bytes.withUnsafeBufferPointer { CZlib.crc32(crc, $0.baseAddress, uInt($0.count)) }
    }

    private func check() throws(XLSXError) {
        guard produced == entry.size else {
            throw XLSXError(.corrupt, "\(reader.path): \(entry.name) inflated to \(produced) bytes, the directory says \(entry.size)")
        }
        guard UInt32(truncatingIfNeeded: crc) == entry.crc else {
            throw XLSXError(.corrupt, "\(reader.path): \(entry.name) fails its CRC check (the file is damaged)")
        }
    }

    private func finish() throws(XLSXError) -> [UInt8]? {
        finished = true
        try check()
        return nil
    }
}
