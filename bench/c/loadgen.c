/* WebSocket echo load generator for bench/: epoll, pipelined, byte-exact verification.
 *
 * Built at run time by bench/build.py (cc -O2). One coordinating parent forks --procs
 * children; each child drives its share of the connections on its own epoll loop, so the
 * generator costs a few hundred nanoseconds per message and can outrun any server it is
 * pointed at (bench/README.md shows it against the C echo server).
 *
 * Every message has a sequence number per connection; message s is one of NVAR
 * precomputed masked frames (variant s % NVAR, each a different slice of a random pattern
 * under a different masking key), written straight from those frames with writev.
 * Echoes arrive in order, so the echo of message s must be an unmasked message of the same
 * opcode whose payload equals that slice byte for byte (fragmented echoes are accepted);
 * with --raw the echo must equal the masked frame as sent (a plain TCP echo).
 *
 * --deflate MODE (permessage-deflate, RFC 7692; scenario g): the handshake offers
 *   no-takeover:     permessage-deflate; client_no_context_takeover; server_no_context_takeover
 *   server-takeover: permessage-deflate; client_no_context_takeover
 * and a connection fails unless the server accepts it (and, for no-takeover, confirms
 * server_no_context_takeover, as 7.1.1.1 requires). The payloads are then JSON-like text
 * (json_like()), each variant deflated once, in advance, on its own (zlib level 6, window 15,
 * sync flush, 00 00 ff ff removed, RSV1 set): the client never takes its context over, so a
 * precomputed frame is exactly what a streaming client would send. Echoes with RSV1 are
 * inflated as they arrive (one inflater per connection: reset for every message with
 * no-takeover, kept across messages with server-takeover) and the output is compared byte
 * for byte with the payload; echoes without RSV1 (allowed per message) are compared as sent.
 * With --raw --deflate the echoed frame is compared as sent and its payload is then inflated
 * and compared as well: the same work per message as a compressed WebSocket echo, so the raw
 * TCP echo shows what the generator can drive in this mode.
 *
 * Client shape (how a client frames, writes and reads; bench's --client-shape sets these):
 *   --frag N         send each message as frames of at most N payload bytes (BINARY/TEXT,
 *                    then CONTINUATIONs), each under its own masking key, as Chromium does
 *                    with 131,000; 0 (default): one frame per message.
 *   --write-chunk N  at most N bytes per write(), writes ending at multiples of N in the
 *                    message's bytes (so with N = a frame's size, one write per frame);
 *                    0 (default): writev of everything queued, as much as the kernel takes.
 *   --read-size N    bytes asked for by each read() (default 262144), with as many reads
 *                    per wake-up as it takes to read 256 KiB.
 * Not supported with --deflate (its messages are small and sent whole).
 *
 * Modes:
 *   load (default): open all connections, keep --depth messages in flight on each for
 *     --warmup + --duration seconds, count and time the echoes of the measured window,
 *     then drain, verify the rest and close.
 *   --idle N1,N2,...: open connections (at most --hs-concurrency handshakes at once) until
 *     N1 are open, print "OPEN <open> <handshake seconds so far> <client CPU share>" and wait
 *     for a line on stdin (the harness reads the server's RSS); then up to N2, and so on;
 *     finally echo one message on every connection, verify, close. Needs --procs 1.
 * The result is one JSON object on stdout; "window" is the measured interval in
 * CLOCK_MONOTONIC seconds (Python's time.monotonic), for sampling the server's CPU time. Exit status 0 even when echoes failed: the
 * "errors" field says so (the harness decides).
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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAXPROCS 64
#define NB 3776 /* histogram buckets: 64 exact + 58 octaves x 64 sub-buckets */
#define RBUF (256 * 1024)
#define MAXIOV 64
#define MAXEV 1024

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_DONE };

typedef struct {
    uint64_t msgs, bytes;  /* echoes completed inside the measured window */
    uint64_t verified;     /* echoes verified byte-exactly, whole run */
    uint64_t errors;       /* connections that failed (any reason) */
    uint64_t opened;       /* handshakes completed */
    uint64_t compressed;   /* echoes that came compressed (RSV1) and inflated to the payload */
    uint64_t plain;        /* echoes that came uncompressed */
    uint64_t echo_wire;    /* payload bytes of all echoes as they came over the wire */
    char ext[192];         /* the server's Sec-WebSocket-Extensions (first connection) */
    double t_first_connect, t_last_open;
    double cpu;            /* CPU seconds used inside the window */
    uint64_t lat[NB];      /* echo round trips, ns */
    uint64_t hs[NB];       /* connect() to 101 parsed, ns */
    char err[256];
    int exited;
} result_t;

typedef struct {
    int ready;      /* children whose connections are all open (or failed) */
    int go;         /* parent: start */
    double t_go;    /* start of warm-up, CLOCK_MONOTONIC */
    result_t res[MAXPROCS];
} shared_t;

