import KamiCore

/// Appends JSON text to a byte array: strings escaped, integers in decimal, no `String`
/// formatting or Foundation on the way.
enum JSONWriter {
    /// Appends `value` as a JSON string: quotes and backslashes escaped, control
    /// characters as `\b \f \n \r \t` or `\u00XX`, everything else (non-ASCII UTF-8
    /// included) as is.
    @inline(__always)
    static func string(_ value: String, _ out: inout [UInt8]) {
        let done: Void? = value.utf8.withContiguousStorageIfAvailable { escaped($0, &out) }
        if done == nil {
            let copy = Array(value.utf8)
            copy.withUnsafeBufferPointer { escaped($0, &out) }
        }
    }

    /// Appends a secret from its bytes: it never goes through `description` or a
    /// `String`. Secrets are valid UTF-8 (import checks it); should one not be, its bad
    /// bytes become U+FFFD rather than producing a line that is not UTF-8.
    static func secret(_ secret: Secret, _ out: inout [UInt8]) {
        secret.bytes.withUnsafeBufferPointer { bytes in
            if bytes.isEmpty || UTF8Validation.isValid(UnsafeRawPointer(bytes.baseAddress!), count: bytes.count) {
                escaped(bytes, &out)
            } else {
                string(String(decoding: bytes, as: UTF8.self), &out)
            }
        }
    }

    static func escaped(_ bytes: UnsafeBufferPointer<UInt8>, _ out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var run = 0
        for i in 0..<bytes.count {
            let b = bytes[i]
            guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<i]))
            run = i + 1
            out.append(UInt8(ascii: "\\"))
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(b)
            case 0x08: out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(UInt8(ascii: "f"))
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "t"))
            default:
                let digits: StaticString = "0123456789abcdef"
                out.appendStatic("u00")
                out.append(digits.utf8Start[Int(b >> 4)])
                out.append(digits.utf8Start[Int(b & 0xF)])
            }
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run...]))
        out.append(UInt8(ascii: "\""))
    }

    @inline(__always)
    static func optionalString(_ value: String?, _ out: inout [UInt8]) {
        if let value { string(value, &out) } else { out.appendStatic("null") }
    }

    @inline(__always)
    static func bool(_ value: Bool, _ out: inout [UInt8]) {
        out.appendStatic(value ? "true" : "false")
    }

    static func id(_ id: RequestID, _ out: inout [UInt8]) {
        switch id {
        case .none: out.appendStatic("null")
        case .number(let number): out.appendDecimal(number)
        case .string(let text): string(text, &out)
        case .bool(let flag): bool(flag, &out)
        }
    }

    /// Appends `,"key":` (the comma is left out for the first member of an object).
    @inline(__always)
    static func key(_ key: StaticString, _ out: inout [UInt8], first: Bool = false) {
        if !first { out.append(UInt8(ascii: ",")) }
        out.append(UInt8(ascii: "\""))
        out.appendStatic(key)
        out.appendStatic("\":")
    }

    static func value(_ value: JSONValue, _ out: inout [UInt8]) {
        switch value {
        case .null: out.appendStatic("null")
        case .bool(let flag): bool(flag, &out)
        case .int(let number): out.appendDecimal(number)
        case .string(let text): string(text, &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                self.value(item, &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, (name, item)) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                string(name, &out)
                out.append(UInt8(ascii: ":"))
                self.value(item, &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}
