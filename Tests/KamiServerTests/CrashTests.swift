import Foundation
import Glibc
import KamiCore
import KamiProtocol
import Synchronization
import XCTest

/// kill -9 kamid while 32 connections issue codes; after each restart every success a
/// client received is in `order` with the same secret, and nothing was issued twice.
final class DaemonCrashTests: XCTestCase {
    static let cyclesDefault = 10

    func testKill9UnderLoadLosesNoAcknowledgedIssue() throws {
        let cycles = ProcessInfo.processInfo.environment["KAMI_DAEMON_CRASH_CYCLES"].flatMap(Int.init)
            ?? DaemonCrashTests.cyclesDefault
        let seed = ProcessInfo.processInfo.environment["KAMI_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...1_000_000)
        print("daemon crash test seed \(seed), \(cycles) cycles")
        var rng = SplitMix(seed: seed)
        let directory = NSTemporaryDirectory() + "kamid-crash-\(UUID().uuidString)"
        var acked: [String: (codes: [Int64], secrets: [String])] = [:]
        var total = 0
        for cycle in 0..<cycles {
            let kamid = try Kamid(directory: directory)
            // Top the stock up through the Unix socket.
            let admin = try RawClient(unixPath: kamid.socketPath)
            if cycle == 0 { XCTAssertEqual(admin.call(#""id":1,"op":"sku_set","sku":"hot","name":"Hot""#)?.isOK, true) }
            let csv = directory + "-\(cycle).csv"
            try ("secret\n" + (0..<2_000).map { "CRASH-\(seed)-\(cycle)-\($0)" }.joined(separator: "\n") + "\n")
                .write(toFile: csv, atomically: true, encoding: .utf8)
            XCTAssertEqual(admin.call(#""id":2,"op":"import","sku":"hot","path":"\#(csv)""#)?.isOK, true)
            // Everything acknowledged before is still there, with the same secrets.
            let checker = try RawClient(port: kamid.port)
            XCTAssertEqual(checker.call(#""id":0,"op":"hello","client":"default","token":"\#(kamid.token)""#)?.isOK, true)
            var owner: [Int64: String] = [:]
            for (order, expected) in acked {
                let reply = checker.call(#""id":1,"op":"order","order":"\#(order)""#)
                XCTAssertEqual(reply?.order?.state, .committed, "\(order) cycle \(cycle) seed \(seed)")
                XCTAssertEqual(reply?.order?.codes.map(\.codeID), expected.codes, "\(order) seed \(seed)")
                XCTAssertEqual(reply?.order?.codes.compactMap { $0.secret?.reveal() }, expected.secrets, "\(order)")
                for code in expected.codes {
                    XCTAssertNil(owner[code], "code \(code) on two orders, seed \(seed)")
                    owner[code] = order
                }
            }
            guard case .success(.fields(let verify))? = admin.call(#""id":3,"op":"verify""#)?.result else {
                return XCTFail("verify failed, seed \(seed)")
            }
            XCTAssertEqual(verify.first { $0.0 == "clean" }?.1, .bool(true), "\(verify) seed \(seed)")
            // 32 connections issue until the kill.
            let results = Mutex<[String: (codes: [Int64], secrets: [String])]>([:])
            let port = kamid.port
            let token = kamid.token
            let group = DispatchGroup()
            for connection in 0..<32 {
                group.enter()
                Thread.detachNewThread {
                    defer { group.leave() }
                    guard let c = try? RawClient(port: port, timeoutMs: 3_000),
                          c.call(#""id":0,"op":"hello","client":"default","token":"\#(token)""#)?.isOK == true else { return }
                    for n in 0..<100_000 {
                        let order = "k\(cycle)-\(connection)-\(n)"
                        guard let reply = c.call(#""id":\#(n),"op":"issue","order":"\#(order)","user":"u\#(n)","sku":"hot","qty":1,"payment_ref":"p""#)
                        else { return }
                        if let placed = reply.order {
                            results.withLock {
                                $0[order] = (placed.codes.map(\.codeID), placed.codes.compactMap { $0.secret?.reveal() })
                            }
                        }
                    }
                }
            }
            usleep(UInt32(100_000 + rng.next() % 400_000))
            kamid.kill9()
            group.wait()
            let received = results.withLock { $0 }
            total += received.count
            acked.merge(received) { old, _ in old }
        }
        print("daemon crash test: \(cycles) kill cycles, \(total) acknowledged issues checked")
        XCTAssertGreaterThan(total, cycles * 10, "the clients did get work done between kills")
        // A last restart checks the final cycle's acknowledgements too.
        let kamid = try Kamid(directory: directory)
        defer { kamid.stop() }
        let checker = try RawClient(port: kamid.port)
        XCTAssertEqual(checker.call(#""id":0,"op":"hello","client":"default","token":"\#(kamid.token)""#)?.isOK, true)
        for (order, expected) in acked {
            XCTAssertEqual(checker.call(#""id":1,"op":"order","order":"\#(order)""#)?.order?.codes.map(\.codeID), expected.codes)
        }
    }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