typedef struct {
    int fd, state, idx;
    double t_connect;
    char hbuf[4096];
    int hlen;
    uint64_t q_seq, q_end; /* next message to write (partly written at wr_off), end of queue */
    size_t wr_off;
    uint64_t recv_seq;     /* next echo expected */
    uint8_t hdr[14];
    int hdr_have, in_payload, frame_fin, in_msg, want_out;
    uint64_t frame_left, msg_off;
    double *sent_at;       /* ring of depth send times */
    /* --deflate: the echo being received is compressed; its inflater; reset it per message;
       the inflater saw the end of a DEFLATE stream (BFINAL) in this message;
       inflated bytes of this message so far */
    int compressed, reset_each, z_end;
    z_stream *z;
    uint64_t out_off;
} conn_t;

/* options */
static const char *host = "127.0.0.1", *path = "/", *ws_key = "dGhlIHNhbXBsZSBub25jZQ==",
                  *ws_accept = NULL;
static int steps[16] = {0}, nsteps;
static int port, raw, conns = 1, depth = 1, opcode = 2, procs = 1, nsrc, idle, hconc = 256;
enum { DEFLATE_OFF, DEFLATE_NO_TAKEOVER, DEFLATE_SERVER_TAKEOVER };
static int deflate_mode, show_payload;
static const char *offers[] = {
    NULL, "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; client_no_context_takeover"};
static size_t size = 64, frag, write_chunk, read_size = RBUF;
static double warmup = 1.0, duration = 5.0;

/* frames: variant v is frames[v] (flens[v] bytes, masked) carrying wire[v] (wlens[v] bytes,
   unmasked; deflated with --deflate), which is payloads[v] (size bytes) */
static uint8_t *pattern, **frames, **payloads, **wire;
static size_t *flens, *wlens;
static int nvar;
static char req[1024];
static size_t reqlen;
static uint8_t close_frame[8];

/* per child */
static shared_t *sh;
static result_t *res;
static conn_t *cs;
static int ncs, ep;
static int sending, recording, one_shot;
static double t_end;
static int64_t outstanding;
static uint8_t rbuf[RBUF];
static uint8_t zout[65536];
static const uint8_t deflate_tail[4] = {0, 0, 0xff, 0xff};

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

/* A JSON document of exactly n bytes, the kind of message compression is turned on for:
 * an update with a list of items under the same keys, other values for each variant v,
 * and a free-text note of random words that fills it to n. Deflate (level 6) takes 1 KiB to
 * ~39 % (--show-payload prints one and the mean size on the wire). */
static void json_like(uint8_t *out, size_t n, int v) {
    static const char *words[] = {"red",  "green", "blue",  "sale",    "new",  "bulk",
                                  "eu",   "us",    "apac",  "fragile", "gift", "backorder",
                                  "gold", "basic", "plus",  "refurb"};
    char *buf = malloc(n + 512);
    size_t len = (size_t)snprintf(buf, n + 512,
                                  "{\"type\":\"update\",\"seq\":%d,\"user\":%llu,\"ts\":\"2026-11-25T"
                                  "%02d:%02d:%02d.%03dZ\",\"items\":[",
                                  v, (unsigned long long)(rnd() % 1000000), (int)(rnd() % 24),
                                  (int)(rnd() % 60), (int)(rnd() % 60), (int)(rnd() % 1000));
    for (int i = 0;; i++) {
        char item[256];
        int k = snprintf(item, sizeof item,
                         "%s{\"id\":%llu,\"name\":\"item-%llu\",\"price\":%llu.%02llu,\"qty\":%llu,"
                         "\"tags\":[\"%s\",\"%s\"],\"in_stock\":%s}",
                         i ? "," : "", (unsigned long long)(rnd() % 1000000),
                         (unsigned long long)(rnd() % 10000), (unsigned long long)(rnd() % 500),
                         (unsigned long long)(rnd() % 100), (unsigned long long)(rnd() % 50),
                         words[rnd() % 16], words[rnd() % 16], rnd() % 4 ? "true" : "false");
        if (len + (size_t)k + 12 > n) break;
        memcpy(buf + len, item, (size_t)k);
        len += (size_t)k;
    }
    if (len + 12 > n) { /* too small for JSON: printable text */
        for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(0x20 + rnd() % 95);
    } else {
        len += (size_t)snprintf(buf + len, 16, "],\"note\":\"");
        while (len < n - 2) { /* words up to the closing quote, the last one cut to fit */
            const char *w = words[rnd() % 16];
            for (size_t i = 0; w[i] && len < n - 2; i++) buf[len++] = w[i];
            if (len < n - 2) buf[len++] = ' ';
        }
        memcpy(buf + n - 2, "\"}", 2);
        memcpy(out, buf, n);
    }
    free(buf);
}

