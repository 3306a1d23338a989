import KamiCore

/// Every bound of the CSV import and export, each with what it costs and why it has its value.
///
/// The parser never buffers more than one record, so `recordBytesMax` is also (apart from
/// the fixed read and conversion buffers below) the memory an import needs.
public enum CSVLimits {
    /// Longest record, in raw bytes between its first byte and its line terminator (quotes and
    /// commas included). A card-key row is well under 1 KiB; 64 KiB leaves room for long
    /// notes columns while bounding what one hostile or corrupt line (a binary file, a
    /// runaway quote) can make the parser hold. Longer records are skipped, not buffered,
    /// and rejected with their line number.
    public static let recordBytesMax = 65_536

    /// Most fields in one record. Real files have fewer than 20 columns; the bound keeps the
    /// per-record field index small even for a 64 KiB line of commas.
    public static let fieldsPerRecordMax = 1_024

    /// Longest secret (card password or redeem code) in bytes after trimming. Real codes are
    /// 8 to 64 bytes; 512 admits long activation tokens while keeping a sealed secret small.
    public static let secretBytesMax = 512

    /// Longest card number in bytes after trimming.
    public static let cardNumberBytesMax = 128

    /// Longest batch name in bytes after trimming.
    public static let batchBytesMax = 128

    /// Largest accepted cost, in cents: `Limits.costCentsMax` (10^11, a billion yuan), far
    /// above any card, and low enough that the cost of a whole import (10 million rows) or of
    /// any order cannot overflow `Int64`.
    public static let costCentsMax: Int64 = Limits.costCentsMax

    /// Bytes read from a file descriptor per `read(2)`: large enough that syscall cost is
    /// noise next to parsing, small enough to stay in L2 cache.
    public static let readChunkBytes = 65_536

    /// Bytes of GB18030 input converted per iconv step. Each step's UTF-8 output is at most
    /// 1.5x its input (a 2-byte GBK character becomes 3 UTF-8 bytes; 4-byte sequences stay at
    /// most 4), so `conversionOutputBytes` always holds one step's output.
    public static let conversionStepBytes = 16_384

    /// Size of the converter's UTF-8 output buffer.
    public static let conversionOutputBytes = 32_768

    /// Longest column name shown in an error or warning; longer names are cut, because a
    /// header cell can be anything (even a whole mis-pasted row).
    public static let columnNameShownBytesMax = 48

    /// Most header cells listed in a "missing secret column" error.
    public static let columnsShownMax = 16

    /// How much more common valid multi-byte UTF-8 sequences must be than invalid ones for
    /// `CSVEncodingDetector` to call an input UTF-8 despite invalid bytes (a UTF-8 file with
    /// one corrupt row). GBK text read as UTF-8 forms a valid sequence only by accident, at
    /// most about one in two characters, so a ratio of 16 does not mistake GBK for UTF-8.
    public static let utf8DominanceRatio = 16

    static func check() {
        precondition(conversionStepBytes * 3 / 2 + 8 <= conversionOutputBytes,
                     "conversionOutputBytes \(conversionOutputBytes) cannot hold one step of \(conversionStepBytes)")
        precondition(secretBytesMax < recordBytesMax, "secretBytesMax must fit in a record")
        precondition(fieldsPerRecordMax <= recordBytesMax, "fieldsPerRecordMax above recordBytesMax")
    }
}
