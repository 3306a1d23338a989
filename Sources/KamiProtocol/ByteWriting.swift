/// Little-endian and decimal appends used by both encoders. Internal: the wire format is
/// the codecs' business.
extension Array where Element == UInt8 {
    @inline(__always)
    mutating func appendU16LE(_ value: UInt16) {
        append(UInt8(truncatingIfNeeded: value))
        append(UInt8(truncatingIfNeeded: value >> 8))
    }

    @inline(__always)
    mutating func appendU32LE(_ value: UInt32) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    @inline(__always)
    mutating func appendI64LE(_ value: Int64) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    /// Overwrites four bytes at `offset` with `value`, for a length known only after the
    /// payload is written.
    @inline(__always)
    mutating func setU32LE(_ value: UInt32, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: value)
        self[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
        self[offset + 2] = UInt8(truncatingIfNeeded: value >> 16)
        self[offset + 3] = UInt8(truncatingIfNeeded: value >> 24)
    }

    /// Appends the bytes of a static string (JSON keys and punctuation) without building a
    /// `String`.
    @inline(__always)
    mutating func appendStatic(_ text: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends `value` in decimal ASCII, without `String(describing:)` and its allocation.
    mutating func appendDecimal(_ value: Int64) {
        if value < 0 { append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        let start = count
        repeat {
            append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: magnitude % 10))
            magnitude /= 10
        } while magnitude != 0
        // Digits came out least significant first.
        var low = start
        var high = count - 1
        while low < high {
            swapAt(low, high)
            low += 1
            high -= 1
        }
    }
}

/// Internal helpers on static strings used as byte patterns.
extension StaticString {
    /// Whether the `count` bytes at `p` are exactly this string's bytes.
    @inline(__always)
    func matches(_ p: UnsafeRawPointer, count: Int) -> Bool {
        guard count == utf8CodeUnitCount else { return false }
        let mine = UnsafeRawPointer(utf8Start)
        var i = 0
        while i < count {
            guard mine.load(fromByteOffset: i, as: UInt8.self) == p.load(fromByteOffset: i, as: UInt8.self) else {
                return false
            }
            i += 1
        }
        return true
    }
}
