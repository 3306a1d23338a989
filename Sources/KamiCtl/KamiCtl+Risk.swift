import KamiCore
public import KamiProtocol

extension KamiCtl {
    /// The risk gate's commands (`risk ...`, `audit reveals`).
    public enum RiskCommand: Sendable, Equatable {
        case block(list: String, kind: String, value: String, note: String?)
        case unblock(list: String, kind: String, value: String)
        case list
        /// A request run through the rules without effect: the event and its signals.
        case test(event: String, fields: [String: String])
        case reveals(user: String?, limit: Int?)
        /// The review queue (`review list|show|approve|deny`).
        case reviewList
        case reviewShow(order: String)
        case approve(order: String)
        case deny(order: String)

        /// The request for it.
        func request() throws(UsageError) -> Request {
            switch self {
            case .block(let list, let kind, let value, let note):
                var request = Request(id: .number(1), op: .riskBlock)
                request.list = list
                request.kind = kind
                request.value = value
                request.name = note
                return request
            case .unblock(let list, let kind, let value):
                var request = Request(id: .number(1), op: .riskUnblock)
                request.list = list
                request.kind = kind
                request.value = value
                return request
            case .list:
                return Request(id: .number(1), op: .riskList)
            case .test(let event, let fields):
                var request = Request(id: .number(1), op: .riskTest)
                request.event = event
                request.user = fields["--user"]
                request.ip = fields["--ip"]
                request.device = fields["--device"]
                request.sku = fields["--sku"]
                request.paymentAccount = fields["--payment"]
                request.challengeToken = fields["--challenge-token"]
                func number(_ name: String) throws(UsageError) -> Int64? {
                    guard let text = fields[name] else { return nil }
                    guard let value = Int64(text) else { throw UsageError(message: "\(name) needs an integer, got \(text)", topic: .risk) }
                    return value
                }
                request.qty = try number("--qty").map { Int($0) }
                request.amountCents = try number("--amount")
                request.accountAgeDays = try number("--age-days")
                if let text = fields["--phone-verified"] {
                    guard text == "true" || text == "false" else {
                        throw UsageError(message: "--phone-verified is true or false, got \(text)", topic: .risk)
                    }
                    request.phoneVerified = text == "true"
                }
                return request
            case .reviewList:
                return Request(id: .number(1), op: .reviewList)
            case .reviewShow(let order):
                var request = Request(id: .number(1), op: .order)
                request.order = order
                return request
            case .approve(let order), .deny(let order):
                var request = Request(id: .number(1), op: self == .approve(order: order) ? .reviewApprove : .reviewDeny)
                request.order = order
                return request
            case .reveals(let user, let limit):
                var request = Request(id: .number(1), op: .auditReveals)
                request.user = user
                request.limit = limit
                return request
            }
        }
    }

    static let riskTestOptions: Set<String> = [
        "--user", "--ip", "--device", "--sku", "--qty", "--amount", "--payment", "--age-days", "--phone-verified",
        "--challenge-token",
    ]

    /// Parses `risk SUB ...`.
    static func riskCommand(_ words: [String], help: Bool) throws(UsageError) -> Command {
        if help { return .help(.risk) }
        guard let sub = words.first else {
            throw UsageError(message: "risk takes block, unblock, list or test", topic: .risk)
        }
        let (positionals, options) = try split(Array(words.dropFirst()), valued: Set(["--list", "--note"]).union(riskTestOptions), topic: .risk)
        switch sub {
        case "block", "unblock":
            guard positionals.count == 2, options.keys.allSatisfy({ $0 == "--list" || (sub == "block" && $0 == "--note") }) else {
                throw UsageError(message: "risk \(sub) takes KIND VALUE (kind: user, ip, device, payment)"
                    + (sub == "block" ? " [--list block|allow] [--note TEXT]" : " [--list block|allow]"), topic: .risk)
            }
            let list = options["--list"] ?? "block"
            return .risk(sub == "block"
                ? .block(list: list, kind: positionals[0], value: positionals[1], note: options["--note"])
                : .unblock(list: list, kind: positionals[0], value: positionals[1]))
        case "list":
            guard positionals.isEmpty, options.isEmpty else { throw UsageError(message: "risk list takes nothing", topic: .risk) }
            return .risk(.list)
        case "test":
            guard positionals.count == 1, options.keys.allSatisfy({ riskTestOptions.contains($0) }) else {
                throw UsageError(message: "risk test takes EVENT and signal options", topic: .risk)
            }
            return .risk(.test(event: positionals[0], fields: options))
        default:
            throw UsageError(message: "unknown risk subcommand \(sub)", topic: .risk)
        }
    }

