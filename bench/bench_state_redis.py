"""Benchmark the Redis state store against SQLite: routing at steady state, ledger writes from several processes,
and the first route after another host wrote.

    python bench/bench_state_redis.py                 # about a minute; writes bench/results/state_redis.md
    python bench/bench_state_redis.py --url redis://127.0.0.1:6390/0 --no-report

Needs `redis-server` on PATH (a private server is started on a free loopback port and stopped at the end) or
--url of a server (only keys under a fresh prefix are written, and deleted at the end).

1. `engine.route(task)` on the shipped config.toml, cycling through its scenario tasks, each call timed on its
   own, with a SQLite store and with a Redis store holding the same 30 days of usage; interleaved in rounds so
   both see the same machine load. Target: Redis median <= 1.5x SQLite. Also counted: the commands the Redis
   server processed during the timed routes (steady state should need one per poll interval, not one per route).
2. Ledger writes: N processes record usage as fast as they can for a few seconds, each record its own atomic
   script; then every account's totals are checked to the token. Target: >= 5,000 writes/s from 4 processes,
   nothing lost.
3. The first route after another host recorded usage: a second store writes, the staleness bound passes, then
   one route is timed (it re-reads usage, cooldowns, breakers and leases). SQLite beside it for scale.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import machine, publish  # noqa: E402  (bench/ is on sys.path when run as a script)

from adws.attempt import Usage  # noqa: E402
from adws.compiled import CompiledConfig  # noqa: E402
from adws.config import load_config  # noqa: E402
from adws.engine import Engine  # noqa: E402
from adws.state import RedisStore, SqliteStore, StateStore, UsageRecord  # noqa: E402
from adws.state.redis_store import POLL_INTERVAL_S  # noqa: E402
from adws.task import Task  # noqa: E402

CONFIG = REPO / "config.toml"
USAGE = Usage(requests=1, input_tokens=1200, output_tokens=300, cost_usd=0.25)
ROUTE_RATIO_TARGET = 1.5
WRITES_TARGET = 5000


def installed(name: str) -> str | None:
    return f"/usr/bin/{name}"  # every agent CLI counts as installed, as on a coordinator machine


def month_of_usage(config: CompiledConfig, end: datetime, per_day: int) -> list[UsageRecord]:
    step = timedelta(days=1) / per_day
    records = []
    for name, provider in config.providers.items():
        for k, account in enumerate([a.name for a in provider.accounts] or ["default"], 1):
            for day in range(30, 0, -1):
                midnight = end - timedelta(days=day)
                records += [UsageRecord(name, account, midnight + i * step + timedelta(seconds=k),
                                        Usage(requests=1, input_tokens=100 * k, output_tokens=20))
                            for i in range(per_day)]
    return records


def median_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1000


# -- 1. steady-state routing -----------------------------------------------------------------------------------


def bench_routes(config: CompiledConfig, stores: dict[str, StateStore], rounds: int,
                 commands: Callable[[], int]) -> tuple[dict[str, list[int]], int, int]:
    tasks = [Task.from_dict(dict(s.task)) for s in config.scenarios]
    engines = {label: Engine(config, store=store, environ={}, which=installed) for label, store in stores.items()}
    samples: dict[str, list[int]] = {label: [] for label in engines}
    for engine in engines.values():  # warm: snapshots read, plans cached
        for task in tasks:
            engine.route(task)
    timed_routes = 0
    before = commands()
    for _ in range(rounds):
        for label, engine in engines.items():
            route, out = engine.route, samples[label]
            for task in tasks:
                started = time.perf_counter_ns()
                route(task)
                out.append(time.perf_counter_ns() - started)
        timed_routes += len(tasks)
    used = commands() - before - 1  # minus the INFO that read the counter
    return samples, timed_routes, used


# -- 2. ledger writes from several processes -----------------------------------------------------------------


def writer(url: str, prefix: str, account: str, go: Barrier, seconds: float, results: Any) -> None:
    store = RedisStore(url, key_prefix=prefix)
    go.wait()
    deadline = time.monotonic() + seconds
    written = 0
    while time.monotonic() < deadline:
        store.record_usage(UsageRecord("bench", account, datetime.now(UTC), USAGE))
        written += 1
    store.close()
    results.put((account, written))


def bench_writers(url: str, prefix: str, processes: int,
                  seconds: float) -> tuple[float, dict[str, int], dict[str, int]]:
    ctx = mp.get_context("spawn")
    go = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=writer, args=(url, prefix, f"acct-{i}", go, seconds, results))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    go.wait()
    started = time.perf_counter()
    counted = dict(results.get(timeout=seconds + 60) for _ in procs)
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    with RedisStore(url, key_prefix=prefix) as store:
        totals = store.usage_totals({"bench": datetime(2000, 1, 1, tzinfo=UTC)})
    lost = {}
    for account, n in counted.items():
        found = totals.get(("bench", account), Usage(requests=0))
        if (found.requests, found.input_tokens, found.output_tokens, found.cost_usd) != (
                n, n * USAGE.input_tokens, n * USAGE.output_tokens, n * USAGE.cost_usd):
            lost[account] = n - found.requests
    return sum(counted.values()) / elapsed, counted, lost


# -- 3. the first route after another host wrote -------------------------------------------------------------


def bench_first_route(config: CompiledConfig, store: StateStore, other: StateStore, runs: int) -> list[int]:
    tasks = [Task.from_dict(dict(s.task)) for s in config.scenarios]
    engine = Engine(config, store=store, environ={}, which=installed)
    for task in tasks:
        engine.route(task)
    samples = []
    for i in range(runs):
        other.record_usage(UsageRecord("antigravity", "ag-1", datetime.now(UTC), USAGE))
        time.sleep(store.staleness_s * 1.2 + 0.001)  # past the staleness bound: this route must re-read
        started = time.perf_counter_ns()
        engine.route(tasks[i % len(tasks)])
        samples.append(time.perf_counter_ns() - started)
    return samples


# -- report ---------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a Redis server to use (default: start a private redis-server)")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--per-day", type=int, default=24)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()

    import redis

    load = os.getloadavg()
    config = load_config(CONFIG)
    prefix = f"adws-bench:{uuid.uuid4().hex}:"
    with tempfile.TemporaryDirectory(prefix="adws-bench-") as tmp:
        server = None
        url = args.url
        if url is None:
            from tests.redis_server import RedisServer

            server = RedisServer.start(Path(tmp) / "redis")
            url = server.url
        client = redis.Redis.from_url(url, decode_responses=True)
        version = client.info("server")["redis_version"]
        try:
            end = datetime.now(UTC)
            records = month_of_usage(config, end, args.per_day)
            sqlite = SqliteStore(str(Path(tmp) / "state.sqlite3"))
            sqlite.import_usage(records)
            red = RedisStore(url, key_prefix=prefix)
            red.import_usage(records)

            def commands() -> int:
                return int(client.info("stats")["total_commands_processed"])

            samples, routes, used = bench_routes(config, {"SQLite": sqlite, "Redis": red}, args.rounds, commands)
            rate, counted, lost = bench_writers(url, prefix + "w:", args.processes, args.seconds)
            first_sqlite = bench_first_route(config, sqlite, SqliteStore(sqlite.path), 50)
            first_redis = bench_first_route(config, red, RedisStore(url, key_prefix=prefix), 50)
            sqlite.close()
            red.close()
        finally:
            from tests.redis_server import delete_prefix

            delete_prefix(url, prefix)
            client.close()
            if server is not None:
                server.stop()

    sq, rd = median_us(samples["SQLite"]), median_us(samples["Redis"])
    ratio = rd / sq
    text = "\n".join([
        "# State store: Redis beside SQLite",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}, Redis server {version} on loopback (same machine)",
        f"- Load average when started: {' / '.join(f'{x:.2f}' for x in load)} (1 / 5 / 15 min): the machine is "
        "shared with other work, so timings vary between runs",
        f"- Re-run: `python bench/bench_state_redis.py --rounds {args.rounds} --processes {args.processes} "
        f"--seconds {args.seconds:g}` (writes this file; `--no-report` to only print)",
        "",
        "## Steady-state `route()`",
        "",
        f"The shipped config.toml, its {len(config.scenarios)} scenario tasks in turn, engine clock (`now=None`), "
        f"{len(records):,} usage rows (30 days) in each store; {args.rounds} interleaved rounds.",
        "",
        "| store | median µs | p90 µs | p99 µs |",
        "| --- | --- | --- | --- |",
        *(f"| {label} | {median_us(s):.1f} | {sorted(s)[len(s) * 9 // 10] / 1000:.1f} | "
          f"{sorted(s)[len(s) * 99 // 100] / 1000:.1f} |" for label, s in samples.items()),
        "",
        f"- Redis / SQLite median: **{ratio:.2f}×** (target ≤ {ROUTE_RATIO_TARGET}×)",
        f"- Redis commands processed during {routes:,} timed Redis routes: {used:,} (the change counter, read at "
        f"most once per staleness bound of {POLL_INTERVAL_S * 1000:g} ms: no round trip per route)",
        "",
        "## Ledger writes from several processes",
        "",
        f"{args.processes} processes, each `record_usage` one atomic Lua script (usage row, account index, change "
        f"counter), for {args.seconds:g} s, started together.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| writes/second, all processes together | **{rate:,.0f}** (target ≥ {WRITES_TARGET:,}) |",
        f"| per process | {', '.join(f'{n:,}' for n in counted.values())} |",
        f"| records lost | {lost or 'none'} (every counted record found, tokens and cost exact) |",
        "",
        "## First `route()` after another host wrote",
        "",
        "Another store object (another host) records one usage row; once the staleness bound has passed, one route "
        "is timed: it re-reads the period's usage totals, cooldowns, breakers and leases.",
        "",
        "| store | median µs | max µs |",
        "| --- | --- | --- |",
        f"| SQLite | {median_us(first_sqlite):.0f} | {max(first_sqlite) / 1000:.0f} |",
        f"| Redis | {median_us(first_redis):.0f} | {max(first_redis) / 1000:.0f} |",
        "",
    ])
    publish(text, "state_redis", write=not args.no_report)
    return 0 if not lost and ratio <= ROUTE_RATIO_TARGET and rate >= WRITES_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
