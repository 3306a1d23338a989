/*
 * kami-echo: the ceiling for kami-bench. It speaks kamid's binary framing (12-byte header:
 * magic 0xB1, version 1, op, flags, u32 request id, u32 payload length, little endian) and
 * answers every complete request frame at once with a canned success reply of the same op
 * and id, carrying a payload the size of a one-code order reply. No parsing beyond the
 * header, no storage: what is left is the kernel, loopback and the client pattern.
 *
 * One epoll loop per thread, SO_REUSEPORT sockets, edge-triggered, non-blocking; replies
 * for everything read in one pass are written with one send.
 *
 * usage: kami-echo [--port N] [--threads N] [--reply-bytes N]
 *   prints "ready port=N" on stderr once listening; stops on SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { HEADER = 12, FRAME_MAX = 65536, READ_BUF = 131072, OUT_MAX = 1 << 20, EVENTS = 256 };

struct conn {
    int fd;
    unsigned char in[READ_BUF];
    size_t in_len;
    unsigned char *out;
    size_t out_len, out_sent;
};

static volatile sig_atomic_t stopping = 0;
static int listen_port = 0;
static size_t reply_payload = 96;

static void on_signal(int sig) { (void)sig; stopping = 1; }

static int make_listener(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1024) != 0) {
        perror("kami-echo: bind/listen");
        exit(1);
    }
    return fd;
}

static void flush_out(struct conn *c) {
    while (c->out_sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (n > 0) { c->out_sent += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        return; /* EAGAIN: EPOLLOUT comes back; an error: the read side sees it */
    }
    c->out_len = c->out_sent = 0;
}

/* Appends one reply per complete frame; returns -1 on a bad frame (close). */
static int answer(struct conn *c) {
    size_t at = 0;
    while (c->in_len - at >= HEADER) {
        unsigned char *h = c->in + at;
        uint32_t payload;
        memcpy(&payload, h + 8, 4);
        if (h[0] != 0xB1 || HEADER + (size_t)payload > FRAME_MAX) return -1;
        if (c->in_len - at < HEADER + payload) break;
        size_t need = c->out_len + HEADER + reply_payload;
        if (need > OUT_MAX) break; /* backpressure: leave the rest unread */
        unsigned char *r = c->out + c->out_len;
        r[0] = 0xB1; r[1] = 1; r[2] = h[2]; r[3] = 0;
        memcpy(r + 4, h + 4, 4);
        uint32_t len = (uint32_t)reply_payload;
        memcpy(r + 8, &len, 4);
        memset(r + HEADER, 'k', reply_payload);
        c->out_len = need;
        at += HEADER + payload;
    }
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
    return 0;
}

static void close_conn(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->out);
    free(c);
}

static void *loop(void *arg) {
    (void)arg;
    int lfd = make_listener(listen_port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[EVENTS];
    while (!stopping) {
        int n = epoll_wait(ep, events, EVENTS, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    nc->out = malloc(OUT_MAX);
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            int dead = 0;
            for (;;) {
                if (c->in_len == READ_BUF) { dead = answer(c) < 0; if (c->in_len == READ_BUF) break; }
                ssize_t got = recv(c->fd, c->in + c->in_len, READ_BUF - c->in_len, 0);
                if (got > 0) { c->in_len += (size_t)got; continue; }
                if (got == 0) dead = 1;
                else if (errno == EINTR) continue;
                else if (errno != EAGAIN && errno != EWOULDBLOCK) dead = 1;
                break;
            }
            if (!dead && answer(c) < 0) dead = 1;
            if (!dead) flush_out(c);
            if (dead) close_conn(ep, c);
        }
    }
    close(lfd);
    close(ep);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0) listen_port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--reply-bytes") == 0) reply_payload = (size_t)atoi(argv[i + 1]);
        else { fprintf(stderr, "usage: kami-echo [--port N] [--threads N] [--reply-bytes N]\n"); return 2; }
    }
    if (threads < 1 || threads > 64 || reply_payload > FRAME_MAX - HEADER) {
        fprintf(stderr, "kami-echo: --threads 1..64, --reply-bytes < %d\n", FRAME_MAX - HEADER);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (listen_port == 0) {
        /* Pick a free port once, so every thread's SO_REUSEPORT socket shares it. */
        int probe = make_listener(0);
        struct sockaddr_in addr;
        socklen_t len = sizeof addr;
        getsockname(probe, (struct sockaddr *)&addr, &len);
        listen_port = ntohs(addr.sin_port);
        close(probe);
    }
    pthread_t tids[64];
    for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, loop, NULL);
    usleep(50000);
    fprintf(stderr, "ready port=%d threads=%d\n", listen_port, threads);
    for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
    return 0;
}
