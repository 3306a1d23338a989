/// The two encodings of the protocol. A connection picks one with its first byte and keeps
/// it: there is no switching mid-stream, so the decoder never has to guess again.
public enum WireEncoding: Sendable, Hashable {
    /// One JSON object per `\n`-terminated line.
    case json
    /// Length-prefixed binary frames starting with the magic byte 0xB1.
    case binary

    /// The encoding a connection speaks, from its first byte: 0xB1 is binary; `{` or ASCII
    /// whitespace (space, tab, CR, LF) is JSON; anything else is nil, and the server closes
    /// the connection, because a peer speaking neither would not understand an error reply.
    ///
    /// 0xB1 can never start JSON text (it is not valid as the first byte of a UTF-8
    /// sequence), so the two cannot be confused.
    public static func detect(firstByte: UInt8) -> WireEncoding? {
        switch firstByte {
        case BinaryFrame.magic: .binary
        case UInt8(ascii: "{"), UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"): .json
        default: nil
        }
    }
}
