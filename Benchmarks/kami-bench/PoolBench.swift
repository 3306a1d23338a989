// Pool micro-benchmarks: the reserve-and-return cycle of the two CodePool implementations,
// alone and with threads fighting over one hot SKU. Wiring only; the pools live in KamiPool.
import Dispatch
import Foundation
import Glibc
import KamiCore
import KamiPool
import Synchronization

/// Bounds of one measurement: it stops at whichever comes first, so a slow build or a
/// loaded machine cannot make the benchmark run for ever.
private struct PoolBenchBounds {
    var opsMax = 20_000_000
    var secondsMax = 1.0
    var threads = 2
    var runs = 3
    /// Codes of the hot SKU: a flash sale's stock, small enough that takers meet in the rings.
    var stock = 1024
    /// Pin worker i to CPU i (mod CPUs), so that "2 threads" means two cores fighting over
    /// cache lines, not whatever placement the scheduler picked this time.
    var pin = true
}

/// Pins the calling thread to one CPU.
///
/// Glibc's Swift module does not export `sched_setaffinity` (it is a `_GNU_SOURCE`
/// declaration) and `CPU_SET` is a macro, so the function is looked up by name and the
/// mask's bit is set in its bytes directly. Best effort: unpinned results are only noisier.
private func pinToCPU(_ cpu: Int) {
    typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
    guard let symbol = dlsym(nil, "sched_setaffinity") else { return }
    let setAffinity = unsafeBitCast(symbol, to: SetAffinity.self)
    var set = cpu_set_t()
    withUnsafeMutableBytes(of: &set) { bytes in
        bytes[cpu / 8] |= UInt8(1 << (cpu % 8))
    }
    let status = withUnsafeBytes(of: &set) { setAffinity(0, MemoryLayout<cpu_set_t>.size, $0.baseAddress!) }
    if status != 0 {
        print("pool bench: could not pin to CPU \(cpu) (errno \(errno)); results will be noisier")
    }
}

/// Measures the pools and prints a table. Arguments (all optional):
/// `--seconds S` per measurement (default 1), `--ops N` cap per measurement,
/// `--threads T` for the contended case (default 2), `--runs R` (median of R, default 3),
/// `--stock N` codes of the hot SKU (default 1024), `--pin yes|no` pin worker i to CPU i
/// (default yes).
func runPoolBench(arguments: [String]) {
    var bounds = PoolBenchBounds()
    var index = 0
    while index < arguments.count {
        let value = index + 1 < arguments.count ? arguments[index + 1] : ""
        switch arguments[index] {
        case "--seconds": bounds.secondsMax = Double(value) ?? bounds.secondsMax
        case "--ops": bounds.opsMax = Int(value) ?? bounds.opsMax
        case "--threads": bounds.threads = max(1, Int(value) ?? bounds.threads)
        case "--runs": bounds.runs = max(1, Int(value) ?? bounds.runs)
        case "--stock": bounds.stock = max(1, Int(value) ?? bounds.stock)
        case "--pin": bounds.pin = value != "no"
        default:
            print("pool bench: unknown argument \(arguments[index])")
            return
        }
        index += 2
    }

    let kinds: [(name: String, make: () -> any CodePool)] = [
        ("LockFreeCodePool", { LockFreeCodePool() }),
        ("MutexCodePool", { MutexCodePool() }),
    ]
    print("pool bench: take(1)+put cycle on one SKU of \(bounds.stock) codes, median of \(bounds.runs) runs"
        + " of at most \(bounds.secondsMax) s / \(bounds.opsMax) cycles")
    print(pad("pool", 18) + pad("1 thread ns/cycle", 20) + pad("\(bounds.threads) threads cycles/s", 22)
        + "\(bounds.threads) threads, own SKUs cycles/s")
    for kind in kinds {
        let single = median((0 ..< bounds.runs).map { _ in
            let result = measureCycles(kind.make(), threads: 1, sharedSku: true, bounds: bounds)
            return result.seconds * 1e9 / Double(result.cycles)
        })
        let contended = median((0 ..< bounds.runs).map { _ in
            let result = measureCycles(kind.make(), threads: bounds.threads, sharedSku: true, bounds: bounds)
            return Double(result.cycles) / result.seconds
        })
        let separate = median((0 ..< bounds.runs).map { _ in
            let result = measureCycles(kind.make(), threads: bounds.threads, sharedSku: false, bounds: bounds)
            return Double(result.cycles) / result.seconds
        })
        print(pad(kind.name, 18) + pad(format(single, decimals: 1), 20) + pad(format(contended, decimals: 0), 22)
            + format(separate, decimals: 0))
    }
}

