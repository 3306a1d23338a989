import Foundation
import KamiClient
import KamiCtl
import KamiCore
import KamiProtocol
import XCTest

/// kamictl's parser and output as a library, and the built binary end to end.
final class KamiCtlTests: XCTestCase {
    // MARK: Parsing

    private func parse(_ line: [String], _ environment: [String: String] = [:]) -> KamiCtl.Invocation? {
        try? KamiCtl.parse(line, environment: environment).get()
    }

    private func usageError(_ line: [String]) -> KamiCtl.UsageError? {
        guard case .failure(let error) = KamiCtl.parse(line, environment: [:]) else { return nil }
        return error
    }

    func testParsesEveryCommand() {
        XCTAssertEqual(parse(["sku", "set", "vip", "--name", "VIP month", "--price=1990", "--per-user-limit", "5",
                              "--activation-url", "https://x/{code_id}"])?.command,
                       .skuSet(sku: "vip", name: "VIP month", priceCents: 1990, perUserLimit: 5,
                               activationURL: "https://x/{code_id}"))
        XCTAssertEqual(parse(["sku", "set", "vip"])?.command,
                       .skuSet(sku: "vip", name: nil, priceCents: nil, perUserLimit: nil, activationURL: nil))
        XCTAssertEqual(parse(["import", "codes.csv", "--sku", "vip", "--batch", "b1", "--dry-run"])?.command,
                       .importCSV(path: "codes.csv", sku: "vip", batch: "b1", dryRun: true))
        XCTAssertEqual(parse(["import", "--sku=vip", "--", "-odd.csv"])?.command,
                       .importCSV(path: "-odd.csv", sku: "vip", batch: nil, dryRun: false))
        XCTAssertEqual(parse(["stock"])?.command, .stock(sku: nil))
        XCTAssertEqual(parse(["stock", "vip"])?.command, .stock(sku: "vip"))
        XCTAssertEqual(parse(["order", "A1", "--show-secrets"])?.command, .order(id: "A1", showSecrets: true))
        XCTAssertEqual(parse(["verify"])?.command, .verify)
        XCTAssertEqual(parse(["stats"])?.command, .stats)
    }

    func testGlobalOptionsStandAnywhere() {
        let invocation = parse(["stock", "--json", "vip", "--socket", "/run/kami.sock", "--timeout", "7"])
        XCTAssertEqual(invocation, KamiCtl.Invocation(socketPath: "/run/kami.sock", json: true, timeoutMs: 7_000,
                                                      progress: false, command: .stock(sku: "vip")))
        XCTAssertEqual(parse(["import", "a.csv", "--sku", "v"])?.progress, true)
        XCTAssertEqual(parse(["import", "a.csv", "--sku", "v", "--quiet"])?.progress, false)
        XCTAssertEqual(parse(["stats"], ["KAMI_SOCKET": "/env.sock"])?.socketPath, "/env.sock")
        XCTAssertEqual(parse(["--socket=/flag.sock", "stats"], ["KAMI_SOCKET": "/env.sock"])?.socketPath, "/flag.sock")
        XCTAssertEqual(parse(["stats"])?.socketPath, KamiEndpoint.defaultUnixPath)
        XCTAssertEqual(parse(["stats"])?.timeoutMs, KamiCtl.requestTimeoutMsDefault)
    }

    func testHelpOnEveryCommand() {
        XCTAssertEqual(parse(["--help"])?.command, .help(.general))
        XCTAssertEqual(parse(["help", "import"])?.command, .help(.importCSV))
        XCTAssertEqual(parse(["help", "sku", "set"])?.command, .help(.skuSet))
        XCTAssertEqual(parse(["sku", "--help"])?.command, .help(.skuSet))
        XCTAssertEqual(parse(["sku", "set", "-h"])?.command, .help(.skuSet))
        XCTAssertEqual(parse(["import", "--help"])?.command, .help(.importCSV))
        XCTAssertEqual(parse(["stock", "--help"])?.command, .help(.stock))
        XCTAssertEqual(parse(["order", "--help"])?.command, .help(.order))
        XCTAssertEqual(parse(["verify", "--help"])?.command, .help(.verify))
        XCTAssertEqual(parse(["stats", "--help"])?.command, .help(.stats))
        for topic in KamiCtl.Topic.allCases {
            let name = topic == .general ? "[--socket" : topic.rawValue
            XCTAssertTrue(KamiCtl.usage(topic).hasPrefix("usage: kamictl \(name)"), topic.rawValue)
        }
    }

