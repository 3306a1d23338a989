import Foundation
import KamiBench
import XCTest

/// A few seconds of each peer with small numbers: the harness runs end to end and every
/// audit passes. Performance figures are never asserted here.
final class SmokeTests: XCTestCase {
    func testFlashSaleSmokeRunAuditsCleanOnEveryPeer() throws {
        var options = FlashSale.Options()
        options.connections = 8
        options.pacing = .closed(depth: 2)
        options.stock = 500
        options.requests = 1_500
        options.seconds = 30
        let redis = FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server")
        options.peers = redis ? PeerKind.allCases : [.kamid, .echo]
        if !redis { print("redis-server is not installed: smoke run without the Redis peers") }
        let results = try FlashSale(options: options).run()
        XCTAssertEqual(results.map(\.peer), options.peers)
        for result in results {
            XCTAssertEqual(result.problems, [], "\(result.peer.rawValue) audit")
            XCTAssertEqual(result.result.replies, 1_500, "\(result.peer.rawValue): every request answered")
            XCTAssertEqual(result.result.droppedConnections, 0)
            if result.audited {
                XCTAssertEqual(result.result.acknowledged.count, 500, "\(result.peer.rawValue) sells the whole stock")
                XCTAssertEqual(result.result.errors["SOLD_OUT"], 1_000, "\(result.peer.rawValue): the rest is sold out")
            }
        }
        let table = Report.table(results)
        XCTAssertTrue(table.contains("| kamid |") && table.contains("kamid / the echo ceiling"), table)
    }

    func testOpenLoopChargesLatencyFromTheScheduledTime() throws {
        var options = FlashSale.Options()
        options.connections = 4
        options.pacing = .open(ratePerSecond: 2_000)
        options.stock = 300
        options.requests = 1_000
        options.seconds = 30
        options.peers = [.kamid]
        let result = try XCTUnwrap(FlashSale(options: options).run().first)
        XCTAssertEqual(result.problems, [])
        XCTAssertEqual(result.result.replies, 1_000)
        // 1,000 requests at 2,000/s take at least half a second, whatever the server does.
        XCTAssertGreaterThanOrEqual(Double(result.result.elapsedNs) / 1e9, 0.45)
    }
}
