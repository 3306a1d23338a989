/// A syntax error in a JSON line, at a byte offset from the start of the line.
struct JSONSyntaxError: Error {
    var offset: Int
    var problem: String

    var message: String { "malformed JSON at byte \(offset) of the line: \(problem)" }
}

/// A string value located in the line but not yet turned into a `String`. The scanner has
/// already checked it: escapes well-formed, surrogates paired, raw bytes valid UTF-8, no
/// raw control characters.
struct JSONStringToken {
    /// Content bytes, between the quotes.
    var start: Int
    var end: Int
    var hasEscapes: Bool
}

/// A number located in the line. JSON numbers are kept only as integers here: a fraction
/// or exponent is remembered so that the caller can say "must be an integer".
struct JSONNumberToken {
    var start: Int
    var end: Int
    /// The value, when the number has no fraction or exponent and fits in 64 bits.
    var integer: Int64?
    /// Whether it had a fraction or an exponent.
    var isFractional: Bool
}

/// One scalar value.
enum JSONScalarToken {
    case string(JSONStringToken)
    case number(JSONNumberToken)
    case bool(Bool)
    case null
}

/// A cursor over one line of JSON text, checking syntax as it goes and building nothing:
/// strings and numbers come back as positions, so that bytes become a `String` only for a
/// field that is accepted.
struct JSONScanner {
    let base: UnsafeRawPointer
    /// Where the line starts, for offsets in messages.
    let lineStart: Int
    var index: Int
    let end: Int

    init(base: UnsafeRawPointer, start: Int, end: Int) {
        self.base = base
        self.lineStart = start
        self.index = start
        self.end = end
    }

    @inline(__always)
    func byte(_ i: Int) -> UInt8 { base.load(fromByteOffset: i, as: UInt8.self) }

    /// The byte at the cursor, or nil at the end of the line.
    @inline(__always)
    var current: UInt8? { index < end ? byte(index) : nil }

