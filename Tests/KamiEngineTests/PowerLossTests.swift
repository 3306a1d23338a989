import CKamiFaultVFS
import Dispatch
import Foundation
import KamiCore
import KamiEngine
import KamiStore
import Synchronization
import XCTest

/// Power cuts through the fault VFS: a sale runs on four threads, the power goes off at a
/// random moment, every write not yet synced is lost or torn, and the database is reopened.
/// With durability `full` no acknowledged issue may be lost; with `normal` the same test must
/// see losses (proving that it can).
final class PowerLossTests: XCTestCase {
    /// Cuts per run; `KAMI_POWER_CUTS` asks for more.
    static let cutsDefault = 20

    /// What the clients were told, per order id.
    final class Acks: @unchecked Sendable {
        // Protected by `lock`.
        private let lock = NSLock()
        private var committed: [String: [CodeID]] = [:]
        private var count = 0

        func record(_ orderID: String, _ codes: [CodeID]) -> Int {
            lock.lock()
            defer { lock.unlock() }
            committed[orderID] = codes
            count += 1
            return count
        }

        var all: [String: [CodeID]] { lock.lock(); defer { lock.unlock() }; return committed }
    }

    struct CutResult {
        var acknowledged = 0
        var lost = 0
        var dropped: UInt64 = 0
        var torn: UInt64 = 0
        var kept: UInt64 = 0
    }