    func testUsageErrors() {
        XCTAssertEqual(usageError([])?.message, "no command given")
        XCTAssertEqual(usageError(["frobnicate"])?.message, "unknown command frobnicate")
        XCTAssertEqual(usageError(["import", "codes.csv"])?.message, "import needs --sku SKU")
        XCTAssertEqual(usageError(["import", "codes.csv"])?.topic, .importCSV)
        XCTAssertEqual(usageError(["sku", "set", "vip", "--price", "9.90"])?.topic, .skuSet)
        XCTAssertEqual(usageError(["sku", "set", "vip", "--price", "-1"])?.topic, .skuSet)
        XCTAssertEqual(usageError(["sku", "set", "vip", "--per-user-limit", "many"])?.topic, .skuSet)
        XCTAssertEqual(usageError(["sku", "set", "vip", "--name", "a", "--name", "b"])?.message,
                       "--name is given twice")
        XCTAssertEqual(usageError(["sku", "set"])?.message, "expected 1 argument, got none")
        XCTAssertEqual(usageError(["sku", "delete", "vip"])?.message, "sku takes the subcommand set, list or source")
        XCTAssertEqual(usageError(["stock", "a", "b"])?.message, "expected 0 to 1 arguments, got a b")
        XCTAssertEqual(usageError(["order", "A1", "--bogus"])?.message, "unknown option --bogus")
        XCTAssertEqual(usageError(["stats", "--socket"])?.message, "--socket needs a value")
        XCTAssertNotNil(usageError(["stats", "--timeout", "0"]))
        XCTAssertNotNil(usageError(["stats", "--timeout", "soon"]))
        XCTAssertNotNil(usageError(["import", "x.csv", "--sku"]))
        XCTAssertNotNil(usageError(["verify", "extra"]))
    }

    func testRunReportsUsageErrorsWithStatusTwo() {
        let outcome = KamiCtl.run(arguments: ["import", "x.csv"], environment: [:], currentDirectory: "/")
        XCTAssertEqual(outcome.exit, .usage)
        XCTAssertTrue(outcome.stderr.contains("import needs --sku SKU"))
        XCTAssertTrue(outcome.stderr.contains("usage: kamictl import"))
        XCTAssertEqual(outcome.stdout, "")
    }

    // MARK: Output

    func testImportReportText() {
        let fields: [(String, JSONValue)] = [
            ("imported", .int(1000)), ("rejected", .int(3)), ("dry_run", .bool(false)),
            ("rejected_rows", .array([
                .object([("line", .int(4)), ("reason", .string("duplicate of line 3 in this file"))]),
                .object([("line", .int(9)), ("reason", .string("empty secret"))]),
            ])),
            ("first_code_id", .int(1)), ("last_code_id", .int(1000)),
        ]
        XCTAssertEqual(KamiCtl.Format.importReport(fields), """
            imported 1000 codes, rejected 3 (code ids 1-1000)
            rejected rows:
              line 4: duplicate of line 3 in this file
              line 9: empty secret
              ... and 1 more not listed

            """)
        let dry: [(String, JSONValue)] = [("imported", .int(1)), ("rejected", .int(0)), ("dry_run", .bool(true)),
                                          ("rejected_rows", .array([]))]
        XCTAssertEqual(KamiCtl.Format.importReport(dry),
                       "dry run: would import 1 code, rejected 0; nothing was imported\n")
    }

