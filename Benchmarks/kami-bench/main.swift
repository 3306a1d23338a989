// kami-bench: Kami's benchmark harness (wiring only; the benchmarks live beside this file).
//
//   kami-bench pool                       lock-free vs mutex pool microbenchmark
//   kami-bench store [--durability full|normal] [--seconds S] [--batch N]
//                                         group-commit throughput at batch sizes 1, 64, 1024
//   kami-bench boot [--codes N] [--orders N] [--long-ids] [--keep DIR]
//                                         time to ready and RSS with N codes and past orders
//   kami-bench import [--rows N] [--xlsx] CSV (or .xlsx) import rows/s and peak memory
//   kami-bench load [--connections C] [--depth D] [--seconds S] [--codes N]
//                                         binary issue load against a kamid it starts (durability full)
//   kami-bench flash-sale|steady|checkout|retry-storm [--connections C] [--depth D | --rate R]
//                         [--stock N] [--requests N] [--seconds S] [--threads T] [--skus N]
//                         [--drop-every N] [--peers a,b,...] [--results DIR] [--kamid-config FILE]
//                                         kamid vs Redis (Lua/LMOVE, always/everysec) vs the echo
//                                         ceiling, same clients, audited, table to stdout and DIR;
//                                         --peers kamid,kamid-risk[,...] [--risk-rules FILE]: the risk
//                                         gate on versus off in one run; kamid-webhooks: a signed
//                                         webhook per order to a receiver failing half the time
//   kami-bench risk-keys [--keys N] [--risk-rules FILE]
//                                         the risk gate's memory under N distinct keys vs its bound
//   kami-bench report [--orders N] [--days D] [--skus S]
//                                         the money reports over a year of orders' ledger summary
import Foundation
import KamiBench
import KamiStore

let arguments = Array(CommandLine.arguments.dropFirst())

func option(_ name: String) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func usage() -> Never {
    print("""
        usage: kami-bench pool
               kami-bench store [--durability full|normal] [--seconds S] [--batch N]
               kami-bench boot [--codes N] [--orders N] [--long-ids] [--keep DIR]
               kami-bench import [--rows N] [--xlsx]
               kami-bench upstream [--connections C] [--depth D] [--requests N] [--seconds S] [--latency-ms MS]
               kami-bench queries [--codes N] [--per-order N] [--rounds N]
               kami-bench load [--connections C] [--depth D] [--seconds S] [--codes N]
               kami-bench flash-sale|steady|checkout|retry-storm [--connections C] [--depth D | --rate R]
                          [--stock N] [--requests N] [--seconds S] [--threads T] [--skus N] [--drop-every N]
                          [--peers kamid,redis-lua-always,redis-lua-everysec,redis-lmove-always,echo] [--results DIR]
                          [--kamid-config FILE] [--risk-rules FILE] (peer kamid-risk: the rules on;
                          peer kamid-webhooks: a webhook per order to a receiver failing every other POST)
               kami-bench risk-keys [--keys N] [--risk-rules FILE]
               kami-bench report [--orders N] [--days D] [--skus S]
        """)
    exit(2)
}

