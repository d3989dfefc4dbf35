"""A webhook receiver for the tests: an HTTP/1.1 server on 127.0.0.1 (asyncio, in
a thread of its own, fast enough for tens of thousands of deliveries) that
verifies Standard Webhooks signatures, counts deliveries by webhook-id, keeps the
bodies, and can be told to fail for a while (a status, a delay, a timeout, or
dropping the connection)."""

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time


def sign_v1(secret, msg_id, ts, body):
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, b"%s.%s.%s" % (msg_id.encode(), ts.encode(), body), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(secrets, headers, body, tolerance=300):
    msg_id = headers.get("webhook-id", "")
    ts = headers.get("webhook-timestamp", "")
    sig = headers.get("webhook-signature", "")
    if not msg_id or not ts or not sig:
        return False
    try:
        if abs(time.time() - int(ts)) > tolerance:
            return False
    except ValueError:
        return False
    given = sig.split(" ")
    for s in secrets:
        want = sign_v1(s, msg_id, ts, body)
        if any(hmac.compare_digest(want, g) for g in given):
            return True
    return False


def _same_but_timestamp(a, b):
    """Whether two JSON bodies differ at most in their top-level "timestamp"."""
    try:
        x, y = json.loads(a), json.loads(b)
    except ValueError:
        return False
    if not isinstance(x, dict) or not isinstance(y, dict):
        return False
    x.pop("timestamp", None)
    y.pop("timestamp", None)
    return x == y


