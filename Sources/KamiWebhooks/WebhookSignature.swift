public import KamiCrypto

/// How a delivery is signed, and how a receiver checks it:
///
///     Kami-Timestamp: 1733390000                 (Unix seconds when it was sent)
///     Kami-Signature: v1=<64 hex digits>         HMAC-SHA256(secret, "<timestamp>.<body>")
///
/// The receiver recomputes the MAC over the timestamp header, a `.`, and the raw body bytes,
/// compares in constant time, and refuses a timestamp more than `toleranceSeconds` away from
/// its clock (a replayed capture). `Kami-Event-Id` is the event's id: a receiver that saw it
/// already answers 2xx and does nothing (a retry may arrive after a success it never
/// acknowledged).
public enum WebhookSignature {
    public static let timestampHeader = "Kami-Timestamp"
    public static let signatureHeader = "Kami-Signature"
    public static let eventIDHeader = "Kami-Event-Id"
    public static let eventTypeHeader = "Kami-Event-Type"
    /// The version prefix of the signature value.
    public static let scheme = "v1"
    /// How far a receiver should let the timestamp be from its clock.
    public static let toleranceSeconds: Int64 = 300

    /// The `Kami-Signature` value for `body` sent at `timestamp`.
    public static func sign(secret: [UInt8], timestamp: Int64, body: [UInt8]) -> String {
        scheme + "=" + Hex.encode(HMACSHA256.mac(key: secret, data: Array("\(timestamp).".utf8) + body))
    }

    /// Whether `signature` is right for `body` at `timestamp` and the timestamp is within the
    /// tolerance of `nowSeconds` (what a Swift receiver does; the PHP and Go snippets in
    /// docs/webhooks.md do the same).
    public static func verify(secret: [UInt8], timestamp: Int64, body: [UInt8], signature: String,
                              nowSeconds: Int64) -> Bool {
        let expected = Array(sign(secret: secret, timestamp: timestamp, body: body).utf8)
        guard constantTimeEquals(expected, Array(signature.utf8)) else { return false }
        let (skew, overflow) = nowSeconds.subtractingReportingOverflow(timestamp)
        return !overflow && skew.magnitude <= UInt64(toleranceSeconds)
    }
}
