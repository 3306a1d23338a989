// A mutual-exclusion lock over `pthread_mutex_t`, and a value that lives behind one.
//
// Why not `Synchronization.Mutex`: ThreadSanitizer cannot see the futex inside it and
// reports false data races as soon as two threads contend, which would make the
// `--sanitize=thread` runs of this module useless. A `pthread_mutex_t` is intercepted by
// TSan and modelled correctly, and under no contention it costs the same single atomic
// instruction. This is the only file of KamiPool that calls C.
private import Glibc

/// A value of type `State` that is only reachable while holding a `pthread_mutex_t`.
///
/// The state lives in its own heap cell (not in a stored property) so that `withLock` hands
/// out `inout` access through a pointer: a class stored property would add a dynamic
/// exclusivity check on every access of the hot path, which the lock already makes redundant.
final class Locked<State: Sendable>: @unchecked Sendable {
    // @unchecked Sendable: `state` is read and written only inside `withLock`, under `mutex`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let state: UnsafeMutablePointer<State>

    init(_ initial: State) {
        mutex = .allocate(capacity: 1)
        let status = pthread_mutex_init(mutex, nil)
        precondition(status == 0, "pthread_mutex_init failed: \(status)")
        state = .allocate(capacity: 1)
        state.initialize(to: initial)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        state.deinitialize(count: 1)
        state.deallocate()
    }

    /// Runs `body` with exclusive access to the state.
    @inline(__always)
    func withLock<Result>(_ body: (inout State) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state.pointee)
    }
}

/// Gives the CPU away for a moment while waiting for another thread to finish a step
/// that takes a few instructions (a producer publishing a ring cell, a concurrent take
/// claiming its codes). On the 2-core machines Kami runs on, pure spinning would often
/// be waiting for a thread that is not even scheduled, so yield instead.
@inline(never)
func yieldToOtherThreads() {
    sched_yield()
}
