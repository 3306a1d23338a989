/// A point in time an operation must finish by, on the monotonic clock (wall-clock jumps
/// must not fire or stretch a timeout).
struct Deadline {
    let instant: ContinuousClock.Instant
    /// The timeout this deadline was made from, for messages.
    let timeoutMs: Int

    /// `timeoutMs` from now.
    init(timeoutMs: Int) {
        self.timeoutMs = timeoutMs
        self.instant = ContinuousClock.now.advanced(by: .milliseconds(timeoutMs))
    }

    /// Milliseconds left, rounded up so that a wait never ends just before the deadline;
    /// 0 once it passed.
    func remainingMs() -> Int {
        let left = ContinuousClock.now.duration(to: instant)
        guard left > .zero else { return 0 }
        let (seconds, attoseconds) = left.components
        return Int(seconds) * 1000 + Int((attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }
}
