/* HTTP server on libuv; see server.h. Reads go into one loop-wide buffer (the loop
 * runs one callback at a time), and only bytes left over after a complete request
 * are copied aside, so an idle connection holds no buffer. */
#include "api/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/httpd.h"
#include "common/sbuf.h"
#include "common/xalloc.h"

#define SERVER_RBUF (64 * 1024)

typedef struct server_conn {
    /* The client's stream: a TCP connection accepted from the listener, or a pipe
     * over a socket handed to server_adopt_fd. Everything after set-up goes
     * through 'stream'. */
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    uv_timer_t timer;
    server_t *srv;
    struct server_conn *prev, *next;
    httpd_t *http;
    api_req_t req;
    char *pending; /* bytes after the current request, not yet parsed */
    size_t npending;
    int handling;  /* the app holds req */
    int head_done; /* head callback ran for the current request */
    int closing;
    int handles;     /* open libuv handles */
    int close_after; /* close once the pending writes finish */
    int writes;      /* writes in flight */
    int in_process;
    int timer_mode;
    int body_paused;  /* pauses of a streamed body the app holds (each resumed once) */
    int lingering;    /* answered and shut down for writing; draining until EOF */
    int wq_blocked;   /* the client is not reading its answers: parsing is paused */
    uint64_t rx;      /* bytes read on this connection */
    uint64_t rx_mark; /* rx when the current body-progress window began */
    uv_shutdown_t shut;
} server_conn_t;

enum { TM_NONE, TM_IDLE, TM_HEAD, TM_BODY, TM_LINGER, TM_WRITE };

/* A body must arrive at SERVER_MIN_BODY_RATE bytes/s or more, measured over
 * windows of the header timeout: a client trickling one byte a second is cut off
 * with 408, however long its Content-Length. */
#define SERVER_MIN_BODY_RATE 1024u
/* Answers queued to a client that does not read them: beyond this, no more of
 * its pipelined requests are parsed until it catches up (or the idle timeout
 * closes it). */
#define SERVER_WQ_MAX (1u << 20)

/* How long a closing connection may keep sending what we will not read. */
#define SERVER_LINGER_MS 2000

struct server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    server_opts_t o;
    char host[64];
    server_cbs_t cbs;
    void *app;
    httpd_cbs_t hcbs;
    server_conn_t head; /* circular list of connections */
    unsigned nconns;
    char rbuf[SERVER_RBUF];
    char date[40];
    uint64_t date_sec;
    uint64_t rid_base;
    uint64_t rid_seq;
    int stopping;
    unsigned structs; /* connection structs not yet freed (open or closing) */
    int open;         /* during stop: listener + structs still to free */
    void (*done)(void *);
    void *done_arg;
};

typedef struct server_write {
    uv_write_t w;
    server_conn_t *c;
    char *buf;
    char *body; /* a second buffer written after 'buf', or NULL */
} server_write_t;

static void conn_process(server_conn_t *c);
static void conn_close(server_conn_t *c);
static void conn_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void conn_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

/* During stop: one more of the listener and connection structs is gone; the last
 * one frees the server. */
static void server_release(server_t *s) {
    if (--s->open == 0) {
        void (*done)(void *) = s->done;
        void *arg = s->done_arg;
        free(s);
        if (done) {
            done(arg);
        }
    }
}

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static const char *server_date(server_t *s) {
    uint64_t now = uv_now(s->loop) / 1000;
    if (now != s->date_sec || s->date[0] == '\0') {
        s->date_sec = now;
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(s->date, sizeof s->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    }
    return s->date;
}

static int server_rid_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 36) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.')) {
            return 0;
        }
    }
    return 1;
}

void server_req_clear(api_req_t *r) {
    free(r->path);
    free(r->query);
    for (int i = 0; i < r->nparams; i++) {
        free(r->param[i]);
    }
    memset(r, 0, sizeof *r);
}

