@testable import KamiXLSX
import XCTest

final class XMLPullParserTests: XCTestCase {
    static let document = #"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#
        + "<!DOCTYPE x><!-- a > comment --><root a='1' b=\"x &amp; y\"><x:c r=\"A1\" t=\"s\"><v>7</v></x:c>"
        + "<t xml:space=\"preserve\"> 卡密 &lt;&#x41;&#66;&gt; </t><![CDATA[<not a tag>]]><empty/></root>"

    private func events(chunks: [[UInt8]]) throws -> [XMLPullParser.Event] {
        var parser = XMLPullParser(part: "test.xml")
        var events: [XMLPullParser.Event] = []
        for chunk in chunks {
            parser.feed(chunk)
            while let event = try parser.next() { events.append(event) }
        }
        parser.end()
        while let event = try parser.next() { events.append(event) }
        return events
    }

    func testEventsAreTheSameHoweverTheBytesAreSplit() throws {
        let bytes = Array(XMLPullParserTests.document.utf8)
        let whole = try events(chunks: [bytes])
        XCTAssertEqual(whole, [
            .start(name: "root", attributes: [("a", "1"), ("b", "x & y")], selfClosing: false),
            .start(name: "x:c", attributes: [("r", "A1"), ("t", "s")], selfClosing: false),
            .start(name: "v", attributes: [], selfClosing: false), .text("7"), .end(name: "v"), .end(name: "x:c"),
            .start(name: "t", attributes: [("xml:space", "preserve")], selfClosing: false), .text(" 卡密 <AB> "), .end(name: "t"),
            .text("<not a tag>"), .start(name: "empty", attributes: [], selfClosing: true), .end(name: "root"),
        ])
        // Byte by byte, and in chunks of 2, 3 and 7 bytes: a token split anywhere (even inside
        // a UTF-8 sequence or an entity) reads the same. Text may come in several pieces.
        for size in [1, 2, 3, 7] {
            let chunks = stride(from: 0, to: bytes.count, by: size).map { Array(bytes[$0..<min($0 + size, bytes.count)]) }
            XCTAssertEqual(merged(try events(chunks: chunks)), merged(whole), "chunks of \(size)")
        }
    }

    /// Adjacent text events joined (a reader concatenates them anyway).
    private func merged(_ events: [XMLPullParser.Event]) -> [XMLPullParser.Event] {
        var out: [XMLPullParser.Event] = []
        for event in events {
            if case .text(let next) = event, case .text(let previous)? = out.last {
                out[out.count - 1] = .text(previous + next)
            } else {
                out.append(event)
            }
        }
        return out
    }

    func testMalformedXMLIsAnErrorNamingThePart() {
        for (xml, words) in [("<a><b></a", "ends inside markup"), ("<a b=1/>", "not quoted"), ("<a>&bogus;</a>", "starts no known entity"),
                             ("</a>", "closes nothing"), ("<a><b>", "ends inside an element"), ("<a b/>", "has no value")] {
            do {
                _ = try events(chunks: [Array(xml.utf8)])
                XCTFail("\(xml) was read")
            } catch let error as XLSXError {
                XCTAssertEqual(error.code, .badXML, xml)
                XCTAssertTrue(error.message.hasPrefix("test.xml: ") && error.message.contains(words), "\(xml): \(error.message)")
            } catch {
                XCTFail("\(xml): \(error)")
            }
        }
    }

    func testATokenPastTheBoundIsRefusedInsteadOfBuffered() {
        var parser = XMLPullParser(part: "big.xml", tokenBytesMax: 1_000)
        parser.feed(Array("<a>".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 900))
        XCTAssertEqual(try parser.next(), .start(name: "a", attributes: [], selfClosing: false))
        XCTAssertNil(try parser.next(), "900 bytes of text without an end: waits for more")
        parser.feed([UInt8](repeating: UInt8(ascii: "x"), count: 600))
        XCTAssertThrowsError(try parser.next()) { XCTAssertEqual(($0 as? XLSXError)?.code, .tooLarge) }
    }
}
