/* loadgen: an open-loop HTTP load generator for huiqid. wrk is closed-loop: when
 * the server stalls, wrk stops sending, and the stall hides in a few slow samples
 * (coordinated omission). Here requests are due at a fixed arrival rate whether
 * or not earlier ones have been answered, and each latency is measured from the
 * moment its request was due, so queueing behind a stall counts in full.
 *
 *   loadgen --port 8080 --key KEY --rate 5000 --duration 30 --conns 64 \
 *           --mix mixed --usccs FILE [--policies N] [--slow-conns N] [--json]
 *
 * --rate 0 runs closed-loop (each connection sends as soon as it is answered),
 * which finds the maximum throughput. --slow-conns opens that many extra
 * connections that send a request one byte per second (a slowloris crowd) while
 * the measured traffic runs. Output: one JSON object with counts and latency
 * percentiles (ms). Mixes: read (packages 70%, enterprise reads 25%, audience
 * counts 5%), mixed (packages 60%, reads 20%, audiences 5%, PATCH writes 15%),
 * write (PATCH only), package (packages only: no Redis involved). HTTP/1.1 keep-alive on loopback;
 * answers are framed by Content-Length, which huiqid always sends. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#define LG_MAX_REQ  1024
#define LG_HBUCKETS (64 * 40) /* 64 sub-buckets per power of two, 1 µs .. ~2^40 µs */

typedef struct lg_hist {
    uint64_t n[LG_HBUCKETS];
    uint64_t count;
    double max_us;
} lg_hist_t;

static unsigned lg_hbucket(double us) {
    if (us < 1) {
        us = 1;
    }
    int e = (int)floor(log2(us));
    double base = ldexp(1.0, e);
    unsigned sub = (unsigned)((us - base) / base * 64);
    unsigned i = (unsigned)e * 64 + (sub > 63 ? 63 : sub);
    return i < LG_HBUCKETS ? i : LG_HBUCKETS - 1;
}

static double lg_hvalue(unsigned i) {
    double base = ldexp(1.0, (int)(i / 64));
    return base + base * ((double)(i % 64) + 1) / 64; /* the bucket's upper edge */
}

static void lg_hadd(lg_hist_t *h, double us) {
    h->n[lg_hbucket(us)]++;
    h->count++;
    if (us > h->max_us) {
        h->max_us = us;
    }
}

static double lg_hpct(const lg_hist_t *h, double p) {
    if (h->count == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->count);
    uint64_t cum = 0;
    for (unsigned i = 0; i < LG_HBUCKETS; i++) {
        cum += h->n[i];
        if (cum >= want) {
            double v = lg_hvalue(i);
            return v > h->max_us ? h->max_us : v;
        }
    }
    return h->max_us;
}

typedef struct lg lg_t;

typedef struct lg_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    lg_t *lg;
    int busy, connected, slow, closing;
    uint64_t due_ns; /* when the request in flight was due */
    int is_write;
    char out[LG_MAX_REQ];
    size_t outlen;
    char *in; /* response bytes */
    size_t inlen, incap;
    size_t slow_pos; /* slow connections: bytes of 'out' sent so far */
    uv_timer_t slow_timer;
} lg_conn_t;

struct lg {
    uv_loop_t *loop;
    struct sockaddr_in addr;
    const char *key;
    double rate;
    double duration;
    uint64_t tick_ns; /* wake at most this often; requests due meanwhile go out together */
    unsigned nconns, nslow;
    int mix;
    char **usccs;
    size_t nusccs;
    unsigned npolicies;
    lg_conn_t *conns;
    lg_conn_t *slow;
    int tfd; /* timerfd: libuv timers have 1 ms granularity, too coarse here */
    uv_poll_t tick;
    uv_signal_t sigint, sigterm; /* stop early: the results so far are printed */
    uint64_t start_ns, end_ns;
    uint64_t issued; /* requests that became due */
    uint64_t *queue; /* due times of requests waiting for a connection */
    size_t qhead, qtail, qcap;
    uint64_t sent, done, errors, status[6], conn_errors, reconnects;
    lg_hist_t all, reads, writes;
    uint64_t rng;
    int stopping;
    unsigned closed;
};