static void conn_free_req(server_conn_t *c) {
    server_req_clear(&c->req);
}

static void conn_maybe_free(server_conn_t *c) {
    if (c->handles == 0 && !c->handling && c->writes == 0) {
        server_t *s = c->srv;
        conn_free_req(c);
        httpd_free(c->http);
        free(c->pending);
        free(c);
        s->structs--;
        if (s->stopping) {
            server_release(s);
        }
    }
}

static void conn_on_handle_close(uv_handle_t *h) {
    server_conn_t *c = h->data;
    c->handles--;
    conn_maybe_free(c);
}

static void conn_close(server_conn_t *c) {
    if (c->closing) {
        return;
    }
    c->closing = 1;
    server_t *s = c->srv;
    if (c->head_done && !c->handling && s->cbs.on_abort) {
        s->cbs.on_abort(s->app, &c->req);
    }
    c->prev->next = c->next;
    c->next->prev = c->prev;
    s->nconns--;
    uv_close(&c->io.handle, conn_on_handle_close);
    uv_close((uv_handle_t *)&c->timer, conn_on_handle_close);
}

static void conn_on_timer(uv_timer_t *t) {
    server_conn_t *c = t->data;
    if (c->timer_mode == TM_BODY) {
        uint64_t need = (uint64_t)SERVER_MIN_BODY_RATE * c->srv->o.header_timeout_ms / 1000;
        if (c->rx - c->rx_mark >= need) {
            c->rx_mark = c->rx; /* enough progress: another window */
            return;
        }
    }
    if (c->timer_mode == TM_HEAD || c->timer_mode == TM_BODY) {
        /* A client that is too slow to send its request: say so, then close. */
        static const char msg[] = "{\"error\":{\"code\":\"request_timeout\",\"message\":\"the "
                                  "request was not received in time\",\"field\":null}}";
        c->close_after = 1;
        c->handling = 1;
        c->req.conn = c;
        server_respond(&c->req, 408, "application/json", NULL, msg, sizeof msg - 1);
        return;
    }
    conn_close(c);
}

static void conn_timer(server_conn_t *c, int mode) {
    server_t *s = c->srv;
    unsigned ms = 0;
    if (mode == c->timer_mode) {
        return; /* header deadlines and body windows run on, not restarted per read */
    }
    c->timer_mode = mode;
    unsigned repeat = 0;
    switch (mode) {
    case TM_IDLE:
        ms = s->o.idle_timeout_ms;
        break;
    case TM_HEAD:
        ms = s->o.header_timeout_ms;
        break;
    case TM_BODY:
        ms = repeat = s->o.header_timeout_ms;
        c->rx_mark = c->rx;
        break;
    case TM_LINGER:
        ms = SERVER_LINGER_MS;
        break;
    case TM_WRITE:
        ms = s->o.idle_timeout_ms;
        break;
    default:
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, conn_on_timer, ms, repeat);
}

/* ---------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------- */

static void conn_on_shutdown(uv_shutdown_t *req, int status) {
    (void)status;
    server_conn_t *c = req->data;
    c->writes--;
    conn_maybe_free(c);
}

/* Closing right after the answer would reset the connection if the client is
 * still sending (a body we refused, pipelined requests), and a reset can destroy
 * the answer before the client reads it. So: send FIN, then read and discard until
 * the client closes too, for at most SERVER_LINGER_MS. */
