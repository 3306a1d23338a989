import CKamiLinux
import Foundation
import Glibc
import KamiStore
import Synchronization

/// What one reply said.
public enum ReplyOutcome: Sendable, Equatable {
    /// Success, with the codes it handed out (empty for peers that hand out none).
    case ok(codes: [String])
    /// An error, by code (`SOLD_OUT`, `LIMIT_REACHED`, ...).
    case error(String)
}

/// How a peer's requests and replies look on the wire. Replies come back in request order
/// on each connection for every peer here, so the driver matches them by position.
public protocol WireAdapter: Sendable {
    /// Bytes to send right after connecting, and how many replies they produce (hello, ...).
    func handshake() -> (bytes: [UInt8], replies: Int)
    /// Appends request `sequence` of connection `connection`; returns its order id (for the
    /// audit; any unique string for peers without orders).
    func encode(connection: Int, sequence: Int, into out: inout [UInt8]) -> String
    /// Parses one reply at the front of `buffer`: bytes consumed and outcome, nil when
    /// incomplete. A malformed reply is a fatal error of the run.
    func parse(_ buffer: UnsafeRawBufferPointer) throws -> (consumed: Int, outcome: ReplyOutcome)?
}

/// How requests are paced.
public enum Pacing: Sendable, Equatable, CustomStringConvertible {
    /// Each connection keeps `depth` requests in flight (closed loop).
    case closed(depth: Int)
    /// Requests start at a fixed total rate whatever the replies do (open loop); latency is
    /// measured from when a request was due, so a stall is charged to every request it
    /// delayed (no coordinated omission).
    case open(ratePerSecond: Int)

    public var description: String {
        switch self {
        case .closed(let depth): "closed loop, \(depth) in flight per connection"
        case .open(let rate): "open loop, \(rate) requests/s"
        }
    }
}

/// One run's plan.
public struct RunPlan: Sendable {
    public var port: UInt16
    public var connections: Int
    public var pacing: Pacing
    /// Stop sending after this many requests in total (the burst) ...
    public var requests: Int
    /// ... or after this long, whichever comes first.
    public var seconds: Double
    /// Client threads (each drives its share of the connections on its own epoll).
    public var threads: Int
    /// Retry storm: every this many requests a connection is dropped with its requests in
    /// flight, reconnected, and those requests sent again with the same order ids (0: never).
    public var dropEvery = 0

    public init(port: UInt16, connections: Int, pacing: Pacing, requests: Int, seconds: Double, threads: Int = 1) {
        self.port = port
        self.connections = connections
        self.pacing = pacing
        self.requests = requests
        self.seconds = seconds
        self.threads = threads
    }
}

/// What a run measured.
public struct RunResult: Sendable {
    public var latency = LatencyHistogram()
    public var replies = 0
    public var ok = 0
    public var errors: [String: Int] = [:]
    /// Order id → codes of successful replies.
    public var acknowledged: [String: [String]] = [:]
    /// From the first request to the last reply.
    public var elapsedNs: UInt64 = 0
    /// When the last successful reply that handed out a code arrived (the sale's end).
    public var lastIssueNs: UInt64 = 0
    /// Connections the server closed or reset under the run (should be 0).
    public var droppedConnections = 0
    /// Connections the client dropped on purpose (retry storm), and requests sent again.
    public var clientDrops = 0
    public var resent = 0
    /// Orders whose repeated replies disagreed (a retry that got other codes).
    public var conflicts: [String] = []

    public var repliesPerSecond: Double { elapsedNs == 0 ? 0 : Double(replies) / (Double(elapsedNs) / 1e9) }
    public var okPerSecond: Double { lastIssueNs == 0 ? 0 : Double(ok) / (Double(lastIssueNs) / 1e9) }

    mutating func merge(_ other: RunResult) {
        latency.merge(other.latency)
        replies += other.replies
        ok += other.ok
        for (code, count) in other.errors { errors[code, default: 0] += count }
        acknowledged.merge(other.acknowledged) { a, _ in a }
        elapsedNs = max(elapsedNs, other.elapsedNs)
        lastIssueNs = max(lastIssueNs, other.lastIssueNs)
        droppedConnections += other.droppedConnections
        clientDrops += other.clientDrops
        resent += other.resent
        conflicts += other.conflicts
    }
}

/// Requests handed out across client threads.
final class Tickets: Sendable {
    private let taken = Atomic<Int>(0)
    /// The number of requests started before this one.
    func take() -> Int { taken.wrappingAdd(1, ordering: .relaxed).oldValue }
}

