import KamiCore
import KamiProtocol

/// The state of one connection and the request/reply exchange over it. Lives behind
/// `KamiConnection`'s lock, so only one thread runs it at a time.
///
/// On the wire every request carries an id chosen here (consecutive, starting at 1), not
/// the caller's: ids are then unique on the connection whatever the caller passed, binary
/// replies can be matched by id, and JSON replies can be checked against the order they
/// must come in. The caller's ids are put back into the replies.
struct ConnectionCore {
    /// Open, or closed for good with the reason (shown to any later caller).
    enum State {
        case open(ClientSocket)
        /// Terminal: a connection is never reopened; the pool makes a new one.
        case closed(reason: String)
    }

    let endpoint: KamiEndpoint
    let encoding: WireEncoding
    let requestTimeoutMs: Int
    private(set) var state: State
    /// Bytes received and not yet decoded start at `inboxStart`.
    private var inbox: [UInt8] = []
    private var inboxStart = 0
    /// One read's worth of scratch space, allocated once per connection.
    private var chunk = [UInt8](repeating: 0, count: ClientLimits.readChunkBytes)
    /// Encoded requests, reused between exchanges.
    private var outbox: [UInt8] = []
    private var nextWireID: UInt32 = 1

    init(endpoint: KamiEndpoint, encoding: WireEncoding, requestTimeoutMs: Int, socket: ClientSocket) {
        self.endpoint = endpoint
        self.encoding = encoding
        self.requestTimeoutMs = requestTimeoutMs
        self.state = .open(socket)
    }

    var isOpen: Bool {
        if case .open = state { return true }
        return false
    }

    /// Closes the connection when it has input although no request is in flight (see
    /// `ClientSocket.hasUnexpectedInput`); returns whether it is still open.
    mutating func closeIfStale() -> Bool {
        guard case .open(let socket) = state else { return false }
        guard inboxStart == inbox.count, !socket.hasUnexpectedInput() else {
            close(reason: "kamid closed it or sent a reply no request was waiting for")
            return false
        }
        return true
    }

    /// Closes the socket (once) and remembers why.
    mutating func close(reason: String) {
        if case .open(let socket) = state { socket.close() }
        state = .closed(reason: reason)
    }

    // MARK: Exchange

    /// Sends every request, then returns their replies in the same order, each carrying
    /// the caller's id. Writing and reading overlap, so a pipeline larger than the socket
    /// buffers cannot deadlock against a server that stops reading until its replies are
    /// read.
    ///
    /// Throws without sending anything when a request cannot be encoded (BAD_REQUEST,
    /// TOO_LARGE; the connection stays open). Any failure after that (reset, end of file,
    /// timeout, a reply that cannot be read or matched) closes the connection and throws
    /// UNAVAILABLE; a connection-level error from kamid (BUSY on accept: too many
    /// connections) closes it and throws that error.
    mutating func exchange(_ requests: [Request]) throws(KamiError) -> [Reply] {
        guard case .open(let socket) = state else {
            guard case .closed(let reason) = state else { preconditionFailure("unreachable") }
            throw KamiError(.unavailable, "the connection to kamid at \(endpoint) is closed: \(reason)")
        }
        guard !requests.isEmpty else { return [] }
        guard requests.count <= ClientLimits.pipelineRequestsMax else {
            throw KamiError(.badRequest, "\(requests.count) requests in one pipeline; at most "
                + "\(ClientLimits.pipelineRequestsMax) are allowed")
        }
        let firstID = try encode(requests)
        var pending = PendingReplies(requests: requests, firstID: firstID)
        do throws(TransportFailure) {
            try transfer(socket, &pending)
        } catch {
            let kamiError = error.kamiError(endpoint: endpoint, timeoutMs: requestTimeoutMs)
            close(reason: kamiError.message)
            throw kamiError
        }
        return pending.replies.map { $0! }
    }

    /// Encodes `requests` into the outbox with wire ids; returns the first id.
    private mutating func encode(_ requests: [Request]) throws(KamiError) -> UInt32 {
        // Ids are never reused while a reply to them may still come: they only restart at
        // 1 when the range would overflow, and every earlier reply has been read by then
        // (or the connection was closed).
        if UInt32.max - nextWireID < UInt32(requests.count) { nextWireID = 1 }
        let firstID = nextWireID
        outbox.removeAll(keepingCapacity: true)
        for (offset, request) in requests.enumerated() {
            var wire = request
            wire.id = .number(Int64(firstID) + Int64(offset))
            switch encoding {
            case .binary: try BinaryCodec.encode(wire, into: &outbox)
            case .json: try JSONCodec.encode(wire, into: &outbox)
            }
        }
        nextWireID = firstID + UInt32(requests.count)
        return firstID
    }