static void conn_linger(server_conn_t *c) {
    if (c->lingering || c->closing) {
        return;
    }
    if (c->srv->stopping) {
        conn_close(c);
        return;
    }
    c->lingering = 1;
    c->shut.data = c;
    if (uv_shutdown(&c->shut, &c->io.stream, conn_on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    c->writes++; /* the shutdown request holds the struct like a write */
    c->npending = 0;
    conn_timer(c, TM_LINGER);
    uv_read_start(&c->io.stream, conn_on_alloc, conn_on_read);
}

static void conn_on_write(uv_write_t *w, int status) {
    server_write_t *sw = (server_write_t *)w;
    server_conn_t *c = sw->c;
    free(sw->buf);
    free(sw->body);
    free(sw);
    c->writes--;
    if (status < 0) {
        conn_close(c);
    } else if (c->close_after && c->writes == 0) {
        conn_linger(c);
    } else if (c->wq_blocked && c->io.stream.write_queue_size < SERVER_WQ_MAX / 2 && !c->closing) {
        c->wq_blocked = 0;
        conn_timer(c, TM_NONE);
        if (!c->handling && !c->in_process) {
            conn_process(c);
        }
    }
    conn_maybe_free(c);
}

/* Writes 'buf' and then 'body' (body_len bytes; NULL for none), taking both. */
static void conn_write2(server_conn_t *c, char *buf, size_t len, char *body, size_t body_len) {
    uv_buf_t b[2] = {uv_buf_init(buf, (unsigned)len), uv_buf_init(body, (unsigned)body_len)};
    unsigned nb = body ? 2 : 1;
    if (!c->close_after) {
        /* Most answers fit in the socket's buffer: write them now. A completed
         * uv_write re-arms the socket in epoll (one epoll_ctl an answer, strace
         * on the package endpoint); uv_try_write needs no request and no
         * callback, and refuses (UV_EAGAIN) while earlier writes are queued, so
         * the order holds. What it could not write goes through uv_write; on an
         * error uv_write reports it through conn_on_write as before. A closing
         * answer always takes uv_write, whose callback lingers and closes. */
        int n = uv_try_write(&c->io.stream, b, nb);
        if (n > 0 && (size_t)n == len + body_len) {
            free(buf);
            free(body);
            return;
        }
        if (n > 0) {
            size_t done = (size_t)n;
            if (done >= len) {
                b[0] = uv_buf_init(body + (done - len), (unsigned)(body_len - (done - len)));
                nb = 1;
            } else {
                b[0] = uv_buf_init(buf + done, (unsigned)(len - done));
            }
        }
    }
    server_write_t *sw = xmalloc(sizeof *sw);
    sw->c = c;
    sw->buf = buf;
    sw->body = body;
    if (uv_write(&sw->w, &c->io.stream, b, nb, conn_on_write) != 0) {
        free(buf);
        free(body);
        free(sw);
        conn_close(c);
        return;
    }
    c->writes++;
}

static void conn_write(server_conn_t *c, char *buf, size_t len) {
    conn_write2(c, buf, len, NULL, 0);
}

/* Bodies up to this size are copied behind the head (one buffer, one allocation);
 * larger ones that the caller hands over go out as a second buffer of the same
 * write, uncopied. */
#define SERVER_COPY_BODY_MAX 2048

static void server_new_rid(server_t *s, char out[static 17]);

/* Sends the head and the body; frees 'take' (may be NULL) when done with it. */
static void respond(api_req_t *req, int status, const char *content_type, const char *headers,
                    const char *body, size_t body_len, char *take) {
    server_conn_t *c = req->conn;
    server_t *s = c->srv;
    req->status = status;
    if (req->id[0] == '\0') {
        /* An answer before the headers were complete (a 408 for a request that
         * stopped half-way) has no id yet: every answer gets one, never an
         * empty header. */
        server_new_rid(s, req->id);
    }
    if (!c->closing) {
        httpd_req_t *h = req->http;
        int keep = h && h->keep_alive && !c->close_after && !s->stopping;
        int nobody = status == 204 || status == 304 || (h && h->method == HTTPD_HEAD);
        int copy = take == NULL || body_len <= SERVER_COPY_BODY_MAX;
        const char *ctype = content_type ? content_type : "application/json";
        /* The head is put together piece by piece, not with snprintf: on the
         * package endpoint glibc's printf was a tenth of huiqid's instructions.
         * 256 bytes hold a usual head; a copied body gets room too. */
        sbuf_t out;
        sbuf_init(&out, 256 + (copy ? body_len : 0));
        sbuf_addl(&out, "HTTP/1.1 ");
        sbuf_addu(&out, (uint64_t)status);
        sbuf_addl(&out, " ");
        sbuf_adds(&out, httpd_status_text(status));
        sbuf_addl(&out, "\r\nDate: ");
        sbuf_adds(&out, server_date(s));
        sbuf_addl(&out, "\r\nServer: huiqi\r\nX-Request-Id: ");
        sbuf_adds(&out, req->id);
        sbuf_addl(&out, "\r\n");
        if (!keep) {
            sbuf_addl(&out, "Connection: close\r\n");
        }
        if (status != 204 && status != 304) {
            sbuf_addl(&out, "Content-Type: ");
            sbuf_adds(&out, ctype);
            sbuf_addl(&out, "\r\nContent-Length: ");
            sbuf_addu(&out, body_len);
            sbuf_addl(&out, "\r\n");
        }
        if (headers) {
            sbuf_adds(&out, headers);
        }
        sbuf_addl(&out, "\r\n");
        if (!keep) {
            c->close_after = 1;
        }
        if (nobody || body_len == 0) {
            conn_write(c, out.p, out.len);
        } else if (copy) {
            sbuf_add(&out, body, body_len);
            conn_write(c, out.p, out.len);
        } else {
            conn_write2(c, out.p, out.len, take, body_len);
            take = NULL;
        }
    }
    free(take);
    /* Only now: the app's done callback releases what it attached to the request,
     * which may own 'headers' or 'body' (a refusal's header lives in its access
     * state), so they are copied into the answer first. */
    if (s->cbs.on_done && req->path) {
        s->cbs.on_done(s->app, req, body_len);
    }
    c->handling = 0;
    c->head_done = 0;
    c->body_paused = 0;
    conn_free_req(c);
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    httpd_next(c->http);
    if (c->close_after) {
        uv_read_stop(&c->io.stream);
        conn_timer(c, TM_NONE);
        return;
    }
    if (!c->in_process) {
        conn_process(c);
    }
}

void server_respond(api_req_t *req, int status, const char *content_type, const char *headers,
                    const char *body, size_t body_len) {
    respond(req, status, content_type, headers, body, body_len, NULL);
}

void server_respond_take(api_req_t *req, int status, const char *content_type, const char *headers,
                         char *body_take, size_t body_len) {
    respond(req, status, content_type, headers, body_take, body_len, body_take);
}

/* ---------------------------------------------------------------------------
 * Reading and parsing
 * ------------------------------------------------------------------------- */

/* A new request id: 16 hex digits of the next number of the server's sequence,
 * spread by a golden-ratio multiply. Written by hand: snprintf's "%016llx" was
 * 4% of a package request's instructions (callgrind, bench/gate_http.sh). */
static void server_new_rid(server_t *s, char out[static 17]) {
    static const char digits[] = "0123456789abcdef";
    uint64_t v = s->rid_base + s->rid_seq++ * UINT64_C(0x9e3779b97f4a7c15);
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[v & 15];
        v >>= 4;
    }
    out[16] = '\0';
}

static int conn_on_head(void *arg, httpd_req_t *h) {
    server_conn_t *c = arg;
    server_t *s = c->srv;
    api_req_t *r = &c->req;
    r->http = h;
    r->conn = c;
    r->start_ns = uv_hrtime();
    if (server_rid_ok(h->request_id)) {
        /* server_rid_ok bounds the length below sizeof r->id. */
        memcpy(r->id, h->request_id, strlen(h->request_id) + 1);
    } else {
        server_new_rid(s, r->id);
    }
    if (httpd_split_target(h, &r->path, &r->query) != 0) {
        return 400;
    }
    c->head_done = 1;
    int st = s->cbs.on_head(s->app, r);
    if (st == 0 && h->expect_continue && h->content_length != 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write(c, xmemdup(cont, sizeof cont - 1), sizeof cont - 1);
    }
    return st;
}

static int conn_on_body(void *arg, httpd_req_t *h, const char *p, size_t n) {
    (void)h;
    server_conn_t *c = arg;
    server_t *s = c->srv;
    if (s->cbs.on_body == NULL) {
        return 501;
    }
    return s->cbs.on_body(s->app, &c->req, p, n);
}

void server_close_after(api_req_t *req) {
    req->conn->close_after = 1;
}

void server_pause_body(api_req_t *req) {
    server_conn_t *c = req->conn;
    if (c->closing) {
        return;
    }
    if (c->body_paused++) {
        return;
    }
    uv_read_stop(&c->io.stream);
    /* The stall is ours, not the client's: no body timeout meanwhile. */
    conn_timer(c, TM_NONE);
}

void server_resume_body(api_req_t *req) {
    server_conn_t *c = req->conn;
    if (!c->body_paused || --c->body_paused) {
        return;
    }
    if (c->closing || c->handling || c->close_after || c->in_process) {
        return;
    }
    if (c->npending) {
        conn_process(c);
        return;
    }
    conn_timer(c, TM_BODY);
    uv_read_start(&c->io.stream, conn_on_alloc, conn_on_read);
}

static void conn_fail(server_conn_t *c) {
    const char *reason = NULL;
    int status = httpd_error(c->http, &reason);
    if (status == 0) {
        status = 400;
    }
    const char *code = status == 413   ? "body_too_large"
                       : status == 401 ? "unauthorized"
                       : status == 403 ? "forbidden"
                       : status == 429 ? "rate_limited"
                       : status == 503 ? "unavailable"
                       : status == 414 ? "uri_too_long"
                       : status == 431 ? "headers_too_large"
                       : status == 505 ? "http_version_not_supported"
                       : status == 417 ? "expectation_failed"
                                       : "bad_request";
    char body[512];
    char esc[256];
    size_t k = 0;
    const char *rs = reason ? reason : httpd_status_text(status);
    if (c->head_done && c->req.refuse_msg) {
        rs = c->req.refuse_msg;
    }
    for (size_t i = 0; rs[i] && k + 2 < sizeof esc; i++) {
        char ch = rs[i];
        if (ch == '"' || ch == '\\') {
            esc[k++] = '\\';
        }
        esc[k++] = (ch >= 0x20 && ch < 0x7f) ? ch : ' ';
    }
    esc[k] = '\0';
    int n = snprintf(body, sizeof body,
                     "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"field\":null}}", code, esc);
    c->close_after = 1;
    c->handling = 1;
    if (!c->head_done) {
        c->req.http = NULL;
        server_new_rid(c->srv, c->req.id);
    }
    c->req.conn = c;
    char hdr[sizeof c->req.refuse_hdr];
    snprintf(hdr, sizeof hdr, "%s", c->head_done ? c->req.refuse_hdr : "");
    server_respond(&c->req, status, "application/json", hdr[0] ? hdr : NULL, body, (size_t)n);
}

/* Parses buffered bytes until a request is complete or they run out. */
static void conn_process(server_conn_t *c) {
    c->in_process = 1;
    if (c->io.stream.write_queue_size > SERVER_WQ_MAX && !c->closing && !c->close_after) {
        c->wq_blocked = 1;
    }
    while (!c->closing && !c->handling && !c->close_after && !c->body_paused && !c->wq_blocked &&
           c->npending) {
        size_t used = 0;
        int rc = httpd_feed(c->http, c->pending, c->npending, &used);
        if (rc < 0) {
            c->npending = 0;
            conn_fail(c);
            break;
        }
        memmove(c->pending, c->pending + used, c->npending - used);
        c->npending -= used;
        if (rc == HTTPD_MORE) {
            break;
        }
        c->handling = 1;
        conn_timer(c, TM_NONE);
        c->srv->cbs.on_request(c->srv->app, &c->req);
        if (c->io.stream.write_queue_size > SERVER_WQ_MAX && !c->closing && !c->close_after) {
            c->wq_blocked = 1;
        }
    }
    c->in_process = 0;
    if (c->closing || c->close_after) {
        return;
    }
    if (c->wq_blocked && !c->handling) {
        uv_read_stop(&c->io.stream);
        conn_timer(c, TM_WRITE);
        return;
    }
    if (c->handling || c->body_paused) {
        /* Backpressure: no reading while the app holds a request or asked us to
         * wait with a streamed body. */
        uv_read_stop(&c->io.stream);
        return;
    }
    conn_timer(c, httpd_in_request(c->http) ? (c->head_done ? TM_BODY : TM_HEAD) : TM_IDLE);
    uv_read_start(&c->io.stream, conn_on_alloc, conn_on_read);
}

static void conn_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void)hint;
    server_conn_t *c = h->data;
    buf->base = c->srv->rbuf;
    buf->len = SERVER_RBUF;
}

