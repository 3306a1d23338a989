import Foundation
import Glibc
import KamiCore
import KamiProtocol
import Synchronization
import XCTest

/// The crash loop: a flash sale with 64 clients, kamid killed with SIGKILL at a random moment,
/// restarted, again and again. Every client keeps the history of its requests: ok (with the
/// codes), a clean error, or unknown (no reply before the kill). After every restart:
/// - every acknowledged issue is there, committed, with the same codes and secrets;
/// - no code is on two orders;
/// - every unknown outcome, retried with the same order id, is answered with codes that are
///   then the order's for good (a second retry returns the same), or with a clean error;
/// - `verify` is clean: conservation per SKU, memory equal to disk, audit chain, and
///   SQLite's `integrity_check`.
/// 50 cycles by default; `KAMI_DAEMON_CRASH_CYCLES=1000` for the long run, `KAMI_SEED` replays.
///
/// Up to 100 cycles every acknowledged issue is read back after every restart. Longer runs
/// would then slow down with their history (each cycle re-reading everything so far), so
/// there each restart reads back the issues acknowledged since the last restart plus a
/// random sample of 2,000 older ones, and every 25th restart and the last read back all of
/// them; `verify` and the one-code-one-order check still cover everything every time.
final class DaemonCrashTests: XCTestCase {
    static let cyclesDefault = 50
    static let clients = 64
    /// Codes kept available before each cycle (more than a cycle sells).
    static let stockFloor = 8_000
    /// Runs longer than this check a sample of the older history between full checks.
    static let fullCheckCyclesMax = 100
    static let fullCheckEvery = 25
    static let olderSample = 2_000

    enum Outcome {
        case ok(codes: [Int64], secrets: [String])
        case error(ErrorCode)
        case unknown
    }

    /// Sends `lines` pipelined in chunks and returns the replies in order.
    private func pipelined(_ client: RawClient, _ lines: [String]) -> [Reply?] {
        var replies: [Reply?] = []
        var index = 0
        while index < lines.count {
            let chunk = lines[index..<min(index + 256, lines.count)]
            client.send(chunk.map { "{" + $0 + "}\n" }.joined())
            for _ in chunk { replies.append(client.readJSONReply()) }
            index += chunk.count
        }
        return replies
    }

    private static func issueLine(_ order: String, id: Int) -> String {
        // The user is derived from the order, so a retry is the same request.
        #""id":\#(id),"op":"issue","order":"\#(order)","user":"u-\#(order)","sku":"hot","qty":1,"payment_ref":"p""#
    }

