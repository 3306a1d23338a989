import Glibc
import KamiCore
import KamiHTTP
import Synchronization

/// The HTTP endpoints on a loopback address: `GET /metrics` (Prometheus text), `GET
/// /healthz` (alive), `GET /readyz` (ready to take writes) and, when given one, the
/// dashboard (`/dashboard`, see `DashboardEndpoint`). Served by KamiHTTP's server (the one
/// HTTP/1.1 implementation kamid has, shared with supplier callbacks) on an `IOLoop` of its
/// own, never on an event loop of the storefront protocol: a slow scrape or page never
/// delays an order. One request per connection (`Connection: close`, as scrapers expect),
/// at most `clientsMax` connections at once (more are answered 503), each given `requestTimeoutMs` to send its
/// request (headers at most `requestBytesMax`); a connection that says nothing by then is
/// answered 408.
public final class MetricsServer: @unchecked Sendable {
    // @unchecked: `loop`, `server` and `port` are set in `start`, before any request, and
    // only read after; `stop` runs once, from the thread that started it.
    public typealias Readiness = @Sendable () -> (ready: Bool, reason: String)

    /// Connections at once; past it new ones are closed at once. Scrapers and a few open
    /// dashboards need a handful.
    static let clientsMax = 32
    /// A request's start line and headers.
    static let requestBytesMax = 8_192
    /// A request's body: only the dashboard's sign-in form has one.
    static let bodyBytesMax = 4_096
    /// Header fields of a request: browsers send a dozen or two.
    static let headerCountMax = 64
    static let requestTimeoutMs: Int64 = 2_000

    private let address: ListenAddress
    private let render: @Sendable () -> String
    private let readiness: Readiness
    private let dashboard: DashboardEndpoint?
    private let logger: Logger
    private var loop: IOLoop?
    private var server: HTTPServer?
    /// The port bound (useful with port 0).
    public private(set) var port: UInt16 = 0

    /// An endpoint at `address` (must be loopback) serving `render()` at /metrics and, when
    /// `dashboard` is given, the dashboard.
    public init(address: ListenAddress, logger: Logger, readiness: @escaping Readiness,
                dashboard: DashboardEndpoint? = nil, render: @escaping @Sendable () -> String) {
        self.address = address
        self.render = render
        self.readiness = readiness
        self.dashboard = dashboard
        self.logger = logger
    }

    /// Binds and starts the thread. Throws a `SystemError` for an address that is not
    /// loopback TCP, an `HTTPServerError` (naming the address and the reason) when the bind fails.
    public func start() throws {
        guard address.isLoopback, case .tcp(let host, let requestedPort) = address else {
            throw SystemError(call: "metrics_listen", errno: EINVAL, detail: "\(address) is not a loopback TCP address")
        }
        var options = HTTPServerOptions()
        options.maxConnections = Self.clientsMax
        options.requestTimeoutMs = Self.requestTimeoutMs
        options.idleMs = Self.requestTimeoutMs
        options.limits = HTTPLimits(headerBytesMax: Self.requestBytesMax, bodyBytesMax: Self.bodyBytesMax,
                                    headerCountMax: Self.headerCountMax)
        options.keepAlive = false
        options.answerSilentConnections = true
        let loop = IOLoop(name: "kami-metrics")
        let server = HTTPServer(host: host, port: requestedPort, options: options, loop: loop) {
            [self] request, responder in
            // The handler runs on the loop thread: answer now (rendering is this thread's job).
            responder.respond(respond(to: request))
        }
        do { try server.start() } catch {
            loop.stop()
            throw error
        }
        self.loop = loop
        self.server = server
        port = server.port
        if let dashboard { scheduleTicks(loop, dashboard) }
        let access = dashboard.map { $0.gate.required ? "token" : "open" } ?? "off"
        logger.log(.notice, "metrics-listening", ["address": "\(address)", "port": String(port), "dashboard": access])
    }

    /// Runs the dashboard's minute tick on the loop, once a minute, until the loop stops.
    private func scheduleTicks(_ loop: IOLoop, _ dashboard: DashboardEndpoint) {
        @Sendable func arm() {
            _ = loop.schedule(afterMs: DashboardHistory.bucketMs) {
                dashboard.tick()
                arm()
            }
        }
        loop.execute { arm() }
    }

    /// Stops serving and closes every socket.
    public func stop() {
        guard let server, let loop else { return }
        server.stop()
        loop.stop()
        self.server = nil
        self.loop = nil
    }

    /// The answer to one request.
    func respond(to request: HTTPRequest) -> HTTPResponse {
        if let dashboard, let response = dashboard.respond(to: request) { return response }
        let path = request.path
        guard ["/metrics", "/healthz", "/readyz"].contains(path) else {
            return HTTPResponse(status: 404, text: "try /metrics, /healthz or /readyz"
                + (dashboard == nil ? "" : " or /dashboard") + "\n")
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            var response = HTTPResponse(status: 405, text: "only GET and HEAD\n")
            response.headers.add("Allow", "GET, HEAD")
            return response
        }
        switch path {
        case "/metrics":
            return HTTPResponse(status: 200, text: render(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        case "/healthz":
            return HTTPResponse(status: 200, text: "ok\n")
        default:
            let (ready, reason) = readiness()
            return HTTPResponse(status: ready ? 200 : 503, text: (ready ? "ready" : reason) + "\n")
        }
    }
}
