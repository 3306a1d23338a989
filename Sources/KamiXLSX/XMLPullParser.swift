/// A small pull reader for the XML a spreadsheet program writes, fed in chunks: start tags
/// with their attributes, end tags and text, entities decoded. Comments, processing
/// instructions, the declaration and DOCTYPE are skipped; CDATA is text. Names keep their
/// prefix (`x:c`); `localName` drops it. A token longer than `tokenBytesMax` is an error,
/// not a buffer that grows without end.
struct XMLPullParser {
    enum Event: Equatable {
        case start(name: String, attributes: [(String, String)], selfClosing: Bool)
        case end(name: String)
        case text(String)

        static func == (a: Event, b: Event) -> Bool {
            switch (a, b) {
            case let (.start(n1, a1, s1), .start(n2, a2, s2)):
                n1 == n2 && s1 == s2 && a1.map(\.0) == a2.map(\.0) && a1.map(\.1) == a2.map(\.1)
            case let (.end(n1), .end(n2)): n1 == n2
            case let (.text(t1), .text(t2)): t1 == t2
            default: false
            }
        }
    }

    let part: String
    let tokenBytesMax: Int
    private var buffer: [UInt8] = []
    private var position = 0
    private(set) var ended = false
    private var depth = 0

    init(part: String, tokenBytesMax: Int = 1 << 20) {
        self.part = part
        self.tokenBytesMax = tokenBytesMax
    }

    static func localName(_ name: String) -> Substring {
        if let colon = name.lastIndex(of: ":") { return name[name.index(after: colon)...] }
        return Substring(name)
    }

    /// More bytes of the document.
    mutating func feed(_ bytes: [UInt8]) {
        if position > 0 && position >= buffer.count / 2 {
            buffer.removeFirst(position)
            position = 0
        }
        buffer += bytes
    }

    /// No more bytes will come.
    mutating func end() { ended = true }

    /// The next event, or nil when more bytes are needed (or, after `end()`, at the end).
    mutating func next() throws(XLSXError) -> Event? {
        while position < buffer.count {
            if buffer[position] != UInt8(ascii: "<") {
                guard let lt = index(of: UInt8(ascii: "<"), from: position) ?? (ended ? buffer.count : nil) else {
                    try checkBound()
                    return nil
                }
                let text = try decode(buffer[position..<lt])
                position = lt
                return .text(text)
            }
            // Markup. Until 9 bytes are here, `<!--` and `<![CDATA[` cannot be told apart
            // from a tag: wait for them (or for the end).
            if buffer.count - position < 9 && !ended { try checkBound(); return nil }
            if starts(with: "<!--") {
                guard let close = find("-->", from: position + 4) else { try needMore(); return nil }
                position = close + 3
                continue
            }
            if starts(with: "<![CDATA[") {
                guard let close = find("]]>", from: position + 9) else { try needMore(); return nil }
                let text = String(decoding: buffer[(position + 9)..<close], as: UTF8.self)
                position = close + 3
                return .text(text)
            }
            if starts(with: "<?") {
                guard let close = find("?>", from: position + 2) else { try needMore(); return nil }
                position = close + 2
                continue
            }
            if starts(with: "<!") {
                guard let close = index(of: UInt8(ascii: ">"), from: position + 2) else { try needMore(); return nil }
                position = close + 1
                continue
            }
            guard let close = tagEnd(from: position + 1) else { try needMore(); return nil }
            let tag = buffer[(position + 1)..<close]
            position = close + 1
            return try parseTag(tag)
        }
        if ended && depth != 0 { throw XLSXError(.badXML, "\(part): the document ends inside an element") }
        return nil
    }

    private func starts(with literal: StaticString) -> Bool {
        matches(literal, at: position)
    }

