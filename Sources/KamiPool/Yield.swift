private import Glibc

/// Gives the CPU away for a moment while waiting for another thread to finish a step
/// that takes a few instructions (a producer publishing a ring cell, a concurrent take
/// claiming its codes). On the 2-core machines Kami runs on, pure spinning would often
/// be waiting for a thread that is not even scheduled, so yield instead.
@inline(never)
func yieldToOtherThreads() {
    sched_yield()
}
