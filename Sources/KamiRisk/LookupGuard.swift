/// Slows down whoever enumerates order ids: each failed lookup (an unknown order, or one
/// of another user) takes a token from the asking user's bucket and from the buyer IP's
/// bucket; while either is empty, lookups by that user or from that IP are refused before
/// they touch the store. Never keyed by storefront client alone: one client carries every
/// buyer.
public final class LookupGuard: Sendable {
    private let table: BucketTable
    private let perSecond: Double
    private let burst: Double
    /// Bytes the guard's table costs.
    public let memoryBytes: Int

    /// `perMinute` failures allowed per user and per IP (refilled continuously).
    public init(perMinute: Int, entries: Int = 1 << 16) {
        table = BucketTable(entries: entries)
        perSecond = Double(perMinute) / 60
        burst = Double(perMinute)
        memoryBytes = table.capacity * BucketTable.entryBytes
    }

    private func keys(user: String?, ip: String?) -> [UInt64] {
        var out: [UInt64] = []
        if let user {
            var hasher = Hasher()
            hasher.combine(1 as UInt8)
            hasher.combine(user)
            out.append(UInt64(bitPattern: Int64(hasher.finalize())))
        }
        if let ip {
            var hasher = Hasher()
            hasher.combine(2 as UInt8)
            // The parsed address: `10.0.0.1` and `::ffff:10.0.0.1` are one buyer.
            if let address = IPAddress(ip) { hasher.combine(address.bytes) } else { hasher.combine(ip) }
            out.append(UInt64(bitPattern: Int64(hasher.finalize())))
        }
        return out
    }

    /// Whether a lookup by `user` from `ip` may go ahead.
    public func allows(user: String?, ip: String?, nowMs: Int64) -> Bool {
        keys(user: user, ip: ip).allSatisfy { table.hasToken($0, perSecond: perSecond, burst: burst, nowMs: nowMs) }
    }

    /// Records a failed lookup.
    public func failed(user: String?, ip: String?, nowMs: Int64) {
        for key in keys(user: user, ip: ip) { _ = table.take(key, perSecond: perSecond, burst: burst, nowMs: nowMs) }
    }
}
