import Foundation
import Glibc
import KamiCore
import KamiProtocol
@testable import KamiServer
import XCTest

/// A log line is always one whole line, however hostile the values in it, and what a client
/// chose is bounded in it.
final class LoggerTests: XCTestCase {
    func testControlCharactersAreEscapedAndValuesQuotedWhenNeeded() {
        let line = Logger.line(.warning, "hello-refused", [
            "peer": "127.0.0.1", "client": "a\u{0}b\nc\r\td\u{1B}[2J\u{7F}\u{85}\u{2028}e", "note": "x=\"y\" \\z", "empty": "",
        ])
        XCTAssertEqual(line, #"<4>hello-refused peer=127.0.0.1 client="a\x00b\nc\r\td\x1B[2J\x7F\x85\u{2028}e" "#
            + #"note="x=\"y\" \\z" empty="""# + "\n")
        XCTAssertEqual(line.utf8.filter { $0 == 0x0A }.count, 1, "exactly one newline, at the end")
        XCTAssertFalse(line.utf8.contains(0), "no NUL byte")
        // CR LF is one Character in Swift; it must still come out escaped.
        XCTAssertEqual(Logger.quote("a\r\nb"), #""a\r\nb""#)
        XCTAssertEqual(Logger.quote("plain-value_1.2"), "plain-value_1.2")
        XCTAssertEqual(Logger.quote("卡密"), "卡密")
    }

    func testClientValuesAreTruncatedWithAMarker() {
        let long = String(repeating: "x", count: 10_000)
        XCTAssertEqual(Logger.untrusted(long), String(repeating: "x", count: 64) + "...(+9936 bytes)")
        XCTAssertEqual(Logger.untrusted("short"), "short")
        XCTAssertEqual(Logger.untrusted(String(repeating: "y", count: 64)), String(repeating: "y", count: 64))
        // Cut on a character boundary: 21 three-byte characters fit in 64 bytes, not 22.
        let wide = String(repeating: "卡", count: 30)
        XCTAssertEqual(Logger.untrusted(wide), String(repeating: "卡", count: 21) + "...(+27 bytes)")
        // Any value at all is bounded, client-supplied or not.
        let line = Logger.line(.info, "event", ["value": String(repeating: "z", count: 100_000)])
        XCTAssertLessThan(line.utf8.count, Logger.valueBytesMax + 100)
    }

    /// Against a real kamid: a hello with a NUL byte or a newline in a huge client name logs
    /// one bounded line per refusal, and the lines after it start where they should.
    func testHostileClientNamesInHelloLogOneBoundedLineEach() throws {
        let kamid = try Kamid()
        defer { XCTAssertEqual(kamid.stop(), 0) }
        let names = [#"evil\u0000rest"#, "bad\\ninjected-event x=1" + String(repeating: "n", count: 10_000)]
        for name in names {
            let client = try RawClient(port: kamid.port)
            let reply = client.call(#""id":0,"op":"hello","client":"\#(name)","token":"wrong""#)
            XCTAssertEqual(reply?.error?.code, .unauthorized, "\(String(describing: reply))")
        }
        XCTAssertEqual(try kamid.storefront().call(#""id":1,"op":"ping""#)?.isOK, true)
        var lines: [String] = []
        for _ in 0..<100 {
            lines = kamid.log.filter { $0.contains("hello-refused") }
            if lines.count >= 2 { break }
            usleep(20_000)
        }
        XCTAssertEqual(lines.count, 2, "\(kamid.log)")
        guard lines.count == 2 else { return }
        XCTAssertTrue(lines[0].hasPrefix("<4>hello-refused peer="), lines[0])
        XCTAssertTrue(lines[0].hasSuffix(#" client="evil\x00rest""#), lines[0])
        XCTAssertTrue(lines[1].hasSuffix(#" client="bad\ninjected-event x=1"#
            + String(repeating: "n", count: 64 - 22) + #"...(+9958 bytes)""#), lines[1])
        XCTAssertLessThan(lines[1].utf8.count, 200)
        XCTAssertFalse(kamid.log.contains { $0.hasPrefix("injected-event") || $0.contains(">injected-event") })
        XCTAssertTrue(kamid.log.allSatisfy { $0.hasPrefix("<") }, "every line starts with its priority: \(kamid.log)")
    }
}