/* Raw DEFLATE of p (RFC 7692 7.2.1): one message on its own, sync flush, tail removed. */
static size_t deflate_message(const uint8_t *p, size_t n, uint8_t **out) {
    z_stream z = {0};
    if (deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    size_t cap = deflateBound(&z, n) + 16;
    *out = malloc(cap);
    z.next_in = (Bytef *)p;
    z.avail_in = n;
    z.next_out = *out;
    z.avail_out = cap;
    if (deflate(&z, Z_SYNC_FLUSH) != Z_OK || z.avail_in) abort();
    size_t len = cap - z.avail_out;
    deflateEnd(&z);
    if (len < 4 || memcmp(*out + len - 4, deflate_tail, 4)) abort();
    return len - 4;
}

static void build_frames(void) {
    nvar = size <= 4096 ? 64 : size <= (1u << 20) ? 4 : 2;
    payloads = malloc(sizeof(uint8_t *) * nvar);
    wire = malloc(sizeof(uint8_t *) * nvar);
    frames = malloc(sizeof(uint8_t *) * nvar);
    flens = malloc(sizeof(size_t) * nvar);
    wlens = malloc(sizeof(size_t) * nvar);
    if (deflate_mode) {
        for (int v = 0; v < nvar; v++) {
            json_like(payloads[v] = malloc(size), size, v);
            wlens[v] = deflate_message(payloads[v], size, &wire[v]);
        }
    } else {
        pattern = malloc(size + nvar);
        for (size_t i = 0; i < size + nvar; i++) {
            uint64_t r = rnd();
            pattern[i] = opcode == 1 ? (uint8_t)(0x20 + r % 95) : (uint8_t)r;
        }
        for (int v = 0; v < nvar; v++) {
            payloads[v] = wire[v] = pattern + v;
            wlens[v] = size;
        }
    }
    for (int v = 0; v < nvar; v++) { /* the message's frames, back to back */
        size_t n = wlens[v], per = frag && frag < n ? frag : n, nframes = (n + per - 1) / per;
        uint8_t *f = frames[v] = malloc(n + 14 * nframes), *key;
        size_t len = 0;
        for (size_t off = 0; off < n; off += per) {
            size_t k = n - off < per ? n - off : per, hl = 2 + (k >= 65536 ? 8 : k >= 126 ? 2 : 0) + 4;
            uint8_t *h = f + len;
            h[0] = (off + k == n ? 0x80 : 0) | (off ? 0 : (deflate_mode ? 0x40 : 0) | opcode);
            if (k < 126) {
                h[1] = 0x80 | k;
            } else if (k < 65536) {
                h[1] = 0x80 | 126;
                h[2] = k >> 8;
                h[3] = k & 0xff;
            } else {
                h[1] = 0x80 | 127;
                for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)(k >> (56 - 8 * i));
            }
            key = h + hl - 4;
            uint64_t r = rnd();
            memcpy(key, &r, 4);
            for (size_t i = 0; i < k; i++) h[hl + i] = wire[v][off + i] ^ key[i & 3];
            len += hl + k;
        }
        flens[v] = len;
    }
    char ext[160] = "";
    if (deflate_mode) snprintf(ext, sizeof ext, "Sec-WebSocket-Extensions: %s\r\n", offers[deflate_mode]);
    reqlen = snprintf(req, sizeof req,
                      "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\n%s\r\n",
                      path, host, port, ws_key, ext);
    /* Close 1000, masked with a zero key (legal: any 32-bit value is a key). */
    uint8_t c[8] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
    memcpy(close_frame, c, 8);
}

/* A connection failed: `what` says why; `sys` is errno for a failed system call, else 0. */
static void fail2(conn_t *c, const char *what, int sys) {
    if (c->state == ST_DONE) return;
    if (!res->err[0])
        snprintf(res->err, sizeof res->err, "conn %d: %s%s%s", c->idx, what, sys ? ": " : "",
                 sys ? strerror(sys) : "");
    res->errors++;
    if (c->state == ST_OPEN) outstanding -= (int64_t)(c->q_end - c->recv_seq);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = ST_DONE;
}

static void fail(conn_t *c, const char *what) { fail2(c, what, 0); }
static void fail_sys(conn_t *c, const char *what) { fail2(c, what, errno); }

static void set_out(conn_t *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

static void flush(conn_t *c) {
    while (c->q_seq < c->q_end) {
        struct iovec iov[MAXIOV];
        int n = 0;
        size_t off = c->wr_off;
        for (uint64_t s = c->q_seq; s < c->q_end && n < MAXIOV; s++, n++, off = 0) {
            iov[n].iov_base = frames[s % nvar] + off;
            iov[n].iov_len = flens[s % nvar] - off;
        }
        if (write_chunk) { /* --write-chunk: one piece of one message per write */
            size_t cap = write_chunk - c->wr_off % write_chunk;
            n = 1;
            if (iov[0].iov_len > cap) iov[0].iov_len = cap;
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                if (!c->want_out) set_out(c, 1);
                return;
            }
            fail_sys(c, "write");
            return;
        }
        size_t left = (size_t)w;
        while (left) {
            size_t rem = flens[c->q_seq % nvar] - c->wr_off;
            if (left >= rem) {
                left -= rem;
                c->q_seq++;
                c->wr_off = 0;
            } else {
                c->wr_off += left;
                left = 0;
            }
        }
    }
    if (c->want_out) set_out(c, 0);
}

