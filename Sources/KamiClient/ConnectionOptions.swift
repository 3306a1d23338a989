public import KamiProtocol

/// How a connection is made: encoding, credentials and timeouts. Shared by a single
/// `KamiConnection` and by every connection of a `KamiClient` pool.
public struct ConnectionOptions: Sendable, Hashable {
    /// The encoding to speak; nil picks the endpoint's default (binary over TCP, JSON over
    /// the Unix socket). Operator operations need JSON.
    public var encoding: WireEncoding?
    /// When set, the connection says `hello` with these right after connecting (TCP
    /// requires it; the Unix socket accepts it and needs none).
    public var credentials: KamiCredentials?
    /// Longest wait to establish the connection, in 1...`ClientLimits.timeoutMsMax`.
    public var connectTimeoutMs: Int
    /// Longest wait for a reply (for a pipeline: for each next reply), in
    /// 1...`ClientLimits.timeoutMsMax`. When it passes, the connection is closed: a late
    /// reply would otherwise be taken for the answer to the next request.
    public var requestTimeoutMs: Int

    /// Options with the given parts; timeouts default to `ClientLimits`' defaults.
    public init(
        encoding: WireEncoding? = nil, credentials: KamiCredentials? = nil,
        connectTimeoutMs: Int = ClientLimits.connectTimeoutMsDefault,
        requestTimeoutMs: Int = ClientLimits.requestTimeoutMsDefault
    ) {
        self.encoding = encoding
        self.credentials = credentials
        self.connectTimeoutMs = connectTimeoutMs
        self.requestTimeoutMs = requestTimeoutMs
    }

    /// Traps on a timeout outside its range: a programmer error, not an operating one.
    func check() {
        precondition((1...ClientLimits.timeoutMsMax).contains(connectTimeoutMs),
                     "connectTimeoutMs \(connectTimeoutMs) outside 1...\(ClientLimits.timeoutMsMax)")
        precondition((1...ClientLimits.timeoutMsMax).contains(requestTimeoutMs),
                     "requestTimeoutMs \(requestTimeoutMs) outside 1...\(ClientLimits.timeoutMsMax)")
    }
}
