/// Orders kept compactly in memory (the engine's order table, one per shard): each packed as
/// varints and UTF-8 at the end of one byte array, found by order id. An order stored again
/// is appended again; the old bytes are reclaimed once they are over half of the array.
/// About 50 bytes per order plus its dictionary slot, where an `Order` value takes over 150.
public struct PackedOrders: Sendable {
    /// Order id → offset in `bytes` of the order's latest encoding.
    @usableFromInline var slots: [String: UInt32] = [:]
    @usableFromInline var bytes: [UInt8] = []
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
        slots.reserveCapacity(count)
        bytes.reserveCapacity(count * PackedOrders.typicalBytes)
    }

    /// About the bytes of an order with one code and short ids (`reserve`).
    static let typicalBytes = 56

    /// Orders stored.
    public var count: Int { slots.count }

    /// Bytes of the encodings, superseded ones not yet reclaimed included.
    public var byteCount: Int { bytes.count }

    /// Whether an order has this id.
    public func contains(_ orderID: String) -> Bool { slots[orderID] != nil }

    /// The order with this id, nil when none.
    public func order(_ orderID: String) -> Order? {
        guard let offset = slots[orderID] else { return nil }
        return decode(orderID, at: Int(offset)).order
    }

    /// Calls `body` with every order.
    public func forEach(_ body: (Order) -> Void) {
        for (orderID, offset) in slots { body(decode(orderID, at: Int(offset)).order) }
    }

    /// Stores `order` as its order id's state (replacing the one stored before).
    @inlinable
    public mutating func store(_ order: Order) {
        if bytes.count > Int(UInt32.max) - 4_096 { compact() }
        precondition(bytes.count <= Int(UInt32.max) - 4_096, "an order table shard is over 4 GiB")
        let offset = UInt32(bytes.count)
        encode(order)
        if let old = slots.updateValue(offset, forKey: order.orderID) {
            garbage += end(at: Int(old)) - Int(old)
            if garbage > compactAfterBytes && garbage > bytes.count / 2 { compact() }
        }
    }

    /// Copies the live encodings to a new array, dropping the superseded ones (bytes are
    /// copied as they are: an encoding holds no offsets).
    @usableFromInline mutating func compact() {
        var live: [UInt8] = []
        live.reserveCapacity(bytes.count - garbage)
        let old = bytes
        slots = slots.mapValues { offset in
            let start = Int(offset)
            let moved = UInt32(live.count)
            live.append(contentsOf: old[start..<end(at: start)])
            return moved
        }
        bytes = live
        garbage = 0
    }

    /// Where the encoding at `offset` ends (read without building the order).
    @usableFromInline func end(at offset: Int) -> Int {
        bytes.withUnsafeBufferPointer { buffer in
            var at = offset
            func skipInt(_ count: Int = 1) { for _ in 0..<count { _ = Varint.readTrusted(buffer, at: &at) } }
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

    /// The encoding: seq, user, SKU, units, state, payment ref (length + 1, 0: none), the
    /// codes (count, then each id as a difference from the one before and its SKU as a
    /// difference from the order's), TTL, expiry, creation, update − creation, amount (a byte
    /// 1 then the amount, or a byte 0: none), subsidy, labels number. The order id is the key.
    /// `end(at:)` walks the same fields.
    @inlinable
    mutating func encode(_ order: Order) {
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

    /// The order encoded at `offset`, and where its encoding ends.
    @usableFromInline func decode(_ orderID: String, at offset: Int) -> (order: Order, end: Int) {
        bytes.withUnsafeBufferPointer { buffer in
            var at = offset
            func int() -> Int64 { Varint.readTrusted(buffer, at: &at) }
            func text(length: Int) -> String {
                defer { at += length }
                return String(decoding: UnsafeBufferPointer(rebasing: buffer[at..<(at + length)]), as: UTF8.self)
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
