import Foundation
import KamiCore
import KamiCrypto
import KamiEngine
import KamiStore
import XCTest

/// Runs the engine under load in a child process, kills it with SIGKILL at random moments,
/// and checks after every restart that every acknowledged result survived.
final class CrashRecoveryTests: XCTestCase {
    /// Kill cycles in the default run; `KAMI_CRASH_CYCLES` asks for more.
    static let cyclesDefault = 20

    static var helperPath: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("kami-crash-helper").path
    }

    struct Ack {
        var state: String
        var codeIDs: [CodeID]
    }

    func testAcknowledgedResultsSurviveKill9() throws {
        let helper = CrashRecoveryTests.helperPath
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: helper), "helper not built at \(helper)")
        let cycles = ProcessInfo.processInfo.environment["KAMI_CRASH_CYCLES"].flatMap(Int.init)
            ?? CrashRecoveryTests.cyclesDefault
        let seed = ProcessInfo.processInfo.environment["KAMI_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...1_000_000)
        print("crash test seed \(seed) (replay with KAMI_SEED=\(seed)), \(cycles) cycles")
        var rng = SplitMix64(seed: seed)
        let directory = makeTempDirectory("kami-crash")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keyPath = directory + "/master.key"
        let key = try MasterKey.generate(path: keyPath)
        let dataDir = directory + "/data"
        var acked: [String: Ack] = [:]
        var sentNotAcked: [String: (user: String, sku: String, op: String)] = [:]
        var activated: [String: [CodeID]] = [:]
        var totalAcks = 0
        for cycle in 0..<cycles {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: helper)
            process.arguments = [dataDir, keyPath, String(seed &+ UInt64(cycle)), "3000"]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            // Wait for READY, then let it run 50-400 ms before the kill.
            let reader = LineReader(pipe.fileHandleForReading)
            var lines: [String] = []
            let deadline = Date().addingTimeInterval(30)
            while let line = reader.nextLine(), Date() < deadline {
                lines.append(line)
                if line == "READY" { break }
            }
            XCTAssertEqual(lines.last, "READY", "cycle \(cycle): helper did not start (seed \(seed))")
            usleep(UInt32(50_000 + rng.next() % 350_000))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            while let line = reader.nextLine() { lines.append(line) }
            for line in lines {
                let parts = line.split(separator: " ").map(String.init)
                if parts.first == "SENT", parts.count == 5 {
                    sentNotAcked[parts[1]] = (parts[2], parts[3], parts[4])
                } else if parts.first == "ACTIVATED", parts.count == 3 {
                    activated[parts[1]] = parts[2].split(separator: ",").compactMap { CodeID($0) }
                } else if parts.first == "ACK", parts.count >= 3 {
                    let ids = parts.count > 3 ? parts[3].split(separator: ",").compactMap { CodeID($0) } : []
                    acked[parts[1]] = Ack(state: parts[2], codeIDs: ids)
                    sentNotAcked[parts[1]] = nil
                    totalAcks += 1
                }
            }
            try checkRecovery(dataDir: dataDir, key: key, acked: acked, activated: activated, unknown: &sentNotAcked,
                              cycle: cycle, seed: seed)
        }
        print("crash test: \(cycles) kill cycles, \(totalAcks) acknowledged results, \(acked.count) orders checked, "
            + "\(activated.count) activations")
        XCTAssertGreaterThan(totalAcks, cycles, "the helper did acknowledge work before being killed")
        XCTAssertGreaterThan(activated.count, 0, "buyers activated codes between the kills")
    }

    private func checkRecovery(
        dataDir: String, key: MasterKey, acked: [String: Ack], activated: [String: [CodeID]],
        unknown: inout [String: (user: String, sku: String, op: String)], cycle: Int, seed: UInt64
    ) throws {
        var config = EngineConfig(directory: dataDir, sealer: Sealer(key: key))
        config.expiryThread = false
        let engine = try Engine(config: config)
        defer { engine.close() }
        let context = "cycle \(cycle), seed \(seed)"
        XCTAssertEqual(try engine.storage.integrityCheck(), "ok", context)
        var owner: [CodeID: String] = [:]
        for (orderID, ack) in acked {
            let order = try engine.queries.order(orderID)
            switch ack.state {
            case "committed":
                XCTAssertTrue(order.state == .committed || order.state == .refunded, "\(orderID) lost its commit; \(context)")
                XCTAssertEqual(order.codeIDs, ack.codeIDs, "\(orderID) has other codes than acknowledged; \(context)")
            case "reserved":
                // A hold may since have been committed, released or expired, but it existed.
                XCTAssertFalse(order.codeIDs.isEmpty, "\(orderID): \(context)")
            case "released":
                XCTAssertEqual(order.state, .released, "\(orderID): \(context)")
            default:
                XCTFail("unexpected ack state \(ack.state)")
            }
            if order.state == .committed {
                for id in order.codeIDs {
                    XCTAssertNil(owner[id], "code \(id) on \(owner[id] ?? "") and \(orderID); \(context)")
                    owner[id] = orderID
                }
            }
        }
        // Every acknowledged activation survived: its codes are used.
        let used = try engine.storage.codeStates(activated.values.flatMap { $0 })
        for (orderID, codes) in activated {
            for code in codes {
                XCTAssertEqual(used[code]?.state, .used, "\(orderID)'s activated code \(code) after the kill; \(context)")
            }
        }
        // Every acknowledged delivery has its one webhook event in the outbox.
        let told = Set(try engine.storage.outboxAll().filter { $0.type == "order.delivered" }.compactMap { row in
            row.data.firstRange(of: "\"order\":\"").map { String(row.data[$0.upperBound...].prefix { $0 != "\"" }) }
        })
        for (orderID, ack) in acked where ack.state == "committed" {
            XCTAssertTrue(told.contains(orderID), "\(orderID) was delivered but has no webhook event; \(context)")
        }
        // Unknown outcomes: retrying with the same order id gives the same codes or a clean answer.
        for (orderID, sent) in unknown.sorted(by: { $0.key < $1.key }).prefix(8) where sent.op == "issue" {
            let before = try? engine.queries.order(orderID)
            let retry = engine.storefront.issueSync(order: orderID, user: sent.user, sku: sent.sku, paymentRef: "pay-\(orderID)")
            switch retry {
            case .success(let reply):
                if let before, before.state == .committed { XCTAssertEqual(reply.codeIDs, before.codeIDs, context) }
                XCTAssertEqual(reply.state, .committed)
            case .failure(let error):
                XCTAssertTrue([.soldOut, .limitReached].contains(error.code), "\(orderID): \(error); \(context)")
            }
            unknown[orderID] = nil
        }
        engine.admin.barrier()
        let violations = try engine.admin.verify()
        XCTAssertEqual(violations, [], context)
    }
}

/// Reads lines from a pipe without blocking forever once the writer is gone.
final class LineReader {
    private let handle: FileHandle
    private var buffer = Data()
    private var eof = false
    init(_ handle: FileHandle) { self.handle = handle }

    func nextLine() -> String? {
        while true {
            if let index = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[buffer.startIndex..<index], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...index)
                return line
            }
            if eof { return nil }
            let chunk = handle.availableData
            if chunk.isEmpty { eof = true } else { buffer.append(chunk) }
        }
    }
}

