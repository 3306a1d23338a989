import Foundation
import KamiCore
import KamiProtocol
import KamiXLSX

extension KamiCtl {
    /// `campaign ...` and `coupon ...`: promotions (docs/money.md).
    public enum MoneyCommand: Sendable, Equatable {
        /// `campaign set KEY --sku S (--price C | --discount C) [--from T] --to T --budget C [--per-user N]`.
        case campaignSet(key: String, sku: String, priceCents: Int64?, discountCents: Int64?, fromMs: Int64?, toMs: Int64,
                         budgetCents: Int64, perUser: Int?)
        case campaignList
        /// `coupon add BATCH --discount C [--per-user N] (--file F | --generate N [--out F])`.
        case couponAdd(batch: String, discountCents: Int64, perUser: Int?, file: String?, generate: Int?, out: String?)
        case couponList
        /// `distributor set D --rate R% [--sku S]`.
        case distributorSet(key: String, rateBps: Int, sku: String?)
        case distributorList
        /// `distributor statement D [--from T] [--to T]`.
        case distributorStatement(key: String, fromMs: Int64?, toMs: Int64?)
        /// `report sales|payables [--by G] [--from T] [--to T] [--sku S] [--channel C] [--campaign K] [--csv | --xlsx FILE]`.
        case report(name: String, by: String?, fromMs: Int64?, toMs: Int64?, sku: String?, channel: String?, campaign: String?, csv: Bool,
                    days: Int? = nil, xlsx: String? = nil)
        /// `case open ORDER --reason R [--code ID] [--note N]`.
        case caseOpen(order: String, reason: String, code: Int64?, note: String?)
        /// `case list [--all]`.
        case caseList(all: Bool)
        /// `case replace|refund|reject ID [--note N]`.
        case caseResolve(id: Int64, how: String, note: String?)
        /// `reconcile payments FILE [--format F] [--from T --to T]`.
        case reconcilePayments(path: String, format: String?, fromMs: Int64?, toMs: Int64?)
    }

    /// Parses `case ...`.
    static func caseCommand(_ words: [String], help: Bool) throws(UsageError) -> Command {
        if help { return .help(.money) }
        var rest = Array(words.dropFirst())
        let all = rest.contains("--all")
        rest.removeAll { $0 == "--all" }
        let (positionals, options) = try split(rest, valued: ["--reason", "--code", "--note"], topic: .money)
        switch words.first {
        case "open":
            guard positionals.count == 1, let reason = options["--reason"],
                  ["invalid_code", "not_received", "other"].contains(reason) else {
                throw UsageError(message: "case open ORDER --reason invalid_code|not_received|other [--code ID] [--note N]", topic: .money)
            }
            var code: Int64?
            if let text = options["--code"] {
                guard let value = Int64(text), value > 0 else { throw UsageError(message: "--code takes a code id", topic: .money) }
                code = value
            }
            return .money(.caseOpen(order: positionals[0], reason: reason, code: code, note: options["--note"]))
        case "list":
            guard positionals.isEmpty, options.isEmpty else { throw UsageError(message: "case list takes --all", topic: .money) }
            return .money(.caseList(all: all))
        case "replace", "refund", "reject":
            guard positionals.count == 1, let id = Int64(positionals[0]), options["--reason"] == nil, options["--code"] == nil else {
                throw UsageError(message: "case \(words[0]) takes a case id", topic: .money)
            }
            return .money(.caseResolve(id: id, how: words[0], note: options["--note"]))
        default:
            throw UsageError(message: "case takes open, list, replace, refund or reject", topic: .money)
        }
    }

