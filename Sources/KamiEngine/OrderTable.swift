import Dispatch
import KamiCore
import KamiPool
import Synchronization

/// The in-memory index of every order by the storefront's order id: the idempotency table.
///
/// Each order has at most one operation in flight (a durable write on its way). Another
/// call for the same order id while one is in flight waits: its continuation is queued on
/// the entry and run when the first finishes, so it then sees the first's result. That is
/// what makes a retry racing its original return the same codes instead of taking new ones.
///
/// Sharded by a hash of the order id so that unrelated orders never contend on one lock.
/// Each shard keeps its orders packed (`PackedOrders`): about 60 bytes an order with short ids,
/// where an `Order` value in a dictionary took over 300.
final class OrderTable: Sendable {
    /// Number of lock shards: a power of two well above the core count, so that two
    /// loop threads rarely meet on one shard.
    static let shardCount = 64

    /// What `begin` found.
    enum Begin {
        /// No such order: a placeholder is in flight; finish it with `publish` or `abandon`.
        case created
        /// The order exists and is now marked in flight for the caller; finish with `publish` or `end`.
        case existing(Order)
        /// The order (or its creation) is busy; the continuation will run later.
        case queued
        /// No such order and the caller did not want one created.
        case missing
    }

    private let shards: [Shard<Shelf>]
    /// Where waiters run. `publish` and `end` are mostly called from completions on the commit
    /// writer's thread; a waiter is a whole operation again (SQLite reads, AES to open secrets,
    /// perhaps a write), which must never delay the writer's next fsync. So they run here, each
    /// order's waiters in their order, off the writer.
    private let retries = DispatchQueue(label: "kami-retries", attributes: .concurrent)

    init() {
        shards = (0..<OrderTable.shardCount).map { _ in Shard(Shelf()) }
    }

    private func run(_ waiters: [@Sendable () -> Void]) {
        guard !waiters.isEmpty else { return }
        retries.async { for waiter in waiters { waiter() } }
    }

    /// The shard of an order id (or, in `UserIndex`, of a user).
    static func shardIndex(_ key: String) -> Int {
        var hasher = Hasher()
        hasher.combine(key)
        return Int(UInt(bitPattern: hasher.finalize()) % UInt(OrderTable.shardCount))
    }

    private func shard(_ orderID: String) -> Shard<Shelf> { shards[OrderTable.shardIndex(orderID)] }

    /// Marks the order in flight. `retry` runs later if it already is.
    func begin(_ orderID: String, create: Bool, retry: @escaping @Sendable () -> Void) -> Begin {
        shard(orderID).withLock { shelf in
            if shelf.busy[orderID] != nil {
                shelf.busy[orderID]!.append(retry)
                return .queued
            }
            if let order = shelf.packed.order(orderID) {
                shelf.busy[orderID] = []
                return .existing(order)
            }
            guard create else { return .missing }
            shelf.busy[orderID] = []
            return .created
        }
    }

    /// Ends the in-flight operation, storing `order` as the new durable state, and runs the waiters.
    func publish(_ order: Order) {
        let waiters = shard(order.orderID).withLock { shelf -> [@Sendable () -> Void] in
            let waiters = shelf.busy.removeValue(forKey: order.orderID) ?? []
            shelf.packed.store(order)
            return waiters
        }
        watchers.published(order)
        run(waiters)
    }

    /// Who waits for orders to reach a state (`wait`, and `issue`/`commit` with `wait_ms`).
    let watchers = OrderWatchers()

    /// Ends the in-flight operation without change (it failed), and runs the waiters. A
    /// placeholder of an order that was never written disappears.
    func end(_ orderID: String) {
        let waiters = shard(orderID).withLock { shelf in shelf.busy.removeValue(forKey: orderID) ?? [] }
        run(waiters)
    }

    /// The durable state of an order (what a query shows), even while an operation is in flight.
    func get(_ orderID: String) -> Order? {
        shard(orderID).withLock { $0.packed.order(orderID) }
    }

    /// Whether a durable order has this id (no copy of it).
    func contains(_ orderID: String) -> Bool {
        shard(orderID).withLock { $0.packed.contains(orderID) }
    }

    /// Sizes the shards for about `count` orders (boot), so they are not grown by doubling.
    func reserve(_ count: Int) {
        let each = count / OrderTable.shardCount + count / (OrderTable.shardCount * 8) + 16
        for shard in shards { shard.withLock { $0.packed.reserve(each) } }
    }