static void queue(conn_t *c, int n, double now) {
    for (int i = 0; i < n; i++) c->sent_at[c->q_end++ % depth] = now;
    outstanding += n;
}

static void complete(conn_t *c, double now) {
    double t0 = c->sent_at[c->recv_seq % depth];
    c->recv_seq++;
    outstanding--;
    res->verified++;
    if (deflate_mode) {
        if (c->compressed)
            res->compressed++;
        else
            res->plain++;
        c->compressed = 0;
    }
    if (recording && now < t_end) {
        res->msgs++;
        res->bytes += size;
        res->lat[bucket((uint64_t)((now - t0) * 1e9))]++;
    }
    if (sending && !one_shot) queue(c, 1, now);
}

/* Start inflating a compressed echo: a fresh inflater, or the connection's own kept one. */
static int inflate_begin(conn_t *c) {
    if (!c->z) {
        c->z = calloc(1, sizeof *c->z);
        if (inflateInit2(c->z, -15) != Z_OK) return fail(c, "inflateInit2 failed"), -1;
    } else if (c->reset_each || c->z_end) {
        inflateReset(c->z);
    }
    c->z_end = 0;
    c->out_off = 0;
    c->compressed = 1;
    return 0;
}

/* Inflate n more bytes of the compressed echo of message recv_seq and compare the output
   with its payload as it comes: returns -1 when the connection failed. */
static int inflate_some(conn_t *c, const uint8_t *p, size_t n) {
    z_stream *z = c->z;
    const uint8_t *want = payloads[c->recv_seq % nvar];
    if (c->z_end) return 0; /* after BFINAL: the rest of the message (the tail) is not data */
    z->next_in = (Bytef *)p;
    z->avail_in = (uInt)n;
    for (;;) {
        z->next_out = zout;
        z->avail_out = sizeof zout;
        int r = inflate(z, Z_SYNC_FLUSH);
        if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR) {
            char why[128];
            snprintf(why, sizeof why, "compressed echo does not inflate: %s", z->msg ? z->msg : "?");
            return fail(c, why), -1;
        }
        size_t got = sizeof zout - z->avail_out;
        if (c->out_off + got > size) return fail(c, "inflated echo longer than the message"), -1;
        if (got && memcmp(zout, want + c->out_off, got))
            return fail(c, "inflated echo differs from the payload"), -1;
        c->out_off += got;
        if (r == Z_STREAM_END) {
            c->z_end = 1;
            return 0;
        }
        if (z->avail_out) return 0; /* all input taken */
    }
}

/* The end of a compressed echo: the removed tail, then the whole payload must be there. */
static int inflate_end(conn_t *c) {
    if (inflate_some(c, deflate_tail, 4)) return -1;
    if (c->out_off != size) return fail(c, "inflated echo shorter than the message"), -1;
    return 0;
}