    /// Parses `report ...`.
    static func reportCommand(_ words: [String], help: Bool, nowMs: Int64) throws(UsageError) -> Command {
        if help { return .help(.money) }
        var rest = Array(words.dropFirst())
        let csv = rest.contains("--csv")
        rest.removeAll { $0 == "--csv" }
        let (positionals, options) = try split(rest, valued: ["--by", "--from", "--to", "--sku", "--channel", "--campaign", "--limit",
                                                              "--xlsx"], topic: .money)
        if let file = options["--xlsx"] {
            guard !csv else { throw UsageError(message: "report takes --csv or --xlsx FILE, not both", topic: .money) }
            guard file.lowercased().hasSuffix(".xlsx") else {
                throw UsageError(message: "--xlsx takes a file name ending in .xlsx, got \(file)", topic: .money)
            }
        }
        var days: Int?
        if let text = options["--limit"] {
            guard let value = Int(text), value >= 0, value <= 3_650 else {
                throw UsageError(message: "--limit takes days 0...3650, got \(text)", topic: .money)
            }
            days = value
        }
        guard let name = words.first, ["sales", "payables", "inventory", "repeat", "activation", "flash-sale"].contains(name),
              positionals.isEmpty else {
            throw UsageError(message: "report takes sales, payables, inventory, repeat, activation or flash-sale (with --sku)",
                             topic: .money)
        }
        if let by = options["--by"], !["sku", "channel", "campaign", "source", "day", "week", "month"].contains(by) {
            throw UsageError(message: "--by takes sku, channel, campaign, source, day, week or month, got \(by)", topic: .money)
        }
        return .money(.report(
            name: name, by: options["--by"],
            fromMs: try options["--from"].map { (text: String) throws(UsageError) -> Int64 in try time(text, option: "--from", nowMs: nowMs) },
            toMs: try options["--to"].map { (text: String) throws(UsageError) -> Int64 in try time(text, option: "--to", nowMs: nowMs) },
            sku: options["--sku"], channel: options["--channel"], campaign: options["--campaign"], csv: csv, days: days,
            xlsx: options["--xlsx"]))
    }

    /// Parses `reconcile payments ...`.
    static func reconcileCommand(_ words: [String], help: Bool, nowMs: Int64) throws(UsageError) -> Command {
        if help { return .help(.money) }
        let (positionals, options) = try split(Array(words.dropFirst()), valued: ["--format", "--from", "--to"], topic: .money)
        guard words.first == "payments", positionals.count == 1 else {
            throw UsageError(message: "reconcile payments FILE [--format alipay|wechat|generic] [--from T --to T]", topic: .money)
        }
        if let format = options["--format"], !["alipay", "wechat", "generic"].contains(format) {
            throw UsageError(message: "--format takes alipay, wechat or generic, got \(format)", topic: .money)
        }
        guard (options["--from"] == nil) == (options["--to"] == nil) else {
            throw UsageError(message: "--from and --to go together (the period every delivered order must be paid in)", topic: .money)
        }
        return .money(.reconcilePayments(
            path: positionals[0], format: options["--format"],
            fromMs: try options["--from"].map { (text: String) throws(UsageError) -> Int64 in try time(text, option: "--from", nowMs: nowMs) },
            toMs: try options["--to"].map { (text: String) throws(UsageError) -> Int64 in try time(text, option: "--to", nowMs: nowMs) }))
    }

    /// A rate as `5%`, `5.5%` or `550bps`, in basis points.
    static func rate(_ text: String) throws(UsageError) -> Int {
        let problem = UsageError(message: "--rate takes a percentage such as 5% or 5.25%, or basis points such as 525bps, got \(text)",
                                 topic: .money)
        if text.hasSuffix("bps"), let value = Int(text.dropLast(3)), value >= 0 { return value }
        guard text.hasSuffix("%") else { throw problem }
        let number = text.dropLast()
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let whole = Int(parts[0]), whole >= 0 else { throw problem }
        var fraction = 0
        if parts.count == 2 {
            guard (1...2).contains(parts[1].count), let value = Int(parts[1]) else { throw problem }
            fraction = parts[1].count == 1 ? value * 10 : value
        }
        return whole * 100 + fraction
    }

    /// Parses `distributor ...`.
    static func distributorCommand(_ words: [String], help: Bool, nowMs: Int64) throws(UsageError) -> Command {
        if help { return .help(.money) }
        let (positionals, options) = try split(Array(words.dropFirst()), valued: ["--rate", "--sku", "--from", "--to"], topic: .money)
        switch words.first {
        case "set":
            guard positionals.count == 1, let rate = options["--rate"], options["--from"] == nil, options["--to"] == nil else {
                throw UsageError(message: "distributor set D --rate R% [--sku S]", topic: .money)
            }
            return .money(.distributorSet(key: positionals[0], rateBps: try Self.rate(rate), sku: options["--sku"]))
        case "list":
            guard positionals.isEmpty, options.isEmpty else { throw UsageError(message: "distributor list takes nothing", topic: .money) }
            return .money(.distributorList)
        case "statement":
            guard positionals.count == 1, options["--rate"] == nil, options["--sku"] == nil else {
                throw UsageError(message: "distributor statement D [--from T] [--to T]", topic: .money)
            }
            return .money(.distributorStatement(
                key: positionals[0],
                fromMs: try options["--from"].map { (text: String) throws(UsageError) -> Int64 in try time(text, option: "--from", nowMs: nowMs) },
                toMs: try options["--to"].map { (text: String) throws(UsageError) -> Int64 in try time(text, option: "--to", nowMs: nowMs) }))
        default:
            throw UsageError(message: "distributor takes set, list or statement", topic: .money)
        }
    }

