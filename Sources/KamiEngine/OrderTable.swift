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
final class OrderTable: Sendable {
    /// Number of lock shards: a power of two well above the core count, so that two
    /// loop threads rarely meet on one shard.
    static let shardCount = 64

    struct Entry {
        /// The durable state; nil while the order's first write is in flight.
        var order: Order?
        var inFlight: Bool
        var waiters: [@Sendable () -> Void]
    }

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

    private let shards: [Shard<[String: Entry]>]
    /// Where waiters run. `publish` and `end` are mostly called from completions on the commit
    /// writer's thread; a waiter is a whole operation again (SQLite reads, AES to open secrets,
    /// perhaps a write), which must never delay the writer's next fsync. So they run here, each
    /// order's waiters in their order, off the writer.
    private let retries = DispatchQueue(label: "kami-retries", attributes: .concurrent)

    init() {
        shards = (0..<OrderTable.shardCount).map { _ in Shard([:]) }
    }

    private func run(_ waiters: [@Sendable () -> Void]) {
        guard !waiters.isEmpty else { return }
        retries.async { for waiter in waiters { waiter() } }
    }

    private func shard(_ orderID: String) -> Shard<[String: Entry]> {
        var hasher = Hasher()
        hasher.combine(orderID)
        return shards[Int(UInt(bitPattern: hasher.finalize()) % UInt(OrderTable.shardCount))]
    }

    /// Marks the order in flight. `retry` runs later if it already is.
    func begin(_ orderID: String, create: Bool, retry: @escaping @Sendable () -> Void) -> Begin {
        shard(orderID).withLock { map in
            if var entry = map[orderID] {
                if entry.inFlight {
                    entry.waiters.append(retry)
                    map[orderID] = entry
                    return .queued
                }
                entry.inFlight = true
                map[orderID] = entry
                return .existing(entry.order!)
            }
            guard create else { return .missing }
            map[orderID] = Entry(order: nil, inFlight: true, waiters: [])
            return .created
        }
    }

    /// Ends the in-flight operation, storing `order` as the new durable state, and runs the waiters.
    func publish(_ order: Order) {
        let waiters = shard(order.orderID).withLock { map -> [@Sendable () -> Void] in
            let waiters = map[order.orderID]?.waiters ?? []
            map[order.orderID] = Entry(order: order, inFlight: false, waiters: [])
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
        let waiters = shard(orderID).withLock { map -> [@Sendable () -> Void] in
            guard var entry = map[orderID] else { return [] }
            let waiters = entry.waiters
            if entry.order == nil {
                map[orderID] = nil
            } else {
                entry.inFlight = false
                entry.waiters = []
                map[orderID] = entry
            }
            return waiters
        }
        run(waiters)
    }

    /// The durable state of an order (what a query shows), even while an operation is in flight.
    func get(_ orderID: String) -> Order? {
        shard(orderID).withLock { $0[orderID]?.order }
    }

    /// Whether a durable order has this id (no copy of it).
    func contains(_ orderID: String) -> Bool {
        shard(orderID).withLock { $0[orderID]?.order != nil }
    }

    /// Loads an order at boot.
    /// Sizes the shards for about `count` orders (boot), so they are not grown by doubling.
    func reserve(_ count: Int) {
        let each = count / OrderTable.shardCount + count / (OrderTable.shardCount * 8) + 16
        for shard in shards { shard.withLock { $0.reserveCapacity(each) } }
    }

    func load(_ order: Order) {
        shard(order.orderID).withLock { $0[order.orderID] = Entry(order: order, inFlight: false, waiters: []) }
    }

    /// Every durable order (for verification); a consistent view per shard.
    func all() -> [Order] {
        var result: [Order] = []
        for shard in shards {
            shard.withLock { map in
                for entry in map.values { if let order = entry.order { result.append(order) } }
            }
        }
        return result
    }

    /// Number of orders known.
    var count: Int { shards.reduce(0) { sum, shard in sum + shard.withLock { $0.count } } }
}

/// A user's orders, for "my codes" queries. Sharded like `OrderTable`.
final class UserIndex: Sendable {
    private let shards: [Shard<[String: [String]]>]

    init() { shards = (0..<OrderTable.shardCount).map { _ in Shard([:]) } }

    private func shard(_ user: String) -> Shard<[String: [String]]> {
        var hasher = Hasher()
        hasher.combine(user)
        return shards[Int(UInt(bitPattern: hasher.finalize()) % UInt(OrderTable.shardCount))]
    }

    func add(user: String, orderID: String) {
        shard(user).withLock { $0[user, default: []].append(orderID) }
    }

    func orders(of user: String) -> [String] { shard(user).withLock { $0[user] ?? [] } }
}

/// One lock shard (a `Locked` value).
final class Shard<Value: Sendable>: Sendable {
    private let mutex: Locked<Value>
    init(_ value: Value) { mutex = Locked(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
