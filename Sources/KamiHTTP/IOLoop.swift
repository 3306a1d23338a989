import KamiCore
import CKamiLinux
import Foundation
import Glibc
import Synchronization

/// One thread that waits on many sockets with epoll and runs their handlers, plus timers and
/// work handed in from other threads (one eventfd wake-up per batch). Every HTTP client and
/// server connection of a process can share one loop: concurrency comes from the sockets it
/// waits on, not from threads.
///
/// `register`, `modify`, `unregister`, `schedule` and `cancel` are for the loop's own thread
/// (handlers and work it runs); `execute` is for any thread.
public final class IOLoop: @unchecked Sendable {
    // @unchecked: `handlers`, `timers`, `cancelled`, `nextTimer` are touched only on the loop
    // thread (checked by `assertOnLoop`); `inbox` is behind its mutex.
    public typealias Handler = (UInt32) -> Void
    public typealias Work = @Sendable () -> Void

    /// Identifies a timer for `cancel`.
    public struct TimerID: Hashable, Sendable { let raw: UInt64 }

    private let epoll: Int32
    private let wakeFD: Int32
    private var handlers: [Int32: Handler] = [:]
    private var timers = TimerHeap()
    private var cancelled = Set<UInt64>()
    private var nextTimer: UInt64 = 1
    private let inbox = Locked<[Work]>([])
    private let stopping = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)
    private let threadID = Atomic<UInt>(0)
    private let name: String

    /// Makes a loop and starts its thread, named `name`.
    public init(name: String) {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(epoll >= 0 && wakeFD >= 0, "epoll/eventfd: errno \(errno)")
        self.name = name
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakeFD
        epoll_ctl(epoll, EPOLL_CTL_ADD, wakeFD, &event)
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
        while threadID.load(ordering: .acquiring) == 0 { usleep(100) }
    }

    /// Whether the caller runs on the loop's thread.
    public var onLoop: Bool { UInt(pthread_self()) == threadID.load(ordering: .relaxed) }

    private func assertOnLoop(_ what: String) {
        precondition(onLoop, "IOLoop \(name): \(what) off the loop thread")
    }

    /// Runs `work` on the loop thread soon (in order with other `execute`s).
    public func execute(_ work: @escaping Work) {
        let first = inbox.withLock { inbox -> Bool in
            inbox.append(work)
            return inbox.count == 1
        }
        if first {
            var one: UInt64 = 1
            _ = Glibc.write(wakeFD, &one, 8)
        }
    }

    /// Watches `fd` for `events` (EPOLLIN, EPOLLOUT, ...), calling `handler` with what happened.
    public func register(_ fd: Int32, events: UInt32, handler: @escaping Handler) {
        assertOnLoop("register")
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        let result = epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event)
        precondition(result == 0, "epoll_ctl ADD \(fd): errno \(errno)")
        handlers[fd] = handler
    }

    /// Changes what `fd` is watched for.
    public func modify(_ fd: Int32, events: UInt32) {
        assertOnLoop("modify")
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event)
    }

    /// Stops watching `fd` (call before closing it).
    public func unregister(_ fd: Int32) {
        assertOnLoop("unregister")
        epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil)
        handlers[fd] = nil
    }

    /// Runs `work` on the loop thread after `ms` milliseconds, unless cancelled first.
    @discardableResult
    public func schedule(afterMs ms: Int64, _ work: @escaping () -> Void) -> TimerID {
        assertOnLoop("schedule")
        let id = nextTimer
        nextTimer += 1
        timers.push(TimerHeap.Entry(deadlineNs: IOLoop.nowNs() + UInt64(max(0, ms)) * 1_000_000, id: id, work: work))
        return TimerID(raw: id)
    }

    /// Cancels a timer (a timer that already ran is ignored).
    public func cancel(_ timer: TimerID) {
        assertOnLoop("cancel")
        if timers.contains(timer.raw) { cancelled.insert(timer.raw) }
    }

    /// Stops the thread (from any thread other than the loop's); handlers stop being called.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
        if !onLoop {
            while !finished.load(ordering: .acquiring) { usleep(1_000) }
        }
    }

    deinit {
        close(epoll)
        close(wakeFD)
    }

    /// Monotonic nanoseconds.
    public static func nowNs() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    private func run() {
        threadID.store(UInt(pthread_self()), ordering: .releasing)
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer {
            events.deallocate()
            finished.store(true, ordering: .releasing)
        }
        while !stopping.load(ordering: .acquiring) {
            var timeout: Int32 = 1_000
            if let next = timers.peekDeadline {
                let now = IOLoop.nowNs()
                timeout = next <= now ? 0 : Int32(min(1_000, (next - now + 999_999) / 1_000_000))
            }
            let count = epoll_wait(epoll, events, Int32(capacity), timeout)
            if count < 0 && errno != EINTR { preconditionFailure("epoll_wait: errno \(errno)") }
            for index in 0..<max(0, Int(count)) {
                let fd = events[index].data.fd
                if fd == wakeFD {
                    var value: UInt64 = 0
                    _ = Glibc.read(wakeFD, &value, 8)
                    continue
                }
                handlers[fd]?(events[index].events)
            }
            let work = inbox.withLock { inbox -> [Work] in
                let taken = inbox
                inbox.removeAll(keepingCapacity: true)
                return taken
            }
            for item in work { item() }
            let now = IOLoop.nowNs()
            while let deadline = timers.peekDeadline, deadline <= now, let entry = timers.pop() {
                if cancelled.remove(entry.id) != nil { continue }
                entry.work()
            }
        }
    }
}

/// A binary min-heap of timers by deadline.
struct TimerHeap {
    struct Entry {
        var deadlineNs: UInt64
        var id: UInt64
        var work: () -> Void
    }

    private var entries: [Entry] = []
    private var ids = Set<UInt64>()

    var peekDeadline: UInt64? { entries.first?.deadlineNs }

    func contains(_ id: UInt64) -> Bool { ids.contains(id) }

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        ids.insert(entry.id)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadlineNs < entries[parent].deadlineNs else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Entry? {
        guard !entries.isEmpty else { return nil }
        entries.swapAt(0, entries.count - 1)
        let top = entries.removeLast()
        ids.remove(top.id)
        var parent = 0
        while true {
            let left = parent * 2 + 1
            let right = left + 1
            var smallest = parent
            if left < entries.count && entries[left].deadlineNs < entries[smallest].deadlineNs { smallest = left }
            if right < entries.count && entries[right].deadlineNs < entries[smallest].deadlineNs { smallest = right }
            if smallest == parent { break }
            entries.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}

/// One read buffer per thread: a socket's bytes are read into it and fed to that socket's
/// parser at once, so no connection keeps (or allocates) a buffer of its own per read.
final class IOBuffer {
    static let size = 65_536
    private let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: IOBuffer.size, alignment: 16)

    /// This thread's buffer.
    static var shared: IOBuffer {
        let key = IOBuffer.key
        if let raw = pthread_getspecific(key) { return Unmanaged<IOBuffer>.fromOpaque(raw).takeUnretainedValue() }
        let made = IOBuffer()
        pthread_setspecific(key, Unmanaged.passRetained(made).toOpaque())
        return made
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { raw in if let raw { Unmanaged<IOBuffer>.fromOpaque(raw).release() } }
        return key
    }()

    func withRead<T>(_ body: (UnsafeMutableRawBufferPointer) -> T) -> T { body(storage) }

    func withBytes(_ count: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    deinit { storage.deallocate() }
}
