/// The `{token}` of an activation link: a short-lived, signed name for one code of one order,
/// which the brand's page hands back to kamid (`activate` with `token`) to mark the code used,
/// so that the secret itself never sits in a URL, a browser history or a proxy log.
///
/// Text: `<code id>.<expiry, Unix seconds>.<32 hex digits>`, the digits the first 16 bytes
/// of HMAC-SHA256(activation key, "kami.activate.v1|<code id>|<order seq>|<expiry>"). The
/// activation key is derived from the master key (never the key itself). Only URL-safe
/// characters, so it needs no encoding.
public struct ActivationTokens: Sendable, CustomStringConvertible, CustomReflectable {
    private let key: [UInt8]
    /// Bytes of MAC kept in a token (128 bits).
    static let macBytes = 16

    /// Tokens under the key derived from `master`.
    public init(master: MasterKey) {
        key = HMACSHA256.mac(key: master.bytes, data: Array("kami activation token v1".utf8))
    }

    /// A token for `codeID` of order `orderSeq`, good until `expiresAtSeconds`.
    public func mint(codeID: Int64, orderSeq: Int64, expiresAtSeconds: Int64) -> String {
        "\(codeID).\(expiresAtSeconds)." + Hex.encode(mac(codeID: codeID, orderSeq: orderSeq, expires: expiresAtSeconds))
    }

    /// The code id and expiry a token names, when it is well-formed (not yet checked).
    public static func parse(_ token: String) -> (codeID: Int64, expiresAtSeconds: Int64, tag: [UInt8])? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        // One spelling per token: decimal digits without sign or leading zero, lower-case hex.
        func canonical(_ part: Substring) -> Bool {
            !part.isEmpty && part.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } && !(part.count > 1 && part.first == "0")
        }
        guard token.utf8.count <= 80, parts.count == 3, canonical(parts[0]), canonical(parts[1]),
              let code = Int64(parts[0]), code > 0, let expires = Int64(parts[1]), expires > 0,
              parts[2].utf8.count == macBytes * 2, parts[2].utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }),
              let tag = Hex.decode(String(parts[2]))
        else { return nil }
        return (code, expires, tag)
    }

    /// Whether `tag` is the MAC of the code's token for order `orderSeq` (constant time).
    public func verify(tag: [UInt8], codeID: Int64, orderSeq: Int64, expiresAtSeconds: Int64) -> Bool {
        constantTimeEquals(tag, mac(codeID: codeID, orderSeq: orderSeq, expires: expiresAtSeconds))
    }

    private func mac(codeID: Int64, orderSeq: Int64, expires: Int64) -> [UInt8] {
        Array(HMACSHA256.mac(key: key, data: Array("kami.activate.v1|\(codeID)|\(orderSeq)|\(expires)".utf8)).prefix(ActivationTokens.macBytes))
    }

    public var description: String { "<ActivationTokens>" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
