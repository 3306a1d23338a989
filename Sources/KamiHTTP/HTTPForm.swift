/// `application/x-www-form-urlencoded`, as HTML forms post it and as supplier APIs sign
/// it: the dashboard's login, the supplier wire's form requests and callbacks.
public enum HTTPForm {
    /// RFC 3986's unreserved bytes: never percent-encoded.
    static let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)

    /// The parameters sorted by name (`byteOrder`), each name and value percent-encoded.
    public static func encode(_ parameters: [String: String]) -> String {
        parameters.sorted { byteOrder($0.key, $1.key) }.map { "\(percent($0.key))=\(percent($0.value))" }.joined(separator: "&")
    }

    /// `text` with every byte outside the unreserved set written as `%XX` (of its UTF-8).
    public static func percent(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if unreserved.contains(byte) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Sorting "by name" as signatures define it: by bytes (ASCII order), never by the
    /// locale's collation.
    public static func byteOrder(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

    /// Parses a form body (or query); nil when a pair or an escape is malformed, the text is
    /// not UTF-8 once decoded, or a name comes twice.
    public static func decode(_ text: String) -> [String: String]? {
        var result: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = unpercent(parts[0]), let value = unpercent(parts.count > 1 ? parts[1] : "") else { return nil }
            guard result[name] == nil else { return nil }
            result[name] = value
        }
        return result
    }

    /// `text` with `%XX` escapes and `+` (a space) decoded; nil when an escape is malformed or
    /// the bytes are not UTF-8.
    public static func unpercent(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "+") {
                bytes.append(32)
            } else if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                      let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else { return nil }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
