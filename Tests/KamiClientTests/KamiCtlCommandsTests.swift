import Foundation
import Glibc
import KamiClient
import KamiCtl
import KamiCore
import KamiProtocol
import XCTest

/// Every kamictl command against a real kamid: output for people, `--json` for scripts, and
/// the exit statuses scripts rely on.
final class KamiCtlCommandsTests: XCTestCase {
    private func decode(_ text: String) -> Reply? {
        let decoded = Array(text.utf8).withUnsafeBytes { JSONCodec.decodeReply($0) }
        guard case .item(let reply, _) = decoded else { return nil }
        return reply
    }

    private func issue(_ kamid: Kamid, order: String, user: String, sku: String = "vip") throws -> WireOrder {
        let client = KamiClient(endpoint: kamid.unix, credentials: nil)
        return try client.issue(order: order, user: user, sku: sku, qty: 1, paymentRef: "pay-\(order)")
    }

    func testSkuListEntitlementsVoidAndRefund() throws {
        let kamid = try Kamid()
        let secrets = try kamid.stock(count: 4)
        let socket = ["--socket", kamid.socketPath]
        let order = try issue(kamid, order: "A1", user: "alice")
        let secret = try XCTUnwrap(order.codes.first?.secret?.reveal())
        XCTAssertTrue(secrets.contains(secret))

        let list = try KamictlRun(socket + ["sku", "list"])
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertEqual(list.stdout, """
            SKU  NAME  PRICE  LIMIT  DELIVERY  BUNDLE  AVAILABLE  RESERVED  ISSUED  USED  VOIDED  IMPORTED
            vip  VIP     990      -  auto           -          3         0       1     0       0         4

            """)
        let listJSON = try KamictlRun(socket + ["sku", "list", "--json"])
        guard case .success(.fields(let fields))? = decode(listJSON.stdout)?.result,
              case .array(let skus)? = fields.first(where: { $0.0 == "skus" })?.1 else { return XCTFail(listJSON.stdout) }
        XCTAssertEqual(skus.count, 1)

        let hidden = try KamictlRun(socket + ["entitlements", "alice"])
        XCTAssertEqual(hidden.status, 0, hidden.stderr)
        XCTAssertTrue(hidden.stdout.contains("vip  delivered  A1"), hidden.stdout)
        XCTAssertFalse(hidden.stdout.contains(secret))
        let hiddenJSON = try KamictlRun(socket + ["entitlements", "alice", "--json"])
        XCTAssertFalse(hiddenJSON.stdout.contains(secret))
        XCTAssertTrue(hiddenJSON.stdout.contains("\"secret\":null"), hiddenJSON.stdout)
        let shown = try KamictlRun(socket + ["entitlements", "alice", "--show-secrets"])
        XCTAssertTrue(shown.stdout.contains(secret), shown.stdout)
        let nobody = try KamictlRun(socket + ["entitlements", "nobody"])
        XCTAssertEqual(nobody.stdout, "user nobody holds no codes\n")

        // Void one available code, then a code id that does not exist.
        let codeIDs = try XCTUnwrap(order.codes.first?.codeID)
        let another = codeIDs == 1 ? "2" : "1"
        let voided = try KamictlRun(socket + ["void", another])
        XCTAssertEqual(voided.status, 0, voided.stderr)
        XCTAssertEqual(voided.stdout, "voided 1 code\n")
        let unknown = try KamictlRun(socket + ["void", "999"])
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue(unknown.stderr.hasPrefix("kamictl: NOT_FOUND"), unknown.stderr)
        let noBatch = try KamictlRun(socket + ["void", "--batch", "never-imported", "--json"])
        XCTAssertEqual(noBatch.status, 1)
        XCTAssertTrue(noBatch.stdout.contains("\"code\":\"NOT_FOUND\""), noBatch.stdout)

        // Refund: the order's code is voided; a second refund or an unknown order fails.
        let refund = try KamictlRun(socket + ["refund", "A1"])
        XCTAssertEqual(refund.status, 0, refund.stderr)
        XCTAssertTrue(refund.stdout.hasPrefix("order A1: refunded"), refund.stdout)
        XCTAssertFalse(refund.stdout.contains(secret), "refund output hides the secret")
        let again = try KamictlRun(socket + ["refund", "nope"])
        XCTAssertEqual(again.status, 1)
        let after = try KamictlRun(socket + ["stock", "vip"])
        XCTAssertTrue(after.stdout.contains("vip          2         0       0       2         4"), after.stdout)
        XCTAssertEqual(try KamictlRun(socket + ["verify"]).status, 0)

        for line in [["void"], ["void", "1", "--batch", "b"], ["void", "x"], ["refund"], ["entitlements"],
                     ["sku", "list", "extra"]] {
            XCTAssertEqual(try KamictlRun(socket + line).status, 2, "\(line)")
        }
    }

