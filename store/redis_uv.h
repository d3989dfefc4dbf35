/* Module-internal: our own hiredis <-> libuv adapter. Debian's hiredis 0.14.1
 * adapter ignores poll errors (a reset connection then never reports, see
 * shared/reliability.md H1) and leaks on a failed attach; this one hands poll
 * errors to hiredis as readiness so hiredis sees the error itself, re-checks the
 * context between read and write (H2), and frees its handle only in the close
 * callback. */
#ifndef HUIQI_STORE_REDIS_UV_H
#define HUIQI_STORE_REDIS_UV_H

#include <uv.h>

#include <hiredis/async.h>

/* Attaches 'ac' to 'loop'. Returns 0, -EEXIST when already attached, or a libuv
 * error (nothing is attached then). */
int store__redis_uv_attach(uv_loop_t *loop, redisAsyncContext *ac);

#endif
