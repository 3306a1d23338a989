import KamiCore
import Synchronization

/// One pointer slot per SKU id, preallocated for `1...PoolLimits.skusMax`.
///
/// Written rarely (the first `addSegment` of a SKU publishes its record with a releasing
/// store, under the owning pool's writer lock) and read on every operation with one
/// acquiring load, so the hot path finds a SKU without a lock or a hash. A published slot
/// is never changed or cleared while the pool lives: readers may hold the pointer for as
/// long as their call runs. The owning pool frees the table and the records in its deinit,
/// when no caller can hold a reference to it any more.
struct SkuTable {
    private let slots: UnsafeMutablePointer<Atomic<UnsafeMutableRawPointer?>>

    init() {
        let count = Int(PoolLimits.skusMax) + 1  // slot 0 stays empty: ids start at 1
        slots = .allocate(capacity: count)
        for index in 0..<count {
            (slots + index).initialize(to: Atomic(nil))
        }
    }

    /// The record published for `sku`, or nil (also for ids outside the table, so that
    /// read-only operations on an unknown SKU answer "nothing there" instead of crashing).
    @inline(__always)
    func load(_ sku: SkuID) -> UnsafeMutableRawPointer? {
        guard sku >= 1 && sku <= PoolLimits.skusMax else { return nil }
        return slots[Int(sku)].load(ordering: .acquiring)
    }

    /// Publishes the record of `sku`. The caller holds the pool's writer lock and has
    /// fully initialized the record: the releasing store makes that visible to readers.
    func publish(_ sku: SkuID, _ record: UnsafeMutableRawPointer) {
        checkSkuForWrite(sku, "SkuTable.publish")
        let previous = slots[Int(sku)].exchange(record, ordering: .releasing)
        precondition(previous == nil, "SKU \(sku) published twice")
    }

    /// Frees the table itself (not the records). Only from the owning pool's deinit.
    func deallocate() {
        slots.deinitialize(count: Int(PoolLimits.skusMax) + 1)
        slots.deallocate()
    }
}
