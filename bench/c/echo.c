/* Plain TCP echo server for bench/: the physical limit of loopback on this machine.
 *
 * One thread, epoll, level-triggered: read up to 256 KiB, write it back; what the socket
 * does not take is kept and reading from that connection pauses until it has gone out
 * (the same backpressure a WebSocket server applies). It knows nothing of WebSocket:
 * the load generator's --raw mode expects its masked frames back unchanged.
 *
 *   echo PORT [HOST [N]]  prints "listening" on stdout once accept() can succeed; with N,
 *                         N processes, each with its own SO_REUSEPORT socket and epoll (the
 *                         kernel spreads the connections; the others die with the first)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (256 * 1024)

typedef struct {
    int fd;
    char *pending; /* bytes read but not yet written back */
    size_t off, len;
} conn_t;

static int ep;
static char buf[BUF];

static void drop(conn_t *c) {
    close(c->fd);
    free(c->pending);
    free(c);
}

static void mod(conn_t *c, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write the pending bytes; 1 when all are out, 0 when the socket is full, -1 on error. */
static int flush(conn_t *c) {
    while (c->off < c->len) {
        ssize_t w = write(c->fd, c->pending + c->off, c->len - c->off);
        if (w < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
        c->off += (size_t)w;
    }
    free(c->pending);
    c->pending = NULL;
    c->off = c->len = 0;
    return 1;
}

static void on_readable(conn_t *c) {
    for (int i = 0; i < 4; i++) {
        ssize_t r = read(c->fd, buf, BUF);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (r <= 0) return drop(c);
        ssize_t w = write(c->fd, buf, (size_t)r);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR) return drop(c);
            w = 0;
        }
        if (w < r) { /* socket full: keep the rest, stop reading until it has gone */
            c->len = (size_t)(r - w);
            c->pending = malloc(c->len);
            memcpy(c->pending, buf + w, c->len);
            c->off = 0;
            mod(c, EPOLLOUT);
            return;
        }
        if (r < BUF) return;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: echo PORT [HOST [N]]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int workers = argc > 3 ? atoi(argv[3]) : 1;
    for (int w = workers; w > 1; w--) {
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            break;
        }
    }
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (workers > 1) setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &sa.sin_addr);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096)) {
        perror("echo: bind/listen");
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    printf("listening\n");
    fflush(stdout);
    struct epoll_event evs[512];
    for (;;) {
        int k = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < k; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *n = calloc(1, sizeof *n);
                    n->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = n};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (c->pending) {
                int f = flush(c);
                if (f < 0) drop(c);
                else if (f > 0) mod(c, EPOLLIN);
            } else {
                on_readable(c);
            }
        }
    }
}
