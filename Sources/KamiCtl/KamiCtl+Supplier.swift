import Glibc
import KamiCore
public import KamiProtocol

extension KamiCtl {
    /// The supplier and upstream commands (`supplier ...`, `sku source`, `upstream ...`).
    public enum UpstreamCommand: Sendable, Equatable {
        case list
        case show(supplier: String)
        case map(sku: String, supplier: String, product: String, costCents: Int64, priority: Int64?, weight: Int64?)
        case unmap(sku: String, supplier: String)
        case pause(supplier: String)
        case resume(supplier: String)
        case sync
        case reconcile(supplier: String, sinceMs: Int64?, untilMs: Int64?, statement: String?)
        case source(sku: String, policy: String?, strategy: String?, minMarginCents: Int64?, noCandidate: String?, lowWater: Int64?,
                    buyAheadUnits: Int64? = nil, budgetCents: Int64? = nil)
        case failed
        case retry(order: String)
        case refund(order: String)

        /// The request for it (paths made absolute against `currentDirectory`).
        func request(currentDirectory: String) -> Request {
            func make(_ op: KamiProtocol.Operation, _ fill: (inout Request) -> Void = { _ in }) -> Request {
                var request = Request(id: .number(1), op: op)
                fill(&request)
                return request
            }
            switch self {
            case .list: return make(.supplierList)
            case .show(let supplier): return make(.supplierShow) { $0.supplier = supplier }
            case .map(let sku, let supplier, let product, let cost, let priority, let weight):
                return make(.supplierMap) {
                    $0.sku = sku
                    $0.supplier = supplier
                    $0.product = product
                    $0.costCents = cost
                    $0.priority = priority
                    $0.weight = weight
                }
            case .unmap(let sku, let supplier):
                return make(.supplierUnmap) {
                    $0.sku = sku
                    $0.supplier = supplier
                }
            case .pause(let supplier): return make(.supplierPause) { $0.supplier = supplier }
            case .resume(let supplier): return make(.supplierResume) { $0.supplier = supplier }
            case .sync: return make(.supplierSync)
            case .reconcile(let supplier, let since, let until, let statement):
                return make(.supplierReconcile) {
                    $0.supplier = supplier
                    $0.sinceMs = since
                    $0.untilMs = until
                    $0.path = statement.map { absolutePath($0, currentDirectory: currentDirectory) }
                }
            case .source(let sku, let policy, let strategy, let margin, let noCandidate, let lowWater, let units, let budget):
                return make(.skuSource) {
                    $0.buyAheadUnits = units
                    $0.buyAheadBudgetCents = budget
                    $0.sku = sku
                    $0.sourcePolicy = policy
                    $0.strategy = strategy
                    $0.minMarginCents = margin
                    $0.noCandidate = noCandidate
                    $0.lowWater = lowWater
                }
            case .failed: return make(.upstreamFailed)
            case .retry(let order): return make(.upstreamRetry) { $0.order = order }
            case .refund(let order): return make(.refund) { $0.order = order }
            }
        }
    }

    /// Parses `supplier SUB ...`.
    static func supplierCommand(_ words: [String], help: Bool) throws(UsageError) -> Command {
        if help { return .help(.supplier) }
        guard let sub = words.first else {
            throw UsageError(message: "supplier takes list, show, map, unmap, pause, resume, sync or reconcile", topic: .supplier)
        }
        let rest = Array(words.dropFirst())
        func exactly(_ count: Int) throws(UsageError) -> [String] {
            let positionals = rest.filter { !$0.hasPrefix("--") }
            guard positionals.count == count, positionals.count == rest.count else {
                throw UsageError(message: "supplier \(sub) takes \(count) argument\(count == 1 ? "" : "s")", topic: .supplier)
            }
            return positionals
        }
        switch sub {
        case "list":
            _ = try exactly(0)
            return .upstream(.list)
        case "show": return .upstream(.show(supplier: try exactly(1)[0]))
        case "pause": return .upstream(.pause(supplier: try exactly(1)[0]))
        case "resume": return .upstream(.resume(supplier: try exactly(1)[0]))
        case "sync":
            _ = try exactly(0)
            return .upstream(.sync)
        case "unmap":
            let args = try exactly(2)
            return .upstream(.unmap(sku: args[0], supplier: args[1]))
        case "map":
            let (positionals, options) = try split(rest, valued: ["--priority", "--weight"], topic: .supplier)
            guard positionals.count == 4 else {
                throw UsageError(message: "supplier map takes SKU SUPPLIER PRODUCT COST_CENTS", topic: .supplier)
            }
            guard let cost = Int64(positionals[3]), cost >= 0 else {
                throw UsageError(message: "COST_CENTS is an integer >= 0, got \(positionals[3])", topic: .supplier)
            }
            return .upstream(.map(sku: positionals[0], supplier: positionals[1], product: positionals[2], costCents: cost,
                                  priority: try integer(options["--priority"], "--priority", topic: .supplier),
                                  weight: try integer(options["--weight"], "--weight", topic: .supplier)))
        case "reconcile":
            let (positionals, options) = try split(rest, valued: ["--from", "--to", "--statement"], topic: .supplier)
            guard positionals.count == 1 else { throw UsageError(message: "supplier reconcile takes SUPPLIER", topic: .supplier) }
            return .upstream(.reconcile(supplier: positionals[0], sinceMs: try time(options["--from"]),
                                        untilMs: try time(options["--to"]), statement: options["--statement"]))
        default:
            throw UsageError(message: "unknown supplier subcommand \(sub)", topic: .supplier)
        }
    }