static void conn_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    server_conn_t *c = st->data;
    if (n < 0) {
        /* EOF or error. A peer that goes away mid-request loses its request; one
         * whose request is being handled gets its response dropped. */
        conn_close(c);
        return;
    }
    if (n == 0 || c->closing || c->lingering) {
        return; /* a lingering connection's bytes are dropped */
    }
    c->rx += (uint64_t)n;
    /* Parse straight from the shared buffer; only the unparsed tail is copied. */
    const char *p = buf->base;
    size_t len = (size_t)n;
    if (c->npending == 0) {
        c->in_process = 1;
        size_t used = 0;
        int rc = httpd_feed(c->http, p, len, &used);
        c->in_process = 0;
        if (rc < 0) {
            conn_fail(c);
            return;
        }
        p += used;
        len -= used;
        if (rc == HTTPD_DONE) {
            if (len) {
                c->pending = xrealloc(c->pending, len);
                memcpy(c->pending, p, len);
                c->npending = len;
            }
            c->handling = 1;
            conn_timer(c, TM_NONE);
            c->in_process = 1;
            c->srv->cbs.on_request(c->srv->app, &c->req);
            c->in_process = 0;
            if (c->handling) {
                /* The handler went to Redis: no reading until it answers (a peer's
                 * EOF now would drop the answer it waits for). Stopping only here,
                 * not before every request, saves the two epoll_ctl calls a stop
                 * and a restart cost when the answer was immediate (strace: 2 a
                 * request on the package endpoint, one of them failing EEXIST). */
                if (!c->closing) {
                    uv_read_stop(&c->io.stream);
                }
            } else if (!c->closing && !c->close_after) {
                conn_process(c);
            }
            return;
        }
        if (!c->body_paused) {
            conn_timer(c, httpd_in_request(c->http) ? (c->head_done ? TM_BODY : TM_HEAD) : TM_IDLE);
        }
        return;
    }
    c->pending = xrealloc(c->pending, c->npending + len);
    memcpy(c->pending + c->npending, p, len);
    c->npending += len;
    conn_process(c);
}

