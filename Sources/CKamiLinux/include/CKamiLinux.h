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

#include <sys/socket.h>
/* accept4 and struct ucred need _GNU_SOURCE, which Swift's Glibc module is not built with;
   these wrappers are compiled in linux.c where it is defined. */
int kami_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
/* The uid of the peer of a Unix socket (SO_PEERCRED); -1 on failure. */
long long kami_peer_uid(int fd);