/* Bytes of the echo stream: returns -1 when the connection failed. */
static int on_data(conn_t *c, const uint8_t *p, size_t n, double now) {
    if (c->state == ST_CLOSING) return 0; /* the server's close reply; ignored */
    if (raw) {
        while (n) {
            if (c->recv_seq >= c->q_end) return fail(c, "echo of a message never sent"), -1;
            int v = (int)(c->recv_seq % nvar);
            size_t take = flens[v] - c->msg_off < n ? flens[v] - c->msg_off : n;
            if (memcmp(p, frames[v] + c->msg_off, take))
                return fail(c, "echoed bytes differ"), -1;
            p += take;
            n -= take;
            c->msg_off += take;
            if (c->msg_off == flens[v]) {
                c->msg_off = 0;
                res->echo_wire += wlens[v];
                /* the echo is the frame as sent: inflate its payload as a server's echo */
                if (deflate_mode && (inflate_begin(c) || inflate_some(c, wire[v], wlens[v]) ||
                                     inflate_end(c)))
                    return -1;
                complete(c, now);
            }
        }
        return 0;
    }
    while (n) {
        if (!c->in_payload) {
            const uint8_t *h;
            size_t need = 2;
            if (c->hdr_have == 0 && n >= 2) {
                int l7 = p[1] & 0x7f;
                need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((p[1] & 0x80) ? 4 : 0);
            }
            if (c->hdr_have == 0 && n >= need) {
                h = p;
                p += need;
                n -= need;
            } else {
                for (;;) {
                    if (c->hdr_have >= 2) {
                        int l7 = c->hdr[1] & 0x7f;
                        need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) +
                               ((c->hdr[1] & 0x80) ? 4 : 0);
                    }
                    if ((size_t)c->hdr_have >= need || !n) break;
                    c->hdr[c->hdr_have++] = *p++;
                    n--;
                }
                if ((size_t)c->hdr_have < need) return 0;
                h = c->hdr;
                c->hdr_have = 0;
            }
            int op = h[0] & 0x0f, l7 = h[1] & 0x7f;
            uint64_t len = l7;
            if (l7 == 126) len = ((uint64_t)h[2] << 8) | h[3];
            if (l7 == 127) {
                len = 0;
                for (int i = 0; i < 8; i++) len = (len << 8) | h[2 + i];
            }
            if (h[0] & (deflate_mode ? 0x30 : 0x70)) return fail(c, "reserved bits set in an echo"), -1;
            if (h[1] & 0x80) return fail(c, "masked frame from the server"), -1;
            if (op == 8) return fail(c, "the server sent Close"), -1;
            if (op >= 8) return fail(c, "unexpected control frame (keepalive ping?)"), -1;
            if (c->recv_seq >= c->q_end) return fail(c, "echo of a message never sent"), -1;
            if (!c->in_msg) {
                if (op != opcode) return fail(c, "echo has the wrong opcode"), -1;
                c->in_msg = 1;
                c->msg_off = 0;
                if ((h[0] & 0x40) && inflate_begin(c)) return -1;
            } else if (op != 0) {
                return fail(c, "new message inside a fragmented echo"), -1;
            } else if (h[0] & 0x40) {
                return fail(c, "RSV1 on a continuation frame"), -1;
            }
            if (!c->compressed && c->msg_off + len > size)
                return fail(c, "echo longer than the message"), -1;
            c->frame_left = len;
            c->frame_fin = h[0] >> 7;
            c->in_payload = 1;
        }
        size_t take = c->frame_left < n ? c->frame_left : n;
        if (c->compressed) {
            if (take && inflate_some(c, p, take)) return -1;
        } else if (take && memcmp(p, payloads[c->recv_seq % nvar] + c->msg_off, take)) {
            return fail(c, "echoed payload differs"), -1;
        }
        p += take;
        n -= take;
        c->frame_left -= take;
        c->msg_off += take;
        if (!c->frame_left) {
            c->in_payload = 0;
            if (c->frame_fin) {
                if (c->compressed ? inflate_end(c) != 0 : c->msg_off != size)
                    return c->state == ST_DONE ? -1
                                               : (fail(c, "echo shorter than the message"), -1);
                res->echo_wire += c->msg_off;
                c->in_msg = 0;
                complete(c, now);
            }
        }
    }
    return 0;
}

static void opened(conn_t *c, double now) {
    c->state = ST_OPEN;
    res->opened++;
    res->t_last_open = now;
    res->hs[bucket((uint64_t)((now - c->t_connect) * 1e9))]++;
}

static void start_connect(conn_t *c) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    c->fd = fd;
    c->reset_each = deflate_mode == DEFLATE_NO_TAKEOVER; /* --raw: the handshake never says */
    c->t_connect = mono();
    if (!res->t_first_connect) res->t_first_connect = c->t_connect;
    if (fd < 0) return fail_sys(c, "socket");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nsrc) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(c->idx % nsrc));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src)) return fail_sys(c, "bind source address");
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS)
        return fail_sys(c, "connect");
    c->state = ST_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    c->want_out = 1;
}

/* --deflate: the server must have accepted our offer, as offered (RFC 7692 5, 7.1). */
static int check_extensions(conn_t *c, const char *head) {
    const char *e = strcasestr(head, "\nsec-websocket-extensions:");
    if (!e) return fail(c, "the server did not accept permessage-deflate (no extension)"), -1;
    e += 27;
    while (*e == ' ' || *e == '\t') e++;
    size_t len = strcspn(e, "\r\n");
    char value[192];
    snprintf(value, sizeof value, "%.*s", (int)(len < sizeof value ? len : sizeof value - 1), e);
    if (!res->ext[0]) memcpy(res->ext, value, sizeof res->ext);
    if (strncasecmp(value, "permessage-deflate", 18))
        return fail(c, "the server did not accept permessage-deflate"), -1;
    if (strcasestr(value, "client_max_window_bits"))
        return fail(c, "the server set client_max_window_bits, which was not offered"), -1;
    c->reset_each = strcasestr(value, "server_no_context_takeover") != NULL;
    if (deflate_mode == DEFLATE_NO_TAKEOVER && !c->reset_each)
        return fail(c, "the server did not confirm server_no_context_takeover"), -1;
    return 0;
}

static void on_handshake(conn_t *c, double now) {
    ssize_t r = read(c->fd, c->hbuf + c->hlen, sizeof c->hbuf - 1 - c->hlen);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r == 0) return fail(c, "closed during the handshake");
    if (r < 0) return fail_sys(c, "read");
    c->hlen += r;
    c->hbuf[c->hlen] = 0;
    char *end = strstr(c->hbuf, "\r\n\r\n");
    if (!end) {
        if (c->hlen >= (int)sizeof c->hbuf - 1) fail(c, "handshake response too long");
        return;
    }
    *end = 0;
    if (strncmp(c->hbuf, "HTTP/1.1 101", 12)) return fail(c, "handshake not answered with 101");
    char *a = strcasestr(c->hbuf, "\nsec-websocket-accept:");
    if (!a) return fail(c, "no Sec-WebSocket-Accept");
    a += 22;
    while (*a == ' ' || *a == '\t') a++;
    if (ws_accept && strncmp(a, ws_accept, strlen(ws_accept)))
        return fail(c, "wrong Sec-WebSocket-Accept");
    if (deflate_mode && check_extensions(c, c->hbuf)) return;
    opened(c, now);
    size_t head = (size_t)(end + 4 - c->hbuf);
    if ((size_t)c->hlen > head) on_data(c, (uint8_t *)c->hbuf + head, c->hlen - head, now);
}

