"""Process and HTTP plumbing for the huiqi integration tests (stdlib only).

Every test builds its own Env: a private redis-server (AOF on, RDB off) in a temp
directory and a huiqid pointed at it, both on free loopback ports. Every wait is a
bounded poll on a condition; every process we start is stopped by its own PID.
"""

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

# Every Env created during the current test, so the runner can stop what is left,
# print log tails on failure and remove temp dirs.
ENVS = []

# --------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------


class TestFailure(AssertionError):
    pass


def check(cond, msg, *args):
    if not cond:
        raise TestFailure(msg % args if args else msg)


def eq(actual, expected, what):
    if actual != expected:
        raise TestFailure("%s: expected %r, got %r" % (what, expected, actual))


def wait_until(cond, timeout, what, interval=0.02):
    """Polls cond() until it returns a true value (returned) or the time is up."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, http.client.HTTPException, ValueError) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.1fs waiting for %s%s" % (
                timeout, what, " (last error: %r)" % (last_exc,) if last_exc else ""))
        time.sleep(interval)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# --------------------------------------------------------------------------
# Unified social credit codes (GB 32100-2015)
# --------------------------------------------------------------------------

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
WUXI_DISTRICTS = ("320205", "320206", "320211", "320213", "320214", "320281", "320282")


def uscc_check_char(first17):
    s = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - s % 31) % 31]


def make_uscc(region="320214", kind="91", org=None, rng=None):
    """A valid code: kind (2 chars) + region (6 digits) + org (9 chars) + check."""
    if org is None:
        r = rng or random
        org = "".join(r.choice(USCC_ALPHABET) for _ in range(9))
    body = kind + region + org
    assert len(body) == 17, body
    return body + uscc_check_char(body)


def wrong_check(uscc):
    """The same code with a wrong check character (and the right one)."""
    right = uscc[17]
    bad = USCC_ALPHABET[(USCC_ALPHABET.index(right) + 1) % 31]
    return uscc[:17] + bad, right


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


class Resp:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers  # lower-cased name -> value
        self.raw = raw
        self._json = None
        self._parsed = False

    @property
    def json(self):
        if not self._parsed:
            self._parsed = True
            try:
                self._json = json.loads(self.raw.decode("utf-8")) if self.raw else None
            except ValueError:
                self._json = None
        return self._json

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        body = self.raw[:300].decode("utf-8", "replace")
        return "<%d %s>" % (self.status, body)


# The admin key every test huiqid is started with (HUIQI_ADMIN_KEY), so that raw
# requests can carry it too. Format: hq_<12 of [a-z0-9]>_<32 of [A-Za-z0-9]>.
TEST_ADMIN_KEY = "hq_itadmin00001_TestAdminSecret0123456789abcdefX"
AUTH = b"Authorization: Bearer " + TEST_ADMIN_KEY.encode() + b"\r\n"


class Client:
    """A keep-alive HTTP/1.1 client on one connection (reopened when closed). Sends
    'key' as a bearer token unless the request sets its own Authorization."""

    def __init__(self, host, port, timeout=30, keepalive=True, key=None):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.keepalive = keepalive
        self.key = key
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None, content_type="application/json"):
        hdrs = dict(headers or {})
        if self.key and not any(k.lower() == "authorization" for k in hdrs):
            hdrs["Authorization"] = "Bearer " + self.key
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        data = None
        if body is not None:
            if isinstance(body, (bytes, bytearray)):
                data = bytes(body)
            elif isinstance(body, str):
                data = body.encode("utf-8")
            else:
                data = json.dumps(body).encode("utf-8")
            if content_type is not None and not any(k.lower() == "content-type" for k in hdrs):
                hdrs["Content-Type"] = content_type
        if not self.keepalive:
            hdrs.setdefault("Connection", "close")
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=data, headers=hdrs)
            r = self.conn.getresponse()
            raw = r.read()
        except Exception:
            self.close()
            raise
        headers_out = {k.lower(): v for k, v in r.getheaders()}
        if r.will_close or not self.keepalive:
            self.close()
        return Resp(r.status, headers_out, raw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def raw_exchange(port, data, timeout=5.0, chunks=None):
    """Sends raw bytes (or a list of chunks) on a fresh connection and reads until the
    server closes or 'timeout' passes. Returns (bytes, closed) where closed is "eof"
    (recv returned b''), "reset" or False (still open at the deadline)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        for piece in (chunks if chunks is not None else [data]):
            s.sendall(piece)
        buf = b""
        closed = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                got = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = "reset"
                break
            if not got:
                closed = "eof"
                break
            buf += got
        return buf, closed
    finally:
        s.close()


