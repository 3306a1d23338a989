import Foundation

/// What the storefront told kamid about one event: who, from where, on what, for how much.
/// Every field is optional; a rule that needs a missing one does not fire.
public struct RiskSignals: Sendable, Hashable {
    /// The event: `reserve` and `issue` for orders (checked inline), or any name the
    /// storefront sends with the `risk` op (`register`, `login`, `browse`, `pay`, …).
    public var event: String
    /// The buyer's id in the storefront.
    public var user: String?
    /// The buyer's IP address as text (IPv4 dotted or IPv6).
    public var ip: String?
    /// The buyer's device id (a fingerprint the storefront computes).
    public var device: String?
    /// The SKU key.
    public var sku: String?
    /// Units of the order.
    public var units: Int?
    /// The order's amount in minor units.
    public var amountCents: Int64?
    /// The payment account (an Alipay or card fingerprint), never a card number.
    public var paymentAccount: String?
    /// The storefront account's age in days.
    public var accountAgeDays: Int64?
    /// Whether the account has a verified phone.
    public var phoneVerified: Bool?
    /// The token of a challenge the buyer passed.
    public var challengeToken: String?

    /// Signals of an event with nothing else known.
    public init(event: String) {
        self.event = event
    }

    /// The parsed IP address, when `ip` is one.
    var address: IPAddress? { ip.flatMap(IPAddress.init) }
}

/// An IPv4 or IPv6 address as 16 bytes (IPv4 mapped into `::ffff:0:0/96`), for networks
/// (`/24`, `/64`) and CIDR lists.
struct IPAddress: Sendable, Hashable {
    /// Network byte order; an IPv4 address is `::ffff:a.b.c.d`.
    let bytes: [UInt8]
    /// Whether the text was IPv4.
    let isV4: Bool
    /// The buyer's network: the /24 of an IPv4 address, the /64 of an IPv6 one.
    let network: [UInt8]

    /// Parses `a.b.c.d` or an IPv6 address (no zone, no brackets); nil for anything else.
    init?(_ text: String) {
        if let v4 = IPAddress.fastV4(text) {
            bytes = v4
            isV4 = true
        } else if let v6 = IPAddress.parseV6(text) {
            bytes = v6
            isV4 = false
        } else {
            return nil
        }
        var network = bytes
        for index in (isV4 ? 15 : 8)..<16 { network[index] = 0 }
        self.network = network
    }

    /// `a.b.c.d` straight from the UTF-8 bytes (every order carries one: no splitting), as
    /// the 16-byte mapped form; nil for anything else (leading zeros, a part over 255).
    private static func fastV4(_ text: String) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 16)
        out[10] = 0xFF
        out[11] = 0xFF
        var part = 0, value = 0, digits = 0, leadingZero = false
        for byte in text.utf8 {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, part < 3 else { return nil }
                out[12 + part] = UInt8(value)
                part += 1
                value = 0
                digits = 0
                leadingZero = false
            } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                if digits == 1 && leadingZero { return nil }
                if digits == 0 && byte == UInt8(ascii: "0") { leadingZero = true }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                digits += 1
                guard digits <= 3, value <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard part == 3, digits > 0 else { return nil }
        out[15] = UInt8(value)
        return out
    }

    /// The address with every bit after the first `bits` cleared; `bits` counts from the
    /// IPv4 address for IPv4 (so `/24` means a.b.c.0).
    func masked(_ bits: Int) -> [UInt8] {
        let total = isV4 ? 96 + bits : bits
        var out = bytes
        for index in 0..<16 {
            let keep = max(0, min(8, total - index * 8))
            out[index] &= keep == 8 ? 0xFF : UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
        }
        return out
    }

    private static func parseV4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let value = UInt8(part), part == "0" || !part.hasPrefix("0") else { return nil }
            out.append(value)
        }
        return out
    }

    private static func parseV6(_ text: String) -> [UInt8]? {
        guard text.contains(":"), text.utf8.count <= 45 else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var v4Tail: [UInt8] = []
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String, allowV4: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if allowV4 && index == pieces.count - 1 && piece.contains(".") {
                    guard let v4 = parseV4(piece) else { return nil }
                    v4Tail = v4
                    continue
                }
                guard (1...4).contains(piece.count), let value = UInt16(piece, radix: 16) else { return nil }
                out.append(value)
            }
            return out
        }
        if halves.count == 2 {
            guard let h = groups(halves[0], allowV4: false), let t = groups(halves[1], allowV4: true) else { return nil }
            head = h
            tail = t
            guard head.count + tail.count + v4Tail.count / 2 <= 7 else { return nil }
        } else {
            guard let h = groups(halves[0], allowV4: true), h.count + v4Tail.count / 2 == 8 else { return nil }
            head = h
        }
        let fill = 8 - head.count - tail.count - v4Tail.count / 2
        let words = head + [UInt16](repeating: 0, count: fill) + tail
        var out: [UInt8] = []
        for word in words { out += [UInt8(word >> 8), UInt8(word & 0xFF)] }
        return out + v4Tail
    }
}

/// A network and its prefix length, from `203.0.113.0/24`, `2001:db8::/32` or a bare
/// address (a /32 or /128).
struct CIDR: Sendable, Hashable {
    let network: [UInt8]
    /// In bits of the 16-byte form (IPv4 prefixes are stored + 96).
    let bits: Int

    init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else { return nil }
        let maximum = address.isV4 ? 32 : 128
        var prefix = maximum
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...maximum).contains(value), parts[1].allSatisfy(\.isNumber) else { return nil }
            prefix = value
        }
        network = address.masked(prefix)
        bits = address.isV4 ? 96 + prefix : prefix
    }

    func contains(_ address: IPAddress) -> Bool {
        var index = 0
        var left = bits
        while left > 0 {
            let take = min(8, left)
            let mask: UInt8 = take == 8 ? 0xFF : UInt8(truncatingIfNeeded: 0xFF << (8 - take))
            if address.bytes[index] & mask != network[index] { return false }
            index += 1
            left -= take
        }
        return true
    }
}
