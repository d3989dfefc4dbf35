"""The documentation's examples, run as written: every ```sh block of
docs/api.md (in order, in one shell, so variables carry over) and of the README's
first session, against a huiqid loaded with the demo data as `make run` loads it.
An example that answers an error fails the test."""

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
