#define _GNU_SOURCE
#include "CKamiLinux.h"
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

int64_t kami_resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    long size = 0, resident = 0;
    int n = fscanf(f, "%ld %ld", &size, &resident);
    fclose(f);
    if (n != 2) return -1;
    return (int64_t)resident * (int64_t)sysconf(_SC_PAGESIZE);
}

int64_t kami_peak_resident_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int64_t kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            long long v = 0;
            if (sscanf(line + 6, "%lld", &v) == 1) kb = v;
            break;
        }
    }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

int kami_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    return accept4(fd, addr, len, flags);
}

long long kami_peer_uid(int fd) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    return (long long)cred.uid;
}

int kami_thread_nice(int nice) {
    // On Linux the nice value is per thread: PRIO_PROCESS with a thread id sets that thread's.
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
}

int kami_madv_hugepage(void) { return MADV_HUGEPAGE; }

int kami_malloc_trim(void) { return malloc_trim(0); }
