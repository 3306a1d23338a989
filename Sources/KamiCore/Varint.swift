/// Integers as zigzag LEB128 varints: small magnitudes of either sign take one byte, a
/// millisecond timestamp six. Shared by the issue log's records (KamiStore) and the order
/// table's packed orders (KamiEngine).
public enum Varint {
    /// Appends `value` to `bytes`.
    @inlinable
    public static func append(_ value: Int64, to bytes: inout [UInt8]) {
        var v = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Reads the varint at `offset` of memory this process wrote with `append` (not checked:
    /// never use it on bytes from outside), and moves `offset` past it.
    @inlinable
    public static func readTrusted(_ bytes: UnsafeBufferPointer<UInt8>, at offset: inout Int) -> Int64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { break }
            shift += 7
        }
        return Int64(bitPattern: (value >> 1) ^ (0 &- (value & 1)))
    }
}
