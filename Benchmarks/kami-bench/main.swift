// kami-bench: Kami's benchmark harness (wiring only; the benchmarks live beside this file).
//
//   kami-bench pool                       lock-free vs mutex pool microbenchmark
//   kami-bench store [--durability full|normal] [--seconds S]
//                                         group-commit throughput at batch sizes 1, 64, 1024
//   kami-bench boot [--codes N] [--keep DIR]
//                                         time to ready and RSS with N available codes
//   kami-bench import [--rows N]          CSV import rows/s and peak memory
//   kami-bench load [--connections C] [--depth D] [--seconds S] [--codes N]
//                                         binary issue load against a kamid it starts (durability full)
import Foundation
import KamiStore

let arguments = Array(CommandLine.arguments.dropFirst())

func option(_ name: String) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func usage() -> Never {
    print("""
        usage: kami-bench pool
               kami-bench store [--durability full|normal] [--seconds S]
               kami-bench boot [--codes N] [--keep DIR]
               kami-bench import [--rows N]
               kami-bench load [--connections C] [--depth D] [--seconds S] [--codes N]
        """)
    exit(2)
}

switch arguments.first {
case "pool":
    runPoolBench(arguments: Array(arguments.dropFirst()))
case "store":
    let durability = Durability(rawValue: option("--durability") ?? "full") ?? .full
    EngineBench.store(batchSizes: [1, 64, 1024], durability: durability,
                      secondsMax: Double(option("--seconds") ?? "3") ?? 3)
case "boot":
    EngineBench.boot(codes: Int(option("--codes") ?? "10000000") ?? 10_000_000, keep: option("--keep"))
case "boot-open":
    guard arguments.count == 2 else { usage() }
    EngineBench.bootOpen(directory: arguments[1])
case "load":
    LoadBench.run(connections: Int(option("--connections") ?? "64") ?? 64, depth: Int(option("--depth") ?? "1") ?? 1,
                  seconds: Double(option("--seconds") ?? "10") ?? 10, codes: Int(option("--codes") ?? "1000000") ?? 1_000_000)
case "import":
    EngineBench.importCSV(rows: Int(option("--rows") ?? "1000000") ?? 1_000_000)
case "import-run":
    guard arguments.count == 3 else { usage() }
    EngineBench.importRun(directory: arguments[1], path: arguments[2])
default:
    usage()
}
