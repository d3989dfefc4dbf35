#!/usr/bin/env python3
"""Load the demo data (deploy/demo/) into a running huiqid over its REST API.

    python3 tools/load_demo.py --url http://127.0.0.1:8080 [--verify]

Enterprises: PUT /v1/enterprises/{uscc} for each line of enterprises.ndjson (an
idempotent upsert). Policies: GET /v1/policies?limit=500 (following "next")
to find the ones already there by title, which are left alone; POST the others;
then POST /v1/policies/{id}/publish for each policy marked "publish": true that
is still a draft (so a run interrupted between create and publish is completed
by the next one). A withdrawn policy is never published again. The "publish"
flag is the loader's and is not sent to the service.

Uses one keep-alive connection. Prints one summary line such as
"300 enterprises, 12 policies (10 published)"; on an answer outside 2xx it
prints the request and the answer's body and exits with status 1 (2 when the
service cannot be reached). Running it twice is harmless.

--verify afterwards asks GET /v1/policies/{id}/audience for each demo policy,
prints the counts and fails when one is zero.
Python 3 standard library only.
"""

import argparse
import http.client
import json
import os
import socket
import sys
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(ROOT, "deploy", "demo")


class ApiError(Exception):
    def __init__(self, method, path, status, body):
        super().__init__("%s %s -> %s" % (method, path, status))
        self.method, self.path, self.status, self.body = method, path, status, body


class Client:
    """One keep-alive HTTP/1.1 connection. Idempotent requests are retried once
    on a fresh connection when the server closed the old one."""

    def __init__(self, url, timeout, key=None):
        self.key = key
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise SystemExit("--url must look like http://HOST:PORT (got %r)" % url)
        self.base = u.path.rstrip("/")
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.timeout = timeout
        self.conn = None

    def _connect(self):
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        self.conn = cls(self.host, self.port, timeout=self.timeout)

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, retry=True):
        """Returns (status, parsed JSON or None). Raises ApiError outside 2xx."""
        data = None
        headers = {"Accept": "application/json"}
        if self.key:
            headers["Authorization"] = "Bearer " + self.key
        if body is not None:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, self.base + path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.BadStatusLine):
                # The server closed the keep-alive connection (idle timeout, restart).
                self.close()
                if attempt == 0 and retry:
                    continue
                raise
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            text = raw.decode("utf-8", "replace")
            if not 200 <= resp.status < 300:
                raise ApiError(method, path, resp.status, text)
            try:
                return resp.status, json.loads(text) if text.strip() else None
            except ValueError:
                return resp.status, None
        raise AssertionError("unreachable")


def read_enterprises(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except ValueError as exc:
                raise SystemExit("%s:%d: %s" % (path, n, exc))
            if not isinstance(e, dict) or not isinstance(e.get("uscc"), str):
                raise SystemExit("%s:%d: an enterprise object with a uscc is expected" % (path, n))
            out.append(e)
    return out


def list_policies(c):
    """All policies in the service, by title (first one wins)."""
    by_title = {}
    cursor = None
    while True:
        q = "/v1/policies?limit=500" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
        _, page = c.request("GET", q)
        for p in page.get("items", []):
            by_title.setdefault(p.get("title"), p)
        cursor = page.get("next")
        if not cursor:
            return by_title


def load(c, ents, pols):
    for e in ents:
        c.request("PUT", "/v1/enterprises/" + urllib.parse.quote(e["uscc"], safe=""), e)
    existing = list_policies(c)
    ids = []
    published = 0
    for p in pols:
        body = {k: v for k, v in p.items() if k != "publish"}
        cur = existing.get(p["title"])
        if cur is None:
            try:
                _, cur = c.request("POST", "/v1/policies", body, retry=False)
            except (http.client.HTTPException, OSError):
                # The connection broke with the POST in flight: it may or may not
                # have been created. Look before trying again, so as not to
                # create it twice.
                c.close()
                cur = list_policies(c).get(p["title"])
                if cur is None:
                    _, cur = c.request("POST", "/v1/policies", body, retry=False)
            existing[p["title"]] = cur
        if p.get("publish") and cur.get("status") == "draft":
            _, cur = c.request("POST", "/v1/policies/%d/publish" % cur["id"])
        if cur.get("status") == "published":
            published += 1
        ids.append(cur["id"])
    return ids, published


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default=os.environ.get("HUIQI_URL", "http://127.0.0.1:8080"),
                    help="huiqid base URL ($HUIQI_URL)")
    ap.add_argument("--key", default=os.environ.get("HUIQI_KEY"),
                    help="an admin or operator API key ($HUIQI_KEY)")
    ap.add_argument("--dir", default=DEFAULT_DIR,
                    help="directory with enterprises.ndjson and policies.json (default deploy/demo)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    ap.add_argument("--verify", action="store_true",
                    help="afterwards, print each policy's audience count and fail if one is zero")
    args = ap.parse_args()

    ents = read_enterprises(os.path.join(args.dir, "enterprises.ndjson"))
    with open(os.path.join(args.dir, "policies.json"), encoding="utf-8") as f:
        pols = json.load(f)
    c = Client(args.url, args.timeout, args.key)
    try:
        ids, published = load(c, ents, pols)
        print("%d enterprises, %d policies (%d published)" % (len(ents), len(ids), published))
        if args.verify:
            zero = 0
            for p, pid in zip(pols, ids):
                _, a = c.request("GET", "/v1/policies/%d/audience" % pid)
                print("  %5d  #%d %s" % (a["count"], pid, p["title"]))
                zero += a["count"] == 0
            if zero:
                print("error: %d policies have no audience" % zero, file=sys.stderr)
                return 1
    except ApiError as e:
        print("error: %s %s answered %d:\n%s" % (e.method, e.path, e.status, e.body.strip()),
              file=sys.stderr)
        return 1
    except (OSError, http.client.HTTPException, socket.timeout) as e:
        print("error: cannot talk to huiqid at %s: %s" % (args.url, e), file=sys.stderr)
        return 2
    finally:
        c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
