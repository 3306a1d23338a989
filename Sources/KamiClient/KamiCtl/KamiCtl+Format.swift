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
            return "sku \(sku) set: name \(quoted(text(fields, "name"))), price \(price) cents, "
                + "per-user limit \(limit), activation URL \(text(fields, "activation_url") ?? "none")\n"
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
                let counts = ["available", "reserved", "issued", "voided"].map { int(members, $0) ?? 0 }
                return WireStock(sku: sku, available: counts[0], reserved: counts[1], issued: counts[2],
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

        /// Rows in columns: the first left-aligned, the others right-aligned (numbers).
        static func table(_ rows: [[String]]) -> String {
            let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
            return rows.map { row in
                row.enumerated().map { column, cell in
                    let pad = String(repeating: " ", count: widths[column] - cell.count)
                    return column == 0 ? cell + pad : pad + cell
                }.joined(separator: "  ")
            }.joined(separator: "\n") + "\n"
        }
    }
}
