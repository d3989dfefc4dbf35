/* Controls of the in-memory fake store (store/fake.c), which replaces the Redis
 * store in the fuzz build only. Everything else it offers is store.h. */
#ifndef HUIQI_STORE_FAKE_H
#define HUIQI_STORE_FAKE_H

#include <stddef.h>

#include "store/store.h"

/* Drops every record and restarts the id counters, as if Redis had come back
 * empty: writes answer -EAGAIN until STORE_EV_READY has been delivered (from the
 * loop, like every callback). Gives each fuzz input the same starting point. */
void store_fake_reset(store_t *s);

/* Completions queued and not yet run: 0 when the store has nothing in flight. */
size_t store_fake_pending(const store_t *s);

#endif