/// Drives connections to one peer with epoll: closed or open loop, every latency recorded.
public enum Driver {
    public struct DriverError: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// Runs the plan against `adapter`'s peer on 127.0.0.1.
    public static func run(_ plan: RunPlan, adapter: any WireAdapter) throws -> RunResult {
        let threads = max(1, min(plan.threads, plan.connections))
        let sent = Tickets()
        let start = monotonicNs()
        let results = Mutex<[Result<RunResult, DriverError>]>([])
        var handles: [Thread] = []
        for t in 0..<threads {
            let mine = Array(stride(from: t, to: plan.connections, by: threads))
            let share: Pacing
            switch plan.pacing {
            case .closed: share = plan.pacing
            case .open(let rate): share = .open(ratePerSecond: max(1, rate * mine.count / plan.connections))
            }
            let thread = Thread {
                let result: Result<RunResult, DriverError>
                do {
                    result = .success(try drive(connections: mine, plan: plan, pacing: share, adapter: adapter,
                                                sent: sent, start: start))
                } catch let error as DriverError {
                    result = .failure(error)
                } catch {
                    result = .failure(DriverError("\(error)"))
                }
                results.withLock { $0.append(result) }
            }
            thread.start()
            handles.append(thread)
        }
        while handles.contains(where: { !$0.isFinished }) { usleep(2_000) }
        var total = RunResult()
        for result in results.withLock({ $0 }) {
            switch result {
            case .success(let part): total.merge(part)
            case .failure(let error): throw error
            }
        }
        return total
    }

    private final class Link {
        var fd: Int32
        let index: Int
        var output: [UInt8] = []
        var sentBytes = 0
        var input: [UInt8] = []
        /// Send time (or due time, open loop), order id and sequence of each request in flight.
        var inFlight: [(ns: UInt64, order: String, sequence: Int)] = []
        var inFlightHead = 0
        var handshakeReplies = 0
        var sequence = 0
        var open = true

        init(fd: Int32, index: Int) {
            self.fd = fd
            self.index = index
        }

        var pending: Int { inFlight.count - inFlightHead }
    }

    private static func drive(
        connections: [Int], plan: RunPlan, pacing: Pacing, adapter: any WireAdapter, sent: Tickets, start: UInt64
    ) throws -> RunResult {
        let epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        defer { close(epfd) }
        var links: [Link] = []
        for index in connections {
            let fd = try connect(port: plan.port)
            let link = Link(fd: fd, index: index)
            let hello = adapter.handshake()
            link.output = hello.bytes
            link.handshakeReplies = hello.replies
            links.append(link)
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLET.rawValue
            event.data.u64 = UInt64(links.count - 1)
            epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event)
        }
        defer { for link in links { close(link.fd) } }
        if case .closed(let depth) = pacing {
            for link in links where link.handshakeReplies == 0 {
                for _ in 0..<depth where monotonicNs() < start + UInt64(plan.seconds * 1e9)
                    && sent.take() < plan.requests {
                    link.sequence += 1
                    let order = adapter.encode(connection: link.index, sequence: link.sequence, into: &link.output)
                    link.inFlight.append((monotonicNs(), order, link.sequence))
                }
            }
        }
        var result = RunResult()
        let deadline = start + UInt64(plan.seconds * 1e9)
        var scheduled = 0   // open loop: requests this thread has made due
        let openRate: Double = { if case .open(let rate) = pacing { Double(rate) } else { 0 } }()
        var rr = 0

