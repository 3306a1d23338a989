import KamiProtocol

/// Every limit and default of the client in one place, each with what it costs and why it
/// has its value. `check()` asserts the relations between them; a test calls it.
public enum ClientLimits {
    /// Default time to establish a connection (TCP handshake or Unix connect), hello not
    /// included. Loopback and LAN connects take well under a millisecond; Linux resends a
    /// lost SYN after 1 s, so 2 s survives one lost SYN while a storefront whose kamid is
    /// down still learns it quickly enough to show the buyer an error page.
    public static let connectTimeoutMsDefault = 2_000

    /// Default time to wait for a reply (for a pipeline: for each next reply). A durable
    /// commit takes a few milliseconds and group commit under a flash sale tens of them; a
    /// reply that takes 5 s means kamid or its disk is stuck, and the storefront is better
    /// served by a retry on a fresh connection (safe: see `KamiClient`) than by a hung page.
    public static let requestTimeoutMsDefault = 5_000

    /// Largest timeout accepted, for connect and for requests: `poll(2)` takes an `Int32`
    /// of milliseconds, and a day is longer than any import.
    public static let timeoutMsMax = 86_400_000

    /// Default number of retries after the first attempt fails on a transport failure or a
    /// BUSY reply. With `retryBackoffMsInitialDefault` and doubling, 5 retries wait about
    /// 50 + 100 + 200 + 400 + 800 ms (jittered): long enough to ride out a kamid restart on
    /// a small data set or a burst of BUSY, short enough that a storefront gives up within
    /// a few seconds when kamid is really down.
    public static let retryAttemptsDefault = 5

    /// Most retries a policy may ask for: past this a caller is better off failing and
    /// alerting than hammering a daemon that is down.
    public static let retryAttemptsMax = 100

    /// First backoff before a retry. Long enough for a restarting kamid to bind again,
    /// short enough that a single lost reply costs the buyer no visible delay.
    public static let retryBackoffMsInitialDefault = 50

    /// Largest backoff between two retries: a storefront request should not sleep longer.
    public static let retryBackoffMsMaxDefault = 1_000

    /// Default number of connections in a `KamiClient` pool. Each is one descriptor here
    /// and one connection slot in kamid (10,000 by default, shared by every storefront
    /// process); eight keep a typical PHP-FPM or JVM worker pool busy without queueing,
    /// because each request holds a connection only for one round trip.
    public static let poolSizeDefault = 8

    /// Largest pool: a tenth of kamid's default connection limit, so that ten storefront
    /// processes at most cannot exhaust it on their own.
    public static let poolSizeMax = 1_000

    /// Default longest wait for a free connection when every pooled one is in use. As long
    /// as the default request timeout: a caller that waits longer for a connection than it
    /// would for a reply gains nothing, and a pool that stays exhausted that long is too small.
    public static let poolWaitMsDefault = 5_000

    /// Bytes read from the socket per `read(2)`. 64 KiB holds a few hundred pipelined
    /// storefront replies, so a pipeline drains in few system calls; the read buffer never
    /// holds more than one reply (at most `ProtocolLimits.replyBytesMax`) plus one chunk.
    public static let readChunkBytes = 65_536

    /// Most requests in one `pipeline` call. Replies are kept until all are in, and binary
    /// request ids are 32-bit; past a few thousand requests the socket buffers are full and
    /// a bigger batch gains no throughput, it only holds more memory and delays every reply.
    public static let pipelineRequestsMax = 10_000

    /// Longest Unix socket path: `sun_path` holds 108 bytes including the terminating NUL.
    public static let unixPathBytesMax = 107

    /// Asserts the relations between the limits. A violation is a programmer error.
    public static func check() {
        precondition(connectTimeoutMsDefault > 0 && connectTimeoutMsDefault <= timeoutMsMax,
                     "connectTimeoutMsDefault \(connectTimeoutMsDefault) outside 1...\(timeoutMsMax)")
        precondition(requestTimeoutMsDefault > 0 && requestTimeoutMsDefault <= timeoutMsMax,
                     "requestTimeoutMsDefault \(requestTimeoutMsDefault) outside 1...\(timeoutMsMax)")
        precondition(timeoutMsMax <= Int(Int32.max), "timeoutMsMax \(timeoutMsMax) does not fit poll's Int32")
        precondition(retryAttemptsDefault <= retryAttemptsMax,
                     "retryAttemptsDefault \(retryAttemptsDefault) > retryAttemptsMax \(retryAttemptsMax)")
        precondition(retryBackoffMsInitialDefault > 0 && retryBackoffMsInitialDefault <= retryBackoffMsMaxDefault,
                     "backoff initial \(retryBackoffMsInitialDefault) not in 1...\(retryBackoffMsMaxDefault)")
        precondition(poolSizeDefault >= 1 && poolSizeDefault <= poolSizeMax,
                     "poolSizeDefault \(poolSizeDefault) outside 1...\(poolSizeMax)")
        precondition(poolWaitMsDefault > 0 && poolWaitMsDefault <= timeoutMsMax,
                     "poolWaitMsDefault \(poolWaitMsDefault) outside 1...\(timeoutMsMax)")
        precondition(pipelineRequestsMax <= Int(UInt32.max) - 1,
                     "pipelineRequestsMax \(pipelineRequestsMax) does not fit 32-bit request ids")
        precondition(readChunkBytes > 0 && readChunkBytes <= ProtocolLimits.replyBytesMax,
                     "readChunkBytes \(readChunkBytes) outside 1...\(ProtocolLimits.replyBytesMax)")
    }
}
