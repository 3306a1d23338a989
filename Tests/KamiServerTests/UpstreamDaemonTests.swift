import Foundation
import Glibc
import KamiCore
import KamiHTTP
import KamiProtocol
import XCTest

/// A real `kami-supplier-sim` process on a loopback port.
final class SupplierSimProcess: @unchecked Sendable {
    let process = Process()
    private(set) var port: UInt16 = 0
    let keyFile: String
    let id: String
    private let output = Pipe()

    static var binary: String {
        URL(fileURLWithPath: Kamid.binary).deletingLastPathComponent().appendingPathComponent("kami-supplier-sim").path
    }

    init(id: String, directory: String, arguments: [String] = []) throws {
        self.id = id
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        keyFile = directory + "/\(id).key"
        try "sim-key-\(id)-0123456789\n".write(toFile: keyFile, atomically: true, encoding: .utf8)
        chmod(keyFile, 0o600)
        process.executableURL = URL(fileURLWithPath: SupplierSimProcess.binary)
        process.arguments = ["--listen", "127.0.0.1:0", "--id", id, "--merchant", "kami-\(id)", "--key-file", keyFile] + arguments
        process.standardOutput = output
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        var text = ""
        while Date() < deadline && port == 0 {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("listening ") }) {
                port = UInt16(line.dropFirst(10)) ?? 0
            }
        }
        guard port != 0 else { throw NSError(domain: "sim", code: 1, userInfo: [NSLocalizedDescriptionKey: "sim did not start: \(text)"]) }
    }

    /// The config lines of this supplier.
    func config(extra: [String: String] = [:]) -> String {
        var lines = [
            "supplier.\(id).url = http://127.0.0.1:\(port)", "supplier.\(id).merchant_id = kami-\(id)",
            "supplier.\(id).credentials_file = \(keyFile)", "supplier.\(id).poll_ms = 50", "supplier.\(id).poll_max_ms = 500",
        ]
        for (key, value) in extra.sorted(by: { $0.key < $1.key }) { lines.append("supplier.\(id).\(key) = \(value)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The simulator's ledger: customer order numbers of every sale, in order.
    func sales(caFile: String? = nil) throws -> [String] {
        let loop = IOLoop(name: "test-ledger")
        defer { loop.stop() }
        let client = HTTPClient(loop: loop)
        let box = Box<Result<HTTPResponse, HTTPClientError>>()
        let tls = try caFile.map { try TLSContext.client(caFile: $0) }
        client.send(HTTPRequest(method: "GET", target: "/_sim/ledger"),
                    to: HTTPURL("\(caFile == nil ? "http" : "https")://127.0.0.1:\(port)/")!, tls: tls) { box.set($0) }
        let response = try XCTUnwrap(box.wait()).get()
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        let sales = try XCTUnwrap(object["sales"] as? [[String: Any]])
        return sales.compactMap { $0["customer_order_no"] as? String }
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

/// A value handed between threads.
final class Box<T: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: T?
    func set(_ new: T) {
        condition.lock()
        value = new
        condition.broadcast()
        condition.unlock()
    }
    func wait(_ seconds: Double = 20) -> T? {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(seconds)
        while value == nil && condition.wait(until: deadline) {}
        return value
    }
}

/// kamid with suppliers, end to end: config, kamictl, the storefront protocol, callbacks,
/// and SIGKILL while upstream orders are in flight.
final class UpstreamDaemonTests: XCTestCase {
    var directory = ""

    override func setUp() { directory = NSTemporaryDirectory() + "kami-up-\(UUID().uuidString)" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    func writeConfig(_ text: String, syncMs: Int = 0) throws -> String {
        let path = directory + ".conf"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try ("loop_threads = 2\nupstream_callback_listen = 127.0.0.1:0\nupstream_sync_ms = \(syncMs)\n" + text)
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func kamictl(_ arguments: [String], socket: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Kamid.binary).deletingLastPathComponent().appendingPathComponent("kamictl")
        process.arguments = ["--socket", socket] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func setUpSku(_ kamid: Kamid, supplier: String, product: String = "P1", cost: Int64 = 500) throws {
        let socket = kamid.socketPath
        XCTAssertEqual(try kamictl(["sku", "set", "vip", "--price", "1000"], socket: socket).status, 0)
        let source = try kamictl(["sku", "source", "vip", "--policy", "upstream", "--min-margin", "100"], socket: socket)
        XCTAssertEqual(source.status, 0, source.output)
        let map = try kamictl(["supplier", "map", "vip", supplier, product, String(cost), "--priority", "1"], socket: socket)
        XCTAssertEqual(map.status, 0, map.output)
    }

    func testKamidFulfilsThroughASupplierProcessWithKamictlAndTheProtocol() throws {
        let sim = try SupplierSimProcess(id: "s1", directory: directory + "-sim", arguments: ["--product", "P1:450", "--async-rate", "0.5",
                                                                                              "--callback-delay-ms", "30"])
        defer { sim.stop() }
        let config = try writeConfig(sim.config())
        let kamid = try Kamid(directory: directory, arguments: ["--config", config])
        defer { kamid.stop() }
        try setUpSku(kamid, supplier: "s1")
        let listed = try kamictl(["supplier", "list"], socket: kamid.socketPath)
        XCTAssertEqual(listed.status, 0)
        XCTAssertTrue(listed.output.contains("s1  form  closed  no"), listed.output)
        // An unknown supplier is refused with a reason naming the known ones.
        let unknown = try kamictl(["supplier", "map", "vip", "nobody", "P1", "1"], socket: kamid.socketPath)
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue(unknown.output.contains("no supplier nobody") && unknown.output.contains("s1"), unknown.output)

        let client = try kamid.storefront()
        let hello = client.call(#""id":1,"op":"hello","client":"default","token":"\#(kamid.token)""#)
        guard case .success(.hello(let features))? = hello?.result else { return XCTFail("no hello") }
        XCTAssertTrue(features.features.contains("upstream"))
        // issue with wait_ms: answered delivered.
        let waited = client.call(#""id":2,"op":"issue","order":"e1","user":"u1","sku":"vip","qty":2,"payment_ref":"p1","wait_ms":5000"#)
        XCTAssertEqual(waited?.order?.state, .known(.committed), "\(String(describing: waited))")
        XCTAssertEqual(waited?.order?.codes.count, 2)
        XCTAssertTrue(waited?.order?.codes.allSatisfy { $0.secret?.reveal().hasPrefix("SIM-s1-") ?? false } ?? false)
        // issue without: pending at once; wait long-polls it.
        let pending = client.call(#""id":3,"op":"issue","order":"e2","user":"u1","sku":"vip","qty":1,"payment_ref":"p2""#)
        XCTAssertEqual(pending?.order?.state, WireOrderState(name: "pending_upstream"))
        let done = client.call(#""id":4,"op":"wait","order":"e2","user":"u1","wait_ms":5000"#)
        XCTAssertEqual(done?.order?.state, .known(.committed))
        XCTAssertEqual(client.call(#""id":5,"op":"order","order":"e2","user":"u1""#)?.order?.codes.first?.secret, done?.order?.codes.first?.secret)
        // Binary frames carry wait_ms too (on a connection of their own: the first byte
        // decides a connection's encoding).
        let binaryClient = try RawClient(port: kamid.port)
        var frame: [UInt8] = []
        var binaryHello = Request(id: .number(0), op: .hello)
        binaryHello.client = "default"
        binaryHello.token = kamid.token
        try BinaryCodec.encode(binaryHello, into: &frame)
        var request = Request(id: .number(6), op: .issue)
        request.order = "e3"
        request.user = "u2"
        request.sku = "vip"
        request.qty = 1
        request.paymentRef = "p3"
        request.waitMs = 5_000
        try BinaryCodec.encode(request, into: &frame)
        binaryClient.send(frame)
        XCTAssertEqual(binaryClient.readBinaryReply()?.0.isOK, true)
        let binary = binaryClient.readBinaryReply()
        XCTAssertEqual(binary?.0.order?.state, .known(.committed))
        XCTAssertEqual(try sim.sales().sorted(), ["e1", "e2", "e3"])
        XCTAssertEqual(try kamid.violations(), [])
        // The supplier's price rises past the guard: the next order fails, the log says 成本倒挂,
        // and the dead-letter list has it; refunding it works.
        XCTAssertEqual(try kamictl(["supplier", "map", "vip", "s1", "P1", "950"], socket: kamid.socketPath).status, 0)
        let shown = try kamictl(["--json", "supplier", "show", "s1"], socket: kamid.socketPath)
        XCTAssertTrue(shown.output.contains(#""cost_history""#) && shown.output.contains(#""cost_cents":500"#)
                      && shown.output.contains(#""cost_cents":950"#), shown.output)
        let guarded = client.call(#""id":7,"op":"issue","order":"e4","user":"u3","sku":"vip","qty":1,"payment_ref":"p4","wait_ms":3000"#)
        XCTAssertEqual(guarded?.order?.state, WireOrderState(name: "failed"))
        XCTAssertTrue(kamid.log.contains { $0.contains("成本倒挂") && $0.contains("supplier=s1") }, kamid.log.suffix(5).joined(separator: "\n"))
        let failed = try kamictl(["upstream", "failed"], socket: kamid.socketPath)
        XCTAssertTrue(failed.output.contains("e4"), failed.output)
        XCTAssertEqual(try kamictl(["upstream", "refund", "e4"], socket: kamid.socketPath).status, 0)
        XCTAssertEqual(client.call(#""id":8,"op":"order","order":"e4","user":"u3""#)?.order?.state, .known(.refunded))
        // Reconcile: everything kamid bought matches the supplier's records.
        let reconcile = try kamictl(["supplier", "reconcile", "s1"], socket: kamid.socketPath)
        XCTAssertEqual(reconcile.status, 0, reconcile.output)
        XCTAssertTrue(reconcile.output.contains("3 attempts, 3 matched, 0 mismatches"), reconcile.output)
        // A statement that claims a sale kamid never made is a mismatch.
        let statement = directory + "/statement.csv"
        try "customer_order_no,state,amount_cents\ne1,success,800\nghost,success,450\n".write(toFile: statement, atomically: true, encoding: .utf8)
        let withStatement = try kamictl(["supplier", "reconcile", "s1", "--statement", statement], socket: kamid.socketPath)
        XCTAssertTrue(withStatement.output.contains("ghost: no_attempt_here"), withStatement.output)
        XCTAssertTrue(withStatement.output.contains("e1: amount"), withStatement.output)
        XCTAssertEqual(try kamid.violations(), [])
        // Secrets never reach the log: no code, no supplier key.
        let log = kamid.log.joined(separator: "\n")
        XCTAssertFalse(log.contains("SIM-s1-"), "a code reached the log")
        XCTAssertFalse(log.contains("sim-key-s1"), "the supplier key reached the log")
    }

    func testKillNineWhileUpstreamOrdersAreInFlightNeverBuysTwiceOrLosesOne() throws {
        let cycles = ProcessInfo.processInfo.environment["KAMI_UPSTREAM_CRASH_CYCLES"].flatMap(Int.init) ?? 10
        let sim = try SupplierSimProcess(id: "s1", directory: directory + "-sim", arguments: [
            "--product", "P1:450", "--latency-ms", "80", "--latency-sigma", "0.8", "--timeout-rate", "0.1",
            "--async-rate", "0.3", "--callback-delay-ms", "100", "--seed", "5",
        ])
        defer { sim.stop() }
        let config = try writeConfig(sim.config(extra: ["timeout_ms": "500", "max_concurrent": "128"]))
        var issued = Set<String>()
        var rng = SystemRandomNumberGenerator()
        for cycle in 0..<cycles {
            let kamid = try Kamid(directory: directory, arguments: ["--config", config])
            if cycle == 0 { try setUpSku(kamid, supplier: "s1") }
            let client = try kamid.storefront()
            // 200 orders in one pipelined burst; kill while many are in flight upstream.
            let orders = (0..<200).map { "c\(cycle)-\($0)" }
            client.send(orders.enumerated().map { index, order in
                #"{"id":\#(index),"op":"issue","order":"\#(order)","user":"u-\#(order)","sku":"vip","qty":1,"payment_ref":"p"}"# + "\n"
            }.joined())
            var acked = 0
            let stopAfter = Int.random(in: 20...200, using: &rng)
            while acked < stopAfter, let reply = client.readJSONReply() {
                if let order = reply.order {
                    issued.insert(order.order)
                    acked += 1
                }
            }
            usleep(UInt32.random(in: 0...150_000, using: &rng))
            kamid.kill9()
        }
        // Back up once more: every order that was accepted is resolved, none bought twice.
        let kamid = try Kamid(directory: directory, arguments: ["--config", config])
        defer { kamid.stop() }
        let client = try kamid.storefront()
        var states: [String: String] = [:]
        for order in issued.sorted() {
            let reply = client.call(#""id":1,"op":"wait","order":"\#(order)","user":"u-\#(order)","wait_ms":30000"#)
            states[order] = reply?.order.map { "\($0.state)" } ?? "missing"
        }
        let notDelivered = states.filter { $0.value != "\(WireOrderState.known(.committed))" }
        XCTAssertEqual(notDelivered, [:], "every acknowledged order is delivered")
        let sales = try sim.sales()
        var counts: [String: Int] = [:]
        for sale in sales { counts[sale, default: 0] += 1 }
        XCTAssertEqual(counts.filter { $0.value > 1 }, [:], "an order was bought twice")
        XCTAssertTrue(issued.isSubset(of: Set(sales)), "an acknowledged order was never bought")
        // Every sale belongs to an order kamid has delivered (orders accepted but unacknowledged
        // before a kill are delivered too).
        for sale in Set(sales) where !issued.contains(sale) {
            let reply = client.call(#""id":2,"op":"wait","order":"\#(sale)","user":"u-\#(sale)","wait_ms":30000"#)
            XCTAssertEqual(reply?.order?.state, .known(.committed), "\(sale) was sold but is \(String(describing: reply?.order?.state))")
        }
        XCTAssertEqual(try kamid.violations(), [])
        print("upstream crash loop: \(cycles) cycles, \(issued.count) acknowledged orders, \(sales.count) sales")
    }
}

/// One kamid as another's supplier, over the storefront protocol.
final class KamidToKamidTests: XCTestCase {
    func testAKamidSellsAnotherKamidsCodesOnceAndReconciles() throws {
        let base = NSTemporaryDirectory() + "kami-k2k-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: base) }
        // The upstream kamid: a stocked SKU "gold".
        let upstream = try Kamid(directory: base + "/upstream")
        defer { upstream.stop() }
        try upstream.stock(sku: "gold", count: 20)
        // Our kamid: supplier "up" is the upstream kamid, with its storefront token.
        let tokenFile = base + "/up.token"
        try upstream.token.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        chmod(tokenFile, 0o600)
        let config = base + "/ours.conf"
        try """
            loop_threads = 2
            upstream_sync_ms = 0
            supplier.up.url = kami://127.0.0.1:\(upstream.port)
            supplier.up.style = kami
            supplier.up.merchant_id = default
            supplier.up.credentials_file = \(tokenFile)
            supplier.up.timeout_ms = 5000

            """.write(toFile: config, atomically: true, encoding: .utf8)
        let ours = try Kamid(directory: base + "/ours", arguments: ["--config", config])
        defer { ours.stop() }
        let admin = try RawClient(unixPath: ours.socketPath)
        XCTAssertEqual(admin.call(#""id":1,"op":"sku_set","sku":"vip","name":"VIP","price_cents":1000"#)?.isOK, true)
        XCTAssertEqual(admin.call(#""id":2,"op":"sku_source","sku":"vip","source_policy":"upstream""#)?.isOK, true)
        XCTAssertEqual(admin.call(#""id":3,"op":"supplier_map","sku":"vip","supplier":"up","product":"gold","cost_cents":600"#)?.isOK, true)
        let client = try ours.storefront()
        var secrets: [String] = []
        for index in 0..<5 {
            let reply = client.call(#""id":\#(index),"op":"issue","order":"k\#(index)","user":"buyer\#(index)","sku":"vip","qty":2,"payment_ref":"p","wait_ms":8000"#)
            XCTAssertEqual(reply?.order?.state, .known(.committed), "\(String(describing: reply))")
            secrets += reply?.order?.codes.compactMap { $0.secret?.reveal() } ?? []
        }
        XCTAssertEqual(secrets.count, 10, ours.log.suffix(12).joined(separator: "\n") + "\nUPSTREAM:\n" + upstream.log.suffix(8).joined(separator: "\n"))
        XCTAssertEqual(Set(secrets).count, 10)
        XCTAssertTrue(secrets.allSatisfy { $0.hasPrefix("CODE-SECRET-") }, "the upstream kamid's own codes")
        // The upstream sold each order once, under our order id.
        let upstreamClient = try upstream.storefront()
        for index in 0..<5 {
            // Under our merchant's namespace at the upstream.
            let order = upstreamClient.call(#""id":9,"op":"order","order":"default.k\#(index)","user":"default""#)?.order
            XCTAssertEqual(order?.state, .known(.committed))
            XCTAssertEqual(order?.codes.count, 2)
        }
        let stock = upstreamClient.call(#""id":10,"op":"stock","sku":"gold""#)
        guard case .success(.stock(let counts))? = stock?.result else { return XCTFail("no stock") }
        XCTAssertEqual(counts.issued, 10)
        // A repeated issue at our kamid buys nothing more upstream.
        _ = client.call(#""id":20,"op":"issue","order":"k0","user":"buyer0","sku":"vip","qty":2,"payment_ref":"p","wait_ms":8000"#)
        guard case .success(.stock(let again))? = upstreamClient.call(#""id":11,"op":"stock","sku":"gold""#)?.result else {
            return XCTFail("no stock")
        }
        XCTAssertEqual(again.issued, 10)
        let reconcile = admin.call(#""id":4,"op":"supplier_reconcile","supplier":"up""#)
        guard case .success(.fields(let fields))? = reconcile?.result else { return XCTFail("\(String(describing: reconcile))") }
        XCTAssertEqual(fields.first { $0.0 == "matched" }?.1, .int(5))
        XCTAssertEqual(try ours.violations(), [])
        XCTAssertEqual(try upstream.violations(), [])
    }
}

/// kamid talking to suppliers over TLS: a simulator behind a certificate from a test CA.
final class UpstreamTLSTests: XCTestCase {
    func testAnHTTPSSupplierWithItsCAIsUsedAndOneWithAnUntrustedCertificateIsRefused() throws {
        let base = NSTemporaryDirectory() + "kami-tls-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: base) }
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(base)'
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=kami-test-ca 2>/dev/null
            openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 -subj /CN=other-ca 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null
            """
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-c", script]
        try shell.run()
        shell.waitUntilExit()
        XCTAssertEqual(shell.terminationStatus, 0)
        let tlsArguments = ["--tls-cert", base + "/server.pem", "--tls-key", base + "/server.key", "--product", "P1:400"]
        let trusted = try SupplierSimProcess(id: "good", directory: base + "/good", arguments: tlsArguments)
        defer { trusted.stop() }
        let untrusted = try SupplierSimProcess(id: "bad", directory: base + "/bad", arguments: tlsArguments)
        defer { untrusted.stop() }
        func lines(_ sim: SupplierSimProcess, ca: String) -> String {
            sim.config().replacingOccurrences(of: "http://", with: "https://") + "supplier.\(sim.id).ca_file = \(ca)\n"
        }
        let config = base + "/kamid.conf"
        try ("loop_threads = 2\nupstream_sync_ms = 0\n" + lines(trusted, ca: base + "/ca.pem") + lines(untrusted, ca: base + "/other.pem"))
            .write(toFile: config, atomically: true, encoding: .utf8)
        let kamid = try Kamid(directory: base + "/kamid", arguments: ["--config", config])
        defer { kamid.stop() }
        let admin = try RawClient(unixPath: kamid.socketPath)
        XCTAssertEqual(admin.call(#""id":1,"op":"sku_set","sku":"vip","name":"VIP","price_cents":1000"#)?.isOK, true)
        XCTAssertEqual(admin.call(#""id":2,"op":"sku_source","sku":"vip","source_policy":"upstream""#)?.isOK, true)
        // The untrusted one is cheaper, so it is tried first: its certificate is refused before
        // anything is sent, and the order goes to the trusted one.
        XCTAssertEqual(admin.call(#""id":3,"op":"supplier_map","sku":"vip","supplier":"bad","product":"P1","cost_cents":300"#)?.isOK, true)
        XCTAssertEqual(admin.call(#""id":4,"op":"supplier_map","sku":"vip","supplier":"good","product":"P1","cost_cents":400"#)?.isOK, true)
        let client = try kamid.storefront()
        let reply = client.call(#""id":5,"op":"issue","order":"t1","user":"u","sku":"vip","qty":1,"payment_ref":"p","wait_ms":8000"#)
        XCTAssertEqual(reply?.order?.state, .known(.committed), "\(String(describing: reply)) \(kamid.log.suffix(5))")
        XCTAssertTrue(reply?.order?.codes.first?.secret?.reveal().hasPrefix("SIM-good-") ?? false)
        XCTAssertEqual(try trusted.sales(caFile: base + "/ca.pem"), ["t1"])
        XCTAssertEqual(try untrusted.sales(caFile: base + "/ca.pem"), [], "nothing reached the supplier whose certificate was refused")
        XCTAssertTrue(kamid.log.contains { $0.contains("upstream-refused") && $0.contains("supplier=bad") && $0.contains("certificate") },
                      kamid.log.suffix(6).joined(separator: "\n"))
        XCTAssertEqual(try kamid.violations(), [])
    }
}
