"""Benchmark the SQLite usage ledger: concurrent writers, and period totals over a year of history.

    python bench/bench_ledger.py                 # 4 writers x 3 s, a year of history, writes the report
    python bench/bench_ledger.py --seconds 5 --no-report

1. Several processes record usage at once, each record its own transaction (as coordinators do),
   for a few seconds. Reports writes/second in total and checks that every record a writer counted
   is in the table, per account, to the token.
2. A year of usage (accounts x providers x records/day x 365 days) is loaded, then `usage_totals`
   is timed for the periods routing asks about: a weekly cron period, a month, a 5-hour window.

Results go to bench/results/ledger.md (unless --no-report).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from multiprocessing.synchronize import Barrier
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import machine as base_machine  # noqa: E402  (bench/ is on sys.path when run as a script)
from _machine import publish  # noqa: E402

from adws.attempt import Usage  # noqa: E402
from adws.quota import QuotaPeriod  # noqa: E402
from adws.state import SqliteStore, UsageRecord  # noqa: E402


@dataclass
class Writers:
    processes: int
    seconds: float
    per_process: dict[str, int]
    lost: dict[str, int]  # account -> records counted by the writer but missing or inexact in the table
    cost_ok: bool

    @property
    def written(self) -> int:
        return sum(self.per_process.values())

    @property
    def rate(self) -> float:
        return self.written / self.seconds


@dataclass
class Totals:
    rows: int
    load_s: float
    size_mb: float
    latencies: dict[str, tuple[float, float, int]]  # label -> (median ms, max ms, rows summed)
    version_us: float
    cached_start_us: float


USAGE = Usage(requests=1, input_tokens=1200, output_tokens=300, cost_usd=0.25)


# -- 1. concurrent writers -------------------------------------------------------------------------


def writer(path: str, account: str, go: Barrier, seconds: float, results: mp.Queue[tuple[str, int]]) -> None:
    store = SqliteStore(path)
    go.wait()  # every writer has imported adws and opened its connection: start together
    deadline = time.monotonic() + seconds
    written = 0
    while time.monotonic() < deadline:
        store.record_usage(UsageRecord("bench", account, datetime.now(UTC), USAGE))
        written += 1
    store.close()
    results.put((account, written))


def bench_writers(workdir: Path, processes: int, seconds: float) -> Writers:
    path = str(workdir / "writers.sqlite3")
    SqliteStore(path).close()  # schema first, so the timed part measures writes only
    ctx = mp.get_context("spawn")  # fresh interpreters, like separate coordinator processes
    go = ctx.Barrier(processes + 1)
    results: mp.Queue[tuple[str, int]] = ctx.Queue()
    procs = [
        ctx.Process(target=writer, args=(path, f"acct-{i}", go, seconds, results)) for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    go.wait()
    started = time.perf_counter()
    counted = dict(results.get(timeout=seconds + 60) for _ in procs)
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()

    with SqliteStore(path) as store:
        totals = store.usage_totals({"bench": datetime(2000, 1, 1, tzinfo=UTC)})
    lost: dict[str, int] = {}
    for account, n in counted.items():
        found = totals.get(("bench", account), Usage(requests=0))
        exact = (found.requests, found.input_tokens, found.output_tokens) == (
            n,
            n * USAGE.input_tokens,
            n * USAGE.output_tokens,
        )
        if not exact:
            lost[account] = n - found.requests
    cost_ok = all(
        abs(totals[("bench", a)].cost_usd - n * USAGE.cost_usd) < 1e-6 * max(n, 1)
        for a, n in counted.items()
        if ("bench", a) in totals
    )
    return Writers(processes, elapsed, counted, lost, cost_ok)


def bench_single_writer(workdir: Path, seconds: float) -> float:
    path = str(workdir / "single.sqlite3")
    with SqliteStore(path) as store:
        deadline = time.monotonic() + seconds
        written = 0
        started = time.perf_counter()
        while time.monotonic() < deadline:
            store.record_usage(UsageRecord("bench", "solo", datetime.now(UTC), USAGE))
            written += 1
        return written / (time.perf_counter() - started)


# -- 2. totals over a year -------------------------------------------------------------------------


def year_of_usage(
    end: datetime, providers: int, accounts: int, per_day: int, days: int
) -> Iterator[list[UsageRecord]]:
    """One list per day, records spread evenly over the day."""
    step = timedelta(days=1) / per_day
    for day in range(days, 0, -1):
        midnight = end - timedelta(days=day)
        yield [
            UsageRecord(f"prov-{p}", f"acct-{a}", midnight + k * step + timedelta(seconds=a), USAGE)
            for k in range(per_day)
            for p in range(providers)
            for a in range(accounts)
        ]


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and max in milliseconds, after one warm-up call."""
    fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def bench_totals(workdir: Path, providers: int, accounts: int, per_day: int, runs: int) -> Totals:
    path = str(workdir / "year.sqlite3")
    now = datetime(2025, 12, 31, 12, tzinfo=UTC)
    store = SqliteStore(path)
    started = time.perf_counter()
    rows = 0
    batch: list[UsageRecord] = []
    for day in year_of_usage(now, providers, accounts, per_day, 365):
        batch += day
        if len(batch) >= 100_000:
            rows += store.import_usage(batch)
            batch = []
    rows += store.import_usage(batch)
    load_s = time.perf_counter() - started
    names = [f"prov-{p}" for p in range(providers)]

    periods = {
        'weekly cron "0 0 * * 0" (Wed noon: 3.5 days in)': QuotaPeriod.cron("0 0 * * 0", UTC),
        "rolling 7d": QuotaPeriod.rolling(timedelta(days=7)),
        'monthly cron "0 0 1 * *" (Dec 31: 30.5 days in)': QuotaPeriod.cron("0 0 1 * *", UTC),
        "rolling 5h": QuotaPeriod.rolling(timedelta(hours=5)),
    }
    latencies: dict[str, tuple[float, float, int]] = {}
    for label, period in periods.items():
        since = {name: period.start(now) for name in names}
        counted = sum(u.requests for u in store.usage_totals(since).values())
        latencies[label] = (*timed(partial(store.usage_totals, since), runs), counted)

    version_us = timed(store.version, 2000)[0] * 1000
    cron = QuotaPeriod.cron("0 0 * * 0", UTC)
    cached_start_us = timed(lambda: cron.start(now), 2000)[0] * 1000
    store.close()
    return Totals(rows, load_s, os.path.getsize(path) / 1e6, latencies, version_us, cached_start_us)


