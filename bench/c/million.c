/* Many idle WebSocket connections from one process, for bench/million.py (issue 21).
 *
 * Built at run time by bench/build.py (cc -O2). bench/million.py starts several of these,
 * each below its open-file limit; each one:
 *   - opens --conns connections to --host:--port with a real opening handshake (the 101 and,
 *     with --accept, its Sec-WebSocket-Accept are checked), --hs-concurrency at a time, from
 *     127.0.0.<src-base + i % src-count>: with --port-base B from port B + i / src-count
 *     (pairs of its own, outside the ephemeral range, so the other programs on the machine
 *     keep all of theirs), else from an ephemeral port picked at connect()
 *     (IP_BIND_ADDRESS_NO_PORT: K sources give ~K x net.ipv4.ip_local_port_range);
 *   - holds them, answering every ping with its pong (masked, payload echoed);
 *   - on --sample of them, sends a --echo-size text message every --echo-interval seconds
 *     (one in flight) and checks the echo byte for byte, timing the round trip;
 *   - answers a Close from the server with a Close of the same code and waits for the server
 *     to close TCP (RFC 6455 7.1.1), counting Close frames by code and how TCP ended (the
 *     harness's graceful stop);
 *   - checks every binary message as a broadcast from the harness: 64 bytes, "FWSB", a
 *     big-endian u32 sequence number, 8 bytes of the publisher's clock, then 48 bytes that
 *     are a function of the sequence number (bcast_fill); per sequence number it counts
 *     deliveries and keeps the first and last arrival time (CLOCK_MONOTONIC, which is
 *     Python's time.monotonic(), so the harness compares them with its publish times).
 * Memory per connection is ~32 bytes here (state indexed by descriptor; a frame split over
 * two reads is kept in a malloc'd remainder until its end arrives), so the generator's own
 * footprint stays small next to the kernel's socket.
 *
 * Batching (--batch-ms B): a pass of the event loop (epoll_wait, then every ready connection)
 * starts at most every B ms; in between the process sleeps in nanosleep, not in epoll_wait.
 * A process that answers each ping as it comes is woken once per ping (measured at 100k
 * connections, 63 workers, a ping per connection every 3 s: 1.17 wake-ups and ~34 us of its
 * CPU per ping, most of it the scheduler), and the server's write of each ping pays for
 * waking it. Asleep outside epoll_wait, nobody is woken by a ping: it waits in the socket
 * until the next pass, which answers all that came. Pongs leave up to B ms later than a
 * client on its own machine would send them; a load generator sharing the server's cores
 * should not spend them on wake-ups. Passes start on a grid of B ms of CLOCK_MONOTONIC that
 * every process shares, so the pongs all generators send a worker arrive together and wake
 * it once, not once per generator. The harness keeps its echo sample in a process of its
 * own without batching, so the echo round trips it reports are not lengthened by this.
 *
 * Output: a status line every --report seconds,
 *   S <mono> <opened> <open> <failed> <pings> <echo_ok> <echo_bad> <bcast> <bcast_bad>
 *     <server_closed> <cpu_seconds> <rss_bytes> <echo_sent>
 * and, at the end (a "Q" line or EOF on stdin, or --max-seconds), one JSON object, then it
 * closes everything and exits. It never runs longer than --max-seconds. A "P" line stops
 * opening connections (those open are held); an "L" line prints the echo round trips so far
 * ({"phase_echo_ns": ...}) and starts counting anew (the harness's phases); a "G" line does
 * the same for the time between two pings on a connection ({"phase_ping_gaps": ...}: how
 * many, how many over --gap-limit seconds, the longest, a histogram).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define NB 3776 /* latency histogram: 64 exact + 58 octaves x 64 sub-buckets (ns) */
#define RBUF (128 * 1024)
#define MAXEV 2048
#define MAXSEQ 4096 /* broadcast sequence numbers tracked */
#define MAXPEND (70 * 1024)
#define MAXREASON 16

/* ST_CLOSING: the server's Close answered, waiting for it to close TCP (RFC 6455 7.1.1). */
enum { ST_FREE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING };

typedef struct {
    uint8_t state;
    uint8_t pad;
    uint16_t npend;  /* bytes in pend: the start of a frame (or response) not complete yet */
    int32_t sample;  /* index in samples[], or -1 */
    uint32_t idx;    /* connection number (global) */
    float t_connect; /* seconds since start, for the handshake time */
    float last_ping; /* seconds since start at the last ping (0: none yet) */
    uint8_t *pend;
} conn_t;

typedef struct {
    int fd;
    uint32_t counter; /* messages sent */
    int inflight;
    double sent_at, next_at;
} sample_t;

/* options */
static const char *host = "127.0.0.1", *path = "/", *ws_key = "dGhlIHNhbXBsZSBub25jZQ==",
                  *ws_accept = NULL;
static int port, port_base, nconns = 1, src_base = 2, src_count = 0, hconc = 64, nsamples = 0, id = 0;
static uint32_t first_idx = 0;
static double echo_interval = 1.0, max_seconds = 600, report_every = 1.0, rate = 0, batch = 0;
static size_t echo_size = 64;

static conn_t *cs;
static int maxfd, ep;
static sample_t *samples;
static char req[1024];
static size_t reqlen;
static uint8_t rbuf[RBUF + MAXPEND];
static double t0;

/* counters */
static uint64_t opened, open_now, failed, pings, echo_ok, echo_bad, echo_sent, bcast, bcast_bad,
    server_closed, write_short;
static uint64_t lat[NB], hs[NB];
/* Time between two pings on one connection (what "answering a ping every 30 s" means): how
 * many, how many longer than --gap-limit, the longest, and a histogram (ns); a "G" line
 * prints them and starts anew. */
static uint64_t gaps[NB], gaps_n, gaps_over;
static double gap_max, gap_limit;
static uint32_t bc_count[MAXSEQ];
static double bc_first[MAXSEQ], bc_last[MAXSEQ];
static char first_error[256];
static struct {
    char what[96];
    uint64_t n;
} reasons[MAXREASON];

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static long rss_bytes(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * sysconf(_SC_PAGESIZE);
}

static int bucket(uint64_t v) {
    if (v < 64) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    return (msb - 5) * 64 + (int)((v >> (msb - 6)) & 63);
}

