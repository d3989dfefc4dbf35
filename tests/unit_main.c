/* The unit test runner: runs every test in tests/test_list.h, or those whose name
 * contains the first argument, each in a forked child so a crash fails one test
 * rather than the run. Prints "N passed, N failed" last; exits non-zero on failure.
 * Built a second time with -DUNIT_LIST='"tests/link_list.h"' as build/link_test,
 * the runner of the Redis link tests (tests/test_link.c), which need a redis-server
 * and the store's sources and so are kept out of the pure unit binary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef UNIT_LIST
#define UNIT_LIST "tests/test_list.h"
#endif

#define TEST(name) int test_##name(void);
#include UNIT_LIST
#undef TEST

typedef struct unit_test {
    const char *name;
    int (*fn)(void);
} unit_test_t;

static const unit_test_t unit_tests[] = {
#define TEST(name) {#name, test_##name},
#include UNIT_LIST
#undef TEST
};

static int unit_run_one(const unit_test_t *t, int fork_each) {
    if (!fork_each) {
        return t->fn();
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        /* exit, not _exit: LeakSanitizer checks at exit, per test. */
        exit(t->fn() ? 1 : 0);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) < 0) {
        perror("waitpid");
        return 1;
    }
    if (WIFSIGNALED(st)) {
        fprintf(stderr, "  killed by signal %d\n", WTERMSIG(st));
        return 1;
    }
    return WEXITSTATUS(st) != 0;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    /* UNIT_NOFORK=1 runs in-process, which debuggers and leak checkers prefer. */
    int fork_each = getenv("UNIT_NOFORK") == NULL;
    int passed = 0;
    int failed = 0;
    for (size_t i = 0; i < sizeof unit_tests / sizeof unit_tests[0]; i++) {
        const unit_test_t *t = &unit_tests[i];
        if (filter && strstr(t->name, filter) == NULL) {
            continue;
        }
        int rc = unit_run_one(t, fork_each);
        printf("%s %s\n", rc ? "FAIL" : "ok  ", t->name);
        fflush(stdout);
        if (rc) {
            failed++;
        } else {
            passed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
