"""The documentation's examples, run as written: every ```sh block of
docs/api.md (in order, in one shell, so variables carry over) and of the README's
first session, against a huiqid loaded with the demo data as `make run` loads it.
An example that answers an error fails the test."""

import json
import os
import re
import subprocess
import sys

from harness import TEST_ADMIN_KEY, Env, TestFailure

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sh_blocks(path, start_heading=None, stop_heading=None):
    text = open(path, encoding="utf-8").read()
    if start_heading:
        i = text.find(start_heading)
        text = text[i:] if i >= 0 else ""
    if stop_heading:
        j = text.find(stop_heading, 1)
        text = text[:j] if j > 0 else text
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def run_examples(env, blocks, what):
    base = "http://127.0.0.1:%d" % env.huiqid_port
    env_vars = dict(os.environ, HUIQI_KEY=TEST_ADMIN_KEY, HUIQI_URL=base)
    load = subprocess.run([sys.executable, os.path.join(REPO, "tools", "load_demo.py"), "--url",
                           base], capture_output=True, text=True, timeout=120, env=env_vars)
    if load.returncode != 0:
        raise TestFailure("load_demo.py failed: %s %s" % (load.stdout, load.stderr))
    script = ["cd %s" % REPO]
    # The key comes from the environment here, not from make run's var/.
    blocks = [re.sub(r"(?m)^export HUIQI_KEY=.*$", "", b) for b in blocks]
    blocks = [b for b in blocks if b.strip()]
    for i, b in enumerate(blocks):
        script.append("echo '@@@ example %d'" % (i + 1))
        script.append(b.replace("http://127.0.0.1:8080", base))
    proc = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True, text=True,
                          timeout=120, env=env_vars)
    if proc.returncode != 0:
        raise TestFailure("%s: the examples exited %d: %s" % (what, proc.returncode,
                                                              proc.stderr[-500:]))
    parts = proc.stdout.split("@@@ example ")
    for part in parts[1:]:
        num, _, out = part.partition("\n")
        if '"error"' in out:
            raise TestFailure("%s example %s answered an error: %s\n--- the example:\n%s" %
                              (what, num, out[:400], blocks[int(num) - 1]))
        if out.strip() == "" and "-o /dev/null" not in blocks[int(num) - 1] and \
                "ID=$(" not in blocks[int(num) - 1] and "DEMO=$(" not in blocks[int(num) - 1]:
            raise TestFailure("%s example %s printed nothing:\n%s" % (what, num,
                                                                     blocks[int(num) - 1]))
    return len(parts) - 1


def test_docs_api_examples(opts):
    blocks = sh_blocks(os.path.join(REPO, "docs", "api.md"))
    if len(blocks) < 20:
        raise TestFailure("docs/api.md has only %d examples" % len(blocks))
    with Env(opts) as env:
        run_examples(env, blocks, "docs/api.md")


def test_readme_examples(opts):
    blocks = sh_blocks(os.path.join(REPO, "README.md"), "## A first session", "\n## ")
    if not blocks:
        raise TestFailure("README.md has no first-session examples")
    with Env(opts) as env:
        run_examples(env, blocks, "README.md")
        # The session ends on the package of the enterprise it registered: the
        # policy it wrote and published must be in it (with the demo data loaded,
        # that policy is not number 1).
        r = env.c.get("/v1/enterprises/91320214MA1X7K2Q3L/policies")
        titles = [p.get("title") for p in ((r.json or {}).get("policies") or [])]
        if r.status != 200 or "高新技术企业研发费用补助" not in titles:
            raise TestFailure("README.md: the session's policy is not in the package: %d %s" %
                              (r.status, r.raw[:400]))


def _error_rows():
    """The error table of docs/api.md: {code: set of statuses}."""
    text = open(os.path.join(REPO, "docs", "api.md"), encoding="utf-8").read()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\s*\| ([0-9, ]+) \| (.*?) \|", line)
        if not m:
            continue
        statuses = {int(x) for x in m.group(1).split(",")}
        for code in re.findall(r"`([a-z_]+)`", m.group(2)):
            rows.setdefault(code, set()).update(statuses)
    return rows, text


def _source_codes():
    """Every error code the service's sources can send, found by the shapes that
    send them."""
    pats = [r'api_error\([^,]+,\s*[^,]+,\s*"([a-z_]+)"', r'_fail\(err,\s*\d+,\s*"([a-z_]+)"',
            r'status == \d+\s*\?\s*"([a-z_]+)"', r':\s*"(bad_request)"',
            r'rc == -E[A-Z]+\s*\?\s*"([a-z_]+)"', r'\[\d+\] = "([a-z_]+)"',
            r'"code", "([a-z_]+)"', r'code\\":\\"([a-z_]+)', r'import_error\([^"();]*"([a-z_]+)"']
    codes = set()
    d = os.path.join(REPO, "api")
    for name in sorted(os.listdir(d)):
        if name.endswith(".c"):
            src = open(os.path.join(d, name), encoding="utf-8").read()
            for p in pats:
                codes.update(re.findall(p, src))
    return codes


def test_error_codes_documented(o):
    """docs/api.md lists every error code the service sends, under the status it is
    sent with: each code found in the sources, and the codes of a few requests
    that once answered undocumented ones."""
    from harness import AUTH, parse_responses, raw_exchange
    rows, text = _error_rows()
    codes = _source_codes()
    if len(codes) < 30:
        raise TestFailure("found only %d codes in the sources: %s" % (len(codes), sorted(codes)))
    missing = sorted(c for c in codes if c not in rows and "`%s`" % c not in text)
    if missing:
        raise TestFailure("error codes sent but not documented in docs/api.md: %s" % missing)
    with Env(o) as env:
        port = env.huiqid_port
        head = b"Host: huiqi.test\r\n" + AUTH
        cases = [
            ("POST with an empty body", b"POST /v1/policies HTTP/1.1\r\n" + head +
             b"Content-Type: application/json\r\nContent-Length: 0\r\n\r\n"),
            ("%ZZ", b"GET /v1/enterprises/%ZZ HTTP/1.1\r\n" + head + b"\r\n"),
            ("%00", b"GET /v1/enterprises/%00 HTTP/1.1\r\n" + head + b"\r\n"),
            ("If-Match: \"abc\"", b"PUT /v1/policies/1 HTTP/1.1\r\n" + head +
             b"If-Match: \"abc\"\r\nContent-Type: application/json\r\nContent-Length: 13\r\n"
             b"\r\n{\"title\":\"t\"}"),
            ("HTTP/2.0", b"GET /healthz HTTP/2.0\r\n" + head + b"\r\n"),
            ("Expect: nothing", b"GET /healthz HTTP/1.1\r\n" + head + b"Expect: x\r\n\r\n"),
            ("a wrong method", b"DELETE /healthz HTTP/1.1\r\n" + head + b"\r\n"),
        ]
        seen = set()
        for what, raw in cases:
            buf, _ = raw_exchange(port, raw, timeout=2 * o.slow)
            resps = parse_responses(buf)
            if not resps:
                raise TestFailure("%s: no answer: %r" % (what, buf[:200]))
            st, _, body = resps[0]
            code = json.loads(body)["error"]["code"]
            seen.add(code)
            if st not in rows.get(code, set()):
                raise TestFailure("%s answers %d %s, which docs/api.md does not list "
                                  "(it lists %s)" % (what, st, code, sorted(rows.get(code, []))))
        want = {"body_required", "bad_path", "invalid_header", "http_version_not_supported"}
        if not want <= seen:
            raise TestFailure("expected codes %s among the answers, got %s" % (want, seen))