enum { MIX_READ, MIX_MIXED, MIX_WRITE, MIX_PACKAGE };

static uint64_t lg_rand(lg_t *g) {
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    return g->rng;
}

static void lg_conn_start(lg_conn_t *c);
static void lg_dispatch(lg_t *g);

/* Builds the next request of the mix into c->out. */
static void lg_make_request(lg_t *g, lg_conn_t *c) {
    unsigned r = (unsigned)(lg_rand(g) % 100);
    const char *u = g->nusccs ? g->usccs[lg_rand(g) % g->nusccs] : "91320214MA1X7K2Q3L";
    char auth[160] = "";
    if (g->key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", g->key);
    }
    int n;
    c->is_write = 0;
    int write = g->mix == MIX_WRITE || (g->mix == MIX_MIXED && r >= 85);
    if (write) {
        char body[64];
        int bl = snprintf(body, sizeof body, "{\"employees\":%u}", (unsigned)(lg_rand(g) % 400));
        n = snprintf(c->out, sizeof c->out,
                     "PATCH /v1/enterprises/%s HTTP/1.1\r\nHost: l\r\n%sContent-Type: "
                     "application/merge-patch+json\r\nContent-Length: %d\r\n\r\n%s",
                     u, auth, bl, body);
        c->is_write = 1;
    } else if (g->mix == MIX_PACKAGE || (g->mix == MIX_READ && r < 70) ||
               (g->mix == MIX_MIXED && r < 60)) {
        n = snprintf(c->out, sizeof c->out,
                     "GET /v1/enterprises/%s/policies HTTP/1.1\r\nHost: l\r\n%s\r\n", u, auth);
    } else if ((g->mix == MIX_READ && r < 95) || (g->mix == MIX_MIXED && r < 80)) {
        n = snprintf(c->out, sizeof c->out, "GET /v1/enterprises/%s HTTP/1.1\r\nHost: l\r\n%s\r\n",
                     u, auth);
    } else {
        unsigned id = 1 + (unsigned)(lg_rand(g) % (g->npolicies ? g->npolicies : 1));
        n = snprintf(c->out, sizeof c->out,
                     "GET /v1/policies/%u/audience HTTP/1.1\r\nHost: l\r\n%s\r\n", id, auth);
    }
    c->outlen = (size_t)n;
}

static void lg_on_close(uv_handle_t *h) {
    lg_conn_t *c = h->data;
    lg_t *g = c->lg;
    g->closed++;
    if (!g->stopping && !c->slow) {
        /* Reconnect (the server closed it: idle timeout or an error). */
        c->closing = 0;
        c->connected = 0;
        g->reconnects++;
        lg_conn_start(c);
    }
}

static void lg_conn_close(lg_conn_t *c) {
    if (c->closing) {
        return;
    }
    c->closing = 1;
    if (c->busy) {
        c->busy = 0;
        c->lg->conn_errors++;
    }
    uv_close((uv_handle_t *)&c->tcp, lg_on_close);
}

static void lg_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
    (void)hint;
    lg_conn_t *c = h->data;
    if (c->incap - c->inlen < 65536) {
        c->incap = c->incap ? c->incap * 2 : 131072;
        c->in = realloc(c->in, c->incap);
        if (c->in == NULL) {
            abort();
        }
    }
    b->base = c->in + c->inlen;
    b->len = c->incap - c->inlen;
}

