/// An incremental UTF-8 validator (RFC 3629: no overlong forms, no surrogates, nothing above
/// U+10FFFF) that can be fed in pieces split anywhere, even inside a character.
///
/// It counts rather than stops, so that `CSVEncodingDetector` can weigh how much of an input
/// looks like UTF-8; the parser uses `isValid(_:)` on single fields.
struct UTF8Validator {
    /// Continuation bytes still expected by the sequence in progress (0 between characters).
    private var pending = 0
    /// Allowed range of the next continuation byte. Only the first continuation byte after
    /// E0, ED, F0 and F4 is narrower than 80...BF; that is what rules out overlong forms,
    /// surrogates and values above U+10FFFF.
    private var low: UInt8 = 0x80
    private var high: UInt8 = 0xBF

    /// Complete multi-byte sequences seen.
    private(set) var validMultibyteCount = 0
    /// Invalid sequences seen (each counted once, at the byte that broke it).
    private(set) var invalidCount = 0

    /// Whether the input so far ends between characters.
    var isAtBoundary: Bool { pending == 0 }

    mutating func consume(_ bytes: UnsafeRawBufferPointer) {
        var index = 0
        let count = bytes.count
        while index < count {
            if pending == 0 {
                index = Self.skipASCII(bytes, from: index)
                if index == count { return }
            }
            consume(byte: bytes[index])
            index += 1
        }
    }

    /// Ends the input: a sequence cut short by the end counts as invalid.
    mutating func finish() {
        if pending != 0 {
            invalidCount += 1
            pending = 0
        }
    }

    private mutating func consume(byte: UInt8) {
        if pending > 0 {
            if byte >= low && byte <= high {
                pending -= 1
                low = 0x80
                high = 0xBF
                if pending == 0 { validMultibyteCount += 1 }
                return
            }
            // The sequence broke; the byte that broke it may still start a new one.
            invalidCount += 1
            pending = 0
            low = 0x80
            high = 0xBF
        }
        startSequence(byte)
    }

    private mutating func startSequence(_ byte: UInt8) {
        switch byte {
        case 0x00...0x7F: return
        case 0xC2...0xDF: pending = 1
        case 0xE0: pending = 2; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: pending = 2
        case 0xED: pending = 2; high = 0x9F
        case 0xF0: pending = 3; low = 0x90
        case 0xF1...0xF3: pending = 3
        case 0xF4: pending = 3; high = 0x8F
        default: invalidCount += 1  // 80...C1 (stray continuation, overlong lead), F5...FF
        }
    }

    /// Index of the first non-ASCII byte at or after `start`, checking eight bytes at a time:
    /// card-key files are almost all ASCII, so this is where validation spends its time.
    @inline(__always)
    private static func skipASCII(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        let count = bytes.count
        while index + 8 <= count {
            if bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 { break }
            index += 8
        }
        while index < count && bytes[index] < 0x80 { index += 1 }
        return index
    }

    /// Whether `bytes` is, on its own, complete and valid UTF-8.
    static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if skipASCII(bytes, from: 0) == bytes.count { return true }
        var validator = UTF8Validator()
        validator.consume(bytes)
        validator.finish()
        return validator.invalidCount == 0
    }
}
