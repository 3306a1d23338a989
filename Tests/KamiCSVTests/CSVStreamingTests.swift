import Foundation
import Glibc
import KamiCSV
import KamiCore
import XCTest

final class CSVStreamingTests: XCTestCase {
    /// Appends `value` in decimal, zero-padded to `width`, without going through String.
    private static func appendNumber(_ value: Int, width: Int, to out: inout [UInt8]) {
        var digits = [UInt8](repeating: UInt8(ascii: "0"), count: width)
        var rest = value
        var index = width - 1
        while rest > 0 && index >= 0 {
            digits[index] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
            index -= 1
        }
        out += digits
    }

    /// One generated data row; every 1000th is a formula cell the importer must reject.
    private static func appendRow(_ number: Int, to out: inout [UInt8]) {
        out += number % 1000 == 999 ? Array("=EVIL-".utf8) : Array("CODE-".utf8)
        appendNumber(number, width: 8, to: &out)
        out += Array(",62".utf8)
        appendNumber(number, width: 10, to: &out)
        out += Array(",1250,2026-01-01,batch-7\r\n".utf8)
    }

    /// A million rows generated chunk by chunk (never the whole input in memory), parsed with
    /// a bounded buffer.
    func testMillionRowStreamingImport() throws {
        let rowCount = 1_000_000
        var importer = try CSVCodeImporter(encoding: .utf8)
        var chunk: [UInt8] = []
        chunk.reserveCapacity(70_000)
        var accepted = 0
        var rejectedLines: [Int] = []
        var lastLine = 0
        var totalBytes = 0
        let count: (CSVImportItem) -> Void = { item in
            switch item {
            case .row(let row):
                accepted += 1
                lastLine = row.line
            case .reject(let reject): rejectedLines.append(reject.line)
            }
        }
        chunk += Array("\u{FEFF}secret,card_number,cost_cents,expires_at,batch\r\n".utf8)
        for number in 0..<rowCount {
            Self.appendRow(number, to: &chunk)
            if chunk.count >= 65_536 || number == rowCount - 1 {
                totalBytes += chunk.count
                try chunk.withUnsafeBytes { try importer.feed($0, count) }
                chunk.removeAll(keepingCapacity: true)
            }
        }
        let summary = try importer.finish(count)
        XCTAssertEqual(accepted + rejectedLines.count, rowCount)
        XCTAssertEqual(rejectedLines.count, rowCount / 1000)
        XCTAssertEqual(rejectedLines.first, 1001, "row 999 is on line 1001")
        XCTAssertEqual(rejectedLines.last, rowCount + 1, "the last row is a formula row")
        XCTAssertEqual(lastLine, rowCount)
        XCTAssertEqual(summary.rowCount, accepted)
        XCTAssertEqual(summary.lineCount, rowCount + 1)
        XCTAssertEqual(summary.byteCount, totalBytes)
        XCTAssertLessThan(summary.bufferHighWaterBytes, 100, "one short row at a time")
    }

    /// A 10 MB line in the middle of a GB18030 import is rejected and the rows after it kept.
    func testTenMegabyteLineInImport() throws {
        for encoding in [CSVEncoding.utf8, .gb18030] {
            var importer = try CSVCodeImporter(encoding: encoding)
            var items: [CSVImportItem] = []
            try Array("secret\nBEFORE\n".utf8).withUnsafeBytes { try importer.feed($0) { items.append($0) } }
            let junk = [UInt8](repeating: UInt8(ascii: "J"), count: 1 << 20)
            for _ in 0..<10 { try junk.withUnsafeBytes { try importer.feed($0) { items.append($0) } } }
            try Array("\nAFTER\n".utf8).withUnsafeBytes { try importer.feed($0) { items.append($0) } }
            let summary = try importer.finish { items.append($0) }
            XCTAssertEqual(items, [
                .row(CSVCodeRow(line: 2, secret: .init("BEFORE"))),
                .reject(CSVReject(line: 3, code: .recordTooLong, reason: "record longer than 65536 bytes")),
                .row(CSVCodeRow(line: 4, secret: .init("AFTER"))),
            ], "\(encoding)")
            XCTAssertLessThanOrEqual(summary.bufferHighWaterBytes, CSVLimits.recordBytesMax)
            XCTAssertEqual(summary.byteCount, 10 << 20 + 21)
        }
    }

    // MARK: - Files

