// A mutual-exclusion lock over `pthread_mutex_t`, and a value that lives behind one.
//
// Why not `Synchronization.Mutex`: ThreadSanitizer cannot see the futex inside it and
// reports false data races as soon as two threads contend, which would make the
// `--sanitize=thread` runs useless (see .ci/sanitize). A `pthread_mutex_t` is intercepted by
// TSan and modelled correctly, and under no contention it costs the same single atomic
// instruction. Every lock of Kami's own modules is this one. The only file of KamiCore that
// calls C.
public import Glibc

/// A value of type `State` that is only reachable while holding a `pthread_mutex_t`.
///
/// The state lives in its own heap cell (not in a stored property) so that `withLock` hands
/// out `inout` access through a pointer: a class stored property would add a dynamic
/// exclusivity check on every access of the hot path, which the lock already makes redundant.
public final class Locked<State: ~Copyable>: @unchecked Sendable {
    // @unchecked Sendable: `state` is read and written only inside `withLock`, under `mutex`
    // (the same promise as `Synchronization.Mutex`, which is Sendable for any value).
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline let state: UnsafeMutablePointer<State>

    public init(_ initial: consuming State) {
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
    @inlinable
    public func withLock<Result, Failure: Error>(_ body: (inout State) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state.pointee)
    }
}