static void on_event(conn_t *c, uint32_t evs, double now) {
    if (c->state == ST_CONNECTING) {
        if (!(evs & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) return fail2(c, "connect", err);
        set_out(c, 0);
        if (raw) return opened(c, now);
        if (write(c->fd, req, reqlen) != (ssize_t)reqlen) return fail_sys(c, "write handshake");
        c->state = ST_HANDSHAKE;
        return;
    }
    if (c->state == ST_HANDSHAKE) return on_handshake(c, now);
    if (evs & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        int reads = read_size < RBUF / 8 ? (int)(RBUF / read_size) : 8;
        for (int i = 0; i < reads; i++) {
            ssize_t r = read(c->fd, rbuf, read_size);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
            if (r <= 0) {
                if (c->state == ST_CLOSING) { /* EOF after our Close: done */
                    close(c->fd);
                    c->fd = -1;
                    c->state = ST_DONE;
                    return;
                }
                if (r == 0) return fail(c, "the server closed the connection");
                return fail_sys(c, "read");
            }
            if (on_data(c, rbuf, (size_t)r, now)) return;
            if ((size_t)r < read_size) break;
        }
    }
    if (c->state == ST_OPEN) flush(c);
}

static int poll_once(int timeout_ms) {
    struct epoll_event evs[MAXEV];
    int k = epoll_wait(ep, evs, MAXEV, timeout_ms);
    if (k <= 0) return 0;
    double now = mono();
    for (int i = 0; i < k; i++) on_event(evs[i].data.ptr, evs[i].events, now);
    return k;
}

static void close_all(void) {
    int left = 0;
    for (int i = 0; i < ncs; i++) {
        conn_t *c = &cs[i];
        if (c->state != ST_OPEN) continue;
        if (!raw && write(c->fd, close_frame, sizeof close_frame) < 0) {}
        shutdown(c->fd, SHUT_WR);
        c->state = ST_CLOSING;
        left++;
    }
    double deadline = mono() + 3.0;
    while (mono() < deadline) {
        poll_once(10);
        left = 0;
        for (int i = 0; i < ncs; i++) left += cs[i].state == ST_CLOSING;
        if (!left) break;
    }
    for (int i = 0; i < ncs; i++)
        if (cs[i].fd >= 0) close(cs[i].fd);
}

/* Open connections cs[0..target) (those before `next` already are), at most hconc at once. */
static int next_conn;
static void connect_until(int target) {
    double deadline = mono() + 60.0;
    for (;;) {
        int pending = 0, done = 0;
        for (int i = 0; i < next_conn; i++) {
            pending += cs[i].state == ST_CONNECTING || cs[i].state == ST_HANDSHAKE;
            done += cs[i].state == ST_OPEN || cs[i].state == ST_DONE;
        }
        if (done >= target) return;
        while (next_conn < target && pending < hconc) {
            start_connect(&cs[next_conn++]);
            pending++;
        }
        if (mono() > deadline) {
            for (int i = 0; i < target; i++)
                if (cs[i].state != ST_OPEN) fail(&cs[i], "connect timeout");
            return;
        }
        poll_once(10);
    }
}

static void child(int id) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    res = &sh->res[id];
    rng_state ^= (uint64_t)(id + 1) * 0x2545F4914F6CDD1Dull;
    ncs = conns / procs + (id < conns % procs);
    int base = id * (conns / procs) + (id < conns % procs ? id : conns % procs);
    cs = calloc(ncs, sizeof *cs);
    for (int i = 0; i < ncs; i++) {
        cs[i].idx = base + i;
        cs[i].fd = -1;
        cs[i].sent_at = calloc(depth, sizeof(double));
    }
    ep = epoll_create1(0);
    if (!idle) {
        connect_until(ncs);
    } else { /* --procs is 1: open the connections in steps, pausing after each */
        double hs_time = 0;
        for (int k = 0; k < nsteps; k++) {
            int target = steps[k] < ncs ? steps[k] : ncs;
            double t0 = mono(), c0 = cpu_seconds();
            connect_until(target);
            double dt = mono() - t0;
            hs_time += dt;
            printf("OPEN %llu %.6f %.4f\n", (unsigned long long)res->opened, hs_time,
                   dt > 0 ? (cpu_seconds() - c0) / dt : 0.0);
            fflush(stdout);
            char line[64];
            if (!fgets(line, sizeof line, stdin)) {}
        }
        res->t_first_connect = 0;
        res->t_last_open = hs_time;
    }
    __atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&sh->go, __ATOMIC_SEQ_CST)) usleep(100);

    double now = mono(), cpu0 = 0;
    double t_meas = sh->t_go + warmup;
    t_end = t_meas + duration;
    sending = 1;
    one_shot = idle;
    for (int i = 0; i < ncs; i++)
        if (cs[i].state == ST_OPEN) {
            queue(&cs[i], idle ? 1 : depth, now);
            flush(&cs[i]);
        }
    double drain_deadline = 0;
    for (;;) {
        now = mono();
        if (!idle && sending && !recording && now >= t_meas) {
            recording = 1;
            cpu0 = cpu_seconds();
        }
        if (!idle && sending && now >= t_end) {
            sending = 0;
            recording = 0;
            res->cpu = cpu_seconds() - cpu0;
        }
        if (idle) sending = 0;
        if (!sending && !drain_deadline)
            drain_deadline = now + 10.0 + (double)size * depth * ncs / 50e6;
        if (!sending && outstanding <= 0) break;
        if (drain_deadline && now > drain_deadline) {
            for (int i = 0; i < ncs; i++)
                if (cs[i].state == ST_OPEN && cs[i].recv_seq < cs[i].q_end)
                    fail(&cs[i], "echo missing (drain timeout)");
            break;
        }
        poll_once(sending ? 2 : 10);
    }
    close_all();
    _exit(0);
}

