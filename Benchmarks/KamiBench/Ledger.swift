/// What a benchmark run must leave behind, checked after every run: a benchmark that does not
/// verify is not a result.
///
/// `acknowledged` is what the clients were told (order → codes, from successful replies);
/// the rest is read back from the server's storage after the run.
public struct Ledger: Sendable {
    /// One order as stored.
    public struct StoredOrder: Sendable, Equatable {
        public var user: String
        public var committed: Bool
        public var codes: [String]
        public init(user: String, committed: Bool, codes: [String]) {
            self.user = user
            self.committed = committed
            self.codes = codes
        }
    }

    /// Order id → codes, from the successful replies the clients received.
    public var acknowledged: [String: [String]] = [:]
    /// Order id → the order, from the server's storage.
    public var stored: [String: StoredOrder] = [:]
    /// Codes loaded before the run.
    public var stock: Int = 0
    /// Codes still available in storage after the run.
    public var available: Int = 0
    /// Codes still held by unpaid orders after the run (checkout).
    public var held: Int = 0
    /// Most codes one user may hold (0: no limit).
    public var perUserLimit: Int = 0
    /// Every code that was loaded, when known (an issued code must be one of them).
    public var loaded: Set<String>?

    public init() {}

    /// Every broken invariant; empty when the run is a result.
    public func audit() -> [String] {
        var problems: [String] = []
        func problem(_ text: String) { if problems.count < 20 { problems.append(text) } }
        // Nothing acknowledged is lost, and what was acknowledged is what is stored.
        for (order, codes) in acknowledged {
            guard let row = stored[order] else { problem("acknowledged order \(order) is not stored"); continue }
            if !row.committed { problem("acknowledged order \(order) is not committed in storage") }
            if row.codes.sorted() != codes.sorted() {
                problem("order \(order): the client got \(codes), storage has \(row.codes)")
            }
        }
        // No code on two orders; every issued code was loaded.
        var holder: [String: String] = [:]
        var issued = 0
        var perUser: [String: Int] = [:]
        for (order, row) in stored where row.committed {
            for code in row.codes {
                issued += 1
                if let other = holder[code] { problem("code \(code) is on orders \(other) and \(order)") }
                holder[code] = order
                if let loaded, !loaded.contains(code) { problem("order \(order) holds code \(code) that was never loaded") }
            }
            perUser[row.user, default: 0] += row.codes.count
        }
        // Codes issued = successful replies (no issue the clients were not told about).
        let acknowledgedCodes = acknowledged.values.reduce(0) { $0 + $1.count }
        if issued != acknowledgedCodes {
            problem("storage holds \(issued) issued codes, clients were told of \(acknowledgedCodes)")
        }
        // No oversell, and stock is conserved.
        if issued > stock { problem("oversold: \(issued) codes issued from a stock of \(stock)") }
        if issued + available + held != stock {
            problem("conservation: \(issued) issued + \(available) available + \(held) held != \(stock) loaded")
        }
        if perUserLimit > 0 {
            for (user, held) in perUser where held > perUserLimit {
                problem("user \(user) holds \(held) codes, over the limit of \(perUserLimit)")
            }
        }
        return problems
    }
}