static double bucket_mid(int b) {
    if (b < 64) return b;
    int msb = b / 64 + 5, sub = b % 64;
    double lo = (double)((uint64_t)(64 + sub) << (msb - 6));
    return lo + (double)((uint64_t)1 << (msb - 6)) / 2;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Byte i of broadcast seq's fill (bench/million.py writes the same). */
static uint8_t bcast_fill(uint32_t seq, int i) { return (uint8_t)(seq * 31u + (unsigned)i * 7u); }

/* Byte i of sample echo `counter` on connection idx: printable, differs per message. */
static uint8_t echo_byte(uint32_t idx, uint32_t counter, size_t i) {
    return (uint8_t)('a' + (idx * 131u + counter * 17u + (uint32_t)i) % 26u);
}

static void reason(const char *what) {
    if (!first_error[0]) snprintf(first_error, sizeof first_error, "%s", what);
    for (int i = 0; i < MAXREASON; i++) {
        if (!reasons[i].what[0]) snprintf(reasons[i].what, sizeof reasons[i].what, "%s", what);
        if (!strcmp(reasons[i].what, what)) {
            reasons[i].n++;
            return;
        }
    }
}

static void drop(int fd) {
    conn_t *c = &cs[fd];
    if (c->state == ST_OPEN) open_now--;
    if (c->sample >= 0) samples[c->sample].fd = -1;
    free(c->pend);
    memset(c, 0, sizeof *c);
    c->sample = -1;
    close(fd);
}

/* A connection that failed before it was open (counted in `failed`). */
static void fail(int fd, const char *what, int err) {
    char buf[96];
    snprintf(buf, sizeof buf, "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
    reason(buf);
    failed++;
    drop(fd);
}

/* A connection that was open and broke (counted in `server_closed`). */
static void lost(int fd, const char *what) {
    reason(what);
    server_closed++;
    drop(fd);
}

/* One masked frame from the client: FIN + opcode, payload p[0..n). */
static int send_frame(int fd, int opcode, const uint8_t *p, size_t n) {
    uint8_t f[14 + 256];
    uint8_t *buf = n <= 256 ? f : malloc(14 + n);
    size_t h = 2;
    buf[0] = 0x80 | opcode;
    if (n < 126) {
        buf[1] = 0x80 | n;
    } else if (n < 65536) {
        buf[1] = 0x80 | 126;
        buf[2] = n >> 8;
        buf[3] = n & 0xff;
        h = 4;
    } else {
        buf[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) buf[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        h = 10;
    }
    uint32_t key32 = (uint32_t)rnd();
    uint8_t *key = buf + h;
    memcpy(key, &key32, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) buf[h + i] = p[i] ^ key[i & 3];
    ssize_t w = write(fd, buf, h + n);
    if (buf != f) free(buf);
    if (w != (ssize_t)(h + n)) {
        write_short++; /* tiny frames on idle sockets: never seen in practice */
        return -1;
    }
    return 0;
}

static void send_echo(sample_t *s, double now) {
    uint8_t *p = malloc(echo_size);
    uint32_t idx = cs[s->fd].idx;
    for (size_t i = 0; i < echo_size; i++) p[i] = echo_byte(idx, s->counter, i);
    if (send_frame(s->fd, 1, p, echo_size) == 0) {
        s->inflight = 1;
        s->sent_at = now;
        echo_sent++;
    }
    free(p);
}

/* A complete frame from the server. Returns -1 when the connection was dropped. */
static int on_frame(int fd, int fin, int op, const uint8_t *p, size_t n, double now) {
    conn_t *c = &cs[fd];
    if (op == 9) { /* 5.5.2: answer a ping with a pong carrying its payload */
        pings++;
        float at = (float)(now - t0);
        if (c->last_ping > 0) {
            double gap = (double)at - c->last_ping;
            gaps[bucket((uint64_t)(gap * 1e9))]++;
            gaps_n++;
            gaps_over += gap_limit > 0 && gap > gap_limit;
            if (gap > gap_max) gap_max = gap;
        }
        c->last_ping = at;
        send_frame(fd, 0xA, p, n);
        return 0;
    }
    if (op == 0xA) return 0;
    if (op == 8) { /* 5.5.1: answer with a Close of the same code, then wait for its FIN */
        char what[64];
        snprintf(what, sizeof what, "the server sent Close %d", n >= 2 ? (p[0] << 8) | p[1] : 1005);
        reason(what);
        server_closed++;
        send_frame(fd, 8, p, n >= 2 ? 2 : 0);
        c->state = ST_CLOSING;
        open_now--;
        if (c->sample >= 0) samples[c->sample].fd = -1; /* no echo after our Close */
        return -1; /* nothing may follow a Close (5.5.1); drop()'s bookkeeping is done */
    }
    if (!fin || op == 0) return lost(fd, "fragmented message (not expected here)"), -1;
    if (op == 2) { /* a broadcast */
        if (n != 64 || memcmp(p, "FWSB", 4)) {
            bcast_bad++;
            return 0;
        }
        uint32_t seq = ((uint32_t)p[4] << 24) | ((uint32_t)p[5] << 16) | ((uint32_t)p[6] << 8) | p[7];
        for (int i = 16; i < 64; i++)
            if (p[i] != bcast_fill(seq, i)) {
                bcast_bad++;
                return 0;
            }
        bcast++;
        if (seq < MAXSEQ) {
            if (!bc_count[seq]++) bc_first[seq] = now;
            bc_last[seq] = now;
        }
        return 0;
    }
    if (op == 1) { /* the echo of a sample message */
        sample_t *s = c->sample >= 0 ? &samples[c->sample] : NULL;
        if (!s || !s->inflight || n != echo_size) {
            echo_bad++;
            return 0;
        }
        int ok = 1;
        for (size_t i = 0; i < n && ok; i++) ok = p[i] == echo_byte(c->idx, s->counter, i);
        if (ok) {
            echo_ok++;
            lat[bucket((uint64_t)((now - s->sent_at) * 1e9))]++;
        } else {
            echo_bad++;
        }
        s->inflight = 0;
        s->counter++;
        s->next_at = s->sent_at + echo_interval;
        if (s->next_at < now) s->next_at = now;
        return 0;
    }
    return lost(fd, "unknown opcode"), -1;
}

/* Parse complete frames of p[0..n); keep an incomplete one. -1: connection dropped. */
static int on_frames(int fd, const uint8_t *p, size_t n, double now) {
    while (n >= 2) {
        if (p[1] & 0x80) return lost(fd, "masked frame from the server"), -1;
        if (p[0] & 0x70) return lost(fd, "reserved bits set"), -1;
        size_t l7 = p[1] & 0x7f, h = 2, len = l7;
        if (l7 == 126) {
            if (n < 4) break;
            len = ((size_t)p[2] << 8) | p[3];
            h = 4;
        } else if (l7 == 127) {
            if (n < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | p[2 + i];
            h = 10;
            if (len > MAXPEND - 16) return lost(fd, "frame too large for this client"), -1;
        }
        if (n < h + len) break;
        if (on_frame(fd, p[0] >> 7, p[0] & 0x0f, p + h, len, now)) return -1;
        p += h + len;
        n -= h + len;
    }
    conn_t *c = &cs[fd];
    free(c->pend); /* p may point into rbuf, never into pend: pend was copied out */
    c->pend = NULL;
    if (n) {
        c->pend = malloc(n);
        memcpy(c->pend, p, n);
    }
    c->npend = (uint16_t)n;
    return 0;
}

static void on_open(int fd, double now) {
    conn_t *c = &cs[fd];
    c->state = ST_OPEN;
    opened++;
    open_now++;
    hs[bucket((uint64_t)((now - t0 - c->t_connect) * 1e9))]++;
    /* the first --sample connections to open carry the echo sample */
    for (int i = 0; i < nsamples; i++)
        if (samples[i].fd < 0 && samples[i].counter == 0 && !samples[i].inflight &&
            samples[i].next_at == 0) {
            samples[i].fd = fd;
            samples[i].next_at = now + echo_interval * (double)(rnd() % 1000) / 1000.0;
            c->sample = i;
            break;
        }
}

static void on_readable(int fd, double now) {
    conn_t *c = &cs[fd];
    size_t have = c->npend;
    if (have) memcpy(rbuf, c->pend, have);
    for (int round = 0; round < 4; round++) {
        ssize_t r = read(fd, rbuf + have, RBUF);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (r <= 0) {
            if (c->state == ST_CLOSING) { /* counted at the Close; how TCP ended, apart */
                reason(r == 0 ? "then the server closed TCP" : "then a read error (reset)");
                return drop(fd);
            }
            if (c->state == ST_OPEN) return lost(fd, r == 0 ? "EOF from the server" : "read error");
            return fail(fd, r == 0 ? "closed during the handshake" : "read", r < 0 ? errno : 0);
        }
        if (c->state == ST_CLOSING) { /* anything after the server's Close is ignored */
            have = 0;
            continue;
        }
        have += (size_t)r;
        if (c->state == ST_HANDSHAKE) {
            rbuf[have] = 0;
            char *end = memmem(rbuf, have, "\r\n\r\n", 4);
            if (!end) {
                if (have > 4000) return fail(fd, "handshake response too long", 0);
                continue;
            }
            *end = 0;
            if (strncmp((char *)rbuf, "HTTP/1.1 101", 12)) {
                char what[96];
                snprintf(what, sizeof what, "handshake answered %.*s", (int)strcspn((char *)rbuf, "\r\n") % 60,
                         (char *)rbuf);
                return fail(fd, what, 0);
            }
            if (ws_accept) {
                char *a = strcasestr((char *)rbuf, "\nsec-websocket-accept:");
                if (!a) return fail(fd, "no Sec-WebSocket-Accept", 0);
                a += 22;
                while (*a == ' ' || *a == '\t') a++;
                if (strncmp(a, ws_accept, strlen(ws_accept))) return fail(fd, "wrong Sec-WebSocket-Accept", 0);
            }
            on_open(fd, now);
            size_t head = (size_t)((uint8_t *)end + 4 - rbuf);
            memmove(rbuf, rbuf + head, have - head);
            have -= head;
        }
        if (c->state == ST_OPEN) {
            if (on_frames(fd, rbuf, have, now)) return;
            have = c->npend;
            if (have) memcpy(rbuf, c->pend, have);
        }
        if (r < RBUF) break;
    }
    if (c->state == ST_HANDSHAKE) { /* keep the partial response */
        free(c->pend);
        c->pend = have ? malloc(have) : NULL;
        if (have) memcpy(c->pend, rbuf, have);
        c->npend = (uint16_t)have;
    }
}

static void on_event(int fd, uint32_t evs, double now) {
    conn_t *c = &cs[fd];
    if (c->state == ST_CONNECTING) {
        if (!(evs & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) return fail(fd, "connect", err);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
        if (write(fd, req, reqlen) != (ssize_t)reqlen) return fail(fd, "write handshake", errno);
        c->state = ST_HANDSHAKE;
        return;
    }
    if (c->state == ST_HANDSHAKE || c->state == ST_OPEN || c->state == ST_CLOSING) on_readable(fd, now);
}

static uint32_t next_conn; /* connections started so far */
static int pending;        /* connecting or in the handshake */

static void start_connect(double now) {
    uint32_t idx = first_idx + next_conn++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) {
        char buf[96];
        snprintf(buf, sizeof buf, "socket: %s", strerror(errno));
        reason(buf);
        failed++;
        return;
    }
    if (fd >= maxfd) {
        close(fd);
        reason("descriptor above the limit");
        failed++;
        return;
    }
    conn_t *c = &cs[fd];
    c->idx = idx;
    c->sample = -1;
    c->t_connect = (float)(now - t0);
    c->state = ST_CONNECTING;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (src_count) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000000u + (uint32_t)(src_base + idx % (uint32_t)src_count));
        if (port_base) { /* our own (address, port) pairs, outside the ephemeral range */
            src.sin_port = htons((uint16_t)(port_base + idx / (uint32_t)src_count));
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* TIME_WAIT of a
                                                                   previous run's pair */
        } else {
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        }
        if (bind(fd, (struct sockaddr *)&src, sizeof src)) return fail(fd, "bind source address", errno);
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS)
        return fail(fd, "connect", errno);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    pending++;
}

static void status(double now) {
    printf("S %.6f %llu %llu %llu %llu %llu %llu %llu %llu %llu %.3f %ld %llu\n", now,
           (unsigned long long)opened, (unsigned long long)open_now, (unsigned long long)failed,
           (unsigned long long)pings, (unsigned long long)echo_ok, (unsigned long long)echo_bad,
           (unsigned long long)bcast, (unsigned long long)bcast_bad,
           (unsigned long long)server_closed, cpu_seconds(), rss_bytes(),
           (unsigned long long)echo_sent);
    fflush(stdout);
}

static void print_hist(const char *name, uint64_t *h) {
    printf("\"%s\": [", name);
    int first = 1;
    for (int b = 0; b < NB; b++)
        if (h[b]) {
            printf("%s[%.1f, %llu]", first ? "" : ", ", bucket_mid(b), (unsigned long long)h[b]);
            first = 0;
        }
    printf("]");
}

static void final_json(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t pending_echo = 0;
    for (int i = 0; i < nsamples; i++) pending_echo += samples[i].fd >= 0 && samples[i].inflight;
    printf("{\"id\": %d, \"conns\": %d, \"opened\": %llu, \"open\": %llu, \"failed\": %llu, "
           "\"pings\": %llu, \"echo_sent\": %llu, \"echo_ok\": %llu, \"echo_bad\": %llu, "
           "\"echo_pending\": %llu, \"bcast\": %llu, \"bcast_bad\": %llu, \"server_closed\": %llu, "
           "\"write_short\": %llu, \"cpu_user\": %.3f, \"cpu_sys\": %.3f, \"rss_bytes\": %ld, "
           "\"maxrss_bytes\": %ld, \"seconds\": %.3f, ",
           id, nconns, (unsigned long long)opened, (unsigned long long)open_now,
           (unsigned long long)failed, (unsigned long long)pings, (unsigned long long)echo_sent,
           (unsigned long long)echo_ok, (unsigned long long)echo_bad,
           (unsigned long long)pending_echo, (unsigned long long)bcast,
           (unsigned long long)bcast_bad, (unsigned long long)server_closed,
           (unsigned long long)write_short, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6,
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6, rss_bytes(), ru.ru_maxrss * 1024L,
           mono() - t0);
    print_hist("echo_ns", lat);
    printf(", ");
    print_hist("handshake_ns", hs);
    printf(", \"broadcast\": [");
    int first = 1;
    for (int s = 0; s < MAXSEQ; s++)
        if (bc_count[s]) {
            printf("%s[%d, %u, %.6f, %.6f]", first ? "" : ", ", s, bc_count[s], bc_first[s], bc_last[s]);
            first = 0;
        }
    printf("], \"reasons\": {");
    for (int i = 0; i < MAXREASON && reasons[i].what[0]; i++) {
        printf("%s\"", i ? ", " : "");
        for (char *s = reasons[i].what; *s; s++) putchar(*s == '"' || *s == '\\' ? '\'' : *s);
        printf("\": %llu", (unsigned long long)reasons[i].n);
    }
    printf("}}\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    static struct option opts[] = {
        {"host", 1, 0, 'h'},       {"port", 1, 0, 'p'},          {"conns", 1, 0, 'c'},
        {"first", 1, 0, 'f'},      {"src-base", 1, 0, 'b'},      {"src-count", 1, 0, 'S'},
        {"hs-concurrency", 1, 0, 'H'}, {"sample", 1, 0, 's'},    {"echo-interval", 1, 0, 'i'},
        {"echo-size", 1, 0, 'z'},  {"max-seconds", 1, 0, 'm'},   {"report", 1, 0, 'r'},
        {"key", 1, 0, 'k'},        {"accept", 1, 0, 'a'},        {"path", 1, 0, 'x'},
        {"id", 1, 0, 'I'},         {"rate", 1, 0, 'R'},          {"port-base", 1, 0, 'P'},
        {"batch-ms", 1, 0, 'B'},   {"gap-limit", 1, 0, 'G'},     {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': nconns = atoi(optarg); break;
        case 'f': first_idx = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'b': src_base = atoi(optarg); break;
        case 'S': src_count = atoi(optarg); break;
        case 'H': hconc = atoi(optarg); break;
        case 's': nsamples = atoi(optarg); break;
        case 'i': echo_interval = atof(optarg); break;
        case 'z': echo_size = strtoull(optarg, NULL, 10); break;
        case 'm': max_seconds = atof(optarg); break;
        case 'r': report_every = atof(optarg); break;
        case 'k': ws_key = optarg; break;
        case 'a': ws_accept = optarg; break;
        case 'x': path = optarg; break;
        case 'I': id = atoi(optarg); break;
        case 'R': rate = atof(optarg); break;
        case 'P': port_base = atoi(optarg); break;
        case 'B': batch = atof(optarg) / 1000.0; break;
        case 'G': gap_limit = atof(optarg); break;
        default: fprintf(stderr, "million: bad option\n"); return 2;
        }
    }
    if (!port || nconns < 1 || hconc < 1 || nsamples < 0 || nsamples > nconns || echo_size < 1 ||
        echo_size > 60000 || src_base < 1 || src_base + src_count > 255 ||
        (port_base && (!src_count || port_base + (first_idx + (uint32_t)nconns) / (uint32_t)src_count > 65535))) {
        fprintf(stderr, "million: need --port and a positive --conns; --sample <= --conns;"
                        " --echo-size 1..60000; sources within 127.0.0.1-254\n");
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the harness */
    signal(SIGPIPE, SIG_IGN);
    rng_state ^= (uint64_t)(id + 1) * 0x2545F4914F6CDD1Dull;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    maxfd = (int)rl.rlim_cur;
    if ((rlim_t)nconns + 16 > rl.rlim_cur) {
        fprintf(stderr, "million: --conns %d needs more descriptors than the limit (%llu)\n",
                nconns, (unsigned long long)rl.rlim_cur);
        return 2;
    }
    cs = calloc((size_t)maxfd, sizeof *cs);
    for (int i = 0; i < maxfd; i++) cs[i].sample = -1;
    samples = calloc((size_t)(nsamples ? nsamples : 1), sizeof *samples);
    for (int i = 0; i < nsamples; i++) samples[i].fd = -1;
    reqlen = (size_t)snprintf(req, sizeof req,
                              "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n",
                              path, host, port, ws_key);
    ep = epoll_create1(EPOLL_CLOEXEC);
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.fd = -1};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);

    t0 = mono();
    double next_report = t0, next_scan = t0 + 1.0, deadline = t0 + max_seconds, last_pass = t0;
    struct epoll_event evs[MAXEV];
    int quit = 0;
    while (!quit) {
        double now = mono();
        /* ramp: keep hconc handshakes in flight (and, with --rate, start at most rate/s) */
        while (next_conn < (uint32_t)nconns && pending < hconc &&
               (rate <= 0 || next_conn < (now - t0) * rate + 1))
            start_connect(now);
        if (batch > 0) { /* one pass per --batch-ms at most: see "Batching" above */
            double until = ((double)(long long)(last_pass / batch) + 1) * batch; /* the shared grid */
            if (now < until) {
                struct timespec ts = {.tv_sec = (time_t)(until - now),
                                      .tv_nsec = (long)((until - now - (time_t)(until - now)) * 1e9)};
                nanosleep(&ts, NULL);
            }
            last_pass = mono();
        }
        int k = epoll_wait(ep, evs, MAXEV, 5);
        now = mono();
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (fd < 0) { /* stdin: "Q" or EOF ends the run */
                char line[64];
                ssize_t r = read(0, line, sizeof line);
                if (r == 0 || (r > 0 && memchr(line, 'Q', (size_t)r))) quit = 1;
                if (r > 0 && memchr(line, 'P', (size_t)r)) nconns = (int)next_conn; /* stop ramping */
                if (r > 0 && memchr(line, 'L', (size_t)r)) { /* echo latencies so far, then anew */
                    printf("{");
                    print_hist("phase_echo_ns", lat);
                    printf("}\n");
                    fflush(stdout);
                    memset(lat, 0, sizeof lat);
                }
                if (r > 0 && memchr(line, 'G', (size_t)r)) { /* ping gaps so far, then anew */
                    printf("{\"phase_ping_gaps\": {\"n\": %llu, \"over\": %llu, \"max\": %.4f, ",
                           (unsigned long long)gaps_n, (unsigned long long)gaps_over, gap_max);
                    print_hist("hist_ns", gaps);
                    printf("}}\n");
                    fflush(stdout);
                    memset(gaps, 0, sizeof gaps);
                    gaps_n = gaps_over = 0;
                    gap_max = 0;
                }
                if (r == 0) epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
                continue;
            }
            int was = cs[fd].state;
            on_event(fd, evs[i].events, now);
            int is = cs[fd].state;
            if ((was == ST_CONNECTING || was == ST_HANDSHAKE) && (is == ST_OPEN || is == ST_FREE))
                pending--;
        }
        for (int i = 0; i < nsamples; i++) {
            sample_t *s = &samples[i];
            if (s->fd >= 0 && !s->inflight && now >= s->next_at) send_echo(s, now);
        }
        if (now >= next_scan) { /* handshakes that take 30 s are failures */
            next_scan = now + 1.0;
            for (int fd = 0; fd < maxfd && pending; fd++) {
                conn_t *c = &cs[fd];
                if ((c->state == ST_CONNECTING || c->state == ST_HANDSHAKE) &&
                    now - t0 - c->t_connect > 30.0) {
                    fail(fd, "handshake timeout (30 s)", 0);
                    pending--;
                }
            }
        }
        if (now >= next_report) {
            next_report += report_every;
            if (next_report < now) next_report = now + report_every;
            status(now);
        }
        if (now >= deadline) {
            reason("stopped at --max-seconds");
            quit = 1;
        }
    }
    status(mono());
    final_json();
    for (int fd = 0; fd < maxfd; fd++)
        if (cs[fd].state != ST_FREE) close(fd);
    return 0;
}
