import Foundation
import KamiClient
import KamiCore
import KamiProtocol
import XCTest

/// Activation and the buyer's entitlements through a live kamid, in both encodings: the
/// storefront activates for its buyer, a brand's page redeems the link's token, and the
/// entitlements page shows status, name, usage guide and times.
final class ActivationDaemonTests: XCTestCase {
    func testActivationAndEntitlementsInBothEncodings() throws {
        let directory = NSTemporaryDirectory() + "kamid-activate-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let kamid = try Kamid(directory: directory + "/data", arguments: [])
        try kamid.stock(sku: "vip", count: 20)
        let admin = try RawClient(unixPath: kamid.socketPath)
        XCTAssertEqual(admin.call(#""id":1,"op":"sku_set","sku":"vip","name":"VIP 月卡","usage_guide":"打开 App → 我的 → 兑换\n输入卡密","activation_url":"https://brand.example/r?t={token}""#)?.isOK, true)
        let guide = try kamid.kamictl(["sku", "list"])
        XCTAssertEqual(guide.status, 0, guide.output)

        for encoding in [WireEncoding.binary, .json] {
            let name = encoding == .binary ? "b" : "j"
            let client = KamiClient(KamiClient.Configuration(
                endpoint: .tcp(host: "127.0.0.1", port: kamid.port),
                connection: ConnectionOptions(encoding: encoding, credentials: KamiCredentials(client: "default", token: kamid.token))))
            let order = try client.issue(order: "\(name)1", user: "\(name)u", sku: "vip", qty: 2, paymentRef: "p")
            XCTAssertEqual(order.codes.count, 2)
            _ = try client.issue(order: "\(name)2", user: "\(name)u", sku: "vip", qty: 1, paymentRef: "p")

            // Another user's order is NOT_FOUND, like an unknown one.
            XCTAssertThrowsError(try client.activate(order: "\(name)1", user: "someone-else")) { error in
                XCTAssertEqual((error as? KamiError)?.code, .notFound, "\(error)")
            }
            let first = order.codes[0].codeID
            let activated = try client.activate(order: "\(name)1", user: "\(name)u", codeID: first)
            XCTAssertEqual(activated.map(\.codeID), [first])
            XCTAssertEqual(activated.first?.state, .used)
            XCTAssertEqual(activated.first?.status, "used")
            XCTAssertNil(activated.first?.secret, "an activation never carries the secret")
            XCTAssertEqual(activated.first?.skuName, "VIP 月卡", "the line is the buyer's page's line")
            XCTAssertEqual(activated.first?.usageGuide, "打开 App → 我的 → 兑换\n输入卡密")
            XCTAssertNotNil(activated.first?.orderedAtMs)
            let usedAt = try XCTUnwrap(activated.first?.usedAtMs)
            XCTAssertEqual(try client.activate(order: "\(name)1", user: "\(name)u", codeID: first).first?.usedAtMs, usedAt)

            // The brand redeems the other code's token from its link.
            let link = try XCTUnwrap(order.codes[1].activationURL)
            let token = String(link.dropFirst("https://brand.example/r?t=".count))
            XCTAssertEqual(try client.activate(token: token).map(\.codeID), [order.codes[1].codeID])
            XCTAssertThrowsError(try client.activate(token: String(token.dropLast()) + (token.hasSuffix("0") ? "1" : "0"))) { error in
                XCTAssertEqual((error as? KamiError)?.code, .notFound, "\(error)")
            }

            let page = try client.entitlementsPage(user: "\(name)u")
            XCTAssertEqual(page.codes.map(\.order), ["\(name)2", "\(name)1", "\(name)1"])
            XCTAssertEqual(page.codes.map(\.status), ["delivered", "used", "used"])
            XCTAssertEqual(page.codes[0].skuName, "VIP 月卡")
            XCTAssertEqual(page.codes[0].usageGuide, "打开 App → 我的 → 兑换\n输入卡密")
            XCTAssertNotNil(page.codes[0].orderedAtMs)
            XCTAssertNil(page.codes[0].usedAtMs)
            XCTAssertEqual(page.codes[1].usedAtMs ?? page.codes[2].usedAtMs, usedAt)
            XCTAssertNotNil(page.codes[0].secret, "the buyer's own page shows the code")
            XCTAssertEqual(try client.stock(sku: "vip").issued, encoding == .binary ? 3 : 6, "issued counts used codes on the wire")
        }
        // The activation report: per SKU, sold, used, activated in the window, by a brand's token.
        let report = try kamid.kamictl(["report", "activation", "--csv"])
        XCTAssertEqual(report.status, 0, report.output)
        XCTAssertTrue(report.output.contains("key,sold,used,used_pct,activated,by_token\nvip,6,4,66,4,2\n"), report.output)
        let stats = try kamid.kamictl(["stats"])
        XCTAssertTrue(stats.output.contains("used"), stats.output)
        XCTAssertEqual(try kamid.violations(), [])
        let audit = try kamid.kamictl(["audit", "verify"])
        XCTAssertEqual(audit.status, 0, audit.output)
        XCTAssertEqual(kamid.stop(), 0)
    }
}
