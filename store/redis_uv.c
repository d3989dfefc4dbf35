/* hiredis <-> libuv adapter; see redis_uv.h. */
#include "store/redis_uv.h"

#include <errno.h>
#include <stdlib.h>

#include "common/xalloc.h"

typedef struct redis_uv {
    uv_poll_t poll;
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    int events;
} redis_uv_t;

static void redis_uv_on_poll(uv_poll_t *h, int status, int events) {
    redis_uv_t *p = h->data;
    /* On a poll error (POLLERR/POLLHUP surface as status < 0) act as if every
     * watched event fired: hiredis's read or write then meets the error and runs
     * its disconnect path, failing every pending callback. */
    int ev = status < 0 ? p->events : events;
    if (p->ac != NULL && (ev & UV_READABLE)) {
        redisAsyncHandleRead(p->ac);
    }
    /* The read may have freed the context (cleanup clears p->ac). */
    if (p->ac != NULL && (ev & UV_WRITABLE)) {
        redisAsyncHandleWrite(p->ac);
    }
}

static void redis_uv_update(redis_uv_t *p, int events) {
    if (events == p->events) {
        return;
    }
    p->events = events;
    if (events) {
        uv_poll_start(&p->poll, events, redis_uv_on_poll);
    } else {
        uv_poll_stop(&p->poll);
    }
}

static void redis_uv_add_read(void *data) {
    redis_uv_t *p = data;
    redis_uv_update(p, p->events | UV_READABLE);
}

static void redis_uv_del_read(void *data) {
    redis_uv_t *p = data;
    redis_uv_update(p, p->events & ~UV_READABLE);
}

static void redis_uv_add_write(void *data) {
    redis_uv_t *p = data;
    redis_uv_update(p, p->events | UV_WRITABLE);
}

static void redis_uv_del_write(void *data) {
    redis_uv_t *p = data;
    redis_uv_update(p, p->events & ~UV_WRITABLE);
}

static void redis_uv_on_close(uv_handle_t *h) {
    free(h->data);
}

static void redis_uv_cleanup(void *data) {
    redis_uv_t *p = data;
    /* hiredis closes the socket right after this returns, so stop polling now;
     * the handle memory goes in the close callback. */
    p->ac = NULL;
    uv_poll_stop(&p->poll);
    uv_close((uv_handle_t *)&p->poll, redis_uv_on_close);
}

int store__redis_uv_attach(uv_loop_t *loop, redisAsyncContext *ac) {
    if (ac->ev.data != NULL) {
        return -EEXIST;
    }
    redis_uv_t *p = xcalloc(1, sizeof *p);
    int rc = uv_poll_init_socket(loop, &p->poll, ac->c.fd);
    if (rc != 0) {
        free(p);
        return rc;
    }
    p->poll.data = p;
    p->ac = ac;
    ac->ev.addRead = redis_uv_add_read;
    ac->ev.delRead = redis_uv_del_read;
    ac->ev.addWrite = redis_uv_add_write;
    ac->ev.delWrite = redis_uv_del_write;
    ac->ev.cleanup = redis_uv_cleanup;
    ac->ev.data = p;
    return 0;
}
