"""Per-attempt overhead of adws.runner.run() versus a bare subprocess.run() of the same command.

    python bench/bench_runner.py [--n 200] [--command /bin/true]

Both are timed alternately in one loop (so machine noise hits both alike), after a short warm-up. run()
does real per-attempt work — creating the attempt directory, the two log files and the pipes, the poll
loop and the final group sweep — so each iteration gets a fresh out_dir, as an attempt would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from adws.runner import RunRequest, run

WARMUP = 10


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(n: int, command: str) -> tuple[list[float], list[float]]:
    bare: list[float] = []
    wrapped: list[float] = []
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="adws-bench-") as tmp:
        for i in range(WARMUP + n):
            request = RunRequest(argv=[command], env=env, cwd=tmp, out_dir=f"{tmp}/attempt-{i}", timeout=10.0)
            start = time.perf_counter()
            subprocess.run([command], check=False)
            middle = time.perf_counter()
            outcome = run(request)
            end = time.perf_counter()
            if outcome.exit_code != 0:
                raise SystemExit(f"{command} failed under run(): {outcome}")
            if i >= WARMUP:
                bare.append((middle - start) * 1000)
                wrapped.append((end - middle) * 1000)
    return bare, wrapped


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="timed iterations of each (default 200)")
    parser.add_argument("--command", default="/bin/true", help="a trivial command (default /bin/true)")
    args = parser.parse_args()

    bare, wrapped = measure(args.n, args.command)
    extra = [w - b for b, w in zip(bare, wrapped, strict=True)]
    print(f"N={args.n} command={args.command} python={sys.version.split()[0]} cpus={os.cpu_count()}")
    print(f"{'':24}{'median ms':>10}{'p90 ms':>10}")
    for name, samples in (("subprocess.run", bare), ("adws.runner.run", wrapped), ("extra (paired)", extra)):
        print(f"{name:24}{statistics.median(samples):10.3f}{percentile(samples, 0.9):10.3f}")
    difference = statistics.median(wrapped) - statistics.median(bare)
    print(f"median extra (median run - median bare): {difference:.3f} ms")


if __name__ == "__main__":
    main()
