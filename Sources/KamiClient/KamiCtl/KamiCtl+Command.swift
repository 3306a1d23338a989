extension KamiCtl {
    /// One parsed command line.
    public struct Invocation: Sendable, Equatable {
        /// kamid's Unix socket.
        public var socketPath: String
        /// Print kamid's reply as a JSON line instead of text.
        public var json: Bool
        /// Longest wait for the reply.
        public var timeoutMs: Int
        /// What to do.
        public var command: Command

        /// An invocation; the defaults are kamictl's.
        public init(
            socketPath: String = KamiEndpoint.defaultUnixPath, json: Bool = false,
            timeoutMs: Int = KamiCtl.requestTimeoutMsDefault, command: Command
        ) {
            self.socketPath = socketPath
            self.json = json
            self.timeoutMs = timeoutMs
            self.command = command
        }
    }

    /// The commands kamictl knows.
    public enum Command: Sendable, Equatable {
        /// Print the usage of a topic.
        case help(Topic)
        /// `sku set`: create or change a SKU; nil fields keep their value.
        case skuSet(sku: String, name: String?, priceCents: Int64?, perUserLimit: Int?, activationURL: String?)
        /// `import`: load codes from a CSV file that kamid reads (`path` as given; made
        /// absolute when run).
        case importCSV(path: String, sku: String, batch: String?, dryRun: Bool)
        /// `stock`: the counters of one SKU, or of every SKU.
        case stock(sku: String?)
        /// `order`: one order; secrets only when asked.
        case order(id: String, showSecrets: Bool)
        /// `verify`: check kamid's invariants.
        case verify
        /// `stats`: kamid's counters.
        case stats
    }

    /// What a `--help` or a usage error is about.
    /// The raw value is the command as typed (`sku set`).
    public enum Topic: String, Sendable, CaseIterable {
        /// kamictl as a whole: every command and the global options.
        case general
        /// `sku set`.
        case skuSet = "sku set"
        /// `import`.
        case importCSV = "import"
        /// `stock`.
        case stock
        /// `order`.
        case order
        /// `verify`.
        case verify
        /// `stats`.
        case stats
    }

    /// A command line that does not parse.
    public struct UsageError: Error, Sendable, Equatable {
        /// What is wrong, for a person.
        public var message: String
        /// The usage to show with it.
        public var topic: Topic
    }
}
