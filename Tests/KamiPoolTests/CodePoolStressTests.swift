import Dispatch
import KamiCore
@testable import KamiPool
import XCTest

/// Many threads hammering one hot SKU and a few cold ones, against both pools; afterwards
/// every code must be accounted for exactly once.
final class CodePoolStressTests: XCTestCase {
    /// The codes of each SKU in the stress layout: the hot SKU has two segments (so several
    /// shards) interleaved with the cold SKUs' segments.
    private static let layout: [(sku: SkuID, codes: Range<CodeID>)] = [
        (1, 1000 ..< 1600),
        (2, 1600 ..< 1700),
        (3, 1700 ..< 1750),
        (1, 2000 ..< 2400),
        (4, 2400 ..< 2500),
    ]
    private static let codeBase: CodeID = 1000
    private static let codeSpan = 1500
    private static let threads = 4
    private static let operationsPerThread = 75_000

    func testConcurrentTakePutRemove() {
        let seed = testSeed("testConcurrentTakePutRemove")
        for kind in poolKinds {
            stress(kind.make(), name: kind.name, seed: seed)
        }
    }

    private func stress(_ pool: any CodePool, name: String, seed: UInt64) {
        let layout = Self.layout
        for (sku, codes) in layout {
            pool.addSegment(sku: sku, codes: codes)
            pool.put(sku: sku, codes: codes)
        }
        let skuOf: [SkuID: [Range<CodeID>]] = Dictionary(grouping: layout, by: \.sku).mapValues { $0.map(\.codes) }
        let skus = skuOf.keys.sorted()
        // owners[code - base]: 0 when not held by a worker, else worker index + 1.
        let owners = AtomicArray(count: Self.codeSpan)
        let removed = AtomicArray(count: Self.codeSpan)
        let failures = FailureLog()
        let held = Locked<[CodeID]>([])

        DispatchQueue.concurrentPerform(iterations: Self.threads) { worker in
            var random = SplitMix64(seed: seed &+ UInt64(worker) &* 0x1000_0000_01B3)
            var mine: [(sku: SkuID, codes: [CodeID])] = []
            let holdCap = Int.random(in: 20 ... 300, using: &random)
            let me = worker + 1
            func fail(_ message: String) { failures.record("\(name) seed \(seed) worker \(worker): \(message)") }

            for _ in 0 ..< Self.operationsPerThread {
                // 70% of the traffic goes to the hot SKU 1.
                let sku = Int.random(in: 0 ..< 10, using: &random) < 7 ? 1 : skus.randomElement(using: &random)!
                let roll = Int.random(in: 0 ..< 1000, using: &random)
                if !mine.isEmpty && (roll < 450 || mine.count > holdCap) {
                    let batch = mine.remove(at: Int.random(in: 0 ..< mine.count, using: &random))
                    for code in batch.codes {
                        let (done, found) = owners.exchange(Int(code - Self.codeBase), expected: me, desired: 0)
                        if !done { fail("code \(code) returned while owned by \(found)") }
                    }
                    pool.put(sku: batch.sku, codes: batch.codes)
                } else if roll < 997 {
                    guard let codes = pool.take(sku: sku, count: Int.random(in: 1 ... 4, using: &random)) else {
                        continue
                    }
                    for code in codes {
                        guard skuOf[sku]!.contains(where: { $0.contains(code) }) else {
                            fail("take of SKU \(sku) returned foreign code \(code)")
                            continue
                        }
                        let (done, found) = owners.exchange(Int(code - Self.codeBase), expected: 0, desired: me)
                        if !done { fail("code \(code) handed out while owned by worker \(found - 1)") }
                        if removed.load(Int(code - Self.codeBase)) != 0 { fail("removed code \(code) handed out") }
                    }
                    mine.append((sku, codes))
                } else {
                    let ranges = skuOf[sku]!
                    let range = ranges.randomElement(using: &random)!
                    let code = CodeID.random(in: range, using: &random)
                    if pool.remove(sku: sku, code: code) {
                        let (done, _) = removed.exchange(Int(code - Self.codeBase), expected: 0, desired: 1)
                        if !done { fail("code \(code) removed twice") }
                        let owner = owners.load(Int(code - Self.codeBase))
                        if owner != 0 { fail("code \(code) removed while held by worker \(owner - 1)") }
                        // Sometimes undo the removal (an engine rolling back a failed void).
                        if Bool.random(using: &random) {
                            _ = removed.exchange(Int(code - Self.codeBase), expected: 1, desired: 0)
                            pool.put(sku: sku, codes: [code])
                        }
                    }
                }
            }
            let codes = mine.flatMap(\.codes)
            held.withLock { $0.append(contentsOf: codes) }
        }

        for message in failures.all { XCTFail(message) }
        let heldCodes = Set(held.withLock { $0 })
        var removedCount = 0
        for (sku, ranges) in skuOf.sorted(by: { $0.key < $1.key }) {
            let all = ranges.flatMap { Array($0) }
            let heldHere = all.count { heldCodes.contains($0) }
            let removedHere = all.count { removed.load(Int($0 - Self.codeBase)) != 0 }
            removedCount += removedHere
            let expected = all.count - heldHere - removedHere
            XCTAssertEqual(pool.available(sku: sku), expected, "\(name) seed \(seed): available of SKU \(sku)")
            // Drain: what is available must be exactly the codes neither held nor removed.
            let drained = expected > 0 ? pool.take(sku: sku, count: expected) ?? [] : []
            XCTAssertNil(pool.take(sku: sku, count: 1), "\(name) seed \(seed): SKU \(sku) not empty after drain")
            var accounted = Set(drained)
            XCTAssertEqual(accounted.count, drained.count, "\(name) seed \(seed): duplicate in drain")
            for code in all where heldCodes.contains(code) || removed.load(Int(code - Self.codeBase)) != 0 {
                XCTAssertTrue(accounted.insert(code).inserted,
                              "\(name) seed \(seed): code \(code) both available and held/removed")
            }
            XCTAssertEqual(accounted, Set(all), "\(name) seed \(seed): SKU \(sku) codes not all accounted for")
        }
        print("\(name): \(heldCodes.count) held, \(removedCount) removed at the end")
    }

