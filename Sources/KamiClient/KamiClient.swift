import Dispatch
public import KamiCore
public import KamiProtocol
import Synchronization

/// A thread-safe client for storefront servers: a bounded pool of `KamiConnection`s and
/// typed calls (`reserve`, `commit`, `issue`, ...) that return the reply's order, codes or
/// stock, or throw `KamiError`.
///
/// **Pool.** At most `Configuration.poolSize` connections, made lazily when a call finds
/// no idle one. A call holds one connection for its round trip; when all are busy it waits
/// for one, at most `Configuration.poolWaitMs`, then throws BUSY. A connection that failed is
/// closed and dropped; the next call that needs one makes a new one.
///
/// **Safe retries.** When a call fails on the transport (connection reset, end of file,
/// timeout, kamid restarting and refusing connections) or kamid answers BUSY, the client
/// waits a backoff (`RetryPolicy`), takes a fresh connection and sends *the same request*
/// again: the same order id, the same arguments. This can never issue twice: kamid is
/// idempotent by order id, so when the first attempt was done and only its reply was lost,
/// the repeat gets the first answer back (the same codes); and the same order id with
/// other arguments would be CONFLICT, not a second order. That is also why the client
/// never invents or changes an order id. Server errors (SOLD_OUT, CONFLICT, LIMIT_REACHED,
/// NOT_FOUND, ...) are answers, and are never retried. Operator mutations (import, void,
/// refund, export, sku_set) are retried only when their connection could not be made,
/// never after they may have been sent.
///
/// Errors: kamid's errors keep their code and message; transport failures that outlast
/// the retries throw UNAVAILABLE with a message naming kamid's address and the cause.
public final class KamiClient: Sendable {
    /// What to connect to and how.
    public struct Configuration: Sendable, Hashable {
        /// kamid's address.
        public var endpoint: KamiEndpoint
        /// Encoding, credentials and timeouts of every pooled connection.
        public var connection: ConnectionOptions
        /// Most connections open at once, in 1...`ClientLimits.poolSizeMax`.
        public var poolSize: Int
        /// Longest wait for a free connection when all `poolSize` are in use, in
        /// 1...`ClientLimits.timeoutMsMax`; then the call throws BUSY.
        public var poolWaitMs: Int
        /// Retries on transport failures and BUSY.
        public var retry: RetryPolicy

        /// A configuration; the defaults are kamid's TCP default address and
        /// `ClientLimits`' values.
        public init(
            endpoint: KamiEndpoint = .defaultTCP, connection: ConnectionOptions = ConnectionOptions(),
            poolSize: Int = ClientLimits.poolSizeDefault, poolWaitMs: Int = ClientLimits.poolWaitMsDefault,
            retry: RetryPolicy = RetryPolicy()
        ) {
            self.endpoint = endpoint
            self.connection = connection
            self.poolSize = poolSize
            self.poolWaitMs = poolWaitMs
            self.retry = retry
        }
    }

    /// The pool's connections and whether it still takes calls.
    private struct Pool {
        enum Phase {
            case open
            /// Terminal: calls throw UNAVAILABLE, returned connections are closed.
            case closed
        }

        var phase = Phase.open
        /// Connections not in use, most recently used last (taken first, so that few stay
        /// warm and the rest can be closed by the server's idle policy).
        var idle: [KamiConnection] = []
    }

    /// How it connects and retries.
    public let configuration: Configuration
    /// One permit per connection the pool may have in use; a call holds one for its round
    /// trip, so no more than `poolSize` connections ever exist.
    private let permits: DispatchSemaphore
    private let pool = Locked(Pool())

    /// A client with the given configuration. No connection is made until the first call.
    public init(_ configuration: Configuration) {
        precondition((1...ClientLimits.poolSizeMax).contains(configuration.poolSize),
                     "poolSize \(configuration.poolSize) outside 1...\(ClientLimits.poolSizeMax)")
        precondition((1...ClientLimits.timeoutMsMax).contains(configuration.poolWaitMs),
                     "poolWaitMs \(configuration.poolWaitMs) outside 1...\(ClientLimits.timeoutMsMax)")
        configuration.connection.check()
        configuration.retry.check()
        self.configuration = configuration
        self.permits = DispatchSemaphore(value: configuration.poolSize)
    }

    /// A client of kamid at `endpoint` with these credentials and every other setting at
    /// its default.
    public convenience init(endpoint: KamiEndpoint, credentials: KamiCredentials?) {
        self.init(Configuration(endpoint: endpoint, connection: ConnectionOptions(credentials: credentials)))
    }

    deinit {
        for connection in pool.withLock({ $0.idle }) { connection.close() }
    }

    /// Closes the idle connections and refuses further calls (UNAVAILABLE). Calls in
    /// progress finish; their connections are closed when they come back.
    public func close() {
        let idle = pool.withLock { pool in
            pool.phase = .closed
            defer { pool.idle = [] }
            return pool.idle
        }
        for connection in idle { connection.close() }
    }

    /// Connections open and idle right now (for metrics and tests).
    public var idleConnections: Int { pool.withLock { $0.idle.count } }

    // MARK: Generic calls

