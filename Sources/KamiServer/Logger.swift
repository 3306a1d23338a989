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
/// Values are quoted when they hold spaces or quotes. Callers never pass a secret.
public final class Logger: Sendable {
    private let level: Atomic<Int>
    private let lock = Mutex<Void>(())

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
        var line = "<\(priority.rawValue)>\(event)"
        for (key, value) in fields {
            line += " \(key)=" + Logger.quote(value)
        }
        line += "\n"
        lock.withLock { _ in
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
    }

    static func quote(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) else {
            return value
        }
        var out = "\""
        for ch in value {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out + "\""
    }
}
