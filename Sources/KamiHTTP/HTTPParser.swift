/// Why bytes are not an HTTP/1.1 message; the text names what was wrong (never a body).
public struct HTTPParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The status a server answers it with (400, 413, 431, 501).
    public var status: Int
    public var message: String
    public var description: String { message }
}

/// Bounds on one message, so a peer cannot make us buffer without end.
public struct HTTPLimits: Sendable, Hashable {
    /// Start line plus headers.
    public var headerBytesMax: Int
    /// Body (after de-chunking).
    public var bodyBytesMax: Int
    /// Header fields.
    public var headerCountMax: Int

    /// Makes limits.
    public init(headerBytesMax: Int = 16_384, bodyBytesMax: Int = 1 << 20, headerCountMax: Int = 100) {
        self.headerBytesMax = headerBytesMax
        self.bodyBytesMax = bodyBytesMax
        self.headerCountMax = headerCountMax
    }
}

/// An incremental HTTP/1.1 parser: feed bytes as they arrive, take whole messages out.
/// Bodies are framed by `Content-Length` or `Transfer-Encoding: chunked`; a response with
/// neither ends when the peer closes (`finish()`). Pipelined messages are kept in order.
public struct HTTPParser: Sendable {
    /// Which side's messages this parses.
    public enum Kind: Sendable { case request, response }

    /// The parts of a message before its body.
    public struct Head: Sendable, Hashable {
        /// Request: method; response: "HTTP/1.1".
        public var first: String
        /// Request: target; response: status.
        public var second: String
        /// Request: version; response: reason.
        public var third: String
        public var headers: HTTPHeaders
    }

    /// One whole message.
    public struct Message: Sendable, Hashable {
        public var head: Head
        public var body: [UInt8]
        /// Whether the peer asked to close after this message (`Connection: close`, HTTP/1.0).
        public var close: Bool
    }

    private enum Framing: Sendable { case length(Int), chunked, untilClose }

    private enum Phase: Sendable {
        case head
        case body(Head, Framing, close: Bool)
        case chunkSize(Head, close: Bool)
        case chunkData(Head, remaining: Int, close: Bool)
        case chunkDataEnd(Head, close: Bool)
        case trailers(Head, close: Bool)
    }

    public let kind: Kind
    public let limits: HTTPLimits
    private var buffer: [UInt8] = []
    private var start = 0
    private var phase = Phase.head
    private var body: [UInt8] = []
    private var trailerLines = 0
    /// Set by the caller for a response to HEAD (no body whatever the headers say).
    public var expectNoBody = false

    /// Makes a parser for `kind` messages within `limits`.
    public init(kind: Kind, limits: HTTPLimits = HTTPLimits()) {
        self.kind = kind
        self.limits = limits
    }

    /// Bytes received and not yet consumed by a whole message.
    public var buffered: Int { buffer.count - start }

    /// Whether a message has begun (some bytes of it arrived).
    public var inMessage: Bool {
        if case .head = phase { return buffered > 0 }
        return true
    }

