import Foundation
import KamiCore
import KamiCrypto
import KamiHTTP
import Synchronization

/// Who may see the dashboard. Without a token (`dashboard_token_file` unset) everyone who
/// can reach the loopback-only metrics port may. With one, a request must carry it as
/// `Authorization: Bearer TOKEN` or present the session cookie that `POST /dashboard/login`
/// (the token in a form body, never in a URL) hands out.
///
/// The cookie is `EXPIRY.MAC`: a Unix-seconds expiry and HMAC-SHA256 under the token of a
/// fixed label and that expiry. It holds no token, needs no server-side session table,
/// dies at its expiry, and every cookie dies when the token is replaced. Every comparison
/// is constant-time. Failed sign-ins are throttled for everyone at once (the port is
/// loopback-only, so the throttle guards against a local guesser, not a crowd).
public final class DashboardGate: Sendable {
    /// The session cookie's name.
    static let cookieName = "kami_dashboard"
    /// What the cookie's MAC covers besides its expiry: binds it to this purpose.
    static let sessionLabel = "kami-dashboard-session-v1:"
    /// How long a sign-in lasts: a working day.
    static let sessionSeconds: Int64 = 12 * 3_600
    /// Failed sign-ins allowed per minute (all clients together); past it, sign-ins are
    /// refused with 429 until the minute ends. A 24-character random token is out of reach
    /// either way; this keeps a weak operator-chosen one from falling to a quick local loop.
    static let loginFailuresPerMinuteMax = 10
    /// The longest `Authorization` or `Cookie` header value looked at.
    static let credentialBytesMax = 4_096

    private let token: Locked<[UInt8]?>
    private let failures = Locked<(minute: Int64, count: Int)>((0, 0))

    /// A gate for `token` (nil: open).
    public init(token: String?) {
        self.token = Locked(token.map { Array($0.utf8) })
    }

    /// Replaces the token (a reload); every session cookie of the old one stops working.
    public func setToken(_ token: String?) {
        self.token.withLock { $0 = token.map { Array($0.utf8) } }
    }

    /// Whether a token is configured.
    public var required: Bool { token.withLock { $0 != nil } }

    /// Whether `request` may see the dashboard at `nowMs`.
    func admits(_ request: HTTPRequest, nowMs: Int64) -> Bool {
        guard let key = token.withLock({ $0 }) else { return true }
        if let authorization = request.headers["authorization"], authorization.utf8.count <= Self.credentialBytesMax,
           authorization.lowercased().hasPrefix("bearer ") {
            let presented = Array(authorization.dropFirst("bearer ".count).trimmingCharacters(in: .whitespaces).utf8)
            if constantTimeEquals(presented, key) { return true }
        }
        for header in request.headers.values(for: "cookie") where header.utf8.count <= Self.credentialBytesMax {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == Self.cookieName else {
                    continue
                }
                if Self.validSession(String(parts[1]).trimmingCharacters(in: .whitespaces), key: key, nowMs: nowMs) {
                    return true
                }
            }
        }
        return false
    }

    /// What a sign-in came to.
    enum Login: Equatable {
        /// Set this cookie value.
        case accepted(cookie: String)
        case refused
        /// Too many failures this minute.
        case throttled
    }

    /// Checks the `token` field of a form body.
    func login(formBody: String, nowMs: Int64) -> Login {
        guard let key = token.withLock({ $0 }) else { return .accepted(cookie: "") }
        let minute = nowMs / 60_000
        let throttled = failures.withLock { state -> Bool in
            if state.minute != minute { state = (minute, 0) }
            return state.count >= Self.loginFailuresPerMinuteMax
        }
        if throttled { return .throttled }
        let presented = HTTPForm.decode(formBody)?["token"].map { Array($0.utf8) } ?? []
        guard constantTimeEquals(presented, key) else {
            failures.withLock { state in
                if state.minute != minute { state = (minute, 0) }
                state.count += 1
            }
            return .refused
        }
        return .accepted(cookie: Self.session(key: key, expiresAt: nowMs / 1_000 + Self.sessionSeconds))
    }

    /// The cookie value for a session ending at `expiresAt` (Unix seconds).
    static func session(key: [UInt8], expiresAt: Int64) -> String {
        let mac = HMACSHA256.mac(key: key, data: Array((sessionLabel + String(expiresAt)).utf8))
        return String(expiresAt) + "." + Hex.encode(mac)
    }

    /// Whether `value` is an unexpired session cookie made with `key`.
    static func validSession(_ value: String, key: [UInt8], nowMs: Int64) -> Bool {
        let parts = value.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, let expiresAt = Int64(parts[0]), expiresAt > nowMs / 1_000,
              expiresAt <= nowMs / 1_000 + sessionSeconds else { return false }
        return constantTimeEquals(Array(session(key: key, expiresAt: expiresAt).utf8), Array(value.utf8))
    }
}
