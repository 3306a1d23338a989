import KamiClient
import Glibc

extension KamiCtl {
    /// Parses a command line (without the program name).
    ///
    /// The global options `--socket PATH`, `--json`, `--timeout SECONDS` and `--help` may
    /// stand anywhere before a `--`; the first other word is the command. `--opt=value`
    /// and `--opt value` are both accepted. The socket is `--socket`, else
    /// `$KAMI_SOCKET`, else `KamiEndpoint.defaultUnixPath`.
    public static func parse(_ arguments: [String], environment: [String: String]) -> Result<Invocation, UsageError> {
        var globals = GlobalOptions()
        let words: [String]
        do throws(UsageError) {
            words = try globals.extract(from: arguments)
        } catch {
            return .failure(error)
        }
        let socketPath = globals.socket ?? environment[socketEnvironmentVariable].flatMap { $0.isEmpty ? nil : $0 }
            ?? KamiEndpoint.defaultUnixPath
        func invocation(_ command: Command) -> Invocation {
            Invocation(socketPath: socketPath, json: globals.json, timeoutMs: globals.timeoutMs,
                       progress: !globals.json && !globals.quiet, command: command)
        }
        do throws(UsageError) {
            return .success(invocation(try command(words, help: globals.help)))
        } catch {
            return .failure(error)
        }
    }

    /// The options every command takes, removed from the line wherever they stand.
    private struct GlobalOptions {
        var socket: String?
        var json = false
        var timeoutMs = KamiCtl.requestTimeoutMsDefault
        var help = false
        var quiet = false

        /// Takes the global options out of `arguments` and returns the other words.
        mutating func extract(from arguments: [String]) throws(UsageError) -> [String] {
            var words: [String] = []
            var index = 0
            while index < arguments.count {
                let argument = arguments[index]
                index += 1
                if argument == "--" {
                    words.append(contentsOf: arguments[(index - 1)...])
                    break
                }
                let (name, inline) = splitOption(argument)
                func value() throws(UsageError) -> String {
                    if let inline { return inline }
                    guard index < arguments.count else {
                        throw UsageError(message: "\(name) needs a value", topic: .general)
                    }
                    index += 1
                    return arguments[index - 1]
                }
                switch name {
                case "--socket":
                    let path = try value()
                    guard !path.isEmpty else { throw UsageError(message: "--socket needs a path", topic: .general) }
                    socket = path
                case "--json":
                    json = true
                case "--quiet", "-q":
                    quiet = true
                case "--timeout":
                    let text = try value()
                    let maxSeconds = ClientLimits.timeoutMsMax / 1000
                    guard let seconds = Int(text), seconds >= 1, seconds <= maxSeconds else {
                        throw UsageError(message: "--timeout takes whole seconds from 1 to \(maxSeconds), got \(text)",
                                         topic: .general)
                    }
                    timeoutMs = seconds * 1000
                case "-h", "--help":
                    help = true
                default:
                    words.append(argument)
                }
            }
            return words
        }
    }

    /// Splits `--name=value` into its parts; other words come back whole with no value.
    static func splitOption(_ argument: String) -> (String, String?) {
        guard argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") else { return (argument, nil) }
        return (String(argument[..<equals]), String(argument[argument.index(after: equals)...]))
    }