switch arguments.first {
case "pool":
    runPoolBench(arguments: Array(arguments.dropFirst()))
case "report":
    ReportBench.run(orders: Int(option("--orders") ?? "10000000") ?? 10_000_000, days: Int(option("--days") ?? "365") ?? 365,
                    skus: Int(option("--skus") ?? "100") ?? 100)
case "store":
    let durability = Durability(rawValue: option("--durability") ?? "full") ?? .full
    EngineBench.store(batchSizes: option("--batch").flatMap(Int.init).map { [$0] } ?? [1, 64, 1024], durability: durability,
                      secondsMax: Double(option("--seconds") ?? "3") ?? 3)
case "boot":
    EngineBench.boot(codes: Int(option("--codes") ?? "10000000") ?? 10_000_000,
                     orders: Int(option("--orders") ?? "0") ?? 0, longIDs: arguments.contains("--long-ids"),
                     keep: option("--keep"))
case "boot-open":
    guard arguments.count == 2 else { usage() }
    EngineBench.bootOpen(directory: arguments[1])
case "load":
    LoadBench.run(connections: Int(option("--connections") ?? "64") ?? 64, depth: Int(option("--depth") ?? "1") ?? 1,
                  seconds: Double(option("--seconds") ?? "10") ?? 10, codes: Int(option("--codes") ?? "1000000") ?? 1_000_000)
case "flash-sale", "steady", "checkout", "retry-storm":
    var options = ScenarioBench.Options()
    options.scenario = Scenario(rawValue: arguments[0])!
    options.peers = ScenarioBench.supported(options.scenario)
    options.skus = Int(option("--skus") ?? "100") ?? 100
    options.dropEvery = Int(option("--drop-every") ?? "25") ?? 25
    options.connections = Int(option("--connections") ?? "64") ?? 64
    if let rate = option("--rate").flatMap(Int.init) {
        options.pacing = .open(ratePerSecond: rate)
    } else {
        options.pacing = .closed(depth: Int(option("--depth") ?? "1") ?? 1)
    }
    options.stock = Int(option("--stock") ?? "100000") ?? 100_000
    options.requests = Int(option("--requests") ?? String(options.stock * 3)) ?? options.stock * 3
    options.seconds = Double(option("--seconds") ?? "60") ?? 60
    options.threads = Int(option("--threads") ?? "1") ?? 1
    options.kamidConfig = option("--kamid-config")
    options.riskRules = option("--risk-rules")
    if let list = option("--peers") {
        options.peers = list.split(separator: ",").map { name in
            guard let peer = PeerKind(rawValue: String(name)) else {
                print("unknown peer \(name); peers: \(PeerKind.allCases.map(\.rawValue).joined(separator: ","))")
                exit(2)
            }
            return peer
        }
    }
    do {
        let results = try ScenarioBench(options: options).run { print($0) }
        let command = "kami-bench " + arguments.joined(separator: " ")
        let document = Report.document(scenario: options.scenario.rawValue, command: command, options: options,
                                       results: results)
        print("")
        print(document)
        let directory = option("--results") ?? "Benchmarks/results"
        if FileManager.default.fileExists(atPath: directory) {
            let formatter = DateFormatter()
            formatter.dateFormat = "yyyy-MM-dd-HHmmss"
            formatter.timeZone = TimeZone(identifier: "UTC")
            let path = "\(directory)/\(formatter.string(from: Date()))-\(options.scenario.rawValue).md"
            try document.write(toFile: path, atomically: true, encoding: .utf8)
            print("written to \(path)")
        } else {
            print("(no \(directory) here: report not written; pass --results DIR)")
        }
        exit(results.contains { !$0.problems.isEmpty } ? 1 : 0)
    } catch {
        print("kami-bench: \(error)")
        exit(1)
    }
case "risk-keys":
    RiskBench.run(keys: Int(option("--keys") ?? "10000000") ?? 10_000_000, rulesPath: option("--risk-rules") ?? "Config/risk.rules")
case "upstream":
    var options = UpstreamBench.Options()
    options.connections = Int(option("--connections") ?? "100") ?? 100
    options.depth = Int(option("--depth") ?? "10") ?? 10
    options.seconds = Double(option("--seconds") ?? "20") ?? 20
    options.requests = Int(option("--requests") ?? "100000") ?? 100_000
    options.latencyMs = Int(option("--latency-ms") ?? "50") ?? 50
    options.localRequests = Int(option("--local-requests") ?? "150000") ?? 150_000
    UpstreamBench.run(options)
case "queries":
    QueryBench.run(codes: Int(option("--codes") ?? "10000") ?? 10_000, perOrder: Int(option("--per-order") ?? "100") ?? 100,
                   rounds: Int(option("--rounds") ?? "20") ?? 20)
case "import":
    let rows = Int(option("--rows") ?? "1000000") ?? 1_000_000
    if arguments.contains("--xlsx") { EngineBench.importXLSX(rows: rows) } else { EngineBench.importCSV(rows: rows) }
case "import-run":
    guard arguments.count == 3 else { usage() }
    EngineBench.importRun(directory: arguments[1], path: arguments[2])
default:
    usage()
}
