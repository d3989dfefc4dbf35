/* libcurl multi on libuv; see http.h and curl's docs/examples/multi-uv.c for the
 * pattern, hardened as shared/reliability.md section 3 describes. */
#include "push/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/xalloc.h"

#define PUSHHTTP_MAX_RESPONSE (64 * 1024) /* bytes of a response we read */

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    pushhttp_t *h;
} sock_ctx_t;

typedef struct xfer {
    struct xfer *prev, *next; /* transfers in flight, for aborting at close */
    pushhttp_t *h;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    pushhttp_cb cb;
    void *arg;
    uint64_t start_ns;
    size_t received;
    int blocked;
    int64_t retry_after;
    char errbuf[CURL_ERROR_SIZE];
} xfer_t;

struct pushhttp {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    ssrf_policy_t policy;
    unsigned inflight;
    xfer_t head; /* circular list of transfers in flight */
    int closing;
    int open_handles;
    sock_ctx_t **by_fd; /* socket context per file descriptor */
    size_t nby_fd;
    void (*done)(void *);
    void *done_arg;
};

int pushhttp_global_init(void) {
    /* curl allocates through the x*alloc wrappers, so that out of memory inside it
     * aborts like everywhere else instead of surfacing as a transfer error (or as a
     * NULL in a path that does not expect one). */
    CURLcode rc =
        curl_global_init_mem(CURL_GLOBAL_DEFAULT, xmalloc, free, xrealloc, xstrdup, xcalloc);
    return rc == CURLE_OK ? 0 : -EIO;
}

void pushhttp_global_cleanup(void) {
    curl_global_cleanup();
}

/* ---------------------------------------------------------------------------
 * Sockets and timer
 * ------------------------------------------------------------------------- */

static void http_check_done(pushhttp_t *h);

static void http_on_poll(uv_poll_t *p, int status, int events) {
    sock_ctx_t *s = p->data;
    int flags = 0;
    if (status < 0) {
        /* libuv reports POLLERR as an error status: let curl see it. */
        flags = CURL_CSELECT_ERR;
    } else {
        flags |= (events & UV_READABLE) ? CURL_CSELECT_IN : 0;
        flags |= (events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0;
    }
    pushhttp_t *h = s->h;
    int running;
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    http_check_done(h);
}

static void http_on_sock_close(uv_handle_t *hd) {
    sock_ctx_t *s = hd->data;
    pushhttp_t *h = s->h;
    free(s);
    if (--h->open_handles == 0 && h->closing) {
        void (*done)(void *) = h->done;
        void *arg = h->done_arg;
        free(h->by_fd);
        free(h);
        if (done) {
            done(arg);
        }
    }
}

static void http_forget_socket(pushhttp_t *h, curl_socket_t fd) {
    if (fd >= 0 && (size_t)fd < h->nby_fd && h->by_fd[fd]) {
        sock_ctx_t *s = h->by_fd[fd];
        h->by_fd[fd] = NULL;
        curl_multi_assign(h->multi, fd, NULL);
        /* Stop polling before the descriptor is closed and possibly reused (libuv
         * must never see two poll handles on one fd). */
        uv_poll_stop(&s->poll);
        uv_close((uv_handle_t *)&s->poll, http_on_sock_close);
    }
}

static int http_on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp) {
    (void)e;
    (void)sockp;
    pushhttp_t *h = userp;
    if (what == CURL_POLL_REMOVE) {
        http_forget_socket(h, fd);
        return 0;
    }
    if (fd < 0) {
        return -1;
    }
    if ((size_t)fd >= h->nby_fd) {
        size_t n = h->nby_fd ? h->nby_fd : 64;
        while (n <= (size_t)fd) {
            n *= 2;
        }
        h->by_fd = xreallocarray(h->by_fd, n, sizeof *h->by_fd);
        memset(h->by_fd + h->nby_fd, 0, (n - h->nby_fd) * sizeof *h->by_fd);
        h->nby_fd = n;
    }
    sock_ctx_t *s = h->by_fd[fd];
    if (s == NULL) {
        s = xcalloc(1, sizeof *s);
        s->fd = fd;
        s->h = h;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        h->open_handles++;
        h->by_fd[fd] = s;
        curl_multi_assign(h->multi, fd, s);
    }
    int ev = 0;
    ev |= (what & CURL_POLL_IN) ? UV_READABLE : 0;
    ev |= (what & CURL_POLL_OUT) ? UV_WRITABLE : 0;
    uv_poll_start(&s->poll, ev, http_on_poll);
    return 0;
}

