import KamiBench
import XCTest

final class LatencyHistogramTests: XCTestCase {
    func testSmallValuesAreExactAndLargeOnesWithinOneStep() {
        var histogram = LatencyHistogram()
        for value in 0..<128 { histogram.record(UInt64(value)) }
        XCTAssertEqual(histogram.value(atPercentile: 50), 63)
        XCTAssertEqual(histogram.value(atPercentile: 100), 127)
        XCTAssertEqual(histogram.min, 0)

        for value: UInt64 in [1_000, 123_456, 9_999_999, 3_000_000_000] {
            var one = LatencyHistogram()
            one.record(value)
            one.record(value * 2)   // the max caps the top percentile exactly
            let reported = one.value(atPercentile: 50)
            XCTAssertGreaterThanOrEqual(reported, value, "never below the true value")
            XCTAssertLessThanOrEqual(Double(reported), Double(value) * (1 + 1.0 / 64), "within one step of \(value)")
            XCTAssertEqual(one.value(atPercentile: 100), value * 2)
        }
    }

    func testPercentilesOfAKnownDistribution() {
        var histogram = LatencyHistogram()
        // 1..100,000 µs, one of each: p50 = 50 ms, p99 = 99 ms, p99.9 = 99.9 ms (within 1/64).
        for micros in 1...100_000 { histogram.record(UInt64(micros) * 1_000) }
        for (percentile, expected) in [(50.0, 50_000_000.0), (90, 90_000_000), (99, 99_000_000), (99.9, 99_900_000)] {
            let value = Double(histogram.value(atPercentile: percentile))
            XCTAssertGreaterThanOrEqual(value, expected, "p\(percentile)")
            XCTAssertLessThanOrEqual(value, expected * (1 + 1.0 / 64), "p\(percentile)")
        }
        XCTAssertEqual(histogram.count, 100_000)
        XCTAssertEqual(histogram.max, 100_000_000)
        XCTAssertEqual(histogram.mean, 50_000_500, accuracy: 1)
    }

    func testMergeEqualsRecordingEverythingInOne() {
        var a = LatencyHistogram(), b = LatencyHistogram(), both = LatencyHistogram()
        for n in 0..<10_000 {
            let value = UInt64((n &* 7_919) % 5_000_000)
            if n % 2 == 0 { a.record(value) } else { b.record(value) }
            both.record(value)
        }
        a.merge(b)
        XCTAssertEqual(a, both)
        XCTAssertEqual(LatencyHistogram().value(atPercentile: 99), 0, "empty")
    }
}
