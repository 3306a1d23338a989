import KamiCore
import KamiProtocol

/// kamid's binary protocol: `hello`, then one `issue` per request (a new order of a new user
/// on the hot SKU, quantity 1).
public struct KamiAdapter: WireAdapter {
    public let token: String
    public let sku: String
    /// Users per connection before a user id repeats (0: every order a new user).
    public let usersPerConnection: Int

    public init(token: String, sku: String, usersPerConnection: Int = 0) {
        self.token = token
        self.sku = sku
        self.usersPerConnection = usersPerConnection
    }

    public func handshake() -> (bytes: [UInt8], replies: Int) {
        var hello = Request(id: .number(0), op: .hello)
        hello.client = "default"
        hello.token = token
        var out: [UInt8] = []
        try! BinaryCodec.encode(hello, into: &out)
        return (out, 1)
    }

    public func encode(connection: Int, sequence: Int, into out: inout [UInt8]) -> String {
        let order = "o\(connection)-\(sequence)"
        var request = Request(id: .number(Int64(sequence & 0x7FFF_FFFF)), op: .issue)
        request.order = order
        let user = usersPerConnection > 0 ? sequence % usersPerConnection : sequence
        request.user = "u\(connection)-\(user)"
        request.sku = sku
        request.qty = 1
        request.paymentRef = "pay"
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
            case .success(.order(let order)):
                return (consumed, .ok(codes: order.codes.map { String($0.codeID) }))
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

    public init(mode: Mode) { self.mode = mode }

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
        switch mode {
        case .lua(let sha):
            RESP.command(["EVALSHA", sha, "3", "codes", "orders", "users", order, "u\(connection)-\(sequence)"], into: &out)
        case .lmove:
            RESP.command(["LMOVE", "codes", "issued", "LEFT", "RIGHT"], into: &out)
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