    func testStockTableAndVerifyText() {
        let table = KamiCtl.Format.stock([
            WireStock(sku: "vip", available: 10, reserved: 2, issued: 5, voided: 1, imported: 18),
            WireStock(sku: "game-card-100", available: 1000, reserved: 0, issued: 0, voided: 0, imported: 1000),
        ])
        XCTAssertEqual(table, """
            SKU            AVAILABLE  RESERVED  ISSUED  VOIDED  IMPORTED
            vip                   10         2       5       1        18
            game-card-100       1000         0       0       0      1000

            """)
        let (clean, none) = KamiCtl.Format.verify([("violations", .array([])), ("clean", .bool(true))])
        XCTAssertEqual(none, 0)
        XCTAssertTrue(clean.contains("clean"))
        let (text, count) = KamiCtl.Format.verify([
            ("violations", .array([
                .object([("invariant", .string("1")), ("detail", .string("code 7 in two orders"))]),
            ])),
            ("clean", .bool(false)),
        ])
        XCTAssertEqual(count, 1)
        XCTAssertEqual(text, "verify: 1 violation\n  1: code 7 in two orders\n")
    }

    func testOrderSecretsAreHiddenUnlessAsked() {
        let order = WireOrder(order: "A1", state: .committed, sku: "vip", qty: 1, expiresAtMs: 0,
                              codes: [WireCode(codeID: 7, sku: "vip", secret: Secret("S3CRET"))])
        let reply = Reply(id: .number(1), result: .success(.order(order)))
        let hidden = KamiCtl.hidingSecrets(reply)
        guard case .success(.order(let shown)) = hidden.result else { return XCTFail() }
        XCTAssertNil(shown.codes[0].secret)
        XCTAssertFalse(KamiCtl.Format.order(shown, secretsShown: false).contains("S3CRET"))
        XCTAssertTrue(KamiCtl.Format.order(shown, secretsShown: false).contains("secret hidden"))
        XCTAssertTrue(KamiCtl.Format.order(order, secretsShown: true).contains("secret S3CRET"))
    }

    // MARK: The binary, end to end