    /// Moves the outbox out and replies in until every request is answered.
    private mutating func transfer(_ socket: ClientSocket, _ pending: inout PendingReplies)
        throws(TransportFailure)
    {
        var written = 0
        var deadline = Deadline(timeoutMs: requestTimeoutMs)
        while !pending.isComplete {
            if written < outbox.count {
                let result = outbox.withUnsafeBytes { bytes in
                    Result { () throws(SystemCallError) in
                        try socket.write(UnsafeRawBufferPointer(rebasing: bytes[written...]))
                    }
                }
                do throws(SystemCallError) {
                    written += try result.get()
                } catch {
                    throw .system(error)
                }
            }
            let wantWrite = written < outbox.count
            let readiness: ClientSocket.Readiness?
            do throws(SystemCallError) {
                readiness = try socket.poll(readable: true, writable: wantWrite, deadline: deadline)
            } catch {
                throw .system(error)
            }
            guard let readiness else { throw .timedOut(answered: pending.answered, of: pending.count) }
            guard readiness.readable else { continue }
            let before = pending.answered
            try receive(socket)
            try decode(&pending)
            if pending.answered > before { deadline = Deadline(timeoutMs: requestTimeoutMs) }
        }
        compactInbox()
    }

    /// Appends what the socket has to the inbox; throws at end of file.
    private mutating func receive(_ socket: ClientSocket) throws(TransportFailure) {
        let result = chunk.withUnsafeMutableBytes { buffer in
            Result { () throws(SystemCallError) in try socket.read(into: buffer) }
        }
        let count: Int?
        do throws(SystemCallError) {
            count = try result.get()
        } catch {
            throw .system(error)
        }
        guard let count else { return }
        guard count > 0 else { throw .endOfFile }
        inbox.append(contentsOf: chunk[0..<count])
    }

    /// Drops consumed bytes from the front of the inbox once they are worth moving.
    private mutating func compactInbox() {
        if inboxStart == inbox.count {
            inbox.removeAll(keepingCapacity: true)
            inboxStart = 0
        } else if inboxStart >= ClientLimits.readChunkBytes {
            inbox.removeFirst(inboxStart)
            inboxStart = 0
        }
    }

    // MARK: Decoding

    /// Decodes every complete reply in the inbox into `pending`.
    private mutating func decode(_ pending: inout PendingReplies) throws(TransportFailure) {
        while !pending.isComplete && inboxStart < inbox.count {
            let consumed: Int?
            switch encoding {
            case .json: consumed = try decodeJSON(&pending)
            case .binary: consumed = try decodeBinary(&pending)
            }
            guard let consumed else { break }
            inboxStart += consumed
            compactInbox()
        }
    }

    /// Decodes one JSON reply line: the bytes consumed, or nil when the line is not all in.
    private func decodeJSON(_ pending: inout PendingReplies) throws(TransportFailure) -> Int? {
        // Replies come in request order: the next one answers the next request, whose op
        // tells the body's shape (extra fields from a newer server are then ignored).
        let op = pending.nextExpectedOp
        let result = inbox.withUnsafeBytes {
            JSONCodec.decodeReply(UnsafeRawBufferPointer(rebasing: $0[inboxStart...]), op: op)
        }
        switch result {
        case .needMore:
            return nil
        case .item(let reply, let consumed):
            if reply.id == .none, case .failure(let error) = reply.result {
                // An error that answers no request: kamid refuses the connection itself.
                throw .refused(error)
            }
            try pending.answerNext(id: reply.id, with: reply.result)
            return consumed
        case .failure(let id, let error, let consumed, let fatal):
            guard !fatal else { throw .unreadable(error.message) }
            // A line this client could not read still answers the next request, in order.
            try pending.answerNext(id: id == .none ? pending.nextExpectedID : id, with: .failure(error))
            return consumed
        }
    }

