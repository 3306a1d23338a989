import Glibc

/// Orders kept compactly in memory (the engine's order table, one per shard): each packed as
/// varints and UTF-8 at the end of one byte array, its order id first, and found through an
/// open-addressing table of offsets into that array. An order stored again is appended again;
/// the old bytes are reclaimed once they are over half of the array. About 60 bytes an order
/// with short ids (the id stored once, no `String` or dictionary slot per order), where an
/// `Order` value in a dictionary takes over 300.
///
/// Order ids are compared as bytes (they are printable ASCII: `IdentifierRules`).
public struct PackedOrders: Sendable {
    /// Every encoding, each after the one before.
    @usableFromInline var bytes: [UInt8] = []
    /// Open addressing with linear probing over a power-of-two number of slots, each the offset
    /// + 1 in `bytes` of an order's latest encoding (0: empty). At most 70% full; orders are
    /// never removed, so no slot is ever emptied again.
    @usableFromInline var slots = [UInt32](repeating: 0, count: 16)
    /// Orders stored.
    @usableFromInline var live = 0
    /// Bytes of encodings superseded by a later `store`.
    @usableFromInline var garbage = 0
    /// The distinct labels of this shard's orders (most orders have none); an encoding
    /// holds the index + 1, 0 for none.
    @usableFromInline var labels: [OrderLabels] = []
    @usableFromInline var labelNumbers: [OrderLabels: Int] = [:]
    /// Superseded bytes are reclaimed once over this many and over half of all.
    @usableFromInline let compactAfterBytes: Int

    /// An empty table; `compactAfterBytes`: see `store`.
    public init(compactAfterBytes: Int = 1 << 20) { self.compactAfterBytes = compactAfterBytes }

    /// Makes room for `count` orders (address space for their bytes: only what is written
    /// becomes resident).
    public mutating func reserve(_ count: Int) {
        var size = slots.count
        while size * 7 < count * 10 { size *= 2 }
        if size > slots.count { grow(to: size) }
        bytes.reserveCapacity(count * PackedOrders.typicalBytes)
    }

    /// About the bytes of an order with one code and short ids (`reserve`).
    static let typicalBytes = 64

    /// Orders stored.
    public var count: Int { live }

    /// Bytes of the encodings, superseded ones not yet reclaimed included.
    public var byteCount: Int { bytes.count }

    /// Whether an order has this id.
    public func contains(_ orderID: String) -> Bool { PackedOrders.withID(orderID) { find($0).found } }

    /// The order with this id, nil when none.
    public func order(_ orderID: String) -> Order? {
        let (slot, found) = PackedOrders.withID(orderID) { find($0) }
        guard found else { return nil }
        return decode(at: Int(slots[slot] - 1), orderID: orderID).order
    }

    /// Calls `body` with every order.
    public func forEach(_ body: (Order) -> Void) {
        for value in slots where value != 0 { body(decode(at: Int(value - 1), orderID: nil).order) }
    }

    /// Stores `order` as its order id's state (replacing the one stored before).
    @inlinable
    public mutating func store(_ order: Order) {
        if bytes.count > Int(UInt32.max) - (1 << 20) { compact() }
        precondition(bytes.count <= Int(UInt32.max) - (1 << 20), "an order table shard is over 4 GiB")
        var (slot, found) = PackedOrders.withID(order.orderID) { find($0) }
        if !found && (live + 1) * 10 > slots.count * 7 {
            grow(to: slots.count * 2)
            slot = PackedOrders.withID(order.orderID) { find($0) }.slot
        }
        let offset = bytes.count
        encode(order)
        if found {
            let old = Int(slots[slot] - 1)
            garbage += end(at: old) - old
        } else {
            live += 1
        }
        slots[slot] = UInt32(offset + 1)
        if found && garbage > compactAfterBytes && garbage > bytes.count / 2 { compact() }
    }

