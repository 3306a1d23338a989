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
#endif
