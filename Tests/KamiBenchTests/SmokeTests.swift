import Foundation
import KamiBench
import XCTest

/// A few seconds of each peer with small numbers: the harness runs end to end and every
/// audit passes. Performance figures are never asserted here.
final class SmokeTests: XCTestCase {
    func testFlashSaleSmokeRunAuditsCleanOnEveryPeer() throws {
        var options = ScenarioBench.Options()
        options.connections = 8
        options.pacing = .closed(depth: 2)
        options.stock = 500
        options.requests = 1_500
        options.seconds = 30
        let redis = FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server")
        options.peers = redis ? PeerKind.allCases : [.kamid, .echo]
        if !redis { print("redis-server is not installed: smoke run without the Redis peers") }
        let results = try ScenarioBench(options: options).run()
        XCTAssertEqual(results.map(\.peer), options.peers)
        for result in results {
            XCTAssertEqual(result.problems, [], "\(result.peer.rawValue) audit")
            XCTAssertEqual(result.result.replies, 1_500, "\(result.peer.rawValue): every request answered")
            XCTAssertEqual(result.result.droppedConnections, 0)
            // 1,500 requests cost the server and the client some CPU, and no more than the run's
            // wall time on every core.
            XCTAssertGreaterThan(result.serverCPUNs + result.clientCPUNs, 0, "\(result.peer.rawValue): no CPU measured")
            XCTAssertLessThan(result.serverCores, Double(ProcessInfo.processInfo.activeProcessorCount) + 0.5)
            if result.audited {
                XCTAssertEqual(result.result.acknowledged.count, 500, "\(result.peer.rawValue) sells the whole stock")
                XCTAssertEqual(result.result.errors["SOLD_OUT"], 1_000, "\(result.peer.rawValue): the rest is sold out")
            }
        }
        let table = Report.table(results)
        XCTAssertTrue(table.contains("| kamid |") && table.contains("kamid / the echo ceiling"), table)
        XCTAssertTrue(table.contains("server CPU µs/reply"), table)
    }

    /// /proc/PID/stat parsing agrees with getrusage for this very process once it has burnt
    /// some CPU (clock ticks are 10 ms, so allow 30 ms).
    func testCPUTimeFromProcMatchesGetrusage() {
        var x: UInt64 = 1
        let start = CPUTime.this()
        while CPUTime.this() - start < 200_000_000 { for i in 0..<10_000 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(i) } }
        let fromProc = CPUTime.process(getpid())
        let fromRusage = CPUTime.this()
        XCTAssertNotEqual(x, 0)
        XCTAssertGreaterThan(fromProc, 150_000_000, "/proc says \(fromProc) ns after 200 ms of CPU")
        XCTAssertLessThan(Double(abs(Int64(bitPattern: fromProc &- fromRusage))), 30_000_000 + 0.05 * Double(fromRusage))
    }

    func testOpenLoopChargesLatencyFromTheScheduledTime() throws {
        var options = ScenarioBench.Options()
        options.connections = 4
        options.pacing = .open(ratePerSecond: 2_000)
        options.stock = 300
        options.requests = 1_000
        options.seconds = 30
        options.peers = [.kamid]
        let result = try XCTUnwrap(ScenarioBench(options: options).run().first)
        XCTAssertEqual(result.problems, [])
        XCTAssertEqual(result.result.replies, 1_000)
        // 1,000 requests at 2,000/s take at least half a second, whatever the server does.
        XCTAssertGreaterThanOrEqual(Double(result.result.elapsedNs) / 1e9, 0.45)
    }

    func testEveryScenarioSmokeRunAuditsClean() throws {
        let redis = FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server")
        for scenario in [Scenario.steady, .checkout, .retryStorm] {
            var options = ScenarioBench.Options()
            options.scenario = scenario
            options.connections = 6
            options.pacing = .closed(depth: scenario == .checkout ? 1 : 3)
            options.stock = 600
            options.requests = scenario == .checkout ? 1_200 : 1_000
            options.skus = 7
            options.dropEvery = 10
            options.seconds = 30
            options.peers = ScenarioBench.supported(scenario).filter { redis || $0 == .kamid || $0 == .echo }
            let results = try ScenarioBench(options: options).run()
            for result in results {
                if result.peer == .redisLMoveAlways && scenario == .retryStorm {
                    // Bare LMOVE is not idempotent: a re-sent request takes a second code, which
                    // the audit must catch (codes issued that no client was told of).
                    XCTAssertTrue(result.problems.contains { $0.contains("clients were told of") }, "\(result.problems)")
                    continue
                }
                XCTAssertEqual(result.problems, [], "\(scenario.rawValue) on \(result.peer.rawValue)")
                XCTAssertEqual(result.result.droppedConnections, 0)
                switch scenario {
                case .steady where result.audited:
                    XCTAssertEqual(result.result.acknowledged.count, 600, "\(result.peer.rawValue) sells every SKU out")
                case .checkout:
                    // 600 pairs: about 70% committed, none twice, every code accounted for by the audit.
                    XCTAssertGreaterThan(result.result.acknowledged.count, 300)
                    XCTAssertLessThan(result.result.acknowledged.count, 520)
                case .retryStorm:
                    XCTAssertGreaterThan(result.result.clientDrops, 10, "\(result.peer.rawValue)")
                    XCTAssertEqual(result.result.conflicts, [], "\(result.peer.rawValue)")
                default:
                    break
                }
            }
        }
    }
}
