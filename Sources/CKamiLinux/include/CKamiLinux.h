#ifndef KAMI_CKAMILINUX_H
#define KAMI_CKAMILINUX_H
/* Linux calls that Swift's Glibc module does not export (epoll, eventfd,
   timerfd, signalfd), plus a few helpers Swift cannot express directly. */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/signalfd.h>
#include <signal.h>
#include <stdint.h>

/* Resident set size in bytes read from /proc/self/statm; -1 on failure. */
int64_t kami_resident_bytes(void);
/* Peak resident set size (VmHWM) in bytes from /proc/self/status; -1 on failure. */
int64_t kami_peak_resident_bytes(void);

/// Gives the free pages of every malloc arena back to the kernel (glibc's malloc_trim(0));
/// 1 when some memory was released.
int kami_malloc_trim(void);

#include <sched.h>
/* A test-and-set spin lock for critical sections of a few dozen instructions (the risk
   gate's counter stripes): no call into a shared library, one atomic exchange to take and
   one store to give back. After a short spin the waiter yields, so a holder that was
   preempted costs a reschedule, not a time slice of spinning. */
static inline void kami_spin_lock(uint32_t *word) {
    for (unsigned spins = 0;; spins++) {
        if (__atomic_load_n(word, __ATOMIC_RELAXED) == 0 && __atomic_exchange_n(word, 1, __ATOMIC_ACQUIRE) == 0) return;
        if (spins < 100) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ __volatile__("yield");
#endif
        } else {
            sched_yield();
        }
    }
}
static inline void kami_spin_unlock(uint32_t *word) { __atomic_store_n(word, 0, __ATOMIC_RELEASE); }
/* A relaxed atomic add to a counter in plain memory (a striped counter's slot). */
static inline void kami_counter_add(uint64_t *counter, uint64_t value) { __atomic_fetch_add(counter, value, __ATOMIC_RELAXED); }
static inline uint64_t kami_counter_load(const uint64_t *counter) { return __atomic_load_n(counter, __ATOMIC_RELAXED); }
/* Asks for the cache line at `address` ahead of a write to it: the risk gate touches a
   dozen random lines per request, and fetched together their misses overlap. */
static inline void kami_prefetch(const void *address) {
#if defined(__x86_64__)
    /* PREFETCHW: the line arrives owned, ready for the write that follows (prefetcht0, what
       __builtin_prefetch emits for the baseline x86-64 target, brings it shared, and the
       write must then ask the other core for it again). */
    __asm__ __volatile__("prefetchw %0" : : "m"(*(const char *)address));
#else
    __builtin_prefetch(address, 1, 3);
#endif
}
#endif

#include <sys/socket.h>
/* accept4 and struct ucred need _GNU_SOURCE, which Swift's Glibc module is not built with;
   these wrappers are compiled in linux.c where it is defined. */
int kami_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
/* The uid of the peer of a Unix socket (SO_PEERCRED); -1 on failure. */
long long kami_peer_uid(int fd);

/// Lowers the calling thread's CPU priority to `nice` (0 to 19): background work such as
/// webhook delivery then takes the CPU the request threads leave. Returns 0 or -1 (errno).
int kami_thread_nice(int nice);

/// MADV_HUGEPAGE (Swift does not import the macro).
int kami_madv_hugepage(void);
