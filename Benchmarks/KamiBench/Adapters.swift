import KamiCore
import KamiProtocol

/// kamid's binary protocol: `hello`, then the scenario's requests.
public struct KamiAdapter: WireAdapter {
    /// What the requests are.
    public enum Mode: Sendable {
        /// One `issue` per request: a new order of a new user, on the SKUs in turn.
        case issue(skus: [String])
        /// Pairs: `reserve` (hold `ttlMs`), then `commit` (7 in 10), `release` (2 in 10), or
        /// nothing but a `stock` query (1 in 10: the hold is abandoned and expires).
        case checkout(sku: String, ttlMs: Int64)
    }

    public let token: String
    public let mode: Mode
    /// `wait_ms` on each issue (orders fulfilled upstream answer once delivered).
    public var waitMs: Int64?
    /// Risk signals on each order, as a storefront sends them: a buyer IP whose /24 changes
    /// with every request, a device, a payment account, an old verified account.
    public var signals = false

    public init(token: String, mode: Mode, waitMs: Int64? = nil) {
        self.token = token
        self.mode = mode
        self.waitMs = waitMs
    }

    public init(token: String, sku: String) { self.init(token: token, mode: .issue(skus: [sku])) }

    public func handshake() -> (bytes: [UInt8], replies: Int) {
        var hello = Request(id: .number(0), op: .hello)
        hello.client = "default"
        hello.token = token
        var out: [UInt8] = []
        try! BinaryCodec.encode(hello, into: &out)
        return (out, 1)
    }

    /// What the second request of checkout pair `pair` does: 0 commit, 1 release, 2 abandon.
    public static func checkoutStep(pair: Int) -> Int {
        let bucket = (pair &* 2_654_435_761) % 10
        return bucket < 7 ? 0 : (bucket < 9 ? 1 : 2)
    }

    public func encode(connection: Int, sequence: Int, into out: inout [UInt8]) -> String {
        let id = RequestID.number(Int64(sequence & 0x7FFF_FFFF))
        var request: Request
        let order: String
        switch mode {
        case .issue(let skus):
            order = "o\(connection)-\(sequence)"
            request = Request(id: id, op: .issue)
            request.order = order
            request.user = "u\(connection)-\(sequence)"
            request.sku = skus[sequence % skus.count]
            request.qty = 1
            request.paymentRef = "pay"
            request.waitMs = waitMs
            if signals {
                request.ip = "10.\(sequence % 250).\((sequence / 250) % 250).\(connection % 250)"
                request.device = "d\(connection)-\(sequence)"
                request.paymentAccount = "pa\(connection)-\(sequence)"
                request.accountAgeDays = 400
                request.phoneVerified = true
                request.amountCents = 2_500
                // The same wait_ms field the signals follow on the wire.
                if request.waitMs == nil { request.waitMs = 0 }
            }
        case .checkout(let sku, let ttlMs):
            let pair = (sequence + 1) / 2
            order = "o\(connection)-\(pair)"
            if sequence % 2 == 1 {
                request = Request(id: id, op: .reserve)
                request.user = "u\(connection)-\(pair)"
                request.sku = sku
                request.qty = 1
                request.ttlMs = ttlMs
                request.order = order
            } else {
                switch KamiAdapter.checkoutStep(pair: pair) {
                case 0:
                    request = Request(id: id, op: .commit)
                    request.order = order
                    request.paymentRef = "pay"
                case 1:
                    request = Request(id: id, op: .release)
                    request.order = order
                default:
                    request = Request(id: id, op: .stock)
                    request.sku = sku
                }
            }
        }
        try! BinaryCodec.encode(request, into: &out)
        return order
    }

    public func parse(_ buffer: UnsafeRawBufferPointer) throws -> (consumed: Int, outcome: ReplyOutcome)? {
        switch BinaryCodec.decodeReply(buffer) {
        case .needMore:
            return nil
        case .failure(_, let error, _, _):
            throw Driver.DriverError("bad reply from kamid: \(error)")
        case .item(let (reply, _), let consumed):
            switch reply.result {
            case .success(.order(let order)) where order.state == .committed:
                return (consumed, .ok(codes: order.codes.map { String($0.codeID) }))
            case .success(.order(let order)) where order.state != .known(.reserved) && order.state != .known(.released)
                && order.state != .known(.expired) && waitMs != nil:
                // Pending (the wait ran out) or failed upstream: not a delivery.
                return (consumed, .error(order.state.description.uppercased()))
            case .success:
                return (consumed, .ok(codes: []))
            case .failure(let error):
                return (consumed, .error(error.code.rawValue))
            }
        }
    }
}

/// kami-echo: the same request frames as kamid, answered with a canned frame.
public struct EchoAdapter: WireAdapter {
    let kami = KamiAdapter(token: "", sku: "hot")

    public init() {}

    public func handshake() -> (bytes: [UInt8], replies: Int) { ([], 0) }

    public func encode(connection: Int, sequence: Int, into out: inout [UInt8]) -> String {
        kami.encode(connection: connection, sequence: sequence, into: &out)
    }

    public func parse(_ buffer: UnsafeRawBufferPointer) throws -> (consumed: Int, outcome: ReplyOutcome)? {
        guard buffer.count >= 12 else { return nil }
        let payload = Int(buffer.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian)
        guard buffer.count >= 12 + payload else { return nil }
        return (12 + payload, .ok(codes: []))
    }
}

