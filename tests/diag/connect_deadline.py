"""Measurement for checklist A2's connect deadline (a diagnostic, not part of make test; HUIQID=path to use another build): a
loopback listener with a full accept queue (SYNs dropped, connect() never completes);
huiqid pointed at it; every 20 ms `ss` lists huiqid's sockets to that port, and the
lifetime of each local port is one connect attempt."""
import os, socket, subprocess, sys, time
import os
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
HUIQID = os.environ.get("HUIQID", os.path.join(ROOT, "build", "huiqid"))
from harness import free_port
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(0)
port = lst.getsockname()[1]
fill = []
for _ in range(4):
    s = socket.socket(); s.setblocking(False)
    try: s.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    fill.append(s)
time.sleep(0.5)
hp = free_port()
p = subprocess.Popen([HUIQID, "--listen", "127.0.0.1:%d" % hp, "--redis", "127.0.0.1:%d" % port,
                      "--log-level", "warn"], stdout=subprocess.DEVNULL, stderr=open(os.devnull, "w"),
                     env=dict(os.environ, HUIQI_ADMIN_KEY="x"*0 or os.environ.get("HUIQI_ADMIN_KEY", "")))
seen = {}
t0 = time.monotonic()
mypid = str(p.pid)
while time.monotonic() - t0 < 12:
    out = subprocess.run(["ss", "-tanp", "dst", "127.0.0.1:%d" % port], capture_output=True, text=True).stdout
    now = time.monotonic() - t0
    for line in out.splitlines()[1:]:
        if "pid=%s," % mypid not in line: continue
        f = line.split()
        st, local = f[0], f[3]
        d = seen.setdefault(local, [now, now, set()])
        d[1] = now; d[2].add(st)
    time.sleep(0.02)
fds = len(os.listdir("/proc/%d/fd" % p.pid))
p.terminate(); rc = p.wait(10)
life = sorted((v[0], v[1] - v[0], sorted(v[2])) for v in seen.values())
full = [l for s, l, st in life if s > 0.5 and s + l < 11.5]
print("attempts seen: %d; states %s" % (len(life), sorted({x for _, _, st in life for x in st})))
for s, l, st in life: print("  start %.2fs lifetime %.2fs %s" % (s, l, st))
if full: print("connect deadline: min %.2fs max %.2fs median %.2fs over %d whole attempts" % (min(full), max(full), sorted(full)[len(full)//2], len(full)))
print("fds at the end", fds, "exit code", rc)