/// Runs `threads` workers doing take(1) then put of that code, on one shared SKU or on one
/// SKU each, until the time or cycle bound; returns the cycles done and the wall time from
/// the first worker's start to the last worker's end.
private func measureCycles(_ pool: any CodePool, threads: Int, sharedSku: Bool, bounds: PoolBenchBounds)
    -> (cycles: Int, seconds: Double)
{
    let skus = sharedSku ? 1 : threads
    for sku in 1 ... skus {
        let base = CodeID(sku - 1) * CodeID(bounds.stock)
        pool.addSegment(sku: SkuID(sku), codes: base ..< base + CodeID(bounds.stock))
        pool.put(sku: SkuID(sku), codes: base ..< base + CodeID(bounds.stock))
    }
    let clock = ContinuousClock()
    let origin = clock.now
    let cpuCount = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    let shared = BenchTally()
    let done = DispatchSemaphore(value: 0)
    let perThreadMax = bounds.opsMax / threads
    let duration = Duration.seconds(bounds.secondsMax)
    // Real threads, not Dispatch: the start barrier below spins, which would deadlock a
    // Dispatch pool narrower than `threads`.
    for worker in 0 ..< threads {
        Thread.detachNewThread {
            if bounds.pin { pinToCPU(worker % cpuCount) }
            let sku = SkuID(sharedSku ? 1 : worker + 1)
            shared.ready.wrappingAdd(1, ordering: .acquiringAndReleasing)
            while shared.ready.load(ordering: .acquiring) < threads {}
            let start = clock.now
            let deadline = start + duration
            var cycles = 0
            while cycles < perThreadMax {
                if let codes = pool.take(sku: sku, count: 1) {
                    pool.put(sku: sku, codes: codes)
                }
                cycles += 1
                if cycles & 1023 == 0 && clock.now >= deadline { break }
            }
            let end = clock.now
            shared.cycles.wrappingAdd(cycles, ordering: .relaxed)
            shared.firstStartNs.min(nanoseconds(start - origin))
            shared.lastEndNs.max(nanoseconds(end - origin))
            done.signal()
        }
    }
    for _ in 0 ..< threads { done.wait() }
    let seconds = Double(shared.lastEndNs.value - shared.firstStartNs.value) * 1e-9
    return (shared.cycles.load(ordering: .relaxed), seconds)
}

/// What the workers of one measurement share.
private final class BenchTally: Sendable {
    let ready = Atomic<Int>(0)
    let cycles = Atomic<Int>(0)
    let firstStartNs = AtomicExtreme(Int.max)
    let lastEndNs = AtomicExtreme(Int.min)
}

/// An atomic running minimum or maximum.
private final class AtomicExtreme: Sendable {
    private let atomic: Atomic<Int>

    init(_ initial: Int) { atomic = Atomic(initial) }

    var value: Int { atomic.load(ordering: .acquiring) }

    func min(_ candidate: Int) { update(candidate) { $0 < $1 } }

    func max(_ candidate: Int) { update(candidate) { $0 > $1 } }

    private func update(_ candidate: Int, _ better: (Int, Int) -> Bool) {
        var current = atomic.load(ordering: .relaxed)
        while better(candidate, current) {
            let (done, found) = atomic.compareExchange(
                expected: current, desired: candidate, ordering: .acquiringAndReleasing)
            if done { return }
            current = found
        }
    }
}

private func nanoseconds(_ duration: Duration) -> Int {
    Int(duration.components.seconds) * 1_000_000_000 + Int(duration.components.attoseconds / 1_000_000_000)
}

private func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

private func format(_ value: Double, decimals: Int) -> String {
    guard value.isFinite else { return "-" }
    var scale = 1.0
    for _ in 0 ..< decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    return decimals == 0 ? String(Int(rounded)) : String(rounded)
}