    func testExportWritesWhereAskedAndNeverOverwritesUnlessForced() throws {
        let kamid = try Kamid()
        let secrets = try kamid.stock(count: 3)
        let socket = ["--socket", kamid.socketPath]
        let work = kamid.directory + "/exports"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)

        // Default name, in kamictl's directory.
        let plain = try KamictlRun(socket + ["export", "--sku", "vip"], directory: work)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: work)
        XCTAssertEqual(files.count, 1)
        let name = try XCTUnwrap(files.first)
        XCTAssertTrue(name.hasPrefix("vip-export-") && name.hasSuffix(".csv"), name)
        XCTAssertEqual(plain.stdout, "exported 3 codes to \(work)/\(name)\n")
        let plainText = try String(contentsOfFile: work + "/" + name, encoding: .utf8)
        XCTAssertFalse(secrets.contains { plainText.contains($0) }, "no secret without --with-secrets")

        let target = work + "/out.csv"
        XCTAssertEqual(try KamictlRun(socket + ["export", "--sku", "vip", "--out", "out.csv"], directory: work).status, 0)
        let refused = try KamictlRun(socket + ["export", "--sku", "vip", "--out", target, "--with-secrets"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("exists"), refused.stderr)
        XCTAssertFalse(secrets.contains { (try? String(contentsOfFile: target, encoding: .utf8))?.contains($0) ?? true })
        let forced = try KamictlRun(socket + ["export", "--sku", "vip", "--out", target, "--with-secrets", "--force"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        let withSecrets = try String(contentsOfFile: target, encoding: .utf8)
        XCTAssertTrue(secrets.allSatisfy { withSecrets.contains($0) })
        XCTAssertFalse(forced.stdout.contains(secrets[0]), "the secrets go to the file, not the terminal")

        let unknown = try KamictlRun(socket + ["export", "--sku", "nope", "--out", work + "/n.csv"])
        XCTAssertEqual(unknown.status, 1)
        // --force replaces only once the request is known good: a bad SKU leaves the file be.
        let failedForce = try KamictlRun(socket + ["export", "--sku", "nope", "--out", target, "--force"])
        XCTAssertEqual(failedForce.status, 1)
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), withSecrets, "the target is untouched")
        // --force never replaces what is not a regular file.
        let link = work + "/link.csv"
        XCTAssertEqual(symlink(target, link), 0)
        let fifo = work + "/fifo.csv"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        for (path, kind, type) in [(link, "symbolic link", S_IFLNK), (fifo, "fifo", S_IFIFO), (work, "directory", S_IFDIR)] {
            let refused = try KamictlRun(socket + ["export", "--sku", "vip", "--out", path, "--force"])
            XCTAssertEqual(refused.status, 1, path)
            XCTAssertTrue(refused.stderr.contains(path) && refused.stderr.contains(kind), refused.stderr)
            var info = stat()
            XCTAssertEqual(lstat(path, &info), 0)
            XCTAssertEqual(info.st_mode & S_IFMT, type, "\(path) is still a \(kind)")
        }
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), withSecrets)
        XCTAssertEqual(try KamictlRun(socket + ["export"]).status, 2, "--sku is required")
    }

    func testReloadAuditVerifyAndTokenNew() throws {
        let kamid = try Kamid(config: ["log_level = info"])
        _ = try kamid.stock(count: 2)
        let socket = ["--socket", kamid.socketPath]

        let reload = try KamictlRun(socket + ["reload"])
        XCTAssertEqual(reload.status, 0, reload.stderr)
        XCTAssertTrue(reload.stdout.hasPrefix("reloaded: nothing changed"), reload.stdout)
        try "log_level = debug\nloop_threads = 3\n".write(toFile: kamid.directory + "/kamid.conf", atomically: true,
                                                        encoding: .utf8)
        let changed = try KamictlRun(socket + ["reload"])
        XCTAssertTrue(changed.stdout.hasPrefix("reloaded: applied log_level"), changed.stdout)
        XCTAssertTrue(changed.stdout.contains("needing a restart to take effect: loop_threads"), changed.stdout)
        try "log_level = loud\n".write(toFile: kamid.directory + "/kamid.conf", atomically: true, encoding: .utf8)
        let rejected = try KamictlRun(socket + ["reload"])
        XCTAssertEqual(rejected.status, 1)
        XCTAssertTrue(rejected.stderr.contains("kamid.conf:1: log_level"), rejected.stderr)

        let audit = try KamictlRun(socket + ["audit", "verify"])
        XCTAssertEqual(audit.status, 0, audit.stderr)
        XCTAssertTrue(audit.stdout.hasPrefix("audit chain intact: "), audit.stdout)

        // A new token works for hello at once, and is shown only to the operator who asked.
        let minted = try KamictlRun(socket + ["token", "new", "shop1"])
        XCTAssertEqual(minted.status, 0, minted.stderr)
        let token = try XCTUnwrap(minted.stdout.split(separator: "\n").dropFirst().first?
            .trimmingCharacters(in: .whitespaces))
        XCTAssertGreaterThanOrEqual(token.count, 32)
        let shop = KamiClient(endpoint: kamid.tcp, credentials: KamiCredentials(client: "shop1", token: token))
        XCTAssertEqual(try shop.stock(sku: "vip").available, 2)
        XCTAssertFalse(kamid.log.contains(token), "the token never reaches kamid's log")
        let rotated = try KamictlRun(socket + ["--json", "token", "new", "shop1"])
        XCTAssertTrue(rotated.stdout.contains("\"replaced\":true"), rotated.stdout)
        let stale = KamiClient(endpoint: kamid.tcp, credentials: KamiCredentials(client: "shop1", token: token))
        XCTAssertThrowsError(try stale.stock(sku: "vip"), "the rotated-away token is refused")
        XCTAssertEqual(try KamictlRun(socket + ["token", "new", "bad/name"]).status, 1)
        XCTAssertEqual(try KamictlRun(socket + ["token", "new"]).status, 2)

        // Tamper with the audit log behind kamid's back: audit verify and verify exit 4.
        let script = """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            db.execute("UPDATE audit SET detail = detail || ' (edited)' WHERE seq = 1")
            db.commit()
            """
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        python.arguments = ["-c", script, kamid.directory + "/kami.db"]
        try python.run()
        python.waitUntilExit()
        XCTAssertEqual(python.terminationStatus, 0)
        let broken = try KamictlRun(socket + ["audit", "verify"])
        XCTAssertEqual(broken.status, 4, broken.stdout + broken.stderr)
        XCTAssertTrue(broken.stdout.hasPrefix("audit chain broken at entry 1: entry 1 was modified"), broken.stdout)
        XCTAssertEqual(try KamictlRun(socket + ["verify"]).status, 4)
    }

    func testLongImportsReportProgress() throws {
        let kamid = try Kamid()
        _ = try kamid.stock(count: 1)
        let rows = Int(ProcessInfo.processInfo.environment["KAMI_PROGRESS_ROWS"] ?? "") ?? 400_000
        let path = kamid.directory + "/big.csv"
        var text = "secret\n"
        text.reserveCapacity(rows * 24)
        for index in 0..<rows { text += "BIG-\(index)-\(index &* 2_654_435_761 % 1_000_003)\n" }
        try text.write(toFile: path, atomically: true, encoding: .utf8)

        final class Lines: @unchecked Sendable {
            let lock = NSLock()
            var items: [String] = []
        }
        let lines = Lines()
        let sink = KamiCtl.ProgressSink(isTerminal: false) { line in lines.lock.withLock { lines.items.append(line) } }
        let outcome = KamiCtl.run(arguments: ["--socket", kamid.socketPath, "import", path, "--sku", "vip"],
                                  environment: [:], currentDirectory: "/", progress: sink)
        XCTAssertEqual(outcome.exit, .ok, outcome.stderr)
        XCTAssertTrue(outcome.stdout.hasPrefix("imported \(rows) codes"), outcome.stdout)
        let printed = lines.lock.withLock { lines.items }
        XCTAssertFalse(printed.isEmpty, "an import of \(rows) rows took long enough to report progress")
        XCTAssertTrue(printed.allSatisfy { $0.hasPrefix("import vip: ") && $0.contains(" rows/s, ") && $0.hasSuffix("\n") },
                      "\(printed)")

        let quiet = KamiCtl.run(arguments: ["--socket", kamid.socketPath, "--quiet", "export", "--sku", "vip",
                                            "--out", kamid.directory + "/all.csv"],
                                environment: [:], currentDirectory: "/", progress: sink)
        XCTAssertEqual(quiet.exit, .ok, quiet.stderr)
        XCTAssertEqual(lines.lock.withLock { lines.items.count }, printed.count, "--quiet prints no progress")
    }

    func testProgressLineFormat() {
        let line = KamiCtl.Format.progress([
            ("kind", .string("import")), ("sku", .string("vip")), ("rows", .int(1_234_567)),
            ("file_bytes", .int(50 << 20)), ("elapsed_ms", .int(10_000)),
        ])
        XCTAssertEqual(line, "import vip: 1,234,567 rows of a 50 MiB file, 123,456 rows/s, 10 s")
    }

    func testABundleIsDefinedListedStockedAndSoldAllOrNothing() throws {
        let kamid = try Kamid()
        let socket = ["--socket", kamid.socketPath]
        for (key, count) in [("video", 3), ("music", 5)] {
            XCTAssertEqual(try KamictlRun(socket + ["sku", "set", key]).status, 0)
            let file = kamid.directory + "/\(key).csv"
            try ("secret\n" + (0..<count).map { "\(key.uppercased())-\($0)" }.joined(separator: "\n") + "\n")
                .write(toFile: file, atomically: true, encoding: .utf8)
            XCTAssertEqual(try KamictlRun(socket + ["import", file, "--sku", key]).status, 0)
        }
        let set = try KamictlRun(socket + ["sku", "set", "pack", "--name", "Super", "--price", "3000", "--bundle", "video:1, music:2"])
        XCTAssertEqual(set.status, 0, set.stderr)
        XCTAssertTrue(set.stdout.hasSuffix(", bundle of video:1,music:2\n"), set.stdout)
        for bad in ["video:0", "video:1,video:1", "nope:1", "video:x", ":1", "pack:1"] {
            let refused = try KamictlRun(socket + ["sku", "set", "pack2", "--bundle", bad])
            XCTAssertNotEqual(refused.status, 0, bad)
            XCTAssertFalse(refused.stderr.isEmpty, bad)
        }
        XCTAssertNotEqual(try KamictlRun(socket + ["sku", "set", "video", "--bundle", "music:1"]).status, 0,
                          "a SKU with codes of its own cannot become a bundle")
        let list = try KamictlRun(socket + ["sku", "list"])
        XCTAssertTrue(list.stdout.contains("pack   Super   3000      -  auto      video:1,music:2          2"), list.stdout)
        // Two packs take 2 video and 4 music codes; a third is sold out (music has 1 left).
        for n in 1...2 {
            let placed = try issue(kamid, order: "p\(n)", user: "u\(n)", sku: "pack")
            XCTAssertEqual(placed.state, .committed)
            XCTAssertEqual(placed.codes.count, 3)
        }
        XCTAssertThrowsError(try issue(kamid, order: "p3", user: "u3", sku: "pack")) { error in
            XCTAssertEqual((error as? KamiError)?.code, .soldOut, "\(error)")
        }
        let stock = try KamictlRun(socket + ["stock", "music"])
        XCTAssertTrue(stock.stdout.contains("music          1         0       4"), stock.stdout)
    }
}