/* A complete answer at the front of c->in: its length, or 0 when not yet. */
static size_t lg_answer_len(lg_conn_t *c, int *status) {
    void *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (end == NULL) {
        return 0;
    }
    size_t head = (size_t)((char *)end - c->in) + 4;
    *status = atoi(c->in + 9);
    size_t clen = 0;
    for (char *p = c->in; p < c->in + head; p++) {
        if ((p == c->in || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0) {
            clen = (size_t)strtoull(p + 15, NULL, 10);
            break;
        }
    }
    return c->inlen >= head + clen ? head + clen : 0;
}

static void lg_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    (void)b;
    lg_conn_t *c = s->data;
    lg_t *g = c->lg;
    if (n < 0) {
        lg_conn_close(c);
        return;
    }
    c->inlen += (size_t)n;
    int status = 0;
    size_t len = lg_answer_len(c, &status);
    if (len == 0 || !c->busy) {
        if (!c->busy) {
            c->inlen = 0; /* a slow connection's 408, or noise */
        }
        return;
    }
    memmove(c->in, c->in + len, c->inlen - len);
    c->inlen -= len;
    uint64_t now = uv_hrtime();
    double us = (double)(now - c->due_ns) / 1e3;
    if (now <= g->end_ns) {
        lg_hadd(&g->all, us);
        lg_hadd(c->is_write ? &g->writes : &g->reads, us);
        g->done++;
        g->status[status / 100 < 6 ? status / 100 : 0]++;
        if (status >= 500 || status == 429) {
            g->errors++;
        }
    }
    c->busy = 0;
    lg_dispatch(g);
}

static void lg_on_write(uv_write_t *w, int status) {
    lg_conn_t *c = w->data;
    if (status < 0) {
        lg_conn_close(c);
    }
}

static void lg_send(lg_conn_t *c, uint64_t due) {
    lg_t *g = c->lg;
    lg_make_request(g, c);
    c->busy = 1;
    c->due_ns = due;
    uv_buf_t b = uv_buf_init(c->out, (unsigned)c->outlen);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, lg_on_write) != 0) {
        lg_conn_close(c);
        return;
    }
    g->sent++;
}

static void lg_on_connect(uv_connect_t *r, int status) {
    lg_conn_t *c = r->data;
    if (status < 0) {
        c->lg->conn_errors++;
        lg_conn_close(c);
        return;
    }
    c->connected = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, lg_alloc, lg_on_read);
    lg_dispatch(c->lg);
}

static void lg_conn_start(lg_conn_t *c) {
    uv_tcp_init(c->lg->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    c->inlen = 0;
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&c->lg->addr, lg_on_connect)) {
        c->lg->conn_errors++;
        lg_conn_close(c);
    }
}

/* Sends due requests on idle connections, oldest first. */
static void lg_dispatch(lg_t *g) {
    if (g->stopping) {
        return;
    }
    for (unsigned i = 0; i < g->nconns; i++) {
        lg_conn_t *c = &g->conns[i];
        if (!c->connected || c->busy || c->closing) {
            continue;
        }
        if (g->rate <= 0) {
            lg_send(c, uv_hrtime()); /* closed loop */
        } else if (g->qhead != g->qtail) {
            uint64_t due = g->queue[g->qhead];
            g->qhead = (g->qhead + 1) % g->qcap;
            lg_send(c, due);
        } else {
            return;
        }
    }
}

static void lg_stop(lg_t *g) {
    if (g->stopping) {
        return;
    }
    g->stopping = 1;
    uv_close((uv_handle_t *)&g->sigint, NULL);
    uv_close((uv_handle_t *)&g->sigterm, NULL);
    uv_poll_stop(&g->tick);
    uv_close((uv_handle_t *)&g->tick, NULL);
    for (unsigned i = 0; i < g->nconns; i++) {
        if (!g->conns[i].closing) {
            g->conns[i].closing = 1;
            uv_close((uv_handle_t *)&g->conns[i].tcp, lg_on_close);
        }
    }
    for (unsigned i = 0; i < g->nslow; i++) {
        lg_conn_t *c = &g->slow[i];
        uv_timer_stop(&c->slow_timer);
        uv_close((uv_handle_t *)&c->slow_timer, NULL);
        if (!c->closing) {
            c->closing = 1;
            uv_close((uv_handle_t *)&c->tcp, lg_on_close);
        }
    }
}

