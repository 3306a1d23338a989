public import KamiCore
public import KamiProtocol
import Synchronization

/// One connection to kamid over TCP or its Unix socket, with blocking calls bounded by
/// timeouts.
///
/// - Encoding: binary frames over TCP and JSON lines over the Unix socket unless
///   `ConnectionOptions.encoding` says otherwise. Operator operations need JSON.
/// - Hello: when the options carry credentials, the connection says `hello` before the
///   initializer returns (TCP needs it; a wrong token throws UNAUTHORIZED).
/// - Failures: a server error comes back as a `Reply` whose result is the failure, and the
///   connection stays usable. A transport failure (reset, end of file, timeout, a reply
///   that cannot be read) closes the connection for good and throws UNAVAILABLE; make a
///   new connection (`KamiClient` does this by itself). Whether kamid did the request is
///   then unknown, and repeating it with the same order id is safe: kamid answers a
///   repeated request with the first answer.
///
/// Thread-safe: calls from several threads are serialised by a lock held for the whole
/// exchange. For parallelism use several connections (a `KamiClient` pool).
public final class KamiConnection: Sendable {
    /// Where it is connected.
    public let endpoint: KamiEndpoint
    /// The encoding it speaks.
    public let encoding: WireEncoding
    private let core: Locked<ConnectionCore>
    /// What the server answered to the connection's hello (nil before one was said).
    private let hello = Locked<WireHello?>(nil)

    /// The protocol version and features the server announced in its hello, so a caller can
    /// check for a feature before using it; nil when the connection has not said hello.
    public var server: WireHello? { hello.withLock { $0 } }

    /// Connects to `endpoint` and, when the options carry credentials, says hello.
    ///
    /// Throws UNAVAILABLE when kamid cannot be reached within `connectTimeoutMs` (or the
    /// hello is not answered within `requestTimeoutMs`), kamid's error when it refuses the
    /// hello (UNAUTHORIZED) or the connection (BUSY), BAD_REQUEST for a Unix path that is
    /// too long.
    public init(endpoint: KamiEndpoint, options: ConnectionOptions = ConnectionOptions()) throws(KamiError) {
        options.check()
        self.endpoint = endpoint
        self.encoding = options.encoding ?? endpoint.defaultEncoding
        let socket = try ClientSocket.connect(to: endpoint, deadline: Deadline(timeoutMs: options.connectTimeoutMs))
        core = Locked(ConnectionCore(endpoint: endpoint, encoding: encoding, requestTimeoutMs: options.requestTimeoutMs,
                                    socket: socket))
        guard let credentials = options.credentials else { return }
        let reply = try send(.hello(client: credentials.client, token: credentials.token))
        do throws(KamiError) {
            let answer = try reply.wireHello()
            hello.withLock { $0 = answer }
        } catch {
            close()
            throw error
        }
    }

    deinit {
        core.withLock { $0.close(reason: "closed") }
    }

    /// Sends one request and waits for its reply, at most `requestTimeoutMs`.
    ///
    /// The reply carries the request's `id` (whatever it was; on the wire the connection
    /// uses its own). Throws BAD_REQUEST or TOO_LARGE for a request that cannot be encoded
    /// (nothing is sent, the connection stays open), UNAVAILABLE on a transport failure
    /// (the connection is then closed; see the type's documentation for retrying).
    public func send(_ request: Request) throws(KamiError) -> Reply {
        try core.withLock { core throws(KamiError) in try core.exchange([request]) }[0]
    }

    /// Says hello (again) and returns what the server answered: its protocol version and
    /// features. On the Unix socket the client name and token are not checked.
    public func sayHello(client: String, token: String) throws(KamiError) -> WireHello {
        let answer = try send(.hello(client: client, token: token)).wireHello()
        hello.withLock { $0 = answer }
        return answer
    }

    /// Sends every request before reading any reply, and returns the replies in the order
    /// of the requests, each with its request's `id`.
    ///
    /// Binary replies are matched to requests by id, JSON replies by order (and checked
    /// against the id). Each next reply must come within `requestTimeoutMs`. At most
    /// `ClientLimits.pipelineRequestsMax` requests per call. A transport failure throws
    /// UNAVAILABLE for the whole batch and closes the connection: some requests may have
    /// been done, and resending the batch is safe for storefront operations, which are
    /// idempotent by order id.
    public func pipeline(_ requests: [Request]) throws(KamiError) -> [Reply] {
        try core.withLock { core throws(KamiError) in try core.exchange(requests) }
    }

    /// False once the connection was closed, by `close()` or by a transport failure.
    public var isOpen: Bool { core.withLock { $0.isOpen } }

    /// Checks an idle connection before reuse: closes it and returns false when kamid has
    /// closed it (or sent something unasked), so that no request is sent into a dead socket.
    func checkIdle() -> Bool { core.withLock { $0.closeIfStale() } }

    /// Closes the connection. Later calls throw UNAVAILABLE. Waits for a call in progress
    /// on another thread to finish first.
    public func close() {
        core.withLock { $0.close(reason: "closed by the client") }
    }
}