# -- report ----------------------------------------------------------------------------------------


def machine() -> str:
    return f"{base_machine()}, SQLite {sqlite3.sqlite_version}"


def filesystem(path: Path) -> str:
    """Type of the filesystem holding `path` (from /proc/mounts; "unknown" elsewhere)."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    except OSError:
        pass
    return kind


def report(
    args: argparse.Namespace, writers: Writers, single: float, totals: Totals, load: tuple[float, ...]
) -> str:
    lines = [
        "# Usage ledger (SQLite state store)",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Load average when started: {' / '.join(f'{x:.2f}' for x in load)} (1 / 5 / 15 min): the machine "
        "is shared with other work, so timings vary between runs",
        f"- Database files: a temporary directory under {args.dir} ({filesystem(Path(args.dir))})",
        f"- Re-run: `python bench/bench_ledger.py --processes {args.processes} --seconds {args.seconds:g}`"
        " (writes this file; `--no-report` to only print)",
        "",
        "## Concurrent writers",
        "",
        f"{writers.processes} processes, each `record_usage` its own `BEGIN IMMEDIATE` transaction "
        "(WAL, synchronous=NORMAL), all started together, each writing as fast as it can. With",
        "synchronous=NORMAL a commit is not fsynced on its own: committed data survives a killed process",
        "(see the kill -9 test in tests/test_state.py); a power loss may drop the last commits.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| writes/second, all processes together | **{writers.rate:,.0f}** (target > 1,000) |",
        f"| records written in {writers.seconds:.1f} s | {writers.written:,} |",
        f"| per process | {', '.join(f'{n:,}' for n in writers.per_process.values())} |",
        f"| records lost | {writers.lost or 'none'} (every counted record found, tokens exact) |",
        f"| cost sums within float rounding | {'yes' if writers.cost_ok else 'NO'} |",
        f"| one process alone, writes/second | {single:,.0f} |",
        "",
        "## `usage_totals` over a year of history",
        "",
        f"{args.accounts} accounts × {args.providers} providers × {args.per_day} records/day × 365 days = "
        f"{totals.rows:,} rows ({totals.size_mb:.0f} MB, loaded in {totals.load_s:.1f} s). "
        f"One `usage_totals` call for all {args.providers} providers; median and max of {args.runs} runs.",
        "",
        "| period | rows summed | median ms | max ms |",
        "| --- | --- | --- | --- |",
    ]
    for label, (median, worst, counted) in totals.latencies.items():
        lines.append(f"| {label} | {counted:,} | {median:.1f} | {worst:.1f} |")
    lines += [
        "",
        f"- `version()` (PRAGMA data_version + local counter): {totals.version_us:.1f} µs per call",
        f"- `QuotaPeriod.start()` on a cached cron period: {totals.cached_start_us:.2f} µs per call",
        "",
        "Totals cost grows with the rows inside the period, not with the history: each account's",
        "slice of the covering (provider, account, at, …) index is read directly, and the accounts",
        "are found by a loose index scan.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--providers", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--per-day", type=int, default=100)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary databases go")
    parser.add_argument("--no-report", action="store_true", help="print only, do not write the results file")
    args = parser.parse_args()

    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="adws-bench-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        writers = bench_writers(workdir, args.processes, args.seconds)
        single = bench_single_writer(workdir, args.seconds)
        totals = bench_totals(workdir, args.providers, args.accounts, args.per_day, args.runs)

    text = report(args, writers, single, totals, load)
    publish(text, "ledger", write=not args.no_report)
    return 0 if not writers.lost and writers.cost_ok else 1


if __name__ == "__main__":
    sys.exit(main())
