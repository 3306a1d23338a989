import Glibc
import KamiCore
import KamiProtocol

/// One client connection, owned by one event loop thread (never touched elsewhere).
///
/// State machine: `open` → `draining` (no more requests are read: the peer closed its side,
/// sent garbage, or the server is stopping; replies in flight are still written) → `closed`
/// (terminal, fd released).
final class Connection {
    enum Kind { case tcp, unix }
    enum State { case open, draining, closed }

    /// A request in flight, in arrival order; its reply bytes once known.
    struct Slot {
        var seq: UInt64
        var bytes: [UInt8]?
        /// Close the connection once this reply is written (fatal protocol errors).
        var closeAfter: Bool
    }

    let id: UInt64
    let fd: Int32
    let kind: Kind
    let peer: String
    var state = State.open
    var encoding: WireEncoding?
    /// TCP clients must hello first; the Unix socket is trusted by its peer uid.
    var authenticated: Bool
    /// Operator operations are allowed (Unix socket with the right uid).
    let isOperator: Bool
    var client: String?

    /// Received bytes not yet decoded: `input[inputStart..<inputEnd]`.
    var input: [UInt8]
    var inputStart = 0
    var inputEnd = 0
    /// Encoded replies not yet written: `output[outputSent...]`.
    var output: [UInt8] = []
    var outputSent = 0
    /// Requests in flight, oldest first (replies leave in this order).
    var slots: [Slot] = []
    var slotsHead = 0
    var nextSeq: UInt64 = 0
    /// Reading paused by backpressure (too many bytes unsent or requests in flight).
    var readPaused = false
    /// Waiting for EPOLLOUT because the socket buffer was full.
    var waitingWritable = false
    var lastActivityMs: Int64
    /// When the request now being received began to arrive (nil between requests): a
    /// request that takes longer than the request timeout to arrive closes the connection
    /// (slowloris).
    var partialSinceMs: Int64?
    /// Queries waiting for earlier writes of this connection to finish (read your writes).
    var deferred: [(UInt64, Request, UInt64)] = []

    init(id: UInt64, fd: Int32, kind: Kind, peer: String, isOperator: Bool, nowMs: Int64) {
        self.id = id
        self.fd = fd
        self.kind = kind
        self.peer = peer
        self.isOperator = isOperator
        self.authenticated = kind == .unix
        self.lastActivityMs = nowMs
        self.input = [UInt8](repeating: 0, count: ServerLimits.readBufferInitialBytes)
    }

    var inFlight: Int { slots.count - slotsHead }
    var unsentBytes: Int { output.count - outputSent }

    /// Opens a slot for a request just decoded.
    func openSlot() -> UInt64 {
        let seq = nextSeq
        nextSeq += 1
        slots.append(Slot(seq: seq, bytes: nil, closeAfter: false))
        return seq
    }

    /// Stores a reply; returns false if the slot is unknown (connection was reset meanwhile).
    func fill(_ seq: UInt64, bytes: [UInt8], closeAfter: Bool = false) -> Bool {
        guard inFlight > 0, seq >= slots[slotsHead].seq else { return false }
        let index = slotsHead + Int(seq - slots[slotsHead].seq)
        guard index < slots.count else { return false }
        slots[index].bytes = bytes
        slots[index].closeAfter = closeAfter
        return true
    }

    /// Whether a request before `seq` is still waiting for its reply.
    func hasUnfilledSlot(before seq: UInt64) -> Bool {
        var index = slotsHead
        while index < slots.count && slots[index].seq < seq {
            if slots[index].bytes == nil { return true }
            index += 1
        }
        return false
    }

    /// Moves replies that are ready, in order, to the output buffer. Returns true when a reply
    /// asked for the connection to close after it.
    func collectReady() -> Bool {
        var close = false
        while slotsHead < slots.count, let bytes = slots[slotsHead].bytes {
            output.append(contentsOf: bytes)
            if slots[slotsHead].closeAfter { close = true }
            slotsHead += 1
            if close { break }
        }
        if slotsHead == slots.count {
            slots.removeAll(keepingCapacity: true)
            slotsHead = 0
        } else if slotsHead > ServerLimits.answeredSlotsCompactAt {
            slots.removeFirst(slotsHead)
            slotsHead = 0
        }
        return close
    }

    /// Whether reading must pause (backpressure).
    var mustPause: Bool {
        unsentBytes > ServerLimits.writeBufferBytesMax || inFlight >= ServerLimits.pipelineDepthMax
    }

    /// Whether reading may resume after a pause (hysteresis: half the limits).
    var mayResume: Bool {
        unsentBytes <= ServerLimits.writeBufferBytesMax / 2 && inFlight < ServerLimits.pipelineDepthMax / 2
    }

    /// Doubles the input buffer for a request that does not fit yet; false when it is already
    /// `readBufferBytes`.
    func growInput() -> Bool {
        guard input.count < ServerLimits.readBufferBytes else { return false }
        input += repeatElement(0, count: min(input.count, ServerLimits.readBufferBytes - input.count))
        return true
    }

    /// Makes room at the end of the input buffer by moving undecoded bytes to the front. An
    /// empty buffer that grew for a large request goes back to its initial size, so a
    /// connection does not keep that memory while it idles.
    func compactInput() {
        if inputStart == inputEnd {
            inputStart = 0
            inputEnd = 0
            if input.count > ServerLimits.readBufferInitialBytes {
                input = [UInt8](repeating: 0, count: ServerLimits.readBufferInitialBytes)
            }
        } else if inputStart > 0 {
            input.withUnsafeMutableBytes { raw in
                let base = raw.baseAddress!
                memmove(base, base + inputStart, inputEnd - inputStart)
            }
            inputEnd -= inputStart
            inputStart = 0
        }
    }
}