_REASONS = {200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found",
            400: "Bad Request", 404: "Not Found", 410: "Gone", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


class Receiver:
    """Counts what it accepted (2xx answered, signature valid) in by_id; records
    every request that reached it in 'arrivals' (time, webhook-id, what happened:
    "ok", the failure status, "drop", "sleep" or "badsig"), whatever the answer.
    Faults: fail() answers a status (count times, or until recover()); drop closes
    the connection without an answer; sleep_fault holds the request that long and
    then closes it unanswered (longer than huiqid's timeout: a timeout); delay is a
    slow but successful receiver. keep_raw keeps (time, headers, body) of every
    request. A repeat of an id is accepted and counted again; body_changed lists
    ids that came again with different bytes (a retry must send the same body),
    ts_changed those whose bodies differed only in "timestamp"."""

    def __init__(self, secrets=(), keep_bodies=True, keep_raw=False, host="127.0.0.1"):
        self.host = host  # any 127/8 address: the address-policy tests use several
        self.secrets = list(secrets)
        self.keep_bodies = keep_bodies
        self.keep_raw = keep_raw
        self.lock = threading.Lock()
        self.by_id = {}        # webhook-id -> count
        self.bodies = {}       # webhook-id -> parsed body (first)
        self.digests = {}      # webhook-id -> sha256 of the first accepted body
        self.first_body = {}   # webhook-id -> bytes of the first accepted body
        self.body_changed = []  # ids accepted again with other bytes (beyond "timestamp")
        self.ts_changed = []    # ids accepted again, differing only in "timestamp"
        self.bad_signatures = 0
        self.requests = 0
        self.fail_status = None  # e.g. 500, 410, 429
        self.fail_count = 0      # fail this many more requests (-1: until cleared)
        self.delay = 0.0
        self.sleep_fault = 0.0
        self.retry_after = None
        self.drop = False
        self.url_redirect = None  # the Location of 3xx answers (default: ourselves)
        # Per-id faults: the k-th request for an id gets plan[k] when k < len(plan):
        # a status, (status, retry_after), "drop" or ("sleep", seconds).
        self.plan = []
        self.seen = {}         # webhook-id -> requests so far
        self.events = []       # (time, webhook-id, status) of answered requests
        self.arrivals = []     # (time, webhook-id, outcome)
        self.raw = []          # (time, headers, body) when keep_raw
        self.loop = asyncio.new_event_loop()
        self._server = None
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        if not started.wait(10) or self._server is None:
            raise RuntimeError("the webhook receiver did not start")
        self.port = self._server.sockets[0].getsockname()[1]

    def _run(self, started):
        asyncio.set_event_loop(self.loop)

        async def start():
            self._server = await asyncio.start_server(self._conn, self.host, 0, backlog=256)

        self.loop.run_until_complete(start())
        started.set()
        self.loop.run_forever()

    @property
    def url(self):
        return "http://%s:%d/hook" % (self.host, self.port)

    async def _conn(self, reader, writer):
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                hdrs = {}
                for ln in lines[1:]:
                    k, sep, v = ln.partition(":")
                    if sep:
                        hdrs[k.strip().lower()] = v.strip()
                n = int(hdrs.get("content-length", "0") or 0)
                body = await reader.readexactly(n) if n else b""
                if not await self._handle(writer, hdrs, body):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError,
                asyncio.CancelledError):
            return  # (a cancelled handler ends quietly: the receiver is closing)
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - closing a broken transport
                pass

    async def _handle(self, writer, hdrs, body):
        """Answers one request; False when the connection must close."""
        msg_id = hdrs.get("webhook-id", "")
        now = time.time()
        with self.lock:
            self.requests += 1
            failing = self.fail_status is not None and self.fail_count != 0
            if failing and self.fail_count > 0:
                self.fail_count -= 1
            status = self.fail_status if failing else 200
            drop = self.drop
            delay = self.delay
            sleep_fault = self.sleep_fault
            retry_after = self.retry_after
            k = self.seen.get(msg_id, 0)
            self.seen[msg_id] = k + 1
            if k < len(self.plan):
                step = self.plan[k]
                if step == "drop":
                    drop = True
                elif isinstance(step, tuple) and step[0] == "sleep":
                    sleep_fault = step[1]
                elif isinstance(step, tuple):
                    status, retry_after = step
                else:
                    status = step
            secrets = list(self.secrets)
            if self.keep_raw:
                self.raw.append((now, hdrs, body))
            if drop or sleep_fault:
                self.arrivals.append((now, msg_id, "drop" if drop else "sleep"))
        if drop:
            return False
        if sleep_fault:
            await asyncio.sleep(sleep_fault)
            return False
        if delay:
            await asyncio.sleep(delay)
        ok = verify(secrets, hdrs, body) if secrets else True
        with self.lock:
            self.arrivals.append((now, msg_id, ("ok" if status < 300 else status) if ok
                                  else "badsig"))
            self.events.append((time.time(), msg_id, status))
            if not ok:
                self.bad_signatures += 1
            elif status < 300:
                self.by_id[msg_id] = self.by_id.get(msg_id, 0) + 1
                digest = hashlib.sha256(body).hexdigest()
                if msg_id not in self.digests:
                    self.digests[msg_id] = digest
                    if self.keep_bodies:
                        try:
                            self.bodies[msg_id] = json.loads(body)
                        except ValueError:
                            self.bodies[msg_id] = None
                    self.first_body[msg_id] = body
                elif self.digests[msg_id] != digest:
                    (self.ts_changed if _same_but_timestamp(self.first_body[msg_id], body)
                     else self.body_changed).append(msg_id)
        code = status if ok else 400
        out = "HTTP/1.1 %d %s\r\nContent-Length: 2\r\n" % (code, _REASONS.get(code, "Status"))
        if retry_after is not None and status in (429, 503):
            out += "Retry-After: %s\r\n" % retry_after
        if 300 <= code < 400:
            out += "Location: %s\r\n" % (self.url_redirect or self.url)
        writer.write(out.encode() + b"\r\nok")
        await writer.drain()
        return True

    def fail(self, status, count=-1, retry_after=None):
        with self.lock:
            self.fail_status = status
            self.fail_count = count
            self.retry_after = retry_after

    def recover(self):
        with self.lock:
            self.fail_status = None
            self.fail_count = 0
            self.drop = False
            self.delay = 0.0
            self.sleep_fault = 0.0

    def set(self, **kw):
        """Changes attributes (drop, delay, sleep_fault, secrets, ...) under the lock."""
        with self.lock:
            for k, v in kw.items():
                if not hasattr(self, k):
                    raise AttributeError(k)
                setattr(self, k, v)

    def distinct(self):
        with self.lock:
            return len(self.by_id)

    def ids(self):
        with self.lock:
            return dict(self.by_id)

    def arrivals_of(self, msg_id):
        with self.lock:
            return [a for a in self.arrivals if a[1] == msg_id]

    def snapshot_arrivals(self):
        with self.lock:
            return list(self.arrivals)

    def close(self):
        async def stop():
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