    /// Takers and a remover fight over two codes while a sampler watches the count: a remove
    /// must never leave an admitted taker without a code or the count below zero.
    func testRemoveAndReviveChurnOnScarceStock() {
        let seed = testSeed("testRemoveAndReviveChurnOnScarceStock")
        for kind in poolKinds {
            let pool = kind.make()
            let stock: CodeID = 2
            pool.addSegment(sku: 1, codes: 0 ..< stock)
            pool.put(sku: 1, codes: 0 ..< stock)
            let owners = AtomicArray(count: Int(stock))
            let finished = AtomicArray(count: 1)
            let failures = FailureLog()
            let iterations = 40_000
            DispatchQueue.concurrentPerform(iterations: 4) { worker in
                var random = SplitMix64(seed: seed &+ UInt64(worker))
                func fail(_ message: String) {
                    failures.record("\(kind.name) seed \(seed) worker \(worker): \(message)")
                }
                switch worker {
                case 0, 1:
                    for _ in 0 ..< iterations {
                        guard let codes = pool.take(sku: 1, count: 1) else { continue }
                        let (done, found) = owners.exchange(Int(codes[0]), expected: 0, desired: worker + 1)
                        if !done { fail("code \(codes[0]) handed out while owned by \(found)") }
                        owners.store(Int(codes[0]), 0)
                        pool.put(sku: 1, codes: codes)
                    }
                    _ = finished.add(0, 1)
                case 2:
                    for _ in 0 ..< iterations {
                        let code = CodeID.random(in: 0 ..< stock, using: &random)
                        if pool.remove(sku: 1, code: code) {
                            if owners.load(Int(code)) != 0 { fail("removed code \(code) while it was held") }
                            pool.put(sku: 1, codes: [code])
                        }
                    }
                    _ = finished.add(0, 1)
                default:
                    while finished.load(0) < 3 {
                        let available = pool.available(sku: 1)
                        if available < 0 || available > Int(stock) { fail("available \(available)") }
                    }
                }
            }
            for message in failures.all { XCTFail(message) }
            XCTAssertEqual(pool.available(sku: 1), Int(stock), kind.name)
            XCTAssertEqual(Set(pool.take(sku: 1, count: Int(stock)) ?? []), Set(0 ..< stock), kind.name)
        }
    }

