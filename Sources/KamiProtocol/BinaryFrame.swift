import KamiCore

/// Constants of the binary frame layout. See `docs/protocol.md` for the byte tables.
///
/// ```
/// [0] magic 0xB1  [1] version  [2] op  [3] flags (requests) / status (replies)
/// [4..8) request id u32 LE     [8..12) payload length u32 LE     [12..) payload
/// ```
public enum BinaryFrame {
    /// First byte of every frame. Not a valid first byte of UTF-8 text, so it can never be
    /// mistaken for the start of a JSON line.
    public static let magic: UInt8 = 0xB1
    /// The only version this code speaks. A frame with another version closes the
    /// connection: its layout cannot be assumed.
    public static let version: UInt8 = 1
    /// The `optstr` length that means "absent".
    public static let absentLength: UInt16 = 0xFFFF
}

/// The fixed header of a frame whose length has been checked against the limit.
struct FrameHeader {
    var op: UInt8
    /// Flags in a request, status in a reply.
    var flags: UInt8
    var requestID: UInt32
    var payloadCount: Int

    /// Bytes of the whole frame.
    var frameCount: Int { ProtocolLimits.frameHeaderBytes + payloadCount }
}

/// What the first bytes of a buffer say about the frame there.
enum FrameHeaderScan {
    case needMore
    case fatal(RequestID, KamiError)
    case frame(FrameHeader)

    /// Reads the header at the front of `buffer`, rejecting a bad magic or version as soon
    /// as those bytes are there, and checking the claimed payload length against
    /// `frameBytesMax` before anything else is done with it: a peer's length is a claim,
    /// and nothing is read or allocated from it until it is known to be within bounds.
    static func scan(_ buffer: UnsafeRawBufferPointer, frameBytesMax: Int) -> FrameHeaderScan {
        let count = buffer.count
        guard count > 0, let base = buffer.baseAddress else { return .needMore }
        let magic = base.load(as: UInt8.self)
        guard magic == BinaryFrame.magic else {
            return .fatal(.none, KamiError(.badRequest,
                "not a Kami binary frame: first byte \(hex(magic)) is not 0xb1"))
        }
        guard count > 1 else { return .needMore }
        let version = base.load(fromByteOffset: 1, as: UInt8.self)
        guard version == BinaryFrame.version else {
            return .fatal(.none, KamiError(.badRequest, "binary protocol version \(version) is not supported; "
                + "this side speaks version \(BinaryFrame.version)"))
        }
        guard count >= ProtocolLimits.frameHeaderBytes else { return .needMore }
        let requestID = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let claimed = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        // Int is 64 bits on every platform Kami runs on, so this sum cannot overflow.
        let frameCount = ProtocolLimits.frameHeaderBytes + Int(claimed)
        guard frameCount <= frameBytesMax else {
            return .fatal(.number(Int64(requestID)), KamiError(.tooLarge,
                "frame of \(frameCount) bytes is over the limit of \(frameBytesMax) bytes"))
        }
        return .frame(FrameHeader(
            op: base.load(fromByteOffset: 2, as: UInt8.self),
            flags: base.load(fromByteOffset: 3, as: UInt8.self),
            requestID: requestID,
            payloadCount: Int(claimed)))
    }
}

/// `0x` and two lowercase hex digits, for messages about a single byte.
func hex(_ byte: UInt8) -> String {
    let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
    return "0x" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0xF)])
}

/// Why a payload could not be read; the caller adds the operation's name.
enum PayloadError: Error {
    case truncated(field: StaticString)
    case invalidUTF8(field: StaticString)
    case absentNotAllowed(field: StaticString)
    case leftover(Int)
    case invalid(String)

    /// A message naming `op` and the field.
    func message(_ op: Operation) -> String { message(prefix: op.name) }

    /// A message starting with `prefix` (what was being read) and naming the field.
    func message(prefix: String) -> String {
        switch self {
        case .truncated(let field): "\(prefix): payload ends inside field \(field)"
        case .invalidUTF8(let field): "\(prefix): field \(field) is not valid UTF-8"
        case .absentNotAllowed(let field):
            "\(prefix): field \(field) has length 0xffff, which marks an absent value and is not allowed here"
        case .leftover(let count): "\(prefix): \(count) bytes left over after the last field"
        case .invalid(let text): "\(prefix): \(text)"
        }
    }
}

/// A cursor over one frame's payload, whose length is already known to be in the buffer.
/// Reads never go past `end`: each checks the bytes it needs first.
struct PayloadReader {
    let base: UnsafeRawPointer
    var offset = 0
    let end: Int

    var remaining: Int { end - offset }

    @inline(__always)
    mutating func u8(_ field: StaticString) throws(PayloadError) -> UInt8 {
        guard remaining >= 1 else { throw .truncated(field: field) }
        defer { offset += 1 }
        return base.load(fromByteOffset: offset, as: UInt8.self)
    }

    @inline(__always)
    mutating func u16(_ field: StaticString) throws(PayloadError) -> UInt16 {
        guard remaining >= 2 else { throw .truncated(field: field) }
        defer { offset += 2 }
        return UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always)
    mutating func u32(_ field: StaticString) throws(PayloadError) -> UInt32 {
        guard remaining >= 4 else { throw .truncated(field: field) }
        defer { offset += 4 }
        return UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    mutating func i64(_ field: StaticString) throws(PayloadError) -> Int64 {
        guard remaining >= 8 else { throw .truncated(field: field) }
        defer { offset += 8 }
        return Int64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: Int64.self))
    }

    /// The bytes of a `str` or `optstr`: nil when absent (only allowed if `optional`).
    /// The string is validated as UTF-8 in place; nothing is copied yet.
    @inline(__always)
    mutating func stringBytes(_ field: StaticString, optional: Bool) throws(PayloadError) -> UnsafeRawBufferPointer? {
        let length = try u16(field)
        if length == BinaryFrame.absentLength {
            guard optional else { throw .absentNotAllowed(field: field) }
            return nil
        }
        let count = Int(length)
        guard remaining >= count else { throw .truncated(field: field) }
        let start = base + offset
        guard UTF8Validation.isValid(start, count: count) else { throw .invalidUTF8(field: field) }
        offset += count
        return UnsafeRawBufferPointer(start: start, count: count)
    }

    @inline(__always)
    mutating func str(_ field: StaticString) throws(PayloadError) -> String {
        try optionalString(field, optional: false)!
    }

    @inline(__always)
    mutating func optStr(_ field: StaticString) throws(PayloadError) -> String? {
        try optionalString(field, optional: true)
    }

    /// A `str` or `optstr` as a `String`. Validated by `UTF8Validation` first: measured,
    /// that plus `String(decoding:)` is about twice as fast as `String(validating:)`.
    @inline(__always)
    private mutating func optionalString(_ field: StaticString, optional: Bool) throws(PayloadError) -> String? {
        guard let bytes = try stringBytes(field, optional: optional) else { return nil }
        return UTF8Validation.string(bytes.baseAddress!, count: bytes.count)
    }

    /// An `optstr` kept as bytes: secrets never become a `String` on the way in.
    mutating func optSecret(_ field: StaticString) throws(PayloadError) -> Secret? {
        guard let bytes = try stringBytes(field, optional: true) else { return nil }
        return Secret(bytes: [UInt8](bytes))
    }

    /// Fails unless every payload byte was read.
    func finish() throws(PayloadError) {
        if remaining != 0 { throw .leftover(remaining) }
    }
}
