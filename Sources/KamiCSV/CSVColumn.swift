/// A column the importer understands, with the header names that select it.
///
/// Header cells are matched after trimming spaces (ASCII and the ideographic space U+3000),
/// folding ASCII case, and reading spaces and hyphens inside a name as underscores, so
/// `Card Number`, `card-number` and ` CARD_NUMBER ` all mean `card_number`. The Chinese names
/// are the ones shop back offices and suppliers put in their spreadsheets.
public enum CSVColumn: String, Sendable, Hashable, CaseIterable {
    /// The card password or redeem code; required. `secret`, 卡密, 密码.
    case secret
    /// The card number, for cards sold as number plus password. `card_number`, 卡号.
    case cardNumber = "card_number"
    /// Cost as a whole number of cents (fen). `cost_cents`.
    case costCents = "cost_cents"
    /// Cost in yuan with at most two decimals (`12.50` is 1250 cents), because that is how
    /// people type money into a spreadsheet. 成本.
    case costYuan = "成本"
    /// Expiry date or timestamp. `expires_at`, 有效期.
    case expiresAt = "expires_at"
    /// Batch name, used to void a leaked batch. `batch`, 批次.
    case batch

    /// The header names that select this column, in their normalised form.
    public var headerNames: [String] {
        switch self {
        case .secret: ["secret", "卡密", "密码"]
        case .cardNumber: ["card_number", "卡号"]
        case .costCents: ["cost_cents"]
        case .costYuan: ["成本"]
        case .expiresAt: ["expires_at", "有效期"]
        case .batch: ["batch", "批次"]
        }
    }

    /// The field of a code the column fills. Two columns filling the same field (`cost_cents`
    /// and 成本) in one header are a duplicate, like two `secret` columns.
    var field: String {
        switch self {
        case .costCents, .costYuan: "cost"
        default: rawValue
        }
    }

    /// The column a header cell names, if any.
    static func named(_ normalisedName: String) -> CSVColumn? {
        lookup[normalisedName]
    }

    private static let lookup: [String: CSVColumn] = {
        var table: [String: CSVColumn] = [:]
        for column in allCases {
            for name in column.headerNames { table[name] = column }
        }
        return table
    }()
}