    private func csv(_ kamid: Kamid, _ name: String, _ text: String) throws -> String {
        let path = kamid.directory + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testSkuSetImportAndStockEndToEnd() throws {
        let kamid = try Kamid()
        let socket = ["--socket", kamid.socketPath]

        let set = try KamictlRun(socket + ["sku", "set", "vip", "--name", "VIP month", "--price", "1990",
                                           "--per-user-limit", "5"])
        XCTAssertEqual(set.status, 0, set.stderr)
        XCTAssertEqual(set.stdout,
                       "sku vip set: name \"VIP month\", price 1990 cents, per-user limit 5, activation URL none, "
                           + "delivery automatic, review time 86400000 ms\n")

        _ = try csv(kamid, "codes.csv", "secret,card_number\nK-1,\nK-2,\nK-2,\n\nK-3,c3\n")
        // A relative path, resolved against kamictl's working directory before kamid reads it.
        let dry = try KamictlRun(socket + ["import", "codes.csv", "--sku", "vip", "--dry-run"],
                                 directory: kamid.directory)
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertTrue(dry.stdout.hasPrefix("dry run: would import 3 codes, rejected 1"), dry.stdout)

        let load = try KamictlRun(socket + ["import", "codes.csv", "--sku", "vip", "--batch", "b1"],
                                  directory: kamid.directory)
        XCTAssertEqual(load.status, 0, load.stderr)
        XCTAssertEqual(load.stdout, """
            imported 3 codes, rejected 1 (code ids 1-3)
            rejected rows:
              line 4: duplicate of line 3 in this file

            """)
        XCTAssertFalse(load.stdout.contains("K-2") || load.stderr.contains("K-2"), "no secret in the report")

        let stock = try KamictlRun(["stock", "vip"], environment: ["KAMI_SOCKET": kamid.socketPath])
        XCTAssertEqual(stock.status, 0, stock.stderr)
        XCTAssertEqual(stock.stdout, """
            SKU  AVAILABLE  RESERVED  ISSUED  VOIDED  IMPORTED
            vip          3         0       0       0         3

            """)
        let all = try KamictlRun(socket + ["stock"])
        XCTAssertEqual(all.stdout, stock.stdout, "every SKU: the same table")

        let json = try KamictlRun(socket + ["--json", "stock", "vip"])
        XCTAssertEqual(json.status, 0)
        let decoded = Array(json.stdout.utf8).withUnsafeBytes { JSONCodec.decodeReply($0) }
        guard case .item(let reply, _) = decoded, case .success(.stock(let counters)) = reply.result else {
            return XCTFail(json.stdout)
        }
        XCTAssertEqual(counters.available, 3)

        let verify = try KamictlRun(socket + ["verify"])
        XCTAssertEqual(verify.status, 0, verify.stderr)
        XCTAssertEqual(verify.stdout, "verify: clean, every invariant holds\n")

        let stats = try KamictlRun(socket + ["stats"])
        XCTAssertEqual(stats.status, 0, stats.stderr)
        XCTAssertTrue(stats.stdout.contains("skus:\n  - sku vip, available 3"), stats.stdout)
    }

    func testOrderEndToEndHidesSecrets() throws {
        let kamid = try Kamid()
        let secrets = try kamid.stock(count: 2)
        let client = KamiClient(endpoint: kamid.unix, credentials: nil)
        let issued = try client.issue(order: "A1", user: "alice", sku: "vip", qty: 1, paymentRef: "p")
        let secret = try XCTUnwrap(issued.codes.first?.secret?.reveal())
        XCTAssertTrue(secrets.contains(secret))
        let socket = ["--socket", kamid.socketPath]

        let plain = try KamictlRun(socket + ["order", "A1"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertTrue(plain.stdout.hasPrefix("order A1: committed, sku vip, qty 1\n"), plain.stdout)
        XCTAssertFalse(plain.stdout.contains(secret))
        let json = try KamictlRun(socket + ["order", "A1", "--json"])
        XCTAssertFalse(json.stdout.contains(secret))
        XCTAssertTrue(json.stdout.contains("\"secret\":null"), json.stdout)
        let shown = try KamictlRun(socket + ["order", "A1", "--show-secrets"])
        XCTAssertTrue(shown.stdout.contains(secret))
    }

    func testExitStatuses() throws {
        let kamid = try Kamid()
        let socket = ["--socket", kamid.socketPath]

        // 1: kamid said no.
        let missing = try KamictlRun(socket + ["stock", "nope"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.hasPrefix("kamictl: NOT_FOUND: "), missing.stderr)
        XCTAssertEqual(missing.stdout, "")
        let missingJSON = try KamictlRun(socket + ["stock", "nope", "--json"])
        XCTAssertEqual(missingJSON.status, 1)
        XCTAssertTrue(missingJSON.stdout.contains("\"code\":\"NOT_FOUND\""), missingJSON.stdout)
        let noSku = try KamictlRun(socket + ["import", try csv(kamid, "x.csv", "secret\nA\n"), "--sku", "nope"])
        XCTAssertEqual(noSku.status, 1, noSku.stderr)
        let noFile = try KamictlRun(socket + ["import", "/nonexistent/codes.csv", "--sku", "vip"])
        XCTAssertEqual(noFile.status, 1)
        XCTAssertTrue(noFile.stderr.contains("/nonexistent/codes.csv: no such file"), noFile.stderr)

        // 2: the command line is wrong; kamid is not even asked.
        for line in [[], ["bogus"], ["import", "x.csv"], ["sku", "set", "vip", "--price", "cheap"], ["stock", "--x"]] {
            let run = try KamictlRun(socket + line)
            XCTAssertEqual(run.status, 2, "\(line): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains("usage: kamictl"), "\(line)")
        }

        // 3: no kamid there.
        let gone = try KamictlRun(["--socket", kamid.directory + "/nothing.sock", "stats"])
        XCTAssertEqual(gone.status, 3)
        XCTAssertTrue(gone.stderr.contains("cannot reach kamid"), gone.stderr)
        let defaultSocket = try KamictlRun(["verify"], directory: kamid.directory)
        XCTAssertEqual(defaultSocket.status, 3, "./kami-data/kamid.sock does not exist there")

        // 0: help on every command, on stdout.
        for line in [["--help"], ["sku", "set", "--help"], ["import", "--help"], ["stock", "--help"],
                     ["order", "--help"], ["verify", "--help"], ["stats", "--help"], ["help", "import"]] {
            let run = try KamictlRun(line)
            XCTAssertEqual(run.status, 0, "\(line)")
            XCTAssertTrue(run.stdout.hasPrefix("usage: kamictl"), "\(line): \(run.stdout)")
        }
    }
}
