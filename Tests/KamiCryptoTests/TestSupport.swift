import Foundation
import Glibc
import XCTest

/// Bytes of a hex string written in a test (spaces allowed for readability).
func hex(_ string: String) -> [UInt8] {
    let digits = Array(string.utf8.filter { $0 != UInt8(ascii: " ") })
    precondition(digits.count % 2 == 0, "odd hex string in a test: \(string)")
    return stride(from: 0, to: digits.count, by: 2).map {
        UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16)!
    }
}

/// Lowercase hex of `bytes`, for assertions on printed output.
func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

/// A fresh empty directory under the system temporary directory, removed by `cleanUp`.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("kami-crypto-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// Writes `bytes` to `name` with permission bits `mode` and returns the path.
    func write(_ name: String, _ bytes: [UInt8], mode: mode_t) throws -> String {
        let path = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(chmod(path, mode), 0, "chmod \(path) failed: errno \(errno)")
        return path
    }

    /// The permission bits of the file at `name`.
    func mode(_ name: String) -> mode_t {
        var info = stat()
        precondition(stat(file(name), &info) == 0, "stat \(name) failed: errno \(errno)")
        return info.st_mode & 0o7777
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: path) }
}
