import Foundation
import KamiCore
@testable import KamiPool
import Synchronization
import XCTest

/// The semantics of `CodePool`, checked against both implementations.
final class CodePoolTests: XCTestCase {
    func testNewSegmentStartsAbsentAndPutMakesAvailable() {
        for kind in poolKinds {
            let pool = kind.make()
            pool.addSegment(sku: 1, codes: 100 ..< 110)
            XCTAssertEqual(pool.available(sku: 1), 0, kind.name)
            XCTAssertNil(pool.take(sku: 1, count: 1), kind.name)
            XCTAssertFalse(pool.remove(sku: 1, code: 105), "absent code is not removable: \(kind.name)")
            pool.put(sku: 1, codes: Array(100 ..< 110))
            XCTAssertEqual(pool.available(sku: 1), 10, kind.name)
        }
    }

    func testUnknownSkuReadsAsEmpty() {
        for kind in poolKinds {
            let pool = kind.make()
            XCTAssertEqual(pool.available(sku: 7), 0, kind.name)
            XCTAssertNil(pool.take(sku: 7, count: 1), kind.name)
            XCTAssertNil(pool.take(sku: 0, count: 1), "id 0 is outside the table: \(kind.name)")
            XCTAssertNil(pool.take(sku: PoolLimits.skusMax + 1, count: 1), kind.name)
            XCTAssertNil(pool.take(sku: -3, count: 1), kind.name)
        }
    }

    func testTakeReturnsDistinctCodesOfTheSkuUntilEmpty() {
        for kind in poolKinds {
            let pool = kind.make()
            pool.addSegment(sku: 1, codes: 0 ..< 50)
            pool.addSegment(sku: 2, codes: 50 ..< 60)
            pool.addSegment(sku: 1, codes: 60 ..< 1000)  // splits into several shards
            pool.put(sku: 1, codes: Array(0 ..< 50) + Array(60 ..< 1000))
            pool.put(sku: 2, codes: 50 ..< 60)
            var seen = Set<CodeID>()
            while let codes = pool.take(sku: 1, count: 3) {
                XCTAssertEqual(codes.count, 3, kind.name)
                for code in codes {
                    XCTAssertTrue((0 ..< 50).contains(code) || (60 ..< 1000).contains(code), "\(code) \(kind.name)")
                    XCTAssertTrue(seen.insert(code).inserted, "code \(code) handed out twice: \(kind.name)")
                }
            }
            // 990 codes: 330 takes of 3 leave none; the last take of 3 found 0.
            XCTAssertEqual(seen.count, 990, kind.name)
            XCTAssertEqual(pool.available(sku: 1), 0, kind.name)
            XCTAssertEqual(pool.available(sku: 2), 10, "other SKU untouched: \(kind.name)")
        }
    }

    func testTakeIsAllOrNothing() {
        for kind in poolKinds {
            let pool = kind.make()
            pool.addSegment(sku: 3, codes: 10 ..< 15)
            pool.put(sku: 3, codes: 10 ..< 15)
            XCTAssertNil(pool.take(sku: 3, count: 6), kind.name)
            XCTAssertEqual(pool.available(sku: 3), 5, "a refused take consumes nothing: \(kind.name)")
            let four = pool.take(sku: 3, count: 4)
            XCTAssertEqual(four?.count, 4, kind.name)
            XCTAssertNil(pool.take(sku: 3, count: 2), kind.name)
            XCTAssertEqual(pool.available(sku: 3), 1, kind.name)
            let last = pool.take(sku: 3, count: 1)
            XCTAssertEqual(last?.count, 1, kind.name)
            XCTAssertEqual(Set((four ?? []) + (last ?? [])), Set(10 ..< 15), kind.name)
        }
    }