    private func temporaryFile(_ bytes: [UInt8]) throws -> String {
        var template = Array("/tmp/kamicsv-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        XCTAssertGreaterThanOrEqual(fd, 0)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        XCTAssertEqual(written, bytes.count)
        close(fd)
        let path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
        addTeardownBlock { unlink(path) }
        return path
    }

    func testFileImportDetectsGB18030() throws {
        var bytes = GB.kami + GB.ascii(",") + GB.pici + GB.ascii("\r\n")
        for number in 0..<20_000 { bytes += GB.ascii("GB-\(number),") + GB.ceshi + GB.ascii("\r\n") }
        let path = try temporaryFile(bytes)
        var rows = 0
        let summary = try CSVFileImport.importCodes(path: path) { item in
            guard case .row(let row) = item else { return XCTFail("\(item)") }
            XCTAssertEqual(row.batch, "测试")
            rows += 1
        }
        XCTAssertEqual(summary.encoding, .gb18030)
        XCTAssertEqual(rows, 20_000)
        XCTAssertEqual(summary.byteCount, bytes.count)
    }

    func testFileImportDetectsUTF8() throws {
        let path = try temporaryFile(Array("卡密,批次\nU-1,测试\n".utf8))
        var items: [CSVImportItem] = []
        let summary = try CSVFileImport.importCodes(path: path) { items.append($0) }
        XCTAssertEqual(summary.encoding, .utf8)
        XCTAssertEqual(items, [.row(CSVCodeRow(line: 2, secret: .init("U-1"), batch: "测试"))])
    }

    func testFileImportFromPipeNeedsAnEncoding() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]) }
        let bytes = Array("secret\nP-1\n".utf8)
        XCTAssertEqual(bytes.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }, bytes.count)
        close(fds[1])
        XCTAssertThrowsError(try CSVFileImport.importCodes(fileDescriptor: fds[0]) { _ in }) { error in
            XCTAssertEqual((error as? CSVImportError)?.code, .ioFailed)
            XCTAssertTrue("\(error)".contains("pread"), "\(error)")
        }
        var items: [CSVImportItem] = []
        _ = try CSVFileImport.importCodes(fileDescriptor: fds[0], encoding: .utf8) { items.append($0) }
        XCTAssertEqual(items, [.row(CSVCodeRow(line: 2, secret: .init("P-1")))])
    }

    func testMissingFileIsAnIOError() {
        XCTAssertThrowsError(try CSVFileImport.importCodes(path: "/nonexistent/codes.csv") { _ in }) { error in
            XCTAssertEqual((error as? CSVImportError)?.code, .ioFailed)
            XCTAssertTrue("\(error)".contains("open /nonexistent/codes.csv failed"), "\(error)")
        }
    }

    /// A device or a fifo is refused before a byte is read (reading `/dev/zero` would never
    /// end; opening a fifo would wait for a writer).
    func testNonRegularFilesAreRefusedNamingThePath() throws {
        let fifo = NSTemporaryDirectory() + "kami-fifo-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        addTeardownBlock { unlink(fifo) }
        for (path, kind) in [("/dev/zero", "a character device"), (fifo, "a fifo"), ("/tmp", "a directory")] {
            let outcome = runWithDeadline(seconds: 10) {
                Result { try CSVFileImport.importCodes(path: path) { _ in } }
            }
            guard let outcome else {
                XCTFail("importing \(path) did not return within 10 s")
                continue
            }
            XCTAssertThrowsError(try outcome.get()) { error in
                XCTAssertEqual((error as? CSVImportError)?.code, .notRegularFile, "\(error)")
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains(kind), "\(error)")
            }
        }
    }

    /// A caller can stop a long import between chunks, in the detection pass and after it.
    func testCancellationIsCheckedEveryChunk() throws {
        var bytes = Array("secret\n".utf8)
        while bytes.count < CSVLimits.readChunkBytes * 8 { bytes += Array("CODE-\(bytes.count)\n".utf8) }
        let path = try temporaryFile(bytes)
        let total = bytes.filter { $0 == UInt8(ascii: "\n") }.count - 1
        for (encoding, askedBeforeStop) in [(CSVEncoding?.none, 3), (CSVEncoding?.none, 12), (.utf8, 2)] {
            var asked = 0
            var rows = 0
            XCTAssertThrowsError(try CSVFileImport.importCodes(path: path, encoding: encoding, isCancelled: {
                asked += 1
                return asked > askedBeforeStop
            }) { _ in rows += 1 }) { error in
                XCTAssertEqual((error as? CSVImportError)?.code, .cancelled, "\(error)")
            }
            XCTAssertEqual(asked, askedBeforeStop + 1, "asked once per chunk, stopped at the first yes")
            XCTAssertLessThan(rows, total, "stopped part way")
        }
    }

    /// Runs `body` on a thread; its result, or nil if it has not returned within `seconds`
    /// (the thread is then left behind: the test has failed anyway).
    private func runWithDeadline<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () -> T) -> T? {
        let box = DeadlineBox<T>()
        let done = DispatchSemaphore(value: 0)
        Thread {
            let value = body()
            box.lock.withLock { box.value = value }
            done.signal()
        }.start()
        guard done.wait(timeout: .now() + seconds) == .success else { return nil }
        return box.lock.withLock { box.value }
    }

    /// An error thrown by the caller's closure stops the import and comes out unchanged.
    func testCallerErrorStopsTheImport() throws {
        struct Stop: Error {}
        var importer = try CSVCodeImporter(encoding: .utf8)
        var seen = 0
        XCTAssertThrowsError(try Array("secret\na\nb\nc\n".utf8).withUnsafeBytes { bytes in
            try importer.feed(bytes) { _ in
                seen += 1
                if seen == 2 { throw Stop() }
            }
        }) { XCTAssertTrue($0 is Stop) }
        XCTAssertEqual(seen, 2)
    }
}

/// The result of `runWithDeadline`'s thread; `value` is guarded by `lock`.
private final class DeadlineBox<T>: @unchecked Sendable {
    let lock = NSLock()
    var value: T?
}