static void print_lat(const char *name, uint64_t *h) {
    uint64_t total = 0;
    double sum = 0;
    int maxb = 0;
    for (int b = 0; b < NB; b++) {
        total += h[b];
        sum += h[b] * bucket_mid(b);
        if (h[b]) maxb = b;
    }
    printf("\"%s\": {\"count\": %llu", name, (unsigned long long)total);
    if (total) {
        static const double qs[] = {0.5, 0.9, 0.99, 0.999};
        static const char *qn[] = {"p50", "p90", "p99", "p99_9"};
        for (int q = 0; q < 4; q++) {
            uint64_t rank = (uint64_t)(qs[q] * total), seen = 0;
            int b = 0;
            for (; b < NB; b++) {
                seen += h[b];
                if (seen > rank) break;
            }
            printf(", \"%s\": %.3f", qn[q], bucket_mid(b < NB ? b : NB - 1) / 1e3);
        }
        printf(", \"mean\": %.3f, \"max\": %.3f", sum / total / 1e3, bucket_mid(maxb) / 1e3);
    }
    printf("}");
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        putchar((unsigned char)*s < 0x20 ? ' ' : *s);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    static struct option opts[] = {
        {"host", 1, 0, 'h'},     {"port", 1, 0, 'p'},     {"raw", 0, 0, 'r'},
        {"conns", 1, 0, 'c'},    {"depth", 1, 0, 'd'},    {"size", 1, 0, 's'},
        {"text", 0, 0, 't'},     {"warmup", 1, 0, 'w'},   {"duration", 1, 0, 'D'},
        {"procs", 1, 0, 'P'},    {"key", 1, 0, 'k'},      {"accept", 1, 0, 'a'},
        {"sources", 1, 0, 'S'},  {"idle", 1, 0, 'i'},    {"hs-concurrency", 1, 0, 'H'},
        {"path", 1, 0, 'x'},     {"deflate", 1, 0, 'z'},  {"show-payload", 0, 0, 'Z'},
        {"frag", 1, 0, 'F'},     {"write-chunk", 1, 0, 'W'}, {"read-size", 1, 0, 'R'},
        {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'r': raw = 1; break;
        case 'c': conns = atoi(optarg); break;
        case 'd': depth = atoi(optarg); break;
        case 's': size = strtoull(optarg, NULL, 10); break;
        case 't': opcode = 1; break;
        case 'w': warmup = atof(optarg); break;
        case 'D': duration = atof(optarg); break;
        case 'P': procs = atoi(optarg); break;
        case 'k': ws_key = optarg; break;
        case 'a': ws_accept = optarg; break;
        case 'S': nsrc = atoi(optarg); break;
        case 'i':
            idle = 1;
            for (char *t = strtok(optarg, ","); t && nsteps < 16; t = strtok(NULL, ","))
                steps[nsteps++] = atoi(t);
            break;
        case 'H': hconc = atoi(optarg); break;
        case 'x': path = optarg; break;
        case 'z':
            deflate_mode = !strcmp(optarg, "no-takeover")       ? DEFLATE_NO_TAKEOVER
                           : !strcmp(optarg, "server-takeover") ? DEFLATE_SERVER_TAKEOVER
                                                                : -1;
            break;
        case 'Z': show_payload = 1; break;
        case 'F': frag = strtoull(optarg, NULL, 10); break;
        case 'W': write_chunk = strtoull(optarg, NULL, 10); break;
        case 'R': read_size = strtoull(optarg, NULL, 10); break;
        default: fprintf(stderr, "loadgen: bad option\n"); return 2;
        }
    }
    if (!port || conns < 1 || depth < 1 || size < 1 || procs < 1 || procs > MAXPROCS ||
        procs > conns || hconc < 1 || (idle && (procs != 1 || !nsteps)) || deflate_mode < 0 ||
        read_size < 1 || read_size > RBUF || (deflate_mode && (frag || write_chunk))) {
        fprintf(stderr, "loadgen: need --port, positive --conns/--depth/--size/--procs;"
                        " --idle STEPS (e.g. 1000,10000) needs --procs 1;"
                        " --deflate is no-takeover or server-takeover, without --frag or"
                        " --write-chunk; --read-size is 1 to 262144\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    build_frames();
    if (show_payload) { /* what the messages look like: variant 0, and the sizes */
        size_t total = 0;
        for (int v = 0; v < nvar; v++) total += wlens[v];
        fwrite(payloads[0], 1, size, stdout);
        printf("\n%d variants of %zu bytes, %.1f bytes on the wire on average\n", nvar, size,
               (double)total / nvar);
        return 0;
    }
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t pids[MAXPROCS];
    for (int i = 0; i < procs; i++) {
        pids[i] = fork();
        if (pids[i] == 0) child(i);
    }
    /* wait until every child has its connections open (or a child died) */
    int alive = procs;
    while (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) < alive) {
        int st;
        if (waitpid(-1, &st, WNOHANG) > 0) alive--;
        usleep(1000);
    }
    sh->t_go = mono();
    __atomic_store_n(&sh->go, 1, __ATOMIC_SEQ_CST);
    int crashed = 0;
    for (int i = 0; i < procs; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) crashed++;
    }
    result_t tot = {0};
    double first = 0, last = 0;
    for (int i = 0; i < procs; i++) {
        result_t *r = &sh->res[i];
        tot.msgs += r->msgs;
        tot.bytes += r->bytes;
        tot.verified += r->verified;
        tot.errors += r->errors;
        tot.opened += r->opened;
        tot.compressed += r->compressed;
        tot.plain += r->plain;
        tot.echo_wire += r->echo_wire;
        if (!tot.ext[0]) memcpy(tot.ext, r->ext, sizeof tot.ext);
        tot.cpu += r->cpu;
        if (!first || (r->t_first_connect && r->t_first_connect < first)) first = r->t_first_connect;
        if (r->t_last_open > last) last = r->t_last_open;
        for (int b = 0; b < NB; b++) {
            tot.lat[b] += r->lat[b];
            tot.hs[b] += r->hs[b];
        }
        if (!tot.err[0] && r->err[0]) memcpy(tot.err, r->err, sizeof tot.err);
    }
    if (crashed && !tot.err[0]) snprintf(tot.err, sizeof tot.err, "%d load generator process(es) crashed", crashed);
    double d = idle ? 0 : duration;
    printf("{\"mode\": \"%s\", \"conns\": %d, \"depth\": %d, \"size\": %zu, \"text\": %s, "
           "\"procs\": %d, \"duration\": %.3f, \"msgs\": %llu, \"msgs_per_s\": %.1f, "
           "\"mb_per_s\": %.3f, \"verified\": %llu, \"errors\": %llu, \"crashed\": %d, "
           "\"client_cpu\": %.4f, \"opened\": %llu, \"handshake_seconds\": %.6f, "
           "\"window\": [%.6f, %.6f], ",
           raw ? "raw" : "ws", conns, depth, size, opcode == 1 ? "true" : "false", procs, d,
           (unsigned long long)tot.msgs, d ? tot.msgs / d : 0.0, d ? tot.bytes / d / 1e6 : 0.0,
           (unsigned long long)tot.verified, (unsigned long long)tot.errors, crashed,
           d ? tot.cpu / d : 0.0, (unsigned long long)tot.opened, last - first,
           sh->t_go + warmup, sh->t_go + warmup + d);
    print_lat("latency_us", tot.lat);
    printf(", ");
    print_lat("handshake_us", tot.hs);
    size_t sent_wire = 0;
    for (int v = 0; v < nvar; v++) sent_wire += wlens[v];
    printf(", \"deflate\": \"%s\", \"extensions\": ",
           deflate_mode == DEFLATE_NO_TAKEOVER       ? "no-takeover"
           : deflate_mode == DEFLATE_SERVER_TAKEOVER ? "server-takeover"
                                                     : "");
    json_str(tot.ext);
    printf(", \"compressed_echoes\": %llu, \"plain_echoes\": %llu, \"sent_wire_bytes\": %.1f,"
           " \"echo_wire_bytes\": %.1f",
           (unsigned long long)tot.compressed, (unsigned long long)tot.plain,
           (double)sent_wire / nvar, tot.verified ? (double)tot.echo_wire / tot.verified : 0.0);
    printf(", \"frag\": %zu, \"write_chunk\": %zu, \"read_size\": %zu", frag, write_chunk,
           read_size);
    printf(", \"error\": ");
    json_str(tot.err);
    printf("}\n");
    return 0;
}