def read_until_closed(s, timeout):
    """Reads from socket 's' until EOF (returns (data, True)) or until 'timeout'
    passes (returns (data, False)). A reset counts as closed."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        s.settimeout(left)
        try:
            got = s.recv(65536)
        except socket.timeout:
            return data, False
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not got:
            return data, True
        data += got


def parse_head(head):
    """The status and the headers (lower-cased names) of a response head: the bytes
    before its blank line."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


def parse_responses(buf):
    """Splits a byte stream into HTTP responses: list of (status, headers, body)."""
    out = []
    while buf:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            break
        status, headers = parse_head(buf[:end])
        n = int(headers.get("content-length", "0"))
        body = buf[end + 4:end + 4 + n]
        out.append((status, headers, body))
        buf = buf[end + 4 + n:]
    return out


# --------------------------------------------------------------------------
# Redis (raw RESP, enough for PING / SHUTDOWN / a few reads)
# --------------------------------------------------------------------------


def resp_command(port, *args, timeout=2.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")
        return _resp_read(f)
    finally:
        s.close()


def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        return RuntimeError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if t == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_resp_read(f) for _ in range(n)]
    raise ConnectionError("bad RESP reply %r" % line)


# --------------------------------------------------------------------------
# The environment: Redis + huiqid
# --------------------------------------------------------------------------


class Options:
    def __init__(self, huiqid, sanitized=False, verbose=False):
        self.huiqid = os.path.abspath(huiqid)
        self.sanitized = sanitized
        self.verbose = verbose
        self.slow = 4.0 if sanitized else 1.0  # timeout multiplier
        # Whether the shared per-test client reuses its connection. The runner
        # probes this once (see probe_keepalive) so that a broken keep-alive fails
        # the keep-alive tests instead of stalling every other test.
        self.keepalive = True