/* ---------------------------------------------------------------------------
 * Accepting
 * ------------------------------------------------------------------------- */

static void server_on_reject_close(uv_handle_t *h) {
    free(h);
}

/* A connection struct with its timer, linked in and counted; the caller inits
 * c->io and then calls conn_start (or conn_close when that fails). */
static server_conn_t *conn_new(server_t *s) {
    server_conn_t *c = xcalloc(1, sizeof *c);
    c->srv = s;
    uv_timer_init(s->loop, &c->timer);
    c->timer.data = c;
    c->handles = 2;
    s->structs++;
    c->next = s->head.next;
    c->prev = &s->head;
    s->head.next->prev = c;
    s->head.next = c;
    s->nconns++;
    return c;
}

static void conn_start(server_conn_t *c) {
    c->io.handle.data = c;
    c->http = httpd_new(&c->srv->hcbs, c);
    conn_timer(c, TM_IDLE);
    uv_read_start(&c->io.stream, conn_on_alloc, conn_on_read);
}

static void server_on_connection(uv_stream_t *l, int status) {
    server_t *s = l->data;
    if (status < 0 || s->stopping) {
        return;
    }
    if (s->nconns >= s->o.max_conns) {
        /* Over the cap: accept and close at once, so the backlog does not fill
         * with connections nobody will serve. */
        uv_tcp_t *t = xmalloc(sizeof *t);
        uv_tcp_init(s->loop, t);
        uv_accept(l, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, server_on_reject_close);
        return;
    }
    server_conn_t *c = conn_new(s);
    uv_tcp_init(s->loop, &c->io.tcp);
    c->io.handle.data = c;
    if (uv_accept(l, &c->io.stream) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->io.tcp, 1);
    conn_start(c);
}

