import KamiCore

/// Every limit of the wire protocol in one place, each with what it costs and why it has
/// its value. Relations between them (and with the engine's `Limits`) are asserted in
/// `check()`, which the server calls once at start and a test calls on every run.
public enum ProtocolLimits {
    /// Bytes in a binary frame header: magic, version, op, flags (status in replies),
    /// request id (u32), payload length (u32). Fixed, so a decoder knows after 12 bytes how
    /// long the frame is without scanning it.
    public static let frameHeaderBytes = 12

    /// Largest binary request frame, header included. A connection must buffer one whole
    /// frame before it can decode it, so this is the floor of every connection's read
    /// buffer: 64 KiB holds the largest storefront request (a few hundred bytes) a hundred
    /// times over, while 10,000 connections with a full buffer stay under 1 GiB. The claimed
    /// payload length is checked against it before anything is read or allocated.
    public static let frameBytesMax = 65_536

    /// Largest binary request payload: what is left of `frameBytesMax` after the header.
    public static let framePayloadBytesMax = frameBytesMax - frameHeaderBytes

    /// Longest JSON request line, the `\n` included, and with any blank lines before it
    /// counted in (a client cannot make the server hold more than this much of a line, even
    /// by sending nothing but newlines). Same reasoning and the same value as
    /// `frameBytesMax`: both encodings share one read buffer size.
    public static let jsonLineBytesMax = 65_536

    /// Largest reply, as a binary frame (header included) or a JSON line (newline
    /// included). Larger than the request limits because replies carry codes: an order of
    /// `Limits.codesPerOrderMax` codes with secrets, card numbers and activation URLs at
    /// their maximum needs about 1 MiB in binary. A reply only exists while it is being
    /// written, so this costs memory per busy connection, not per idle one. A reply that
    /// would be larger is replaced by a TOO_LARGE error, never cut short; clients reject a
    /// longer reply as fatal.
    public static let replyBytesMax = 2_097_152

    /// Longest `str` in a binary frame: a u16 length, with 0xFFFF reserved to mean "absent"
    /// in an `optstr`.
    public static let stringBytesMax = 65_534

    /// Most codes in one binary reply: the count is a u16. (A reply that many codes would
    /// exceed `replyBytesMax` anyway and becomes TOO_LARGE.)
    public static let codesPerReplyMax = Int(UInt16.max)

    /// Deepest nesting of arrays and objects the reply parser accepts (operator replies
    /// are the only nested ones, and they nest two or three levels). The parser recurses
    /// once per level, so this bounds its stack use.
    public static let jsonDepthMax = 32

    /// The smallest request limit a server may be configured with: the largest storefront
    /// request still fits, in binary and in JSON with every identifier escaped.
    public static var requestBytesLimitMin: Int { 2 * storefrontRequestBytesMax + 256 }

    /// Bytes a storefront request needs at most in binary, from the engine's identifier
    /// limits: `issue`, the largest, with every identifier at its maximum and `ip` and
    /// `device` at 255 bytes each.
    static var storefrontRequestBytesMax: Int {
        let strings = [Limits.orderIDBytesMax, Limits.userIDBytesMax, Limits.skuKeyBytesMax,
                       Limits.paymentRefBytesMax, 255, 255]
        return frameHeaderBytes + strings.reduce(0) { $0 + 2 + $1 } + 4
    }

    /// Bytes the largest order reply needs in binary: every code with its SKU key, and a
    /// secret, a card number and an activation URL each at `Limits.secretBytesMax` /
    /// `Limits.activationURLBytesMax`.
    static var orderReplyBytesMax: Int {
        let code = 8 + (2 + Limits.skuKeyBytesMax) + 2 * (2 + Limits.secretBytesMax)
            + (2 + Limits.activationURLBytesMax)
        let head = (2 + Limits.orderIDBytesMax) + 1 + (2 + Limits.skuKeyBytesMax) + 4 + 8 + 2
        return frameHeaderBytes + head + Limits.codesPerOrderMax * code
    }

    /// Asserts the relations between the limits. A violation is a programmer error.
    public static func check() {
        precondition(frameHeaderBytes < frameBytesMax,
                     "frame header \(frameHeaderBytes) >= frameBytesMax \(frameBytesMax)")
        precondition(frameBytesMax <= Int(UInt32.max), "frameBytesMax \(frameBytesMax) does not fit the u32 length")
        precondition(replyBytesMax <= Int(UInt32.max), "replyBytesMax \(replyBytesMax) does not fit the u32 length")
        precondition(replyBytesMax >= frameBytesMax && replyBytesMax >= jsonLineBytesMax,
                     "replyBytesMax \(replyBytesMax) below a request limit")
        precondition(stringBytesMax < Int(UInt16.max),
                     "stringBytesMax \(stringBytesMax) collides with the absent marker")
        precondition(storefrontRequestBytesMax <= frameBytesMax,
                     "largest storefront request \(storefrontRequestBytesMax) > frameBytesMax \(frameBytesMax)")
        // JSON escapes at most double a printable-ASCII identifier, plus key names and punctuation.
        precondition(2 * storefrontRequestBytesMax + 256 <= jsonLineBytesMax,
                     "largest storefront JSON request may exceed jsonLineBytesMax \(jsonLineBytesMax)")
        precondition(orderReplyBytesMax <= replyBytesMax,
                     "largest order reply \(orderReplyBytesMax) > replyBytesMax \(replyBytesMax)")
        precondition(Limits.codesPerOrderMax <= codesPerReplyMax, "codesPerOrderMax exceeds the u16 code count")
        precondition(jsonDepthMax >= 2, "jsonDepthMax \(jsonDepthMax) cannot hold an error object")
    }
}