    /// Loads orders read at boot, each shard's under one lock.
    func load(_ orders: [Order]) {
        // Through a buffer: fields are read in place, no order is copied.
        orders.withUnsafeBufferPointer { orders in
            var byShard = [[Int]](repeating: [], count: OrderTable.shardCount)
            for index in orders.indices { byShard[OrderTable.shardIndex(orders[index].orderID)].append(index) }
            for (shard, indices) in zip(shards, byShard) where !indices.isEmpty {
                shard.withLock { shelf in for index in indices { shelf.packed.store(orders[index]) } }
            }
        }
    }

    /// Every durable order (for verification); a consistent view per shard.
    func all() -> [Order] {
        var result: [Order] = []
        for shard in shards {
            shard.withLock { shelf in
                result.reserveCapacity(result.count + shelf.packed.count)
                shelf.packed.forEach { result.append($0) }
            }
        }
        return result
    }

    /// Number of orders known (written, or being created).
    var count: Int {
        shards.reduce(0) { sum, shard in
            sum + shard.withLock { shelf in
                var creating = 0
                for orderID in shelf.busy.keys where !shelf.packed.contains(orderID) { creating += 1 }
                return shelf.packed.count + creating
            }
        }
    }
}

/// One shard of the table: its orders, packed, and the ones with an operation in flight.
struct Shelf {
    var packed = PackedOrders()
    /// Orders with an operation in flight, and the continuations waiting for it to end.
    var busy: [String: [@Sendable () -> Void]] = [:]
}

/// A user's orders, for "my codes" queries. Sharded like `OrderTable`.
///
/// Each user's order ids are kept as bytes (a length and the id's UTF-8, in order) in one array
/// per user: no `String` per order (with ids as shops send them, too long to be inline, each
/// would be a heap allocation of its own).
final class UserIndex: Sendable {
    private let shards: [Shard<[String: [UInt8]]>]

    init() { shards = (0..<OrderTable.shardCount).map { _ in Shard([:]) } }

    private func shard(_ user: String) -> Shard<[String: [UInt8]]> { shards[OrderTable.shardIndex(user)] }

    private static func append(_ orderID: String, to list: inout [UInt8]) {
        Varint.append(Int64(orderID.utf8.count), to: &list)
        list.append(contentsOf: orderID.utf8)
    }

    func add(user: String, orderID: String) {
        shard(user).withLock { UserIndex.append(orderID, to: &$0[user, default: []]) }
    }

    /// Adds orders read at boot (in their order), each shard's under one lock.
    func add(_ orders: [Order]) {
        // Through a buffer: fields are read in place, no order is copied (each copy would
        // retain its codes, which the order table's thread is retaining at the same moment).
        orders.withUnsafeBufferPointer { orders in
            var byShard = [[Int]](repeating: [], count: OrderTable.shardCount)
            for index in orders.indices { byShard[OrderTable.shardIndex(orders[index].user)].append(index) }
            for (shard, indices) in zip(shards, byShard) where !indices.isEmpty {
                shard.withLock { map in
                    for index in indices { UserIndex.append(orders[index].orderID, to: &map[orders[index].user, default: []]) }
                }
            }
        }
    }

    /// The user's order ids, newest first, each made a `String` only when the walk gets to it
    /// (a page of entitlements stops early).
    func ordersNewestFirst(of user: String) -> NewestFirst {
        NewestFirst(bytes: shard(user).withLock { $0[user] } ?? [])
    }

    /// A user's order ids from the newest.
    struct NewestFirst: Sequence, IteratorProtocol {
        private let bytes: [UInt8]
        /// Where each id's length starts, oldest first; consumed from the end.
        private var starts: [Int32]

        init(bytes: [UInt8]) {
            self.bytes = bytes
            starts = bytes.withUnsafeBufferPointer { buffer in
                var starts: [Int32] = []
                var at = 0
                while at < buffer.count {
                    starts.append(Int32(at))
                    at += Int(Varint.readTrusted(buffer, at: &at))
                }
                return starts
            }
        }

        mutating func next() -> String? {
            guard let start = starts.popLast() else { return nil }
            return bytes.withUnsafeBufferPointer { buffer in
                var at = Int(start)
                let length = Int(Varint.readTrusted(buffer, at: &at))
                return String(decoding: UnsafeBufferPointer(rebasing: buffer[at..<(at + length)]), as: UTF8.self)
            }
        }
    }
}

/// One lock shard (a `Locked` value).
final class Shard<Value: Sendable>: Sendable {
    private let mutex: Locked<Value>
    init(_ value: Value) { mutex = Locked(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