        var sendingDone = false
        func takeTicket() -> Bool {
            guard !sendingDone, monotonicNs() < deadline, sent.take() < plan.requests else {
                sendingDone = true
                return false
            }
            return true
        }
        func enqueue(_ link: Link, dueNs: UInt64) {
            link.sequence += 1
            let order = adapter.encode(connection: link.index, sequence: link.sequence, into: &link.output)
            link.inFlight.append((dueNs, order, link.sequence))
        }
        /// Retry storm: drop the connection with its requests in flight, reconnect, say
        /// hello again and re-send them (same order ids, latency still from the first send).
        func dropAndResend(_ link: Link, token: UInt64) throws {
            flush(link)
            epoll_ctl(epfd, EPOLL_CTL_DEL, link.fd, nil)
            close(link.fd)
            result.clientDrops += 1
            link.fd = try connect(port: plan.port)
            let hello = adapter.handshake()
            link.output = hello.bytes
            link.sentBytes = 0
            link.handshakeReplies = hello.replies
            link.input.removeAll(keepingCapacity: true)
            let pending = Array(link.inFlight[link.inFlightHead...])
            link.inFlight = []
            link.inFlightHead = 0
            for entry in pending {
                _ = adapter.encode(connection: link.index, sequence: entry.sequence, into: &link.output)
                link.inFlight.append(entry)
                result.resent += 1
            }
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLET.rawValue
            event.data.u64 = token
            epoll_ctl(epfd, EPOLL_CTL_ADD, link.fd, &event)
            flush(link)
        }
        func flush(_ link: Link) {
            while link.sentBytes < link.output.count {
                let n = link.output.withUnsafeBytes {
                    Glibc.send(link.fd, $0.baseAddress! + link.sentBytes, link.output.count - link.sentBytes, Int32(MSG_NOSIGNAL))
                }
                if n > 0 { link.sentBytes += n; continue }
                if n < 0 && errno == EINTR { continue }
                break
            }
            if link.sentBytes == link.output.count {
                link.output.removeAll(keepingCapacity: true)
                link.sentBytes = 0
            }
        }
        // Closed loop: fill every connection to its depth once the handshake is answered.
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let now = monotonicNs()
            if !sendingDone && now >= deadline { sendingDone = true }
            // Open loop: make due what the rate says, on connections in turn.
            if case .open = pacing, !sendingDone {
                let due = Int(Double(now - start) / 1e9 * openRate)
                while scheduled < due {
                    guard takeTicket() else { sendingDone = true; break }
                    let link = links[rr % links.count]
                    rr += 1
                    scheduled += 1
                    let dueNs = start + UInt64(Double(scheduled) / openRate * 1e9)
                    enqueue(link, dueNs: dueNs)
                    flush(link)
                }
            }
            let busy = links.contains { $0.open && ($0.pending > 0 || $0.handshakeReplies > 0) }
            if sendingDone && !busy { break }
            if !busy, case .closed = pacing, !links.contains(where: { $0.open }) { break }
            let waitMs: Int32 = { if case .open = pacing { 1 } else { 50 } }()
            let count = epoll_wait(epfd, &events, Int32(events.count), waitMs)
            if count < 0 && errno != EINTR { throw DriverError("epoll_wait: errno \(errno)") }
            for i in 0..<Int(max(0, count)) {
                let link = links[Int(events[i].data.u64)]
                guard link.open else { continue }
                if events[i].events & EPOLLOUT.rawValue != 0 { flush(link) }
                // Read everything there is.
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(link.fd, $0.baseAddress, $0.count, 0) }
                    if n > 0 { link.input += buffer[0..<n]; continue }
                    if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                        link.open = false
                        result.droppedConnections += 1
                    }
                    break
                }
                // Parse complete replies.
                var consumedTotal = 0
                var dropped = false
                while consumedTotal < link.input.count {
                    let parsed = try link.input.withUnsafeBytes { raw in
                        try adapter.parse(UnsafeRawBufferPointer(rebasing: raw[consumedTotal...]))
                    }
                    guard let (consumed, outcome) = parsed else { break }
                    consumedTotal += consumed
                    let arrived = monotonicNs()
                    if link.handshakeReplies > 0 {
                        link.handshakeReplies -= 1
                        if case .error(let code) = outcome { throw DriverError("handshake refused: \(code)") }
                        // The first handshake fills the pipeline; after a reconnect the
                        // re-sent requests are already in flight.
                        if link.handshakeReplies == 0, link.sequence == 0, case .closed(let depth) = pacing {
                            for _ in 0..<depth where takeTicket() { enqueue(link, dueNs: monotonicNs()) }
                        }
                        continue
                    }
                    guard link.inFlightHead < link.inFlight.count else { throw DriverError("a reply nobody asked for") }
                    let (sentNs, order, _) = link.inFlight[link.inFlightHead]
                    link.inFlightHead += 1
                    result.latency.record(arrived &- sentNs)
                    result.replies += 1
                    switch outcome {
                    case .ok(let codes):
                        result.ok += 1
                        if !codes.isEmpty {
                            if let earlier = result.acknowledged[order], earlier != codes {
                                result.conflicts.append("\(order): \(earlier) then \(codes)")
                            }
                            result.acknowledged[order] = codes
                            result.lastIssueNs = arrived - start
                        }
                    case .error(let code):
                        result.errors[code, default: 0] += 1
                    }
                    if case .closed = pacing, takeTicket() {
                        enqueue(link, dueNs: monotonicNs())
                        if plan.dropEvery > 0 && link.sequence % plan.dropEvery == 0 {
                            try dropAndResend(link, token: events[i].data.u64)
                            dropped = true
                            break
                        }
                    }
                }
                if !dropped && consumedTotal > 0 { link.input.removeFirst(consumedTotal) }
                if link.inFlightHead > 4_096 {
                    link.inFlight.removeFirst(link.inFlightHead)
                    link.inFlightHead = 0
                }
                flush(link)
            }
            // Handshakes go out on the first pass.
            for link in links where link.open && !link.output.isEmpty { flush(link) }
        }
        result.elapsedNs = monotonicNs() - start
        return result
    }

    /// A blocking-connect, then non-blocking TCP socket to 127.0.0.1:port with TCP_NODELAY.
    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw DriverError("connect 127.0.0.1:\(port): errno \(errno)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }
}