class Env:
    """One Redis and one huiqid. Use as a context manager; stop problems (non-zero
    exit, sanitizer reports) are raised as TestFailure from __exit__."""

    def __init__(self, opts, huiqid_args=(), start=True, start_huiqid=True,
                 appendfsync="everysec"):
        self.opts = opts
        # Tests that kill -9 Redis and then count acknowledged writes use "always":
        # with "everysec" Redis postpones its AOF write while a slow fsync is still
        # running, yet replies, so a crash in that window may lose up to 2 s of
        # acknowledged writes (the documented trade-off in docs/operations.md).
        self.appendfsync = appendfsync
        self.dir = tempfile.mkdtemp(prefix="huiqi-it-")
        self.redis_port = free_port()
        self.redis_proc = None
        self.huiqid_proc = None
        self.huiqid_port = None
        self.huiqid_args = list(huiqid_args)
        self.problems = []
        self.problems_reported = False
        self.starts = 0
        self.client = None
        self.log_paths = []
        ENVS.append(self)
        if start:
            self.start_redis()
            if start_huiqid:
                self.start_huiqid()

    # ---- context manager ----

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.close()
        if et is None and self.problems:
            self.problems_reported = True
            raise TestFailure("; ".join(self.problems))
        return False

    def close(self):
        if self.client:
            self.client.close()
        if self.huiqid_proc is not None:
            self.stop_huiqid()
        if self.redis_proc is not None:
            self.shutdown_redis()

    def cleanup_dir(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- Redis ----

    def start_redis(self):
        """Starts redis-server (AOF on, fsync as self.appendfsync) on self.redis_port. The
        first start may move to another free port if someone took this one."""
        first = not getattr(self, "redis_started", False) and self.starts == 0
        for attempt in range(3):
            log_path = os.path.join(self.dir, "redis.log")
            log = open(log_path, "ab")
            cmd = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                   "--dir", self.dir, "--save", "", "--appendonly", "yes",
                   "--appendfsync", self.appendfsync, "--daemonize", "no"]
            self.redis_proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL)
            log.close()
            proc = self.redis_proc

            def ready():
                if proc.poll() is not None:
                    raise TestFailure("redis-server exited with %s (see redis.log)" %
                                      proc.returncode)
                return resp_command(self.redis_port, "PING", timeout=0.5) == "PONG"

            try:
                wait_until(ready, 10, "redis-server to answer PING")
                self.redis_started = True
                return
            except TestFailure:
                with open(log_path, "rb") as f:
                    in_use = b"Address already in use" in f.read()
                self.redis_proc = None
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
                if not (first and in_use and attempt < 2):
                    raise
                self.redis_port = free_port()

    def redis(self, *args):
        return resp_command(self.redis_port, *args)

    def kill_redis(self):
        """SIGKILL: no chance to flush."""
        p = self.redis_proc
        self.redis_proc = None
        if p is None:
            return
        p.kill()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def shutdown_redis(self):
        """Clean stop: SHUTDOWN (fsyncs the AOF), then wait for the PID."""
        p = self.redis_proc
        self.redis_proc = None
        if p is None:
            return
        if p.poll() is None:
            try:
                resp_command(self.redis_port, "SHUTDOWN", timeout=5)
            except (OSError, ConnectionError):
                pass  # it closes the connection as it exits
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)

    # ---- huiqid ----

    def start_huiqid(self, extra_args=None, wait_ready=True, port=None):
        """Starts huiqid; waits for /readyz 200 unless wait_ready is False."""
        self.starts += 1
        self.huiqid_port = port or free_port()
        args = self.huiqid_args if extra_args is None else list(extra_args)
        cmd = [self.opts.huiqid, "--listen", "127.0.0.1:%d" % self.huiqid_port,
               "--redis", "127.0.0.1:%d" % self.redis_port] + args
        out_path = os.path.join(self.dir, "huiqid.%d.out" % self.starts)
        err_path = os.path.join(self.dir, "huiqid.%d.err" % self.starts)
        self.log_paths += [err_path, out_path]
        env = dict(os.environ)
        env.setdefault("HUIQI_ADMIN_KEY", TEST_ADMIN_KEY)
        env.update(getattr(self, "huiqid_env", {}))
        if self.opts.sanitized:
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            self.huiqid_proc = subprocess.Popen(cmd, stdout=out, stderr=err,
                                                stdin=subprocess.DEVNULL, env=env)
        self.huiqid_err_path = err_path
        self.client = self.new_client()
        if wait_ready:
            try:
                self.wait_ready()
            except TestFailure:
                # Someone else took the port between free_port() and our bind: retry
                # once on another one.
                if (port is None and self.huiqid_proc.poll() is not None and
                        "cannot listen" in self.huiqid_stderr() and
                        not getattr(self, "_port_retry", False)):
                    self._port_retry = True
                    self.huiqid_proc = None
                    return self.start_huiqid(extra_args, wait_ready, None)
                raise
        return self.huiqid_proc

    def new_client(self, key=TEST_ADMIN_KEY, keepalive=None):
        """A client of this huiqid sending 'key' (None: no key)."""
        return Client("127.0.0.1", self.huiqid_port, timeout=30 * self.opts.slow,
                      keepalive=self.opts.keepalive if keepalive is None else keepalive,
                      key=key)

    def wait_ready(self, timeout=15):
        proc = self.huiqid_proc

        def ready():
            if proc.poll() is not None:
                raise TestFailure("huiqid exited with %s before it was ready" % proc.returncode)
            c = Client("127.0.0.1", self.huiqid_port, timeout=2)
            try:
                return c.get("/readyz").status == 200
            finally:
                c.close()

        wait_until(ready, timeout * self.opts.slow, "huiqid /readyz to answer 200")

    def assert_alive(self, what):
        """Raises when huiqid has exited (naming the signal that killed it)."""
        p = self.huiqid_proc
        if p is None or p.poll() is None:
            return
        rc = p.returncode
        how = "exit code %d" % rc
        if rc < 0:
            try:
                how = "signal %s" % signal.Signals(-rc).name
            except ValueError:
                how = "signal %d" % -rc
        raise TestFailure("huiqid died (%s) %s" % (how, what))

    def readyz_status(self):
        c = Client("127.0.0.1", self.huiqid_port, timeout=5 * self.opts.slow)
        try:
            r = c.get("/readyz")
            return r
        finally:
            c.close()

    def sanitizer_report(self, path=None):
        path = path or self.huiqid_err_path
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return None
        for m in SANITIZER_MARKERS:
            if m in text:
                i = text.find(m)
                return text[max(0, i - 200):i + 1500]
        return None

    def stop_huiqid(self, expect_code=0, sig=signal.SIGTERM):
        """SIGTERM, bounded wait, exit code check, sanitizer check. Problems are
        recorded (and returned) rather than raised, so cleanup always completes."""
        p = self.huiqid_proc
        self.huiqid_proc = None
        if self.client:
            self.client.close()
        if p is None:
            return []
        found = []
        if p.poll() is None:
            p.send_signal(sig)
        else:
            found.append("huiqid had already exited with %s before it was stopped" %
                         p.returncode)
        try:
            rc = p.wait(timeout=10 * self.opts.slow)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
            rc = None
            found.append("huiqid did not exit within %.0fs of %s" % (
                10 * self.opts.slow, signal.Signals(sig).name))
        if rc is not None and expect_code is not None and rc != expect_code:
            found.append("huiqid exited with %s after %s (expected %s)" % (
                rc, signal.Signals(sig).name, expect_code))
        rep = self.sanitizer_report()
        if rep:
            found.append("sanitizer report in huiqid stderr:\n" + rep)
        self.problems += found
        return found

    def wait_huiqid_exit(self, timeout=15):
        """For a huiqid expected to exit by itself; returns its exit code."""
        p = self.huiqid_proc
        try:
            rc = p.wait(timeout=timeout * self.opts.slow)
        except subprocess.TimeoutExpired:
            return None
        self.huiqid_proc = None
        rep = self.sanitizer_report()
        if rep:
            self.problems.append("sanitizer report in huiqid stderr:\n" + rep)
        return rc

    def huiqid_stderr(self):
        try:
            with open(self.huiqid_err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=40):
        out = []
        for path in self.log_paths + [os.path.join(self.dir, "redis.log")]:
            n = lines if "huiqid" in os.path.basename(path) else min(lines, 8)
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            if not text.strip():
                continue
            tail = text.splitlines()[-n:]
            out.append("--- %s (last %d lines) ---\n%s" % (os.path.basename(path), len(tail),
                                                          "\n".join(tail)))
        return "\n".join(out)

    # ---- convenience ----

    @property
    def c(self):
        return self.client


def probe_keepalive(port, timeout=2.0):
    """True when a second request, sent after the first response on the same
    connection, is answered within 'timeout'."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        req = b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n"
        for _ in range(2):
            s.sendall(req)
            buf = b""
            while b'{"status":"ok"}' not in buf:
                try:
                    got = s.recv(4096)
                except (socket.timeout, OSError):
                    return False
                if not got:
                    return False
                buf += got
        return True
    finally:
        s.close()
