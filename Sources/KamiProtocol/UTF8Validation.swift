/// UTF-8 checks over raw bytes, shared by both decoders. Written out rather than asking
/// `String` so that the JSON scanner can validate while it looks for the closing quote, in
/// the same pass, and so that a failure names nothing but a position.
enum UTF8Validation {
    /// The length of the well-formed UTF-8 sequence whose lead byte (≥ 0x80) is at `i`,
    /// or 0 when it is malformed: a stray continuation byte, an overlong form, a surrogate
    /// (U+D800–U+DFFF), a value above U+10FFFF, or a sequence cut by `end`.
    @inline(__always)
    static func sequenceLength(_ p: UnsafeRawPointer, at i: Int, end: Int) -> Int {
        let lead = p.load(fromByteOffset: i, as: UInt8.self)
        // The second byte's range depends on the lead byte: this is where overlong forms,
        // surrogates and values past U+10FFFF are excluded (Unicode table 3-7).
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: return 0
        }
        guard end - i >= length else { return 0 }
        let second = p.load(fromByteOffset: i + 1, as: UInt8.self)
        guard second >= low && second <= high else { return 0 }
        var k = 2
        while k < length {
            guard p.load(fromByteOffset: i + k, as: UInt8.self) & 0xC0 == 0x80 else { return 0 }
            k += 1
        }
        return length
    }

    /// Whether `count` bytes at `p` are well-formed UTF-8. ASCII runs are checked eight
    /// bytes at a time, since identifiers (the common case) are all ASCII.
    static func isValid(_ p: UnsafeRawPointer, count: Int) -> Bool {
        var i = 0
        while i < count {
            if count - i >= 8 {
                let word = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                if word & 0x8080_8080_8080_8080 == 0 {
                    i += 8
                    continue
                }
            }
            let byte = p.load(fromByteOffset: i, as: UInt8.self)
            if byte < 0x80 {
                i += 1
                continue
            }
            let length = sequenceLength(p, at: i, end: count)
            if length == 0 { return false }
            i += length
        }
        return true
    }

    /// A `String` of `count` bytes at `p` that the caller has already validated.
    @inline(__always)
    static func string(_ p: UnsafeRawPointer, count: Int) -> String {
        UnsafeRawBufferPointer(start: p, count: count).withMemoryRebound(to: UInt8.self) {
            String(decoding: $0, as: UTF8.self)
        }
    }

    /// A `String` of `count` bytes at `p`, or nil when they are not well-formed UTF-8.
    @inline(__always)
    static func validString(_ p: UnsafeRawPointer, count: Int) -> String? {
        guard isValid(p, count: count) else { return nil }
        return string(p, count: count)
    }
}