/* Arms the timerfd for an absolute CLOCK_MONOTONIC time (uv_hrtime's clock). */
static void lg_arm(lg_t *g, uint64_t at_ns) {
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = (time_t)(at_ns / 1000000000ull);
    its.it_value.tv_nsec = (long)(at_ns % 1000000000ull);
    timerfd_settime(g->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void lg_on_tick(uv_poll_t *t, int status, int events) {
    (void)status;
    (void)events;
    lg_t *g = t->data;
    uint64_t expirations;
    if (read(g->tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) {
        lg_stop(g);
        return;
    }
    uint64_t now = uv_hrtime();
    if (now >= g->end_ns) {
        lg_stop(g);
        return;
    }
    if (g->rate > 0) {
        /* Request i is due at start + i / rate: the first at once. */
        uint64_t due_count = (uint64_t)((double)(now - g->start_ns) / 1e9 * g->rate) + 1;
        while (g->issued < due_count) {
            uint64_t due = g->start_ns + (uint64_t)((double)g->issued / g->rate * 1e9);
            size_t next = (g->qtail + 1) % g->qcap;
            if (next == g->qhead) {
                /* The backlog is full: count it as a failure at its due time. */
                g->errors++;
                lg_hadd(&g->all, (double)(now - due) / 1e3);
            } else {
                g->queue[g->qtail] = due;
                g->qtail = next;
            }
            g->issued++;
        }
    }
    lg_dispatch(g);
    uint64_t next = g->end_ns;
    if (g->rate > 0) {
        uint64_t due = g->start_ns + (uint64_t)((double)g->issued / g->rate * 1e9);
        next = due < next ? due : next;
    }
    /* Waking for every request costs the generator a context switch each (at
     * 17k/s that was 40% of a core, taken from the server under test on a 2-core
     * machine). Requests due before the next tick wait for it; their latency still
     * counts from when they were due, so batching can only make the figures
     * worse, never better. */
    if (next < now + g->tick_ns) {
        next = now + g->tick_ns < g->end_ns ? now + g->tick_ns : g->end_ns;
    }
    lg_arm(g, next);
}

static void lg_on_signal(uv_signal_t *h, int signum) {
    (void)signum;
    lg_t *g = h->data;
    g->end_ns = uv_hrtime();
    lg_stop(g);
}

/* ---- slow connections ------------------------------------------------------ */

static void lg_slow_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void lg_slow_tick(uv_timer_t *t) {
    lg_conn_t *c = t->data;
    if (!c->connected || c->closing) {
        return;
    }
    if (c->slow_pos >= c->outlen) {
        c->slow_pos = 0; /* keep trickling (a new request if the old one was cut) */
    }
    uv_buf_t b = uv_buf_init(c->out + c->slow_pos, 1);
    c->slow_pos++;
    uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
}

static void lg_slow_connect(uv_connect_t *r, int status) {
    lg_conn_t *c = r->data;
    if (status < 0) {
        c->lg->conn_errors++;
        return;
    }
    c->connected = 1;
    uv_read_start((uv_stream_t *)&c->tcp, lg_alloc, lg_slow_read);
}

static void lg_slow_close(uv_handle_t *h) {
    lg_conn_t *c = h->data;
    c->lg->closed++;
    if (!c->lg->stopping) {
        /* Cut off by the server: come back, as an attacker would. */
        c->closing = 0;
        c->connected = 0;
        c->slow_pos = 0;
        uv_tcp_init(c->lg->loop, &c->tcp);
        c->tcp.data = c;
        c->creq.data = c;
        uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&c->lg->addr, lg_slow_connect);
    }
}

static void lg_slow_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    (void)b;
    lg_conn_t *c = s->data;
    if (n < 0 && !c->closing) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, lg_slow_close);
        return;
    }
    c->inlen = 0;
}