    /// A time: Unix ms, or `+N` with a unit (s, m, h, d) from now.
    static func time(_ text: String, option: String, nowMs: Int64) throws(UsageError) -> Int64 {
        if text.hasPrefix("+"), let unit = text.last, let count = Int64(text.dropFirst().dropLast()), count >= 0 {
            let unitMs: Int64? = ["s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000][String(unit)]
            if let unitMs { return nowMs + count * unitMs }
        }
        guard let ms = Int64(text), ms >= 0 else {
            throw UsageError(message: "\(option) takes Unix milliseconds or +N with s, m, h or d (e.g. +2h), got \(text)",
                             topic: .money)
        }
        return ms
    }

    static func cents(_ text: String?, option: String) throws(UsageError) -> Int64? {
        guard let text else { return nil }
        guard let value = Int64(text), value >= 0 else {
            throw UsageError(message: "\(option) takes a whole number of cents >= 0, got \(text)", topic: .money)
        }
        return value
    }

    /// Parses `campaign ...`.
    static func campaignCommand(_ words: [String], help: Bool, nowMs: Int64) throws(UsageError) -> Command {
        if help { return .help(.money) }
        let (positionals, options) = try split(
            Array(words.dropFirst()), valued: ["--sku", "--price", "--discount", "--from", "--to", "--budget", "--per-user"],
            topic: .money)
        switch words.first {
        case "set":
            guard positionals.count == 1, let sku = options["--sku"], let to = options["--to"], let budget = options["--budget"] else {
                throw UsageError(message: "campaign set KEY --sku S (--price C | --discount C) --to T --budget C", topic: .money)
            }
            guard (options["--price"] == nil) != (options["--discount"] == nil) else {
                throw UsageError(message: "campaign set takes exactly one of --price and --discount", topic: .money)
            }
            var perUser: Int?
            if let text = options["--per-user"] {
                guard let value = Int(text), value >= 0 else {
                    throw UsageError(message: "--per-user takes a whole number >= 0, got \(text)", topic: .money)
                }
                perUser = value
            }
            return .money(.campaignSet(
                key: positionals[0], sku: sku, priceCents: try cents(options["--price"], option: "--price"),
                discountCents: try cents(options["--discount"], option: "--discount"),
                fromMs: try options["--from"].map { (text: String) throws(UsageError) -> Int64 in try time(text, option: "--from", nowMs: nowMs) },
                toMs: try time(to, option: "--to", nowMs: nowMs), budgetCents: try cents(budget, option: "--budget") ?? 0,
                perUser: perUser))
        case "list":
            guard positionals.isEmpty, options.isEmpty else { throw UsageError(message: "campaign list takes nothing", topic: .money) }
            return .money(.campaignList)
        default:
            throw UsageError(message: "campaign takes set or list", topic: .money)
        }
    }

    /// Parses `coupon ...`.
    static func couponCommand(_ words: [String], help: Bool) throws(UsageError) -> Command {
        if help { return .help(.money) }
        let (positionals, options) = try split(
            Array(words.dropFirst()), valued: ["--discount", "--per-user", "--file", "--generate", "--out"], topic: .money)
        switch words.first {
        case "add":
            guard positionals.count == 1, let discount = options["--discount"] else {
                throw UsageError(message: "coupon add BATCH --discount C (--file F | --generate N [--out F])", topic: .money)
            }
            guard (options["--file"] == nil) != (options["--generate"] == nil) else {
                throw UsageError(message: "coupon add takes exactly one of --file and --generate", topic: .money)
            }
            var generate: Int?
            if let text = options["--generate"] {
                guard let value = Int(text), value >= 1, value <= Limits.couponsPerRequestMax else {
                    throw UsageError(message: "--generate takes 1...\(Limits.couponsPerRequestMax), got \(text)", topic: .money)
                }
                generate = value
            }
            return .money(.couponAdd(
                batch: positionals[0], discountCents: try cents(discount, option: "--discount") ?? 0,
                perUser: try options["--per-user"].map { (text: String) throws(UsageError) -> Int in
                    guard let value = Int(text), value >= 0 else {
                        throw UsageError(message: "--per-user takes a whole number >= 0, got \(text)", topic: .money)
                    }
                    return value
                },
                file: options["--file"], generate: generate, out: options["--out"]))
        case "list":
            guard positionals.isEmpty, options.isEmpty else { throw UsageError(message: "coupon list takes nothing", topic: .money) }
            return .money(.couponList)
        default:
            throw UsageError(message: "coupon takes add or list", topic: .money)
        }
    }

    /// The request of a money command; a problem reading a coupon file is returned as text.
    static func moneyRequest(_ command: MoneyCommand, currentDirectory: String) -> Result<Request, UsageError> {
        var request: Request
        switch command {
        case .campaignSet(let key, let sku, let price, let discount, let from, let to, let budget, let perUser):
            request = Request(id: .number(1), op: .campaignSet)
            request.campaign = key
            request.sku = sku
            request.priceCents = price
            request.discountCents = discount
            request.sinceMs = from
            request.untilMs = to
            request.budgetCents = budget
            request.perUserLimit = perUser
        case .campaignList:
            request = Request(id: .number(1), op: .campaignList)
        case .couponAdd(let batch, let discount, let perUser, let file, let generate, _):
            request = Request(id: .number(1), op: .couponAdd)
            request.batch = batch
            request.discountCents = discount
            request.perUserLimit = perUser
            if let file {
                let path = absolutePath(file, currentDirectory: currentDirectory)
                switch FileChecks.read(path, limit: 1 << 20) {
                case .success(let bytes):
                    guard let text = String(validating: bytes, as: UTF8.self) else {
                        return .failure(UsageError(message: "\(path): is not UTF-8 text", topic: .money))
                    }
                    request.codes = text.hasPrefix("\u{FEFF}") ? String(text.dropFirst()) : text
                case .failure(let problem):
                    return .failure(UsageError(message: "\(path): \(problem.message)", topic: .money))
                }
            }
            request.count = generate.map(Int64.init)
        case .couponList:
            request = Request(id: .number(1), op: .couponList)
        case .distributorSet(let key, let rate, let sku):
            request = Request(id: .number(1), op: .distributorSet)
            request.distributor = key
            request.rateBps = Int64(rate)
            request.sku = sku
        case .distributorList:
            request = Request(id: .number(1), op: .distributorList)
        case .caseOpen(let order, let reason, let code, let note):
            request = Request(id: .number(1), op: .caseOpen)
            request.order = order
            request.kind = reason
            request.codeID = code
            request.note = note
        case .caseList(let all):
            request = Request(id: .number(1), op: .caseList)
            request.kind = all ? "all" : nil
        case .caseResolve(let id, let how, let note):
            request = Request(id: .number(1), op: .caseResolve)
            request.caseID = id
            request.kind = how
            request.note = note
        case .report(let name, let by, let from, let to, let sku, let channel, let campaign, _, let days, _):
            request = Request(id: .number(1), op: .report)
            request.limit = days
            request.name = name
            request.by = by
            request.sinceMs = from
            request.untilMs = to
            request.sku = sku
            request.channel = channel
            request.campaign = campaign
        case .reconcilePayments(let path, let format, let from, let to):
            // kamid reads the bill (large, and where the operator put it on the server).
            request = Request(id: .number(1), op: .reconcilePayments)
            request.path = absolutePath(path, currentDirectory: currentDirectory)
            request.kind = format
            request.sinceMs = from
            request.untilMs = to
        case .distributorStatement(let key, let from, let to):
            request = Request(id: .number(1), op: .distributorStatement)
            request.distributor = key
            request.sinceMs = from
            request.untilMs = to
        }
        return .success(request)
    }

    /// Text for a money command's reply (and, for generated coupons, writes them out).
    static func describeMoney(_ command: MoneyCommand, _ fields: [(String, JSONValue)], currentDirectory: String) -> Outcome {
        func rows(_ name: String) -> [[(String, JSONValue)]] {
            guard case .array(let items) = Format.value(fields, name) else { return [] }
            return items.compactMap { if case .object(let members) = $0 { members } else { nil } }
        }
        func cell(_ row: [(String, JSONValue)], _ name: String) -> String {
            Format.text(row, name) ?? Format.int(row, name).map(String.init) ?? "-"
        }
        switch command {
        case .campaignSet(let key, _, _, _, _, _, _, _):
            return Outcome(stdout: "campaign \(key) set: budget \(Format.int(fields, "budget_cents") ?? 0) cents, "
                + "\(Format.int(fields, "spent_cents") ?? 0) given away so far\n", exit: .ok)
        case .campaignList:
            let list = rows("campaigns")
            guard !list.isEmpty else { return Outcome(stdout: "no campaigns\n", exit: .ok) }
            let header = ["CAMPAIGN", "SKU", "PRICE", "DISCOUNT", "BUDGET", "SPENT", "ORDERS", "PER_USER", "SINCE_MS", "UNTIL_MS"]
            let body = list.map { row in
                ["campaign", "sku", "price_cents", "discount_cents", "budget_cents", "spent_cents", "orders", "per_user_limit",
                 "since_ms", "until_ms"].map { cell(row, $0) }
            }
            return Outcome(stdout: Format.table([header] + body), exit: .ok)
        case .couponAdd(let batch, _, _, _, _, let out):
            var text = "batch \(batch): \(Format.int(fields, "added") ?? 0) of \(Format.int(fields, "given") ?? 0) codes added\n"
            if let codes = Format.text(fields, "codes") {
                if let out {
                    let path = absolutePath(out, currentDirectory: currentDirectory)
                    do {
                        try (codes + "\n").write(toFile: path, atomically: true, encoding: .utf8)
                        text += "generated codes written to \(path)\n"
                    } catch {
                        return Outcome(stdout: text, stderr: "kamictl: \(path): \(error)\n", exit: .failed)
                    }
                } else {
                    text += codes + "\n"
                }
            }
            return Outcome(stdout: text, exit: .ok)
        case .distributorSet(let key, _, let sku):
            let rate = Format.int(fields, "rate_bps") ?? 0
            return Outcome(stdout: "distributor \(key) set" + (sku.map { " for \($0)" } ?? "") + ": default rate \(rate) bps\n", exit: .ok)
        case .distributorList:
            let list = rows("distributors")
            guard !list.isEmpty else { return Outcome(stdout: "no distributors\n", exit: .ok) }
            let header = ["DISTRIBUTOR", "RATE_BPS", "SKU_RATES", "OWED"]
            let body = list.map { row -> [String] in
                var skuRates = "-"
                if case .object(let rates)? = Format.value(row, "sku_rates"), !rates.isEmpty {
                    skuRates = rates.map { name, value in "\(name):\(Format.int([(name, value)], name).map(String.init) ?? "?")" }
                        .joined(separator: ",")
                }
                return [cell(row, "distributor"), cell(row, "rate_bps"), skuRates, cell(row, "owed_cents")]
            }
            return Outcome(stdout: Format.table([header] + body), exit: .ok)
        case .caseOpen:
            return Outcome(stdout: "case \(cell(fields, "case")) opened on order \(cell(fields, "order")) (\(cell(fields, "reason")), "
                + "code from \(cell(fields, "source")))\n", exit: .ok)
        case .caseResolve(let id, let how, _):
            let state = Format.text(fields, "state") ?? (how == "replace" ? "replaced" : "?")
            return Outcome(stdout: "case \(id) \(how == "replace" ? "replaced" : state)\n", exit: .ok)
        case .caseList:
            let list = rows("cases")
            var text = ""
            if list.isEmpty {
                text = "no cases\n"
            } else {
                let header = ["CASE", "ORDER", "SKU", "CODE", "REASON", "STATE", "SOURCE", "AGE_S"]
                let body = list.map { row in
                    ["case", "order", "sku", "code_id", "reason", "state", "source"].map { cell(row, $0) }
                        + [String((Format.int(row, "age_ms") ?? 0) / 1_000)]
                }
                text = Format.table([header] + body)
            }
            for (name, title) in [("by_sku", "cases by SKU"), ("by_source", "cases by source")] {
                if case .object(let counts)? = Format.value(fields, name), !counts.isEmpty {
                    text += title + ": " + counts.map { "\($0.0) \(Format.int([$0], $0.0) ?? 0)" }.joined(separator: ", ") + "\n"
                }
            }
            return Outcome(stdout: text, exit: .ok)
        case .report(let name, _, _, _, _, _, _, let csv, _, let xlsx):
            let columns: [String]
            switch name {
            case "sales": columns = ["key", "orders", "paid_cents", "subsidy_cents", "refunded_cents", "cost_cents", "commission_cents",
                                     "profit_cents"]
            case "inventory": columns = ["key", "codes", "cost_cents", "age_under_7d", "age_7_30d", "age_30_90d", "age_over_90d", "expiring"]
            case "repeat": columns = ["key", "buyers", "repeat_buyers", "repeat_share_pct", "mean_interval_hours"]
            case "activation": columns = ["key", "sold", "used", "used_pct", "activated", "by_token"]
            case "flash-sale": columns = ["key", "orders", "peak_per_second", "first_ms", "last_ms", "sold_out_ms", "rejected_sold_out",
                                          "rejected_limit", "rejected_risk"]
            default: columns = ["key", "owed_cents"]
            }
            let body = rows("rows").map { row in columns.map { cell(row, $0) } }
            if let xlsx {
                // Figures as numbers, keys (a SKU, a day, a channel) as text.
                do throws(XLSXError) {
                    let sheet = try XLSXWriter(path: xlsx, sheetName: name)
                    try sheet.add(columns.map { .text($0) })
                    for row in body { try sheet.add(row.enumerated().map { $0.offset == 0 ? .text($0.element) : .number($0.element) }) }
                    try sheet.finish()
                } catch {
                    // No half-written workbook left behind.
                    try? FileManager.default.removeItem(atPath: xlsx)
                    return Outcome(stderr: "kamictl: \(error.message)\n", exit: .failed)
                }
                return Outcome(stdout: "wrote \(body.count) rows of the \(name) report to \(xlsx)\n", exit: .ok)
            }
            if csv {
                let lines = ([columns] + body).map { $0.map { field in
                    field.contains(",") || field.contains("\"") ? "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : field
                }.joined(separator: ",") }
                return Outcome(stdout: lines.joined(separator: "\n") + "\n", exit: .ok)
            }
            guard !body.isEmpty else { return Outcome(stdout: "nothing to report\n", exit: .ok) }
            let header = columns.map { $0 == "key" ? (Format.text(fields, "by") ?? (name == "payables" ? "account" : "sku")).uppercased()
                : $0.uppercased() }
            return Outcome(stdout: Format.table([header] + body), exit: .ok)
        case .reconcilePayments:
            let list = rows("mismatches")
            var text = "\(Format.text(fields, "kind") ?? "?") bill: \(Format.int(fields, "payments") ?? 0) payments, "
                + "\(Format.int(fields, "matched") ?? 0) matched, \(list.count) mismatches\n"
            guard !list.isEmpty else { return Outcome(stdout: text, exit: .ok) }
            let header = ["KIND", "ORDER", "PAYMENT_REF", "HERE", "THERE", "LINE"]
            text += Format.table([header] + list.map { row in ["kind", "order", "payment_ref", "here", "there", "line"].map { cell(row, $0) } })
            return Outcome(stdout: text, exit: .problemsFound)
        case .distributorStatement(let key, _, _):
            return Outcome(stdout: """
                distributor \(key): \(Format.int(fields, "orders") ?? 0) orders, commission \(Format.int(fields, "accrued_cents") ?? 0) cents, \
                reversed by \(Format.int(fields, "reversals") ?? 0) refunds \(Format.int(fields, "reversed_cents") ?? 0), \
                net \(Format.int(fields, "net_cents") ?? 0); owed in all \(Format.int(fields, "owed_cents") ?? 0)

                """, exit: .ok)
        case .couponList:
            let list = rows("batches")
            guard !list.isEmpty else { return Outcome(stdout: "no coupon batches\n", exit: .ok) }
            let header = ["BATCH", "DISCOUNT", "PER_USER", "CODES", "HELD"]
            let body = list.map { row in ["batch", "discount_cents", "per_user_limit", "codes", "held"].map { cell(row, $0) } }
            return Outcome(stdout: Format.table([header] + body), exit: .ok)
        }
    }
}