    func testFullDurabilityLosesNothingAcknowledged() throws {
        let cuts = ProcessInfo.processInfo.environment["KAMI_POWER_CUTS"].flatMap(Int.init) ?? PowerLossTests.cutsDefault
        let seed = ProcessInfo.processInfo.environment["KAMI_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...1_000_000)
        print("power-loss seed \(seed) (replay with KAMI_SEED=\(seed)), \(cuts) cuts, durability full")
        let result = try runCuts(durability: .full, mode: .tear, cuts: cuts, seed: seed)
        print("power-loss full: \(cuts) cuts, \(result.acknowledged) acknowledged issues, \(result.lost) lost; "
              + "unsynced writes at the cuts: \(result.dropped) dropped, \(result.torn) torn, \(result.kept) kept")
        XCTAssertEqual(result.lost, 0, "acknowledged issues lost with durability full (seed \(seed))")
        XCTAssertGreaterThan(result.acknowledged, cuts * 20, "the sale acknowledged work before the cuts")
        XCTAssertGreaterThan(result.dropped + result.torn, 0, "the cuts found unsynced writes to lose")
    }

    /// A job on the writer (here any `perform`, and the catch-up a read does) needs the derived
    /// tables up to date: when deriving what waits fails (the disk), the job is not run and its
    /// caller gets the disk's error; once the disk is back, it runs and everything is derived.
    func testAJobDoesNotRunWhenTheDerivationBeforeItFails() throws {
        let h = Harness(durability: .full, open: false)
        FaultDisk.reset(watching: h.directory, seed: 17)
        defer { FaultDisk.setFaults(writePPM: 0, syncPPM: 0) }
        h.vfs = FaultDisk.vfsName
        h.reopen()
        h.stockSku("hot", count: 10)
        let writer = h.engine.storage.writer
        writer.pauseDerivation(true)
        for n in 0..<3 {
            let done = DispatchSemaphore(value: 0)
            h.engine.storefront.issue(order: "o\(n)", user: "u\(n)", sku: "hot", units: 1, paymentRef: "pay") { outcome in
                XCTAssertEqual(outcome.value?.state, .committed)
                done.signal()
            }
            done.wait()
        }
        XCTAssertEqual(writer.underivedRecords, 3)
        FaultDisk.setFaults(writePPM: 1_000_000, syncPPM: 0, full: true)
        let ran = Atomic<Int>(0)
        XCTAssertThrowsError(try writer.perform { _ in ran.add(1, ordering: .relaxed) }) { error in
            XCTAssertTrue("\(error)".contains("cannot bring its tables up to date with the issue log"), "\(error)")
        }
        XCTAssertThrowsError(try writer.catchUp())
        XCTAssertEqual(ran.load(ordering: .relaxed), 0, "the job ran on stale tables")
        XCTAssertEqual(writer.underivedRecords, 3)
        FaultDisk.setFaults(writePPM: 0, syncPPM: 0)
        try writer.perform { _ in ran.add(1, ordering: .relaxed) }
        XCTAssertEqual(ran.load(ordering: .relaxed), 1)
        XCTAssertEqual(writer.underivedRecords, 0)
        writer.pauseDerivation(false)
        h.assertInvariants()
    }

    func testNormalDurabilityCanLoseAcknowledgedIssuesAndTheTestSeesIt() throws {
        let seed = ProcessInfo.processInfo.environment["KAMI_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...1_000_000)
        print("power-loss seed \(seed), durability normal")
        let result = try runCuts(durability: .normal, mode: .dropAll, cuts: 3, seed: seed)
        print("power-loss normal: 3 cuts, \(result.acknowledged) acknowledged issues, \(result.lost) lost")
        XCTAssertGreaterThan(result.lost, 0, "durability normal syncs the WAL only at checkpoints: a cut must lose acks")
    }

    /// Runs `cuts` sale-then-power-cut cycles on one database; checks after every reopen that
    /// the database is sound (verify, which includes integrity_check) and counts acknowledged
    /// issues that did not survive.
    private func runCuts(durability: Durability, mode: FaultDisk.CutMode, cuts: Int, seed: UInt64) throws -> CutResult {
        var rng = SplitMix64(seed: seed)
        let h = Harness(durability: durability, open: false)
        FaultDisk.reset(watching: h.directory, seed: seed)
        h.vfs = FaultDisk.vfsName
        h.reopen()
        h.stockSku("hot", count: cuts * 700 + 1_000)
        var result = CutResult()
        var everAcked: [String: [CodeID]] = [:]
        for cut in 0..<cuts {
            let acks = Acks()
            let target = 50 + Int(rng.next() % 600)
            // The cut lands after 0-39 more writes: inside the next batch, its commit or a
            // checkpoint.
            let writesLeft = UInt32(rng.next() % 40)
            let powerOff = Atomic<Bool>(false)
            let engine = h.engine!
            DispatchQueue.concurrentPerform(iterations: 4) { worker in
                var n = 0
                while !FaultDisk.isFrozen && n < 5_000 {
                    n += 1
                    let orderID = "c\(cut)-w\(worker)-\(n)"
                    let done = DispatchSemaphore(value: 0)
                    engine.storefront.issue(order: orderID, user: "u-\(orderID)", sku: "hot", units: 1, paymentRef: "pay") { outcome in
                        if case .success(let reply) = outcome, reply.state == .committed {
                            if acks.record(orderID, reply.codeIDs) >= target, !powerOff.exchange(true, ordering: .acquiringAndReleasing) {
                                FaultDisk.freeze(afterWrites: writesLeft)
                            }
                        }
                        done.signal()
                    }
                    done.wait()
                }
            }
            if !powerOff.exchange(true, ordering: .acquiringAndReleasing) { FaultDisk.freeze() }
            h.close()
            XCTAssertEqual(FaultDisk.stats.open_files, 0, "cut \(cut): a connection is still open")
            XCTAssertTrue(FaultDisk.powerCut(mode), "cut \(cut): could not put the files back")
            let stats = FaultDisk.stats
            result.dropped += stats.dropped_writes
            result.torn += stats.torn_writes
            result.kept += stats.kept_writes
            h.reopen()
            let acked = acks.all
            result.acknowledged += acked.count
            for (orderID, codes) in acked { everAcked[orderID] = codes }
            for (orderID, codes) in everAcked {
                let order = try? h.engine.queries.order(orderID)
                if order?.state != .committed || order?.codeIDs != codes {
                    result.lost += 1
                    everAcked[orderID] = nil
                }
            }
            h.assertInvariants()
        }
        h.close()
        return result
    }
}
