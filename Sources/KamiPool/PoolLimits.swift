public import KamiCore

/// The limits of the in-memory pool, each with what it costs and why it has its value.
///
/// The engine validates SKU ids against `skusMax` when it loads the catalogue, so the
/// preconditions in the pools that check them only fire on a programmer error.
public enum PoolLimits {
    /// The largest `SkuID` a pool accepts; ids are dense from 1.
    ///
    /// The same value as the catalogue limit in KamiCore. Each pool preallocates one 8-byte
    /// table slot per id (512 KiB) so that finding a SKU on the hot path is one indexed
    /// atomic load, with no lock and no hash. A shop with more SKUs than this needs a
    /// bigger value, not a different design.
    public static let skusMax: SkuID = 65_536

    /// The most codes one shard of `LockFreeCodePool` holds.
    ///
    /// A shard's ring costs 16 bytes per slot (rounded up to a power of two) plus one
    /// state byte per code, so a full shard is about 17 MiB. Offsets inside a shard are
    /// stored as `UInt32`, which this value must fit. Larger imports are split.
    public static let shardCodesMax = 1 << 20

    /// The fewest codes a shard is cut to when an import is split (the last shard of an
    /// import may hold fewer).
    ///
    /// Splitting spreads the takers of a hot SKU over several rings, but every shard is
    /// also one more ring a taker may scan when stock runs low; below a few hundred codes
    /// per ring the scanning costs more than the contention it saves.
    public static let shardCodesMin = 256

    /// How many shards one import is split into when it is large enough (see
    /// `shardCodesMin`, `shardCodesMax`).
    ///
    /// The contended resource of a hot SKU is its ring head; four rings let four cores
    /// dequeue at once, and the development machines have two.
    public static let shardsPerSegmentTarget = 4

    /// How many mutex-protected dictionaries `UserLimits` spreads users over.
    ///
    /// Two buyers collide on a lock only when their user hashes land in the same shard;
    /// 64 shards make that rare for any realistic number of request threads, and an empty
    /// shard costs a few hundred bytes.
    public static let userLimitShards = 64

    /// How many cancelled entries `ExpiryHeap` tolerates before it rebuilds itself, at the
    /// least (it also tolerates as many as it has live entries).
    ///
    /// Cancellation is lazy, so a committed order leaves a stale entry behind until its
    /// deadline passes; rebuilding once stale entries outnumber live ones keeps the heap at
    /// most about twice its live size, and this floor keeps small heaps from rebuilding
    /// on every cancel.
    public static let expiryStaleEntriesMin = 1024
}

// Relations between the limits: a shard offset must fit the ring's UInt32 payload, ring
// capacities are powers of two, and a split never produces shards above the maximum.
// `static let` cannot hold a compile-time assertion, so the pools check this once, on
// creation.
func checkPoolLimits() {
    precondition(PoolLimits.skusMax > 0, "skusMax \(PoolLimits.skusMax) must be positive")
    precondition(PoolLimits.shardCodesMax <= Int(UInt32.max), "shardCodesMax \(PoolLimits.shardCodesMax) > UInt32.max")
    precondition(PoolLimits.shardCodesMax.nonzeroBitCount == 1, "shardCodesMax must be a power of two")
    precondition(PoolLimits.shardCodesMin.nonzeroBitCount == 1, "shardCodesMin must be a power of two")
    precondition(PoolLimits.shardCodesMin <= PoolLimits.shardCodesMax, "shardCodesMin > shardCodesMax")
    precondition(PoolLimits.shardsPerSegmentTarget >= 1, "shardsPerSegmentTarget must be at least 1")
    precondition(PoolLimits.userLimitShards >= 1, "userLimitShards must be at least 1")
}