    private static func command(_ words: [String], help: Bool) throws(UsageError) -> Command {
        guard let name = words.first else {
            if help { return .help(.general) }
            throw UsageError(message: "no command given", topic: .general)
        }
        let rest = Array(words.dropFirst())
        switch name {
        case "help":
            guard let topicName = rest.first else { return .help(.general) }
            let joined = rest.prefix(2).joined(separator: " ")
            guard let topic = Topic(rawValue: joined) ?? Topic(rawValue: topicName) else {
                throw UsageError(message: "no help on \(topicName)", topic: .general)
            }
            return .help(topic)
        case "sku":
            switch rest.first {
            case "set":
                if help { return .help(.skuSet) }
                return try skuSet(Array(rest.dropFirst()))
            case "list":
                if help { return .help(.skuList) }
                _ = try ParsedOptions(Array(rest.dropFirst()), topic: .skuList, positionals: 0...0)
                return .skuList
            case "source":
                return try skuSourceCommand(Array(rest.dropFirst()), help: help)
            default:
                if help && rest.isEmpty { return .help(.skuSet) }
                throw UsageError(message: "sku takes the subcommand set, list or source", topic: .general)
            }
        case "audit":
            if rest.first == "reveals" {
                if help { return .help(.risk) }
                return try revealsCommand(Array(rest.dropFirst()))
            }
            guard rest.first == "verify" else {
                if help && rest.isEmpty { return .help(.auditVerify) }
                throw UsageError(message: "audit takes the subcommand verify", topic: .auditVerify)
            }
            if help { return .help(.auditVerify) }
            _ = try ParsedOptions(Array(rest.dropFirst()), topic: .auditVerify, positionals: 0...0)
            return .auditVerify
        case "token":
            guard rest.first == "new" else {
                if help && rest.isEmpty { return .help(.tokenNew) }
                throw UsageError(message: "token takes the subcommand new", topic: .tokenNew)
            }
            if help { return .help(.tokenNew) }
            let parsed = try ParsedOptions(Array(rest.dropFirst()), topic: .tokenNew, positionals: 1...1)
            return .tokenNew(client: parsed.positionals[0])
        case "deliver":
            if help { return .help(.deliver) }
            let parsed = try ParsedOptions(
                rest, topic: .deliver, valued: ["--secret-file", "--cost"], flags: ["--from-pool"], positionals: 1...1)
            let file = parsed.values["--secret-file"]
            let fromPool = parsed.flags.contains("--from-pool")
            guard (file != nil) != fromPool else {
                throw UsageError(message: "deliver takes exactly one of --secret-file F and --from-pool", topic: .deliver)
            }
            var cost: Int64?
            if let text = parsed.values["--cost"] {
                guard !fromPool else { throw UsageError(message: "--cost goes with --secret-file", topic: .deliver) }
                guard let value = Int64(text), value >= 0 else {
                    throw UsageError(message: "--cost takes an integer number of cents >= 0, got \(text)", topic: .deliver)
                }
                cost = value
            }
            return .deliver(order: parsed.positionals[0], secretFile: file, costCents: cost)
        case "export":
            if help { return .help(.export) }
            let parsed = try ParsedOptions(
                rest, topic: .export, valued: ["--sku", "--out"], flags: ["--with-secrets", "--force"], positionals: 0...0)
            guard let sku = parsed.values["--sku"] else { throw UsageError(message: "export needs --sku SKU", topic: .export) }
            return .export(sku: sku, path: parsed.values["--out"], withSecrets: parsed.flags.contains("--with-secrets"),
                           force: parsed.flags.contains("--force"))
        case "entitlements":
            if help { return .help(.entitlements) }
            let parsed = try ParsedOptions(rest, topic: .entitlements, valued: ["--limit", "--cursor"],
                                           flags: ["--show-secrets"], positionals: 1...1)
            var limit: Int?
            if let text = parsed.values["--limit"] {
                guard let value = Int(text), value >= 1 else {
                    throw UsageError(message: "--limit needs a positive number, got \(text)", topic: .entitlements)
                }
                limit = value
            }
            return .entitlements(user: parsed.positionals[0], showSecrets: parsed.flags.contains("--show-secrets"),
                                 limit: limit, cursor: parsed.values["--cursor"])
        case "void":
            if help { return .help(.void) }
            let parsed = try ParsedOptions(rest, topic: .void, valued: ["--batch"], positionals: 0...1)
            switch (parsed.positionals.first, parsed.values["--batch"]) {
            case (let code?, nil):
                guard let id = Int64(code), id > 0 else {
                    throw UsageError(message: "CODE_ID is a positive integer, got \(code)", topic: .void)
                }
                return .voidCode(id)
            case (nil, let batch?):
                return .voidBatch(batch)
            default:
                throw UsageError(message: "void takes either a CODE_ID or --batch B", topic: .void)
            }
        case "refund":
            if help { return .help(.refund) }
            let parsed = try ParsedOptions(rest, topic: .refund, positionals: 1...1)
            return .refund(order: parsed.positionals[0])
        case "reload":
            if help { return .help(.reload) }
            _ = try ParsedOptions(rest, topic: .reload, positionals: 0...0)
            return .reload
        case "import":
            if help { return .help(.importCSV) }
            return try importCSV(rest)
        case "stock":
            if help { return .help(.stock) }
            let parsed = try ParsedOptions(rest, topic: .stock, positionals: 0...1)
            return .stock(sku: parsed.positionals.first)
        case "order":
            if help { return .help(.order) }
            let parsed = try ParsedOptions(rest, topic: .order, flags: ["--show-secrets"], positionals: 1...1)
            return .order(id: parsed.positionals[0], showSecrets: parsed.flags.contains("--show-secrets"))
        case "verify":
            if help { return .help(.verify) }
            _ = try ParsedOptions(rest, topic: .verify, positionals: 0...0)
            return .verify
        case "supplier":
            return try supplierCommand(rest, help: help)
        case "upstream":
            return try upstreamCommand(rest, help: help)
        case "risk":
            return try riskCommand(rest, help: help)
        case "review":
            return try reviewCommand(rest, help: help)
        case "campaign":
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            return try campaignCommand(rest, help: help, nowMs: Int64(now.tv_sec) * 1_000 + Int64(now.tv_nsec) / 1_000_000)
        case "coupon":
            return try couponCommand(rest, help: help)
        case "case":
            return try caseCommand(rest, help: help)
        case "webhooks":
            return try webhooksCommand(rest, help: help)
        case "report":
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            return try reportCommand(rest, help: help, nowMs: Int64(now.tv_sec) * 1_000 + Int64(now.tv_nsec) / 1_000_000)
        case "reconcile":
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            return try reconcileCommand(rest, help: help, nowMs: Int64(now.tv_sec) * 1_000 + Int64(now.tv_nsec) / 1_000_000)
        case "distributor":
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            return try distributorCommand(rest, help: help, nowMs: Int64(now.tv_sec) * 1_000 + Int64(now.tv_nsec) / 1_000_000)
        case "stats":
            if help { return .help(.stats) }
            _ = try ParsedOptions(rest, topic: .stats, positionals: 0...0)
            return .stats
        default:
            throw UsageError(message: "unknown command \(name)", topic: .general)
        }
    }