    /// Decodes one binary reply frame: the bytes consumed, or nil when it is not all in.
    private func decodeBinary(_ pending: inout PendingReplies) throws(TransportFailure) -> Int? {
        if inbox[inboxStart] == UInt8(ascii: "{") {
            // kamid refuses a connection it cannot take (too many connections) with one
            // JSON error line before it knows the client's encoding.
            let result = inbox.withUnsafeBytes {
                JSONCodec.decodeReply(UnsafeRawBufferPointer(rebasing: $0[inboxStart...]))
            }
            switch result {
            case .needMore: return nil
            case .item(let reply, _):
                if case .failure(let error) = reply.result { throw .refused(error) }
                throw .unreadable("a JSON reply on a binary connection")
            case .failure(_, let error, _, _): throw .unreadable(error.message)
            }
        }
        let result = inbox.withUnsafeBytes {
            BinaryCodec.decodeReply(UnsafeRawBufferPointer(rebasing: $0[inboxStart...]))
        }
        switch result {
        case .needMore:
            return nil
        case .item((let reply, let op), let consumed):
            try pending.answer(id: reply.id, op: op, with: reply.result)
            return consumed
        case .failure(let id, let error, let consumed, let fatal):
            guard !fatal else { throw .unreadable(error.message) }
            try pending.answer(id: id, op: nil, with: .failure(error))
            return consumed
        }
    }
}

/// The replies of one exchange as they come in.
struct PendingReplies {
    let requests: [Request]
    let firstID: UInt32
    private(set) var replies: [Reply?]
    private(set) var answered = 0

    init(requests: [Request], firstID: UInt32) {
        self.requests = requests
        self.firstID = firstID
        self.replies = Array(repeating: nil, count: requests.count)
    }

    var count: Int { requests.count }
    var isComplete: Bool { answered == requests.count }

    /// The wire id the next reply must carry when replies come in order (JSON).
    var nextExpectedID: RequestID { .number(Int64(firstID) + Int64(answered)) }

    /// The op of the request the next JSON reply answers (nil when all are answered).
    var nextExpectedOp: Operation? { answered < requests.count ? requests[answered].op : nil }

    /// JSON: replies come in request order, so the next one must carry the next id.
    mutating func answerNext(id: RequestID, with result: Result<ReplyBody, KamiError>) throws(TransportFailure) {
        guard id == nextExpectedID else {
            throw .unmatched("reply carries id \(id) where \(nextExpectedID) was due")
        }
        replies[answered] = Reply(id: requests[answered].id, result: result)
        answered += 1
    }

    /// Binary: matched by id. A reply of id 0 answers no request (kamid could not read
    /// one, and closes): its error is the connection's.
    mutating func answer(id: RequestID, op: Operation?, with result: Result<ReplyBody, KamiError>)
        throws(TransportFailure)
    {
        guard case .number(let number) = id, number >= Int64(firstID),
            number - Int64(firstID) < Int64(requests.count)
        else {
            if case .failure(let error) = result { throw .refused(error) }
            throw .unmatched("reply carries id \(id), which no request of this exchange has")
        }
        let index = Int(number - Int64(firstID))
        guard replies[index] == nil else { throw .unmatched("a second reply for request id \(number)") }
        if case .success = result, let op, op != requests[index].op {
            throw .unmatched("reply to request id \(number) is for \(op.name), not \(requests[index].op.name)")
        }
        replies[index] = Reply(id: requests[index].id, result: result)
        answered += 1
    }
}

/// Why an exchange could not complete. Becomes UNAVAILABLE (or kamid's own error for a
/// refused connection) at the API boundary.
enum TransportFailure: Error {
    case system(SystemCallError)
    case endOfFile
    case timedOut(answered: Int, of: Int)
    /// The stream cannot be trusted any more (bad frame or line).
    case unreadable(String)
    /// A reply that belongs to no outstanding request.
    case unmatched(String)
    /// kamid answered with an error addressed to no request: the connection itself.
    case refused(KamiError)

    func kamiError(endpoint: KamiEndpoint, timeoutMs: Int) -> KamiError {
        let retry = "the request may or may not have been done; repeat it with the same order id"
        switch self {
        case .system(let error):
            return KamiError(.unavailable, "connection to kamid at \(endpoint) failed: \(error); \(retry)")
        case .endOfFile:
            return KamiError(.unavailable, "kamid at \(endpoint) closed the connection before replying "
                + "(restarting or shutting down?); \(retry)")
        case .timedOut(let answered, let count):
            let progress = count > 1 ? " (\(answered) of \(count) replies in)" : ""
            return KamiError(.unavailable, "no reply from kamid at \(endpoint) within \(timeoutMs) ms\(progress); "
                + "the connection is closed and \(retry)")
        case .unreadable(let message):
            return KamiError(.unavailable, "kamid at \(endpoint) sent a reply this client cannot read (\(message)); "
                + "the connection is closed and \(retry)")
        case .unmatched(let message):
            return KamiError(.unavailable, "kamid at \(endpoint) sent an unexpected reply (\(message)); "
                + "the connection is closed and \(retry)")
        case .refused(let error):
            return KamiError(error.code, "kamid at \(endpoint) refused the connection: \(error.message)")
        }
    }
}
