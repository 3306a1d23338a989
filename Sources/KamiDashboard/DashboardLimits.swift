/// The dashboard's bounds: what one page may show and how fresh its figures are. Each is a
/// cost paid on every page view (every `refreshSeconds`) by every open dashboard.
public enum DashboardLimits {
    /// How often the page reloads itself (`<meta http-equiv="refresh">`). Five seconds reads
    /// as "live" to a person and costs one render per open page per five seconds.
    public static let refreshSeconds = 5
    /// Minutes of history kept and charted: "the last hour".
    public static let minutesShown = 60
    /// The short window for the recent p99 and the issue rate, minutes.
    public static let recentMinutes = 5
    /// SKU rows in the stock table; past it the page says how many were left out. A shop
    /// with more SKUs than this reads `/metrics` or `kamictl stats` for the rest.
    public static let stockRowsMax = 200
    /// Supplier rows shown.
    public static let supplierRowsMax = 100
    /// Expiring-codes rows shown (the SKUs with the most first).
    public static let expiringRowsMax = 50
    /// Figures read from the database and the order table (today's sales, the review queue,
    /// codes expiring soon) are reused for this long: the inventory query scans every code
    /// on hand, and counting the review queue walks the order table under its shard locks.
    public static let slowFiguresMaxAgeMs: Int64 = 30_000
    /// "Expiring soon" means within this many days.
    public static let expiringWithinDays = 7
    /// Characters of a SKU key or supplier id shown; longer ones are cut with an ellipsis so
    /// one hostile name cannot stretch the page (the full key is in `/metrics`).
    public static let labelCharactersMax = 64
}