    /// Imports keep arriving for a SKU while takers trade on it: shards appended (and the
    /// shard directory regrown) under concurrent readers must be seen whole.
    func testSegmentsAddedWhileTrading() {
        for kind in poolKinds {
            let pool = kind.make()
            let segments = 2000
            let segmentCodes: CodeID = 8
            let owners = AtomicArray(count: segments * Int(segmentCodes))
            let importsDone = AtomicArray(count: 1)
            let failures = FailureLog()
            let kept = Locked<[CodeID]>([])
            pool.addSegment(sku: 1, codes: 0 ..< segmentCodes)
            pool.put(sku: 1, codes: 0 ..< segmentCodes)
            DispatchQueue.concurrentPerform(iterations: 3) { worker in
                if worker == 0 {
                    // The importer: one segment at a time, SKU 2 interleaved between them.
                    for segment in 1 ..< segments {
                        let base = CodeID(segment) * segmentCodes
                        pool.addSegment(sku: 1, codes: base ..< base + segmentCodes - 1)
                        pool.addSegment(sku: 2, codes: base + segmentCodes - 1 ..< base + segmentCodes)
                        pool.put(sku: 1, codes: base ..< base + segmentCodes - 1)
                    }
                    _ = importsDone.add(0, 1)
                    return
                }
                var mine: [CodeID] = []
                var keep: [CodeID] = []
                while importsDone.load(0) == 0 || !mine.isEmpty {
                    // Trade while the imports run, then only hand back what is still held.
                    if importsDone.load(0) == 0, let codes = pool.take(sku: 1, count: 2) {
                        for code in codes {
                            let (done, found) = owners.exchange(Int(code), expected: 0, desired: worker)
                            if !done { failures.record("\(kind.name): code \(code) taken while owned by \(found)") }
                        }
                        mine += codes
                    }
                    if mine.count > 6 || (importsDone.load(0) != 0 && !mine.isEmpty) {
                        // Keep every fifth code for good, return the rest.
                        let code = mine.removeFirst()
                        if code % 5 == 0 {
                            keep.append(code)
                        } else {
                            owners.store(Int(code), 0)
                            pool.put(sku: 1, codes: [code])
                        }
                    }
                }
                kept.withLock { $0 += keep }
            }
            for message in failures.all { XCTFail(message) }
            let keptCodes = kept.withLock { $0 }
            var all = Set<CodeID>(0 ..< segmentCodes)
            for segment in 1 ..< segments {
                let base = CodeID(segment) * segmentCodes
                all.formUnion(base ..< base + segmentCodes - 1)
            }
            let expected = all.count - keptCodes.count
            XCTAssertEqual(pool.available(sku: 1), expected, kind.name)
            let drained = Set(pool.take(sku: 1, count: expected) ?? [])
            XCTAssertEqual(drained.union(keptCodes), all, kind.name)
            XCTAssertTrue(drained.isDisjoint(with: keptCodes), kind.name)
            XCTAssertEqual(pool.available(sku: 2), 0, kind.name)
        }
    }

    /// Many threads race for the last codes of a SKU: exactly the stock is handed out.
    func testRaceForLastCodesNeverOversells() {
        for kind in poolKinds {
            for round in 0 ..< 20 {
                let pool = kind.make()
                let stock = 10 + round
                pool.addSegment(sku: 5, codes: 0 ..< CodeID(stock))
                pool.put(sku: 5, codes: 0 ..< CodeID(stock))
                let won = Locked<[CodeID]>([])
                DispatchQueue.concurrentPerform(iterations: 8) { _ in
                    var mine: [CodeID] = []
                    while let codes = pool.take(sku: 5, count: 3) {
                        mine += codes
                    }
                    won.withLock { $0 += mine }
                }
                let codes = won.withLock { $0 }
                XCTAssertEqual(codes.count, stock / 3 * 3, "\(kind.name) round \(round)")
                XCTAssertEqual(Set(codes).count, codes.count, "\(kind.name) round \(round): duplicate")
                XCTAssertEqual(pool.available(sku: 5), stock % 3, "\(kind.name) round \(round)")
            }
        }
    }

    /// Removes race with takers for the same few codes: each code goes to exactly one of them.
    func testRemoveRacesTake() {
        for kind in poolKinds {
            for round in 0 ..< 50 {
                let pool = kind.make()
                let stock = 64
                pool.addSegment(sku: 1, codes: 0 ..< CodeID(stock))
                pool.put(sku: 1, codes: 0 ..< CodeID(stock))
                let outcome = Locked<(taken: [CodeID], removed: [CodeID])>(([], []))
                DispatchQueue.concurrentPerform(iterations: 4) { worker in
                    if worker % 2 == 0 {
                        var taken: [CodeID] = []
                        while let codes = pool.take(sku: 1, count: 1) { taken += codes }
                        outcome.withLock { $0.taken += taken }
                    } else {
                        var removed: [CodeID] = []
                        for code in stride(from: CodeID(worker / 2), to: CodeID(stock), by: 2) {
                            if pool.remove(sku: 1, code: code) { removed.append(code) }
                        }
                        outcome.withLock { $0.removed += removed }
                    }
                }
                let (taken, removed) = outcome.withLock { $0 }
                let context = "\(kind.name) round \(round)"
                XCTAssertEqual(Set(taken).count, taken.count, "\(context): duplicate take")
                XCTAssertTrue(Set(taken).isDisjoint(with: removed), "\(context): code both taken and removed")
                // The removers may finish before the takers drain, so the rest was taken.
                XCTAssertEqual(Set(taken).union(removed), Set(0 ..< CodeID(stock)), context)
                XCTAssertEqual(pool.available(sku: 1), 0, context)
            }
        }
    }
}