static void lg_slow_start(lg_t *g) {
    for (unsigned i = 0; i < g->nslow; i++) {
        lg_conn_t *c = &g->slow[i];
        c->lg = g;
        c->slow = 1;
        c->outlen = (size_t)snprintf(c->out, sizeof c->out,
                                     "GET /v1/tags?vocab=policy HTTP/1.1\r\nHost: slow\r\n"
                                     "X-Padding: %0200d\r\n\r\n",
                                     0);
        uv_tcp_init(g->loop, &c->tcp);
        c->tcp.data = c;
        c->creq.data = c;
        uv_timer_init(g->loop, &c->slow_timer);
        c->slow_timer.data = c;
        uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&g->addr, lg_slow_connect);
        /* Spread the trickles over the second. */
        uv_timer_start(&c->slow_timer, lg_slow_tick, 1000 + (uint64_t)i % 1000, 1000);
    }
}

/* ---- main ---------------------------------------------------------------------- */

static int lg_load_usccs(lg_t *g, const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -errno;
    }
    char line[128];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, " \t\r\n,");
        if (n != 18) {
            continue;
        }
        line[n] = '\0';
        if (g->nusccs == cap) {
            cap = cap ? cap * 2 : 4096;
            g->usccs = realloc(g->usccs, cap * sizeof *g->usccs);
            if (g->usccs == NULL) {
                abort();
            }
        }
        g->usccs[g->nusccs++] = strdup(line);
    }
    fclose(f);
    return 0;
}

static void lg_usage(void) {
    fprintf(stderr,
            "usage: loadgen [--host 127.0.0.1] --port P [--key KEY] [--rate R|0] [--duration S]\n"
            "               [--conns N] [--mix read|mixed|write] [--usccs FILE]\n"
            "               [--policies N] [--slow-conns N] [--tick-us US (500)]\n");
}

