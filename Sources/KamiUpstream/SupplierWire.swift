import Foundation
import KamiCrypto
public import KamiHTTP

/// The generic supplier API in its three shapes, both sides: what kamid sends and reads
/// (`request`, `parse`, `verifyCallback`), and what a supplier reads and sends (`decode`,
/// `encode`, `callback`), which `kami-supplier-sim` uses. docs/suppliers.md lists every
/// field; the signatures are checked against vectors computed independently in the tests.
public enum SupplierWire {
    /// What a request asks the supplier.
    public enum Call: Sendable, Hashable {
        case place(PlaceOrder)
        case query(customerOrderNo: String)
        case products
        case balance
    }

    /// The window a callback's (or, at the supplier, a request's) timestamp must fall in.
    public static func windowSeconds(_ style: SupplierStyle) -> Int64 { style == .hmac ? 60 : 300 }

    // MARK: signatures

    /// `form`: upper-case hex MD5 (or SHA-256) of the parameters sorted by name as
    /// `k=v&k=v` (without `sign`, empty values left out) plus `&apikey=KEY`.
    public static func formSign(_ parameters: [String: String], key: [UInt8], digest: SignDigest) -> String {
        let text = parameters.filter { $0.key != "sign" && !$0.value.isEmpty }.sorted { HTTPForm.byteOrder($0.key, $1.key) }
            .map { "\($0.key)=\($0.value)" }.joined(separator: "&") + "&apikey=" + String(decoding: key, as: UTF8.self)
        return hexDigest(Array(text.utf8), digest).uppercased()
    }

    /// `gateway`: lower-case hex MD5 (or SHA-256) of the parameters sorted by name as
    /// `k=v&k=v` (without `sign`) followed directly by the secret.
    public static func gatewaySign(_ parameters: [String: String], key: [UInt8], digest: SignDigest) -> String {
        let text = parameters.filter { $0.key != "sign" }.sorted { HTTPForm.byteOrder($0.key, $1.key) }
            .map { "\($0.key)=\($0.value)" }.joined(separator: "&") + String(decoding: key, as: UTF8.self)
        return hexDigest(Array(text.utf8), digest)
    }

    /// `hmac`: lower-case hex HMAC-SHA256 over `METHOD\nPATH\nTIMESTAMP\nhex(MD5(body))`.
    public static func hmacSign(method: String, path: String, timestamp: String, body: [UInt8], key: [UInt8]) -> String {
        let text = "\(method)\n\(path)\n\(timestamp)\n\(Hex.encode(MD5.hash(body)))"
        return Hex.encode(HMACSHA256.mac(key: key, data: Array(text.utf8)))
    }

    static func hexDigest(_ bytes: [UInt8], _ digest: SignDigest) -> String {
        Hex.encode(digest == .md5 ? MD5.hash(bytes) : SHA256.hash(bytes))
    }

    /// Constant-time comparison of two signatures (as text, case-insensitive hex).
    static func sameSignature(_ a: String, _ b: String) -> Bool {
        let x = Array(a.lowercased().utf8)
        let y = Array(b.lowercased().utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in 0..<x.count { difference |= x[index] ^ y[index] }
        return difference == 0
    }

    /// `yyyy-MM-dd HH:mm:ss` in UTC, the gateway's timestamp.
    public static func gatewayTime(_ seconds: Int64) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec)
    }

    /// Parses `gatewayTime`; nil when malformed.
    public static func gatewaySeconds(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count == 19, bytes[4] == 45, bytes[7] == 45, bytes[10] == 32, bytes[13] == 58, bytes[16] == 58 else {
            return nil
        }
        func number(_ range: Range<Int>) -> Int32? { Int32(String(decoding: bytes[range], as: UTF8.self)) }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
              let minute = number(14..<16), let second = number(17..<19),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        return Int64(timegm(&parts))
    }

    // MARK: JSON helpers

    /// JSON of dictionaries, arrays, strings, integers and booleans, keys sorted by bytes
    /// (Foundation's writer sorts through the locale and costs a fifth of a simulator's time).
    static func json(_ object: Any) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(object, &out)
        return out
    }

    private static func write(_ value: Any, _ out: inout [UInt8]) {
        switch value {
        case let text as String: writeString(text, &out)
        case let flag as Bool: out.append(contentsOf: flag ? Array("true".utf8) : Array("false".utf8))
        case let number as Int: out.append(contentsOf: String(number).utf8)
        case let number as Int64: out.append(contentsOf: String(number).utf8)
        case let number as Double: out.append(contentsOf: String(number).utf8)
        case let list as [Any]:
            out.append(UInt8(ascii: "["))
            for (index, item) in list.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                write(item, &out)
            }
            out.append(UInt8(ascii: "]"))
        case let object as [String: Any]:
            out.append(UInt8(ascii: "{"))
            for (index, key) in object.keys.sorted(by: HTTPForm.byteOrder).enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                writeString(key, &out)
                out.append(UInt8(ascii: ":"))
                write(object[key]!, &out)
            }
            out.append(UInt8(ascii: "}"))
        default:
            out.append(contentsOf: "null".utf8)
        }
    }

    private static func writeString(_ text: String, _ out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case 92: out.append(contentsOf: [92, 92])
            case 10: out.append(contentsOf: [92, UInt8(ascii: "n")])
            case 13: out.append(contentsOf: [92, UInt8(ascii: "r")])
            case 9: out.append(contentsOf: [92, UInt8(ascii: "t")])
            case 0..<0x20: out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    static func jsonText(_ object: Any) -> String { String(decoding: json(object), as: UTF8.self) }

    static func object(_ bytes: [UInt8]) -> [String: Any]? {
        guard !bytes.isEmpty, let value = try? JSONSerialization.jsonObject(with: Data(bytes)) else { return nil }
        return value as? [String: Any]
    }

    static func string(_ value: Any?) -> String? {
        switch value {
        case let text as String: text
        case let number as NSNumber: number.stringValue
        default: nil
        }
    }

    static func int(_ value: Any?) -> Int64? {
        switch value {
        case let number as NSNumber: number.int64Value
        case let text as String: Int64(text)
        default: nil
        }
    }
}
