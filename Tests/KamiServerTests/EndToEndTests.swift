import Foundation
import Glibc
import KamiCore
import KamiProtocol
import KamiServer
import Synchronization
import XCTest

/// Against a real kamid process over real sockets.
final class EndToEndTests: XCTestCase {
    /// Starts kamid, loads `count` codes of `sku` through the Unix socket, returns it.
    func startStocked(sku: String = "vip", count: Int = 10, limit: Int = 0, arguments: [String] = []) throws -> Kamid {
        let kamid = try Kamid(arguments: arguments)
        let admin = try RawClient(unixPath: kamid.socketPath)
        let set = admin.call(#""id":1,"op":"sku_set","sku":"\#(sku)","name":"VIP","price_cents":990,"per_user_limit":\#(limit)"#)
        XCTAssertEqual(set?.isOK, true, "\(String(describing: set))")
        if count > 0 {
            let csv = kamid.directory + "/\(sku).csv"
            let rows = (0..<count).map { "\(sku)-SECRET-\($0)-\(UUID().uuidString.prefix(8)),card-\($0)" }
            try ("secret,card_number\n" + rows.joined(separator: "\n") + "\n").write(toFile: csv, atomically: true, encoding: .utf8)
            let imported = admin.call(#""id":2,"op":"import","sku":"\#(sku)","path":"\#(csv)""#)
            guard case .success(.fields(let fields)) = imported?.result else {
                XCTFail("import failed: \(String(describing: imported))")
                return kamid
            }
            XCTAssertEqual(fields.first { $0.0 == "imported" }?.1, .int(Int64(count)))
        }
        return kamid
    }

    func hello(_ kamid: Kamid) throws -> RawClient {
        let client = try RawClient(port: kamid.port)
        let reply = client.call(#""id":0,"op":"hello","client":"default","token":"\#(kamid.token)""#)
        XCTAssertEqual(reply?.isOK, true, "\(String(describing: reply))")
        return client
    }

    func testEveryStorefrontOperationOverJSON() throws {
        let kamid = try startStocked(count: 5, limit: 3)
        defer { XCTAssertEqual(kamid.stop(), 0, "SIGTERM exits 0") }
        let c = try hello(kamid)
        XCTAssertEqual(c.call(#""id":"p","op":"ping""#)?.id, .string("p"))
        let issued = c.call(#""id":1,"op":"issue","order":"A1","user":"alice","sku":"vip","qty":1,"payment_ref":"pay-1""#)
        XCTAssertEqual(issued?.id, .number(1))
        XCTAssertEqual(issued?.order?.state, .committed)
        let secret = issued?.order?.codes.first?.secret?.reveal() ?? ""
        XCTAssertTrue(secret.hasPrefix("vip-SECRET-"), secret)
        let again = c.call(#""id":2,"op":"issue","order":"A1","user":"alice","sku":"vip","qty":1,"payment_ref":"pay-1""#)
        XCTAssertEqual(again?.order?.codes, issued?.order?.codes, "a retry returns the same codes")
        let held = c.call(#""id":3,"op":"reserve","order":"B1","user":"bob","sku":"vip","qty":2,"ttl_ms":60000"#)
        XCTAssertEqual(held?.order?.state, .reserved)
        XCTAssertEqual(held?.order?.codes.count, 2)
        XCTAssertNil(held?.order?.codes.first?.secret, "a hold shows no secret")
        let paid = c.call(#""id":4,"op":"commit","order":"B1","payment_ref":"pay-2""#)
        XCTAssertEqual(paid?.order?.codes.count, 2)
        XCTAssertNotNil(paid?.order?.codes.first?.secret)
        _ = c.call(#""id":5,"op":"reserve","order":"C1","user":"carol","sku":"vip","qty":1"#)
        XCTAssertEqual(c.call(#""id":6,"op":"release","order":"C1""#)?.order?.state, .released)
        let order = c.call(#""id":7,"op":"order","order":"A1","user":"alice""#)
        XCTAssertEqual(order?.order?.codes, issued?.order?.codes)
        let mine = c.call(#""id":8,"op":"entitlements","user":"bob""#)
        guard case .success(.codes(let codes, _)) = mine?.result else { return XCTFail("\(String(describing: mine))") }
        XCTAssertEqual(codes.count, 2)
        let stock = c.call(#""id":9,"op":"stock","sku":"vip""#)
        guard case .success(.stock(let s)) = stock?.result else { return XCTFail("\(String(describing: stock))") }
        XCTAssertEqual([s.available, s.issued, s.imported], [2, 3, 5])
        XCTAssertEqual(c.call(#""id":10,"op":"issue","order":"Z","user":"alice","sku":"nope","qty":1,"payment_ref":"p""#)?.error?.code,
                       .notFound)
        XCTAssertEqual(c.call(#""id":11,"op":"issue","order":"A9","user":"bob","sku":"vip","qty":2,"payment_ref":"p""#)?.error?.code,
                       .limitReached)
        XCTAssertEqual(c.call(#""id":12,"op":"commit","order":"A1","payment_ref":"other""#)?.error?.code, .conflict)
        // The secret never reaches kamid's log.
        XCTAssertFalse(kamid.log.joined().contains(secret))
    }

    func testBinaryPipeliningOfAThousandRequests() throws {
        let kamid = try startStocked(count: 600)
        defer { kamid.stop() }
        let c = try RawClient(port: kamid.port)
        var bytes: [UInt8] = []
        var hello = Request(id: .number(0), op: .hello)
        hello.client = "default"
        hello.token = kamid.token
        try BinaryCodec.encode(hello, into: &bytes)
        for n in 1...1_000 {
            var request = Request(id: .number(Int64(n)), op: .issue)
            request.order = "bin-\(n)"
            request.user = "u\(n)"
            request.sku = "vip"
            request.qty = 1
            request.paymentRef = "p\(n)"
            try BinaryCodec.encode(request, into: &bytes)
        }
        c.send(bytes)
        var codes: [Int64] = []
        var soldOut = 0
        var ids: [RequestID] = []
        for _ in 0...1_000 {
            guard let (reply, _) = c.readBinaryReply() else { return XCTFail("missing reply after \(ids.count)") }
            ids.append(reply.id)
            switch reply.result {
            case .success(.order(let order)): codes += order.codes.map(\.codeID)
            case .success: break
            case .failure(let error): XCTAssertEqual(error.code, .soldOut); soldOut += 1
            }
        }
        XCTAssertEqual(ids, (0...1_000).map { RequestID.number(Int64($0)) }, "binary replies come in request order")
        XCTAssertEqual(codes.count, 600)
        XCTAssertEqual(Set(codes).count, 600, "no code twice")
        XCTAssertEqual(soldOut, 400)
    }

    func testJSONRepliesComeBackInRequestOrder() throws {
        let kamid = try startStocked(count: 50)
        defer { kamid.stop() }
        let c = try hello(kamid)
        var lines = ""
        for n in 0..<200 {
            switch n % 4 {
            case 0: lines += #"{"id":\#(n),"op":"issue","order":"o\#(n)","user":"u\#(n)","sku":"vip","qty":1,"payment_ref":"p"}"# + "\n"
            case 1: lines += #"{"id":\#(n),"op":"ping"}"# + "\n"
            case 2: lines += #"{"id":\#(n),"op":"stock","sku":"vip"}"# + "\n"
            default: lines += #"{"id":\#(n),"op":"order","order":"o\#(n - 3)","user":"u\#(n - 3)"}"# + "\n"
            }
        }
        c.send(lines)
        for n in 0..<200 {
            let reply = c.readJSONReply()
            XCTAssertEqual(reply?.id, .number(Int64(n)))
            if n % 4 == 3 {
                XCTAssertEqual(reply?.order?.state, .committed, "a query sees the connection's own earlier write")
            }
        }
    }

    func testTwoHundredConnectionsOnOneSkuNeverDoubleIssue() throws {
        let kamid = try startStocked(count: 1_000, limit: 1)
        defer { kamid.stop() }
        let sold = Locked<[Int64]>([])
        let failures = Locked<[ErrorCode: Int]>([:])
        let port = kamid.port
        let token = kamid.token
        DispatchQueue.concurrentPerform(iterations: 200) { n in
            guard let c = try? RawClient(port: port) else { return }
            guard c.call(#""id":0,"op":"hello","client":"default","token":"\#(token)""#)?.isOK == true else { return }
            for k in 0..<8 {
                let reply = c.call(#""id":\#(k),"op":"issue","order":"c\#(n)-\#(k)","user":"user\#(n)-\#(k % 7)","sku":"vip","qty":1,"payment_ref":"p""#)
                switch reply?.result {
                case .success(.order(let order))?: sold.withLock { $0 += order.codes.map(\.codeID) }
                case .failure(let error)?: failures.withLock { $0[error.code, default: 0] += 1 }
                default: failures.withLock { $0[.unavailable, default: 0] += 1 }
                }
            }
        }
        let codes = sold.withLock { $0 }
        XCTAssertEqual(codes.count, 1_000, "stock exactly exhausted; failures \(failures.withLock { $0 })")
        XCTAssertEqual(Set(codes).count, codes.count, "no code issued twice")
        XCTAssertEqual(failures.withLock { $0[.soldOut, default: 0] + $0[.limitReached, default: 0] }, 600)
        let admin = try RawClient(unixPath: kamid.socketPath)
        guard case .success(.fields(let verify))? = admin.call(#""id":1,"op":"verify""#)?.result else { return XCTFail() }
        XCTAssertEqual(verify.first { $0.0 == "clean" }?.1, .bool(true), "\(verify)")
    }

    func testACommitResentAfterADroppedConnectionGetsTheSameCodes() throws {
        let kamid = try startStocked(count: 5)
        defer { kamid.stop() }
        let first = try hello(kamid)
        _ = first.call(#""id":1,"op":"reserve","order":"R1","user":"u","sku":"vip","qty":2"#)
        first.send(#"{"id":2,"op":"commit","order":"R1","payment_ref":"pay"}"# + "\n")
        close(first.fd)  // gone before reading the reply
        let second = try hello(kamid)
        let retry = second.call(#""id":3,"op":"commit","order":"R1","payment_ref":"pay""#)
        XCTAssertEqual(retry?.order?.state, .committed)
        XCTAssertEqual(retry?.order?.codes.count, 2)
        let again = second.call(#""id":4,"op":"commit","order":"R1","payment_ref":"pay""#)
        XCTAssertEqual(again?.order?.codes, retry?.order?.codes)
        let stock = second.call(#""id":5,"op":"stock","sku":"vip""#)
        guard case .success(.stock(let s))? = stock?.result else { return XCTFail() }
        XCTAssertEqual(s.issued, 2, "the commit happened once")
    }

    func testAuthenticationAndRoles() throws {
        let kamid = try startStocked(count: 1)
        defer { kamid.stop() }
        let c = try RawClient(port: kamid.port)
        XCTAssertEqual(c.call(#""id":1,"op":"stock","sku":"vip""#)?.error?.code, .unauthorized, "no hello")
        XCTAssertEqual(c.call(#""id":2,"op":"hello","client":"default","token":"wrong-token-123456""#)?.error?.code, .unauthorized)
        XCTAssertEqual(c.call(#""id":3,"op":"hello","client":"nobody","token":"\#(kamid.token)""#)?.error?.code, .unauthorized)
        XCTAssertEqual(c.call(#""id":4,"op":"hello","client":"default""#)?.error?.code, .badRequest, "no token")
        XCTAssertEqual(c.call(#""id":5,"op":"hello","client":"default","token":"\#(kamid.token)""#)?.isOK, true)
        XCTAssertEqual(c.call(#""id":6,"op":"sku_set","sku":"x","name":"X""#)?.error?.code, .unauthorized,
                       "operator operation over TCP")
        XCTAssertEqual(c.call(#""id":7,"op":"verify""#)?.error?.code, .unauthorized)
        // The Unix socket takes storefront operations without a hello.
        let local = try RawClient(unixPath: kamid.socketPath)
        XCTAssertEqual(local.call(#""id":1,"op":"stock","sku":"vip""#)?.isOK, true)
        // Failed hellos are rate-limited per address: after the limit even the right token is refused.
        let prober = try RawClient(port: kamid.port)
        for n in 0..<12 { _ = prober.call(#""id":\#(n),"op":"hello","client":"default","token":"guess-\#(n)-000000000""#) }
        let limited = prober.call(#""id":99,"op":"hello","client":"default","token":"\#(kamid.token)""#)
        XCTAssertEqual(limited?.error?.code, .unauthorized)
        XCTAssertTrue(limited?.error?.message.contains("too many") ?? false)
        var info = stat()
        XCTAssertEqual(stat(kamid.socketPath, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o660)
    }

    func testListensOnIPv6Too() throws {
        let probe = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        inet_pton(AF_INET6, "::1", &addr.sin6_addr)
        let usable = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(probe, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        } == 0
        close(probe)
        guard usable else { throw XCTSkip("no IPv6 loopback on this machine") }
        // Besides the helper's 127.0.0.1:0; and on the embedded default config (no file), as
        // `kamid` alone runs.
        let kamid = try Kamid(arguments: ["--listen", "[::1]:0"], twoLoops: false)
        defer { kamid.stop() }
        let ready = kamid.log.first { $0.contains(">ready") } ?? ""
        let ports = ready.split(separator: " ").first { $0.hasPrefix("tcp=") }?.dropFirst(4).split(separator: ",") ?? []
        XCTAssertEqual(ports.count, 2, ready)
        let v6 = try RawClient(ipv6Port: UInt16(ports.last ?? "") ?? 0)
        XCTAssertEqual(v6.call(#""id":0,"op":"hello","client":"default","token":"\#(kamid.token)""#)?.isOK, true)
        XCTAssertEqual(v6.call(#""id":1,"op":"ping""#)?.isOK, true)
    }

    func testUnixSocketRefusesAnotherUID() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser"),
              FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
            throw XCTSkip("needs root and runuser to connect as another uid")
        }
        let kamid = try startStocked(count: 1)
        defer { kamid.stop() }
        // Let `nobody` reach the socket file, so the refusal tested is kamid's uid check.
        chmod(kamid.directory, 0o755)
        chmod(kamid.socketPath, 0o666)
        let script = """
            import socket,sys
            s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)
            print(s.recv(4096).decode())
            try:
                s.sendall(b'{"id":1,"op":"verify"}\\n'); print(s.recv(4096).decode())
            except OSError as e:
                print("closed", e)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        process.arguments = ["-u", "nobody", "--", "/usr/bin/python3", "-c", script, kamid.socketPath]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(output.contains("UNAUTHORIZED"), output)
        XCTAssertFalse(output.contains("\"clean\""), output)
    }

    /// What Config/kamid.conf says about the Unix socket is what kamid does: the file mode
    /// decides who may connect(2), and then only kamid's uid and root are let in. A member of
    /// the socket's group, let through by mode 0660, is refused even a ping.
    func testUnixSocketGroupMembersAreRefusedAsTheConfigSays() throws {
        let text = DaemonConfig.embeddedDefaultText
        XCTAssertFalse(text.contains("lets a group"), "the config must not promise group members the socket")
        XCTAssertFalse(text.contains("Storefronts on the\n# same host may use it too"))
        XCTAssertTrue(text.contains("whatever its group"), "the config says group members are refused")
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser"),
              FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
            throw XCTSkip("needs root and runuser to connect as another uid")
        }
        let kamid = try startStocked(count: 1)
        defer { kamid.stop() }
        var info = stat()
        XCTAssertEqual(stat(kamid.socketPath, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o660, "the default mode")
        // The directory as the unit has it: the group may enter.
        chmod(kamid.directory, 0o750)
        let group = String(cString: getgrgid(info.st_gid).pointee.gr_name)
        let script = """
            import socket,sys
            s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)
            print("connected")
            # kamid refuses and closes at once: the send may meet a closed socket (EPIPE), but
            # the refusal already waits in the receive queue.
            try:
                s.sendall(b'{"id":1,"op":"ping"}\\n')
            except OSError as e:
                print("send failed", e)
            try:
                print(s.recv(4096).decode())
            except OSError as e:
                print("closed", e)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        process.arguments = ["-u", "nobody", "-g", group, "--", "/usr/bin/python3", "-c", script, kamid.socketPath]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(output.contains("connected"), "the group bits let the connect through: \(output)")
        XCTAssertTrue(output.contains("UNAUTHORIZED") && output.contains("peer uid not allowed"), output)
        XCTAssertFalse(output.contains("\"ok\":true"), output)
    }
}
