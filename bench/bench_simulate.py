"""Benchmark `adws simulate`: a week of about 1,000 tasks on the shipped config, the real engine end to end.

    python bench/bench_simulate.py               # 3 runs, writes bench/results/simulate.md
    python bench/bench_simulate.py --runs 1 --no-report

Reports wall and CPU time per run (the machine is shared, so CPU time is the steadier figure) and tasks per second.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import machine, publish  # noqa: E402  (bench/ is on sys.path when run as a script)

from adws.config import load_config  # noqa: E402
from adws.insight import simulate, workload  # noqa: E402

START = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    config = load_config(REPO / "config.toml")
    spec = workload.Workload(tasks_per_day=1000 / 7, weekend_factor=1.0)
    tasks = workload.generate(spec, START, 7, random.Random(1))
    rows = []
    for _ in range(args.runs):
        wall, cpu = time.perf_counter(), time.process_time()
        sim = simulate.simulate(config, tasks, workload=spec, start=START, days=7, seed=1)
        rows.append((time.perf_counter() - wall, time.process_time() - cpu, sim.tasks, sim.attempts))
    best = min(rows)
    lines = [f"# adws simulate: a week of work on the shipped config ({datetime.now(UTC):%Y-%m-%d})", "",
             f"machine: {machine()}", "",
             "| run | tasks | attempts | wall s | CPU s | tasks/s (wall) |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {i} | {n} | {a} | {w:.2f} | {c:.2f} | {n / w:,.0f} |" for i, (w, c, n, a) in enumerate(rows, 1)]
    lines += ["", f"best: {best[2]} tasks in {best[0]:.2f} s wall ({best[1]:.2f} s CPU)"]
    publish("\n".join(lines) + "\n", "simulate", write=not args.no_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