    func error(_ problem: String, at position: Int? = nil) -> JSONSyntaxError {
        JSONSyntaxError(offset: (position ?? index) - lineStart, problem: problem)
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while index < end {
            switch byte(index) {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// Consumes `expected` or fails naming what was wanted.
    @inline(__always)
    mutating func expect(_ expected: UInt8, _ what: StaticString) throws(JSONSyntaxError) {
        guard current == expected else {
            throw error(index < end ? "expected \(what)" : "line ends where \(what) was expected")
        }
        index += 1
    }

    // MARK: Values

    /// Reads one scalar value at the cursor. Objects and arrays are not scalars: the
    /// caller checks for `{` and `[` first.
    mutating func scalar() throws(JSONSyntaxError) -> JSONScalarToken {
        guard let first = current else { throw error("line ends where a value was expected") }
        switch first {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        default:
            throw error("expected a value")
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let count = word.utf8CodeUnitCount
        guard end - index >= count, word.matches(base + index, count: count) else {
            throw error("expected \(word)")
        }
        index += count
    }

    /// Scans a string whose opening quote is at the cursor, validating as it goes, and
    /// leaves the cursor after the closing quote.
    mutating func string() throws(JSONSyntaxError) -> JSONStringToken {
        let start = index + 1
        var i = start
        var hasEscapes = false
        while true {
            // Eight bytes at a time up to the first quote, backslash, control or non-ASCII
            // byte. Each test flags a byte's top bit; a borrow can flag bytes above a true
            // hit, never below it, so the lowest flag is exactly the first special byte.
            while end - i >= 8 {
                let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                let quote = word ^ 0x2222_2222_2222_2222
                let backslash = word ^ 0x5C5C_5C5C_5C5C_5C5C
                let lows: UInt64 = 0x0101_0101_0101_0101
                let special = (((quote &- lows) & ~quote) | ((backslash &- lows) & ~backslash)
                    | ((word &- 0x2020_2020_2020_2020) & ~word) | word) & 0x8080_8080_8080_8080
                if special != 0 {
                    i += special.trailingZeroBitCount >> 3
                    break
                }
                i += 8
            }
            guard i < end else { throw error("unterminated string", at: start - 1) }
            let b = byte(i)
            if b == UInt8(ascii: "\"") { break }
            if b == UInt8(ascii: "\\") {
                hasEscapes = true
                i = try escape(at: i)
            } else if b < 0x20 {
                throw error("raw control character 0x\(String(b, radix: 16)) in a string; escape it", at: i)
            } else if b >= 0x80 {
                let length = UTF8Validation.sequenceLength(base, at: i, end: end)
                guard length > 0 else { throw error("invalid UTF-8 in a string", at: i) }
                i += length
            } else {
                i += 1
            }
        }
        index = i + 1
        return JSONStringToken(start: start, end: i, hasEscapes: hasEscapes)
    }

    /// Checks the escape whose backslash is at `i`, returning the index after it. A high
    /// surrogate must be followed by an escaped low surrogate (the pair is one character);
    /// a lone surrogate has no UTF-8 form and is refused.
    private func escape(at i: Int) throws(JSONSyntaxError) -> Int {
        guard i + 1 < end else { throw error("unterminated escape", at: i) }
        switch byte(i + 1) {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
            UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            return i + 2
        case UInt8(ascii: "u"):
            let unit = try hex4(at: i + 2)
            switch unit {
            case 0xD800...0xDBFF:
                guard i + 7 < end, byte(i + 6) == UInt8(ascii: "\\"), byte(i + 7) == UInt8(ascii: "u"),
                    let low = try? hex4(at: i + 8), (0xDC00...0xDFFF).contains(low)
                else { throw error("\\u escape of a high surrogate without its low surrogate", at: i) }
                return i + 12
            case 0xDC00...0xDFFF:
                throw error("\\u escape of a lone low surrogate", at: i)
            default:
                return i + 6
            }
        default:
            throw error("invalid escape", at: i)
        }
    }

    /// The value of four hex digits at `i`.
    func hex4(at i: Int) throws(JSONSyntaxError) -> UInt32 {
        guard end - i >= 4 else { throw error("\\u escape needs four hex digits", at: i) }
        var value: UInt32 = 0
        for k in 0..<4 {
            let b = byte(i + k)
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw error("\\u escape needs four hex digits", at: i)
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    /// Scans a number with JSON's grammar (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`),
    /// computing its value when it is an integer that fits in 64 bits.
    mutating func number() throws(JSONSyntaxError) -> JSONNumberToken {
        let start = index
        var i = index
        let negative = byte(i) == UInt8(ascii: "-")
        if negative { i += 1 }
        guard i < end, isDigit(byte(i)) else { throw error("expected a digit", at: i) }
        var magnitude: UInt64 = 0
        var overflow = false
        if byte(i) == UInt8(ascii: "0") {
            i += 1
            if i < end && isDigit(byte(i)) { throw error("leading zero in a number", at: i) }
        } else {
            while i < end, isDigit(byte(i)) {
                let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(UInt64(byte(i) - UInt8(ascii: "0")))
                overflow = overflow || o1 || o2
                magnitude = sum
                i += 1
            }
        }
        var isFractional = false
        if i < end && byte(i) == UInt8(ascii: ".") {
            isFractional = true
            i += 1
            guard i < end, isDigit(byte(i)) else { throw error("expected a digit after '.'", at: i) }
            while i < end, isDigit(byte(i)) { i += 1 }
        }
        if i < end && (byte(i) == UInt8(ascii: "e") || byte(i) == UInt8(ascii: "E")) {
            isFractional = true
            i += 1
            if i < end && (byte(i) == UInt8(ascii: "+") || byte(i) == UInt8(ascii: "-")) { i += 1 }
            guard i < end, isDigit(byte(i)) else { throw error("expected a digit in the exponent", at: i) }
            while i < end, isDigit(byte(i)) { i += 1 }
        }
        index = i
        var integer: Int64?
        if !isFractional && !overflow {
            if negative {
                // -9223372036854775808 has no positive counterpart, hence the magnitude.
                if magnitude <= UInt64(Int64.max) + 1 { integer = Int64(bitPattern: 0 &- magnitude) }
            } else if magnitude <= UInt64(Int64.max) {
                integer = Int64(magnitude)
            }
        }
        return JSONNumberToken(start: start, end: i, integer: integer, isFractional: isFractional)
    }

    @inline(__always)
    private func isDigit(_ b: UInt8) -> Bool { b &- UInt8(ascii: "0") < 10 }

    /// Skips an object or array at the cursor (a request field may not hold one: the
    /// caller reports that). Strings inside are scanned properly so that a bracket inside
    /// one does not count; the rest is only bracket-matched. Iterative, so deep nesting
    /// costs no stack.
    mutating func skipNested() throws(JSONSyntaxError) {
        let start = index
        var depth = 0
        while index < end {
            switch byte(index) {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                index += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                index += 1
                if depth == 0 { return }
            case UInt8(ascii: "\""):
                _ = try string()
            default:
                index += 1
            }
        }
        throw error("unterminated object or array", at: start)
    }

    // MARK: Materialising strings

    /// The bytes a string token stands for, escapes decoded.
    func bytes(of token: JSONStringToken) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(token.end - token.start)
        var i = token.start
        var run = i
        while i < token.end {
            guard byte(i) == UInt8(ascii: "\\") else {
                i += 1
                continue
            }
            out.append(contentsOf: UnsafeRawBufferPointer(start: base + run, count: i - run))
            let kind = byte(i + 1)
            switch kind {
            case UInt8(ascii: "b"): out.append(0x08); i += 2
            case UInt8(ascii: "f"): out.append(0x0C); i += 2
            case UInt8(ascii: "n"): out.append(0x0A); i += 2
            case UInt8(ascii: "r"): out.append(0x0D); i += 2
            case UInt8(ascii: "t"): out.append(0x09); i += 2
            case UInt8(ascii: "u"):
                // Validated by `string()`: four hex digits, surrogates paired.
                var scalar = (try? hex4(at: i + 2)) ?? 0xFFFD
                i += 6
                if (0xD800...0xDBFF).contains(scalar) {
                    let low = (try? hex4(at: i + 2)) ?? 0xDC00
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                }
                appendUTF8(scalar, to: &out)
            default:
                out.append(kind)  // \" \\ \/
                i += 2
            }
            run = i
        }
        out.append(contentsOf: UnsafeRawBufferPointer(start: base + run, count: token.end - run))
        return out
    }

    /// The string a token stands for.
    @inline(__always)
    func string(of token: JSONStringToken) -> String {
        if !token.hasEscapes { return UTF8Validation.string(base + token.start, count: token.end - token.start) }
        return String(decoding: bytes(of: token), as: UTF8.self)
    }

    private func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(scalar))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | scalar >> 6))
            out.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | scalar >> 12))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        default:
            out.append(UInt8(0xF0 | scalar >> 18))
            out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        }
    }
}
