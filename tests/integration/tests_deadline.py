"""Reliability checklist A2, the connect deadline: huiqid pointed at an address
whose connects never complete (a loopback listener with a full accept queue drops
the SYNs, so connect() stays in SYN-SENT) must give up on each attempt after its
connect deadline (1,000 ms, store/store.c) and try again, while answering HTTP.
Sockets are read from /proc/net/tcp (no ss needed), matched to huiqid by inode."""
import os
import socket
import time

from harness import Env, check, eq

CONNECT_DEADLINE_S = 1.0
SYN_SENT = "02"


def huiqid_syn_sent(pid, port):
    """Local ports of huiqid's sockets in SYN-SENT towards 127.0.0.1:port."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    out = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            x = line.split()
            local, remote, st, inode = x[1], x[2], x[3], x[9]
            if st == SYN_SENT and inode in inodes and int(remote.split(":")[1], 16) == port:
                out.add(int(local.split(":")[1], 16))
    return out


def test_redis_connect_deadline(o):
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fill = []
    try:
        # Fill the accept queue: later SYNs are dropped.
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fill.append(s)
        time.sleep(0.3)  # let the handshakes settle before huiqid's first SYN
        with Env(o, start=False) as env:
            env.redis_port = port
            env.start_huiqid(wait_ready=False)
            pid = env.huiqid_proc.pid
            seen = {}  # local port -> [first seen, last seen]
            t0 = time.monotonic()
            window = 6.0 * o.slow
            while time.monotonic() - t0 < window:
                env.assert_alive("while its Redis connects never complete")
                now = time.monotonic() - t0
                for lp in huiqid_syn_sent(pid, port):
                    seen.setdefault(lp, [now, now])[1] = now
                time.sleep(0.02)
            r = env.readyz_status()
            eq(r.status, 503, "/readyz while Redis cannot be reached")
            eq(env.new_client(key=None).get("/healthz").status, 200, "/healthz")
            # Whole attempts: seen start and end inside the window.
            whole = sorted(b - a for a, b in seen.values() if b < window - 0.3)
            check(len(whole) >= 3, "only %d connect attempts ended in %.0f s: %r (is the "
                  "connect deadline applied?)", len(whole), window, seen)
            bound = CONNECT_DEADLINE_S + 0.25 * o.slow
            check(max(whole) <= bound, "a connect attempt lived %.2f s (deadline %.1f s, "
                  "bound %.2f s): %r", max(whole), CONNECT_DEADLINE_S, bound, whole)
            check(min(whole) >= CONNECT_DEADLINE_S * 0.5, "an attempt gave up after %.2f s, "
                  "well before the deadline: %r", min(whole), whole)
    finally:
        for s in fill:
            s.close()
        lst.close()
