/* netshim: an LD_PRELOAD shim for the webhook address-policy tests (reliability
 * checklist C12). getaddrinfo() answers host names from the file named by
 * $HUIQI_NETSHIM_HOSTS (lines "name addr[,addr...]", read again on every call, so
 * a test can change an answer between two lookups, as DNS rebinding does) and
 * refuses every other name that is not a numeric address or "localhost", so no
 * DNS query leaves the machine. connect() to anything but loopback or a local
 * socket fails with ENETUNREACH before any packet is sent. Every answer and every
 * refusal is a line in $HUIQI_NETSHIM_LOG. Whatever the service's own policy
 * does, nothing it does can reach another host. Test-only: built as
 * build/tests/netshim.so, never linked into huiqid. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define NS_MAX_ADDRS 8

typedef int (*ns_gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
typedef int (*ns_connect_fn)(int, const struct sockaddr *, socklen_t);

/* Appends the line "what a b" to the log (one write, so lines from threads never
 * mix). */
static void ns_log(const char *what, const char *a, const char *b) {
    const char *path = getenv("HUIQI_NETSHIM_LOG");
    if (path == NULL) {
        return;
    }
    char line[600];
    int n = snprintf(line, sizeof line, "%s %s %s\n", what, a, b);
    if (n <= 0) {
        return;
    }
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, line, len);
        (void)w;
        close(fd);
    }
}

__attribute__((constructor)) static void ns_loaded(void) {
    char pid[24];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    ns_log("loaded", pid, "-");
}

static int ns_numeric(const char *node) {
    unsigned char buf[16];
    return inet_pton(AF_INET, node, buf) == 1 || inet_pton(AF_INET6, node, buf) == 1;
}

/* The answer listed for 'node' ("a,b,c"), or 0 when it has none. */
static int ns_lookup(const char *node, char *out, size_t outlen) {
    const char *path = getenv("HUIQI_NETSHIM_HOSTS");
    FILE *f = path ? fopen(path, "re") : NULL;
    if (f == NULL) {
        return 0;
    }
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char name[256], addrs[256];
        if (sscanf(line, "%255s %255s", name, addrs) == 2 && strcasecmp(name, node) == 0) {
            snprintf(out, outlen, "%s", addrs);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

/* One result node laid out as glibc lays out its own (the address right after the
 * struct, in one allocation), so the real freeaddrinfo() frees it. */
static struct addrinfo *ns_node(const char *addr, unsigned port, const struct addrinfo *hints) {
    struct sockaddr_in6 in6;
    struct sockaddr_in in4;
    memset(&in6, 0, sizeof in6);
    memset(&in4, 0, sizeof in4);
    int family;
    size_t len;
    if (inet_pton(AF_INET, addr, &in4.sin_addr) == 1) {
        family = AF_INET;
        in4.sin_family = AF_INET;
        in4.sin_port = htons((unsigned short)port);
        len = sizeof in4;
    } else if (inet_pton(AF_INET6, addr, &in6.sin6_addr) == 1) {
        family = AF_INET6;
        in6.sin6_family = AF_INET6;
        in6.sin6_port = htons((unsigned short)port);
        len = sizeof in6;
    } else {
        return NULL;
    }
    if (hints && hints->ai_family != AF_UNSPEC && hints->ai_family != family) {
        return NULL;
    }
    struct addrinfo *ai = calloc(1, sizeof *ai + sizeof in6);
    if (ai == NULL) {
        return NULL;
    }
    ai->ai_family = family;
    ai->ai_socktype = hints && hints->ai_socktype ? hints->ai_socktype : SOCK_STREAM;
    ai->ai_protocol = hints && hints->ai_protocol ? hints->ai_protocol : IPPROTO_TCP;
    ai->ai_addrlen = (socklen_t)len;
    ai->ai_addr = (struct sockaddr *)(void *)(ai + 1);
    memcpy(ai->ai_addr, family == AF_INET ? (const void *)&in4 : (const void *)&in6, len);
    return ai;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
    ns_gai_fn real = (ns_gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (node == NULL || ns_numeric(node) || strcasecmp(node, "localhost") == 0) {
        return real ? real(node, service, hints, res) : EAI_FAIL;
    }
    char addrs[256];
    if (!ns_lookup(node, addrs, sizeof addrs)) {
        ns_log("refuse-resolve", node, "-");
        return EAI_NONAME;
    }
    char shown[256];
    snprintf(shown, sizeof shown, "%s", addrs);
    unsigned port = service ? (unsigned)strtoul(service, NULL, 10) : 0;
    struct addrinfo *head = NULL, **tail = &head;
    char *save = NULL;
    int n = 0;
    for (char *a = strtok_r(addrs, ",", &save); a && n < NS_MAX_ADDRS;
         a = strtok_r(NULL, ",", &save)) {
        struct addrinfo *ai = ns_node(a, port, hints);
        if (ai) {
            *tail = ai;
            tail = &ai->ai_next;
            n++;
        }
    }
    ns_log("resolve", node, shown);
    if (head == NULL) {
        return EAI_NONAME;
    }
    *res = head;
    return 0;
}

/* Whether a connection to 'sa' stays on this machine. */
static int ns_local(const struct sockaddr *sa) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa->sa_family == AF_UNIX) {
        return 1;
    }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const unsigned char *b = in6->sin6_addr.s6_addr;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (memcmp(b, mapped, 12) == 0 && b[12] == 127);
    }
    return 0;
}

int connect(int fd, const struct sockaddr *sa, socklen_t len) {
    if (sa == NULL || ns_local(sa)) {
        ns_connect_fn real = (ns_connect_fn)dlsym(RTLD_NEXT, "connect");
        return real ? real(fd, sa, len) : (errno = ENOSYS, -1);
    }
    char host[INET6_ADDRSTRLEN] = "?";
    char port[8] = "0";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(port, sizeof port, "%u", ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(port, sizeof port, "%u", ntohs(in6->sin6_port));
    }
    ns_log("refuse-connect", host, port);
    errno = ENETUNREACH;
    return -1;
}
