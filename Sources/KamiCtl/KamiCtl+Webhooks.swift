import KamiCore
import KamiProtocol

extension KamiCtl {
    /// `webhooks ...`: the outbox of signed webhooks (docs/webhooks.md).
    public enum WebhookCommand: Sendable, Equatable {
        /// `webhooks failed|pending|delivered [--endpoint NAME] [--limit N]`.
        case list(state: String, endpoint: String?, limit: Int?)
        /// `webhooks replay ID[,ID...] | --all [--endpoint NAME]`: dead letters queued again.
        case replay(ids: [Int64], endpoint: String?)

        func request() -> Request {
            switch self {
            case .list(let state, let endpoint, let limit):
                var request = Request(id: .number(1), op: .webhookList)
                request.kind = state == "failed" ? "dead" : state
                request.name = endpoint
                request.limit = limit
                return request
            case .replay(let ids, let endpoint):
                var request = Request(id: .number(1), op: .webhookReplay)
                request.value = ids.isEmpty ? "all" : ids.map(String.init).joined(separator: ",")
                request.name = endpoint
                return request
            }
        }
    }

    /// Parses `webhooks ...`.
    static func webhooksCommand(_ words: [String], help: Bool) throws(UsageError) -> Command {
        if help { return .help(.webhooks) }
        var rest = Array(words.dropFirst())
        let all = rest.contains("--all")
        rest.removeAll { $0 == "--all" }
        let (positionals, options) = try split(rest, valued: ["--endpoint", "--limit"], topic: .webhooks)
        switch words.first {
        case "failed", "pending", "delivered":
            guard positionals.isEmpty, !all else {
                throw UsageError(message: "webhooks \(words[0]) takes [--endpoint NAME] [--limit N]", topic: .webhooks)
            }
            var limit: Int?
            if let text = options["--limit"] {
                guard let value = Int(text), (1...Limits.webhookEventsPerCallMax).contains(value) else {
                    throw UsageError(message: "--limit takes 1...\(Limits.webhookEventsPerCallMax)", topic: .webhooks)
                }
                limit = value
            }
            return .webhooks(.list(state: words[0], endpoint: options["--endpoint"], limit: limit))
        case "replay":
            guard options["--limit"] == nil else { throw UsageError(message: "webhooks replay takes no --limit", topic: .webhooks) }
            var ids: [Int64] = []
            for word in positionals {
                for part in word.split(separator: ",") {
                    guard let id = Int64(part), id > 0 else {
                        throw UsageError(message: "webhooks replay takes event ids (from `webhooks failed`), got \(word)", topic: .webhooks)
                    }
                    ids.append(id)
                }
            }
            guard ids.isEmpty == all else {
                throw UsageError(message: "webhooks replay takes event ids or --all, one of the two", topic: .webhooks)
            }
            guard all || options["--endpoint"] == nil else {
                throw UsageError(message: "--endpoint goes with --all (event ids name their endpoint already)", topic: .webhooks)
            }
            return .webhooks(.replay(ids: ids, endpoint: options["--endpoint"]))
        default:
            throw UsageError(message: "webhooks takes failed, pending, delivered or replay", topic: .webhooks)
        }
    }

    /// What a `webhooks` reply says, for a person.
    static func describeWebhooks(_ command: WebhookCommand, _ fields: [(String, JSONValue)]) -> String {
        switch command {
        case .replay:
            let count = Format.int(fields, "replayed") ?? 0
            return "\(count) event\(count == 1 ? "" : "s") queued again\n"
        case .list(let state, _, _):
            guard case .array(let items) = Format.value(fields, "events") else { return "no events\n" }
            let rows = items.compactMap { if case .object(let members) = $0 { members } else { nil } }
            var text = ""
            if rows.isEmpty {
                text = "no \(state) events\n"
            } else {
                let header = ["ID", "ENDPOINT", "TYPE", "ATTEMPTS", "CREATED_MS", "LAST_ERROR", "DATA"]
                text = Format.table([header] + rows.map { row in
                    ["id", "endpoint", "type", "attempts", "created_ms", "last_error", "data"].map {
                        Format.text(row, $0) ?? Format.int(row, $0).map(String.init) ?? "-"
                    }
                })
            }
            if case .object(let totals)? = Format.value(fields, "totals"), !totals.isEmpty {
                text += "outbox: " + totals.map { "\($0.0) \(Format.int([$0], $0.0) ?? 0)" }.joined(separator: ", ") + "\n"
            }
            return text
        }
    }
}
