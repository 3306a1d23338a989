// KamiCSV: streaming import and export of card-key CSV files as shops really have them.
//
// The pipeline of an import, one stage per file:
//
//   bytes ─▶ CSVEncodingDetector (optional pre-pass: UTF-8 or GB18030?)
//         ─▶ GB18030Converter (only for GBK/GB18030 files; iconv, bounded buffers)
//         ─▶ CSVRecordParser (RFC 4180 records, line numbers, bounded record buffer)
//         ─▶ CSVHeader (first non-blank record: which column is what)
//         ─▶ CSVRowRules (one record ─▶ CSVCodeRow or CSVReject)
//
// `CSVCodeImporter` wires the stages for a caller that feeds chunks; `CSVFileImport` reads a
// file descriptor 64 KiB at a time. `CSVWriter` is the way back out (exports).
//
// Nothing in this module holds more than one record (`CSVLimits.recordBytesMax`) plus fixed
// read and conversion buffers, whatever the size of the file: an import of 10 million codes
// and an import of one 10 MB garbage line both run in a few hundred KiB.
