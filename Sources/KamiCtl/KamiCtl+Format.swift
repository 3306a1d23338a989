import KamiClient
import KamiCore
public import KamiProtocol

extension KamiCtl {
    /// The human-readable text kamictl prints for each reply. Pure functions of the reply.
    public enum Format {
        /// `sku set`: the SKU as kamid now has it.
        public static func skuSet(_ fields: [(String, JSONValue)]) -> String {
            let sku = text(fields, "sku") ?? "?"
            let limit = int(fields, "per_user_limit").map { $0 == 0 ? "none" : String($0) } ?? "?"
            let price = int(fields, "price_cents").map(String.init) ?? "?"
            let manual = value(fields, "manual_delivery") == .bool(true)
            let reviewTTL = int(fields, "review_ttl_ms").map { "\($0) ms" } ?? "?"
            return "sku \(sku) set: name \(quoted(text(fields, "name"))), price \(price) cents, "
                + "per-user limit \(limit), activation URL \(text(fields, "activation_url") ?? "none"), "
                + "delivery \(manual ? "by hand" : "automatic"), review time \(reviewTTL)"
                + (text(fields, "bundle").map { ", bundle of \($0)" } ?? "") + "\n"
        }

        /// `import`: counts, the code ids given, and the rejected lines kamid listed.
        public static func importReport(_ fields: [(String, JSONValue)]) -> String {
            let imported = int(fields, "imported") ?? 0
            let rejected = int(fields, "rejected") ?? 0
            let dryRun = value(fields, "dry_run") == .bool(true)
            let codes = "\(imported) code\(imported == 1 ? "" : "s")"
            var out = dryRun
                ? "dry run: would import \(codes), rejected \(rejected); nothing was imported"
                : "imported \(codes), rejected \(rejected)"
            if let first = int(fields, "first_code_id"), let last = int(fields, "last_code_id") {
                out += " (code ids \(first)-\(last))"
            }
            out += "\n"
            guard case .array(let rows) = value(fields, "rejected_rows"), !rows.isEmpty else { return out }
            out += "rejected rows:\n"
            for row in rows {
                guard case .object(let members) = row else { continue }
                out += "  line \(int(members, "line").map(String.init) ?? "?"): \(text(members, "reason") ?? "")\n"
            }
            if rejected > Int64(rows.count) {
                out += "  ... and \(rejected - Int64(rows.count)) more not listed\n"
            }
            return out
        }

        /// `stock`: one line per SKU, columns aligned.
        public static func stock(_ stocks: [WireStock]) -> String {
            guard !stocks.isEmpty else { return "no SKUs\n" }
            let header = ["SKU", "AVAILABLE", "RESERVED", "ISSUED", "VOIDED", "IMPORTED"]
            let rows = stocks.map { s in
                [s.sku] + [s.available, s.reserved, s.issued, s.voided, s.imported].map { String($0) }
            }
            return table([header] + rows)
        }

        /// The per-SKU counters inside a `stats` reply. `imported` is their sum: stats
        /// does not list it, and the invariant says they add up to it.
        public static func stocks(fromStats fields: [(String, JSONValue)]) -> [WireStock] {
            guard case .array(let items) = value(fields, "skus") else { return [] }
            return items.compactMap { item in
                guard case .object(let members) = item, let sku = text(members, "sku") else { return nil }
                // `issued` counts used codes too, as the wire's `stock` does (the row adds up).
                let counts = ["available", "reserved", "issued", "voided", "used"].map { int(members, $0) ?? 0 }
                return WireStock(sku: sku, available: counts[0], reserved: counts[1], issued: counts[2] + counts[4],
                                 voided: counts[3], imported: counts.reduce(0, +))
            }
        }

        /// `order`: state, SKU, quantity, hold deadline and codes.
        public static func order(_ order: WireOrder, secretsShown: Bool) -> String {
            var out = "order \(order.order): \(order.state), sku \(order.sku), qty \(order.qty)"
            if order.expiresAtMs != 0 { out += ", hold expires at \(order.expiresAtMs) (Unix ms)" }
            out += "\n"
            for code in order.codes {
                out += "  code \(code.codeID)"
                if let card = code.cardNumber { out += " card \(card)" }
                if let secret = code.secret {
                    out += " secret \(secret.reveal())"
                } else if !secretsShown && order.state == .committed {
                    out += " secret hidden (--show-secrets)"
                }
                if let url = code.activationURL { out += " activation \(url)" }
                out += "\n"
            }
            return out
        }

