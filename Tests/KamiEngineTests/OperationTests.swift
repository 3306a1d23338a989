import Foundation
import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore
import XCTest

final class OperationTests: XCTestCase {
    func testReserveCommitDeliversTheImportedSecretsOnce() throws {
        let h = Harness()
        let secrets = h.stockSku("vip", count: 3)
        let reserved = try h.engine.storefront.reserveSync(order: "o1", user: "u1", sku: "vip", units: 2, ttlMs: 60_000).get()
        XCTAssertEqual(reserved.state, .reserved)
        XCTAssertEqual(reserved.codeIDs.count, 2)
        XCTAssertTrue(reserved.codes.isEmpty, "a hold reveals no secret")
        XCTAssertEqual(reserved.expiresAtMs, h.clock.nowMs() + 60_000)
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").available, 1)
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").reserved, 2)

        let committed = try h.engine.storefront.commitSync(order: "o1", paymentRef: "pay-1").get()
        XCTAssertEqual(committed.state, .committed)
        XCTAssertEqual(committed.codes.map(\.codeID), reserved.codeIDs)
        for code in committed.codes {
            XCTAssertEqual(code.secret.reveal(), secrets[code.codeID])
            XCTAssertEqual(code.cardNumber?.hasPrefix("card-"), true)
            XCTAssertEqual(code.activationURL, "https://example.test/activate?c=\(code.codeID)")
        }
        // Repeating the commit returns the same codes; the same order queried shows them again.
        let again = try h.engine.storefront.commitSync(order: "o1", paymentRef: "pay-1").get()
        XCTAssertEqual(again.codes, committed.codes)
        XCTAssertEqual(try h.engine.queries.order("o1").codes, committed.codes)
        XCTAssertEqual(h.engine.storefront.commitSync(order: "o1", paymentRef: "pay-2").failure?.code, .conflict)
        let stock = try h.engine.queries.stock(sku: "vip")
        XCTAssertEqual([stock.available, stock.reserved, stock.issued, stock.imported], [1, 0, 2, 3])
        h.assertInvariants()
    }

