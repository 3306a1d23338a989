/// Calls `body` with a pointer to the bytes of `bytes` and their count.
///
/// Contiguous collections (arrays, slices, `UnsafeBufferPointer`) are passed without
/// a copy; anything else is copied once. The pointer is never nil, even for an empty
/// collection, because several libcrypto calls give a NULL pointer a special meaning
/// (a NULL key to `HMAC_Init_ex` means "keep the previous key").
@inline(__always)
func withBytes<C: Collection<UInt8>, R>(_ bytes: C, _ body: (UnsafePointer<UInt8>, Int) -> R) -> R {
    func call(_ buffer: UnsafeBufferPointer<UInt8>) -> R {
        if let base = buffer.baseAddress { return body(base, buffer.count) }
        var placeholder: UInt8 = 0
        return withUnsafePointer(to: &placeholder) { body($0, 0) }
    }
    if let result = bytes.withContiguousStorageIfAvailable(call) { return result }
    return Array(bytes).withUnsafeBufferPointer(call)
}

/// Hexadecimal encoding and decoding, kept here so that no Foundation formatter is needed.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// Lowercase hex of `bytes`, two characters per byte.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Eight lowercase hex digits of `value`, zero padded: how key ids are shown.
    static func encode(_ value: UInt32) -> String {
        encode([UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16),
                UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)])
    }

    /// The bytes of an even-length hex string (either case), or nil.
    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var index = 0
        while index < chars.count {
            guard let high = value(of: chars[index]), let low = value(of: chars[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    /// The value of one hex digit (either case), or nil.
    static func value(of char: UInt8) -> UInt8? {
        switch char {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): char - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): char - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): char - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