int main(int argc, char **argv) {
    static lg_t g;
    const char *host = "127.0.0.1";
    int port = 8080;
    const char *usccs = NULL;
    g.rate = 1000;
    g.duration = 10;
    g.tick_ns = 500000;
    g.nconns = 64;
    g.mix = MIX_MIXED;
    g.npolicies = 12;
    g.key = getenv("HUIQI_KEY");
    static const struct option opts[] = {
        {"host", 1, 0, 'h'},       {"port", 1, 0, 'p'},     {"key", 1, 0, 'k'},
        {"rate", 1, 0, 'r'},       {"duration", 1, 0, 'd'}, {"conns", 1, 0, 'c'},
        {"mix", 1, 0, 'm'},        {"usccs", 1, 0, 'u'},    {"policies", 1, 0, 'P'},
        {"slow-conns", 1, 0, 's'}, {"tick-us", 1, 0, 't'},  {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'h':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'k':
            g.key = optarg;
            break;
        case 'r':
            g.rate = atof(optarg);
            break;
        case 'd':
            g.duration = atof(optarg);
            break;
        case 't':
            g.tick_ns = (uint64_t)atoi(optarg) * 1000u;
            break;
        case 'c':
            g.nconns = (unsigned)atoi(optarg);
            break;
        case 'm':
            g.mix = strcmp(optarg, "read") == 0      ? MIX_READ
                    : strcmp(optarg, "write") == 0   ? MIX_WRITE
                    : strcmp(optarg, "package") == 0 ? MIX_PACKAGE
                                                     : MIX_MIXED;
            break;
        case 'u':
            usccs = optarg;
            break;
        case 'P':
            g.npolicies = (unsigned)atoi(optarg);
            break;
        case 's':
            g.nslow = (unsigned)atoi(optarg);
            break;
        default:
            lg_usage();
            return 2;
        }
    }
    if (g.nconns == 0 || g.nconns > 100000 || g.duration <= 0 || g.duration > 86400 ||
        uv_ip4_addr(host, port, &g.addr) != 0) {
        lg_usage();
        return 2;
    }
    if (usccs && lg_load_usccs(&g, usccs) != 0) {
        fprintf(stderr, "loadgen: cannot read %s\n", usccs);
        return 2;
    }
    g.loop = uv_default_loop();
    g.rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)uv_hrtime();
    g.conns = calloc(g.nconns, sizeof *g.conns);
    g.slow = calloc(g.nslow ? g.nslow : 1, sizeof *g.slow);
    g.qcap = (size_t)(g.rate > 0 ? g.rate * 10 : 16) + 16; /* up to 10 s of backlog */
    g.queue = calloc(g.qcap, sizeof *g.queue);
    if (!g.conns || !g.slow || !g.queue) {
        return 1;
    }
    lg_slow_start(&g);
    for (unsigned i = 0; i < g.nconns; i++) {
        g.conns[i].lg = &g;
        lg_conn_start(&g.conns[i]);
    }
    /* Let the connections (and the slow crowd) settle before the clock starts. */
    uint64_t t0 = uv_hrtime();
    while (uv_hrtime() - t0 < 1000000000ull) {
        uv_run(g.loop, UV_RUN_NOWAIT); /* never blocks: nothing else would wake it */
        unsigned up = 0;
        for (unsigned i = 0; i < g.nconns; i++) {
            up += g.conns[i].connected;
        }
        if (up == g.nconns) {
            break;
        }
        uv_sleep(1);
    }
    g.start_ns = uv_hrtime();
    g.end_ns = g.start_ns + (uint64_t)(g.duration * 1e9);
    g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g.tfd < 0 || uv_poll_init(g.loop, &g.tick, g.tfd) != 0) {
        fprintf(stderr, "loadgen: no timerfd\n");
        return 1;
    }
    g.tick.data = &g;
    uv_poll_start(&g.tick, UV_READABLE, lg_on_tick);
    uv_signal_init(g.loop, &g.sigint);
    uv_signal_init(g.loop, &g.sigterm);
    g.sigint.data = g.sigterm.data = &g;
    uv_signal_start(&g.sigint, lg_on_signal, SIGINT);
    uv_signal_start(&g.sigterm, lg_on_signal, SIGTERM);
    lg_arm(&g, g.start_ns);
    uv_run(g.loop, UV_RUN_DEFAULT);
    double secs = (double)(g.end_ns - g.start_ns) / 1e9; /* shorter when stopped early */
    printf("{\"mode\":\"%s\",\"rate_target\":%.0f,\"duration_s\":%.1f,\"conns\":%u,"
           "\"slow_conns\":%u,\"sent\":%llu,\"done\":%llu,\"rate_achieved\":%.0f,"
           "\"errors\":%llu,\"conn_errors\":%llu,\"reconnects\":%llu,"
           "\"status\":{\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu},"
           "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},"
           "\"reads_ms\":{\"p50\":%.3f,\"p99\":%.3f},\"writes_ms\":{\"p50\":%.3f,\"p99\":%.3f}}\n",
           g.rate > 0 ? "open" : "closed", g.rate, secs, g.nconns, g.nslow,
           (unsigned long long)g.sent, (unsigned long long)g.done, (double)g.done / secs,
           (unsigned long long)g.errors, (unsigned long long)g.conn_errors,
           (unsigned long long)g.reconnects, (unsigned long long)g.status[2],
           (unsigned long long)g.status[3], (unsigned long long)g.status[4],
           (unsigned long long)g.status[5], lg_hpct(&g.all, 50) / 1e3, lg_hpct(&g.all, 90) / 1e3,
           lg_hpct(&g.all, 99) / 1e3, lg_hpct(&g.all, 99.9) / 1e3, g.all.max_us / 1e3,
           lg_hpct(&g.reads, 50) / 1e3, lg_hpct(&g.reads, 99) / 1e3, lg_hpct(&g.writes, 50) / 1e3,
           lg_hpct(&g.writes, 99) / 1e3);
    for (size_t i = 0; i < g.nusccs; i++) {
        free(g.usccs[i]);
    }
    free(g.usccs);
    free(g.queue);
    for (unsigned i = 0; i < g.nconns; i++) {
        free(g.conns[i].in);
    }
    for (unsigned i = 0; i < g.nslow; i++) {
        free(g.slow[i].in);
    }
    free(g.conns);
    free(g.slow);
    uv_loop_close(g.loop);
    close(g.tfd);
    return 0;
}
