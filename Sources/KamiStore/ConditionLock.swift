public import KamiCore
import Glibc

/// A mutex with a condition variable, built on pthreads.
///
/// Why not `Synchronization.Mutex`: the writer thread needs to sleep until work arrives,
/// with a timeout for the group-commit delay, and ThreadSanitizer sees pthread locks
/// correctly (it cannot see the futex inside `Mutex`, see TOOLCHAIN.md).
///
/// `@unchecked Sendable`: the pthread objects are the synchronisation; they are allocated
/// once and never moved.
public final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    /// Makes an unlocked lock (the condition uses CLOCK_MONOTONIC for timed waits).
    public init() {
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        cond.deallocate()
    }

    /// Locks.
    public func lock() { pthread_mutex_lock(mutex) }
    /// Unlocks.
    public func unlock() { pthread_mutex_unlock(mutex) }

    /// Runs `body` with the lock held.
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits for a signal; the lock must be held.
    public func wait() { pthread_cond_wait(cond, mutex) }

    /// Waits for a signal or until `deadlineNs` on CLOCK_MONOTONIC; the lock must be held.
    public func wait(untilMonotonicNs deadlineNs: UInt64) {
        var ts = timespec(tv_sec: Int(deadlineNs / 1_000_000_000), tv_nsec: Int(deadlineNs % 1_000_000_000))
        pthread_cond_timedwait(cond, mutex, &ts)
    }

    /// Wakes one waiter.
    public func signal() { pthread_cond_signal(cond) }
    /// Wakes every waiter.
    public func broadcast() { pthread_cond_broadcast(cond) }
}

/// Nanoseconds on CLOCK_MONOTONIC.
public func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The real wall clock.
public struct SystemClock: Clock {
    /// Makes the clock.
    public init() {}
    public func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
