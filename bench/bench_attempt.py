"""Overhead of one attempt through Engine.run() versus a bare subprocess.run() of the same command, and the
cost of falling through five instantly failing tiers.

    python bench/bench_attempt.py [--n 300] [--falls 100] [--keep-runs 200] [--dir DIR] [--profile]
                                  [--fsync-load] [--churn-load]

Engine.run() does everything a coordinator's call does: route (rules, the state snapshot), create the run and
attempt directories and prune old runs, write the prompt file, render argv and environment, run the child
through adws.runner, parse and classify its output, record usage and breaker state in SQLite, and append
one audit line. The state store, audit log and run directories live in a temporary directory under --dir
(default: the system temp dir; give a tmpfs such as /dev/shm to separate CPU cost from file-system cost).
Before timing, the run directory is filled to `keep_runs` by real runs, so pruning old runs costs what it
costs in steady state. Bare and engine runs are then timed alternately in one loop (machine noise hits both
alike) after a warm-up; the paired difference per iteration is the overhead.

`--profile` adds a cProfile of the single-attempt loop and prints where the extra time goes.

`--fsync-load` runs, for the whole bench, a neighbour that writes 4 KiB and fsyncs it every 2 ms in --dir: on a
journaled file system, the journal commits that other processes' fsyncs cause on a shared disk, made reproducible.
On journaled ext4 a new inode (a file or directory created) made while a commit is being written waits for it,
~0.2-0.6 ms, while writes to existing files, links, renames and unlinks stay microseconds; what the engine pays per
attempt on a busy disk is then visible in the figure without depending on what else the machine runs. On ext4
without a journal there are no commits to wait for: the neighbour's fsyncs only cost disk writes.

On ext4 without a journal (this project's VM: no jbd2, `/proc/fs/ext4/*/options`), a new inode near inodes freed in
the last 60 s (360 s while their inode table block is dirty; fs/ext4/ialloc.c, `recently_deleted`, Linux 5.7 and
later) costs CPU for each of them: a bench started right after another one removed its temporary directory
(thousands of files) pays that on every file the engine creates, unless the run root has its runs placed elsewhere
(adws.files.spread_runs). Compare versions alternately, in one process
where possible, and say what else was deleting files meanwhile. `--churn-load` makes that neighbour reproducible: a
process that creates a directory of 200 files in --dir and removes it, every 0.5 s (a test suite under /tmp).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from adws.config.load import compile_config, parse_toml
from adws.engine import Engine

WARMUP = 20
ECHO = "/bin/echo"
FALSE = "/bin/false"

PROMPT = "Say ok."

# One tier whose agent is `/bin/echo PROMPT`: exits 0 printing a text result, which classifies as success.
ONE_TIER = """
[routing]
chain = ["echo"]
[providers.echo]
command_template = ["/bin/echo", "{{ prompt }}"]
prompt = "arg"
output_format = "text"
[providers.echo.models.m]
context_window = 8000
[run]
keep_runs = KEEP
"""

# Five tiers that each fail at once (exit 1, no output: class `error`, action `next_tier`), then stop.
FIVE_FAILING = '[routing]\nchain = ["t1", "t2", "t3", "t4", "t5"]\n[run]\nkeep_runs = KEEP\n' + "".join(
    f'[providers.t{i}]\ncommand_template = ["/bin/false", "{{{{ prompt }}}}"]\nprompt = "arg"\n'
    'output_format = "text"\n' for i in range(1, 6)
)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def make_engine(text: str, tmp: str, keep_runs: int) -> Engine:
    config = compile_config(parse_toml(text.replace("KEEP", str(keep_runs))), "bench", base_dir=tmp)
    env = {**os.environ, "ADWS_STATE_PATH": f"{tmp}/state.sqlite3"}
    return Engine(config, environ=env)


def fill(engine: Engine, runs: int, tmp: str) -> None:
    """Steady state: as many run directories as the config keeps, so every timed run also prunes one."""
    for i in range(runs):
        engine.run({"number": 100_000 + i, "title": "fill"}, prompt=PROMPT, workdir=tmp)


def one_attempt(n: int, keep_runs: int, profile: bool, where: str | None
                ) -> tuple[list[float], list[float], str | None]:
    bare: list[float] = []
    engine_ms: list[float] = []
    profiler = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory(prefix="adws-bench-", dir=where) as tmp:
        engine = make_engine(ONE_TIER, tmp, keep_runs)
        try:
            fill(engine, keep_runs, tmp)
            for i in range(WARMUP + n):
                task = {"number": i, "title": "bench"}
                start = time.perf_counter()
                subprocess.run([ECHO, PROMPT], capture_output=True, check=False)
                middle = time.perf_counter()
                if profiler is not None and i >= WARMUP:
                    profiler.enable()
                result = engine.run(task, prompt=PROMPT, workdir=tmp)
                if profiler is not None:
                    profiler.disable()
                end = time.perf_counter()
                if not result.success or len(result.attempts) != 1:
                    raise SystemExit(f"expected one successful attempt, got: {result.message}")
                if i >= WARMUP:
                    bare.append((middle - start) * 1000)
                    engine_ms.append((end - middle) * 1000)
        finally:
            engine.close()
    report = None
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        report = out.getvalue()
    return bare, engine_ms, report


def fall_through(n: int, keep_runs: int, where: str | None) -> tuple[list[float], list[float]]:
    bare: list[float] = []
    engine_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="adws-bench-", dir=where) as tmp:
        engine = make_engine(FIVE_FAILING, tmp, keep_runs)
        try:
            fill(engine, keep_runs, tmp)
            for i in range(WARMUP + n):
                start = time.perf_counter()
                for _ in range(5):
                    subprocess.run([FALSE, PROMPT], capture_output=True, check=False)
                middle = time.perf_counter()
                result = engine.run({"number": i, "title": "bench"}, prompt=PROMPT, workdir=tmp)
                end = time.perf_counter()
                outcomes = [(a.provider, a.outcome) for a in result.attempts]
                if result.success or outcomes != [(f"t{k}", "error") for k in range(1, 6)]:
                    raise SystemExit(f"expected five failed tiers, got {outcomes}")
                if i >= WARMUP:
                    bare.append((middle - start) * 1000)
                    engine_ms.append((end - middle) * 1000)
        finally:
            engine.close()
    return bare, engine_ms


def table(rows: list[tuple[str, list[float]]]) -> str:
    lines = [f"{'':34}{'median ms':>10}{'p90 ms':>10}"]
    lines += [f"{name:34}{statistics.median(s):10.3f}{percentile(s, 0.9):10.3f}" for name, s in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="timed single-attempt runs (default 300)")
    parser.add_argument("--falls", type=int, default=100, help="timed five-tier fall-throughs (default 100)")
    parser.add_argument("--keep-runs", type=int, default=200, help="[run] keep_runs (default 200, as shipped)")
    parser.add_argument("--dir", help="where the temporary state, audit and run directories go")
    parser.add_argument("--profile", action="store_true", help="cProfile the single-attempt loop")
    parser.add_argument("--fsync-load", action="store_true",
                        help="a neighbour that fsyncs 4 KiB every 2 ms in --dir throughout (see above)")
    parser.add_argument("--churn-load", action="store_true",
                        help="a neighbour that creates and removes 200 files every 0.5 s in --dir (see above)")
    args = parser.parse_args()

    where = args.dir or tempfile.gettempdir()
    print(f"python={sys.version.split()[0]} cpus={os.cpu_count()} keep_runs={args.keep_runs} warm-up={WARMUP} "
          f"dir={where}" + (" fsync-load" if args.fsync_load else "") + (" churn-load" if args.churn_load else ""))
    neighbours: list[subprocess.Popen[bytes]] = []
    try:
        # Started inside the try: when the second cannot start, the first is still ended below.
        if args.fsync_load:
            neighbours.append(neighbour(FSYNC_LOOP, where, "fsync"))
        if args.churn_load:
            neighbours.append(neighbour(CHURN_LOOP, where, "churn"))
        if neighbours:
            time.sleep(0.5)  # long enough for a neighbour that cannot start to have ended
        for process in neighbours:
            if process.poll() is not None:
                raise SystemExit(f"a load neighbour ({' '.join(map(str, process.args))}) ended at once "
                                 f"(exit status {process.returncode}): the figures would be without its load")
        measure(args)
        ended = [process for process in neighbours if process.poll() is not None]
        if ended:
            raise SystemExit(f"{len(ended)} load neighbour(s) ended during the measurement: the figures above were "
                             "taken partly without their load")
    finally:
        for process in neighbours:
            process.terminate()
            process.wait()


FSYNC_LOOP = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.unlink(sys.argv[1])  # gone with the process, however it ends
block, i = b"x" * 4096, 0
while True:
    os.pwrite(fd, block, (i % 256) * 4096)
    os.fsync(fd)
    i += 1
    time.sleep(0.002)
"""


