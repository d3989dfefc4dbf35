/* hiredis <-> libuv adapter; see redis_uv.h. */
#include "store/redis_uv.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/xalloc.h"

#define REDIS_UV_KEEP_OBUF (64 * 1024) /* an emptied output buffer larger than this is let go */

typedef struct redis_uv {
    uv_poll_t poll;
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    int events;
} redis_uv_t;

static void redis_uv_add_read(void *data);

/* Writes what hiredis has queued, trimming its buffer in place (sdsrange allocates
 * nothing). hiredis 0.14's redisBufferWrite replaces a fully written buffer with
 * sdsempty() and reads its length unchecked, so out of memory there is a NULL
 * dereference; written from here, the buffer never reaches that point. A large
 * emptied buffer (after a bulk import) is still replaced, but only when the new
 * one could be had. Returns true when hiredis should now handle the event itself:
 * it then finds nothing to write (and stops watching for writability), or meets
 * the socket error again and drops the connection, or completes a connect. False
 * while the socket is full. */
static bool redis_uv_flush(redis_uv_t *p) {
    redisContext *c = &p->ac->c;
    if (!(c->flags & REDIS_CONNECTED) || c->err || c->obuf == NULL) {
        return true;
    }
    while (sdslen(c->obuf) > 0) {
        ssize_t n = write(c->fd, c->obuf, sdslen(c->obuf));
        if (n > 0) {
            sdsrange(c->obuf, (int)n, -1);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* What hiredis does after a partial write: keep both directions. */
            redis_uv_add_read(p);
            return false;
        } else {
            return true;
        }
    }
    if (sdsavail(c->obuf) > REDIS_UV_KEEP_OBUF) {
        sds fresh = sdsempty();
        if (fresh != NULL) {
            sdsfree(c->obuf);
            c->obuf = fresh;
        }
    }
    return true;
}

static void redis_uv_on_poll(uv_poll_t *h, int status, int events) {
    redis_uv_t *p = h->data;
    /* On a poll error (POLLERR/POLLHUP surface as status < 0) act as if every
     * watched event fired: hiredis's read or write then meets the error and runs
     * its disconnect path, failing every pending callback. */
    int ev = status < 0 ? p->events : events;
    if (p->ac != NULL && (ev & UV_READABLE)) {
        redisAsyncHandleRead(p->ac);
        /* hiredis reads 16 KiB a call. Under load replies arrive faster than one
         * read per loop turn drains them (256 clients, 1.5 KiB documents: Redis
         * round trips grew to 25 ms with Redis 80% idle), so keep reading while
         * the socket has bytes, up to 1 MiB a turn to stay fair to the clients. */
        for (int i = 0; i < 63 && p->ac != NULL; i++) {
            int avail = 0;
            if (ioctl(p->ac->c.fd, FIONREAD, &avail) != 0 || avail <= 0) {
                break;
            }
            redisAsyncHandleRead(p->ac);
        }
    }
    /* The read may have freed the context (cleanup clears p->ac). */
    if (p->ac != NULL && (ev & UV_WRITABLE) && redis_uv_flush(p)) {
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
