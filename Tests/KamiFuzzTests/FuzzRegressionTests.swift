import Foundation
import KamiFuzzTargets
import KamiStore
import XCTest

/// Every input a fuzzer ever saved under `Fuzz/regressions/<target>/` (crashes once found,
/// and seeds), replayed through the same target functions; then a short deterministic
/// mutation run per target, so that `swift test` exercises the targets even without
/// libFuzzer.
final class FuzzRegressionTests: XCTestCase {
    static var regressions: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/regressions").path
    }

    func testEverySavedInputStillPasses() throws {
        var replayed = 0
        for target in FuzzTarget.allCases {
            let directory = FuzzRegressionTests.regressions + "/" + target.rawValue
            let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            XCTAssertFalse(files.isEmpty, "Fuzz/regressions/\(target.rawValue) holds at least its seeds")
            for file in files.sorted() {
                let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file))
                data.withUnsafeBytes { target.run($0) }
                replayed += 1
            }
        }
        print("replayed \(replayed) saved fuzz inputs")
    }

    /// The `record` seeds are records (so the fuzzer starts from the format, not from noise),
    /// and a record cut short is not one.
    func testTheRecordSeedsAreRecords() throws {
        let directory = FuzzRegressionTests.regressions + "/record"
        let seeds = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("seed-") }
        XCTAssertEqual(seeds.count, 2)
        for seed in seeds {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/" + seed)))
            XCTAssertTrue(IssueLogRecordCheck.check(bytes), seed)
            XCTAssertFalse(IssueLogRecordCheck.check(Array(bytes.dropLast())), "\(seed) without its last byte")
            XCTAssertFalse(IssueLogRecordCheck.check(bytes + [0]), "\(seed) with a byte more")
        }
    }

    func testSeededMutationsOfTheSeeds() throws {
        var state: UInt64 = 0x5EED_F022
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            return z ^ (z >> 27)
        }
        for target in FuzzTarget.allCases {
            let directory = FuzzRegressionTests.regressions + "/" + target.rawValue
            let seeds = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap {
                try? [UInt8](Data(contentsOf: URL(fileURLWithPath: directory + "/" + $0)))
            }
            for round in 0..<4_000 {
                var input = seeds.isEmpty ? [] : seeds[round % seeds.count]
                for _ in 0..<(1 + Int(next() % 8)) {
                    switch next() % 4 {
                    case 0 where !input.isEmpty: input[Int(next() % UInt64(input.count))] = UInt8(truncatingIfNeeded: next())
                    case 1: input.insert(UInt8(truncatingIfNeeded: next()), at: input.isEmpty ? 0 : Int(next() % UInt64(input.count)))
                    case 2 where !input.isEmpty: input.remove(at: Int(next() % UInt64(input.count)))
                    default: input += input.prefix(Int(next() % 16))
                    }
                }
                input.withUnsafeBytes { target.run($0) }
            }
        }
    }
}

import KamiProtocol

/// `KAMI_WRITE_FUZZ_SEEDS=1 swift test --filter FuzzSeedWriter` writes the binary frame
/// seeds (valid frames of every storefront operation) into Fuzz/regressions/frame.
final class FuzzSeedWriter: XCTestCase {
    func testWriteFrameSeeds() throws {
        guard ProcessInfo.processInfo.environment["KAMI_WRITE_FUZZ_SEEDS"] == "1" else {
            throw XCTSkip("set KAMI_WRITE_FUZZ_SEEDS=1 to write the frame seeds")
        }
        var all: [UInt8] = []
        for op in KamiProtocol.Operation.allCases where !op.isOperator {
            var request = Request(id: .number(Int64(op.rawValue)), op: op)
            request.order = "A1"; request.user = "u"; request.sku = "vip"; request.qty = 2
            request.paymentRef = "p"; request.client = "c"; request.token = "0123456789abcdef"; request.ttlMs = 60_000
            var bytes: [UInt8] = []
            try BinaryCodec.encode(request, into: &bytes)
            try Data(bytes).write(to: URL(fileURLWithPath: FuzzRegressionTests.regressions + "/frame/seed-\(op.name)"))
            all += bytes
        }
        try Data(all).write(to: URL(fileURLWithPath: FuzzRegressionTests.regressions + "/frame/seed-pipeline"))
    }
}
