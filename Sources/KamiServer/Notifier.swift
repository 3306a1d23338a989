import CKamiLinux
import Foundation
import Glibc

/// The systemd notification protocol, spoken directly (no libsystemd): each message is one
/// datagram of `KEY=value` lines sent to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a
/// leading `@` is the abstract namespace). Without `$NOTIFY_SOCKET` (not under systemd, or
/// not `Type=notify`) every call does nothing.
public final class Notifier: Sendable {
    /// The socket path as given (for logs).
    public let path: String
    /// Half of `$WATCHDOG_USEC`, in ms, when systemd asked for watchdog pings for this
    /// process; nil otherwise.
    public let watchdogIntervalMs: Int64?
    private let fd: Int32
    private let address: [UInt8]

    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`; nil when there is no
    /// socket to notify.
    public static func fromEnvironment(_ environment: [String: String]? = nil) -> Notifier? {
        let environment = environment ?? ProcessInfo.processInfo.environment
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return nil }
        var interval: Int64?
        if let text = environment["WATCHDOG_USEC"], let usec = Int64(text), usec > 0 {
            // WATCHDOG_PID names the process the watchdog is for; absent means us.
            if let pid = environment["WATCHDOG_PID"].flatMap({ Int32($0) }), pid != getpid() {
                interval = nil
            } else {
                interval = max(1, usec / 2_000)
            }
        }
        return Notifier(path: path, watchdogIntervalMs: interval)
    }

    /// A notifier for the socket at `path` (`@name` for the abstract namespace).
    public init?(path: String, watchdogIntervalMs: Int64? = nil) {
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else { return nil }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        self.fd = fd
        self.path = path
        self.address = bytes
        self.watchdogIntervalMs = watchdogIntervalMs
    }

    deinit { close(fd) }

    /// Sends one message (lines joined by `\n`). Returns whether the datagram went out;
    /// failures are not fatal to kamid (systemd may be restarting).
    @discardableResult
    public func send(_ lines: String...) -> Bool { send(lines: lines) }

    /// Sends one message made of `lines`.
    @discardableResult
    public func send(lines: [String]) -> Bool {
        let message = Array((lines.joined(separator: "\n") + "\n").utf8)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: address)
        }
        // Abstract addresses are exactly as long as given; paths include their NUL.
        let length = MemoryLayout<sa_family_t>.size + address.count + (address.first == 0 ? 0 : 1)
        let result = message.withUnsafeBytes { bytes in
            withUnsafePointer(to: &addr) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), sa, socklen_t(length))
                }
            }
        }
        return result == message.count
    }

    /// `READY=1` with a status line.
    public func ready(status: String) { send("READY=1", "STATUS=\(Notifier.clean(status))") }

    /// `RELOADING=1` with the monotonic time systemd needs to match it to `READY=1`.
    public func reloading(status: String) {
        send("RELOADING=1", "MONOTONIC_USEC=\(Notifier.monotonicUs())", "STATUS=\(Notifier.clean(status))")
    }

    /// `STOPPING=1`.
    public func stopping(status: String) { send("STOPPING=1", "STATUS=\(Notifier.clean(status))") }

    /// `STATUS=` alone.
    public func status(_ text: String) { send("STATUS=\(Notifier.clean(text))") }

    /// `WATCHDOG=1`.
    func watchdog() { send("WATCHDOG=1") }

    /// CLOCK_MONOTONIC in microseconds, as systemd reads it.
    static func monotonicUs() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }

    /// A status is one line.
    static func clean(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }
}
