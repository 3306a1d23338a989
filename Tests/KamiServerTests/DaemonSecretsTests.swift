import Foundation
import Glibc
import KamiCore
import KamiProtocol
import XCTest

/// A whole day of kamid in one test (import, a sale, errors, refunds, an export without
/// secrets, reloads good and bad, a token minted, debug logging on), then every log line,
/// every metric, every error reply and the plain export are searched for every secret and
/// token: zero hits.
final class DaemonSecretsTests: XCTestCase {
    func testNoSecretOrTokenInLogsMetricsErrorsOrPlainExports() throws {
        let directory = NSTemporaryDirectory() + "kamid-secrets-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = directory + "/kamid.conf"
        try "log_level = debug\n".write(toFile: config, atomically: true, encoding: .utf8)
        let kamid = try Kamid(directory: directory + "/data",
                              arguments: ["--config", config, "--metrics-listen", "127.0.0.1:0"])
        defer { kamid.stop() }
        let metricsPort = try XCTUnwrap(kamid.log.first { $0.contains(">ready") }?.split(separator: " ")
            .first { $0.hasPrefix("metrics=") }.flatMap { UInt16($0.dropFirst(8)) })
        let admin = try RawClient(unixPath: kamid.socketPath)
        XCTAssertEqual(admin.call(#""id":1,"op":"sku_set","sku":"vip","name":"VIP","per_user_limit":1"#)?.isOK, true)
        let secrets = (0..<30).map { "ZQX-SECRET-\($0)-\(UUID().uuidString.prefix(12))" }
        let csv = directory + "/codes.csv"
        // Row 3 repeats row 2: its rejection must be reported without the secret.
        try ("secret,card_number\n" + secrets.enumerated().map { "\($0.element),CARD-\($0.offset)" }.joined(separator: "\n")
             + "\n\(secrets[0]),CARD-dup\n").write(toFile: csv, atomically: true, encoding: .utf8)
        let imported = admin.call(#""id":2,"op":"import","sku":"vip","path":"\#(csv)""#)
        var everything = "\(String(describing: imported))"

        let shop = try kamid.storefront()
        var revealed: [String] = []
        for n in 0..<12 {
            let reply = shop.call(#""id":\#(n),"op":"issue","order":"S\#(n)","user":"user\#(n % 10)","sku":"vip","qty":1,"payment_ref":"p\#(n)""#)
            revealed += reply?.order?.codes.compactMap { $0.secret?.reveal() } ?? []
        }
        // Errors of every kind the sale produces: over the limit, conflict, unknown SKU, bad request.
        var errors: [String] = []
        for line in [#""id":50,"op":"issue","order":"S0","user":"other","sku":"vip","qty":1,"payment_ref":"p0""#,
                     #""id":51,"op":"issue","order":"X1","user":"user1","sku":"vip","qty":1,"payment_ref":"p""#,
                     #""id":52,"op":"issue","order":"X2","user":"u","sku":"nope","qty":1,"payment_ref":"p""#,
                     #""id":53,"op":"commit","order":"S1""#, #""id":54,"op":"refund","order":"S2""#] {
            errors.append("\(String(describing: shop.call(line)))")
        }
        errors.append("\(String(describing: admin.call(#""id":3,"op":"refund","order":"S3""#)))")
        errors.append("\(String(describing: admin.call(#""id":4,"op":"void","code_id":30""#)))")
        let plain = directory + "/plain.csv"
        errors.append("\(String(describing: admin.call(#""id":5,"op":"export","sku":"vip","path":"\#(plain)""#)))")
        errors.append("\(String(describing: admin.call(#""id":6,"op":"reload""#)))")
        try "log_level = verbose\n".write(toFile: config, atomically: true, encoding: .utf8)
        errors.append("\(String(describing: admin.call(#""id":7,"op":"reload""#)))")
        let minted = admin.call(#""id":8,"op":"token_new","client":"shop2""#)
        guard case .success(.fields(let fields))? = minted?.result,
              case .string(let token)? = fields.first(where: { $0.0 == "token" })?.1 else {
            return XCTFail("token_new: \(String(describing: minted))")
        }
        // Hellos with wrong tokens, and a right one that must not be echoed anywhere.
        _ = try RawClient(port: kamid.port).call(#""id":0,"op":"hello","client":"shop2","token":"WRONG-\#(token)""#)
        XCTAssertEqual(try RawClient(port: kamid.port).call(#""id":0,"op":"hello","client":"shop2","token":"\#(token)""#)?.isOK, true)
        errors.append("\(String(describing: admin.call(#""id":9,"op":"verify""#)))")

        // The sale itself handed secrets to their owners (that is the one place they go).
        XCTAssertEqual(revealed.count, 10, "ten users, limit 1: the sale revealed ten codes to their buyers")
        XCTAssertTrue(revealed.allSatisfy(secrets.contains))

        let (_, metrics) = try httpExchange(port: metricsPort, "GET /metrics HTTP/1.1\r\n\r\n")
        usleep(200_000)
        let log = kamid.log.joined(separator: "\n")
        everything += errors.joined(separator: "\n")
        let export = try String(contentsOfFile: plain, encoding: .utf8)
        XCTAssertTrue(export.contains("CARD-1"), "the plain export has the non-secret columns")
        XCTAssertGreaterThan(log.count, 1_000, "debug logging was on")
        for (name, text) in [("log", log), ("metrics", metrics), ("errors and operator replies", everything),
                             ("plain export", export)] {
            for secret in secrets {
                XCTAssertFalse(text.contains(secret), "\(name) contains a secret")
            }
            XCTAssertFalse(text.contains(token), "\(name) contains the minted token")
            XCTAssertFalse(text.contains(kamid.token), "\(name) contains the default token")
        }
    }
}
