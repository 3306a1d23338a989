/// Every limit of the engine in one place, each with what it costs and why it has its
/// value (after TigerBeetle's `constants.zig`). Relations between limits are asserted
/// in `Limits.check()`, which the engine calls once at start.
public enum Limits {
    /// Longest storefront order id in bytes. Order ids are kept in memory for every order
    /// (the idempotency index), so 64 bytes bounds that index at roughly 100 B per order;
    /// UUIDs (36) and snowflake ids (19) fit with room to spare.
    public static let orderIDBytesMax = 64

    /// Longest user id in bytes. Kept per user with a live hold or an entitlement.
    public static let userIDBytesMax = 64

    /// Longest SKU key in bytes (the storefront's product code).
    public static let skuKeyBytesMax = 64

    /// Longest payment reference in bytes (a payment provider's transaction id).
    public static let paymentRefBytesMax = 128

    /// Longest SKU display name in bytes.
    public static let skuNameBytesMax = 200

    /// Longest activation URL template in bytes.
    public static let activationURLBytesMax = 1024

    /// Most webhook events one `webhook_list` shows, and most ids one `webhook_replay` names.
    public static let webhookEventsPerCallMax = 10_000

    /// Longest usage guide of a SKU, bytes of UTF-8 (a paragraph; it rides on every entitlement
    /// line, and a page of 500 must stay well under the reply limit).
    public static let usageGuideBytesMax = 1_024

    /// How long an activation token (`{token}` in a link) stays good: long enough to click
    /// through to the brand's page, short enough that a link found later in a history is dead.
    public static let activationTokenTTLMs: Int64 = 15 * 60_000

    /// Most units one order may take. A flash sale order is 1; a reseller's bulk order is
    /// larger. Each unit is one code id in the order's record and one row update in its
    /// commit, so 100 keeps a single order's commit small next to a group-commit batch.
    public static let unitsPerOrderMax = 100

    /// Most codes one order may take across all SKUs of a bundle (units x components).
    public static let codesPerOrderMax = 500

    /// Codes in one page of `entitlements` when the caller asks for no size: a "my codes"
    /// screen shows a few dozen; the reply is read in one statement.
    public static let entitlementsPageDefault = 100

    /// Most codes in one page of `entitlements`. A page is one read and one reply, sized like
    /// the largest order (`codesPerOrderMax`), so it always fits in a reply.
    public static let entitlementsPageMax = 500

    /// Longest a `wait` (or `wait_ms` on issue and commit) waits for an order pending
    /// upstream, ms.
    public static let waitMsMax: Int64 = 60_000

    /// Most distinct component SKUs in a bundle.
    public static let bundleComponentsMax = 16

    /// Most reserved-but-unpaid orders one user may hold at once, whatever the SKU. Stops a
    /// single account from locking up stock with holds it never pays.
    public static let pendingHoldsPerUserMax = 20

    /// Shortest hold: below a second a storefront cannot even show the payment page.
    public static let holdTTLMsMin: Int64 = 1_000

    /// Longest hold: 24 hours. Longer holds are stock taken out of a sale indefinitely.
    public static let holdTTLMsMax: Int64 = 86_400_000

    /// Hold used when a caller does not give one: 15 minutes, a common payment timeout.
    public static let holdTTLMsDefault: Int64 = 900_000

    /// Longest wait in the review queue (a risk hold or a manual delivery): 7 days, a long
    /// weekend plus a shop's promise to deliver by hand within a few working days.
    public static let reviewTTLMsMax: Int64 = 604_800_000

    /// Most rows in one CSV import. An import is one transaction; 10 million rows is about
    /// 1 GB of WAL at most, which the disk must hold until the checkpoint.
    public static let codesPerImportMax = 10_000_000

    /// Longest secret in bytes (after trimming). Real card keys are 16-64 characters.
    public static let secretBytesMax = 512

    /// Longest channel, campaign, coupon or distributor name on an order.
    public static let labelBytesMax = 64

    /// Largest cost of one code, and largest SKU price, campaign price or discount, in minor
    /// units (10^11: a billion yuan). With at most 10 million codes in an import and 500 in
    /// an order, no sum kamid makes of them can overflow `Int64`.
    public static let costCentsMax: Int64 = 100_000_000_000

    /// Largest amount of one order (`amount_cents`), and largest campaign budget: 10^13.
    public static let amountCentsMax: Int64 = 10_000_000_000_000

    /// Largest payment bill `reconcile payments` reads (a month of a busy shop's Alipay bill
    /// is tens of megabytes).
    public static let billBytesMax = 256 << 20

    /// Most after-sales cases one order may have had (a storefront cannot open them forever).
    public static let casesPerOrderMax = 5

    /// Most coupon codes added or generated by one request (a request line holds them).
    public static let couponsPerRequestMax = 10_000

    /// Longest card number delivered by hand (the CSV import's bound too).
    public static let cardNumberBytesMax = 128

    /// Most SKUs (and bundles) in the catalog; the pool preallocates a table this size.
    public static let skusMax = 65_536

    /// Most mutations the group-commit writer puts into one transaction. Larger batches
    /// amortise the fsync further but delay the first request of the batch; 1024 commits
    /// in about 2-4 ms on this machine's SQLite.
    public static let commitBatchMax = 1024

    /// Longest the writer waits for more mutations before committing a batch that is not
    /// full, in microseconds. 0 means "commit whatever is queued when the disk is free",
    /// which already batches under load (the Redis way).
    public static let commitDelayUsMax = 10_000

    /// Most mutations waiting for the writer. Past it callers get BUSY rather than queueing
    /// without bound while the disk is slow.
    public static let commitQueueDepthMax = 65_536

    /// Asserts the relations between limits. A violation is a programmer error.
    public static func check() {
        precondition(CodeState.allCases.count <= 8 && OrderState.allCases.count <= 8,
                     "the state machines pack their moves into 64 bits: at most 8 states each")
        precondition(codesPerOrderMax >= unitsPerOrderMax, "codesPerOrderMax \(codesPerOrderMax) < unitsPerOrderMax")
        precondition(entitlementsPageDefault <= entitlementsPageMax && entitlementsPageMax <= codesPerOrderMax,
                     "entitlements page \(entitlementsPageDefault)/\(entitlementsPageMax) vs codesPerOrderMax")
        precondition(commitQueueDepthMax >= commitBatchMax, "commit queue \(commitQueueDepthMax) < batch")
        precondition(holdTTLMsMin <= holdTTLMsDefault && holdTTLMsDefault <= holdTTLMsMax, "hold TTL bounds")
        precondition(skusMax <= Int(Int32.max), "skusMax \(skusMax) does not fit SkuID")
    }
}
