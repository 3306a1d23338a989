import KamiCore
import KamiProtocol
import XCTest

/// Sample messages covering every operation and every reply body, shared by the tests.
enum Fixtures {
    /// A secret with every kind of byte a JSON writer must get right.
    static let trickySecret = Secret("Q\"u\\o/te\n\t\u{01}中文😀-ABCD-1234")

    /// One request per storefront operation (the ones binary frames carry), each with every
    /// field its operation uses, plus variants with optional fields absent.
    static let storefrontRequests: [Request] = {
        var list: [Request] = []
        var hello = Request(id: .number(1), op: .hello)
        hello.client = "shop-1"
        hello.token = "tök€n-ÄÖ"
        list.append(hello)
        list.append(Request(id: .number(2), op: .ping))
        var reserve = Request(id: .number(3), op: .reserve)
        reserve.order = "A-1001"
        reserve.user = "alice"
        reserve.sku = "vip-month"
        reserve.qty = 2
        reserve.ttlMs = 60_000
        reserve.ip = "203.0.113.7"
        list.append(reserve)
        var reserveDefaults = reserve
        reserveDefaults.id = .number(4)
        reserveDefaults.ttlMs = nil
        reserveDefaults.ip = nil
        reserveDefaults.device = "device-9"
        list.append(reserveDefaults)
        var commit = Request(id: .number(5), op: .commit)
        commit.order = "A-1001"
        commit.paymentRef = "pay-77"
        list.append(commit)
        var issue = Request(id: .number(Int64(UInt32.max)), op: .issue)
        issue.order = "B-2"
        issue.user = "bob"
        issue.sku = "game-100"
        issue.qty = 1
        issue.paymentRef = "pay-78"
        issue.ip = "2001:db8::1"
        issue.device = "iPhone"
        list.append(issue)
        var release = Request(id: .number(0), op: .release)
        release.order = "A-1001"
        list.append(release)
        var order = Request(id: .number(8), op: .order)
        order.order = ""
        list.append(order)
        var entitlements = Request(id: .number(9), op: .entitlements)
        entitlements.user = "alice"
        list.append(entitlements)
        var stock = Request(id: .number(10), op: .stock)
        stock.sku = "vip-month"
        list.append(stock)
        // Risk signals, the owner on lookups, and the risk op.
        var signalled = reserve
        signalled.id = .number(11)
        signalled.paymentAccount = "alipay-fp-1"
        signalled.amountCents = 0
        signalled.accountAgeDays = -3
        signalled.phoneVerified = false
        list.append(signalled)
        var paid = issue
        paid.id = .number(12)
        paid.amountCents = 129_900
        paid.phoneVerified = true
        paid.challengeToken = "v1.1700000000000.abcdef"
        list.append(paid)
        var paidWaiting = paid
        paidWaiting.id = .number(13)
        paidWaiting.waitMs = 5_000
        list.append(paidWaiting)
        // Money: the labels of an order, with and without risk signals.
        var labelled = issue
        labelled.id = .number(40)
        labelled.currency = "CNY"
        labelled.channel = "taobao"
        labelled.campaign = "618"
        labelled.coupon = "C-1"
        labelled.distributor = "d7"
        list.append(labelled)
        var labelledHold = reserve
        labelledHold.id = .number(41)
        labelledHold.amountCents = 1_990
        labelledHold.channel = "app"
        list.append(labelledHold)
        var owned = order
        owned.id = .number(14)
        owned.order = "B-2"
        owned.user = "bob"
        owned.ip = "198.51.100.4"
        list.append(owned)
        var ownedEntitlements = entitlements
        ownedEntitlements.id = .number(15)
        ownedEntitlements.ip = "198.51.100.4"
        list.append(ownedEntitlements)
        var login = Request(id: .number(16), op: .risk)
        login.event = "login"
        login.user = "carol"
        login.ip = "::1"
        login.accountAgeDays = 10
        list.append(login)
        var commitOwned = commit
        commitOwned.id = .number(19)
        commitOwned.user = "alice"
        list.append(commitOwned)
        var waitOwned = Request(id: .number(18), op: .wait)
        waitOwned.order = "B-2"
        waitOwned.waitMs = 1_000
        waitOwned.user = "bob"
        list.append(waitOwned)
        var bare = Request(id: .number(17), op: .risk)
        bare.event = "browse"
        list.append(bare)
        return list
    }()

