public import KamiCore
public import KamiUpstream

/// What an operator can ask of kamid itself rather than of the engine: reload its config and
/// mint client tokens. The daemon supplies these; a bare `Server` (tests) answers that they
/// are not available.
public struct DaemonControls: Sendable {
    /// Re-reads and applies the config file; a failure leaves the running config untouched.
    public var reload: @Sendable () -> Result<ReloadReport, KamiError>
    /// Makes a new token for a client (replacing its old one), stores it, and accepts it at
    /// once.
    public var newToken: @Sendable (_ client: String) -> Result<NewToken, KamiError>
    /// The upstream service, when suppliers are configured (its supplier operations).
    public var upstream: @Sendable () -> UpstreamService?

    /// Controls from the closures.
    public init(
        reload: @escaping @Sendable () -> Result<ReloadReport, KamiError>,
        newToken: @escaping @Sendable (_ client: String) -> Result<NewToken, KamiError>,
        upstream: @escaping @Sendable () -> UpstreamService? = { nil }
    ) {
        self.reload = reload
        self.newToken = newToken
        self.upstream = upstream
    }

    /// For a server run without a daemon around it.
    public static let unavailable = DaemonControls(
        reload: { .failure(KamiError(.badRequest, "this server has no config file to reload")) },
        newToken: { _ in .failure(KamiError(.badRequest, "this server has no token store")) })
}

/// What a successful reload did.
public struct ReloadReport: Sendable, Equatable {
    /// Config keys whose new values are in effect now.
    public var applied: [String]
    /// Config keys that changed in the file but only take effect after a restart.
    public var restartRequired: [String]
    /// How long parsing, validating and applying took.
    public var durationUs: Int64

    public init(applied: [String], restartRequired: [String], durationUs: Int64) {
        self.applied = applied
        self.restartRequired = restartRequired
        self.durationUs = durationUs
    }
}

/// A token made by `DaemonControls.newToken`.
public struct NewToken: Sendable {
    /// The client it authenticates.
    public var client: String
    /// The token itself: shown once to the operator, never logged.
    public var token: Secret
    /// Where it is stored (0600).
    public var path: String
    /// Whether the client had a token before (now no longer accepted).
    public var replaced: Bool

    public init(client: String, token: Secret, path: String, replaced: Bool) {
        self.client = client
        self.token = token
        self.path = path
        self.replaced = replaced
    }
}