int server_adopt_fd(server_t *s, int fd) {
    if (s->stopping) {
        return UV_ECANCELED;
    }
    if (s->nconns >= s->o.max_conns) {
        return UV_EMFILE;
    }
    server_conn_t *c = conn_new(s);
    uv_pipe_init(s->loop, &c->io.pipe, 0);
    c->io.handle.data = c;
    int rc = uv_pipe_open(&c->io.pipe, fd);
    if (rc != 0) {
        /* The pipe never took the descriptor, so closing it leaves 'fd' to the
         * caller, as the header promises. */
        conn_close(c);
        return rc;
    }
    conn_start(c);
    return 0;
}

static void server_on_failed_close(uv_handle_t *h) {
    free(h->data);
}

int server_start(uv_loop_t *loop, const server_opts_t *opts, const server_cbs_t *cbs, void *app,
                 server_t **out) {
    server_t *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->o = *opts;
    snprintf(s->host, sizeof s->host, "%s", opts->host);
    s->o.host = s->host;
    s->cbs = *cbs;
    s->app = app;
    s->hcbs.on_head = conn_on_head;
    s->hcbs.on_body = conn_on_body;
    s->head.next = s->head.prev = &s->head;
    uv_random(NULL, NULL, &s->rid_base, sizeof s->rid_base, 0, NULL);
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(s->host, opts->port, (struct sockaddr_in *)&addr);
    if (rc != 0) {
        rc = uv_ip6_addr(s->host, opts->port, (struct sockaddr_in6 *)&addr);
    }
    if (rc == 0) {
        uv_tcp_init(loop, &s->listener);
        s->listener.data = s;
        rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
        if (rc == 0) {
            rc = uv_listen((uv_stream_t *)&s->listener, 1024, server_on_connection);
        }
        if (rc != 0) {
            /* The listener lives inside 's': free both once the close completes. */
            uv_close((uv_handle_t *)&s->listener, server_on_failed_close);
            return rc;
        }
    }
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void server_on_listener_close(uv_handle_t *h) {
    server_release(h->data);
}

void server_stop(server_t *s, void (*done)(void *), void *arg) {
    s->stopping = 1;
    s->done = done;
    s->done_arg = arg;
    s->open = 1 + (int)s->structs;
    /* Every connection struct, open or already closing, decrements 'open' when it
     * is freed; the listener does when it closes. */
    server_conn_t *c = s->head.next;
    while (c != &s->head) {
        server_conn_t *next = c->next;
        conn_close(c);
        c = next;
    }
    uv_close((uv_handle_t *)&s->listener, server_on_listener_close);
}

int server_port(const server_t *s) {
    struct sockaddr_storage addr;
    int len = sizeof addr;
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&addr, &len) != 0) {
        return -1;
    }
    if (addr.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&addr)->sin_port);
    }
    return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
}

unsigned server_conns(const server_t *s) {
    return s->nconns;
}