    /// One request per operator operation (JSON only), with the operator fields.
    static let operatorRequests: [Request] = {
        var list: [Request] = []
        var skuSet = Request(id: .string("op-1"), op: .skuSet)
        skuSet.sku = "vip"
        skuSet.name = "VIP 月卡"
        skuSet.priceCents = 1_999
        skuSet.perUserLimit = 2
        skuSet.activationURL = "https://example.com/activate?code={code}"
        list.append(skuSet)
        var importCSV = Request(id: .bool(true), op: .importCSV)
        importCSV.sku = "vip"
        importCSV.path = "/var/lib/kami/codes.csv"
        importCSV.batch = "2024-06"
        importCSV.dryRun = true
        list.append(importCSV)
        var void = Request(id: .none, op: .void)
        void.batch = "2024-06"
        void.codeID = Int64.max
        list.append(void)
        var refund = Request(id: .number(-5), op: .refund)
        refund.order = "A-1001"
        list.append(refund)
        var export = Request(id: .number(Int64.min), op: .export)
        export.sku = "vip"
        export.path = "out.csv"
        export.withSecrets = false
        list.append(export)
        list.append(Request(id: .bool(false), op: .stats))
        list.append(Request(id: .string(""), op: .verify))
        list.append(Request(id: .string("重载"), op: .reload))
        return list
    }()

    static let committedOrder = WireOrder(
        order: "A-1001", state: .committed, sku: "vip-month", qty: 2, expiresAtMs: 0,
        codes: [
            WireCode(codeID: 123, sku: "vip-month", secret: trickySecret),
            WireCode(codeID: Int64.max, sku: "vip-month", secret: nil, cardNumber: "6222 0000 1111",
                     activationURL: "https://example.com/a?c=\"x\""),
        ])

    static let reservedOrder = WireOrder(
        order: "B-2", state: .reserved, sku: "game-100", qty: 1, expiresAtMs: 1_717_000_000_000, codes: [])

    static let entitlementCodes = [
        WireCode(codeID: 1, sku: "vip", secret: Secret("S1"), cardNumber: nil, activationURL: nil,
                 state: .issued, order: "o1"),
        WireCode(codeID: 2, sku: "game", secret: nil, cardNumber: "card", activationURL: "u",
                 state: .voided, order: "o2"),
    ]

    static let stock = WireStock(sku: "vip", available: 10, reserved: 2, issued: 5, voided: 1, imported: 18)

    /// Every reply body that binary frames carry, with an operation that returns it.
    static let binaryReplies: [(Reply, WireOp)] = [
        (Reply(id: .number(1), result: .success(.hello(WireHello.current))), .hello),
        (Reply(id: .number(2), result: .success(.empty)), .ping),
        (Reply(id: .number(3), result: .success(.order(reservedOrder))), .reserve),
        (Reply(id: .number(4), result: .success(.order(committedOrder))), .commit),
        (Reply(id: .number(5), result: .success(.order(committedOrder))), .issue),
        (Reply(id: .number(6), result: .success(.order(reservedOrder))), .release),
        (Reply(id: .number(7), result: .success(.order(committedOrder))), .order),
        (Reply(id: .number(8), result: .success(.codes(entitlementCodes, nextCursor: "12.3"))), .entitlements),
        (Reply(id: .number(9), result: .success(.codes([], nextCursor: nil))), .entitlements),
        (Reply(id: .number(10), result: .success(.stock(stock))), .stock),
        (Reply(id: .number(11), result: .success(.risk(RiskVerdict(decision: .challenge, reason: "velocity", rules: ["a", "b.c"],
                                                                    score: -5, challenge: "v1.9.ff")))), .risk),
        (Reply(id: .number(12), result: .success(.risk(.allowed))), .risk),
        (Reply(id: .number(13), result: .failure(KamiError(.denied, "no", verdict: RiskVerdict(
            decision: .deny, reason: "blocked", rules: ["blocked"], score: 1_000)))), .issue),
        (Reply(id: .number(14), result: .failure(KamiError(.challenge, "prove it", verdict: RiskVerdict(
            decision: .challenge, reason: "x", rules: [], score: 40, challenge: "v1.1.aa")))), .reserve),
    ] + ErrorCode.allCases.enumerated().map { index, code in
        let error = KamiError(code, "because \(code) — 原因")
        return (Reply(id: .number(Int64(100 + index)), result: .failure(error)), .issue)
    }