    /// Whether `literal` is at `index` (without allocating: this runs for every tag).
    private func matches(_ literal: StaticString, at index: Int) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard index + count <= buffer.count else { return false }
        return literal.withUTF8Buffer { needle in
            for offset in 0..<count where buffer[index + offset] != needle[offset] { return false }
            return true
        }
    }

    private func index(of byte: UInt8, from start: Int) -> Int? {
        var index = start
        while index < buffer.count {
            if buffer[index] == byte { return index }
            index += 1
        }
        return nil
    }

    private func find(_ literal: StaticString, from start: Int) -> Int? {
        let first = literal.withUTF8Buffer { $0[0] }
        var index = start
        while index + literal.utf8CodeUnitCount <= buffer.count {
            if buffer[index] == first && matches(literal, at: index) { return index }
            index += 1
        }
        return nil
    }

    /// The `>` closing a tag, skipping quoted attribute values.
    private func tagEnd(from start: Int) -> Int? {
        var quote: UInt8 = 0
        var index = start
        while index < buffer.count {
            let byte = buffer[index]
            if quote != 0 {
                if byte == quote { quote = 0 }
            } else if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
                quote = byte
            } else if byte == UInt8(ascii: ">") {
                return index
            }
            index += 1
        }
        return nil
    }

    private func needMore() throws(XLSXError) {
        if ended { throw XLSXError(.badXML, "\(part): the document ends inside markup") }
        try checkBound()
    }

    private func checkBound() throws(XLSXError) {
        if buffer.count - position > tokenBytesMax {
            throw XLSXError(.tooLarge, "\(part): one piece of XML is over \(tokenBytesMax) bytes")
        }
    }

    private static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }

    private mutating func parseTag(_ tag: ArraySlice<UInt8>) throws(XLSXError) -> Event {
        if tag.first == UInt8(ascii: "/") {
            let name = String(decoding: tag.dropFirst().filter { !XMLPullParser.isSpace($0) }, as: UTF8.self)
            guard !name.isEmpty else { throw XLSXError(.badXML, "\(part): an end tag without a name") }
            depth -= 1
            guard depth >= 0 else { throw XLSXError(.badXML, "\(part): </\(name)> closes nothing") }
            return .end(name: name)
        }
        var body = tag
        let selfClosing = body.last == UInt8(ascii: "/")
        if selfClosing { body = body.dropLast() }
        var index = body.startIndex
        while index < body.endIndex && !XMLPullParser.isSpace(body[index]) { index += 1 }
        let name = String(decoding: body[body.startIndex..<index], as: UTF8.self)
        guard !name.isEmpty else { throw XLSXError(.badXML, "\(part): a tag without a name") }
        var attributes: [(String, String)] = []
        while true {
            while index < body.endIndex && XMLPullParser.isSpace(body[index]) { index += 1 }
            guard index < body.endIndex else { break }
            let nameStart = index
            while index < body.endIndex && body[index] != UInt8(ascii: "=") && !XMLPullParser.isSpace(body[index]) { index += 1 }
            let attribute = String(decoding: body[nameStart..<index], as: UTF8.self)
            while index < body.endIndex && XMLPullParser.isSpace(body[index]) { index += 1 }
            guard index < body.endIndex, body[index] == UInt8(ascii: "=") else {
                throw XLSXError(.badXML, "\(part): attribute \(attribute) of <\(name)> has no value")
            }
            index += 1
            while index < body.endIndex && XMLPullParser.isSpace(body[index]) { index += 1 }
            guard index < body.endIndex, body[index] == UInt8(ascii: "\"") || body[index] == UInt8(ascii: "'") else {
                throw XLSXError(.badXML, "\(part): attribute \(attribute) of <\(name)> is not quoted")
            }
            let quote = body[index]
            index += 1
            let valueStart = index
            while index < body.endIndex && body[index] != quote { index += 1 }
            guard index < body.endIndex else { throw XLSXError(.badXML, "\(part): attribute \(attribute) of <\(name)> is not closed") }
            attributes.append((attribute, try decode(body[valueStart..<index])))
            index += 1
        }
        if !selfClosing { depth += 1 }
        return .start(name: name, attributes: attributes, selfClosing: selfClosing)
    }

    /// Text with `&lt;` `&gt;` `&amp;` `&quot;` `&apos;` and `&#…;` decoded.
    private func decode(_ bytes: ArraySlice<UInt8>) throws(XLSXError) -> String {
        guard bytes.contains(UInt8(ascii: "&")) else { return String(decoding: bytes, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "&") else {
                out.append(byte)
                index += 1
                continue
            }
            guard let semicolon = bytes[index...].prefix(12).firstIndex(of: UInt8(ascii: ";")) else {
                throw XLSXError(.badXML, "\(part): an '&' that starts no entity")
            }
            let entity = String(decoding: bytes[(index + 1)..<semicolon], as: UTF8.self)
            switch entity {
            case "lt": out.append(UInt8(ascii: "<"))
            case "gt": out.append(UInt8(ascii: ">"))
            case "amp": out.append(UInt8(ascii: "&"))
            case "quot": out.append(UInt8(ascii: "\""))
            case "apos": out.append(UInt8(ascii: "'"))
            default:
                let scalar: UInt32?
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    scalar = UInt32(entity.dropFirst(2), radix: 16)
                } else if entity.hasPrefix("#") {
                    scalar = UInt32(entity.dropFirst())
                } else {
                    scalar = nil
                }
                guard let scalar, let unicode = Unicode.Scalar(scalar) else {
                    // Not echoed: the text may be a secret with a bare '&' in it.
                    throw XLSXError(.badXML, "\(part): an '&' that starts no known entity (a bare '&' must be written &amp;)")
                }
                out += Array(String(Character(unicode)).utf8)
            }
            index = semicolon + 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}