    func testPutReturnsTakenCodes() {
        for kind in poolKinds {
            let pool = kind.make()
            pool.addSegment(sku: 1, codes: 0 ..< 4)
            pool.put(sku: 1, codes: 0 ..< 4)
            let held = pool.take(sku: 1, count: 4)!
            XCTAssertNil(pool.take(sku: 1, count: 1), kind.name)
            pool.put(sku: 1, codes: held[1 ..< 3])
            XCTAssertEqual(pool.available(sku: 1), 2, kind.name)
            XCTAssertEqual(Set(pool.take(sku: 1, count: 2) ?? []), Set(held[1 ..< 3]), kind.name)
            pool.put(sku: 1, codes: CollectionOfOne(held[0]))
            XCTAssertEqual(pool.take(sku: 1, count: 1), [held[0]], kind.name)
        }
    }

    func testRemoveVoidsOnlyAvailableCodes() {
        for kind in poolKinds {
            let pool = kind.make()
            pool.addSegment(sku: 1, codes: 0 ..< 3)
            pool.put(sku: 1, codes: 0 ..< 3)
            let taken = pool.take(sku: 1, count: 1)![0]
            XCTAssertFalse(pool.remove(sku: 1, code: taken), "taken code is not removable: \(kind.name)")
            let other = (0 ..< 3).first { $0 != taken }!
            XCTAssertTrue(pool.remove(sku: 1, code: other), kind.name)
            XCTAssertFalse(pool.remove(sku: 1, code: other), "already removed: \(kind.name)")
            XCTAssertEqual(pool.available(sku: 1), 1, kind.name)
            // The tombstone is skipped: the one remaining code is what take returns.
            let remaining = (0 ..< 3).first { $0 != taken && $0 != other }!
            XCTAssertEqual(pool.take(sku: 1, count: 1), [remaining], kind.name)
            XCTAssertNil(pool.take(sku: 1, count: 1), kind.name)
            // A returned code is available again and can then be removed.
            pool.put(sku: 1, codes: [taken])
            XCTAssertTrue(pool.remove(sku: 1, code: taken), kind.name)
            XCTAssertEqual(pool.available(sku: 1), 0, kind.name)
            XCTAssertNil(pool.take(sku: 1, count: 1), kind.name)
        }
    }

    func testPutRevivesRemovedCodes() {
        for kind in poolKinds {
            let pool = kind.make()
            pool.addSegment(sku: 1, codes: 0 ..< 4)
            pool.put(sku: 1, codes: 0 ..< 4)
            // Code 0's tombstone is still queued when it is put back: it must come out once.
            XCTAssertTrue(pool.remove(sku: 1, code: 0), kind.name)
            pool.put(sku: 1, codes: [0])
            XCTAssertEqual(pool.available(sku: 1), 4, kind.name)
            XCTAssertEqual(Set(pool.take(sku: 1, count: 4) ?? []), [0, 1, 2, 3], kind.name)
            XCTAssertNil(pool.take(sku: 1, count: 1), "a revived tombstone must not be queued twice: \(kind.name)")
            pool.put(sku: 1, codes: [0, 1, 2, 3])
            // Code 3's tombstone is dropped by a take before it is put back.
            XCTAssertTrue(pool.remove(sku: 1, code: 3), kind.name)
            let three = pool.take(sku: 1, count: 3) ?? []
            XCTAssertEqual(Set(three), [0, 1, 2], kind.name)
            pool.put(sku: 1, codes: [3])
            XCTAssertEqual(pool.take(sku: 1, count: 1), [3], kind.name)
            XCTAssertNil(pool.take(sku: 1, count: 1), kind.name)
        }
    }

    func testRemovedCodesAcrossShardsAreSkipped() {
        for kind in poolKinds {
            let pool = kind.make()
            pool.addSegment(sku: 9, codes: 0 ..< 2000)
            pool.put(sku: 9, codes: 0 ..< 2000)
            for code in stride(from: CodeID(0), to: 2000, by: 2) {
                XCTAssertTrue(pool.remove(sku: 9, code: code), "\(code) \(kind.name)")
            }
            XCTAssertEqual(pool.available(sku: 9), 1000, kind.name)
            let all = pool.take(sku: 9, count: 1000)
            XCTAssertEqual(all.map { Set($0) }, Set(stride(from: CodeID(1), to: 2000, by: 2)), kind.name)
            XCTAssertNil(pool.take(sku: 9, count: 1), kind.name)
        }
    }