static void http_on_timer(uv_timer_t *t) {
    pushhttp_t *h = t->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    http_check_done(h);
}

static int http_on_timerfunc(CURLM *m, long ms, void *userp) {
    (void)m;
    pushhttp_t *h = userp;
    if (ms < 0) {
        uv_timer_stop(&h->timer);
    } else {
        /* Never call curl from inside this callback: 0 becomes a 1 ms timer. */
        uv_timer_start(&h->timer, http_on_timer, ms ? (uint64_t)ms : 1, 0);
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Per-transfer callbacks
 * ------------------------------------------------------------------------- */

static curl_socket_t http_open_socket(void *clientp, curlsocktype purpose,
                                      struct curl_sockaddr *addr) {
    xfer_t *x = clientp;
    if (purpose != CURLSOCKTYPE_IPCXN || !ssrf_addr_allowed(&x->h->policy, &addr->addr)) {
        /* Checked here, on the address actually about to be used, so a DNS
         * answer cannot switch to a private address after a first check. */
        x->blocked = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

static int http_close_socket(void *clientp, curl_socket_t fd) {
    pushhttp_t *h = clientp;
    http_forget_socket(h, fd);
    return close(fd);
}

static size_t http_on_write(char *p, size_t size, size_t nmemb, void *userp) {
    (void)p;
    xfer_t *x = userp;
    size_t n = size * nmemb;
    x->received += n;
    /* Returning less than n aborts the transfer: a receiver cannot make us read
     * an endless body. */
    return x->received > PUSHHTTP_MAX_RESPONSE ? 0 : n;
}

static size_t http_on_header(char *p, size_t size, size_t nmemb, void *userp) {
    xfer_t *x = userp;
    size_t n = size * nmemb;
    if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char buf[64];
        size_t k = n - 12 < sizeof buf - 1 ? n - 12 : sizeof buf - 1;
        memcpy(buf, p + 12, k);
        buf[k] = '\0';
        char *end = NULL;
        long long v = strtoll(buf, &end, 10);
        /* Only the delta-seconds form: an HTTP date from a receiver's clock is not
         * worth trusting more than our own schedule. */
        if (end != buf && v >= 0 && v <= 7 * 86400) {
            x->retry_after = v;
        }
    }
    return n;
}

static void xfer_unlink(xfer_t *x) {
    x->prev->next = x->next;
    x->next->prev = x->prev;
}

static void xfer_free(xfer_t *x) {
    curl_slist_free_all(x->headers);
    free(x->body);
    free(x);
}

static void http_check_done(pushhttp_t *h) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        CURL *e = msg->easy_handle;
        CURLcode code = msg->data.result; /* copy before the handle goes */
        xfer_t *x = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        pushhttp_result_t r = {0};
        r.retry_after_s = x->retry_after;
        r.latency_ms = (double)(uv_hrtime() - x->start_ns) / 1e6;
        if (code == CURLE_OK) {
            r.outcome = PUSHHTTP_OK;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
        } else if (x->blocked) {
            r.outcome = PUSHHTTP_BLOCKED;
            snprintf(r.error, sizeof r.error, "the receiver's address is not allowed");
        } else if (code == CURLE_OPERATION_TIMEDOUT) {
            r.outcome = PUSHHTTP_TIMEOUT;
            snprintf(r.error, sizeof r.error, "timed out");
        } else if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
                   code == CURLE_RECV_ERROR || code == CURLE_SEND_ERROR ||
                   code == CURLE_GOT_NOTHING) {
            r.outcome = PUSHHTTP_CONNECT;
            snprintf(r.error, sizeof r.error, "%.150s",
                     x->errbuf[0] ? x->errbuf : curl_easy_strerror(code));
        } else if (code == CURLE_WRITE_ERROR && x->received > PUSHHTTP_MAX_RESPONSE) {
            /* The answer arrived; only its body was too long to read. */
            r.outcome = PUSHHTTP_OK;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
        } else {
            r.outcome = PUSHHTTP_ERROR;
            snprintf(r.error, sizeof r.error, "%.150s",
                     x->errbuf[0] ? x->errbuf : curl_easy_strerror(code));
        }
        curl_multi_remove_handle(h->multi, e);
        curl_easy_cleanup(e);
        h->inflight--;
        xfer_unlink(x);
        pushhttp_cb cb = x->cb;
        void *arg = x->arg;
        xfer_free(x);
        cb(arg, &r);
    }
}

