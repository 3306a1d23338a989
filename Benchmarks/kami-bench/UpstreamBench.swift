import Foundation
import Glibc
import KamiBench

/// `kami-bench upstream`: storefront orders fulfilled through `kami-supplier-sim` (50 ms
/// median latency), at `inFlight` orders in flight (connections x depth, each issue with
/// `wait_ms`, so a reply is a delivery); then local-pool issuing on a kamid with the same
/// supplier configured and on one without, in the same run, to show the upstream module
/// costs local issuing nothing.
enum UpstreamBench {
    struct Options {
        var connections = 100
        var depth = 10
        var seconds = 20.0
        var requests = 100_000
        var latencyMs = 50
        var localRequests = 150_000
    }

    static func run(_ options: Options) {
        do {
            try measure(options)
        } catch {
            print("kami-bench upstream: \(error)")
            exit(1)
        }
    }

    static func rssKiB(_ pid: Int32, _ field: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    static func measure(_ options: Options) throws {
        let bin = Peers.binDirectory
        let directory = NSTemporaryDirectory() + "kami-bench-upstream-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keyFile = directory + "/sim.key"
        try "bench-supplier-key\n".write(toFile: keyFile, atomically: true, encoding: .utf8)
        chmod(keyFile, 0o600)
        let sim = Process()
        sim.executableURL = URL(fileURLWithPath: bin + "/kami-supplier-sim")
        sim.arguments = ["--listen", "127.0.0.1:0", "--id", "sim", "--merchant", "bench", "--key-file", keyFile,
                         "--product", "P1:400", "--latency-ms", String(options.latencyMs), "--latency-sigma", "0.3"]
        let simOut = Pipe()
        sim.standardOutput = simOut
        try sim.run()
        defer { kill(sim.processIdentifier, SIGTERM); sim.waitUntilExit() }
        var simPort: UInt16 = 0
        var text = ""
        while simPort == 0 {
            let chunk = simOut.fileHandleForReading.availableData
            if chunk.isEmpty { throw Driver.DriverError("kami-supplier-sim did not start") }
            text += String(decoding: chunk, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("listening ") }) {
                simPort = UInt16(line.dropFirst(10)) ?? 0
            }
        }
        let config = directory + "/kamid.conf"
        try """
            upstream_sync_ms = 0
            supplier.sim.url = http://127.0.0.1:\(simPort)
            supplier.sim.merchant_id = bench
            supplier.sim.credentials_file = \(keyFile)
            supplier.sim.max_concurrent = \(max(64, options.connections * options.depth))
            supplier.sim.timeout_ms = 5000
            supplier.sim.poll_ms = 200

            """.write(toFile: config, atomically: true, encoding: .utf8)
        print("upstream: kami-supplier-sim on \(simPort), median latency \(options.latencyMs) ms")

        // The kamid with a supplier: local SKU stocked, an upstream SKU mapped.
        let (kamid, token) = try Peers.startKamid(stock: options.localRequests, perUserLimit: 0, skus: ["local"],
                                                  binDirectory: bin, config: config)
        defer { kamid.stop() }
        let socket = kamid.directory + "/data/kamid.sock"
        for line in [#"{"id":1,"op":"sku_set","sku":"up","name":"Upstream","price_cents":1000}"#,
                     #"{"id":2,"op":"sku_source","sku":"up","source_policy":"upstream"}"#,
                     #"{"id":3,"op":"supplier_map","sku":"up","supplier":"sim","product":"P1","cost_cents":400}"#] {
            let reply = try Peers.operatorCall(socket: socket, line)
            guard reply.contains("\"ok\":true") else { throw Driver.DriverError("setup failed: \(reply)") }
        }
        let pid = kamid.pid
        let rssBefore = rssKiB(pid, "VmRSS")

        // 1. Upstream orders at connections x depth in flight.
        let cpuBefore = kamid.cpuNs
        let simCPUBefore = CPUTime.process(sim.processIdentifier)
        var plan = RunPlan(port: kamid.port, connections: options.connections, pacing: .closed(depth: options.depth),
                           requests: options.requests, seconds: options.seconds)
        plan.threads = 1
        let upstream = try Driver.run(plan, adapter: KamiAdapter(token: token, mode: .issue(skus: ["up"]), waitMs: 10_000))
        let cpuUsed = kamid.cpuNs - cpuBefore
        let simCPU = CPUTime.process(sim.processIdentifier) - simCPUBefore
        let rssPeak = rssKiB(pid, "VmHWM")
        let verify = try Peers.operatorCall(socket: socket, #"{"id":9,"op":"verify"}"#)
        let perSecond = upstream.repliesPerSecond
        let delivered = upstream.ok
        print("""
            upstream orders: \(upstream.replies) replies, \(delivered) delivered, errors \(upstream.errors)
              \(Int(perSecond)) orders/s at \(options.connections * options.depth) in flight, \
            p50 \(ms(upstream.latency.value(atPercentile: 50))) ms, p99 \(ms(upstream.latency.value(atPercentile: 99))) ms, \
            max \(ms(upstream.latency.value(atPercentile: 100))) ms
              kamid CPU \(String(format: "%.1f", Double(cpuUsed) / 1e3 / Double(max(1, upstream.replies)))) µs/order, \
            RSS \(rssBefore / 1024) MiB before, peak \(rssPeak / 1024) MiB; simulator CPU \
            \(String(format: "%.1f", Double(simCPU) / 1e3 / Double(max(1, upstream.replies)))) µs/order
              verify: \(verify.contains("\"clean\":true") ? "clean" : verify)
            """)

        // 2. Local-pool issuing on this kamid (suppliers configured) and on one without.
        let localPlan = RunPlan(port: kamid.port, connections: 64, pacing: .closed(depth: 1),
                                requests: options.localRequests / 2, seconds: 60)
        let (plain, plainToken) = try Peers.startKamid(stock: options.localRequests, perUserLimit: 0, skus: ["local"],
                                                       binDirectory: bin)
        defer { plain.stop() }
        var plainPlan = localPlan
        plainPlan.port = plain.port
        var withSuppliers: [Double] = []
        var without: [Double] = []
        for _ in 0..<2 {
            let a = try Driver.run(plainPlan, adapter: KamiAdapter(token: plainToken, sku: "local"))
            without.append(a.repliesPerSecond)
            let b = try Driver.run(localPlan, adapter: KamiAdapter(token: token, sku: "local"))
            withSuppliers.append(b.repliesPerSecond)
            plainPlan.requests = options.localRequests / 2
        }
        let ratio = withSuppliers.reduce(0, +) / max(1, without.reduce(0, +))
        print("""
            local-pool issue, 64 connections, depth 1, interleaved twice:
              kamid without suppliers: \(without.map { String(Int($0)) }.joined(separator: ", ")) replies/s
              kamid with the supplier configured (after the upstream run): \
            \(withSuppliers.map { String(Int($0)) }.joined(separator: ", ")) replies/s
              ratio with/without: \(String(format: "%.3f", ratio))
            """)
    }

    static func ms(_ ns: UInt64) -> String { String(format: "%.1f", Double(ns) / 1e6) }
}
