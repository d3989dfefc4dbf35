/* Outgoing webhook requests: libcurl's multi interface driven by the libuv loop
 * (one uv_poll_t per socket, one uv_timer_t for curl's timeouts), so thousands of
 * deliveries share one thread and never block it. Every transfer is locked down
 * for user-supplied URLs: http and https only, no redirects, no proxy from the
 * environment, a hard timeout, a capped response, and the resolved address of
 * every connection checked against the SSRF policy before the socket exists. The
 * only file that includes curl. */
#ifndef HUIQI_PUSH_HTTP_H
#define HUIQI_PUSH_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "push/ssrf.h"

typedef struct pushhttp pushhttp_t;

enum {
    PUSHHTTP_OK = 0,  /* an HTTP answer arrived (any status) */
    PUSHHTTP_TIMEOUT, /* no complete answer in time */
    PUSHHTTP_CONNECT, /* connection refused or reset, DNS failure */
    PUSHHTTP_BLOCKED, /* the address is not allowed (SSRF policy) */
    PUSHHTTP_ERROR,   /* anything else */
};

typedef struct pushhttp_result {
    int outcome; /* PUSHHTTP_* */
    long status; /* HTTP status when outcome is OK */
    double latency_ms;
    int64_t retry_after_s; /* from a Retry-After header (seconds), or -1 */
    char error[160];       /* a short reason when not OK */
} pushhttp_result_t;

typedef void (*pushhttp_cb)(void *arg, const pushhttp_result_t *r);

/* Once per process, before any other call (curl_global_init_mem: curl allocates
 * through the x*alloc wrappers, which abort on out-of-memory). 0 or -EIO. */
int pushhttp_global_init(void);
void pushhttp_global_cleanup(void);

/* A client on 'loop' enforcing 'policy' (copied). NULL on failure. */
pushhttp_t *pushhttp_new(uv_loop_t *loop, const ssrf_policy_t *policy);
/* POSTs 'body' to 'url' with 'headers' ("Name: value", copied). Returns 0 (then
 * 'cb' runs exactly once, never inside this call) or -ENOMEM/-EINVAL. */
int pushhttp_post(pushhttp_t *h, const char *url, const char *const *headers, unsigned nheaders,
                  const char *body, size_t len, unsigned timeout_ms, pushhttp_cb cb, void *arg);
unsigned pushhttp_inflight(const pushhttp_t *h);
/* Aborts transfers in flight (their callbacks run with PUSHHTTP_ERROR), closes the
 * handles, then calls done(arg). */
void pushhttp_close(pushhttp_t *h, void (*done)(void *), void *arg);

#endif
