public import KamiCore
import Dispatch
import Synchronization
import KamiStore

/// Told of every order that waits for a supplier: when it is created (or retried), and at
/// boot for every order still pending. The upstream module implements it; the engine calls
/// it after the order is durable, never on a path that holds a lock.
public protocol UpstreamSink: AnyObject, Sendable {
    /// `order` is paid and pending upstream: route it and fulfil it.
    func orderPending(_ order: Order, sku: Sku)
}

/// The engine's knowledge of sourcing: which SKUs go upstream, their mappings, paused
/// suppliers, and the sink that fulfils pending orders. Catalog data, loaded at boot and
/// changed by the operator through the `Upstream` room.
final class UpstreamState: Sendable {
    struct Data: Sendable {
        var sourcing: [SkuID: SkuSourcing] = [:]
        var mappings: [SkuID: [SupplierMapping]] = [:]
        var paused: Set<String> = []
    }

    let data = Locked(Data())
    private let sinkBox = Mutex<(any UpstreamSink)?>(nil)

    var sink: (any UpstreamSink)? {
        get { sinkBox.withLock { $0 } }
        set { sinkBox.withLock { $0 = newValue } }
    }

    func sourcing(_ sku: SkuID) -> SkuSourcing {
        data.withLock { $0.sourcing[sku] } ?? SkuSourcing(sku: sku)
    }

    func load(_ snapshot: UpstreamSnapshot) {
        data.withLock { data in
            for sourcing in snapshot.sourcing { data.sourcing[sourcing.sku] = sourcing }
            for mapping in snapshot.mappings { data.mappings[mapping.sku, default: []].append(mapping) }
            data.paused = snapshot.paused
        }
    }
}

/// Who waits for an order to change (the `wait` operation, and `issue`/`commit` with
/// `wait_ms`): each watcher fires once, when a published order satisfies it or its time
/// runs out.
final class OrderWatchers: Sendable {
    private final class Watch: Sendable {
        let satisfied: @Sendable (Order) -> Bool
        let completion: @Sendable (Order?) -> Void
        let fired = Atomic<Bool>(false)

        init(satisfied: @escaping @Sendable (Order) -> Bool, completion: @escaping @Sendable (Order?) -> Void) {
            self.satisfied = satisfied
            self.completion = completion
        }

        func fire(_ order: Order?) {
            guard !fired.exchange(true, ordering: .acquiringAndReleasing) else { return }
            completion(order)
        }
    }

    private let watches = Mutex<[String: [Watch]]>([:])
    private let queue = DispatchQueue(label: "kami-watch-timeouts")

    /// Watchers waiting now.
    var count: Int { watches.withLock { $0.values.reduce(0) { $0 + $1.count } } }

    /// Calls `completion` with the order once `satisfied` holds for a published version of it
    /// (`current()` is checked before and after registering), or with nil after `timeoutMs`.
    func watch(
        _ orderID: String, current: @Sendable () -> Order?, timeoutMs: Int64, satisfied: @escaping @Sendable (Order) -> Bool,
        completion: @escaping @Sendable (Order?) -> Void
    ) {
        if let now = current(), satisfied(now) { return completion(now) }
        let watch = Watch(satisfied: satisfied, completion: completion)
        watches.withLock { $0[orderID, default: []].append(watch) }
        // Published between the first look and the registration: seen now.
        if let now = current(), satisfied(now) {
            watches.withLock { map in
                map[orderID]?.removeAll { $0 === watch }
                if map[orderID]?.isEmpty == true { map[orderID] = nil }
            }
            return watch.fire(now)
        }
        queue.asyncAfter(deadline: .now() + .milliseconds(Int(timeoutMs))) { [self] in
            watches.withLock { map in
                map[orderID]?.removeAll { $0 === watch }
                if map[orderID]?.isEmpty == true { map[orderID] = nil }
            }
            watch.fire(nil)
        }
    }

    /// A new durable state of an order: fires the watchers it satisfies.
    func published(_ order: Order) {
        let due = watches.withLock { map -> [Watch] in
            guard let list = map[order.orderID] else { return [] }
            let (due, rest) = (list.filter { $0.satisfied(order) }, list.filter { !$0.satisfied(order) })
            map[order.orderID] = rest.isEmpty ? nil : rest
            return due
        }
        for watch in due { watch.fire(order) }
    }
}
