/// Identifier of one code (card key): the SQLite row id, dense and increasing in import order.
public typealias CodeID = Int64

/// Internal identifier of a SKU: the SQLite row id, dense small integers from 1.
/// Storefronts name SKUs by their string key; the engine maps the key to this id.
public typealias SkuID = Int32

/// Internal identifier of an order: its sequence number in the journal (SQLite row id).
/// Storefronts name orders by their own order id string, which is the idempotency key.
public typealias OrderSeq = Int64

/// Checks of the identifiers that arrive from outside (storefront order ids, user ids,
/// SKU keys, payment references): bounded length, printable ASCII, no separators that
/// would make logs or CSV exports ambiguous.
public enum IdentifierRules {
    /// Returns nil when `value` is an acceptable identifier of at most `maxBytes` bytes,
    /// or a message naming `field` and what is wrong. The message never repeats the value
    /// itself, because a confused client might send a secret in the wrong field.
    public static func problem(_ value: String, field: String, maxBytes: Int) -> String? {
        let utf8 = value.utf8
        if utf8.isEmpty { return "\(field) is empty" }
        if utf8.count > maxBytes { return "\(field) is \(utf8.count) bytes, more than the limit of \(maxBytes)" }
        for byte in utf8 where byte < 0x21 || byte > 0x7E || byte == UInt8(ascii: ",") {
            return "\(field) must be printable ASCII without spaces or commas (found byte 0x"
                + String(byte, radix: 16) + ")"
        }
        return nil
    }
}