/// Redis, the way a shop would do it: an idempotent Lua script (`EVALSHA`) that answers a
/// repeated order with its code, refuses a second code per user, pops a code and records
/// order → code and user → order; or bare `LMOVE` from the stock list to an issued list.
public struct RedisAdapter: WireAdapter {
    public enum Mode: Sendable { case lua(sha: String), lmove }
    public let mode: Mode
    /// Stock lists, used in turn (`codes` for one hot SKU).
    public let lists: [String]

    public init(mode: Mode, lists: [String] = ["codes"]) {
        self.mode = mode
        self.lists = lists
    }

    /// The script. KEYS: codes list, orders hash, users hash; ARGV: order id, user id.
    public static let script = """
        local prior = redis.call('HGET', KEYS[2], ARGV[1])
        if prior then return prior end
        if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then return redis.error_reply('LIMIT_REACHED') end
        local code = redis.call('LPOP', KEYS[1])
        if not code then return redis.error_reply('SOLD_OUT') end
        redis.call('HSET', KEYS[2], ARGV[1], code)
        redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
        return code
        """

    public func handshake() -> (bytes: [UInt8], replies: Int) { ([], 0) }

    public func encode(connection: Int, sequence: Int, into out: inout [UInt8]) -> String {
        let order = "o\(connection)-\(sequence)"
        let list = lists[sequence % lists.count]
        switch mode {
        case .lua(let sha):
            RESP.command(["EVALSHA", sha, "3", list, "orders", "users", order, "u\(connection)-\(sequence)"], into: &out)
        case .lmove:
            RESP.command(["LMOVE", list, "issued", "LEFT", "RIGHT"], into: &out)
        }
        return order
    }

    public func parse(_ buffer: UnsafeRawBufferPointer) throws -> (consumed: Int, outcome: ReplyOutcome)? {
        guard let (value, consumed) = try RESP.parse(buffer) else { return nil }
        switch value {
        case .bulk(let code?): return (consumed, .ok(codes: [code]))
        case .bulk(nil): return (consumed, .error("SOLD_OUT"))
        case .error(let message):
            // Redis 7 prefixes script errors with `ERR `; the code is the next word.
            var words = message.split(separator: " ")
            if words.first == "ERR" && words.count > 1 { words.removeFirst() }
            return (consumed, .error(words.first.map(String.init) ?? message))
        default: return (consumed, .ok(codes: []))
        }
    }
}

/// The Redis serialization protocol, as much as the benchmark needs.
public enum RESP {
    public indirect enum Value: Sendable, Equatable {
        case simple(String)
        case error(String)
        case integer(Int64)
        case bulk(String?)
        case array([Value]?)
    }

    public static func command(_ words: [String], into out: inout [UInt8]) {
        out += Array("*\(words.count)\r\n".utf8)
        for word in words {
            let bytes = Array(word.utf8)
            out += Array("$\(bytes.count)\r\n".utf8)
            out += bytes
            out += [13, 10]
        }
    }

    /// One value at the front of `buffer` and the bytes it took; nil when incomplete.
    public static func parse(_ buffer: UnsafeRawBufferPointer) throws -> (Value, Int)? {
        var at = 0
        return try value(buffer, &at).map { ($0, at) }
    }

    private static func line(_ buffer: UnsafeRawBufferPointer, _ at: inout Int) -> String? {
        var index = at
        while index + 1 < buffer.count {
            if buffer[index] == 13 && buffer[index + 1] == 10 {
                let text = String(decoding: UnsafeRawBufferPointer(rebasing: buffer[at..<index]), as: UTF8.self)
                at = index + 2
                return text
            }
            index += 1
        }
        return nil
    }

    private static func value(_ buffer: UnsafeRawBufferPointer, _ at: inout Int) throws -> Value? {
        guard at < buffer.count else { return nil }
        let kind = buffer[at]
        var cursor = at + 1
        guard let head = line(buffer, &cursor) else { return nil }
        switch kind {
        case UInt8(ascii: "+"): at = cursor; return .simple(head)
        case UInt8(ascii: "-"): at = cursor; return .error(head)
        case UInt8(ascii: ":"):
            guard let number = Int64(head) else { throw Driver.DriverError("bad RESP integer \(head)") }
            at = cursor
            return .integer(number)
        case UInt8(ascii: "$"):
            guard let length = Int(head) else { throw Driver.DriverError("bad RESP length \(head)") }
            if length < 0 { at = cursor; return .bulk(nil) }
            guard cursor + length + 2 <= buffer.count else { return nil }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: buffer[cursor..<(cursor + length)]), as: UTF8.self)
            at = cursor + length + 2
            return .bulk(text)
        case UInt8(ascii: "*"):
            guard let count = Int(head) else { throw Driver.DriverError("bad RESP array \(head)") }
            if count < 0 { at = cursor; return .array(nil) }
            var items: [Value] = []
            items.reserveCapacity(count)
            for _ in 0..<count {
                guard let item = try value(buffer, &cursor) else { return nil }
                items.append(item)
            }
            at = cursor
            return .array(items)
        default:
            throw Driver.DriverError("bad RESP type byte \(kind)")
        }
    }
}