    /// Parses `review list | show ORDER | approve ORDER | deny ORDER`.
    static func reviewCommand(_ words: [String], help: Bool) throws(UsageError) -> Command {
        if help { return .help(.risk) }
        switch (words.first, words.count) {
        case ("list", 1): return .risk(.reviewList)
        case ("show", 2): return .risk(.reviewShow(order: words[1]))
        case ("approve", 2): return .risk(.approve(order: words[1]))
        case ("deny", 2): return .risk(.deny(order: words[1]))
        default: throw UsageError(message: "review takes list, show ORDER, approve ORDER or deny ORDER", topic: .risk)
        }
    }

    /// Parses `audit reveals [--user U] [--limit N]`.
    static func revealsCommand(_ words: [String]) throws(UsageError) -> Command {
        let (positionals, options) = try split(words, valued: ["--user", "--limit"], topic: .risk)
        guard positionals.isEmpty else { throw UsageError(message: "audit reveals takes --user U and --limit N", topic: .risk) }
        var limit: Int? = nil
        if let text = options["--limit"] {
            guard let value = Int(text), value > 0 else { throw UsageError(message: "--limit needs a positive integer", topic: .risk) }
            limit = value
        }
        return .risk(.reveals(user: options["--user"], limit: limit))
    }

    /// Text for a risk command's reply.
    static func describeRisk(_ command: RiskCommand, _ reply: ReplyBody) -> String {
        func rows(_ fields: [(String, JSONValue)], _ name: String) -> [[(String, JSONValue)]] {
            guard case .array(let items) = Format.value(fields, name) else { return [] }
            return items.compactMap { if case .object(let members) = $0 { members } else { nil } }
        }
        func get(_ row: [(String, JSONValue)], _ name: String) -> String {
            row.first { $0.0 == name }.map { Format.inline($0.1) } ?? "-"
        }
        switch (command, reply) {
        case (.test, .fields(let fields)):
            let fired = Format.value(fields, "rules").flatMap { value -> [String]? in
                guard case .array(let items) = value else { return nil }
                return items.compactMap { if case .string(let name) = $0 { name } else { nil } }
            } ?? []
            let shadow = Format.value(fields, "shadow_rules").flatMap { value -> [String]? in
                guard case .array(let items) = value else { return nil }
                return items.compactMap { if case .string(let name) = $0 { name } else { nil } }
            } ?? []
            return "decision \(Format.text(fields, "decision") ?? "?") (\(Format.text(fields, "reason") ?? "?")), "
                + "score \(Format.int(fields, "score") ?? 0)"
                + (fired.isEmpty ? "" : ", rules \(fired.joined(separator: ", "))")
                + (shadow.isEmpty ? "" : ", shadow \(shadow.joined(separator: ", "))") + "\n"
        case (.list, .fields(let fields)):
            var out = "LIST   KIND     VALUE  SOURCE  NOTE\n"
            for row in rows(fields, "entries") {
                out += ["list", "kind", "value", "source", "note"].map { get(row, $0) }.joined(separator: "  ") + "\n"
            }
            out += "\nRULE  KIND  MODE  FIRED  SHADOW_FIRED\n"
            for row in rows(fields, "rules") {
                let mode = row.first { $0.0 == "shadow" }?.1 == .bool(true) ? "shadow" : "enforce"
                out += [get(row, "name"), get(row, "kind"), mode, get(row, "fired"), get(row, "shadow_fired")].joined(separator: "  ") + "\n"
            }
            return out
        case (.reviewList, .fields(let fields)):
            let list = rows(fields, "orders")
            guard !list.isEmpty else { return "no orders held for review\n" }
            var out = "ORDER  USER  SKU  QTY  PAID  CODES  EXPIRES_AT_MS\n"
            for row in list {
                out += ["order", "user", "sku", "qty", "paid", "codes", "expires_at_ms"].map { get(row, $0) }.joined(separator: "  ") + "\n"
            }
            return out
        case (.approve(let order), .fields(let fields)), (.deny(let order), .fields(let fields)):
            return "order \(order): \(Format.text(fields, "state") ?? "?")\n"
        case (.reviewShow, .order(let order)):
            return Format.order(order, secretsShown: false)
        case (.reveals, .fields(let fields)):
            let list = rows(fields, "reveals")
            guard !list.isEmpty else { return "no reveals\n" }
            return list.map { "\(get($0, "at_ms")) \(get($0, "subject")) \(get($0, "detail"))" }.joined(separator: "\n") + "\n"
        case (_, .fields(let fields)):
            return Format.fields(fields)
        default:
            return "\(reply)\n"
        }
    }
}
