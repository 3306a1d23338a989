import KamiCSV
import KamiCore
import KamiHTTP
import KamiProtocol
import KamiServer
import KamiStore
import KamiUpstream

/// What the fuzzers feed bytes to, and the properties they check beyond "does not crash":
/// a decoder never claims more bytes than it was given, and what it decodes re-encodes and
/// decodes to the same request. The regression test replays every saved input through the
/// same functions, so a crash found once stays fixed.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case frame, json, csv, config, http, supplier, record

    /// Runs one input; a violated property is a `preconditionFailure` (what libFuzzer and
    /// the regression test both see as a failure).
    public func run(_ data: UnsafeRawBufferPointer) {
        switch self {
        case .frame: FuzzTarget.frame(data)
        case .json: FuzzTarget.json(data)
        case .csv: FuzzTarget.csv(data)
        case .config: FuzzTarget.config(data)
        case .http: FuzzTarget.http(data)
        case .supplier: FuzzTarget.supplier(data)
        case .record: IssueLogRecordCheck.check([UInt8](data))
        }
    }

    /// HTTP/1.1 messages as a server (requests) and a client (responses) read them: whole,
    /// and again fed in pieces at every 7th byte, which must give the same messages (or the
    /// same first failure).
    static func http(_ data: UnsafeRawBufferPointer) {
        for kind in [HTTPParser.Kind.request, .response] {
            let whole = messages(kind, [data])
            var pieces: [UnsafeRawBufferPointer] = []
            var offset = 0
            while offset < data.count {
                let end = min(data.count, offset + 7)
                pieces.append(UnsafeRawBufferPointer(rebasing: data[offset..<end]))
                offset = end
            }
            let split = messages(kind, pieces)
            precondition(whole.messages == split.messages, "\(kind): messages depend on how the bytes arrived")
            precondition(whole.failed == split.failed, "\(kind): a failure depends on how the bytes arrived")
        }
    }

    private static func messages(
        _ kind: HTTPParser.Kind, _ pieces: [UnsafeRawBufferPointer]
    ) -> (messages: [HTTPParser.Message], failed: Bool) {
        var parser = HTTPParser(kind: kind, limits: HTTPLimits(headerBytesMax: 2_048, bodyBytesMax: 2_048, headerCountMax: 20))
        var found: [HTTPParser.Message] = []
        for piece in pieces {
            parser.feed(piece)
            do {
                while let message = try parser.next() {
                    precondition(message.body.count <= 2_048, "a body over the limit")
                    found.append(message)
                }
            } catch {
                return (found, true)
            }
        }
        return (found, false)
    }

    /// Supplier answers (every style, every status the bytes pick) and callbacks: whatever a
    /// supplier sends is read as some reply, never a crash, and garbage is never a delivery.
    static func supplier(_ data: UnsafeRawBufferPointer) {
        let bytes = [UInt8](data)
        let status = [200, 201, 400, 401, 404, 409, 500][Int(bytes.first ?? 0) % 7]
        let credentials = SupplierCredentials(merchantID: "m", key: Array("fuzz-key".utf8))
        for style in [SupplierStyle.form, .gateway, .hmac] {
            let response = HTTPResponse(status: status, body: bytes)
            let reply = SupplierWire.parse(response, style: style, quantity: 1, customerOrderNo: "o1")
            if case .delivered(_, let items) = reply {
                precondition(items.allSatisfy { !$0.secret.isEmpty }, "a delivery with an empty secret")
            }
            _ = SupplierWire.parseProducts(response, style: style)
            let request = HTTPRequest(method: "POST", target: "/upstream/callback/s?" + String(decoding: bytes.prefix(64), as: UTF8.self),
                                      body: bytes)
            if case .success = SupplierWire.verifyCallback(request, style: style, credentials: credentials, nowSeconds: 1_800_000_000) {
                preconditionFailure("\(style): random bytes passed a callback's signature check")
            }
        }
        _ = KamiPeerWire.parse(bytes, isPlace: bytes.count % 2 == 0, customerOrderNo: "o1")
        _ = HTTPForm.decode(String(decoding: bytes, as: UTF8.self))
    }

    /// Binary request frames, decoded one after another as a connection would; then the same
    /// bytes as reply frames, as a client reads them.
    static func frame(_ data: UnsafeRawBufferPointer) {
        binaryReplies(data)
        var offset = 0
        while offset < data.count {
            let window = UnsafeRawBufferPointer(rebasing: data[offset...])
            switch BinaryCodec.decodeRequest(window) {
            case .needMore:
                return
            case .failure(_, _, let consumed, let fatal):
                precondition(consumed > 0 && consumed <= window.count, "frame failure consumed \(consumed) of \(window.count)")
                if fatal { return }
                offset += consumed
            case .item(let request, let consumed):
                precondition(consumed > 0 && consumed <= window.count, "frame consumed \(consumed) of \(window.count)")
                var again: [UInt8] = []
                if (try? BinaryCodec.encode(request, into: &again)) != nil {
                    let redecoded = again.withUnsafeBytes { BinaryCodec.decodeRequest($0) }
                    guard case .item(let same, _) = redecoded else { preconditionFailure("re-encoded frame does not decode") }
                    precondition(same == request, "frame round trip changed the request")
                }
                offset += consumed
            }
        }
    }

    /// JSON request lines, decoded one after another; then the same bytes as reply lines.
    static func json(_ data: UnsafeRawBufferPointer) {
        jsonReplies(data)
        var offset = 0
        while offset < data.count {
            let window = UnsafeRawBufferPointer(rebasing: data[offset...])
            switch JSONCodec.decodeRequest(window) {
            case .needMore:
                return
            case .failure(_, _, let consumed, let fatal):
                precondition(consumed > 0 && consumed <= window.count, "json failure consumed \(consumed) of \(window.count)")
                if fatal { return }
                offset += consumed
            case .item(let request, let consumed):
                precondition(consumed > 0 && consumed <= window.count, "json consumed \(consumed) of \(window.count)")
                var again: [UInt8] = []
                if (try? JSONCodec.encode(request, into: &again)) != nil {
                    let redecoded = again.withUnsafeBytes { JSONCodec.decodeRequest($0) }
                    guard case .item(let same, _) = redecoded else { preconditionFailure("re-encoded line does not decode") }
                    precondition(same == request, "json round trip changed the request")
                }
                offset += consumed
            }
        }
    }

    /// Reply frames, read forward compatibly (unknown states, codes and trailing fields are
    /// kept or skipped, never a crash). A reply with only what this version knows re-encodes
    /// and decodes to itself.
    static func binaryReplies(_ data: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < data.count {
            let window = UnsafeRawBufferPointer(rebasing: data[offset...])
            switch BinaryCodec.decodeReply(window) {
            case .needMore:
                return
            case .failure(_, _, let consumed, let fatal):
                precondition(consumed > 0 && consumed <= window.count, "reply failure consumed \(consumed) of \(window.count)")
                if fatal { return }
                offset += consumed
            case .item((let reply, let op), let consumed):
                precondition(consumed > 0 && consumed <= window.count, "reply consumed \(consumed) of \(window.count)")
                if onlyKnown(reply) {
                    var again: [UInt8] = []
                    BinaryCodec.encode(reply, op: op, into: &again)
                    let redecoded = again.withUnsafeBytes { BinaryCodec.decodeReply($0) }
                    guard case .item((let same, let sameOp), _) = redecoded else {
                        preconditionFailure("re-encoded reply frame does not decode")
                    }
                    precondition(same == reply && sameOp == op, "reply frame round trip changed the reply")
                }
                offset += consumed
            }
        }
    }

    /// Reply lines, each read with the shape its keys say, re-encoded and read again the same.
    static func jsonReplies(_ data: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < data.count {
            let window = UnsafeRawBufferPointer(rebasing: data[offset...])
            switch JSONCodec.decodeReply(window) {
            case .needMore:
                return
            case .failure(_, _, let consumed, let fatal):
                precondition(consumed > 0 && consumed <= window.count, "reply failure consumed \(consumed) of \(window.count)")
                if fatal { return }
                offset += consumed
            case .item(let reply, let consumed):
                precondition(consumed > 0 && consumed <= window.count, "reply consumed \(consumed) of \(window.count)")
                var again: [UInt8] = []
                JSONCodec.encode(reply, into: &again)
                let redecoded = again.withUnsafeBytes { JSONCodec.decodeReply($0) }
                guard case .item(let same, _) = redecoded else { preconditionFailure("re-encoded reply line does not decode") }
                precondition(same == reply, "reply line round trip changed the reply")
                offset += consumed
            }
        }
    }

    /// Whether a decoded binary reply has nothing a newer server added (those have no number
    /// of their own to be written back with).
    private static func onlyKnown(_ reply: Reply) -> Bool {
        switch reply.result {
        case .failure(let error): return error.code.isKnown
        case .success(.order(let order)): return order.state.known != nil
        case .success(.codes(let codes, _)): return codes.allSatisfy { $0.state?.known != nil }
        case .success: return true
        }
    }

    /// A CSV import of the bytes, fed in two pieces cut at a data-chosen point.
    static func csv(_ data: UnsafeRawBufferPointer) {
        let encoding: CSVEncoding = (data.first ?? 0) & 1 == 0 ? .utf8 : .gb18030
        guard var importer = try? CSVCodeImporter(encoding: encoding) else { return }
        var rows = 0
        let cut = data.isEmpty ? 0 : Int(data[data.count - 1]) % (data.count + 1)
        do {
            try importer.feed(UnsafeRawBufferPointer(rebasing: data[..<cut])) { _ in rows += 1 }
            try importer.feed(UnsafeRawBufferPointer(rebasing: data[cut...])) { _ in rows += 1 }
            let summary = try importer.finish { _ in rows += 1 }
            precondition(summary.rowCount + summary.rejectCount == rows, "csv summary \(summary) vs \(rows) items")
            precondition(summary.byteCount == data.count, "csv counted \(summary.byteCount) of \(data.count) bytes")
        } catch {
            // A refused header or undecodable input is an answer, not a failure.
        }
    }

    /// The config parser over the bytes as text (never touching the environment).
    static func config(_ data: UnsafeRawBufferPointer) {
        let text = String(decoding: data, as: UTF8.self)
        do {
            let config = try DaemonConfig.parse(text, source: "fuzz.conf", environment: ["X": "/x"])
            precondition(config.holdTTLDefaultMs <= config.holdTTLMaxMs, "accepted default hold above max")
            precondition(DaemonConfig.Range.maxConnections.contains(config.maxConnections), "accepted max_connections out of range")
        } catch {
            precondition(error.description.hasPrefix("fuzz.conf:"), "config error without file:line: \(error)")
        }
    }
}