    /// Sends one request on a pooled connection, with the retries described on the type,
    /// and returns its reply (a failed reply is kamid's answer, not thrown). A BUSY reply,
    /// or an UNAVAILABLE one to an operation that is safe to repeat, is retried; when the
    /// retries run out, that reply is returned.
    public func send(_ request: Request) throws(KamiError) -> Reply {
        try withRetries(safe: request.op.isSafeToRepeat) { connection throws(KamiError) in
            try connection.send(request)
        } retryableReply: { reply in
            guard case .failure(let error) = reply.result else { return nil }
            return error
        }
    }

    /// Sends the requests pipelined on one pooled connection and returns their replies in
    /// order (see `KamiConnection.pipeline`). A transport failure resends the whole batch
    /// when every request in it is safe to repeat (storefront operations are); failed
    /// replies inside the batch are returned as they are.
    public func pipeline(_ requests: [Request]) throws(KamiError) -> [Reply] {
        try withRetries(safe: requests.allSatisfy(\.op.isSafeToRepeat)) { connection throws(KamiError) in
            try connection.pipeline(requests)
        } retryableReply: { _ in nil }
    }

    // MARK: Retries

    private enum Attempt<T> {
        case done(T)
        /// Failed with a cause that may pass; nothing useful to return.
        case failed(KamiError)
        /// kamid answered with an error that may pass; returned when retries run out.
        case answered(T, KamiError)
    }

    private func withRetries<T>(
        safe: Bool, _ body: (KamiConnection) throws(KamiError) -> T, retryableReply: (T) -> KamiError?
    ) throws(KamiError) -> T {
        let policy = configuration.retry
        var retry = 0
        while true {
            let outcome = try attempt(safe: safe, body, retryableReply: retryableReply)
            switch outcome {
            case .done(let value):
                return value
            case .answered(let value, _) where retry >= policy.attempts:
                return value
            case .failed(let error) where retry >= policy.attempts:
                let tries = policy.attempts + 1
                throw KamiError(error.code, error.message + (tries > 1 ? " (gave up after \(tries) attempts)" : ""))
            case .answered, .failed:
                Syscall.sleep(ms: policy.backoffMs(retry: retry))
                retry += 1
            }
        }
    }

    /// One attempt: a connection from the pool, the exchange, the connection back.
    private func attempt<T>(
        safe: Bool, _ body: (KamiConnection) throws(KamiError) -> T, retryableReply: (T) -> KamiError?
    ) throws(KamiError) -> Attempt<T> {
        guard pool.withLock({ $0.phase == .open }) else { throw KamiClient.closedError }
        // An exhausted pool is not retried: the wait for a connection already was the backoff.
        try waitForPermit()
        let connection: KamiConnection
        do {
            connection = try checkOut()
        } catch {
            // Nothing was sent yet, so any operation may be tried again if the cause may pass.
            guard error.code == .unavailable || error.code == .busy else { throw error }
            return .failed(error)
        }
        defer { checkIn(connection) }
        let value: T
        do {
            value = try body(connection)
        } catch {
            guard KamiClient.mayRetry(error, safe: safe) else { throw error }
            return .failed(error)
        }
        if let error = retryableReply(value), KamiClient.mayRetry(error, safe: safe) {
            return .answered(value, error)
        }
        return .done(value)
    }

    /// BUSY means kamid did nothing, so anything may be repeated; UNAVAILABLE (a lost
    /// connection, or kamid unable to act now) only what is safe to repeat.
    private static func mayRetry(_ error: KamiError, safe: Bool) -> Bool {
        error.code == .busy || (error.code == .unavailable && safe)
    }

    // MARK: Pool

    private static let closedError = KamiError(.unavailable, "this KamiClient was closed")

    /// Takes one of the `poolSize` permits, waiting at most `poolWaitMs`.
    private func waitForPermit() throws(KamiError) {
        let waitMs = configuration.poolWaitMs
        guard permits.wait(timeout: .now() + .milliseconds(waitMs)) == .success else {
            throw KamiError(.busy, "all \(configuration.poolSize) connections to kamid at \(configuration.endpoint) "
                + "stayed in use for \(waitMs) ms; raise the pool size or lower the load")
        }
    }

    /// An idle connection, or a new one; the caller holds a permit, which is given back
    /// here when this throws.
    private func checkOut() throws(KamiError) -> KamiConnection {
        // Idle connections kamid has closed meanwhile (a restart, its idle timeout) are
        // dropped here rather than found dead by a request, which for an operation that is
        // not safe to repeat would have been a failure.
        while true {
            let taken: KamiConnection?? = pool.withLock { pool in
                guard pool.phase == .open else { return nil }
                return .some(pool.idle.popLast())
            }
            guard case .some(let idle) = taken else {
                permits.signal()
                throw KamiClient.closedError
            }
            guard let idle else { break }
            if idle.checkIdle() { return idle }
        }
        do {
            return try KamiConnection(endpoint: configuration.endpoint, options: configuration.connection)
        } catch {
            permits.signal()
            throw error
        }
    }

    private func checkIn(_ connection: KamiConnection) {
        let kept = connection.isOpen && pool.withLock { pool in
            guard pool.phase == .open else { return false }
            pool.idle.append(connection)
            return true
        }
        if !kept { connection.close() }
        permits.signal()
    }
}
