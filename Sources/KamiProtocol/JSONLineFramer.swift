/// Finds the next request or reply line in a JSON-lines buffer.
enum JSONLineFramer {
    /// What is at the front of a buffer.
    enum Scan {
        /// No complete non-blank line yet, and still within the limit.
        case needMore
        /// `limit` bytes went by without ending a non-blank line: the peer is not sending
        /// lines (or sends one too long to accept), and the stream cannot be resynchronised
        /// without buffering without bound.
        case tooLong
        /// A non-blank line in `start..<end` (the `\n` excluded, a `\r` before it included:
        /// JSON treats it as whitespace); `consumed` covers any blank lines before it and
        /// its `\n`.
        case line(start: Int, end: Int, consumed: Int)
    }

    /// Scans `buffer` for its first non-blank line, skipping blank lines (only spaces,
    /// tabs and CRs). Blank lines count towards `limit` together with the line they
    /// precede, so a peer can never make the caller hold more than `limit` bytes.
    static func scan(_ buffer: UnsafeRawBufferPointer, limit: Int) -> Scan {
        guard let base = buffer.baseAddress else { return .needMore }
        let window = min(buffer.count, limit)
        var start = 0
        while let newline = firstNewline(base, from: start, to: window) {
            if !isBlank(base, from: start, to: newline) {
                return .line(start: start, end: newline, consumed: newline + 1)
            }
            start = newline + 1
        }
        return buffer.count >= limit ? .tooLong : .needMore
    }

    /// Index of the first `\n` in `from..<to`, eight bytes at a time: a request line is
    /// a few hundred bytes, and this runs once per request on the event-loop thread.
    @inline(__always)
    static func firstNewline(_ base: UnsafeRawPointer, from: Int, to: Int) -> Int? {
        var i = from
        while to - i >= 8 {
            // A byte equal to '\n' becomes zero after the xor; the classic "has a zero
            // byte" test finds it, and the lowest flagged bit is the first one.
            let loaded = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            let word = loaded ^ 0x0A0A_0A0A_0A0A_0A0A
            let found = (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080
            if found != 0 { return i + found.trailingZeroBitCount / 8 }
            i += 8
        }
        while i < to {
            if base.load(fromByteOffset: i, as: UInt8.self) == 0x0A { return i }
            i += 1
        }
        return nil
    }

    @inline(__always)
    static func isBlank(_ base: UnsafeRawPointer, from: Int, to: Int) -> Bool {
        var i = from
        while i < to {
            switch base.load(fromByteOffset: i, as: UInt8.self) {
            case 0x20, 0x09, 0x0D: i += 1
            default: return false
            }
        }
        return true
    }
}
