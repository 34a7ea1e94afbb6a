"""Write tests/data/issues/corpus.jsonl: realistic issue texts, written for adws (no issue is copied).

    python bench/make_issue_corpus.py       # deterministic: the same file every time

Each line is one task as a coordinator passes it (`number`, `title`, `body`, `labels`), the body assembled
from hand-written parts of the kinds real issues have: a problem statement, steps to reproduce, code blocks in
several languages, Python/Java/Go/Node stack traces, CI and server logs, config excerpts, checklists, and
the odd non-ASCII text (names, arrows, emoji, a Kelvin sign). Sizes run from a few hundred bytes to 20 KB.
About a third carry a label that decides the specialization; the rest leave it to the keyword classifier.
The routing benchmark (bench/bench_route.py) and the keyword differential test read this file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "issues" / "corpus.jsonl"

TITLES = [
    "Crash when the sync worker receives an empty batch",
    "Login redirect loops after the session cookie expires",
    "Investigate intermittent timeout in the payments integration test",
    "Refactor the order service to use the new repository layer",
    "Docs: README install section is out of date",
    "RFC: move background jobs from cron to a queue",
    "Memory grows without bound in the websocket gateway",
    "Add an endpoint to export invoices as CSV",
    "TypeError in report generation when a customer has no address",
    "Flaky unit test test_retry_backoff on CI",
    "Upgrade to PostgreSQL 16 breaks the migration runner",
    "Search results ignore the locale for accented names",
    "Implement rate limiting for the public API",
    "Root cause of duplicated emails after deploy",
    "Changelog entry missing for 3.2.0",
    "Dark mode colours unreadable in the settings dialog",
    "Panic: index out of range in the log shipper",
    "Slow query on the dashboard for large tenants",
    "System design for multi-region failover",
    "Docstring examples in the client library do not run",
    "Build fails on ARM runners after toolchain bump",
    "Analyse the cost spike in the batch cluster last week",
    "Null pointer in parser when the header has no charset",
    "Feature request: allow per-project webhooks",
    "Review the whole repository for uses of the deprecated HTTP client",
    "Large document uploads fail above 50 MB",
    "Cache invalidation misses renamed files",
    "Prove the scheduler never starts the same job twice",
    "Connection pool exhausted under load test",
    "Improve error message when the token is expired",
]

PROBLEMS = [
    "Since the release on Tuesday the worker crashes as soon as it receives a batch with no items. It looks like "
    "the code assumes at least one element and indexes into the list before checking its length. We see this a "
    "few times an hour in production, always right after the upstream exporter restarts.",
    "Users report that after roughly 24 hours they are sent back to the login page, log in, and are redirected "
    "to the login page again. Clearing cookies fixes it. My guess is that the refresh handler reads the old cookie "
    "before the new one is written, but I have not confirmed that.",
    "The integration test for the payments provider times out about one run in twenty. The timeout is 30 s and "
    "the happy path normally takes under 2 s, so something is waiting on a lock or a socket that never answers. "
    "It only happens on the shared runners, never locally.",
    "The order service still talks to the database through the old DAO helpers. Now that the repository layer "
    "exists we should move the remaining call sites over, delete the helpers, and keep behaviour identical. "
    "There are about forty call sites; most are mechanical.",
    "The install section tells people to run a script that was removed two releases ago, and the minimum Python "
    "version is wrong. New contributors keep opening issues about it.",
    "Our nightly jobs run from a crontab on one VM. When that VM is rebooted or the job overruns, work is lost or "
    "done twice. This proposes moving them to the existing queue with idempotent handlers and a small scheduler.",
    "Heap usage of the gateway grows by about 40 MB per hour and never comes down; after two days the pod is "
    "OOM-killed. Connections are closed correctly as far as the metrics show, so something else holds references.",
    "Finance needs invoices as CSV for their import. The data is already available through the JSON API; the new "
    "endpoint should stream rows so that large exports do not load everything into memory.",
    "Generating the monthly report fails for customers without a billing address. The template calls "
    "`address.city` without checking for None.",
    "This test fails on CI roughly once a day. It measures elapsed time with the wall clock and asserts an upper "
    "bound, which is fragile on loaded runners. We should inject a clock instead.",
    "After upgrading the development database to 16, the migration runner stops at the third migration with a "
    "syntax error. The same migrations apply cleanly on 15.",
    "Searching for “José” does not find “Jose” and vice versa. The collation used by the search index is "
    "accent-sensitive; we probably want unaccent plus a case-insensitive comparison.",
    "Nothing stops a single client from sending thousands of requests per second. We need per-token limits with "
    "a sensible default, headers that tell clients their remaining budget, and a 429 with Retry-After.",
    "Every deploy since last month has sent some notification emails twice. The job runner restarts during "
    "deploy and picks up messages that were already being processed. We need to find out why the lease is lost.",
]

STEPS = [
    "### Steps to reproduce\n\n1. Start the stack with `make dev`.\n2. Send an empty batch: "
    "`curl -X POST localhost:8080/v1/batches -d '{\"items\": []}'`.\n3. Watch the worker logs.\n\n"
    "### Expected\n\nThe batch is acknowledged and skipped.\n\n### Actual\n\nThe worker exits with the traceback "
    "below and is restarted by the supervisor.",
    "**To reproduce**\n\n- log in\n- wait until the access token expires (or set `ACCESS_TTL=60` locally)\n"
    "- reload any page\n\nYou end up on `/login?next=%2Fdashboard` and every further login brings you back there.",
    "Reproduce with:\n\n```sh\nfor i in $(seq 1 50); do pytest tests/integration/test_payments.py -k capture -x "
    "|| break; done\n```\n\nOn my machine it took 37 iterations.",
    "Steps:\n1. open Settings → Appearance\n2. switch to Dark\n3. the labels in the Notifications tab are grey on "
    "dark grey (contrast ratio about 1.6:1)",
]

CODE = [
    "```python\ndef handle_batch(batch: Batch) -> None:\n    first = batch.items[0]  # IndexError on an empty batch\n"
    "    tenant = first.tenant_id\n    with session_scope() as session:\n        for item in batch.items:\n"
    "            session.add(Record.from_item(item, tenant=tenant))\n    metrics.batches.inc()\n```",
    "```ts\nexport async function refresh(req: Request, res: Response) {\n  const token = req.cookies['session'];\n"
    "  const fresh = await auth.refresh(token);\n  res.cookie('session', fresh.value, { httpOnly: true, maxAge: "
    "fresh.ttl });\n  return res.redirect(req.query.next ?? '/');\n}\n```",
    "```go\nfunc (s *Shipper) flush(buf []Entry) error {\n\tfor i := 0; i <= len(buf); i++ { // off by one\n"
    "\t\tif err := s.out.Write(buf[i]); err != nil {\n\t\t\treturn fmt.Errorf(\"write entry %d: %w\", i, err)\n"
    "\t\t}\n\t}\n\treturn nil\n}\n```",
    "```rust\nimpl Pool {\n    pub fn get(&self) -> Result<Conn, PoolError> {\n        let guard = self.inner."
    "lock().map_err(|_| PoolError::Poisoned)?;\n        guard.idle.pop().ok_or(PoolError::Exhausted { max: "
    "self.max })\n    }\n}\n```",
    "```yaml\njobs:\n  test:\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        python: ['3.11', "
    "'3.12']\n    steps:\n      - uses: actions/checkout@v4\n      - run: pip install -e '.[test]'\n"
    "      - run: pytest -q -x\n```",
    "```toml\n[tool.service]\nworkers = 8\nbatch_size = 500\nretry = { attempts = 5, backoff = \"2s\" }\n\n"
    "[tool.service.db]\nurl = \"postgresql://app@db:5432/app\"\npool_size = 20\n```",
    "```sql\nEXPLAIN ANALYZE\nSELECT t.id, count(*)\nFROM events e JOIN tenants t ON t.id = e.tenant_id\n"
    "WHERE e.created_at > now() - interval '30 days'\nGROUP BY t.id\nORDER BY 2 DESC;\n```",
    "```java\npublic Report build(Customer c) {\n    Address a = c.getBillingAddress();\n    return new Report("
    "c.getName(), a.getCity(), totals(c)); // NPE when a == null\n}\n```",
    "```diff\n-    timeout = 30\n+    timeout = 120\n     retries = 3\n-    pool = None\n+    pool = ConnectionPool("
    "max_size=20)\n```",
]

TRACES = [
    "```\nTraceback (most recent call last):\n  File \"/app/worker/main.py\", line 88, in run\n"
    "    self.handle_batch(batch)\n  File \"/app/worker/batches.py\", line 41, in handle_batch\n"
    "    first = batch.items[0]\n            ~~~~~~~~~~~^^^\nIndexError: list index out of range\n```",
    "```\nException in thread \"main\" java.lang.NullPointerException: Cannot invoke \"Address.getCity()\" because "
    "\"a\" is null\n\tat com.example.reports.ReportBuilder.build(ReportBuilder.java:57)\n\tat com.example.reports"
    ".MonthlyJob.lambda$run$0(MonthlyJob.java:33)\n\tat java.base/java.util.ArrayList.forEach(ArrayList.java:1596)"
    "\n\tat com.example.reports.MonthlyJob.run(MonthlyJob.java:31)\n```",
    "```\npanic: runtime error: index out of range [12] with length 12\n\ngoroutine 37 [running]:\n"
    "github.com/example/shipper.(*Shipper).flush(0xc0001a2000, {0xc000410000, 0xc, 0x10})\n"
    "\t/src/shipper/flush.go:23 +0x1c5\ngithub.com/example/shipper.(*Shipper).loop(0xc0001a2000)\n"
    "\t/src/shipper/loop.go:61 +0x2b1\ncreated by github.com/example/shipper.Start in goroutine 1\n"
    "\t/src/shipper/start.go:18 +0x9d\nexit status 2\n```",
    "```\nTypeError: Cannot read properties of undefined (reading 'city')\n    at renderAddress "
    "(/srv/app/dist/report.js:112:31)\n    at Array.map (<anonymous>)\n    at buildReport (/srv/app/dist/"
    "report.js:87:22)\n    at async Job.run (/srv/app/dist/jobs/monthly.js:19:5)\n```",
    "```\nthread 'pool::tests::exhausts' panicked at src/pool.rs:88:9:\nassertion `left == right` failed\n"
    "  left: Exhausted { max: 4 }\n right: Poisoned\nnote: run with `RUST_BACKTRACE=1` environment variable to "
    "display a backtrace\n```",
]

LOG_LINES = [
    "{ts} INFO  worker[{pid}] batch {n} acknowledged ({k} items, {ms} ms)",
    "{ts} WARN  pool: {k} of 20 connections busy, waiting {ms} ms",
    "{ts} ERROR http: GET /v1/invoices/{n} -> 500 in {ms} ms (request id {rid})",
    "{ts} DEBUG cache: miss for key tenant:{n}:settings",
    "{ts} INFO  scheduler: job nightly-export started (attempt {k})",
    "{ts} ERROR db: canceling statement due to statement timeout ({ms} ms)",
    "{ts} INFO  gateway: {k} open websockets, heap {n} MB",
]

EXTRAS = [
    "### Environment\n\n- version: 3.4.1 (commit 9f2c1e0)\n- OS: Ubuntu 22.04, kernel 6.5\n- Python 3.11.7, "
    "PostgreSQL 15.4\n- deployed with the Helm chart, 3 replicas",
    "- [x] I searched existing issues\n- [x] I can reproduce on the latest release\n- [ ] I am willing to open a "
    "pull request",
    "Possibly related: #1423 (same symptom after the queue migration) and the discussion in #1388.",
    "cc @maria-k @tkowalski — you touched this code last; any idea why the lease would be released early?",
    "Workaround for now: restart the worker with `--batch-min 1`. Not great, but it stops the crash loop. 🙏",
    "Measured on a 2-core runner: p50 180 ms → 2.4 s after the upgrade, p99 above 9 s. The temperature of the "
    "rack reads 300 \u212a in the exporter, which is a separate bug (units).",
    "Acceptance criteria:\n\n1. behaviour unchanged for existing clients\n2. a test that fails before the fix\n"
    "3. docs updated (README and the changelog)",
    "I think we should fix this properly rather than add another special case. If someone can point me at the "
    "right module I can implement it and add a unit test.",
    "Question for the maintainers: is the design doc for the storage layer still current, or has the architecture "
    "changed since the RFC?",
    "Ideas: analyse the heap dump (attached, 380 MB), investigate whether the subscription map is ever pruned, "
    "and try to prove or disprove the theory with a soak test.",
]

LABELS = [["bug"], ["documentation"], ["type:code"], ["reasoning"], ["architecture"], ["P1", "bug"],
          ["needs-triage"], ["question"], ["enhancement"], ["good first issue"], []]

SIZES = [300, 450, 700, 1000, 1500, 2048, 2048, 2048, 3000, 4500, 6000, 8000, 10000, 12000, 16000, 20480, 20480,
         20480]


def log_block(rng: random.Random, lines: int) -> str:
    out = []
    for _ in range(lines):
        ts = f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:" \
             f"{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z"
        out.append(rng.choice(LOG_LINES).format(ts=ts, pid=rng.randint(100, 9999), n=rng.randint(1, 99999),
                                                 k=rng.randint(1, 20), ms=rng.randint(1, 30000),
                                                 rid=f"{rng.getrandbits(48):012x}"))
    return "```\n" + "\n".join(out) + "\n```"


def body(rng: random.Random, size: int) -> str:
    parts = [rng.choice(PROBLEMS)]
    if size > 600:
        parts.append(rng.choice(STEPS))
    pools = [CODE, TRACES, EXTRAS, PROBLEMS]
    while sum(len(p) + 2 for p in parts) < size:
        room = size - sum(len(p) + 2 for p in parts)
        if room > 1500 and rng.random() < 0.3:
            parts.append(log_block(rng, min(room // 110, 80)))
        else:
            parts.append(rng.choice(rng.choice(pools)))
    return "\n\n".join(parts)[:size]


def main() -> int:
    rng = random.Random(20261130)
    lines = []
    number = 1000
    for round_ in range(3):
        for size in SIZES:
            number += 1
            title = TITLES[(number + round_) % len(TITLES)]
            labels = LABELS[rng.randrange(len(LABELS))] if rng.random() < 0.35 else []
            task = {"number": number, "title": title, "body": body(rng, size), "labels": labels}
            lines.append(json.dumps(task, ensure_ascii=False))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} issues to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
