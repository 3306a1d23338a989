import Foundation
import KamiCore
import XCTest

final class HistogramTests: XCTestCase {
    func testValuesLandInTheFirstBucketWhoseBoundHoldsThem() {
        let histogram = Histogram(bounds: [10, 100, 1_000])
        for value in [0, 10, 11, 100, 101, 1_000, 1_001, 5_000] { histogram.observe(value) }
        let snapshot = histogram.snapshot()
        XCTAssertEqual(snapshot.cumulative, [2, 4, 6, 8], "le is inclusive; the last is +Inf")
        XCTAssertEqual(snapshot.count, 8)
        XCTAssertEqual(snapshot.sum, 0 + 10 + 11 + 100 + 101 + 1_000 + 1_001 + 5_000)
    }

    func testConcurrentObservationsAreAllCounted() {
        let histogram = Histogram(bounds: Histogram.powersOfTwo(upTo: 1_024))
        DispatchQueue.concurrentPerform(iterations: 2) { thread in
            for i in 0..<100_000 { histogram.observe((i + thread) % 2_000) }
        }
        let snapshot = histogram.snapshot()
        XCTAssertEqual(snapshot.count, 200_000)
        let expectedSum = (0..<2).reduce(0) { total, thread in
            total + (0..<100_000).reduce(0) { $0 + ($1 + thread) % 2_000 }
        }
        XCTAssertEqual(snapshot.sum, expectedSum)
    }

    func testBoundGenerators() {
        XCTAssertEqual(Histogram.powersOfTwo(upTo: 16), [1, 2, 4, 8, 16])
        XCTAssertEqual(Histogram.oneTwoFive(from: 10, to: 1_000), [10, 25, 50, 100, 250, 500, 1_000])
    }

    func testCounters() {
        let counters = AtomicCounters(count: 3)
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            for _ in 0..<50_000 { counters.add(1) }
        }
        counters.add(2, 7)
        XCTAssertEqual([counters.load(0), counters.load(1), counters.load(2)], [0, 100_000, 7])
    }
}
