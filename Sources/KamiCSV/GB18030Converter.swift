// The only file of the module, with CSVFileImport.swift, that calls C: glibc's iconv.
private import Glibc

/// Streaming GB18030 (GBK, GB2312) to UTF-8 conversion over glibc iconv, with fixed buffers.
///
/// Input arrives in chunks cut anywhere, so a 2- or 4-byte character can straddle two chunks:
/// iconv reports the cut-off tail as incomplete (EINVAL) and the converter carries those at
/// most 3 bytes over to the next chunk.
///
/// An invalid byte (EILSEQ) is not an error for the whole file: the converter writes the byte
/// 0xFF in its place, which never occurs in UTF-8, and moves on by one byte. The parser then
/// finds that record's field invalid and rejects it with its line number, while the lines
/// around it convert normally. GB18030 keeps ASCII as ASCII and its multi-byte characters
/// never contain bytes below 0x30, so commas, quotes and line ends, and thus record
/// boundaries, survive a bad byte.
///
/// Noncopyable because it owns the iconv handle and its buffers, released in `deinit`.
struct GB18030Converter: ~Copyable {
    /// The most bytes carried from one step to the next: one GB18030 character minus one.
    private static let carryBytesMax = 3
    /// What replaces each invalid input byte in the output (never valid UTF-8).
    static let invalidMarker: UInt8 = 0xFF

    private let handle: iconv_t
    private let input: UnsafeMutableRawBufferPointer
    private let output: UnsafeMutableRawBufferPointer
    /// Incomplete bytes kept at the front of `input` from the previous step.
    private var carried = 0

    /// Opens iconv from GB18030 to UTF-8, or throws `encodingUnavailable` when this system's
    /// glibc has no GB18030 module (gconv not installed).
    init() throws(CSVImportError) {
        guard let opened = iconv_open("UTF-8", "GB18030"), Int(bitPattern: opened) != -1 else {
            throw CSVImportError(.encodingUnavailable,
                                 "iconv cannot convert GB18030 to UTF-8 on this system (errno \(errno));"
                                     + " install glibc's gconv modules or save the file as UTF-8")
        }
        handle = opened
        input = .allocate(byteCount: Self.carryBytesMax + CSVLimits.conversionStepBytes, alignment: 16)
        output = .allocate(byteCount: CSVLimits.conversionOutputBytes, alignment: 16)
    }

    deinit {
        _ = iconv_close(handle)
        input.deallocate()
        output.deallocate()
    }

    /// Converts the next at most `CSVLimits.conversionStepBytes` bytes of `bytes` from
    /// `offset`, advances `offset`, and returns the UTF-8 produced. The returned buffer is
    /// valid until the next call.
    mutating func step(_ bytes: UnsafeRawBufferPointer, offset: inout Int) throws(CSVImportError)
        -> UnsafeRawBufferPointer
    {
        let count = min(CSVLimits.conversionStepBytes, bytes.count - offset)
        if count > 0 {
            UnsafeMutableRawBufferPointer(rebasing: input[carried..<(carried + count)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]))
        }
        offset += count
        return try convert(carried + count)
    }

    /// Ends the input: carried bytes that never completed a character become one invalid
    /// marker, so the last record is rejected rather than silently shortened.
    mutating func finish() -> UnsafeRawBufferPointer {
        var produced = 0
        if carried > 0 {
            output[0] = Self.invalidMarker
            produced = 1
            carried = 0
        }
        // GB18030 is stateless, but this is how iconv is told the input ended.
        _ = iconv(handle, nil, nil, nil, nil)
        return UnsafeRawBufferPointer(rebasing: output[0..<produced])
    }

    private mutating func convert(_ available: Int) throws(CSVImportError) -> UnsafeRawBufferPointer {
        var inPointer: UnsafeMutablePointer<CChar>? = input.baseAddress!.assumingMemoryBound(to: CChar.self)
        var inLeft = available
        var outPointer: UnsafeMutablePointer<CChar>? = output.baseAddress!.assumingMemoryBound(to: CChar.self)
        var outLeft = output.count
        carried = 0
        while inLeft > 0 {
            if iconv(handle, &inPointer, &inLeft, &outPointer, &outLeft) != -1 { break }
            let error = errno
            switch error {
            case EILSEQ:
                outPointer!.pointee = CChar(bitPattern: Self.invalidMarker)
                outPointer! += 1
                outLeft -= 1
                inPointer! += 1
                inLeft -= 1
            case EINVAL where inLeft <= Self.carryBytesMax:
                UnsafeMutableRawPointer(input.baseAddress!).copyMemory(from: inPointer!, byteCount: inLeft)
                carried = inLeft
                inLeft = 0
            default:
                // E2BIG cannot happen (CSVLimits.check() sizes the output for a whole step);
                // anything else means iconv itself is broken.
                throw CSVImportError(.conversionFailed, "iconv GB18030 to UTF-8 failed with errno \(error)")
            }
        }
        let produced = output.count - outLeft
        return UnsafeRawBufferPointer(rebasing: output[0..<produced])
    }
}
