import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore
import XCTest

final class RecoveryTests: XCTestCase {
    func testEverythingComesBackAfterReopen() throws {
        let h = Harness()
        let secrets = h.stockSku("vip", count: 10, limit: 1)
        let issued = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").get()
        let held = try h.engine.storefront.reserveSync(order: "o2", user: "u2", sku: "vip", ttlMs: 10_000).get()
        let short = try h.engine.storefront.reserveSync(order: "o3", user: "u3", sku: "vip", ttlMs: 1_000).get()
        _ = try h.engine.storefront.reserveSync(order: "o4", user: "u4", sku: "vip").get()
        _ = try h.engine.storefront.releaseSync(order: "o4").get()
        h.close()
        h.clock.advance(ms: 5_000)  // o3's hold lapses while kamid is down
        h.reopen()
        // Committed codes, same secrets; idempotency results survive.
        let again = try h.engine.storefront.issueSync(order: "o1", user: "u1", sku: "vip", paymentRef: "p").get()
        XCTAssertEqual(again.codes, issued.codes)
        XCTAssertEqual(again.codes.first.map { secrets[$0.codeID] }, issued.codes.first?.secret.reveal())
        // Live holds keep their remaining TTL; a lapsed one is released at the first expiry pass.
        XCTAssertEqual(try h.engine.queries.order("o2").state, .reserved)
        XCTAssertEqual(try h.engine.queries.order("o2").expiresAtMs, held.expiresAtMs)
        XCTAssertEqual(h.engine.storefront.expireDue(), 1)
        h.engine.admin.barrier()
        XCTAssertEqual(try h.engine.queries.order("o3").state, .expired)
        XCTAssertEqual(try h.engine.queries.order("o4").state, .released)
        // Per-user counters came back: u1 and u2 are at their limit, u3 is free again.
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "o5", user: "u1", sku: "vip").failure?.code, .limitReached)
        XCTAssertEqual(h.engine.storefront.reserveSync(order: "o6", user: "u2", sku: "vip").failure?.code, .limitReached)
        XCTAssertNotNil(h.engine.storefront.reserveSync(order: "o7", user: "u3", sku: "vip").value)
        // Stock: 10 - 1 issued - 1 held (o2) - 1 held (o7) = 7.
        XCTAssertEqual(try h.engine.queries.stock(sku: "vip").available, 7)
        XCTAssertFalse(short.codeIDs.isEmpty)
        h.assertInvariants()
        // The hold still expires later, by itself.
        h.clock.advance(ms: 10_000)
        h.engine.storefront.expireDue()
        h.engine.admin.barrier()
        XCTAssertEqual(try h.engine.queries.order("o2").state, .expired)
        h.assertInvariants()
    }

    /// A wrong master key is refused at open (the audit chain's MACs and its anchor do not
    /// verify under it), naming the key file, before it could serve or quarantine anything.
    func testWrongKeyCannotServeSecrets() throws {
        let h = Harness()
        h.stockSku("vip", count: 1)
        h.close()
        var config = h.config()
        config.sealer = Sealer(key: MasterKey.random())
        XCTAssertThrowsError(try Engine(config: config)) { error in
            XCTAssertEqual((error as? KamiError)?.code, .unavailable)
            XCTAssertTrue((error as? KamiError)?.message.contains("master key") ?? false, "\(error)")
        }
        h.reopen()
        let stock = try h.engine.queries.stock(sku: "vip")
        XCTAssertEqual([stock.available, stock.voided], [1, 0], "a wrong key neither serves nor quarantines codes")
        h.assertInvariants()
    }
}
