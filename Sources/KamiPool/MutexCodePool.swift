public import KamiCore

/// A `CodePool` with one lock per SKU: the straightforward design, kept as the reference
/// that `LockFreeCodePool` is tested and measured against.
///
/// Per SKU, under its lock: a FIFO of available codes, one state byte per code of every
/// segment, and the available count. `remove` only flips the state to removed and leaves
/// the code in the FIFO as a tombstone, which `take` drops when it reaches it, so that a
/// remove costs O(log segments) instead of a search of the FIFO (see `PoolCodeState` for
/// how `put` revives a tombstone).
///
/// The lock is a `pthread_mutex_t` (see `Locked`), not `Synchronization.Mutex`, so that
/// ThreadSanitizer runs of the tests understand it.
///
/// Finding a SKU's lock takes no lock: the same preallocated table as `LockFreeCodePool`.
/// Per-SKU objects are created by `addSegment` and released only in deinit.
public final class MutexCodePool: CodePool, @unchecked Sendable {
    // @unchecked Sendable: the table holds SKU objects that are published once and never
    // released before deinit; each SKU's state is only touched under its own lock, and
    // `writer` serializes the creation of SKU objects.

    private let table = SkuTable()
    /// Serializes creating SKU objects; keeps them alive until deinit.
    private let writer = Locked<[SkuID: MutexSku]>([:])

    /// Creates an empty pool.
    public init() {
        checkPoolLimits()
    }

    deinit {
        writer.withLock { $0.removeAll() }
        table.deallocate()
    }

    /// Declares `codes` as belonging to `sku`. See `CodePool.addSegment`.
    public func addSegment(sku: SkuID, codes: Range<CodeID>) {
        checkSkuForWrite(sku, "addSegment")
        guard !codes.isEmpty else { return }
        let skuObject = writer.withLock { skus in
            if let existing = skus[sku] { return existing }
            let created = MutexSku(MutexSkuState())
            skus[sku] = created
            table.publish(sku, Unmanaged.passUnretained(created).toOpaque())
            return created
        }
        skuObject.withLock { state in
            precondition(codes.lowerBound >= state.upperBound,
                         "addSegment: SKU \(sku) codes \(codes) not above its previous segment end \(state.upperBound)")
            state.segments.append(MutexSegment(base: codes.lowerBound, states: [UInt8](
                repeating: PoolCodeState.absent.rawValue, count: codes.count)))
            state.upperBound = codes.upperBound
        }
    }

    /// Runs `body` under the lock of `sku`, or returns nil when the SKU has no segments.
    /// The object is borrowed without retaining it: the table and `writer` keep it alive,
    /// and skipping the reference count keeps one more contended cache line off the path.
    @inline(__always)
    private func withSku<Result>(_ sku: SkuID, _ body: (inout MutexSkuState) -> Result) -> Result? {
        guard let opaque = table.load(sku) else { return nil }
        return Unmanaged<MutexSku>.fromOpaque(opaque)._withUnsafeGuaranteedRef { $0.withLock(body) }
    }

    /// Makes `codes` available. See `CodePool.put`.
    public func put(sku: SkuID, codes: [CodeID]) {
        guard let first = codes.first else { return }
        let found: Void? = withSku(sku) { state in
            for code in codes {
                state.makeAvailable(code, sku: sku)
            }
        }
        precondition(found != nil, "put: SKU \(sku) has no segments (code \(first))")
    }

    /// Takes `count` codes, all or none. See `CodePool.take`.
    public func take(sku: SkuID, count: Int) -> [CodeID]? {
        precondition(count >= 1, "take: count \(count) must be at least 1")
        return withSku(sku) { $0.take(count) } ?? nil
    }

    /// Removes `code` if it is available. See `CodePool.remove`.
    public func remove(sku: SkuID, code: CodeID) -> Bool {
        guard let removed = withSku(sku, { $0.remove(code, sku: sku) }) else {
            preconditionFailure("remove: SKU \(sku) has no segments (code \(code))")
        }
        return removed
    }

