public import KamiClient

extension KamiCtl {
    /// One parsed command line.
    public struct Invocation: Sendable, Equatable {
        /// kamid's Unix socket.
        public var socketPath: String
        /// Print kamid's reply as a JSON line instead of text.
        public var json: Bool
        /// Longest wait for the reply.
        public var timeoutMs: Int
        /// Report progress of long imports and exports (not with `--json` or `--quiet`).
        public var progress: Bool
        /// What to do.
        public var command: Command

        /// An invocation; the defaults are kamictl's.
        public init(
            socketPath: String = KamiEndpoint.defaultUnixPath, json: Bool = false,
            timeoutMs: Int = KamiCtl.requestTimeoutMsDefault, progress: Bool = true, command: Command
        ) {
            self.socketPath = socketPath
            self.json = json
            self.timeoutMs = timeoutMs
            self.progress = progress
            self.command = command
        }
    }

    /// The commands kamictl knows.
    public enum Command: Sendable, Equatable {
        /// Print the usage of a topic.
        case help(Topic)
        /// `sku set`: create or change a SKU; nil fields keep their value.
        case skuSet(
            sku: String, name: String?, priceCents: Int64?, perUserLimit: Int?, activationURL: String?,
            manualDelivery: Bool? = nil, reviewTTLMs: Int64? = nil, bundle: String? = nil, usageGuide: String? = nil)
        /// `import`: load codes from a CSV file that kamid reads (`path` as given; made
        /// absolute when run).
        case importCSV(path: String, sku: String, batch: String?, dryRun: Bool, sheet: String? = nil)
        /// `stock`: the counters of one SKU, or of every SKU.
        case stock(sku: String?)
        /// `order`: one order; secrets only when asked.
        case order(id: String, showSecrets: Bool)
        /// `verify`: check kamid's invariants.
        case verify
        /// `stats`: kamid's counters.
        case stats
        /// `sku list`: every SKU with its settings and stock.
        case skuList
        /// `export`: kamid writes the SKU's codes to `path` (made absolute when run);
        /// `force` replaces an existing file.
        case export(sku: String, path: String?, withSecrets: Bool, force: Bool)
        /// `entitlements`: the codes a user holds; secrets only when asked.
        case entitlements(user: String, showSecrets: Bool, limit: Int? = nil, cursor: String? = nil)
        /// `void CODE_ID`: one code.
        case voidCode(Int64)
        /// `void --batch B`: every available code of an import batch.
        case voidBatch(String)
        /// `refund`: an issued order is refunded and its codes voided.
        case refund(order: String)
        /// `reload`: kamid reads its config again.
        case reload
        /// `audit verify`: walk the audit hash chain.
        case auditVerify
        /// `token new`: a new token for a storefront client, printed once.
        case tokenNew(client: String)
        /// `supplier ...`, `sku source`, `upstream ...`.
        case upstream(UpstreamCommand)
        /// `risk ...`, `audit reveals`.
        case risk(RiskCommand)
        /// `deliver ORDER`: an order waiting in the review queue gets the codes in
        /// `secretFile` (read by kamictl, one per line), or, with no file, codes from the pool.
        /// `costCents` is what each code cost the shop.
        case deliver(order: String, secretFile: String?, costCents: Int64?)
        /// `campaign ...`, `coupon ...`.
        case money(MoneyCommand)
        /// `webhooks ...`.
        case webhooks(WebhookCommand)
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
        /// `sku list`.
        case skuList = "sku list"
        /// `export`.
        case export
        /// `entitlements`.
        case entitlements
        /// `void`.
        case void
        /// `refund`.
        case refund
        /// `reload`.
        case reload
        /// `audit verify`.
        case auditVerify = "audit verify"
        /// `token new`.
        case tokenNew = "token new"
        /// `supplier`.
        case supplier
        /// `sku source`.
        case skuSource = "sku source"
        /// `upstream`.
        case upstream
        /// `risk` and `audit reveals`.
        case risk
        /// `deliver`.
        case deliver
        /// `campaign` and `coupon`.
        case money = "campaign"
        /// `webhooks`.
        case webhooks
    }

    /// A command line that does not parse.
    public struct UsageError: Error, Sendable, Equatable {
        /// What is wrong, for a person.
        public var message: String
        /// The usage to show with it.
        public var topic: Topic
    }
}
