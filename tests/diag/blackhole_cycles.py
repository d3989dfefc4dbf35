"""Measurement for checklist A2 (a diagnostic, not part of make test; HUIQID=path to use another build): huiqid (--redis-timeout
1000) against tests_faults.Blackhole until >= 200 connections were accepted (two links,
so >= 100 reconnect cycles each); fd count and RSS sampled along the way; then SIGTERM
(exit code 0 means uv_loop_close() == 0)."""
import os, subprocess, sys, time
import os
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
HUIQID = os.environ.get("HUIQID", os.path.join(ROOT, "build", "huiqid"))
from harness import free_port
import tests_faults as tf
bh = tf.Blackhole()
hp = free_port()
p = subprocess.Popen([HUIQID, "--listen", "127.0.0.1:%d" % hp, "--redis", "127.0.0.1:%d" % bh.port,
                      "--redis-timeout", "1000", "--log-level", "warn"], stdout=subprocess.DEVNULL,
                     stderr=open(os.devnull, "w"))
t0 = time.monotonic(); samples = []
while bh.accepted < 200 and time.monotonic() - t0 < 400:
    time.sleep(5)
    fds = len(os.listdir("/proc/%d/fd" % p.pid))
    rss = int(open("/proc/%d/statm" % p.pid).read().split()[1]) * 4096
    samples.append((time.monotonic() - t0, bh.accepted, fds, rss, bh.open_conns()))
for s in samples[::4] + [samples[-1]]:
    print("t=%5.1fs accepted %3d fds %d rss %.2f MB open-at-blackhole %d" % (s[0], s[1], s[2], s[3] / 2**20, s[4]))
after10 = [s for s in samples if s[0] >= 10]
print("fds min/max after 10 s: %d/%d; RSS %.2f -> %.2f MB" % (min(s[2] for s in after10), max(s[2] for s in after10), after10[0][3] / 2**20, samples[-1][3] / 2**20))
p.terminate(); print("exit code after SIGTERM:", p.wait(10)); bh.close()