    private static func skuSet(_ words: [String]) throws(UsageError) -> Command {
        let parsed = try ParsedOptions(
            words, topic: .skuSet,
            valued: ["--name", "--price", "--per-user-limit", "--activation-url", "--manual-delivery", "--review-ttl", "--bundle",
                     "--usage-guide"],
            positionals: 1...1)
        var priceCents: Int64?
        if let text = parsed.values["--price"] {
            guard let value = Int64(text), value >= 0 else {
                throw UsageError(message: "--price takes an integer number of cents >= 0, got \(text)", topic: .skuSet)
            }
            priceCents = value
        }
        var perUserLimit: Int?
        if let text = parsed.values["--per-user-limit"] {
            guard let value = Int(text), value >= 0 else {
                throw UsageError(message: "--per-user-limit takes an integer >= 0, got \(text)", topic: .skuSet)
            }
            perUserLimit = value
        }
        var manualDelivery: Bool?
        if let text = parsed.values["--manual-delivery"] {
            guard text == "on" || text == "off" else {
                throw UsageError(message: "--manual-delivery takes on or off, got \(text)", topic: .skuSet)
            }
            manualDelivery = text == "on"
        }
        var reviewTTLMs: Int64?
        if let text = parsed.values["--review-ttl"] {
            guard let value = Int64(text), value >= 0 else {
                throw UsageError(message: "--review-ttl takes milliseconds >= 0 (0: kamid's review_ttl_ms), got \(text)",
                                 topic: .skuSet)
            }
            reviewTTLMs = value
        }
        return .skuSet(sku: parsed.positionals[0], name: parsed.values["--name"], priceCents: priceCents,
                       perUserLimit: perUserLimit, activationURL: parsed.values["--activation-url"],
                       manualDelivery: manualDelivery, reviewTTLMs: reviewTTLMs, bundle: parsed.values["--bundle"],
                       usageGuide: parsed.values["--usage-guide"].map { $0.replacing("\\n", with: "\n") })
    }

    private static func importCSV(_ words: [String]) throws(UsageError) -> Command {
        let parsed = try ParsedOptions(
            words, topic: .importCSV, valued: ["--sku", "--batch", "--sheet"], flags: ["--dry-run"], positionals: 1...1)
        guard let sku = parsed.values["--sku"] else {
            throw UsageError(message: "import needs --sku SKU", topic: .importCSV)
        }
        if parsed.values["--sheet"] != nil && !parsed.positionals[0].lowercased().hasSuffix(".xlsx") {
            throw UsageError(message: "--sheet names a worksheet of an .xlsx file", topic: .importCSV)
        }
        return .importCSV(path: parsed.positionals[0], sku: sku, batch: parsed.values["--batch"],
                          dryRun: parsed.flags.contains("--dry-run"), sheet: parsed.values["--sheet"])
    }

    /// A command's own options and positional words.
    private struct ParsedOptions {
        var values: [String: String] = [:]
        var flags: Set<String> = []
        var positionals: [String] = []

        /// Parses `words` against the options a command takes. Everything after `--` is
        /// positional (a file named `-x.csv`). An option given twice is an error rather
        /// than a silent last-one-wins.
        init(
            _ words: [String], topic: Topic, valued: Set<String> = [], flags allowed: Set<String> = [],
            positionals count: ClosedRange<Int>
        ) throws(UsageError) {
            var index = 0
            var optionsEnded = false
            while index < words.count {
                let word = words[index]
                index += 1
                if optionsEnded || !word.hasPrefix("-") || word == "-" {
                    positionals.append(word)
                    continue
                }
                if word == "--" {
                    optionsEnded = true
                    continue
                }
                let (name, inline) = KamiCtl.splitOption(word)
                guard values[name] == nil && !flags.contains(name) else {
                    throw UsageError(message: "\(name) is given twice", topic: topic)
                }
                if valued.contains(name) {
                    if let inline {
                        values[name] = inline
                    } else {
                        guard index < words.count else {
                            throw UsageError(message: "\(name) needs a value", topic: topic)
                        }
                        values[name] = words[index]
                        index += 1
                    }
                } else if allowed.contains(name) && inline == nil {
                    flags.insert(name)
                } else {
                    throw UsageError(message: "unknown option \(word)", topic: topic)
                }
            }
            guard count.contains(positionals.count) else {
                let expected = count.lowerBound == count.upperBound
                    ? "\(count.lowerBound)" : "\(count.lowerBound) to \(count.upperBound)"
                let got = positionals.isEmpty ? "none" : positionals.joined(separator: " ")
                throw UsageError(message: "expected \(expected) argument\(expected == "1" ? "" : "s"), got \(got)",
                                 topic: topic)
            }
        }
    }
}
