import Foundation
import Glibc

/// How kamid talks to a supplier: which of the generic shapes, or another kamid.
public enum SupplierStyle: String, Sendable, CaseIterable {
    /// Form parameters, `sign = MD5(sorted query + "&apikey=" + key)` in upper case, numeric
    /// states (1 success, 2 failed, 3 partial, 4 in progress, 0 unknown).
    case form
    /// One gateway URL; a `method`, a JSON `biz_content`, a timestamp and an MD5 (or SHA-256)
    /// signature over the sorted parameters plus the secret (Fulu's open platform style).
    case gateway
    /// REST paths; `X-Signature = HMAC-SHA256(key, method \n path \n timestamp \n MD5(body))`
    /// with a ±60 s window.
    case hmac
    /// Another kamid, over its storefront protocol.
    case kami
}

/// The digest a `form` or `gateway` signature uses.
public enum SignDigest: String, Sendable, CaseIterable {
    case md5
    case sha256
}

/// One supplier as the config file defines it (`supplier.ID.KEY = value`). Secrets live in
/// files (mode 0600, like token files), never in the config text.
public struct SupplierConfig: Sendable, Hashable {
    public var id: String
    public var url: String = ""
    public var style: SupplierStyle = .form
    /// Our account at the supplier (merchant id, app key, API key id).
    public var merchantID: String = ""
    /// The signing key's file.
    public var credentialsFile: String = ""
    public var signDigest: SignDigest = .md5
    /// The secret callbacks are signed with, when it differs from the signing key.
    public var callbackSecretFile: String?
    /// A CA file to verify the supplier's certificate with (else the system store).
    public var caFile: String?
    public var connectTimeoutMs: Int64 = 3_000
    /// Longest wait for one reply (the request counts as sent, so its outcome is unknown).
    public var timeoutMs: Int64 = 10_000
    public var maxConcurrent = 64
    /// Most requests per second (0: no limit).
    public var requestsPerSecond = 0
    /// A placed order the supplier still does not know after this long was not sold.
    public var notSoldAfterMs: Int64 = 300_000
    /// First wait before querying an order in progress or of unknown outcome; doubles up to
    /// `pollMaxMs`.
    public var pollMs: Int64 = 1_000
    public var pollMaxMs: Int64 = 30_000
    /// The breaker opens when this share of the last `breakerWindow` attempts failed...
    public var breakerErrorRate = 0.5
    public var breakerWindow = 20
    /// ...and stays open this long before a half-open probe.
    public var breakerOpenMs: Int64 = 10_000
    /// Direct top-up: the supplier credits an account, and its receipt is delivered instead of a code.
    public var directTopUp = false
    /// Allows plain http:// to a host that is not loopback (a network the operator trusts):
    /// without TLS anyone on the path can forge the supplier's answers.
    public var allowPlainHTTP = false

    /// A supplier with defaults.
    public init(id: String) { self.id = id }

    /// The keys a supplier takes, after `supplier.ID.`.
    public static let keys = [
        "url", "style", "merchant_id", "credentials_file", "sign", "callback_secret_file", "ca_file",
        "connect_timeout_ms", "timeout_ms", "max_concurrent", "requests_per_second", "not_sold_after_ms",
        "poll_ms", "poll_max_ms", "breaker_error_rate", "breaker_window", "breaker_open_ms", "direct_top_up",
        "allow_plain_http",
    ]

    /// Sets one key from the config; throws a message saying what is wrong with the value.
    public mutating func set(_ key: String, _ value: String) throws(ConfigValueError) {
        func integer<T: FixedWidthInteger>(_ range: ClosedRange<T>) throws(ConfigValueError) -> T {
            guard let number = T(value), range.contains(number) else {
                throw ConfigValueError("expected an integer in \(range.lowerBound)...\(range.upperBound), got \"\(value)\"")
            }
            return number
        }
        switch key {
        case "url":
            guard let parsed = URL(string: value), let scheme = parsed.scheme, ["http", "https", "kami"].contains(scheme),
                  parsed.host != nil else {
                throw ConfigValueError("expected an http://, https:// or (style kami) kami://HOST:PORT URL, got \"\(value)\"")
            }
            url = value
        case "style":
            guard let parsed = SupplierStyle(rawValue: value) else {
                throw ConfigValueError("expected one of \(SupplierStyle.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(value)\"")
            }
            style = parsed
        case "merchant_id":
            guard !value.isEmpty, value.utf8.count <= 128 else { throw ConfigValueError("expected 1-128 bytes") }
            merchantID = value
        case "credentials_file": credentialsFile = value
        case "sign":
            guard let parsed = SignDigest(rawValue: value) else { throw ConfigValueError("expected md5 or sha256, got \"\(value)\"") }
            signDigest = parsed
        case "callback_secret_file": callbackSecretFile = value
        case "ca_file": caFile = value
        case "connect_timeout_ms": connectTimeoutMs = try integer(100...60_000)
        case "timeout_ms": timeoutMs = try integer(100...300_000)
        case "max_concurrent": maxConcurrent = try integer(1...10_000)
        case "requests_per_second": requestsPerSecond = try integer(0...1_000_000)
        case "not_sold_after_ms": notSoldAfterMs = try integer(1_000...86_400_000)
        case "poll_ms": pollMs = try integer(10...600_000)
        case "poll_max_ms": pollMaxMs = try integer(10...3_600_000)
        case "breaker_error_rate":
            guard let rate = Double(value), rate > 0, rate <= 1 else { throw ConfigValueError("expected a rate in (0, 1], got \"\(value)\"") }
            breakerErrorRate = rate
        case "breaker_window": breakerWindow = try integer(2...10_000)
        case "breaker_open_ms": breakerOpenMs = try integer(100...3_600_000)
        case "direct_top_up":
            guard value == "true" || value == "false" else { throw ConfigValueError("expected true or false") }
            directTopUp = value == "true"
        case "allow_plain_http":
            guard value == "true" || value == "false" else { throw ConfigValueError("expected true or false") }
            allowPlainHTTP = value == "true"
        default:
            throw ConfigValueError("unknown supplier key (known: \(SupplierConfig.keys.joined(separator: ", ")))")
        }
    }

    /// What a complete supplier needs; nil when it has it, else what is missing.
    public var missing: String? {
        if url.isEmpty { return "url" }
        if merchantID.isEmpty && style != .kami { return "merchant_id" }
        if credentialsFile.isEmpty { return "credentials_file" }
        return nil
    }
}

/// A config value that is wrong, and why.
public struct ConfigValueError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Reads a supplier's secret file: it must be a regular file of mode 0600 or stricter
/// (owner only), 1-4096 bytes; a trailing newline is dropped. Errors name the file, never
/// its contents.
public enum SecretFile {
    public static func read(_ path: String) throws(ConfigValueError) -> [UInt8] {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw ConfigValueError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw ConfigValueError("\(path) is not a regular file") }
        guard info.st_mode & 0o077 == 0 else {
            throw ConfigValueError("\(path) has mode \(String(info.st_mode & 0o777, radix: 8)); it must be 0600 or stricter")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigValueError("cannot read \(path)") }
        var bytes = [UInt8](data)
        while let last = bytes.last, last == 10 || last == 13 { bytes.removeLast() }
        guard !bytes.isEmpty, bytes.count <= 4_096 else { throw ConfigValueError("\(path) must hold 1-4096 bytes") }
        return bytes
    }
}