    /// The number of available codes of `sku`. See `CodePool.available`.
    public func available(sku: SkuID) -> Int {
        withSku(sku) { $0.available } ?? 0
    }
}

typealias MutexSku = Locked<MutexSkuState>

/// One segment of a SKU in `MutexCodePool`: its first code and a state byte per code.
struct MutexSegment: Sendable {
    let base: CodeID
    var states: [UInt8]

    func offset(of code: CodeID) -> Int? {
        let offset = code &- base
        return offset >= 0 && offset < CodeID(states.count) ? Int(offset) : nil
    }
}

/// Everything `MutexCodePool` knows about one SKU; only touched under the SKU's lock.
struct MutexSkuState: Sendable {
    var segments: [MutexSegment] = []
    var upperBound: CodeID = .min
    /// Available codes and tombstones (removed codes), oldest first from `head`. Each code
    /// is in it at most once, so it never holds more than the SKU's code count.
    var queue: [CodeID] = []
    var head = 0
    /// Available codes: `queue` minus tombstones.
    var available = 0

    /// The segment index and offset of `code`, or nil. Segments are sorted by base.
    func locate(_ code: CodeID) -> (segment: Int, offset: Int)? {
        var low = 0
        var high = segments.count
        while low < high {
            let middle = (low + high) / 2
            if segments[middle].base <= code { low = middle + 1 } else { high = middle }
        }
        guard low > 0, let offset = segments[low - 1].offset(of: code) else { return nil }
        return (low - 1, offset)
    }

    mutating func makeAvailable(_ code: CodeID, sku: SkuID) {
        guard let (segment, offset) = locate(code) else {
            preconditionFailure("put: code \(code) is not in any segment of SKU \(sku)")
        }
        let current = segments[segment].states[offset]
        switch PoolCodeState(rawValue: current) {
        case .absent, .taken, .removedDequeued:
            queue.append(code)
        case .removed:
            break  // its tombstone is still queued and becomes a live entry again
        case .available:
            preconditionFailure("put: code \(code) of SKU \(sku) is already available")
        case nil:
            preconditionFailure("put: code \(code) of SKU \(sku) has corrupt state \(current)")
        }
        segments[segment].states[offset] = PoolCodeState.available.rawValue
        available += 1
    }

    mutating func take(_ count: Int) -> [CodeID]? {
        guard available >= count else { return nil }
        available -= count
        defer { compactQueue() }
        // An array literal is the cheapest array to make (see LockFreeCodePool.claim).
        if count == 1 {
            return [popAvailable()]
        }
        var codes: [CodeID] = []
        codes.reserveCapacity(count)
        for _ in 0..<count {
            codes.append(popAvailable())
        }
        return codes
    }

    /// Pops queued codes until an available one, which it claims; tombstones on the way
    /// are dropped. The caller has checked that enough codes are available.
    private mutating func popAvailable() -> CodeID {
        while true {
            precondition(head < queue.count, "available \(available) but the queue is empty")
            let code = queue[head]
            head += 1
            let (segment, offset) = locate(code)!
            let state = segments[segment].states[offset]
            if state == PoolCodeState.available.rawValue {
                segments[segment].states[offset] = PoolCodeState.taken.rawValue
                return code
            }
            precondition(state == PoolCodeState.removed.rawValue, "queued code \(code) in state \(state)")
            segments[segment].states[offset] = PoolCodeState.removedDequeued.rawValue
        }
    }

    /// Drops the consumed front of the queue once it is most of the array, so memory stays
    /// proportional to what is queued while each code is moved O(1) times on average.
    private mutating func compactQueue() {
        if head == queue.count {
            queue.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= queue.count {
            queue.removeFirst(head)
            head = 0
        }
    }

    mutating func remove(_ code: CodeID, sku: SkuID) -> Bool {
        guard let (segment, offset) = locate(code) else {
            preconditionFailure("remove: code \(code) is not in any segment of SKU \(sku)")
        }
        guard segments[segment].states[offset] == PoolCodeState.available.rawValue else { return false }
        segments[segment].states[offset] = PoolCodeState.removed.rawValue
        available -= 1
        return true
    }
}
