/// Identifier of one code (card key): the SQLite row id, dense and increasing in import order.
public typealias CodeID = Int64

/// Internal identifier of a SKU: the SQLite row id, dense small integers from 1.
/// Storefronts name SKUs by their string key; the engine maps the key to this id.
public typealias SkuID = Int32

/// Internal identifier of an order: its sequence number in the journal (SQLite row id).
/// Storefronts name orders by their own order id string, which is the idempotency key.
public typealias OrderSeq = Int64
