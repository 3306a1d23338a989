import Glibc
import KamiCore
public import KamiDashboard
import KamiHTTP

/// The dashboard's routes on the metrics port: `GET /dashboard` (the page, or the sign-in
/// form when a token is required and not presented), `POST /dashboard/login`,
/// `POST /dashboard/logout`, and `GET /` pointing at the page. The page is rendered from
/// `snapshot()` on the metrics port's own thread, never on an event loop.
public final class DashboardEndpoint: Sendable {
    public typealias Snapshot = @Sendable () -> DashboardSnapshot

    let gate: DashboardGate
    private let snapshot: Snapshot
    private let logger: Logger
    private let clockMs: @Sendable () -> Int64
    /// Run once a minute by the metrics port's loop (closes a minute of history).
    let tick: @Sendable () -> Void

    /// Headers on every dashboard response: nothing may load from anywhere (the page has
    /// no script and needs none), no framing, no caching, no referrer.
    static let securityHeaders: [(String, String)] = [
        ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            + "frame-ancestors 'none'; base-uri 'none'"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ]

    /// An endpoint showing `snapshot()` behind `gate`; `tick` runs once a minute.
    /// `clockMs` is the wall clock, Unix ms (nil: the system's).
    public init(gate: DashboardGate, logger: Logger, clockMs: (@Sendable () -> Int64)? = nil,
                tick: @escaping @Sendable () -> Void = {}, snapshot: @escaping Snapshot) {
        self.gate = gate
        self.snapshot = snapshot
        self.logger = logger
        self.clockMs = clockMs ?? { DashboardEndpoint.systemWallMs() }
        self.tick = tick
    }

    /// The answer to `request`, or nil when its path is not the dashboard's.
    func respond(to request: HTTPRequest) -> HTTPResponse? {
        switch request.path {
        case "/":
            guard ["GET", "HEAD"].contains(request.method) else { return Self.notAllowed("GET, HEAD") }
            return Self.redirect()
        case "/dashboard":
            guard ["GET", "HEAD"].contains(request.method) else { return Self.notAllowed("GET, HEAD") }
            guard gate.admits(request, nowMs: clockMs()) else {
                return Self.page(401, LoginPage.render(message: nil),
                                 extra: [("WWW-Authenticate", "Bearer realm=\"kamid dashboard\"")])
            }
            return Self.page(200, DashboardPage.render(snapshot(), logoutForm: gate.required))
        case "/dashboard/login":
            guard request.method == "POST" else { return Self.notAllowed("POST") }
            switch gate.login(formBody: request.bodyText, nowMs: clockMs()) {
            case .accepted(let cookie):
                guard gate.required else { return Self.redirect() }
                logger.log(.notice, "dashboard-signed-in")
                return Self.redirect(cookie: "\(DashboardGate.cookieName)=\(cookie); Path=/dashboard; "
                    + "Max-Age=\(DashboardGate.sessionSeconds); HttpOnly; SameSite=Strict")
            case .refused:
                logger.log(.warning, "dashboard-sign-in-refused", ["reason": "wrong token"])
                return Self.page(401, LoginPage.render(message: "That is not the dashboard token."))
            case .throttled:
                logger.log(.warning, "dashboard-sign-in-refused", ["reason": "too many failures this minute"])
                return Self.page(429, LoginPage.render(message: "Too many failed sign-ins; try again in a minute."),
                                 extra: [("Retry-After", "60")])
            }
        case "/dashboard/logout":
            guard request.method == "POST" else { return Self.notAllowed("POST") }
            return Self.redirect(cookie: "\(DashboardGate.cookieName)=; Path=/dashboard; Max-Age=0; HttpOnly; "
                + "SameSite=Strict")
        default:
            return nil
        }
    }

    /// The system's wall clock, Unix ms.
    static func systemWallMs() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1_000 + Int64(spec.tv_nsec) / 1_000_000
    }

    static func page(_ status: Int, _ html: String, extra: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(status: status,
                     headers: HTTPHeaders([("Content-Type", "text/html; charset=utf-8")] + securityHeaders + extra),
                     body: Array(html.utf8))
    }

    /// 303 to the page (after a form: the browser then GETs it), optionally setting a cookie.
    static func redirect(cookie: String? = nil) -> HTTPResponse {
        var headers = HTTPHeaders([("Location", "/dashboard"), ("Content-Type", "text/plain; charset=utf-8")]
            + securityHeaders)
        if let cookie { headers.add("Set-Cookie", cookie) }
        return HTTPResponse(status: 303, headers: headers, body: Array("see /dashboard\n".utf8))
    }

    static func notAllowed(_ allow: String) -> HTTPResponse {
        var response = HTTPResponse(status: 405, text: "only \(allow)\n")
        response.headers.add("Allow", allow)
        return response
    }
}
