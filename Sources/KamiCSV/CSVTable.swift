import Glibc

/// A whole CSV file read into records: for files that are not code imports (payment
/// providers' bills), in UTF-8 (with or without a BOM) or GBK/GB18030, detected as imports
/// are. Records keep their physical line; a record the parser rejects (broken quoting,
/// invalid encoding) is kept as a reject with its line.
public enum CSVTable {
    /// The bytes of the regular file at `path`, at most `limit`; errors name what is wrong.
    public static func readFile(_ path: String, limit: Int) throws(CSVImportError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CSVImportError(.ioFailed, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw CSVImportError(.notRegularFile, "\(path) is not a regular file")
        }
        guard Int(info.st_size) <= limit else { throw CSVImportError(.ioFailed, "\(path) is over \(limit) bytes") }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw CSVImportError(.ioFailed, "cannot read \(path): \(String(cString: strerror(errno)))") }
            filled += count
        }
        return bytes
    }

    /// The records (each field as a string) and rejects of `bytes`, in order.
    public static func read(_ bytes: [UInt8]) throws(CSVImportError)
        -> (encoding: CSVEncoding, records: [(line: Int, fields: [String])], rejects: [CSVReject])
    {
        var detector = CSVEncodingDetector()
        bytes.withUnsafeBytes { detector.feed($0) }
        let encoding = detector.encoding
        var parser = CSVRecordParser(sourceEncoding: encoding)
        var records: [(line: Int, fields: [String])] = []
        var rejects: [CSVReject] = []
        func take(_ event: CSVParserEvent) {
            switch event {
            case .record(let record):
                records.append((record.line, (0..<record.fieldCount).map { record.string($0) }))
            case .rejected(let reject):
                rejects.append(reject)
            }
        }
        func parse(_ utf8: UnsafeRawBufferPointer) {
            var offset = 0
            while let event = parser.next(in: utf8, offset: &offset) { take(event) }
        }
        if encoding == .gb18030 {
            var converter = try GB18030Converter()
            var failure: CSVImportError?
            bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
                var offset = 0
                while offset < raw.count {
                    do throws(CSVImportError) { parse(try converter.step(raw, offset: &offset)) } catch {
                        failure = error
                        return
                    }
                }
            }
            if let failure { throw failure }
            parse(converter.finish())
        } else {
            bytes.withUnsafeBytes { parse($0) }
        }
        if let last = parser.finish() { take(last) }
        return (encoding, records, rejects)
    }
}
