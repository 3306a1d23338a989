import KamiCore
import Glibc
import Synchronization

/// Log priorities with their journald prefixes (`<3>` error ... `<7>` debug).
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case error = 3
    case warning = 4
    case notice = 5
    case info = 6
    case debug = 7

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }

    /// Parses `error`, `warning`, `notice`, `info`, `debug`.
    public init?(name: String) {
        switch name {
        case "error": self = .error
        case "warning": self = .warning
        case "notice": self = .notice
        case "info": self = .info
        case "debug": self = .debug
        default: return nil
        }
    }
}

/// One line per event on stderr: `<6>event key=value ...`, with journald priority prefixes.
/// Values are quoted when they hold spaces, quotes, `=`, backslashes or control characters,
/// and every control character (NUL, newline, carriage return, escape, ...) is escaped, so
/// one event is always exactly one line, whole. Callers never pass a secret, and pass any
/// value a client chose through `untrusted` first, which bounds its length.
public final class Logger: Sendable {
    private let level: Atomic<Int>
    private let lock = Locked<Void>(())

    /// Most UTF-8 bytes of a client-supplied value kept by `untrusted`.
    static let untrustedBytesMax = 64
    /// Most UTF-8 bytes of any value (before escaping); longer ones are cut with a marker.
    static let valueBytesMax = 1_024

    /// Logs at `level` and above.
    public init(level: LogLevel = .info) { self.level = Atomic(level.rawValue) }

    /// Changes the level (reload).
    public func setLevel(_ newLevel: LogLevel) { level.store(newLevel.rawValue, ordering: .relaxed) }

    /// Whether `priority` is logged now (to skip building fields nobody will see).
    @inline(__always)
    public func isEnabled(_ priority: LogLevel) -> Bool { priority.rawValue <= level.load(ordering: .relaxed) }

    /// Writes one line if `priority` is enabled.
    public func log(_ priority: LogLevel, _ event: String, _ fields: KeyValuePairs<String, String> = [:]) {
        guard priority.rawValue <= level.load(ordering: .relaxed) else { return }
        emit(Array(Logger.line(priority, event, fields).utf8))
    }

    private func emit(_ line: [UInt8]) {
        lock.withLock { _ in
            var offset = 0
            while offset < line.count {
                let written = line.withUnsafeBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return }
                offset += written
            }
        }
    }

    /// The text of one log line, newline included.
    static func line(_ priority: LogLevel, _ event: String, _ fields: KeyValuePairs<String, String>) -> String {
        line(priority, event, pairs: fields.map { ($0.key, $0.value) })
    }

    /// As `log(_:_:_:)`, with fields built at run time (other modules' log lines).
    public func log(_ priority: LogLevel, _ event: String, pairs fields: [(String, String)]) {
        guard priority.rawValue <= level.load(ordering: .relaxed) else { return }
        emit(Array(Logger.line(priority, event, pairs: fields).utf8))
    }

    static func line(_ priority: LogLevel, _ event: String, pairs fields: [(String, String)]) -> String {
        var line = "<\(priority.rawValue)>" + escaped(truncated(event, to: valueBytesMax))
        for (key, value) in fields {
            line += " \(key)=" + quote(value)
        }
        return line + "\n"
    }

    /// A value a client chose (a client name from a hello, say), cut to
    /// `untrustedBytesMax` bytes with a marker saying how much was left out.
    public static func untrusted(_ value: String) -> String { truncated(value, to: untrustedBytesMax) }

    /// `value` if it has at most `limit` UTF-8 bytes; otherwise its first whole characters
    /// within `limit` bytes and `...(+N bytes)`.
    static func truncated(_ value: String, to limit: Int) -> String {
        guard value.utf8.count > limit else { return value }
        var kept = 0
        var end = value.unicodeScalars.startIndex
        for index in value.unicodeScalars.indices {
            let size = UTF8.width(value.unicodeScalars[index])
            if kept + size > limit { break }
            kept += size
            end = value.unicodeScalars.index(after: index)
        }
        return String(value.unicodeScalars[..<end]) + "...(+\(value.utf8.count - kept) bytes)"
    }

    /// `value` bounded to `valueBytesMax` bytes, quoted when it needs to be, with every
    /// control character escaped.
    static func quote(_ value: String) -> String {
        let value = truncated(value, to: valueBytesMax)
        let plain = !value.isEmpty && value.unicodeScalars.allSatisfy { scalar in
            scalar != " " && scalar != "\"" && scalar != "=" && scalar != "\\" && !needsEscape(scalar)
        }
        return plain ? value : "\"" + escaped(value) + "\""
    }

    /// `\"`, `\\`, `\n`, `\r`, `\t`, and `\xHH` / `\u{HHHH}` for every other control character
    /// (C0, DEL, C1, and the Unicode line and paragraph separators).
    static func escaped(_ value: String) -> String {
        var out = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if needsEscape(scalar) {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    out += scalar.value < 0x100
                        ? "\\x" + (hex.count == 1 ? "0" : "") + hex
                        : "\\u{" + hex + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029: true
        default: false
        }
    }
}
