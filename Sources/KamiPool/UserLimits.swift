public import KamiCore

/// Per-user counters that enforce purchase limits under any concurrency: units of each SKU
/// a user holds (reserved or bought, as the engine counts them), and the number of pending
/// (unpaid) holds a user has open.
///
/// Users are spread by a hash of their id over `PoolLimits.userLimitShards` dictionaries,
/// each behind its own lock, so that concurrent buyers rarely wait for each other while one
/// user's check-and-add stays atomic. An entry is deleted when its count drops to zero, so
/// memory follows what users currently hold, not every user ever seen.
///
/// The hash is Swift's `Hasher`, seeded per process: a client cannot choose user ids that
/// all land in one shard (or one dictionary bucket).
public final class UserLimits: Sendable {
    private struct UserSku: Hashable, Sendable {
        let user: String
        let sku: SkuID
    }

    private struct Shard: Sendable {
        var units: [UserSku: Int] = [:]
        var pendingHolds: [String: Int] = [:]
    }

    private let shards: [Locked<Shard>]

    /// Creates empty counters.
    public init() {
        checkPoolLimits()
        shards = (0..<PoolLimits.userLimitShards).map { _ in Locked(Shard()) }
    }

    @inline(__always)
    private func shard(_ user: String) -> Locked<Shard> { shards[shardIndex(user)] }

    @inline(__always)
    private func shardIndex(_ user: String) -> Int {
        Int(UInt(bitPattern: user.hashValue) % UInt(shards.count))
    }

    /// Adds `units` to what `user` holds of `sku` if the total stays within `limit`.
    ///
    /// - Parameters:
    ///   - limit: the most units of `sku` the user may hold; 0 means unlimited (the units are
    ///     still counted, so that a later `release` balances).
    /// - Returns: true if added; false, with nothing changed, if the limit would be passed.
    /// - Precondition: `units >= 1` and `limit >= 0`.
    public func tryAcquire(user: String, sku: SkuID, units: Int, limit: Int) -> Bool {
        precondition(units >= 1, "tryAcquire: units \(units) must be at least 1")
        precondition(limit >= 0, "tryAcquire: limit \(limit) must not be negative")
        let key = UserSku(user: user, sku: sku)
        return shard(user).withLock { shard in
            let held = shard.units[key] ?? 0
            guard limit == 0 || units <= limit - held else { return false }
            shard.units[key] = held + units
            return true
        }
    }

    /// Adds what users hold at boot (no limit applies), each shard's under one lock.
    public func restore(_ holdings: [(user: String, sku: SkuID, units: Int)]) {
        var byShard = [[Int]](repeating: [], count: shards.count)
        for (index, holding) in holdings.enumerated() {
            precondition(holding.units >= 1, "restore: units \(holding.units) must be at least 1")
            byShard[shardIndex(holding.user)].append(index)
        }
        for (shard, indices) in zip(shards, byShard) where !indices.isEmpty {
            shard.withLock { shard in
                for index in indices {
                    shard.units[UserSku(user: holdings[index].user, sku: holdings[index].sku), default: 0] += holdings[index].units
                }
            }
        }
    }

    /// Gives back `units` of `sku` that `user` held (a released or expired hold, a refund).
    ///
    /// - Precondition: the user holds at least `units` of `sku`.
    public func release(user: String, sku: SkuID, units: Int) {
        precondition(units >= 1, "release: units \(units) must be at least 1")
        let key = UserSku(user: user, sku: sku)
        shard(user).withLock { shard in
            let held = shard.units[key] ?? 0
            precondition(held >= units, "release: \(units) units of SKU \(sku) but the user holds \(held)")
            shard.units[key] = held == units ? nil : held - units
        }
    }

    /// The units of `sku` that `user` holds now.
    public func units(user: String, sku: SkuID) -> Int {
        shard(user).withLock { $0.units[UserSku(user: user, sku: sku)] ?? 0 }
    }

    /// Counts one more pending hold for `user` if that stays within `limit`.
    ///
    /// - Parameter limit: the most pending holds the user may have; 0 means unlimited.
    /// - Returns: true if counted; false, with nothing changed, at the limit.
    public func tryAddPendingHold(user: String, limit: Int) -> Bool {
        precondition(limit >= 0, "tryAddPendingHold: limit \(limit) must not be negative")
        return shard(user).withLock { shard in
            let pending = shard.pendingHolds[user] ?? 0
            guard limit == 0 || pending < limit else { return false }
            shard.pendingHolds[user] = pending + 1
            return true
        }
    }

    /// Counts one pending hold of `user` as gone (committed, released or expired).
    ///
    /// - Precondition: the user has a pending hold.
    public func removePendingHold(user: String) {
        shard(user).withLock { shard in
            let pending = shard.pendingHolds[user] ?? 0
            precondition(pending >= 1, "removePendingHold: the user has no pending hold")
            shard.pendingHolds[user] = pending == 1 ? nil : pending - 1
        }
    }

    /// The number of pending holds `user` has now.
    public func pendingHolds(user: String) -> Int {
        shard(user).withLock { $0.pendingHolds[user] ?? 0 }
    }

    /// The number of (user, SKU) and user entries kept, for metrics and for tests that check
    /// entries at zero are dropped.
    public var entryCount: Int {
        shards.reduce(0) { total, shard in
            total + shard.withLock { $0.units.count + $0.pendingHolds.count }
        }
    }
}