CHURN_LOOP = """
import os, shutil, signal, sys, tempfile, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the finally below removes what is left
# A fresh directory (named after the path given): one left over by a killed bench is never in the way.
base = tempfile.mkdtemp(prefix=os.path.basename(sys.argv[1]) + "-", dir=os.path.dirname(sys.argv[1]))
i = 0
try:
    while True:
        batch = os.path.join(base, str(i))
        os.mkdir(batch)
        for k in range(200):
            os.close(os.open(os.path.join(batch, str(k)), os.O_CREAT | os.O_WRONLY, 0o600))
        shutil.rmtree(batch)
        i += 1
        time.sleep(0.5)
finally:
    shutil.rmtree(base, ignore_errors=True)
"""


def neighbour(code: str, where: str, kind: str) -> subprocess.Popen[bytes]:
    """A process running `code` with one path on `where`'s file system (its own), until terminated."""
    path = os.path.join(where, f"adws-bench-{kind}-{os.getpid()}")
    return subprocess.Popen([sys.executable, "-c", code, path])


def measure(args: argparse.Namespace) -> None:
    bare, engine_ms, report = one_attempt(args.n, args.keep_runs, args.profile, args.dir)
    extra = [e - b for b, e in zip(bare, engine_ms, strict=True)]
    print(f"\none attempt: N={args.n}, command `{ECHO} {PROMPT}` (text result, success)")
    print(table([("subprocess.run (capture_output)", bare), ("Engine.run, one attempt", engine_ms),
                 ("extra (paired)", extra)]))
    print(f"median extra (median engine - median bare): "
          f"{statistics.median(engine_ms) - statistics.median(bare):.3f} ms")

    bare5, engine5 = fall_through(args.falls, args.keep_runs, args.dir)
    extra5 = [e - b for b, e in zip(bare5, engine5, strict=True)]
    print(f"\nfall-through: N={args.falls}, five tiers of `{FALSE}` (error -> next_tier), plan spent")
    print(table([("5 x subprocess.run", bare5), ("Engine.run, 5 attempts", engine5), ("extra (paired)", extra5),
                 ("Engine.run per attempt", [e / 5 for e in engine5]),
                 ("extra per attempt", [x / 5 for x in extra5])]))
    if report is not None:
        print("\nprofile of the single-attempt Engine.run loop:")
        print(report)


if __name__ == "__main__":
    main()