        /// `verify`: the text and the number of violations.
        public static func verify(_ fields: [(String, JSONValue)]) -> (String, Int) {
            guard case .array(let violations) = value(fields, "violations"), !violations.isEmpty else {
                return ("verify: clean, every invariant holds\n", 0)
            }
            var out = "verify: \(violations.count) violation\(violations.count == 1 ? "" : "s")\n"
            for item in violations {
                guard case .object(let members) = item else { continue }
                out += "  \(text(members, "invariant") ?? "?"): \(text(members, "detail") ?? "")\n"
            }
            return (out, violations.count)
        }

        /// Any fields reply: `name: value` lines; arrays of objects as indented lines.
        public static func fields(_ fields: [(String, JSONValue)]) -> String {
            var out = ""
            for (name, value) in fields {
                switch value {
                case .array(let items):
                    out += "\(name):\(items.isEmpty ? " none" : "")\n"
                    for item in items { out += "  - \(inline(item))\n" }
                default:
                    out += "\(name): \(inline(value))\n"
                }
            }
            return out
        }

        /// `sku list`: one row per SKU with its settings and stock.
        public static func skuList(_ fields: [(String, JSONValue)]) -> String {
            guard case .array(let items) = value(fields, "skus"), !items.isEmpty else { return "no SKUs\n" }
            let header = ["SKU", "NAME", "PRICE", "LIMIT", "DELIVERY", "BUNDLE", "AVAILABLE", "RESERVED", "ISSUED", "USED",
                          "VOIDED", "IMPORTED"]
            let rows = items.compactMap { item -> [String]? in
                guard case .object(let m) = item else { return nil }
                let limit = int(m, "per_user_limit").map { $0 == 0 ? "-" : String($0) } ?? "?"
                let delivery = value(m, "manual_delivery") == .bool(true) ? "manual" : "auto"
                // A bundle's available count is the complete bundles its scarcest component allows.
                return [text(m, "sku") ?? "?", text(m, "name") ?? "", int(m, "price_cents").map(String.init) ?? "?", limit,
                        delivery, text(m, "bundle") ?? "-"]
                    + ["available", "reserved", "issued", "used", "voided", "imported"].map { int(m, $0).map(String.init) ?? "?" }
            }
            return table([header] + rows)
        }

        /// `export`: how many codes went where.
        public static func exportReport(_ fields: [(String, JSONValue)]) -> String {
            let count = int(fields, "exported") ?? 0
            return "exported \(count) code\(count == 1 ? "" : "s") to \(text(fields, "path") ?? "?")\n"
        }

        /// `entitlements`: the codes a user holds.
        public static func entitlements(
            user: String, _ codes: [WireCode], nextCursor: String? = nil, secretsShown: Bool
        ) -> String {
            guard !codes.isEmpty else { return "user \(user) holds no codes\n" }
            let header = ["CODE", "SKU", "STATUS", "ORDER", "CARD", "USED_AT_MS", "SECRET"]
            let rows = codes.map { code in
                [code.codeID == 0 ? "-" : String(code.codeID), code.sku, code.status ?? code.state?.name ?? "?", code.order ?? "",
                 code.cardNumber ?? "", code.usedAtMs.map(String.init) ?? "-",
                 code.secret.map { $0.reveal() } ?? (secretsShown || code.codeID == 0 ? "" : "hidden")]
            }
            return table([header] + rows) + (secretsShown ? "" : "(secrets hidden; --show-secrets to see them)\n")
                + (nextCursor.map { "(more: the next page starts at cursor \($0))\n" } ?? "")
        }

        /// `void`: what was voided and what was left alone.
        public static func voidReport(_ fields: [(String, JSONValue)]) -> String {
            let voided = int(fields, "voided") ?? 0
            var out = "voided \(voided) code\(voided == 1 ? "" : "s")"
            if let already = int(fields, "already_voided"), already > 0 { out += ", \(already) already void" }
            if let skipped = int(fields, "skipped_reserved"), skipped > 0 {
                out += ", \(skipped) skipped (held by unpaid orders or issued)"
            }
            return out + "\n"
        }

        /// `reload`: what changed, what waits for a restart.
        public static func reload(_ fields: [(String, JSONValue)]) -> String {
            func list(_ name: String) -> [String] {
                guard case .array(let items) = value(fields, name) else { return [] }
                return items.compactMap { if case .string(let s) = $0 { s } else { nil } }
            }
            let applied = list("applied")
            let restart = list("restart_required")
            var out = applied.isEmpty ? "reloaded: nothing changed" : "reloaded: applied \(applied.joined(separator: ", "))"
            if let us = int(fields, "duration_us") { out += " (\(us) µs)" }
            out += "\n"
            if !restart.isEmpty {
                out += "changed but needing a restart to take effect: \(restart.joined(separator: ", "))\n"
            }
            return out
        }

