/// Every latency of a run, without sampling, in a log-linear histogram (the HdrHistogram
/// layout): values below 128 ns are exact, above that each power of two is split into 64
/// linear steps, so a recorded value is off by at most 1/64 (1.6%) and always reported at
/// the top of its step (never flattering). One histogram per client thread; merge at the end.
public struct LatencyHistogram: Sendable, Equatable {
    static let linearBits = 7
    static let subBuckets = 1 << linearBits          // 128 exact values, then 64 per octave
    static let halfSub = subBuckets / 2
    static let octaves = 40                          // up to 2^46 ns, about 19 hours
    private(set) var counts: [UInt64]
    /// Values recorded.
    public private(set) var count: UInt64 = 0
    /// Largest value recorded, exact.
    public private(set) var max: UInt64 = 0
    /// Smallest value recorded, exact.
    public private(set) var min: UInt64 = .max
    private var sum: Double = 0

    public init() {
        counts = [UInt64](repeating: 0, count: LatencyHistogram.subBuckets + LatencyHistogram.octaves * LatencyHistogram.halfSub)
    }

    /// The bucket of `value`.
    static func index(_ value: UInt64) -> Int {
        if value < UInt64(subBuckets) { return Int(value) }
        let exponent = (63 - value.leadingZeroBitCount) - (linearBits - 1)   // >= 1
        let sub = Int(value >> UInt64(exponent))                              // 64...127
        return Swift.min(subBuckets + (exponent - 1) * halfSub + (sub - halfSub), subBuckets + octaves * halfSub - 1)
    }

    /// The largest value that lands in bucket `index`.
    static func highestValue(ofBucket index: Int) -> UInt64 {
        if index < subBuckets { return UInt64(index) }
        let exponent = (index - subBuckets) / halfSub + 1
        let sub = UInt64((index - subBuckets) % halfSub + halfSub)
        return ((sub + 1) << UInt64(exponent)) - 1
    }

    /// Records one latency in nanoseconds.
    @inline(__always)
    public mutating func record(_ nanoseconds: UInt64) {
        counts[LatencyHistogram.index(nanoseconds)] &+= 1
        count &+= 1
        if nanoseconds > max { max = nanoseconds }
        if nanoseconds < min { min = nanoseconds }
        sum += Double(nanoseconds)
    }

    /// Adds another histogram's values.
    public mutating func merge(_ other: LatencyHistogram) {
        for index in counts.indices { counts[index] &+= other.counts[index] }
        count &+= other.count
        max = Swift.max(max, other.max)
        min = Swift.min(min, other.min)
        sum += other.sum
    }

    /// The value below or at which `percentile` percent of the values lie (0...100), as the
    /// top of its bucket, capped at the exact maximum. 0 when empty.
    public func value(atPercentile percentile: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = Swift.max(1, UInt64((percentile / 100 * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (index, bucket) in counts.enumerated() where bucket > 0 {
            seen += bucket
            if seen >= rank { return Swift.min(LatencyHistogram.highestValue(ofBucket: index), max) }
        }
        return max
    }

    /// Mean in nanoseconds.
    public var mean: Double { count == 0 ? 0 : sum / Double(count) }
}
