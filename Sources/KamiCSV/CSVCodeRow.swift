public import KamiCore

/// One code read from an import file, checked and ready to store.
///
/// The secret is a `Secret`, so printing a row (or an array of rows, or a test failure
/// message) never shows it.
public struct CSVCodeRow: Sendable, Hashable {
    /// The physical line (1-based) where the row's record starts.
    public var line: Int
    /// The card password or redeem code: trimmed of surrounding spaces, 1 to
    /// `CSVLimits.secretBytesMax` bytes, no control characters.
    public var secret: Secret
    /// The card number, if the file has one for this row (trimmed, non-empty).
    public var cardNumber: String?
    /// The cost in cents (fen), whichever cost column the file had.
    public var costCents: Int64?
    /// The expiry as Unix milliseconds (see `CSVColumn.expiresAt` for the accepted forms).
    public var expiresAtMs: Int64?
    /// The batch name (trimmed, non-empty).
    public var batch: String?

    /// Makes a row.
    public init(line: Int, secret: Secret, cardNumber: String? = nil, costCents: Int64? = nil,
                expiresAtMs: Int64? = nil, batch: String? = nil)
    {
        self.line = line
        self.secret = secret
        self.cardNumber = cardNumber
        self.costCents = costCents
        self.expiresAtMs = expiresAtMs
        self.batch = batch
    }
}

/// What an import produces for each non-blank record after the header.
public enum CSVImportItem: Sendable, Hashable {
    /// A code to store.
    case row(CSVCodeRow)
    /// A record that is not a code, with its line and reason.
    case reject(CSVReject)
}