/* ---------------------------------------------------------------------------
 * Public API
 * ------------------------------------------------------------------------- */

pushhttp_t *pushhttp_new(uv_loop_t *loop, const ssrf_policy_t *policy) {
    pushhttp_t *h = xcalloc(1, sizeof *h);
    h->loop = loop;
    h->policy = *policy;
    h->multi = curl_multi_init();
    if (h->multi == NULL) {
        free(h);
        return NULL;
    }
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->open_handles = 1;
    h->head.next = h->head.prev = &h->head;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_on_timerfunc);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 512L);
    return h;
}

int pushhttp_post(pushhttp_t *h, const char *url, const char *const *headers, unsigned nheaders,
                  const char *body, size_t len, unsigned timeout_ms, pushhttp_cb cb, void *arg) {
    if (h->closing) {
        return -EINVAL;
    }
    CURL *e = curl_easy_init();
    if (e == NULL) {
        return -ENOMEM;
    }
    xfer_t *x = xcalloc(1, sizeof *x);
    x->h = h;
    x->easy = e;
    x->cb = cb;
    x->arg = arg;
    x->retry_after = -1;
    x->body = xmemdup(body, len);
    for (unsigned i = 0; i < nheaders; i++) {
        x->headers = curl_slist_append(x->headers, headers[i]);
    }
    x->headers = curl_slist_append(x->headers, "Content-Type: application/json");
    x->headers = curl_slist_append(x->headers, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* a 3xx is a failed delivery */
    curl_easy_setopt(e, CURLOPT_PROXY, "");          /* ignore *_proxy environment variables */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 5000 ? timeout_ms : 5000));
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "huiqi-webhooks/1");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, http_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, http_close_socket);
    /* The connection may outlive this transfer in curl's cache and be closed
     * by a later one or by curl_multi_cleanup: its close callback gets the
     * client, which lives until then, never the transfer. */
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    x->start_ns = uv_hrtime();
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        xfer_free(x);
        return -ENOMEM;
    }
    x->prev = h->head.prev;
    x->next = &h->head;
    h->head.prev->next = x;
    h->head.prev = x;
    h->inflight++;
    return 0;
}

unsigned pushhttp_inflight(const pushhttp_t *h) {
    return h->inflight;
}

static void http_on_timer_close(uv_handle_t *hd) {
    pushhttp_t *h = hd->data;
    if (--h->open_handles == 0) {
        void (*done)(void *) = h->done;
        void *arg = h->done_arg;
        free(h->by_fd);
        free(h);
        if (done) {
            done(arg);
        }
    }
}

void pushhttp_close(pushhttp_t *h, void (*done)(void *), void *arg) {
    h->closing = 1;
    h->done = done;
    h->done_arg = arg;
    /* Abort what is in flight; each callback learns it failed. */
    while (h->head.next != &h->head) {
        xfer_t *x = h->head.next;
        xfer_unlink(x);
        curl_multi_remove_handle(h->multi, x->easy);
        curl_easy_cleanup(x->easy);
        h->inflight--;
        pushhttp_result_t r = {.outcome = PUSHHTTP_ERROR, .retry_after_s = -1};
        snprintf(r.error, sizeof r.error, "the service is stopping");
        pushhttp_cb cb = x->cb;
        void *cbarg = x->arg;
        xfer_free(x);
        cb(cbarg, &r);
    }
    curl_multi_cleanup(h->multi);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, http_on_timer_close);
}