    func testRepeatedReserveIsIdempotentAndOtherArgumentsConflict() throws {
        let h = Harness()
        h.stockSku("vip", count: 5)
        let first = try h.engine.storefront.reserveSync(order: "o1", user: "u1", sku: "vip", units: 1).get()
        let second = try h.engine.storefront.reserveSync(order: "o1", user: "u1", sku: "vip", units: 1).get()
        XCTAssertEqual(first.codeIDs, second.codeIDs)
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").available, 4, "a retry takes no second code")
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "o1", user: "u2", sku: "vip").failure?.code, .conflict)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "o1", user: "u1", sku: "vip", units: 2).failure?.code, .conflict)
        h.stockSku("other", count: 1)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "o1", user: "u1", sku: "other").failure?.code, .conflict)
        h.assertInvariants()
    }

    func testIssueIsIdempotentAndCommitsAnExistingHold() throws {
        let h = Harness()
        h.stockSku("vip", count: 5)
        let issued = try h.engine.storefront.issueSync(order: "i1", user: "u1", sku: "vip", units: 2, paymentRef: "p1").get()
        XCTAssertEqual(issued.state, .committed)
        XCTAssertEqual(issued.codes.count, 2)
        let retry = try h.engine.storefront.issueSync(order: "i1", user: "u1", sku: "vip", units: 2, paymentRef: "p1").get()
        XCTAssertEqual(retry.codes, issued.codes)
        XCTAssertEqual(h.engine.storefront.issueSync(order: "i1", user: "u1", sku: "vip", units: 2, paymentRef: "p9").failure?.code,
                       .conflict)
        XCTAssertEqual(h.engine.storefront.issueSync(order: "i1", user: "u1", sku: "vip", units: 1, paymentRef: "p1").failure?.code,
                       .conflict)
        let held = try h.engine.storefront.reserveSync(order: "r1", user: "u1", sku: "vip").get()
        let paid = try h.engine.storefront.issueSync(order: "r1", user: "u1", sku: "vip", units: 1, paymentRef: "p2").get()
        XCTAssertEqual(paid.state, .committed)
        XCTAssertEqual(paid.codeIDs, held.codeIDs)
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").issued, 3)
        h.assertInvariants()
    }

    func testReleaseReturnsCodesAndIsIdempotent() throws {
        let h = Harness()
        h.stockSku("vip", count: 1, limit: 1)
        let held = try h.engine.storefront.reserveSync(order: "o1", user: "u1", sku: "vip").get()
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "o2", user: "u2", sku: "vip").failure?.code, .soldOut)
        XCTAssertEqual(try h.engine.storefront.releaseSync(order: "o1").get().state, .released)
        XCTAssertEqual(try h.engine.storefront.releaseSync(order: "o1").get().state, .released)
        XCTAssertEqual(h.engine.storefront.commitSync(order: "o1", paymentRef: "p").failure?.code, .invalidState)
        // The code is sellable again, and the user's limit is free again.
        let other = try h.engine.storefront.reserveSync(order: "o3", user: "u1", sku: "vip").get()
        XCTAssertEqual(other.codeIDs, held.codeIDs)
        XCTAssertEqual(h.engine.storefront.releaseSync(order: "nope").failure?.code, .notFound)
        _ = try h.engine.storefront.commitSync(order: "o3", paymentRef: "p").get()
        XCTAssertEqual(h.engine.storefront.releaseSync(order: "o3").failure?.code, .invalidState)
        h.assertInvariants()
    }

    func testHoldsExpireOnTheirOwnAndLateCommitStillDeliversWhenStockRemains() throws {
        let h = Harness()
        h.stockSku("vip", count: 2)
        let held = try h.engine.storefront.reserveSync(order: "o1", user: "u1", sku: "vip", ttlMs: 5_000).get()
        h.clock.advance(ms: 4_999)
        XCTAssertEqual(h.engine.storefront.expireDue(), 0)
        h.clock.advance(ms: 1)
        XCTAssertEqual(h.engine.storefront.expireDue(), 1)
        h.engine.admin.barrier()
        XCTAssertEqual(try h.engine.queries.order("o1").state, .expired)
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").available, 2)
        // Late payment: stock remains, so it delivers (with whatever code is available now).
        let late = try h.engine.storefront.commitSync(order: "o1", paymentRef: "p1").get()
        XCTAssertEqual(late.state, .committed)
        XCTAssertEqual(late.codes.count, 1)
        _ = held
        h.assertInvariants()
    }

    func testLateCommitWhenSoldOutSaysExpired() throws {
        let h = Harness()
        h.stockSku("vip", count: 1)
        _ = try h.engine.storefront.reserveSync(order: "o1", user: "u1", sku: "vip", ttlMs: 1_000).get()
        h.clock.advance(ms: 1_000)
        h.engine.storefront.expireDue()
        h.engine.admin.barrier()
        _ = try h.engine.storefront.issueSync(order: "o2", user: "u2", sku: "vip", paymentRef: "p2").get()
        let error = h.engine.storefront.commitSync(order: "o1", paymentRef: "p1").failure
        XCTAssertEqual(error?.code, .expired)
        XCTAssertTrue(error?.message.contains("refund") ?? false, error?.message ?? "")
        XCTAssertEqual(try h.engine.queries.order("o1").state, .expired)
        h.assertInvariants()
    }

    func testPerUserLimitAndPendingHoldLimit() throws {
        let h = Harness()
        h.stockSku("flash", count: 10, limit: 1)
        _ = try h.engine.storefront.reserveSync(order: "a1", user: "alice", sku: "flash").get()
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "a2", user: "alice", sku: "flash").failure?.code, .limitReached)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "b1", user: "bob", sku: "flash", units: 2).failure?.code,
                       .limitReached)
        _ = try h.engine.storefront.releaseSync(order: "a1").get()
        _ = try h.engine.storefront.issueSync(order: "a3", user: "alice", sku: "flash", paymentRef: "p").get()
        XCTAssertEqual(h.engine.storefront.issueSync(order: "a4", user: "alice", sku: "flash", paymentRef: "p").failure?.code,
                       .limitReached)
        // Refund frees the limit again.
        _ = try h.engine.storefront.refundSync(order: "a3").get()
        _ = try h.engine.storefront.issueSync(order: "a5", user: "alice", sku: "flash", paymentRef: "p").get()

        h.stockSku("free", count: 100)
        for n in 0..<Limits.pendingHoldsPerUserMax {
            _ = try h.engine.storefront.reserveSync(order: "c\(n)", user: "carol", sku: "free").get()
        }
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "cX", user: "carol", sku: "free").failure?.code, .limitReached)
        _ = try h.engine.storefront.commitSync(order: "c0", paymentRef: "p").get()
        _ = try h.engine.storefront.reserveSync(order: "cY", user: "carol", sku: "free").get()
        h.assertInvariants()
    }

    func testRefundVoidsTheCodesForGood() throws {
        let h = Harness()
        h.stockSku("vip", count: 2)
        let issued = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").get()
        XCTAssertEqual(h.engine.storefront.refundSync(order: "nope").failure?.code, .notFound)
        XCTAssertEqual(try h.engine.storefront.refundSync(order: "o1").get().state, .refunded)
        XCTAssertEqual(try h.engine.storefront.refundSync(order: "o1").get().state, .refunded)
        let stock = try h.engine.queries.stock(sku: "vip")
        XCTAssertEqual([stock.available, stock.issued, stock.voided], [1, 0, 1])
        XCTAssertTrue(try h.engine.queries.order("o1").codes.isEmpty, "a refunded order serves no secret")
        let next = try h.engine.storefront.issueSync(order: "o2", user: "u2", sku: "vip", paymentRef: "p").get()
        XCTAssertNotEqual(next.codeIDs, issued.codeIDs)
        XCTAssertEqual(h.engine.storefront.issueSync(order: "o3", user: "u3", sku: "vip", paymentRef: "p").failure?.code, .soldOut)
        _ = try h.engine.storefront.reserveSync(order: "o4", user: "u4", sku: "vip").failure
        XCTAssertEqual(h.engine.storefront.refundSync(order: "o4").failure?.code, .notFound)
        h.assertInvariants()
    }

    func testVoidAvailableIssuedAndBatch() throws {
        let h = Harness()
        h.stockSku("vip", count: 4, batch: "B1")
        let issued = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").get()
        _ = try h.engine.storefront.reserveSync(order: "o2", user: "u2", sku: "vip").get()
        h.stockSku("vip", count: 3, batch: "B2")
        let leaked = issued.codeIDs[0]
        let report = try h.engine.admin.void(code: leaked)
        XCTAssertEqual(report.voided, 1)
        XCTAssertTrue(try h.engine.queries.order("o1").codes.isEmpty, "a voided code is never served again")
        XCTAssertEqual(try h.engine.admin.void(code: leaked).alreadyVoided, 1)
        XCTAssertEqual((try? h.engine.admin.void(code: 999_999)) == nil, true)
        let batch = try h.engine.admin.void(batch: "B1")
        // B1 had 4 codes: 1 issued and voided before, 1 reserved by o2, 2 available.
        XCTAssertEqual(batch.alreadyVoided, 1)
        XCTAssertEqual(batch.skippedReserved, 1)
        XCTAssertEqual(batch.voided, 2)
        let stock = try h.engine.queries.stock(sku: "vip")
        XCTAssertEqual([stock.available, stock.reserved, stock.voided], [3, 1, 3])
        for n in 0..<3 { _ = try h.engine.storefront.issueSync(order: "x\(n)", user: "ux\(n)", sku: "vip", paymentRef: "p").get() }
        XCTAssertEqual(h.engine.storefront.issueSync(order: "x9", user: "u", sku: "vip", paymentRef: "p").failure?.code, .soldOut)
        XCTAssertThrowsError(try h.engine.admin.void(batch: "nope"))
        h.assertInvariants()
    }

    func testBundlesTakeEveryComponentOrNone() throws {
        let h = Harness()
        h.stockSku("video", count: 3)
        h.stockSku("music", count: 1)
        h.stockSku("cloud", count: 3)
        let bundle = try h.engine.admin.setSku(SkuDefinition(
            key: "super", name: "超级会员", priceCents: 3000, perUserLimit: 1,
            components: [("video", 1), ("music", 1), ("cloud", 2)]))
        XCTAssertTrue(bundle.isBundle)
        XCTAssertEqual(try h.engine.queries.stock(sku: "super").available, 1)
        let issued = try h.engine.storefront.issueSync(order: "b1", user: "u1", sku: "super", paymentRef: "p").get()
        XCTAssertEqual(issued.codes.count, 4)
        XCTAssertEqual(Set(issued.codes.map(\.skuKey)), ["video", "music", "cloud"])
        XCTAssertEqual(issued.codes.filter { $0.skuKey == "cloud" }.count, 2)
        // music is gone: no second bundle, and nothing of video or cloud was taken trying.
        XCTAssertEqual(h.engine.storefront.issueSync(order: "b2", user: "u2", sku: "super", paymentRef: "p").failure?.code, .soldOut)
        XCTAssertEqual(try h.engine.queries.stock(sku: "video").available, 2)
        XCTAssertEqual(try h.engine.queries.stock(sku: "cloud").available, 1)
        // The limit applies to the bundle itself.
        h.stockSku("music", count: 2)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "b3", user: "u1", sku: "super").failure?.code, .limitReached)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "b4", user: "u3", sku: "super").failure?.code, .soldOut,
                       "cloud has 1 left, a bundle needs 2")
        XCTAssertEqual(try h.engine.queries.stock(sku: "music").available, 2)
        XCTAssertThrowsError(try h.engine.admin.setSku(SkuDefinition(key: "nested", components: [("super", 1)])))
        XCTAssertThrowsError(try h.engine.admin.importCodes(sku: "super", source: ArrayRowSource([]), label: "x"))
        h.assertInvariants()
    }

    /// An order's codes in all (units x codes per unit) are bounded by `codesPerOrderMax`, checked
    /// before anything is taken: no order can be committed that no reply could carry.
    func testTheCodesOfOneOrderAreBoundedBeforeAnythingIsTaken() throws {
        let h = Harness()
        h.stockSku("cards", count: 460)
        h.stockSku("gift", count: 50)
        _ = try h.engine.admin.setSku(SkuDefinition(key: "pack", components: [("cards", 10), ("gift", 1)]))
        // 46 packs take 506 codes: refused, naming the limit, and nothing was taken.
        let tooMany = h.engine.storefront.issueSync(order: "p1", user: "u1", sku: "pack", units: 46, paymentRef: "pay").failure
        XCTAssertEqual(tooMany?.code, .badRequest)
        XCTAssertTrue(tooMany?.message.contains("506 codes") == true, tooMany?.message ?? "")
        XCTAssertTrue(tooMany?.message.contains("\(Limits.codesPerOrderMax)") == true, tooMany?.message ?? "")
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "p2", user: "u1", sku: "pack", units: 46).failure?.code, .badRequest)
        XCTAssertEqual(try h.engine.queries.stock(sku: "cards").available, 460)
        XCTAssertEqual(try h.engine.queries.stock(sku: "gift").available, 50)
        XCTAssertNil(try? h.engine.queries.order("p1"), "no order was created")
        // 45 packs (495 codes) fit, and the order stays readable, retries included.
        let fits = try h.engine.storefront.issueSync(order: "p3", user: "u1", sku: "pack", units: 45, paymentRef: "pay").get()
        XCTAssertEqual(fits.codes.count, 495)
        XCTAssertEqual(try h.engine.queries.order("p3").codes.count, 495)
        // Plain units: the unit limit is the bound (100 codes), and it is checked the same way.
        h.stockSku("plain", count: 101)
        XCTAssertEqual(h.engine.storefront.issueSync(order: "q1", user: "u2", sku: "plain", units: 101, paymentRef: "p").failure?.code,
                       .badRequest)
        XCTAssertEqual(try h.engine.storefront.issueSync(order: "q2", user: "u2", sku: "plain", units: 100, paymentRef: "p").get()
            .codes.count, 100)
        h.assertInvariants()
    }

    /// Every order event records the storefront client that sent it, and `issue` its payment
    /// reference as `commit` does.
    func testOrderEventsRecordTheClientAndIssueItsPaymentReference() throws {
        let h = Harness()
        h.stockSku("vip", count: 3)
        _ = try h.engine.storefront.issueSync(order: "i1", user: "u1", sku: "vip", paymentRef: "pay-9", client: "shop-a").get()
        _ = try h.engine.storefront.reserveSync(order: "r1", user: "u2", sku: "vip", client: "shop-b").get()
        _ = try h.engine.storefront.commitSync(order: "r1", paymentRef: "pay-10", client: "shop-b").get()
        h.engine.admin.barrier()
        let rows = try h.engine.storage.read { db throws(SQLiteError) -> [String: String] in
            let stmt = try db.prepare("SELECT event, detail FROM audit_events WHERE subject LIKE 'order:%'")
            var rows: [String: String] = [:]
            while try stmt.step() { rows[stmt.text(0) ?? ""] = stmt.text(1) }
            stmt.reset()
            return rows
        }
        XCTAssertTrue(rows["issue"]?.contains("payment=pay-9 client=shop-a") == true, rows["issue"] ?? "none")
        XCTAssertTrue(rows["reserve"]?.hasSuffix("client=shop-b amount=990") == true, rows["reserve"] ?? "none")
        XCTAssertTrue(rows["commit"]?.contains("payment=pay-10") == true
                      && rows["commit"]?.hasSuffix("client=shop-b amount=990") == true, rows["commit"] ?? "none")
        h.assertInvariants()
    }

    /// A call queued behind an in-flight operation of the same order (a storefront retry) runs
    /// after that operation, but never on the commit writer's thread: its reads and decryption
    /// must not delay the next fsync.
    func testQueuedRetriesRunOffTheWriterThread() throws {
        let h = Harness()
        h.stockSku("vip", count: 2)
        let gate = DispatchSemaphore(value: 0)
        let blocked = DispatchSemaphore(value: 0)
        let writer = h.engine.storage.writer
        DispatchQueue.global().async {
            _ = try? writer.perform { (_: inout WriterContext) throws(KamiError) in
                blocked.signal()
                gate.wait()
            }
        }
        blocked.wait()
        let threads = Locked<[String]>([])
        let first = ResultBox<OrderReply>()
        let retry = ResultBox<OrderReply>()
        h.engine.storefront.issue(order: "o1", user: "u1", sku: "vip", units: 1, paymentRef: "p") { result in
            threads.withLock { $0.append("first:" + (writer.isWriterThread ? "writer" : "other")) }
            first.set(result)
        }
        h.engine.storefront.issue(order: "o1", user: "u1", sku: "vip", units: 1, paymentRef: "p") { result in
            threads.withLock { $0.append("retry:" + (writer.isWriterThread ? "writer" : "other")) }
            retry.set(result)
        }
        gate.signal()
        let original = try first.wait().get()
        let repeated = try retry.wait().get()
        XCTAssertEqual(repeated.codes, original.codes, "the retry returns the first answer")
        let seen = threads.withLock { $0 }
        XCTAssertEqual(seen.sorted(), ["first:writer", "retry:other"], "the retry must not run on the writer")
        h.assertInvariants()
    }

    /// The store applies a code's move only from the state the move names: a change built
    /// on a stale state fails alone, and nothing of it is written.
    func testTheStoreRefusesAMoveFromAStateTheCodeIsNotIn() throws {
        let h = Harness()
        h.stockSku("vip", count: 2)
        let held = try h.engine.storefront.reserveSync(order: "o1", user: "u1", sku: "vip").get()
        let code = held.codeIDs[0]
        let waiter = ResultBox<MutationOutcome>()
        let stale = CodeChange(codeID: code, from: .available, to: .voided, orderSeq: nil)
        h.engine.storage.writer.submit(.setCodes([stale], audit: AuditEvent("void", subject: "test", detail: "stale"))) {
            waiter.set($0)
        }
        let error = waiter.wait().failure
        XCTAssertNotNil(error)
        XCTAssertTrue(error?.message.contains("is not available") == true, error?.message ?? "")
        XCTAssertEqual(try h.engine.storage.codeStates([code])[code]?.state, .reserved)
        XCTAssertEqual(try h.engine.storefront.commitSync(order: "o1", paymentRef: "p").get().codes.map(\.codeID), [code])
        h.assertInvariants()
    }

    func testValidationErrorsAreClearAndNeverEchoSecrets() throws {
        let h = Harness()
        h.stockSku("vip", count: 1)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "", user: "u", sku: "vip").failure?.code, .badRequest)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "o", user: "u", sku: "nope").failure?.code, .notFound)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "o", user: "u", sku: "vip", units: 0).failure?.code, .badRequest)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "o", user: "u", sku: "vip", units: 101).failure?.code, .badRequest)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "o", user: "u", sku: "vip", ttlMs: 10).failure?.code, .badRequest)
        let long = String(repeating: "x", count: 65)
        let error = h.engine.storefront.reserveSync(order: long, user: "u", sku: "vip").failure
        XCTAssertEqual(error?.code, .badRequest)
        XCTAssertFalse(error?.message.contains(long) ?? true)
        XCTAssertEqual(h.engine.storefront.commitSync(order: "missing", paymentRef: "p").failure?.code, .notFound)
        let issued = try h.engine.storefront.issueSync(order: "o9", user: "u", sku: "vip", paymentRef: "p").get()
        let secret = issued.codes[0].secret.reveal()
        XCTAssertFalse("\(issued)".contains(secret), "a reply's description shows no secret")
        XCTAssertFalse(String(reflecting: issued).contains(secret))
    }

    func testActivationLinksCarryTheOrderAndUserPercentEncodedAndNeverTheSecret() throws {
        let h = Harness()
        h.stockSku("vip", count: 3)
        _ = try h.engine.admin.setSku(SkuDefinition(
            key: "vip", activationURLTemplate: "https://brand.example/r?c={code_id}&n={card_number}&o={order}&u={user}&s={sku}"))
        let issued = try h.engine.storefront.issueSync(order: "o1&x=2#", user: "u+1/2", sku: "vip", units: 1, paymentRef: "p").get()
        let code = try XCTUnwrap(issued.codes.first)
        let expected = "https://brand.example/r?c=\(code.codeID)&n=\(code.cardNumber ?? "?")&o=o1%26x%3D2%23&u=u%2B1%2F2&s=vip"
        XCTAssertEqual(code.activationURL, expected)
        XCTAssertEqual(try h.engine.queries.order("o1&x=2#").codes.first?.activationURL, expected)
        XCTAssertEqual(try h.engine.queries.entitlements(user: "u+1/2").first?.activationURL, expected)
        // A template that would put the secret (or an unknown name) in a link is refused and the
        // stored one stays.
        for bad in ["https://brand.example/r?s={secret}", "https://brand.example/r?o={order_id}"] {
            do throws(KamiError) {
                _ = try h.engine.admin.setSku(SkuDefinition(key: "vip", activationURLTemplate: bad))
                XCTFail("\(bad) was accepted")
            } catch { XCTAssertEqual(error.code, .badRequest) }
        }
        XCTAssertEqual(try h.engine.queries.order("o1&x=2#").codes.first?.activationURL, expected)
        h.assertInvariants()
    }

    func testEntitlementsListWhatAUserOwns() throws {
        let h = Harness()
        let secrets = h.stockSku("vip", count: 5)
        _ = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", units: 2, paymentRef: "p").get()
        _ = try h.engine.storefront.reserveSync(order: "o2", user: "u1", sku: "vip").get()
        _ = try h.engine.storefront.issueSync(order: "o3", user: "u2", sku: "vip", paymentRef: "p").get()
        let mine = try h.engine.queries.entitlements(user: "u1", withSecrets: true)
        XCTAssertEqual(mine.count, 2, "only committed orders are owned")
        for item in mine {
            XCTAssertEqual(item.state, .issued)
            XCTAssertEqual(item.secret?.reveal(), secrets[item.codeID])
            XCTAssertEqual(item.orderID, "o1")
            XCTAssertNotNil(item.activationURL)
        }
        XCTAssertNil(try h.engine.queries.entitlements(user: "u1").first?.secret)
        _ = try h.engine.admin.void(code: mine[0].codeID)
        let after = try h.engine.queries.entitlements(user: "u1", withSecrets: true)
        XCTAssertEqual(after.first { $0.codeID == mine[0].codeID }?.state, .voided)
        XCTAssertNil(after.first { $0.codeID == mine[0].codeID }?.secret)
        XCTAssertEqual(try h.engine.queries.entitlements(user: "nobody"), [])
    }

    func testDiskFailureUndoesEverythingAndServiceResumes() throws {
        let h = Harness()
        h.stockSku("vip", count: 2, limit: 1)
        h.engine.storage.writer.injectFailures(count: 1)
        let error = h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").failure
        XCTAssertEqual(error?.code, .unavailable)
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").available, 2, "the code went back")
        XCTAssertThrowsError(try h.engine.queries.order("o1"), "a failed write leaves no order behind")
        // The same order id retried after the fault succeeds, within the user's limit.
        let retry = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").get()
        XCTAssertEqual(retry.codes.count, 1)
        h.engine.storage.writer.injectFailures(count: 1)
        XCTAssertEqual(h.engine.storefront.refundSync(order: "o1").failure?.code, .unavailable)
        XCTAssertEqual(try h.engine.queries.order("o1").state, .committed)
        h.assertInvariants()
    }

    func testSkuCatalogIsDataAndValidated() throws {
        let h = Harness()
        let created = try h.engine.admin.setSku(SkuDefinition(key: "vip", name: "VIP month", priceCents: 1990, perUserLimit: 2))
        XCTAssertGreaterThan(created.id, 0)
        let updated = try h.engine.admin.setSku(SkuDefinition(key: "vip", priceCents: 2990))
        XCTAssertEqual(updated.id, created.id)
        XCTAssertEqual(updated.name, "VIP month")
        XCTAssertEqual(updated.priceCents, 2990)
        XCTAssertThrowsError(try h.engine.admin.setSku(SkuDefinition(key: "bad key")))
        XCTAssertThrowsError(try h.engine.admin.setSku(SkuDefinition(key: "x", priceCents: -1)))
        h.reopen()
        XCTAssertEqual(h.engine.queries.skus().map(\.priceCents), [2990])
    }
}