    /// Adds received bytes.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 65_536 {
            // Consumed bytes in front of a pipelined message: dropped, so a long keep-alive
            // connection never grows the buffer.
            buffer.removeSubrange(0..<start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Adds received bytes.
    public mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// The next whole message, nil when more bytes are needed.
    public mutating func next() throws(HTTPParseError) -> Message? {
        while true {
            switch phase {
            case .head:
                guard let end = headEnd() else {
                    if buffered > limits.headerBytesMax {
                        throw HTTPParseError(status: 431, message: "header section exceeds \(limits.headerBytesMax) bytes")
                    }
                    return nil
                }
                if end - start > limits.headerBytesMax {
                    throw HTTPParseError(status: 431, message: "header section exceeds \(limits.headerBytesMax) bytes")
                }
                let head = try parseHead(start..<end)
                start = end + 4
                let (framing, close) = try framing(of: head)
                body = []
                switch framing {
                case .length(0):
                    return Message(head: head, body: [], close: close)
                case .chunked:
                    phase = .chunkSize(head, close: close)
                default:
                    phase = .body(head, framing, close: close)
                }
            case .body(let head, let framing, let close):
                switch framing {
                case .length(let length):
                    guard buffered >= length else { return nil }
                    let message = Message(head: head, body: Array(buffer[start..<(start + length)]), close: close)
                    start += length
                    phase = .head
                    return message
                case .untilClose:
                    if buffered > limits.bodyBytesMax {
                        throw HTTPParseError(status: 413, message: "body exceeds \(limits.bodyBytesMax) bytes")
                    }
                    return nil
                case .chunked:
                    phase = .chunkSize(head, close: close)
                }
            case .chunkSize(let head, let close):
                guard let lineEnd = find([13, 10], from: start) else {
                    if buffered > 1_024 { throw HTTPParseError(status: 400, message: "chunk size line too long") }
                    return nil
                }
                let line = String(decoding: buffer[start..<lineEnd], as: UTF8.self)
                let sizeText = line.split(separator: ";", maxSplits: 1).first.map { String($0).trimmed } ?? ""
                guard !sizeText.isEmpty, sizeText.count <= 8, sizeText.allSatisfy(\.isHexDigit),
                      let size = Int(sizeText, radix: 16) else {
                    throw HTTPParseError(status: 400, message: "bad chunk size line (\(line.utf8.count) bytes)")
                }
                start = lineEnd + 2
                if size == 0 {
                    phase = .trailers(head, close: close)
                } else {
                    guard body.count + size <= limits.bodyBytesMax else {
                        throw HTTPParseError(status: 413, message: "body exceeds \(limits.bodyBytesMax) bytes")
                    }
                    phase = .chunkData(head, remaining: size, close: close)
                }
            case .chunkData(let head, let remaining, let close):
                let take = min(remaining, buffered)
                guard take > 0 else { return nil }
                body.append(contentsOf: buffer[start..<(start + take)])
                start += take
                phase = remaining == take ? .chunkDataEnd(head, close: close)
                    : .chunkData(head, remaining: remaining - take, close: close)
            case .chunkDataEnd(let head, let close):
                guard buffered >= 2 else { return nil }
                guard buffer[start] == 13 && buffer[start + 1] == 10 else {
                    throw HTTPParseError(status: 400, message: "chunk data not followed by CRLF")
                }
                start += 2
                phase = .chunkSize(head, close: close)
            case .trailers(let head, let close):
                // Trailer fields are read and dropped; an empty line ends the message.
                guard let lineEnd = find([13, 10], from: start) else {
                    if buffered > limits.headerBytesMax { throw HTTPParseError(status: 431, message: "trailers too long") }
                    return nil
                }
                let empty = lineEnd == start
                start = lineEnd + 2
                trailerLines += 1
                if trailerLines > limits.headerCountMax {
                    throw HTTPParseError(status: 431, message: "more than \(limits.headerCountMax) trailer fields")
                }
                if empty {
                    phase = .head
                    trailerLines = 0
                    let message = Message(head: head, body: body, close: close)
                    body = []
                    return message
                }
            }
        }
    }

    /// The peer closed: a body framed by the close ends here. Throws when the close cut a
    /// message short; nil when no message was in progress.
    public mutating func finish() throws(HTTPParseError) -> Message? {
        switch phase {
        case .body(let head, .untilClose, _):
            let message = Message(head: head, body: Array(buffer[start...]), close: true)
            start = buffer.count
            phase = .head
            return message
        case .head where buffered == 0:
            return nil
        default:
            throw HTTPParseError(status: 400, message: "connection closed in the middle of a message")
        }
    }

    private func headEnd() -> Int? { find([13, 10, 13, 10], from: start) }

    private func find(_ pattern: [UInt8], from: Int) -> Int? {
        let count = buffer.count
        guard count - from >= pattern.count else { return nil }
        return buffer.withUnsafeBufferPointer { bytes -> Int? in
            var index = from
            let last = count - pattern.count
            while index <= last {
                if bytes[index] == pattern[0] {
                    var matched = true
                    for offset in 1..<pattern.count where bytes[index + offset] != pattern[offset] {
                        matched = false
                        break
                    }
                    if matched { return index }
                }
                index += 1
            }
            return nil
        }
    }

    private func parseHead(_ range: Range<Int>) throws(HTTPParseError) -> Head {
        var lines: [Substring] = []
        let text = String(decoding: buffer[range], as: UTF8.self)
        for line in text.split(separator: "\r\n", omittingEmptySubsequences: false) { lines.append(line) }
        guard let startLine = lines.first, !startLine.isEmpty else {
            throw HTTPParseError(status: 400, message: "empty start line")
        }
        let parts = startLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        var head: Head
        switch kind {
        case .request:
            guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy({ $0.isLetter && $0.isUppercase }),
                  parts[1].hasPrefix("/") || parts[1] == "*" else {
                throw HTTPParseError(status: 400, message: "bad request line (\(startLine.utf8.count) bytes)")
            }
            guard parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else {
                throw HTTPParseError(status: 505, message: "unsupported HTTP version")
            }
            head = Head(first: parts[0], second: parts[1], third: parts[2], headers: HTTPHeaders())
        case .response:
            guard parts.count >= 2, parts[0] == "HTTP/1.1" || parts[0] == "HTTP/1.0",
                  parts[1].count == 3, let status = Int(parts[1]), status >= 100 else {
                throw HTTPParseError(status: 400, message: "bad status line (\(startLine.utf8.count) bytes)")
            }
            head = Head(first: parts[0], second: String(status), third: parts.count > 2 ? parts[2] : "", headers: HTTPHeaders())
        }
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else {
                throw HTTPParseError(status: 400, message: "a header line without a colon")
            }
            let name = String(line[..<colon])
            guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.!#$%&'*+^`|~".contains($0)) }) else {
                throw HTTPParseError(status: 400, message: "a bad header name")
            }
            let value = line[line.index(after: colon)...]
            // No control characters in a value but tab (a bare CR or LF is how requests are
            // smuggled past a proxy that reads them otherwise).
            guard value.unicodeScalars.allSatisfy({ $0 == "\t" || ($0.value >= 0x20 && $0.value != 0x7F) }) else {
                throw HTTPParseError(status: 400, message: "a control character in the value of \(name.prefix(40))")
            }
            head.headers.add(name, String(value).trimmed)
            if head.headers.fields.count > limits.headerCountMax {
                throw HTTPParseError(status: 431, message: "more than \(limits.headerCountMax) header fields")
            }
        }
        return head
    }

    private func framing(of head: Head) throws(HTTPParseError) -> (Framing, close: Bool) {
        let version = kind == .request ? head.third : head.first
        let connection = head.headers["connection"]?.lowercased() ?? ""
        let close = connection.contains("close") || (version == "HTTP/1.0" && !connection.contains("keep-alive"))
        if kind == .response {
            let status = Int(head.second) ?? 0
            if expectNoBody || status == 204 || status == 304 || status < 200 { return (.length(0), close) }
        }
        if let coding = head.headers["transfer-encoding"] {
            guard head.headers.values(for: "transfer-encoding").count == 1, coding.lowercased() == "chunked" else {
                throw HTTPParseError(status: 501, message: "unsupported transfer-encoding")
            }
            if head.headers["content-length"] != nil {
                throw HTTPParseError(status: 400, message: "both content-length and transfer-encoding")
            }
            return (.chunked, close)
        }
        let lengths = head.headers.values(for: "content-length")
        if let text = lengths.first {
            guard Set(lengths).count == 1, text.count <= 12, text.allSatisfy(\.isNumber), let length = Int(text) else {
                throw HTTPParseError(status: 400, message: "bad content-length")
            }
            guard length <= limits.bodyBytesMax else {
                throw HTTPParseError(status: 413, message: "body of \(length) bytes exceeds \(limits.bodyBytesMax)")
            }
            return (.length(length), close)
        }
        return kind == .request ? (.length(0), close) : (.untilClose, true)
    }
}

extension HTTPParser.Message {
    /// The message as a request (parser kind `.request`).
    public var request: HTTPRequest {
        HTTPRequest(method: head.first, target: head.second, headers: head.headers, body: body)
    }

    /// The message as a response (parser kind `.response`).
    public var response: HTTPResponse {
        HTTPResponse(status: Int(head.second) ?? 0, reason: head.third, headers: head.headers, body: body)
    }
}

extension String {
    var trimmed: String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}
