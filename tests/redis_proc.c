/* A private redis-server for C tests; see redis_proc.h. */
#include "tests/redis_proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#define REDIS_PROC_READY_MS 10000
#define REDIS_PROC_STOP_MS  5000

static long long redis_proc_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void redis_proc_nap(void) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* A port the kernel just handed out for 127.0.0.1. Another process may take it
 * before redis-server binds it; the caller then retries with a new one. */
static int redis_proc_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -errno;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int rc = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        rc = -errno;
    }
    close(fd);
    return rc ? rc : ntohs(a.sin_port);
}

static int redis_proc_pings(int port) {
    struct timeval tv = {0, 200 * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int ok = c != NULL && !c->err;
    if (ok) {
        redisReply *r = redisCommand(c, "PING");
        ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r) {
            freeReplyObject(r);
        }
    }
    if (c) {
        redisFree(c);
    }
    return ok;
}

static void redis_proc_exec(const test_redis_t *r, pid_t parent) {
    /* Die with the test, so a crashed test leaves no server behind. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(127);
    }
    char port[16], log[96];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", r->dir,
           "--save", "", "--appendonly", "no", "--daemonize", "no", (char *)NULL);
    _exit(127);
}

/* Waits until the server answers PING (0), exits (-EADDRINUSE, worth another port)
 * or the deadline passes (-ETIMEDOUT). */
static int redis_proc_wait_ready(test_redis_t *r) {
    long long deadline = redis_proc_now_ms() + REDIS_PROC_READY_MS;
    while (redis_proc_now_ms() < deadline) {
        int st;
        if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
            r->pid = 0;
            return -EADDRINUSE;
        }
        if (redis_proc_pings(r->port)) {
            return 0;
        }
        redis_proc_nap();
    }
    return -ETIMEDOUT;
}

int test_redis_start(test_redis_t *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/huiqi-redis-XXXXXX");
    if (mkdtemp(r->dir) == NULL) {
        int e = errno;
        fprintf(stderr, "  mkdtemp: %s\n", strerror(e));
        return -e;
    }
    int rc = -EADDRINUSE;
    for (int attempt = 0; attempt < 3 && rc == -EADDRINUSE; attempt++) {
        r->port = redis_proc_free_port();
        if (r->port < 0) {
            rc = r->port;
            break;
        }
        pid_t parent = getpid();
        fflush(NULL);
        r->pid = fork();
        if (r->pid < 0) {
            rc = -errno;
            r->pid = 0;
            break;
        }
        if (r->pid == 0) {
            redis_proc_exec(r, parent);
        }
        rc = redis_proc_wait_ready(r);
    }
    if (rc != 0) {
        fprintf(stderr, "  redis-server did not come up (%s); see %s/redis.log\n", strerror(-rc),
                r->dir);
        if (r->pid > 0) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, NULL, 0);
            r->pid = 0;
        }
    }
    return rc;
}

void test_redis_stop(test_redis_t *r) {
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        long long deadline = redis_proc_now_ms() + REDIS_PROC_STOP_MS;
        while (waitpid(r->pid, NULL, WNOHANG) == 0) {
            if (redis_proc_now_ms() >= deadline) {
                kill(r->pid, SIGKILL);
                waitpid(r->pid, NULL, 0);
                break;
            }
            redis_proc_nap();
        }
        r->pid = 0;
    }
    if (r->dir[0]) {
        char log[96];
        snprintf(log, sizeof log, "%s/redis.log", r->dir);
        unlink(log);
        rmdir(r->dir);
        r->dir[0] = '\0';
    }
}
