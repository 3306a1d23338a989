import Foundation
import KamiCore
import KamiProtocol
import XCTest

/// The risk gate in a live kamid: attack scenarios replayed over the real protocol, each
/// stopped by the rule meant for it while honest buyers on the same SKU are all served.
final class RiskDaemonTests: XCTestCase {
    static let rules = """
        thresholds challenge=40 review=70 deny=100
        rule blocked          list      list=block action=deny
        rule device_accounts  distinct  on=reserve,issue key=device count=user max=3 window=1h score=100
        rule per_ip           rate      on=reserve,issue key=ip rate=10/m burst=10 score=100
        rule per_net          rate      on=reserve,issue key=net rate=100/m burst=100 score=100
        rule hoard_net        holds     key=net max=50 score=100
        rule payment_users    distinct  on=issue,pay key=payment count=user max=3 window=1h score=100
        rule new_account      attribute on=reserve,issue when=account_age_days<1 score=50
        rule login_storm      rate      on=login key=net rate=30/m burst=30 score=60
        rule quiet            attribute on=issue when=units>50 score=100 mode=shadow
        """

    private var folder = ""

    override func setUp() {
        folder = NSTemporaryDirectory() + "kamid-risk-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    /// A kamid whose config names a rules file with `rules`.
    private func start(rules: String = RiskDaemonTests.rules, data: String? = nil) throws -> Kamid {
        try rules.write(toFile: folder + "/risk.rules", atomically: true, encoding: .utf8)
        try (Kamid.twoLoops + "risk_rules = \(folder)/risk.rules\nrisk_lookup_failures_per_minute = 30\n")
            .write(toFile: folder + "/kamid.conf", atomically: true, encoding: .utf8)
        return try Kamid(directory: data ?? folder + "/data", arguments: ["--config", folder + "/kamid.conf"])
    }

    private func pipelined(_ client: RawClient, _ lines: [String]) -> [Reply?] {
        var replies: [Reply?] = []
        var index = 0
        while index < lines.count {
            let chunk = lines[index..<min(index + 500, lines.count)]
            client.send(chunk.map { "{" + $0 + "}\n" }.joined())
            for _ in chunk { replies.append(client.readJSONReply()) }
            index += chunk.count
        }
        return replies
    }

    /// Honest buyer `n`: a user, device and network of their own, an old verified account.
    private static func honest(_ n: Int, id: Int) -> String {
        #""id":\#(id),"op":"issue","order":"h-\#(n)","user":"buyer-\#(n)","sku":"vip","qty":1,"payment_ref":"p-\#(n)","ip":"172.\#(16 + n / 250 % 16).\#(n % 250).9","device":"phone-\#(n)","account_age_days":400,"phone_verified":true,"payment_account":"alipay-\#(n)""#
    }

    /// Interleaves `attack` with one honest order every `every` lines; returns the replies
    /// to the attack and asserts every honest order was served.
    private func replay(_ client: RawClient, attack: [String], every: Int, honestFrom: Int,
                        file: StaticString = #filePath, line: UInt = #line) -> [Reply?] {
        var lines: [String] = []
        var honestIndex: [Int] = []
        var n = honestFrom
        for (index, request) in attack.enumerated() {
            if index % every == 0 {
                honestIndex.append(lines.count)
                lines.append(RiskDaemonTests.honest(n, id: 900_000 + n))
                n += 1
            }
            lines.append(request)
        }
        let replies = pipelined(client, lines)
        for index in honestIndex {
            XCTAssertEqual(replies[index]?.order?.state, .committed, "honest buyer refused: \(String(describing: replies[index]))",
                           file: file, line: line)
        }
        let honest = Set(honestIndex)
        return replies.enumerated().filter { !honest.contains($0.offset) }.map(\.element)
    }

    private func rules(_ reply: Reply?) -> [String] { reply?.error?.verdict?.rules ?? [] }

    func testAttacksAreStoppedByTheirRulesWhileHonestBuyersAreServed() throws {
        let kamid = try start()
        defer { XCTAssertEqual(kamid.stop(), 0) }
        try kamid.stock(sku: "vip", count: 2_000)
        let client = try kamid.storefront()

        // 1. One device behind 500 accounts, each from a network of its own.
        let farm = (0..<500).map { i in
            #""id":\#(i),"op":"issue","order":"farm-\#(i)","user":"farm-\#(i)","sku":"vip","qty":1,"payment_ref":"p","ip":"10.\#(i / 250).\#(i % 250).1","device":"emulator-1""#
        }
        let farmReplies = replay(client, attack: farm, every: 10, honestFrom: 0)
        XCTAssertEqual(farmReplies.filter { $0?.order?.state == .committed }.count, 3, "three accounts per device")
        let farmDenied = farmReplies.filter { $0?.error?.code == .denied }
        XCTAssertEqual(farmDenied.count, 497)
        XCTAssertTrue(farmDenied.allSatisfy { rules($0) == ["device_accounts"] && $0?.error?.verdict?.reason == "velocity" })

        // 2. A /24 of 200 bots, three orders each: every bot is under the per-IP limit.
        let bots = (0..<600).map { i in
            let bot = i % 200
            return #""id":\#(i),"op":"issue","order":"bot-\#(i)","user":"bot-\#(bot)","sku":"vip","qty":1,"payment_ref":"p","ip":"198.51.100.\#(bot + 1)","device":"bot-dev-\#(bot)""#
        }
        let botReplies = replay(client, attack: bots, every: 20, honestFrom: 1_000)
        XCTAssertEqual(botReplies.filter { $0?.order?.state == .committed }.count, 100, "the network's burst")
        XCTAssertTrue(botReplies.filter { $0?.error != nil }.allSatisfy { rules($0) == ["per_net"] },
                      "\(botReplies.first { rules($0) != ["per_net"] && $0?.error != nil } as Any)")

        // 3. A hoarder reserving with 1,000 users from one network, never paying.
        let hoard = (0..<1_000).map { i in
            #""id":\#(i),"op":"reserve","order":"hoard-\#(i)","user":"hoarder-\#(i)","sku":"vip","qty":1,"ttl_ms":600000,"ip":"203.0.113.\#(i % 250)","device":"hd-\#(i)""#
        }
        let hoardReplies = replay(client, attack: hoard, every: 25, honestFrom: 2_000)
        XCTAssertEqual(hoardReplies.filter { $0?.order?.state == .reserved }.count, 50, "fifty unpaid holds per network")
        XCTAssertTrue(hoardReplies.filter { $0?.error != nil }.allSatisfy { rules($0).contains("hoard_net") })
        XCTAssertEqual(client.call(#""id":1,"op":"release","order":"hoard-0""#)?.order?.state, .released)

        // 5. Card testing: one payment account across many users.
        let cards = (0..<60).map { i in
            #""id":\#(i),"op":"issue","order":"card-\#(i)","user":"tester-\#(i)","sku":"vip","qty":1,"payment_ref":"p","ip":"100.64.\#(i).1","device":"td-\#(i)","payment_account":"stolen-card-1""#
        }
        let cardReplies = replay(client, attack: cards, every: 5, honestFrom: 3_000)
        XCTAssertEqual(cardReplies.filter { $0?.order?.state == .committed }.count, 3)
        XCTAssertTrue(cardReplies.filter { $0?.error != nil }.allSatisfy { rules($0) == ["payment_users"] })

        // Every decision is in the metrics-facing figures, the audit chain and verify is clean.
        XCTAssertEqual(try kamid.violations(), [])
        let admin = try RawClient(unixPath: kamid.socketPath)
        guard case .success(.fields(let listing))? = admin.call(#""id":1,"op":"risk_list""#)?.result,
              case .array(let ruleFigures)? = listing.first(where: { $0.0 == "rules" })?.1 else {
            return XCTFail("risk_list")
        }
        let fired = ruleFigures.compactMap { figure -> (String, Int64)? in
            guard case .object(let fields) = figure, case .string(let name)? = fields.first(where: { $0.0 == "name" })?.1,
                  case .int(let count)? = fields.first(where: { $0.0 == "fired" })?.1 else { return nil }
            return (name, count)
        }
        let byName = Dictionary(uniqueKeysWithValues: fired)
        XCTAssertEqual(byName["device_accounts"], 497)
        XCTAssertEqual(byName["payment_users"], 57)
        XCTAssertEqual(byName["blocked"], 0)
    }

    func testAScraperEnumeratingOrderIdsGetsNoSecretAndIsSlowedDown() throws {
        let kamid = try start()
        defer { XCTAssertEqual(kamid.stop(), 0) }
        try kamid.stock(sku: "vip", count: 50)
        let client = try kamid.storefront()
        var secrets: [String] = []
        for n in 0..<20 {
            let reply = client.call(RiskDaemonTests.honest(n, id: n))
            XCTAssertEqual(reply?.order?.state, .committed)
            secrets += reply?.order?.codes.compactMap { $0.secret?.reveal() } ?? []
        }
        // The owner sees their order; a missing user is refused; another user is NOT_FOUND.
        XCTAssertNotNil(client.call(#""id":1,"op":"order","order":"h-3","user":"buyer-3""#)?.order?.codes.first?.secret)
        XCTAssertEqual(client.call(#""id":2,"op":"order","order":"h-3""#)?.error?.code, .badRequest)
        XCTAssertEqual(client.call(#""id":3,"op":"order","order":"h-3","user":"buyer-4","ip":"100.1.1.1""#)?.error?.code, .notFound)

        // 100,000 ids from one IP, half with a fresh user name each time: the real orders
        // (h-0 … h-19) are among them.
        let lines = (0..<100_000).map { i in
            let user = i % 2 == 0 ? "scraper" : "sock-\(i)"
            return #""id":\#(i),"op":"order","order":"h-\#(i % 5_000)","user":"\#(user)","ip":"192.0.2.77""#
        }
        let replies = pipelined(client, lines)
        XCTAssertEqual(replies.count, 100_000)
        XCTAssertEqual(replies.filter { $0?.isOK == true }.count, 0, "no order was shown to a stranger")
        let reachedStore = replies.filter { $0?.error?.code == .notFound }.count
        // 30 failures a minute, refilled while the run lasts (seconds).
        XCTAssertLessThanOrEqual(reachedStore, 40, "after 30 failures a minute the IP is refused before the store")
        XCTAssertEqual(replies.filter { $0?.error?.code == .limitReached }.count, 100_000 - reachedStore)
        let log = kamid.log.joined(separator: "\n")
        for secret in secrets { XCTAssertFalse(log.contains(secret), "a secret reached the log") }
        // The owner, from their own IP, is not slowed down by the scraper.
        XCTAssertNotNil(client.call(#""id":4,"op":"order","order":"h-5","user":"buyer-5","ip":"172.16.5.9""#)?.order?.codes.first?.secret)
        // Reveals are audited: who saw which codes.
        XCTAssertEqual(try kamid.violations(), [])
    }

    func testChallengeTokensRiskOpListsAndReloads() throws {
        var kamid = try start()
        try kamid.stock(sku: "vip", count: 50)
        let client = try kamid.storefront()
        // A new account is challenged; the token it gets, sent back, lets the order through.
        let challenged = client.call(#""id":1,"op":"issue","order":"n1","user":"newbie","sku":"vip","qty":1,"payment_ref":"p","ip":"8.8.4.4","account_age_days":0"#)
        XCTAssertEqual(challenged?.error?.code, .challenge)
        XCTAssertEqual(challenged?.error?.verdict?.rules, ["new_account"])
        let token = try XCTUnwrap(challenged?.error?.verdict?.challenge)
        let forged = client.call(#""id":2,"op":"issue","order":"n1","user":"newbie","sku":"vip","qty":1,"payment_ref":"p","ip":"8.8.4.4","account_age_days":0,"challenge_token":"v1.99999999999999.abc""#)
        XCTAssertEqual(forged?.error?.code, .challenge)
        let passed = client.call(#""id":3,"op":"issue","order":"n1","user":"newbie","sku":"vip","qty":1,"payment_ref":"p","ip":"8.8.4.4","account_age_days":0,"challenge_token":"\#(token)""#)
        XCTAssertEqual(passed?.order?.state, .committed)

        // The decision API: a login storm from one /24 is challenged after its burst.
        var decisions: [String] = []
        for i in 0..<40 {
            guard case .success(.risk(let verdict))? = client.call(#""id":\#(i),"op":"risk","event":"login","user":"l\#(i)","ip":"45.33.32.\#(i)""#)?.result else {
                return XCTFail("risk op")
            }
            decisions.append(verdict.decision.rawValue)
        }
        XCTAssertEqual(decisions.filter { $0 == "allow" }.count, 30)
        XCTAssertEqual(decisions.filter { $0 == "challenge" }.count, 10)
        XCTAssertEqual(client.call(#""id":50,"op":"risk","user":"x""#)?.error?.code, .badRequest, "an event is required")

        // Block lists: live, durable, audited, and they survive a restart.
        let admin = try RawClient(unixPath: kamid.socketPath)
        XCTAssertEqual(admin.call(#""id":1,"op":"risk_block","kind":"user","value":"mallory","name":"chargebacks""#)?.isOK, true)
        XCTAssertEqual(admin.call(#""id":2,"op":"risk_block","kind":"ip","value":"999.1.1.1""#)?.error?.code, .badRequest)
        let blocked = client.call(#""id":60,"op":"issue","order":"m1","user":"mallory","sku":"vip","qty":1,"payment_ref":"p""#)
        XCTAssertEqual(blocked?.error?.code, .denied)
        XCTAssertEqual(blocked?.error?.verdict?.reason, "block_listed")
        let dryReply = admin.call(#""id":3,"op":"risk_test","event":"issue","user":"mallory""#)
        // Its shape is a verdict's (plus the shadow rules), so a reader sees one.
        guard case .success(.risk(let dry))? = dryReply?.result else { return XCTFail("risk_test: \(String(describing: dryReply))") }
        XCTAssertEqual(dry.decision, .deny)
        XCTAssertEqual(client.call(#""id":63,"op":"issue","order":"m0","user":"mallory","sku":"vip","qty":1,"payment_ref":"p""#)?.error?.code,
                       .denied, "the dry run changed nothing, the block stays")

        // A bad rules file on reload is refused by file:line and the old rules stay.
        try "rule broken rate key=ip rate=fast score=1\n".write(toFile: folder + "/risk.rules", atomically: true, encoding: .utf8)
        let rejected = admin.call(#""id":4,"op":"reload""#)
        XCTAssertEqual(rejected?.error?.code, .badRequest)
        XCTAssertTrue(rejected?.error?.message.contains("risk.rules:1") ?? false, "\(String(describing: rejected))")
        XCTAssertEqual(client.call(#""id":61,"op":"issue","order":"n2","user":"newbie2","sku":"vip","qty":1,"payment_ref":"p","account_age_days":0"#)?.error?.code,
                       .challenge, "the old rules still decide")
        // A good one changes decisions at once.
        try "rule blocked list list=block action=deny\n".write(toFile: folder + "/risk.rules", atomically: true, encoding: .utf8)
        XCTAssertEqual(admin.call(#""id":5,"op":"reload""#)?.isOK, true)
        XCTAssertEqual(client.call(#""id":62,"op":"issue","order":"n2","user":"newbie2","sku":"vip","qty":1,"payment_ref":"p","account_age_days":0"#)?.order?.state,
                       .committed)

        XCTAssertEqual(kamid.stop(), 0)
        kamid = try start(rules: "rule blocked list list=block action=deny\n")
        defer { XCTAssertEqual(kamid.stop(), 0) }
        let again = try kamid.storefront()
        XCTAssertEqual(again.call(#""id":1,"op":"issue","order":"m2","user":"mallory","sku":"vip","qty":1,"payment_ref":"p""#)?.error?.code,
                       .denied, "the block list is in the database")
        let unblock = try RawClient(unixPath: kamid.socketPath)
        XCTAssertEqual(unblock.call(#""id":1,"op":"risk_unblock","kind":"user","value":"mallory""#)?.isOK, true)
        XCTAssertEqual(again.call(#""id":2,"op":"issue","order":"m2","user":"mallory","sku":"vip","qty":1,"payment_ref":"p""#)?.order?.state,
                       .committed)
        XCTAssertEqual(try kamid.violations(), [])
    }

    func testReloadUnderLoadChangesDecisionsWithoutDroppingARequest() throws {
        let kamid = try start(rules: "rule blocked list list=block action=deny\n")
        defer { XCTAssertEqual(kamid.stop(), 0) }
        try kamid.stock(sku: "vip", count: 5_000)
        let client = try kamid.storefront()
        let admin = try RawClient(unixPath: kamid.socketPath)
        let stop = Locked(false)
        let reloads = Thread { [folder] in
            var flip = false
            while !stop.withLock({ $0 }) {
                flip.toggle()
                let text = flip ? "rule big attribute when=units>=1 on=issue action=deny\n" : "rule blocked list list=block action=deny\n"
                try? text.write(toFile: folder + "/risk.rules", atomically: true, encoding: .utf8)
                _ = admin.call(#""id":1,"op":"reload""#)
                usleep(20_000)
            }
        }
        reloads.start()
        let lines = (0..<3_000).map { i in
            #""id":\#(i),"op":"issue","order":"r-\#(i)","user":"r-\#(i)","sku":"vip","qty":1,"payment_ref":"p""#
        }
        let replies = pipelined(client, lines)
        stop.withLock { $0 = true }
        while !reloads.isFinished { usleep(10_000) }
        XCTAssertEqual(replies.compactMap { $0 }.count, 3_000, "every request was answered")
        let committed = replies.filter { $0?.order?.state == .committed }.count
        let denied = replies.filter { $0?.error?.code == .denied }.count
        XCTAssertEqual(committed + denied, 3_000, "\(replies.first { $0?.isOK != true && $0?.error?.code != .denied } as Any)")
        XCTAssertGreaterThan(denied, 0, "the reloaded rule decided")
        XCTAssertGreaterThan(committed, 0)
        XCTAssertEqual(try kamid.violations(), [])
    }

    private func kamictl(_ arguments: [String], socket: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Kamid.binary).deletingLastPathComponent().appendingPathComponent("kamictl")
        process.arguments = ["--socket", socket] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testKamictlManagesListsTestsRulesAndShowsReveals() throws {
        let kamid = try start()
        defer { XCTAssertEqual(kamid.stop(), 0) }
        try kamid.stock(sku: "vip", count: 10)
        let socket = kamid.socketPath
        let block = try kamictl(["risk", "block", "ip", "203.0.113.0/24", "--note", "botnet"], socket: socket)
        XCTAssertEqual(block.status, 0, block.output)
        let bad = try kamictl(["risk", "block", "ip", "300.0.0.1"], socket: socket)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("is not an IP address or CIDR"), bad.output)
        let listed = try kamictl(["risk", "list"], socket: socket)
        XCTAssertTrue(listed.output.contains("block  ip  203.0.113.0/24  database  botnet"), listed.output)
        XCTAssertTrue(listed.output.contains("device_accounts  distinct  enforce  0  0"), listed.output)
        XCTAssertTrue(listed.output.contains("quiet  attribute  shadow"), listed.output)
        let tested = try kamictl(["risk", "test", "issue", "--user", "x", "--ip", "203.0.113.9"], socket: socket)
        XCTAssertEqual(tested.output, "decision deny (block_listed), score 0, rules blocked\n")
        let young = try kamictl(["risk", "test", "issue", "--user", "y", "--age-days", "0"], socket: socket)
        XCTAssertEqual(young.output, "decision challenge (suspicious_attributes), score 50, rules new_account\n")
        XCTAssertEqual(try kamictl(["risk", "test", "issue", "--qty", "many"], socket: socket).status, 2)

        let client = try kamid.storefront()
        let issued = client.call(RiskDaemonTests.honest(1, id: 1))
        XCTAssertEqual(issued?.order?.state, .committed)
        let codeID = try XCTUnwrap(issued?.order?.codes.first?.codeID)
        XCTAssertNotNil(client.call(#""id":2,"op":"order","order":"h-1","user":"buyer-1","ip":"172.16.1.9""#)?.order)
        // Audit entries are written behind the reply: wait for the writer.
        var reveals = ""
        for _ in 0..<50 {
            reveals = try kamictl(["audit", "reveals", "--user", "buyer-1"], socket: socket).output
            if reveals.contains("order:h-1") { break }
            usleep(20_000)
        }
        XCTAssertTrue(reveals.contains("order:h-1 user=buyer-1 ip=172.16.1.9 codes=\(codeID) client=default"), reveals)
        XCTAssertEqual(try kamictl(["audit", "reveals", "--user", "nobody"], socket: socket).output, "no reveals\n")
        XCTAssertEqual(try kamictl(["risk", "unblock", "ip", "203.0.113.0/24"], socket: socket).status, 0)
        XCTAssertEqual(try kamictl(["risk", "test", "issue", "--user", "x", "--ip", "203.0.113.9"], socket: socket).output,
                       "decision allow (ok), score 0\n")
        XCTAssertEqual(try kamictl(["audit", "verify"], socket: socket).status, 0)
    }

    func testReviewHoldsOrdersForTheOperatorAcrossARestart() throws {
        let rules = "rule bulk attribute on=reserve,issue when=units>=5 score=80\n"
        var kamid = try start(rules: rules)
        try kamid.stock(sku: "vip", count: 40)
        var client = try kamid.storefront()
        // A paid bulk order is held: no secret leaves, the codes stay reserved.
        let held = client.call(#""id":1,"op":"issue","order":"bulk-1","user":"reseller","sku":"vip","qty":5,"payment_ref":"pay-1""#)
        XCTAssertEqual(held?.order?.state, WireOrderState(name: "review"), "\(String(describing: held))")
        XCTAssertTrue(held?.order?.codes.allSatisfy { $0.secret == nil } ?? false)
        XCTAssertEqual(client.call(#""id":2,"op":"issue","order":"bulk-1","user":"reseller","sku":"vip","qty":5,"payment_ref":"pay-1""#)?.order?.state,
                       WireOrderState(name: "review"), "a repeat answers the held order")
        _ = client.call(#""id":3,"op":"issue","order":"bulk-2","user":"reseller2","sku":"vip","qty":6,"payment_ref":"pay-2""#)
        let unpaid = client.call(#""id":4,"op":"reserve","order":"bulk-3","user":"reseller3","sku":"vip","qty":5"#)
        XCTAssertEqual(unpaid?.order?.state, WireOrderState(name: "review"), "\(String(describing: unpaid))")
        XCTAssertEqual(client.call(#""id":5,"op":"commit","order":"bulk-3","payment_ref":"pay-3""#)?.error?.code, .invalidState)
        let queue = try kamictl(["review", "list"], socket: kamid.socketPath)
        XCTAssertTrue(queue.output.contains("bulk-1  reseller  vip  5  yes  5"), queue.output)
        XCTAssertTrue(queue.output.contains("bulk-3  reseller3  vip  5  no  5"), queue.output)

        // The holds survive a restart.
        XCTAssertEqual(kamid.stop(), 0)
        kamid = try start(rules: rules)
        defer { XCTAssertEqual(kamid.stop(), 0) }
        client = try kamid.storefront()
        XCTAssertEqual(client.call(#""id":6,"op":"order","order":"bulk-1","user":"reseller""#)?.order?.state, WireOrderState(name: "review"))
        // A storefront waiting on the order learns the outcome when the operator decides.
        let waiter = try kamid.storefront()
        XCTAssertEqual(waiter.call(#""id":70,"op":"wait","order":"bulk-1","user":"someone","wait_ms":100"#)?.error?.code, .notFound,
                       "a stranger cannot wait on (and be shown) another user's order")
        XCTAssertEqual(waiter.call(#""id":71,"op":"wait","order":"bulk-1","wait_ms":100"#)?.error?.code, .badRequest)
        waiter.send(#"{"id":7,"op":"wait","order":"bulk-1","user":"reseller","wait_ms":10000}"# + "\n")
        let approve = try kamictl(["review", "approve", "bulk-1"], socket: kamid.socketPath)
        XCTAssertEqual(approve.status, 0, approve.output)
        XCTAssertEqual(approve.output, "order bulk-1: committed\n")
        let delivered = waiter.readJSONReply()
        XCTAssertEqual(delivered?.order?.state, .committed)
        XCTAssertEqual(delivered?.order?.codes.compactMap(\.secret).count, 5, "approved: delivered with its secrets")
        XCTAssertEqual(try kamictl(["review", "deny", "bulk-2"], socket: kamid.socketPath).output, "order bulk-2: released\n")
        XCTAssertEqual(client.call(#""id":8,"op":"order","order":"bulk-2","user":"reseller2""#)?.order?.state, .released)
        // An unpaid held order, approved, is an ordinary hold the buyer pays.
        XCTAssertEqual(try kamictl(["review", "approve", "bulk-3"], socket: kamid.socketPath).output, "order bulk-3: reserved\n")
        XCTAssertEqual(client.call(#""id":9,"op":"commit","order":"bulk-3","payment_ref":"pay-3""#)?.order?.state, .committed)
        XCTAssertNotEqual(try kamictl(["review", "approve", "bulk-3"], socket: kamid.socketPath).status, 0, "only held orders")
        XCTAssertEqual(try kamictl(["review", "list"], socket: kamid.socketPath).output, "no orders held for review\n")
        guard case .success(.stock(let stock))? = client.call(#""id":10,"op":"stock","sku":"vip""#)?.result else { return XCTFail("stock") }
        XCTAssertEqual(stock.issued, 10)
        XCTAssertEqual(stock.available, 30, "the denied order's codes went back")
        XCTAssertEqual(try kamid.violations(), [])
    }

    func testManualDeliveryByHandAndFromThePoolThroughKamictl() throws {
        var kamid = try start(rules: "")
        try kamid.stock(sku: "gift", count: 1)
        let socket = kamid.socketPath
        let set = try kamictl(["sku", "set", "gift", "--manual-delivery", "on", "--review-ttl", "3600000"], socket: socket)
        XCTAssertEqual(set.status, 0, set.output)
        XCTAssertTrue(set.output.contains("delivery by hand, review time 3600000 ms"), set.output)
        XCTAssertEqual(try kamictl(["sku", "set", "gift", "--manual-delivery", "maybe"], socket: socket).status, 2)
        XCTAssertTrue(try kamictl(["sku", "list"], socket: socket).output.contains("manual"))
        var client = try kamid.storefront()
        let queued = client.call(#""id":1,"op":"issue","order":"g-1","user":"ann","sku":"gift","qty":2,"payment_ref":"pay-1""#)
        XCTAssertEqual(queued?.order?.state, WireOrderState(name: "review"), "\(String(describing: queued))")
        XCTAssertEqual(queued?.order?.codes.count, 0, "nothing is taken from the pool")
        _ = client.call(#""id":2,"op":"issue","order":"g-2","user":"bob","sku":"gift","qty":1,"payment_ref":"pay-2""#)
        XCTAssertTrue(try kamictl(["review", "list"], socket: socket).output.contains("g-1  ann  gift  2  yes  0"))

        // The operator's file: a card number and secret, a bare secret, blank lines, CRLF.
        let secretFile = folder + "/codes.txt"
        try "\u{FEFF}CARD-77\tHANDSECRET-ONE\r\n\r\nHANDSECRET-TWO\r\n".write(toFile: secretFile, atomically: true, encoding: .utf8)
        // Saved as UTF-16 or GBK by mistake: refused, never stored altered.
        let utf16File = folder + "/utf16.txt"
        try "HANDSECRET-X\nHANDSECRET-Y\n".write(toFile: utf16File, atomically: true, encoding: .utf16)
        let utf16 = try kamictl(["deliver", "g-1", "--secret-file", utf16File], socket: socket)
        XCTAssertNotEqual(utf16.status, 0)
        XCTAssertTrue(utf16.output.contains("line 1") || utf16.output.contains("UTF-8"), utf16.output)
        let gbkFile = folder + "/gbk.txt"
        try Data([0xC4, 0xE3, 0xBA, 0xC3, 0x0A, 0x41, 0x0A]).write(to: URL(fileURLWithPath: gbkFile))
        let gbk = try kamictl(["deliver", "g-1", "--secret-file", gbkFile], socket: socket)
        XCTAssertNotEqual(gbk.status, 0)
        XCTAssertTrue(gbk.output.contains("not UTF-8"), gbk.output)
        let badFile = folder + "/bad.txt"
        try "ONLY-ONE-SECRET-X\n".write(toFile: badFile, atomically: true, encoding: .utf8)
        let wrong = try kamictl(["deliver", "g-1", "--secret-file", badFile], socket: socket)
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.output.contains("2 units"), wrong.output)
        XCTAssertFalse(wrong.output.contains("ONLY-ONE-SECRET-X"), "an error never echoes a code")
        let missing = try kamictl(["deliver", "g-1", "--secret-file", folder + "/nope.txt"], socket: socket)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.output.contains("nope.txt"), missing.output)
        XCTAssertEqual(try kamictl(["deliver", "g-1"], socket: socket).status, 2, "a file or --from-pool")

        // A storefront waiting on the order learns of the delivery at once.
        let waiter = try kamid.storefront()
        waiter.send(#"{"id":3,"op":"wait","order":"g-1","user":"ann","wait_ms":10000}"# + "\n")
        let delivered = try kamictl(["deliver", "g-1", "--secret-file", secretFile, "--cost", "700"], socket: socket)
        XCTAssertEqual(delivered.status, 0, delivered.output)
        XCTAssertEqual(delivered.output, "order g-1 committed: 2 units delivered by hand (the buyer sees the codes with order or wait)\n")
        XCTAssertFalse(delivered.output.contains("HANDSECRET"))
        let seen = waiter.readJSONReply()
        XCTAssertEqual(seen?.order?.state, .committed)
        XCTAssertEqual(Set(seen?.order?.codes.compactMap { $0.secret?.reveal() } ?? []), ["HANDSECRET-ONE", "HANDSECRET-TWO"])
        // A code is handed out once: the same file again, for another order, is refused.
        let again = try kamictl(["deliver", "g-2", "--secret-file", badFile], socket: socket)
        XCTAssertEqual(again.status, 0, again.output)
        _ = client.call(#""id":4,"op":"issue","order":"g-3","user":"cat","sku":"gift","qty":1,"payment_ref":"pay-3""#)
        let twice = try kamictl(["deliver", "g-3", "--secret-file", badFile], socket: socket)
        XCTAssertNotEqual(twice.status, 0)
        XCTAssertTrue(twice.output.contains("already stored"), twice.output)
        // From the pool this time; the pool's one code goes, and the restart keeps it all.
        let pooled = try kamictl(["deliver", "g-3", "--from-pool"], socket: socket)
        XCTAssertEqual(pooled.status, 0, pooled.output)
        XCTAssertEqual(kamid.stop(), 0)
        let log = kamid.log.joined(separator: "\n")
        XCTAssertFalse(log.contains("HANDSECRET") || log.contains("ONLY-ONE-SECRET"), "no delivered code in the log")
        kamid = try start(rules: "")
        defer { XCTAssertEqual(kamid.stop(), 0) }
        client = try kamid.storefront()
        let after = client.call(#""id":5,"op":"order","order":"g-1","user":"ann""#)
        XCTAssertEqual(after?.order?.codes.first { $0.secret?.reveal() == "HANDSECRET-ONE" }?.cardNumber, "CARD-77")
        XCTAssertEqual(client.call(#""id":6,"op":"order","order":"g-3","user":"cat""#)?.order?.codes.count, 1)
        guard case .success(.stock(let stock))? = client.call(#""id":7,"op":"stock","sku":"gift""#)?.result else { return XCTFail("stock") }
        XCTAssertEqual(stock.available, 0)
        XCTAssertEqual(stock.issued, 4, "three codes by hand and one from the pool")
        XCTAssertEqual(try kamictl(["review", "list"], socket: kamid.socketPath).output, "no orders held for review\n")
        XCTAssertEqual(try kamid.violations(), [])
        XCTAssertEqual(try kamictl(["audit", "verify"], socket: kamid.socketPath).status, 0)
    }

    func testHoldCountsSurviveBadRepeatsAndHugeTTLs() throws {
        let kamid = try start(rules: "rule hoard holds key=user max=1 score=100\n")
        defer { XCTAssertEqual(kamid.stop(), 0) }
        try kamid.stock(sku: "vip", count: 10)
        let client = try kamid.storefront()
        // A TTL far outside the range is refused, not an overflow in the gate.
        XCTAssertEqual(client.call(#""id":1,"op":"reserve","order":"t0","user":"x","sku":"vip","qty":1,"ttl_ms":9223372036854775807"#)?.error?.code,
                       .badRequest)
        XCTAssertEqual(client.call(#""id":2,"op":"reserve","order":"h1","user":"h","sku":"vip","qty":1"#)?.order?.state, .reserved)
        // A conflicting repeat of the same order id must not erase its hold from the count.
        XCTAssertEqual(client.call(#""id":3,"op":"reserve","order":"h1","user":"h","sku":"vip","qty":2"#)?.error?.code, .conflict)
        XCTAssertEqual(client.call(#""id":4,"op":"reserve","order":"h1","user":"h","sku":"vip","qty":1"#)?.order?.state, .reserved,
                       "an exact repeat answers the hold")
        XCTAssertEqual(client.call(#""id":5,"op":"reserve","order":"h2","user":"h","sku":"vip","qty":1"#)?.error?.code, .denied)
        // A malformed reserve is refused before it is counted.
        XCTAssertEqual(client.call(#""id":6,"op":"reserve","order":"m1","user":"m","qty":1"#)?.error?.code, .badRequest)
        XCTAssertEqual(client.call(#""id":7,"op":"reserve","order":"m2","user":"m","sku":"vip","qty":1"#)?.order?.state, .reserved)
        XCTAssertEqual(client.call(#""id":10,"op":"commit","order":"m2","payment_ref":"p","user":"intruder""#)?.error?.code, .notFound,
                       "with user, only the order's buyer pays it and sees its codes")
        XCTAssertEqual(client.call(#""id":11,"op":"commit","order":"m2","payment_ref":"p","user":"m""#)?.order?.state, .committed)
        // The same with the commit pipelined right behind its reserve (one write, no wait):
        // the owner is checked once the order exists, not when the commit arrived.
        client.send("{\"id\":12,\"op\":\"reserve\",\"order\":\"p1\",\"user\":\"bob\",\"sku\":\"vip\",\"qty\":1}\n"
            + "{\"id\":13,\"op\":\"commit\",\"order\":\"p1\",\"payment_ref\":\"p\",\"user\":\"carol\"}\n")
        XCTAssertEqual(client.readJSONReply()?.order?.state, .reserved)
        let stolen = client.readJSONReply()
        XCTAssertEqual(stolen?.error?.code, .notFound, "a pipelined commit by another user pays nothing and sees no codes")
        XCTAssertNil(stolen?.order)
        XCTAssertEqual(client.call(#""id":14,"op":"commit","order":"p1","payment_ref":"p","user":"bob""#)?.order?.codes.count, 1)
        XCTAssertEqual(client.call(#""id":8,"op":"release","order":"h1""#)?.order?.state, .released)
        XCTAssertEqual(client.call(#""id":9,"op":"reserve","order":"h3","user":"h","sku":"vip","qty":1"#)?.order?.state, .reserved)
    }

    func testHoldCountsAreRebuiltAfterARestart() throws {
        let rules = "rule hoard_user holds key=user max=2 score=100\nrule hoard_ip holds key=ip max=1 score=100 mode=shadow\n"
        let data = folder + "/data"
        var kamid = try start(rules: rules, data: data)
        try kamid.stock(sku: "vip", count: 10)
        var client = try kamid.storefront()
        for n in 1...2 {
            XCTAssertEqual(client.call(#""id":\#(n),"op":"reserve","order":"k\#(n)","user":"hoarder","sku":"vip","qty":1,"ip":"198.51.100.7","ttl_ms":600000"#)?.order?.state,
                           .reserved)
        }
        XCTAssertEqual(client.call(#""id":3,"op":"reserve","order":"k3","user":"hoarder","sku":"vip","qty":1"#)?.error?.code, .denied)
        XCTAssertEqual(kamid.stop(), 0)
        kamid = try start(rules: rules, data: data)
        defer { XCTAssertEqual(kamid.stop(), 0) }
        XCTAssertTrue(kamid.log.contains { $0.contains("risk-rules") && $0.contains("holds_counted=2") }, "\(kamid.log)")
        client = try kamid.storefront()
        // The two holds still count after the restart: the hoarder gets no third one.
        XCTAssertEqual(client.call(#""id":4,"op":"reserve","order":"k4","user":"hoarder","sku":"vip","qty":1"#)?.error?.code, .denied)
        XCTAssertEqual(client.call(#""id":5,"op":"release","order":"k1""#)?.order?.state, .released)
        XCTAssertEqual(client.call(#""id":6,"op":"reserve","order":"k5","user":"hoarder","sku":"vip","qty":1"#)?.order?.state, .reserved,
                       "a released hold no longer counts")
        XCTAssertEqual(client.call(#""id":7,"op":"reserve","order":"o1","user":"other","sku":"vip","qty":1"#)?.order?.state, .reserved)
    }

    func testBadRulesFileStopsStartAndCheckConfigNamesTheLine() throws {
        try "thresholds challenge=40\nrule a quota key=user max=3 score=1\n".write(toFile: folder + "/risk.rules", atomically: true, encoding: .utf8)
        try "risk_rules = \(folder)/risk.rules\n".write(toFile: folder + "/kamid.conf", atomically: true, encoding: .utf8)
        let check = Process()
        check.executableURL = URL(fileURLWithPath: Kamid.binary)
        check.arguments = ["--check-config", "--config", folder + "/kamid.conf", "--data-dir", folder + "/data"]
        let errors = Pipe()
        check.standardError = errors
        try check.run()
        check.waitUntilExit()
        XCTAssertEqual(check.terminationStatus, 2)
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(text.contains("risk.rules:2: rule a: quota needs window="), text)
        XCTAssertThrowsError(try Kamid(directory: folder + "/data", arguments: ["--config", folder + "/kamid.conf"]))
        // The example file in Config/ is accepted.
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Config/risk.rules").path
        try "risk_rules = \(example)\n".write(toFile: folder + "/kamid.conf", atomically: true, encoding: .utf8)
        let good = Process()
        good.executableURL = URL(fileURLWithPath: Kamid.binary)
        good.arguments = ["--check-config", "--config", folder + "/kamid.conf", "--data-dir", folder + "/data"]
        try good.run()
        good.waitUntilExit()
        XCTAssertEqual(good.terminationStatus, 0)
    }

    /// A SKU with no code left answers SOLD_OUT without the gate: it takes nothing, so it is
    /// neither screened nor counted. The moment stock is back, every order is screened again
    /// (the engine checks as it takes, so an order racing a restock is never let through).
    func testASoldOutSkuIsNotScreenedAndARestockIsScreenedAgain() throws {
        let kamid = try start(rules: """
            thresholds challenge=40 review=70 deny=100
            rule blocked   list  list=block action=deny
            rule user_rate rate  on=reserve,issue key=user rate=1/m burst=2 score=100
            """)
        defer { kamid.stop() }
        XCTAssertEqual(try RawClient(unixPath: kamid.socketPath).call(#""id":1,"op":"sku_set","sku":"hot","name":"Hot""#)?.isOK, true)
        XCTAssertEqual(try kamid.kamictl(["risk", "block", "user", "mallory"]).status, 0)
        let client = try kamid.storefront()
        // Ten tries at the empty SKU: each SOLD_OUT, none a DENIED, none counted.
        for n in 0..<10 {
            let reply = client.call(#""id":\#(n),"op":"issue","order":"e\#(n)","user":"eve","sku":"hot","qty":1,"payment_ref":"p""#)
            XCTAssertEqual(reply?.error?.code, .soldOut, "\(String(describing: reply))")
            let reserve = client.call(#""id":\#(n),"op":"reserve","order":"r\#(n)","user":"eve","sku":"hot""#)
            XCTAssertEqual(reserve?.error?.code, .soldOut)
        }
        XCTAssertEqual(client.call(#""id":50,"op":"issue","order":"m0","user":"mallory","sku":"hot","qty":1,"payment_ref":"p""#)?.error?.code,
                       .soldOut, "a blocked user learns nothing more than anyone else from an empty SKU")
        // Restocked: eve's bucket is untouched (two orders of her burst), the third is refused
        // by the rate rule; mallory is denied by the block list.
        try kamid.stock(sku: "hot", count: 10)
        XCTAssertEqual(client.call(#""id":60,"op":"issue","order":"e10","user":"eve","sku":"hot","qty":1,"payment_ref":"p""#)?.order?.state, .committed)
        XCTAssertEqual(client.call(#""id":61,"op":"issue","order":"e11","user":"eve","sku":"hot","qty":1,"payment_ref":"p""#)?.order?.state, .committed)
        let third = client.call(#""id":62,"op":"issue","order":"e12","user":"eve","sku":"hot","qty":1,"payment_ref":"p""#)
        XCTAssertEqual(third?.error?.code, .denied)
        XCTAssertEqual(rules(third), ["user_rate"])
        let blocked = client.call(#""id":63,"op":"issue","order":"m1","user":"mallory","sku":"hot","qty":1,"payment_ref":"p""#)
        XCTAssertEqual(blocked?.error?.code, .denied)
        XCTAssertEqual(rules(blocked), ["blocked"])
        XCTAssertEqual(try kamid.violations(), [])
    }
}