    func testShardRangesSplitLargeImports() {
        XCTAssertEqual(shardRanges(of: 0 ..< 0), [])
        XCTAssertEqual(shardRanges(of: 5 ..< 6), [5 ..< 6])
        let minimum = 0 ..< CodeID(PoolLimits.shardCodesMin)
        XCTAssertEqual(shardRanges(of: minimum), [minimum])
        let thousand = shardRanges(of: 0 ..< 1000)
        XCTAssertEqual(thousand.count, 4)
        let huge = shardRanges(of: 7 ..< 7 + CodeID(PoolLimits.shardCodesMax * 5 + 3))
        XCTAssertEqual(huge.count, 6)
        XCTAssertTrue(huge.allSatisfy { $0.count <= PoolLimits.shardCodesMax })
        for split in [thousand, huge] {
            for (previous, next) in zip(split, split.dropFirst()) {
                XCTAssertEqual(previous.upperBound, next.lowerBound, "shards must tile the import")
            }
        }
        XCTAssertEqual(huge.first?.lowerBound, 7)
        XCTAssertEqual(huge.last?.upperBound, 7 + CodeID(PoolLimits.shardCodesMax * 5 + 3))
    }

    func testShardRingWrapsAroundManyLaps() {
        // A 3-code shard has a 4-slot ring: cycling codes through it many times exercises
        // the sequence numbers across laps.
        let pool = LockFreeCodePool()
        pool.addSegment(sku: 1, codes: 0 ..< 3)
        pool.put(sku: 1, codes: 0 ..< 3)
        for lap in 0 ..< 1000 {
            guard let codes = pool.take(sku: 1, count: 1 + lap % 3) else {
                return XCTFail("lap \(lap): take failed")
            }
            pool.put(sku: 1, codes: codes)
        }
        XCTAssertEqual(Set(pool.take(sku: 1, count: 3) ?? []), [0, 1, 2])
    }

