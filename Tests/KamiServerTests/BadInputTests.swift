import Foundation
import Glibc
import KamiCore
import KamiProtocol
import XCTest

/// Every kind of bad input gets its error (or a close, for garbage), and the daemon keeps
/// serving a well-behaved client alongside with nothing lost.
final class BadInputTests: XCTestCase {
    func testBadInputIsAnsweredAndOthersKeepWorking() throws {
        let directory = NSTemporaryDirectory() + "kamid-bad-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = directory + "/kamid.conf"
        try ("idle_timeout_ms = 1500\n" + Kamid.twoLoops).write(toFile: config, atomically: true, encoding: .utf8)
        let kamid = try Kamid(directory: directory + "/data", arguments: ["--config", config])
        defer { XCTAssertEqual(kamid.stop(), 0) }
        let admin = try RawClient(unixPath: kamid.socketPath)
        XCTAssertEqual(admin.call(#""id":1,"op":"sku_set","sku":"vip","name":"VIP""#)?.isOK, true)
        let csv = directory + "/c.csv"
        try "secret\n" .appending((0..<20).map { "BAD-INPUT-\($0)" }.joined(separator: "\n")).write(toFile: csv, atomically: true, encoding: .utf8)
        XCTAssertEqual(admin.call(#""id":2,"op":"import","sku":"vip","path":"\#(csv)""#)?.isOK, true)

        let good = try RawClient(port: kamid.port)
        XCTAssertEqual(good.call(#""id":0,"op":"hello","client":"default","token":"\#(kamid.token)""#)?.isOK, true)
        XCTAssertNotNil(good.call(#""id":1,"op":"issue","order":"g1","user":"g","sku":"vip","qty":1,"payment_ref":"p""#)?.order)

        // JSON mistakes on an authenticated connection: each answered, the connection lives on.
        let c = try RawClient(port: kamid.port)
        XCTAssertEqual(c.call(#""id":0,"op":"hello","client":"default","token":"\#(kamid.token)""#)?.isOK, true)
        c.send("{\"id\":1,\"op\":\n")
        XCTAssertEqual(c.readJSONReply()?.error?.code, .badRequest, "malformed line")
        XCTAssertEqual(c.call(#""id":2,"op":"fly""#)?.error?.code, .badRequest, "unknown op")
        let missing = c.call(#""id":3,"op":"issue","user":"u","sku":"vip","qty":1,"payment_ref":"p""#)
        XCTAssertEqual(missing?.error?.code, .badRequest)
        XCTAssertTrue(missing?.error?.message.contains("order") ?? false, "names the missing field")
        let wrongType = c.call(#""id":4,"op":"issue","order":"x","user":"u","sku":"vip","qty":"2","payment_ref":"p""#)
        XCTAssertEqual(wrongType?.error?.code, .badRequest)
        XCTAssertTrue(wrongType?.error?.message.contains("qty") ?? false)
        XCTAssertEqual(c.call(#""id":5,"op":"ping""#)?.isOK, true, "still served")

        // A 100 MB line: TOO_LARGE and a close, without kamid buffering it.
        let huge = try RawClient(port: kamid.port)
        XCTAssertEqual(huge.call(#""id":0,"op":"hello","client":"default","token":"\#(kamid.token)""#)?.isOK, true)
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20)
        huge.send(Array("{\"id\":1,\"op\":\"ping\",\"x\":\"".utf8))
        for _ in 0..<100 { huge.send(chunk) }
        XCTAssertEqual(huge.readJSONReply()?.error?.code, .tooLarge)
        XCTAssertTrue(huge.isClosedByPeer())

        // A binary frame claiming 4 GiB: refused before any allocation, then closed.
        let claim = try RawClient(port: kamid.port)
        claim.send([0xB1, 1, KamiProtocol.Operation.ping.rawValue, 0, 7, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertEqual(claim.readBinaryReply()?.0.error?.code, .tooLarge)
        XCTAssertTrue(claim.isClosedByPeer())

        // A frame cut in half, then the client goes away: nothing breaks.
        let half = try RawClient(port: kamid.port)
        var frame: [UInt8] = []
        var ping = Request(id: .number(1), op: .ping)
        ping.client = nil
        try BinaryCodec.encode(ping, into: &frame)
        half.send(Array(frame.prefix(frame.count / 2)))
        close(half.fd)

        // Garbage bytes: closed without a reply.
        let garbage = try RawClient(port: kamid.port)
        garbage.send([0x00, 0x13, 0x37, 0xFF, 0xFE])
        XCTAssertTrue(garbage.isClosedByPeer())

        // The well-behaved client never noticed, and nothing was lost.
        let after = good.call(#""id":2,"op":"issue","order":"g2","user":"g2","sku":"vip","qty":1,"payment_ref":"p""#)
        XCTAssertEqual(after?.order?.state, .committed)
        XCTAssertEqual(good.call(#""id":3,"op":"order","order":"g1","user":"g""#)?.order?.state, .committed)
        guard case .success(.fields(let verify))? = admin.call(#""id":9,"op":"verify""#)?.result else { return XCTFail() }
        XCTAssertEqual(verify.first { $0.0 == "clean" }?.1, .bool(true))

        // A client that connects and sends nothing is closed by the idle timeout.
        let silent = try RawClient(port: kamid.port, timeoutMs: 10_000)
        let started = Date()
        XCTAssertTrue(silent.isClosedByPeer())
        XCTAssertLessThan(Date().timeIntervalSince(started), 8)

        // The idle timeout closed the idle well-behaved client too; a new connection is served.
        let later = try RawClient(port: kamid.port)
        XCTAssertEqual(later.call(#""id":0,"op":"hello","client":"default","token":"\#(kamid.token)""#)?.isOK, true)
        XCTAssertEqual(later.call(#""id":1,"op":"order","order":"g2","user":"g2""#)?.order?.state, .committed)
    }

    func testConnectionsPastTheMaximumAreRefusedAndOthersServed() throws {
        let directory = NSTemporaryDirectory() + "kamid-max-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = directory + "/kamid.conf"
        try ("max_connections = 3\n" + Kamid.twoLoops).write(toFile: config, atomically: true, encoding: .utf8)
        let kamid = try Kamid(directory: directory + "/data", arguments: ["--config", config])
        defer { kamid.stop() }
        let clients = try (0..<3).map { _ in try RawClient(port: kamid.port) }
        // Each loop accepts from its own SO_REUSEPORT listener: make sure all three are accepted
        // (answered) before the fourth connects, or a slow loop could still hold one in its backlog.
        for client in clients {
            XCTAssertEqual(client.call(#""id":0,"op":"hello","client":"default","token":"\#(kamid.token)""#)?.isOK, true)
        }
        let extra = try RawClient(port: kamid.port)
        XCTAssertEqual(extra.readJSONReply()?.error?.code, .busy)
        XCTAssertTrue(extra.isClosedByPeer())
        XCTAssertEqual(clients[0].call(#""id":1,"op":"ping""#)?.isOK, true)
    }

    func testBadConfigIsRejectedWithFileLineAndKey() throws {
        let directory = NSTemporaryDirectory() + "kamid-conf-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = directory + "/kamid.conf"
        try "# comment\nmax_connections = 10\nmax_conections = 3\n".write(toFile: config, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Kamid.binary)
        process.arguments = ["--config", config, "--data-dir", directory + "/data"]
        let pipe = Pipe()
        process.standardError = pipe
        try process.run()
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(process.terminationStatus, 2)
        XCTAssertTrue(output.contains("kamid.conf:3"), output)
        XCTAssertTrue(output.contains("max_conections"), output)
    }
}
