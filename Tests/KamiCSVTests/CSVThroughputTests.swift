import KamiCSV
import KamiCore
import Glibc
import XCTest

/// Parse throughput on a million rows, printed, never asserted (timing depends on the machine).
/// Run in a release build: `KAMI_CSV_BENCH=1 swift test -c release --filter CSVThroughputTests`.
final class CSVThroughputTests: XCTestCase {
    private static let rowCount = 1_000_000

    /// A million rows in 64 KiB chunks, like a file read: `secret,card_number,cost,expiry,batch`.
    private func makeChunks(gb18030: Bool) -> (chunks: [[UInt8]], bytes: Int) {
        let batch: [UInt8] = gb18030 ? GB.ceshi + GB.pici : Array("测试批次".utf8)
        let header: [UInt8] = gb18030
            ? GB.kami + GB.ascii(",") + GB.kahao + GB.ascii(",") + GB.chengben + GB.ascii(",") + GB.youxiaoqi
                + GB.ascii(",") + GB.pici + GB.ascii("\r\n")
            : Array("卡密,卡号,成本,有效期,批次\r\n".utf8)
        var chunks: [[UInt8]] = []
        var chunk = header
        var total = 0
        for number in 0..<Self.rowCount {
            let scrambled = number &* 2_654_435_761 % 1_000_000_007
            chunk += Array("K\(number)-\(scrambled)-XQ,62\(1_000_000_000 + number),12.50,2026-12-31,".utf8)
            chunk += batch
            chunk += [0x0D, 0x0A]
            if chunk.count >= 65_536 {
                total += chunk.count
                chunks.append(chunk)
                chunk = []
            }
        }
        total += chunk.count
        chunks.append(chunk)
        return (chunks, total)
    }

    /// Runs `body` and returns (wall seconds, CPU seconds of this thread). The CPU time is the
    /// figure to quote on a shared machine: it leaves out time the thread spent descheduled.
    private func measure(_ body: () throws -> Void) rethrows -> (wall: Double, cpu: Double) {
        func now(_ clock: clockid_t) -> Double {
            var spec = timespec()
            clock_gettime(clock, &spec)
            return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
        }
        let wall = now(CLOCK_MONOTONIC)
        let cpu = now(CLOCK_THREAD_CPUTIME_ID)
        try body()
        return (now(CLOCK_MONOTONIC) - wall, now(CLOCK_THREAD_CPUTIME_ID) - cpu)
    }

    private func report(_ label: String, rows: Int, bytes: Int, _ time: (wall: Double, cpu: Double)) {
        let rowsPerSecond = Double(rows) / time.cpu
        let megabytesPerSecond = Double(bytes) / time.cpu / 1_000_000
        print("KamiCSV throughput \(label): \(rows) rows, \(bytes) bytes, wall \(time.wall) s, CPU \(time.cpu) s:"
            + " \(Int(rowsPerSecond)) rows/s, \(Int(megabytesPerSecond)) MB/s per CPU second")
    }

    func testThroughput() throws {
        guard let _ = getenv("KAMI_CSV_BENCH") else { throw XCTSkip("set KAMI_CSV_BENCH=1 to measure") }
        for gb18030 in [false, true] {
            let (chunks, bytes) = makeChunks(gb18030: gb18030)
            let encoding: CSVEncoding = gb18030 ? .gb18030 : .utf8
            for run in 1...3 {
                if !gb18030 {
                    var records = 0
                    var parser = CSVRecordParser()
                    let parseOnly = measure {
                        for chunk in chunks {
                            chunk.withUnsafeBytes { parser.feed($0) { _ in records += 1 } }
                        }
                        parser.finish { _ in records += 1 }
                    }
                    XCTAssertEqual(records, Self.rowCount + 1)
                    report("records only, UTF-8, run \(run)", rows: records - 1, bytes: bytes, parseOnly)
                }
                var rows = 0
                let full = try measure {
                    var importer = try CSVCodeImporter(encoding: encoding)
                    let count: (CSVImportItem) -> Void = { if case .row = $0 { rows += 1 } }
                    for chunk in chunks {
                        try chunk.withUnsafeBytes { try importer.feed($0, count) }
                    }
                    _ = try importer.finish(count)
                }
                XCTAssertEqual(rows, Self.rowCount)
                report("validated rows, \(encoding), run \(run)", rows: rows, bytes: bytes, full)
            }
        }
    }
}
