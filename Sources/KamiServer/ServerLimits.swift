/// Limits of the network side, each with its cost (see `Limits` for the engine's).
public enum ServerLimits {
    /// Bytes read from a socket into a connection's buffer at most; a whole frame or JSON line
    /// (64 KiB at most) always fits.
    public static let readBufferBytes = 128 * 1024

    /// A connection's read buffer to begin with, and again once it is drained: the largest
    /// storefront request needs under 2 KiB, so an idle or slow connection holds this much, not
    /// `readBufferBytes`. The buffer doubles (up to `readBufferBytes`) only while a request that
    /// does not fit is arriving.
    public static let readBufferInitialBytes = 4 * 1024

    /// Unsent reply bytes one connection may hold before kamid stops reading its requests
    /// (backpressure): a client that does not read its replies costs at most this much.
    public static let writeBufferBytesMax = 1024 * 1024

    /// Requests of one connection in flight (decoded, not yet answered) before kamid stops
    /// reading more from it. Deep enough for any sane pipeline; bounded so one connection
    /// cannot queue unbounded work.
    public static let pipelineDepthMax = 1024

    /// Failed `hello`s allowed per source address per `helloFailureWindowMs` before further
    /// attempts are refused without checking the token.
    public static let helloFailuresMax = 10
    public static let helloFailureWindowMs: Int64 = 60_000

    /// Distinct source addresses remembered for hello rate limiting (oldest forgotten first).
    public static let helloFailureAddressesMax = 10_000

    /// Largest number of events taken from epoll per wake-up.
    public static let epollEventsMax = 256

    /// Answered slots kept at the front of a connection's slot list before they are dropped
    /// in one move (amortises the shift of the array under deep pipelines).
    public static let answeredSlotsCompactAt = 1024

    /// An output buffer at most this large keeps its capacity once drained (no reallocation
    /// per reply); a larger one, grown by a burst, is given back.
    public static let outputCapacityKeptBytes = 256 * 1024

    /// Shortest token accepted in a token file: 16 characters of a random token is already
    /// far beyond guessing, and a shorter one is most likely a mistake.
    public static let tokenCharactersMin = 16

    /// How often a loop checks idle timeouts, ms.
    public static let idleCheckIntervalMs: Int64 = 1_000

    /// How long a listener stays out of epoll after accept failed for want of descriptors
    /// (EMFILE, ENFILE) or memory: long enough not to spin, short enough that a freed
    /// descriptor is used soon.
    public static let acceptPauseMs: Int64 = 100

    /// At most one `accept-paused` warning per this many ms while descriptors stay short.
    public static let acceptPauseLogIntervalMs: Int64 = 1_000

    static func check() {
        precondition(readBufferBytes >= 2 * 65_536, "read buffer \(readBufferBytes) must hold two maximal frames")
        precondition(readBufferInitialBytes > 0 && readBufferInitialBytes <= readBufferBytes, "initial read buffer")
        precondition(writeBufferBytesMax >= 65_536, "write buffer \(writeBufferBytesMax) below one frame")
    }
}
