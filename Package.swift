// swift-tools-version:6.0
import PackageDescription

/// Settings every Kami Swift target shares: Swift 6 mode (strict concurrency) and
/// the upcoming features the house style asks for.
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Kami",
    products: [
        .library(name: "KamiEngine", targets: ["KamiEngine"]),
        .executable(name: "kami-bench", targets: ["kami-bench"]),
        .executable(name: "kami-echo", targets: ["kami-echo"]),
        .executable(name: "kamid", targets: ["kamid"]),
        .executable(name: "kamictl", targets: ["kamictl"]),
        .executable(name: "kami-supplier-sim", targets: ["kami-supplier-sim"]),
        .library(name: "KamiClient", targets: ["KamiClient"]),
    ],
    targets: [
        // C wrappers only.
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CKamiLinux"),
        // Test-only: a SQLite VFS that plays an unreliable disk (power cuts, write and fsync
        // errors). Only test targets depend on it.
        .target(name: "CKamiFaultVFS", dependencies: ["CSQLite"]),

        // Pure domain: model, state machines, limits, errors. No I/O, no C.
        .target(name: "KamiCore", swiftSettings: strict),
        // Sealing, hashing, MACs and randomness over OpenSSL.
        .target(name: "KamiCrypto", dependencies: ["KamiCore", "COpenSSL"], swiftSettings: strict),
        // Streaming CSV reading and writing for code import and export (pure, fuzzable).
        // Excel workbooks (.xlsx): a ZIP reader over the system zlib and a small XML reader,
        // streaming a sheet's rows within fixed bounds.
        .target(name: "KamiXLSX", dependencies: ["CZlib"], swiftSettings: strict),
        .target(name: "KamiCSV", dependencies: ["KamiCore", "KamiXLSX"], swiftSettings: strict),
        // The in-memory sharded pool of available codes.
        .target(name: "KamiPool", dependencies: ["KamiCore"], swiftSettings: strict),
        // Money: the ledger's accounts and journal lines, balances (pure: the store writes the
        // lines, the engine decides them).
        .target(name: "KamiLedger", dependencies: ["KamiCore"], swiftSettings: strict),
        // SQLite WAL persistence: schema, migrations, group-commit writer, recovery, audit chain.
        .target(
            name: "KamiStore",
            dependencies: ["KamiCore", "KamiCrypto", "KamiCSV", "KamiLedger", "CSQLite", "CKamiLinux"],
            swiftSettings: strict
        ),
        // The operations over pool + store: the one API the server calls.
        .target(
            name: "KamiEngine",
            dependencies: ["KamiCore", "KamiPool", "KamiStore", "KamiCrypto", "KamiCSV", "KamiLedger", "KamiXLSX", "CKamiLinux"],
            swiftSettings: strict
        ),

        // HTTP/1.1 and TLS over OpenSSL: parser, client, server, one epoll loop. Shared by
        // supplier calls and callbacks, the simulators, the metrics port and its dashboard (and, next, webhooks).
        .target(name: "KamiHTTP", dependencies: ["COpenSSL", "CKamiLinux", "KamiCore"], swiftSettings: strict),
        // Upstream suppliers: config, the generic API's shapes, routing, breakers, the
        // service that fulfils orders pending upstream through the engine.
        .target(
            name: "KamiUpstream",
            dependencies: ["KamiCore", "KamiEngine", "KamiHTTP", "KamiCrypto", "KamiProtocol", "KamiStore"],
            swiftSettings: strict
        ),

        // Webhooks: signing, retries with backoff, the dispatcher that delivers the outbox the
        // store writes in each event's transaction.
        .target(
            name: "KamiWebhooks",
            dependencies: ["KamiCore", "KamiEngine", "KamiStore", "KamiHTTP", "KamiCrypto", "CKamiLinux"],
            swiftSettings: strict
        ),

        // The risk gate: rules files, fixed-size counters, lists, scores and decisions (pure:
        // no I/O beyond reading its rules file).
        .target(name: "KamiRisk", dependencies: ["KamiCore", "KamiCrypto", "CKamiLinux"], swiftSettings: strict),

        // The dashboard page: a snapshot of plain values in, self-contained HTML with inline SVG
        // out (pure: no I/O; the server builds the snapshot and serves the page).
        .target(name: "KamiDashboard", swiftSettings: strict),

        // Wire codecs: JSON lines and binary frames. Pure, fuzzable: no I/O.
        .target(name: "KamiProtocol", dependencies: ["KamiCore"], swiftSettings: strict),
        // Event loop, listeners, connections, auth, dispatch onto the engine.
        .target(
            name: "KamiServer",
            dependencies: ["KamiCore", "KamiProtocol", "KamiEngine", "KamiStore", "KamiCrypto", "CKamiLinux",
                           "KamiUpstream", "KamiHTTP", "KamiRisk", "KamiLedger", "KamiWebhooks", "KamiDashboard"],
            swiftSettings: strict
        ),
        // Client library for storefronts and our own tools.
        .target(name: "KamiClient", dependencies: ["KamiCore", "KamiProtocol"], swiftSettings: strict),
        .executableTarget(name: "kamid", dependencies: ["KamiServer", "KamiCore"], swiftSettings: strict),
        // kamictl's logic (parsing, requests, output), apart from the client library.
        .target(name: "KamiCtl", dependencies: ["KamiClient", "KamiProtocol", "KamiCore", "KamiXLSX"], swiftSettings: strict),
        .executableTarget(name: "kamictl", dependencies: ["KamiCtl"], swiftSettings: strict),

        // Benchmarks.
        .executableTarget(
            name: "kami-bench",
            dependencies: ["KamiBench", "KamiEngine", "KamiPool", "KamiStore", "KamiCrypto", "KamiCore", "CKamiLinux",
                           "KamiProtocol", "KamiRisk", "KamiXLSX"],
            path: "Benchmarks/kami-bench",
            swiftSettings: strict
        ),
        // kami-bench's parts that tests reach: histogram, driver, adapters, audit, peers.
        .target(
            name: "KamiBench",
            dependencies: ["KamiStore", "KamiCore", "KamiProtocol", "CKamiLinux", "KamiWebhookReceiver"],
            path: "Benchmarks/KamiBench",
            swiftSettings: strict
        ),
        // The fuzzers' targets, also replayed by the regression tests.
        .target(
            name: "KamiFuzzTargets",
            dependencies: ["KamiProtocol", "KamiCSV", "KamiServer", "KamiCore", "KamiHTTP", "KamiUpstream", "KamiStore"],
            path: "Fuzz/KamiFuzzTargets",
            swiftSettings: strict
        ),
        // A webhook receiver that checks signatures and fails a share of deliveries on purpose
        // (kami-bench's kamid-webhooks peer, the webhook and daemon tests).
        .target(name: "KamiWebhookReceiver", dependencies: ["KamiHTTP", "KamiWebhooks", "CKamiLinux", "KamiCore"], path: "Benchmarks/KamiWebhookReceiver",
                swiftSettings: strict),
        // A supplier simulator (the generic API's three shapes, with faults and a ledger).
        .target(name: "KamiSupplierSim", dependencies: ["KamiHTTP", "KamiUpstream"], path: "Benchmarks/KamiSupplierSim",
                swiftSettings: strict),
        .executableTarget(name: "kami-supplier-sim", dependencies: ["KamiSupplierSim", "KamiHTTP", "KamiUpstream"],
                          path: "Benchmarks/kami-supplier-sim", swiftSettings: strict),
        // The echo ceiling for kami-bench: kamid's framing, no work (C, no dependencies).
        .executableTarget(name: "kami-echo", path: "Benchmarks/kami-echo"),

        // A helper process the crash tests run under load and kill with SIGKILL.
        .executableTarget(
            name: "kami-crash-helper",
            dependencies: ["KamiEngine", "KamiStore", "KamiCore", "KamiCrypto"],
            path: "Tests/KamiCrashHelper",
            swiftSettings: strict
        ),

        .testTarget(
            name: "KamiBenchTests",
            dependencies: ["KamiBench", "KamiEngine", "KamiStore", "KamiCrypto", "KamiCore", "kamid", "kami-echo"],
            swiftSettings: strict
        ),
        .testTarget(name: "KamiFuzzTests", dependencies: ["KamiFuzzTargets", "KamiProtocol", "KamiStore"], swiftSettings: strict),
        .testTarget(name: "KamiCoreTests", dependencies: ["KamiCore"], swiftSettings: strict),
        .testTarget(name: "KamiDashboardTests", dependencies: ["KamiDashboard"], swiftSettings: strict),
        .testTarget(name: "KamiRiskTests", dependencies: ["KamiRisk", "KamiCore"], swiftSettings: strict),
        .testTarget(
            name: "KamiWebhooksTests",
            dependencies: ["KamiWebhooks", "KamiEngine", "KamiStore", "KamiHTTP", "KamiCrypto", "KamiCore", "KamiWebhookReceiver"],
            swiftSettings: strict
        ),
        .testTarget(name: "KamiLedgerTests", dependencies: ["KamiLedger", "KamiCore"], swiftSettings: strict),
        .testTarget(
            name: "KamiUpstreamTests",
            dependencies: ["KamiUpstream", "KamiHTTP", "KamiSupplierSim", "KamiEngine", "KamiStore", "KamiCore", "KamiCrypto",
                           "kami-supplier-sim"],
            swiftSettings: strict
        ),
        .testTarget(name: "KamiProtocolTests", dependencies: ["KamiProtocol", "KamiCore"], swiftSettings: strict),
        .testTarget(
            name: "KamiServerTests",
            dependencies: ["KamiServer", "KamiClient", "KamiProtocol", "KamiCore", "KamiEngine", "KamiCrypto", "KamiStore", "kamid", "kamictl",
                           "KamiHTTP", "kami-supplier-sim", "KamiXLSX", "KamiWebhookReceiver", "KamiDashboard"],
            swiftSettings: strict
        ),
        // kamictl's tests stay beside the client's: they share its kamid launcher (Support.swift).
        .testTarget(name: "KamiClientTests", dependencies: ["KamiClient", "KamiCtl", "KamiProtocol", "KamiCore"],
                    swiftSettings: strict),
        .testTarget(name: "KamiCryptoTests", dependencies: ["KamiCrypto", "KamiCore"], swiftSettings: strict),
        .testTarget(name: "KamiCSVTests", dependencies: ["KamiCSV", "KamiCore", "KamiXLSX"], swiftSettings: strict),
        .testTarget(name: "KamiXLSXTests", dependencies: ["KamiXLSX"], exclude: ["Fixtures"], swiftSettings: strict),
        .testTarget(name: "KamiPoolTests", dependencies: ["KamiPool", "KamiCore"], swiftSettings: strict),
        .testTarget(
            name: "KamiStoreTests",
            dependencies: ["KamiStore", "KamiCore", "KamiCrypto", "KamiCSV", "KamiLedger"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KamiEngineTests",
            dependencies: ["KamiEngine", "KamiStore", "KamiPool", "KamiCore", "KamiCrypto", "CKamiLinux", "CKamiFaultVFS",
                           "kami-crash-helper", "KamiXLSX"],
            swiftSettings: strict
        ),
    ]
)

// The libFuzzer driver exists only when asked for (`KAMI_FUZZ=1`, see Fuzz/run): a fuzzer
// build needs -sanitize=fuzzer and the lld linker, which a plain `swift build` or
// `swift test` must never try.
if Context.environment["KAMI_FUZZ"] == "1" {
    package.targets.append(.executableTarget(
        name: "kami-fuzz",
        dependencies: ["KamiFuzzTargets"],
        path: "Fuzz/kami-fuzz",
        swiftSettings: [.unsafeFlags(["-sanitize=fuzzer,address"])],
        linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address", "-use-ld=lld"])]
    ))
    package.products.append(.executable(name: "kami-fuzz", targets: ["kami-fuzz"]))
}