        /// `audit verify`: the text and whether the chain is intact.
        public static func auditVerify(_ fields: [(String, JSONValue)]) -> (String, Bool) {
            let entries = int(fields, "entries") ?? 0
            guard value(fields, "clean") == .bool(true) else {
                let seq = int(fields, "broken_seq").map(String.init) ?? "?"
                return ("audit chain broken at entry \(seq): \(text(fields, "reason") ?? "")\n"
                    + "  \(entries) entries before it hold together\n", false)
            }
            return ("audit chain intact: \(entries) entr\(entries == 1 ? "y" : "ies") verified\n", true)
        }

        /// `token new`: the token, once, and where kamid keeps it.
        public static func tokenNew(_ fields: [(String, JSONValue)]) -> String {
            let client = text(fields, "client") ?? "?"
            var out = "token for client \(client)\(value(fields, "replaced") == .bool(true) ? " (the old one no longer works)" : ""):\n"
            out += "  \(text(fields, "token") ?? "?")\n"
            out += "stored in \(text(fields, "path") ?? "?"); give it to the storefront, it is not shown again\n"
            return out
        }

        /// A progress line for a running import or export (`jobs` entry).
        public static func progress(_ job: [(String, JSONValue)]) -> String {
            let rows = int(job, "rows") ?? 0
            let elapsedMs = max(1, int(job, "elapsed_ms") ?? 1)
            let rate = rows * 1_000 / elapsedMs
            var out = "\(text(job, "kind") ?? "job") \(text(job, "sku") ?? ""): \(grouped(rows)) rows"
            if let bytes = int(job, "file_bytes") { out += " of a \(bytes >> 20) MiB file" }
            out += ", \(grouped(rate)) rows/s, \(elapsedMs / 1_000) s"
            return out
        }

        /// 1234567 as `1,234,567`.
        static func grouped(_ number: Int64) -> String {
            let digits = String(number.magnitude)
            var out = ""
            for (index, ch) in digits.enumerated() {
                if index > 0 && (digits.count - index) % 3 == 0 { out += "," }
                out.append(ch)
            }
            return (number < 0 ? "-" : "") + out
        }

        // MARK: Helpers

        static func value(_ fields: [(String, JSONValue)], _ name: String) -> JSONValue? {
            fields.first { $0.0 == name }?.1
        }

        static func int(_ fields: [(String, JSONValue)], _ name: String) -> Int64? {
            guard case .int(let number) = value(fields, name) else { return nil }
            return number
        }

        static func text(_ fields: [(String, JSONValue)], _ name: String) -> String? {
            guard case .string(let string) = value(fields, name) else { return nil }
            return string
        }

        private static func quoted(_ text: String?) -> String {
            text.map { "\"\($0)\"" } ?? "none"
        }

        /// A value on one line: objects as `key value` pairs.
        static func inline(_ value: JSONValue) -> String {
            switch value {
            case .null: "none"
            case .bool(let flag): flag ? "yes" : "no"
            case .int(let number): String(number)
            case .string(let string): string
            case .array(let items): items.map(inline).joined(separator: ", ")
            case .object(let members): members.map { "\($0.0) \(inline($0.1))" }.joined(separator: ", ")
            }
        }

        /// Rows in columns under a header row: numeric columns right-aligned, text left-aligned.
        static func table(_ rows: [[String]]) -> String {
            let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
            let numeric = (0..<rows[0].count).map { column in
                rows.count > 1 && rows.dropFirst().allSatisfy { Int64($0[column]) != nil || $0[column] == "-" }
            }
            return rows.map { row in
                row.enumerated().map { column, cell in
                    let pad = String(repeating: " ", count: widths[column] - cell.count)
                    return numeric[column] ? pad + cell : cell + pad
                }.joined(separator: "  ").trimmingTrailingSpaces()
            }.joined(separator: "\n") + "\n"
        }
    }
}

extension String {
    /// Without the spaces a left-aligned last column pads with.
    func trimmingTrailingSpaces() -> String {
        var end = endIndex
        while end > startIndex, self[index(before: end)] == " " { end = index(before: end) }
        return String(self[..<end])
    }
}
