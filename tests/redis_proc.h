/* A private redis-server for C tests: started on a free 127.0.0.1 port in a fresh
 * temporary directory (no persistence), ready once it answers PING (polled, bounded),
 * and killed with its process if the test dies (PR_SET_PDEATHSIG). */
#ifndef HUIQI_TESTS_REDIS_PROC_H
#define HUIQI_TESTS_REDIS_PROC_H

#include <sys/types.h>

typedef struct test_redis {
    pid_t pid;
    int port;
    char dir[64];
} test_redis_t;

/* Starts redis-server and waits (at most 10 s) until it answers PING. Returns 0, or a
 * negative errno with the reason on stderr (nothing is left running then). */
int test_redis_start(test_redis_t *r);

/* Stops it (SIGTERM, then SIGKILL after 5 s), reaps it and removes its directory. */
void test_redis_stop(test_redis_t *r);

#endif
