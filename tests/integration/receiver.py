"""A webhook receiver for the tests: a threaded HTTP server on 127.0.0.1 that
verifies Standard Webhooks signatures, counts deliveries by webhook-id, keeps the
bodies, and can be told to fail for a while (a status, a delay, or dropping the
connection)."""

import base64
import hashlib
import hmac
import http.server
import json
import socketserver
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
    if abs(time.time() - int(ts)) > tolerance:
        return False
    given = sig.split(" ")
    for s in secrets:
        want = sign_v1(s, msg_id, ts, body)
        if any(hmac.compare_digest(want, g) for g in given):
            return True
    return False


class Receiver:
    def __init__(self, secrets=()):
        self.secrets = list(secrets)
        self.lock = threading.Lock()
        self.by_id = {}        # webhook-id -> count
        self.bodies = {}       # webhook-id -> parsed body (first)
        self.bad_signatures = 0
        self.requests = 0
        self.fail_status = None  # e.g. 500, 410, 429
        self.fail_count = 0      # fail this many more requests (-1: until cleared)
        self.delay = 0.0
        self.retry_after = None
        self.drop = False
        self.events = []       # (time, webhook-id, status)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                outer._handle(self, body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def _handle(self, h, body):
        with self.lock:
            self.requests += 1
            failing = self.fail_status is not None and self.fail_count != 0
            if failing and self.fail_count > 0:
                self.fail_count -= 1
            status = self.fail_status if failing else 200
            drop = self.drop
            delay = self.delay
            retry_after = self.retry_after
        if delay:
            time.sleep(delay)
        if drop:
            h.close_connection = True
            try:
                h.connection.shutdown(2)
            except OSError:
                pass
            return
        hdrs = {k.lower(): v for k, v in h.headers.items()}
        ok = verify(self.secrets, hdrs, body) if self.secrets else True
        msg_id = hdrs.get("webhook-id", "")
        with self.lock:
            self.events.append((time.time(), msg_id, status))
            if not ok:
                self.bad_signatures += 1
            elif status < 300:
                self.by_id[msg_id] = self.by_id.get(msg_id, 0) + 1
                if msg_id not in self.bodies:
                    try:
                        self.bodies[msg_id] = json.loads(body)
                    except ValueError:
                        self.bodies[msg_id] = None
        h.send_response(status if ok else 400)
        if retry_after is not None and status in (429, 503):
            h.send_header("Retry-After", str(retry_after))
        h.send_header("Content-Length", "2")
        h.end_headers()
        h.wfile.write(b"ok")

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

    def distinct(self):
        with self.lock:
            return len(self.by_id)

    def ids(self):
        with self.lock:
            return dict(self.by_id)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