    /// Parses `sku source SKU ...`.
    static func skuSourceCommand(_ words: [String], help: Bool) throws(UsageError) -> Command {
        if help { return .help(.skuSource) }
        let (positionals, options) = try split(
            words, valued: ["--policy", "--strategy", "--min-margin", "--no-candidate", "--low-water", "--buy-ahead", "--budget"],
            topic: .skuSource)
        guard positionals.count == 1 else { throw UsageError(message: "sku source takes SKU", topic: .skuSource) }
        return .upstream(.source(
            sku: positionals[0], policy: options["--policy"], strategy: options["--strategy"],
            minMarginCents: try integer(options["--min-margin"], "--min-margin", topic: .skuSource),
            noCandidate: options["--no-candidate"],
            lowWater: try integer(options["--low-water"], "--low-water", topic: .skuSource),
            buyAheadUnits: try integer(options["--buy-ahead"], "--buy-ahead", topic: .skuSource),
            budgetCents: try integer(options["--budget"], "--budget", topic: .skuSource)))
    }

    /// Parses `upstream SUB ...`.
    static func upstreamCommand(_ words: [String], help: Bool) throws(UsageError) -> Command {
        if help { return .help(.upstream) }
        switch (words.first, words.count) {
        case ("failed", 1): return .upstream(.failed)
        case ("retry", 2): return .upstream(.retry(order: words[1]))
        case ("refund", 2): return .upstream(.refund(order: words[1]))
        default: throw UsageError(message: "upstream takes failed, retry ORDER or refund ORDER", topic: .upstream)
        }
    }

    static func split(
        _ words: [String], valued: Set<String>, topic: Topic
    ) throws(UsageError) -> ([String], [String: String]) {
        var positionals: [String] = []
        var options: [String: String] = [:]
        var index = 0
        while index < words.count {
            let word = words[index]
            index += 1
            guard word.hasPrefix("--") else {
                positionals.append(word)
                continue
            }
            let (name, inline) = splitOption(word)
            guard valued.contains(name) else { throw UsageError(message: "unknown option \(word)", topic: topic) }
            guard options[name] == nil else { throw UsageError(message: "\(name) is given twice", topic: topic) }
            if let inline {
                options[name] = inline
            } else {
                guard index < words.count else { throw UsageError(message: "\(name) needs a value", topic: topic) }
                options[name] = words[index]
                index += 1
            }
        }
        return (positionals, options)
    }

    private static func integer(_ text: String?, _ name: String, topic: Topic) throws(UsageError) -> Int64? {
        guard let text else { return nil }
        guard let value = Int64(text) else { throw UsageError(message: "\(name) needs an integer, got \(text)", topic: topic) }
        return value
    }

    /// `--from`/`--to`: Unix ms, or a UTC date `YYYY-MM-DD` (its midnight).
    private static func time(_ text: String?) throws(UsageError) -> Int64? {
        guard let text else { return nil }
        if let ms = Int64(text) { return ms }
        let parts = text.split(separator: "-").compactMap { Int32($0) }
        guard parts.count == 3, text.count == 10 else {
            throw UsageError(message: "expected Unix ms or YYYY-MM-DD, got \(text)", topic: .supplier)
        }
        var fields = tm()
        fields.tm_year = parts[0] - 1900
        fields.tm_mon = parts[1] - 1
        fields.tm_mday = parts[2]
        return Int64(timegm(&fields)) * 1_000
    }

    /// Text for a supplier command's reply.
    static func describeUpstream(_ command: UpstreamCommand, _ fields: [(String, JSONValue)]) -> String {
        func rows(_ name: String) -> [[(String, JSONValue)]] {
            guard case .array(let items) = Format.value(fields, name) else { return [] }
            return items.compactMap { if case .object(let members) = $0 { members } else { nil } }
        }
        func get(_ row: [(String, JSONValue)], _ name: String) -> String {
            row.first { $0.0 == name }.map { Format.inline($0.1) } ?? "-"
        }
        switch command {
        case .list:
            let list = rows("suppliers")
            guard !list.isEmpty else { return "no suppliers\n" }
            var out = "SUPPLIER  STYLE  BREAKER  PAUSED  IN_FLIGHT  ATTEMPTS  FAILURES  P95_MS  SUCCESS%  SKUS\n"
            for row in list {
                out += ["supplier", "style", "breaker", "paused", "in_flight", "attempts", "failures", "p95_ms",
                        "success_rate_pct", "mapped_skus"].map { get(row, $0) }.joined(separator: "  ") + "\n"
            }
            return out
        case .failed:
            let list = rows("orders")
            guard !list.isEmpty else { return "no failed upstream orders\n" }
            return list.map { row in
                "\(get(row, "order")) user \(get(row, "user")) sku \(get(row, "sku")) qty \(get(row, "qty")): "
                    + get(row, "attempts")
            }.joined(separator: "\n") + "\n"
        case .reconcile:
            let mismatches = rows("mismatches")
            var out = "supplier \(Format.text(fields, "supplier") ?? "?"): \(Format.int(fields, "attempts") ?? 0) attempts, "
                + "\(Format.int(fields, "matched") ?? 0) matched, \(mismatches.count) mismatch\(mismatches.count == 1 ? "" : "es")\n"
            for row in mismatches {
                out += "  \(get(row, "order")): \(get(row, "kind")) (here \(get(row, "here")), there \(get(row, "there")))\n"
            }
            return out
        default:
            return Format.fields(fields)
        }
    }
}