    func testKill9LoopUnderAFlashSaleLosesNothing() throws {
        let cycles = ProcessInfo.processInfo.environment["KAMI_DAEMON_CRASH_CYCLES"].flatMap(Int.init)
            ?? DaemonCrashTests.cyclesDefault
        let seed = ProcessInfo.processInfo.environment["KAMI_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...1_000_000)
        print("daemon crash loop seed \(seed), \(cycles) cycles, \(DaemonCrashTests.clients) clients")
        var rng = SplitMix64(seed: seed)
        // Its own generator, so that the kill times follow from the seed alone.
        var sampling = SplitMix64(seed: seed ^ 0x5A5A_5A5A)
        let directory = NSTemporaryDirectory() + "kamid-crash-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var acked: [String: (codes: [Int64], secrets: [String])] = [:]
        /// Acknowledged since the last restart's read-back (checked in full at the next one).
        var fresh: Set<String> = []
        let incremental = cycles > DaemonCrashTests.fullCheckCyclesMax
        var unknownTotal = 0, unknownCommitted = 0, cleanErrors = 0
        /// Risk list entries an operator changed during the sales: acknowledged present or
        /// absent (a change whose reply was lost may have happened or not).
        var listed: [String: Bool] = [:]
        var stock = 0
        for cycle in 0...cycles {
            if cycle > 0 && cycle % 25 == 0 {
                // Long runs (KAMI_DAEMON_CRASH_CYCLES=1000) take hours: show that they move.
                print("daemon crash loop: cycle \(cycle)/\(cycles), \(acked.count) acknowledged so far, "
                    + "\(unknownTotal) unknown outcomes retried, seed \(seed)")
                fflush(nil)
            }
            let kamid = try Kamid(directory: directory)
            let admin = try RawClient(unixPath: kamid.socketPath)
            if cycle == 0 { XCTAssertEqual(admin.call(#""id":1,"op":"sku_set","sku":"hot","name":"Hot""#)?.isOK, true) }
            let storefront = try kamid.storefront()

            // 1. Everything acknowledged is there, with the same codes and secrets, once (in
            //    long runs: everything new, a sample of the rest, and everything every 25th).
            var orders = Array(acked.keys)
            if incremental && cycle % DaemonCrashTests.fullCheckEvery != 0 && cycle != cycles {
                var older = orders.filter { !fresh.contains($0) }.sorted()
                older.shuffle(using: &sampling)
                orders = Array(fresh) + older.prefix(DaemonCrashTests.olderSample)
            }
            fresh.removeAll()
            let replies = pipelined(storefront, orders.enumerated().map { #""id":\#($0.offset),"op":"order","order":"\#($0.element)","user":"u-\#($0.element)""# })
            for (order, reply) in zip(orders, replies) {
                let expected = acked[order]!
                XCTAssertEqual(reply?.order?.state, .committed, "\(order) cycle \(cycle) seed \(seed)")
                XCTAssertEqual(reply?.order?.codes.map(\.codeID), expected.codes, "\(order) seed \(seed)")
                XCTAssertEqual(reply?.order?.codes.compactMap { $0.secret?.reveal() }, expected.secrets, "\(order)")
            }
            var owner: [Int64: String] = [:]
            for (order, expected) in acked {
                for code in expected.codes {
                    if let other = owner[code] { XCTFail("code \(code) on \(other) and \(order), seed \(seed)") }
                    owner[code] = order
                }
            }
            // Every acknowledged block and unblock of the risk lists held.
            guard case .success(.fields(let listing))? = admin.call(#""id":4,"op":"risk_list""#)?.result,
                  case .array(let entries)? = listing.first(where: { $0.0 == "entries" })?.1 else {
                return XCTFail("risk_list failed, cycle \(cycle) seed \(seed)")
            }
            let present = Set(entries.compactMap { entry -> String? in
                guard case .object(let fields) = entry, case .string(let value)? = fields.first(where: { $0.0 == "value" })?.1 else { return nil }
                return value
            })
            for (value, expected) in listed where present.contains(value) != expected {
                XCTFail("risk list entry \(value) should be \(expected ? "present" : "absent"), cycle \(cycle) seed \(seed)")
            }
            // 2. verify: conservation, memory = disk, audit chain, integrity_check, risk lists.
            guard case .success(.fields(let verify))? = admin.call(#""id":3,"op":"verify""#)?.result else {
                return XCTFail("verify failed, cycle \(cycle) seed \(seed)")
            }
            XCTAssertEqual(verify.first { $0.0 == "clean" }?.1, .bool(true), "\(verify) cycle \(cycle) seed \(seed)")
            if cycle == cycles { break }

            // 3. Keep the stock above what a cycle can sell (so kills land mid-sale), then 64
            //    clients issue until the kill.
            let issuedSoFar = acked.values.reduce(0) { $0 + $1.codes.count }
            if stock - issuedSoFar < DaemonCrashTests.stockFloor {
                let count = cycle == 0 ? 4 * DaemonCrashTests.stockFloor : DaemonCrashTests.stockFloor
                let csv = directory + "-\(cycle).csv"
                try ("secret\n" + (0..<count).map { "CRASH-\(seed)-\(cycle)-\($0)" }
                    .joined(separator: "\n") + "\n").write(toFile: csv, atomically: true, encoding: .utf8)
                XCTAssertEqual(admin.call(#""id":2,"op":"import","sku":"hot","path":"\#(csv)""#)?.isOK, true)
                stock += count
            }
            let history = Locked<[String: Outcome]>([:])
            // An operator blocks and unblocks users on the Unix socket while the sale runs.
            let listChanges = Locked<[(value: String, present: Bool?)]>([])
            let socketPath = kamid.socketPath
            let port = kamid.port
            let operatorGroup = DispatchGroup()
            operatorGroup.enter()
            Thread.detachNewThread {
                defer { operatorGroup.leave() }
                guard let c = try? RawClient(unixPath: socketPath) else { return }
                for n in 0..<10_000 {
                    let value = "crash-\(cycle)-\(n / 2)"
                    let blocking = n % 2 == 0
                    let op = blocking ? "risk_block" : "risk_unblock"
                    guard let reply = c.call(#""id":\#(n),"op":"\#(op)","kind":"user","value":"\#(value)""#) else {
                        listChanges.withLock { $0.append((value, nil)) }
                        return
                    }
                    listChanges.withLock { $0.append((value, reply.isOK ? blocking : nil)) }
                    usleep(2_000)
                }
            }
            let token = kamid.token
            let group = DispatchGroup()
            for connection in 0..<DaemonCrashTests.clients {
                group.enter()
                Thread.detachNewThread {
                    defer { group.leave() }
                    guard let c = try? RawClient(port: port, timeoutMs: 3_000),
                          c.call(#""id":0,"op":"hello","client":"default","token":"\#(token)""#)?.isOK == true else { return }
                    for n in 0..<100_000 {
                        let order = "k\(cycle)-\(connection)-\(n)"
                        history.withLock { $0[order] = .unknown }
                        guard let reply = c.call(DaemonCrashTests.issueLine(order, id: n)) else { return }
                        let outcome: Outcome
                        if let placed = reply.order, placed.state == .committed {
                            outcome = .ok(codes: placed.codes.map(\.codeID), secrets: placed.codes.compactMap { $0.secret?.reveal() })
                        } else {
                            outcome = .error(reply.error?.code ?? .badRequest)
                        }
                        history.withLock { $0[order] = outcome }
                    }
                }
            }
            usleep(UInt32(30_000 + rng.next() % 200_000))
            kamid.kill9()
            group.wait()
            operatorGroup.wait()
            for change in listChanges.withLock({ $0 }) {
                if let present = change.present { listed[change.value] = present } else { listed[change.value] = nil }
            }

            // 4. Fold the history in; unknown outcomes are retried after the restart.
            var unknown: [String] = []
            for (order, outcome) in history.withLock({ $0 }) {
                switch outcome {
                case .ok(let codes, let secrets):
                    acked[order] = (codes, secrets)
                    fresh.insert(order)
                case .error(let code):
                    cleanErrors += 1
                    XCTAssertTrue([.soldOut, .unavailable, .busy].contains(code), "\(order): \(code) seed \(seed)")
                case .unknown: unknown.append(order)
                }
            }
            unknownTotal += unknown.count
            guard !unknown.isEmpty else { continue }
            let again = try Kamid(directory: directory)
            let retrier = try again.storefront()
            let first = pipelined(retrier, unknown.enumerated().map { DaemonCrashTests.issueLine($0.element, id: $0.offset) })
            let second = pipelined(retrier, unknown.enumerated().map { DaemonCrashTests.issueLine($0.element, id: $0.offset) })
            for (index, order) in unknown.enumerated() {
                if let placed = first[index]?.order, placed.state == .committed {
                    XCTAssertEqual(second[index]?.order?.codes, placed.codes, "a second retry of \(order) agrees, seed \(seed)")
                    acked[order] = (placed.codes.map(\.codeID), placed.codes.compactMap { $0.secret?.reveal() })
                    fresh.insert(order)
                    unknownCommitted += 1
                } else {
                    let code = first[index]?.error?.code
                    XCTAssertTrue(code == .soldOut || code == .unavailable, "retry of \(order): \(String(describing: code))")
                }
            }
            again.kill9()
        }
        let issued = acked.values.reduce(0) { $0 + $1.codes.count }
        XCTAssertLessThanOrEqual(issued, stock, "no oversell")
        let checked = incremental
            ? "checked (new ones and \(DaemonCrashTests.olderSample) older after every restart, all every \(DaemonCrashTests.fullCheckEvery) and at the end)"
            : "checked after every restart"
        print("daemon crash loop: \(cycles) SIGKILL cycles, \(acked.count) acknowledged issues \(checked), "
            + "\(unknownTotal) unknown outcomes retried (\(unknownCommitted) had committed), "
            + "\(cleanErrors) clean errors, \(stock) codes loaded")
        XCTAssertGreaterThan(acked.count, cycles * 10, "the clients did get work done between kills")
        print("daemon crash loop: \(listed.count) risk list entries changed by an operator during the sales, each checked after every restart")
        XCTAssertGreaterThan(listed.count, cycles, "the operator did change the lists between kills")
    }
}