    /// Operator reply fields, nested the way stats and import reports are.
    static let operatorFields: [(String, JSONValue)] = [
        ("imported", .int(1000)),
        ("duplicates", .array([.object([("line", .int(7)), ("reason", .string("duplicate \"secret\""))])])),
        ("dry_run", .bool(false)),
        ("note", .null),
        ("per_sku", .object([("vip", .object([("available", .int(-1))]))])),
    ]

    /// Every reply body in JSON, with the ids JSON allows.
    static let jsonReplies: [Reply] = binaryReplies.map(\.0) + [
        Reply(id: .string("req-1"), result: .success(.fields(operatorFields))),
        Reply(id: .none, result: .success(.fields([("ok_count", .int(0))]))),
        Reply(id: .bool(false), result: .success(.order(committedOrder))),
        Reply(id: .number(Int64.min), result: .success(.stock(stock))),
    ]
}

// MARK: Helpers

extension Array where Element == UInt8 {
    /// Runs a decoder over these bytes.
    func decode<T>(_ decoder: (UnsafeRawBufferPointer) -> DecodeResult<T>) -> DecodeResult<T> {
        withUnsafeBytes { decoder($0) }
    }
}

/// The item and consumed count, failing the test otherwise.
func expectItem<T>(_ result: DecodeResult<T>, file: StaticString = #filePath, line: UInt = #line) -> (T, Int)? {
    guard case .item(let value, let consumed) = result else {
        XCTFail("expected an item, got \(describe(result))", file: file, line: line)
        return nil
    }
    return (value, consumed)
}

/// The failure's parts, failing the test otherwise.
func expectFailure<T>(_ result: DecodeResult<T>, file: StaticString = #filePath, line: UInt = #line)
    -> (id: RequestID, error: KamiError, consumed: Int, fatal: Bool)?
{
    guard case .failure(let id, let error, let consumed, let fatal) = result else {
        XCTFail("expected a failure, got \(describe(result))", file: file, line: line)
        return nil
    }
    return (id, error, consumed, fatal)
}

func isNeedMore<T>(_ result: DecodeResult<T>) -> Bool {
    if case .needMore = result { return true }
    return false
}

func describe<T>(_ result: DecodeResult<T>) -> String {
    switch result {
    case .needMore: "needMore"
    case .item(_, let consumed): "item(consumed: \(consumed))"
    case .failure(let id, let error, let consumed, let fatal): "failure(\(id), \(error), \(consumed), fatal: \(fatal))"
    }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// A binary frame built by hand, for inputs the encoder would never produce.
func frame(magic: UInt8 = 0xB1, version: UInt8 = 1, op: UInt8, flags: UInt8 = 0, id: UInt32 = 42,
           claimedLength: UInt32? = nil, payload: [UInt8]) -> [UInt8]
{
    var out: [UInt8] = [magic, version, op, flags]
    withUnsafeBytes(of: id.littleEndian) { out.append(contentsOf: $0) }
    withUnsafeBytes(of: (claimedLength ?? UInt32(payload.count)).littleEndian) { out.append(contentsOf: $0) }
    return out + payload
}

/// A binary `str`.
func str(_ text: String) -> [UInt8] { strBytes(Array(text.utf8)) }

func strBytes(_ bytes: [UInt8]) -> [UInt8] {
    [UInt8(bytes.count & 0xFF), UInt8(bytes.count >> 8)] + bytes
}

/// XCTest brings Foundation's `Operation` into scope; this names ours.
typealias WireOp = KamiProtocol.Operation