    /// Calls `body` with the UTF-8 bytes of `orderID`.
    @inlinable
    static func withID<R>(_ orderID: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        var id = orderID
        return id.withUTF8 { body($0) }
    }

    @inlinable
    static func hash(_ id: UnsafeBufferPointer<UInt8>) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: UnsafeRawBufferPointer(id))
        return hasher.finalize()
    }

    /// The slot of the order whose id is `id`, or the empty slot where it would go.
    @usableFromInline func find(_ id: UnsafeBufferPointer<UInt8>) -> (slot: Int, found: Bool) {
        let mask = slots.count - 1
        var slot = PackedOrders.hash(id) & mask
        return bytes.withUnsafeBufferPointer { arena in
            slots.withUnsafeBufferPointer { table in
                while true {
                    let value = table[slot]
                    if value == 0 { return (slot, false) }
                    var at = Int(value - 1)
                    let length = Int(Varint.readTrusted(arena, at: &at))
                    if length == id.count && (length == 0 || memcmp(arena.baseAddress! + at, id.baseAddress!, length) == 0) {
                        return (slot, true)
                    }
                    slot = (slot + 1) & mask
                }
            }
        }
    }

    /// Rehashes every order into `count` slots (a power of two).
    @usableFromInline mutating func grow(to count: Int) {
        var table = [UInt32](repeating: 0, count: count)
        let mask = count - 1
        bytes.withUnsafeBufferPointer { arena in
            for value in slots where value != 0 {
                var at = Int(value - 1)
                let length = Int(Varint.readTrusted(arena, at: &at))
                var slot = PackedOrders.hash(UnsafeBufferPointer(rebasing: arena[at..<(at + length)])) & mask
                while table[slot] != 0 { slot = (slot + 1) & mask }
                table[slot] = value
            }
        }
        slots = table
    }

    /// Copies the live encodings to a new array, dropping the superseded ones (bytes are
    /// copied as they are: an encoding holds no offsets).
    @usableFromInline mutating func compact() {
        var moved: [UInt8] = []
        moved.reserveCapacity(bytes.count - garbage)
        for slot in slots.indices where slots[slot] != 0 {
            let start = Int(slots[slot] - 1)
            slots[slot] = UInt32(moved.count + 1)
            moved.append(contentsOf: bytes[start..<end(at: start)])
        }
        bytes = moved
        garbage = 0
    }

    /// Where the encoding at `offset` ends (read without building the order).
    @usableFromInline func end(at offset: Int) -> Int {
        bytes.withUnsafeBufferPointer { buffer in
            var at = offset
            func skipInt(_ count: Int = 1) { for _ in 0..<count { _ = Varint.readTrusted(buffer, at: &at) } }
            at += Int(Varint.readTrusted(buffer, at: &at))  // order id
            skipInt()                                  // seq
            at += Int(Varint.readTrusted(buffer, at: &at))  // user
            skipInt(2)                                 // SKU, units
            at += 1                                    // state
            let paymentLength = Int(Varint.readTrusted(buffer, at: &at))
            at += max(0, paymentLength - 1)
            skipInt(2 * Int(Varint.readTrusted(buffer, at: &at)))  // codes
            skipInt(4)                                 // TTL, expiry, creation, update
            let hasAmount = buffer[at] != 0
            at += 1
            if hasAmount { skipInt() }
            skipInt(2)                                 // subsidy, labels
            return at
        }
    }

    @inlinable
    mutating func labelNumber(_ label: OrderLabels?) -> Int {
        guard let label else { return 0 }
        if let number = labelNumbers[label] { return number }
        labels.append(label)
        labelNumbers[label] = labels.count
        return labels.count
    }

    @inlinable
    mutating func string(_ value: String) {
        Varint.append(Int64(value.utf8.count), to: &bytes)
        bytes.append(contentsOf: value.utf8)
    }

    /// The encoding: order id, seq, user, SKU, units, state, payment ref (length + 1, 0:
    /// none), the codes (count, then each id as a difference from the one before and its SKU
    /// as a difference from the order's), TTL, expiry, creation, update − creation, amount (a
    /// byte 1 then the amount, or a byte 0: none), subsidy, labels number. `end(at:)` walks
    /// the same fields.
    @inlinable
    mutating func encode(_ order: Order) {
        string(order.orderID)
        Varint.append(order.seq, to: &bytes)
        string(order.user)
        Varint.append(Int64(order.sku), to: &bytes)
        Varint.append(Int64(order.units), to: &bytes)
        bytes.append(order.state.rawValue)
        if let paymentRef = order.paymentRef {
            Varint.append(Int64(paymentRef.utf8.count) + 1, to: &bytes)
            bytes.append(contentsOf: paymentRef.utf8)
        } else {
            bytes.append(0)
        }
        Varint.append(Int64(order.codes.count), to: &bytes)
        var previous: CodeID = 0
        for code in order.codes {
            Varint.append(code.codeID &- previous, to: &bytes)
            Varint.append(Int64(code.sku) - Int64(order.sku), to: &bytes)
            previous = code.codeID
        }
        Varint.append(order.ttlMs, to: &bytes)
        Varint.append(order.expiresAtMs, to: &bytes)
        Varint.append(order.createdAtMs, to: &bytes)
        Varint.append(order.updatedAtMs &- order.createdAtMs, to: &bytes)
        if let amount = order.amountCents {
            bytes.append(1)
            Varint.append(amount, to: &bytes)
        } else {
            bytes.append(0)
        }
        Varint.append(order.subsidyCents, to: &bytes)
        Varint.append(Int64(labelNumber(order.labels)), to: &bytes)
    }

    /// The order encoded at `offset`, and where its encoding ends. `orderID`: the id, when
    /// the caller has it already (else it is read).
    @usableFromInline func decode(at offset: Int, orderID knownID: String?) -> (order: Order, end: Int) {
        bytes.withUnsafeBufferPointer { buffer in
            var at = offset
            func int() -> Int64 { Varint.readTrusted(buffer, at: &at) }
            func text(length: Int) -> String {
                defer { at += length }
                return String(decoding: UnsafeBufferPointer(rebasing: buffer[at..<(at + length)]), as: UTF8.self)
            }
            let idLength = Int(int())
            let orderID: String
            if let knownID {
                orderID = knownID
                at += idLength
            } else {
                orderID = text(length: idLength)
            }
            let seq = int()
            let user = text(length: Int(int()))
            let sku = SkuID(truncatingIfNeeded: int())
            let units = Int(int())
            let state = OrderState(rawValue: buffer[at])!
            at += 1
            let paymentLength = Int(int())
            let paymentRef = paymentLength == 0 ? nil : text(length: paymentLength - 1)
            let codeCount = Int(int())
            var codes: [OrderCode] = []
            codes.reserveCapacity(codeCount)
            var previous: CodeID = 0
            for _ in 0..<codeCount {
                let id = previous &+ int()
                codes.append(OrderCode(codeID: id, sku: SkuID(truncatingIfNeeded: Int64(sku) + int())))
                previous = id
            }
            let ttlMs = int()
            let expiresAtMs = int()
            let createdAtMs = int()
            let updatedAtMs = createdAtMs &+ int()
            let hasAmount = buffer[at] != 0
            at += 1
            let amountCents = hasAmount ? int() : nil
            let subsidyCents = int()
            let label = Int(int())
            var order = Order(
                seq: seq, orderID: orderID, user: user, sku: sku, units: units, state: state, paymentRef: paymentRef,
                codes: codes, ttlMs: ttlMs, expiresAtMs: expiresAtMs, createdAtMs: createdAtMs, updatedAtMs: updatedAtMs,
                amountCents: amountCents, labels: label == 0 ? nil : labels[label - 1])
            order.subsidyCents = subsidyCents
            return (order, at)
        }
    }
}