    /// A consumer that has claimed a ring position but not yet released its cell makes the
    /// ring look full to the producer a lap later; the producer must wait, not fail.
    func testProducerWaitsForLaggingConsumer() {
        let shard = Shard.make(codes: 0 ..< 2)
        defer { shard.deallocate() }
        shard.enqueue(0)
        shard.enqueue(1)
        // Play a consumer that stalls mid-dequeue at position 0: it has moved the consumer
        // position but not yet released cell 0.
        let consumer = shard.positions + Shard.positionStride
        XCTAssertTrue(consumer.pointee.compareExchange(expected: 0, desired: 1, ordering: .relaxed).exchanged)
        XCTAssertEqual(shard.dequeue(), 1)
        // Position 2 maps to cell 0, still held by the stalled consumer.
        let finished = AtomicArray(count: 1)
        let producer = Thread {
            shard.enqueue(1)
            finished.store(0, 1)
        }
        producer.start()
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertEqual(finished.load(0), 0, "the producer must wait for the cell")
        // The stalled consumer finishes: releases cell 0 for the next lap.
        shard.cells.pointee.sequence.store(0 + shard.mask + 1, ordering: .releasing)
        let deadline = Date().addingTimeInterval(10)
        while finished.load(0) == 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.001) }
        XCTAssertEqual(finished.load(0), 1)
        XCTAssertEqual(shard.dequeue(), 1)
        XCTAssertNil(shard.dequeue())
    }

    /// A seeded single-threaded simulation against a model, checking after every step.
    func testRandomizedAgainstModel() {
        let seed = testSeed("testRandomizedAgainstModel")
        for kind in poolKinds {
            var random = SplitMix64(seed: seed)
            simulate(kind.make(), name: kind.name, seed: seed, random: &random)
        }
    }

    private func simulate(_ pool: any CodePool, name: String, seed: UInt64, random: inout SplitMix64) {
        enum ModelState { case absent, available, taken, removed }
        let skus: [SkuID] = [1, 2, 3]
        // Codes are dense from 1, so the model indexes plain arrays by code.
        var owner: [SkuID] = [0]
        var state: [ModelState] = [.absent]
        var codesOf: [SkuID: [CodeID]] = [1: [], 2: [], 3: []]
        var availableCount: [SkuID: Int] = [1: 0, 2: 0, 3: 0]

        for step in 0 ..< 20_000 {
            let context = "\(name) seed \(seed) step \(step)"
            let sku = skus.randomElement(using: &random)!
            let roll = Int.random(in: 0 ..< 100, using: &random)
            if roll < 1 || codesOf[sku]!.isEmpty {
                // A new segment, sometimes after a gap of ids owned by nobody.
                let gap = Int.random(in: 0 ... 5, using: &random)
                owner += Array(repeating: 0, count: gap)
                state += Array(repeating: .absent, count: gap)
                let size = Int.random(in: 1 ... 600, using: &random)
                let range = CodeID(owner.count) ..< CodeID(owner.count + size)
                pool.addSegment(sku: sku, codes: range)
                owner += Array(repeating: sku, count: size)
                state += Array(repeating: .absent, count: size)
                codesOf[sku]!.append(contentsOf: range)
            } else if roll < 30 {
                // Put a few absent, taken or (rarely) removed codes.
                let codes = codesOf[sku]!
                var chosen = Set<CodeID>()
                for _ in 0 ..< Int.random(in: 1 ... 8, using: &random) {
                    let code = codes.randomElement(using: &random)!
                    if state[Int(code)] != .available && (state[Int(code)] != .removed || roll < 8) {
                        chosen.insert(code)
                    }
                }
                pool.put(sku: sku, codes: Array(chosen))
                for code in chosen { state[Int(code)] = .available }
                availableCount[sku]! += chosen.count
            } else if roll < 85 {
                let count = Int.random(in: 1 ... 5, using: &random)
                let expected = availableCount[sku]! >= count
                let codes = pool.take(sku: sku, count: count)
                XCTAssertEqual(codes != nil, expected, context)
                for code in codes ?? [] {
                    XCTAssertEqual(owner[Int(code)], sku, "\(context): code \(code) of another SKU")
                    XCTAssertEqual(state[Int(code)], .available,
                                   "\(context): took code \(code) in state \(state[Int(code)])")
                    state[Int(code)] = .taken
                }
                availableCount[sku]! -= codes?.count ?? 0
                XCTAssertEqual(Set(codes ?? []).count, codes?.count ?? 0, "\(context): duplicate in one take")
            } else {
                let code = codesOf[sku]!.randomElement(using: &random)!
                let expected = state[Int(code)] == .available
                XCTAssertEqual(pool.remove(sku: sku, code: code), expected, "\(context): remove \(code)")
                if expected {
                    state[Int(code)] = .removed
                    availableCount[sku]! -= 1
                }
            }
            for each in skus {
                XCTAssertEqual(pool.available(sku: each), availableCount[each], "\(context): available of \(each)")
            }
            if testRun?.failureCount ?? 0 > 0 { return }
        }
        // Every available code comes out exactly once at the end.
        for each in skus {
            let rest = availableCount[each]!
            let drained = rest > 0 ? pool.take(sku: each, count: rest) ?? [] : []
            let expected = codesOf[each]!.filter { state[Int($0)] == .available }
            XCTAssertEqual(Set(drained), Set(expected), "\(name) seed \(seed): drain of \(each)")
            XCTAssertEqual(drained.count, expected.count, "\(name) seed \(seed): drain of \(each)")
        }
    }
}
