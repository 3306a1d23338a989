public import KamiCore

/// The in-memory set of available codes of every SKU: what `reserve` takes from and what a
/// released or expired hold gives back to.
///
/// A code of a SKU is in one of these pool states:
/// - *absent*: declared by `addSegment` but never made available (not loaded yet, or
///   reserved/issued according to the journal at boot);
/// - *available*: in the pool, and handed out by exactly one future `take`;
/// - *taken*: handed out by `take`, and owned by its taker until it is `put` back;
/// - *removed*: voided by `remove` while available. The engine does not sell it again; the
///   only way back is `put`, which undoes the remove (for an engine whose journal write of
///   the void failed and that must roll it back).
///
/// Every operation is safe to call from any number of threads at once. Implementations
/// guarantee that no code is returned by two `take`s unless it was `put` back in between,
/// and that `available(sku:)` never drops below zero.
public protocol CodePool: AnyObject, Sendable {
    /// Declares that the codes `codes` belong to `sku` (one import batch).
    ///
    /// The codes start absent: call `put` to make them available. Within one SKU, ranges
    /// must be given in increasing order and must not overlap (SKUs may interleave).
    /// Called rarely: at boot and on import. `sku` must be in `1...PoolLimits.skusMax`.
    func addSegment(sku: SkuID, codes: Range<CodeID>)

    /// Makes `codes` available: at boot for the codes the journal says are available, and
    /// when a hold is released or expires.
    ///
    /// Precondition (the process stops, naming the code): every code is inside a segment of
    /// `sku` and is not already available (it is absent, taken, or removed; putting a
    /// removed code undoes its removal).
    ///
    /// An array, not a generic collection: the engine calls through `any CodePool`, where a
    /// generic parameter would cost a metadata lookup and witness calls per code. Other
    /// collections go through the extension below.
    func put(sku: SkuID, codes: [CodeID])

    /// Takes `count` available codes of `sku` at once, all or none.
    ///
    /// - Returns: `count` distinct codes, now taken by the caller, or `nil` when fewer than
    ///   `count` are available (then nothing is taken).
    /// - Precondition: `count >= 1`.
    func take(sku: SkuID, count: Int) -> [CodeID]?

    /// Voids one specific code if it is available.
    ///
    /// - Returns: `true` if the code was available and is now removed (no `take` returns it
    ///   unless it is `put` again); `false` if it is taken, absent, or already removed.
    /// - Precondition: the code is inside a segment of `sku`.
    func remove(sku: SkuID, code: CodeID) -> Bool

    /// The number of available codes of `sku` (0 for a SKU without segments).
    ///
    /// A snapshot: with concurrent calls in flight it may already be out of date.
    func available(sku: SkuID) -> Int
}

extension CodePool {
    /// Makes `codes` available; see the requirement `put(sku:codes:)` taking an array.
    /// For ranges (boot, import) and other collections: copies them into an array.
    public func put(sku: SkuID, codes: some Collection<CodeID>) {
        put(sku: sku, codes: Array(codes))
    }
}

/// The pool state of one code, stored as one byte per code.
///
/// `removed` is split in two because a removed code's entry stays in its ring or queue as
/// a tombstone until a taker reaches it: `removed` while the tombstone is (or is about to
/// be) queued, `removedDequeued` once a taker dropped it. `put` of a `removed` code revives
/// the queued entry instead of queueing a second one, which would let the code be handed
/// out twice; `put` of a `removedDequeued` code queues it like a taken one.
enum PoolCodeState: UInt8 {
    case absent = 0
    case available = 1
    case taken = 2
    case removed = 3
    case removedDequeued = 4
}

/// Checks a SKU id given to an operation that creates or fills state for it.
@inline(__always)
func checkSkuForWrite(_ sku: SkuID, _ operation: StaticString) {
    precondition(sku >= 1 && sku <= PoolLimits.skusMax,
                 "\(operation): SKU id \(sku) outside 1...\(PoolLimits.skusMax)")
}
