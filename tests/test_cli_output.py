"""Standard output and error that fail (a full disk, a closed pipe, a file size limit, a closed descriptor) and
stop signals while a result is printed: what ran stays recorded, no traceback, nothing left running, exit codes
keep their meaning (3: the output could not be written)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adws import audit, cli, interrupts
from adws.errors import Interrupted
from tests.helpers import RECORDS_BESIDE, ROOT
from tests.test_cli_signals import _live_members

AGENT = """
import os, sys, time
mode = sys.argv[1].rstrip("0123456789")
log = os.environ.get("AGENT_PIDS")
if log:
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()}\\n")
if mode == "slow":
    print("working", flush=True)
    time.sleep(30)
if mode == "short":
    time.sleep(1)
if mode == "big":
    sys.stdout.write("x" * 600_000 + "\\n")
print("done")
"""

CONFIG = """
[routing]
chain = ["a"]
[routing.retry]
max_retries = 0
[providers.a]
command_template = ["PYTHON", "AGENT", "{{ task.id }}"]
prompt = "stdin"
output_format = "text"
timeout = 60
kill_grace = 1
""" + RECORDS_BESIDE

RUN = ["run", "--config", "c.toml", "--prompt-file", "p.txt", "--task-json"]


@pytest.fixture
def here(tmp_path: Path) -> Path:
    (tmp_path / "agent.py").write_text(AGENT, encoding="utf-8")
    config = CONFIG.replace("PYTHON", sys.executable).replace("AGENT", str(tmp_path / "agent.py"))
    (tmp_path / "c.toml").write_text(config, encoding="utf-8")
    (tmp_path / "p.txt").write_text("fix it", encoding="utf-8")
    return tmp_path


def _env(here: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADWS_")}
    return {**env, "PYTHONPATH": str(ROOT), "ADWS_CACHE_DIR": str(here / "cache"), "AGENT_PIDS": str(here / "pids"),
            **extra}


def adws(here: Path, *args: str, stdout: Any = subprocess.PIPE, stderr: Any = subprocess.PIPE,
         preexec: Callable[[], None] | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adws", *args], cwd=here, env=_env(here, **env), stdout=stdout,
                          stderr=stderr, text=True, timeout=120, check=False, preexec_fn=preexec)


def recorded(here: Path) -> dict[str, Any]:
    """The audit records by task id."""
    return {r["task"]["id"]: r for r in audit.read(here / "audit.jsonl")}


def no_agent_left(here: Path) -> None:
    pids = [int(p) for p in (here / "pids").read_text().split()] if (here / "pids").exists() else []
    deadline = time.monotonic() + 10
    while any(_live_members(pid) for pid in pids):
        assert time.monotonic() < deadline, "an agent outlived adws"
        time.sleep(0.05)


# -- standard output that fails ------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [["--json"], []])
def test_run_into_a_full_disk_exits_3_with_one_line_and_keeps_the_record(here: Path, flags: list[str]) -> None:
    with open("/dev/full", "w") as full:
        done = adws(here, *RUN, '{"id": "t"}', *flags, stdout=full)
    assert done.returncode == cli.EXIT_OUTPUT
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == ("adws: cannot write to standard output: No space left on device; what "
                                            "ran is recorded (audit log, run directory)")
    assert recorded(here)["t"]["success"] is True


@pytest.mark.parametrize("args", [["route", "--config", "c.toml", "--task-json", '{"id": "t"}', "--json"],
                                  ["route", "--config", "c.toml", "--task-json", '{"id": "t"}', "--explain"],
                                  ["providers", "--config", "c.toml"], ["schema"], ["--help"], ["route", "--help"],
                                  ["state", "export", "--config", "c.toml"]])
def test_every_command_into_a_full_disk_exits_3_without_a_traceback(here: Path, args: list[str]) -> None:
    if args[0] == "state":
        adws(here, *RUN, '{"id": "t"}')  # a store to export
    with open("/dev/full", "w") as full:
        done = adws(here, *args, stdout=full)
    assert (done.returncode, done.stderr) == (cli.EXIT_OUTPUT,
                                              "adws: cannot write to standard output: No space left on device\n")


def test_a_file_size_limit_on_stdout_exits_3(here: Path) -> None:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, resource.RLIM_INFINITY))

    with open(here / "out.txt", "w") as out:
        done = adws(here, "route", "--config", "c.toml", "--task-json", '{"id": "t"}', "--explain", "--json",
                    "--assume-available", stdout=out, preexec=limit)
    assert (done.returncode, done.stderr) == (cli.EXIT_OUTPUT,
                                              "adws: cannot write to standard output: File too large\n")


def test_stdout_closed_before_start_exits_3(here: Path) -> None:
    done = adws(here, *RUN, '{"id": "t"}', "--json", preexec=lambda: os.close(1))
    assert done.returncode == cli.EXIT_OUTPUT
    assert done.stderr.splitlines()[-1].startswith("adws: cannot write to standard output: it is closed")
    assert recorded(here)["t"]["success"] is True


def test_a_reader_that_left_ends_a_query_quietly_but_a_run_says_its_result_was_lost(here: Path) -> None:
    reader, writer = os.pipe()
    os.close(reader)
    try:
        route = adws(here, "route", "--config", "c.toml", "--task-json", '{"id": "t"}', "--json", stdout=writer)
        run = adws(here, *RUN, '{"id": "t"}', "--json", stdout=writer)
    finally:
        os.close(writer)
    assert (route.returncode, route.stderr) == (cli.EXIT_OUTPUT, "")
    assert run.returncode == cli.EXIT_OUTPUT
    assert run.stderr.splitlines()[-1].startswith("adws: cannot write to standard output: Broken pipe; what ran")
    assert recorded(here)["t"]["success"] is True


def test_run_many_whose_stdout_goes_away_stops_and_records_every_task(here: Path) -> None:
    # The first result cannot be written (the coordinator is gone): the slow task is not left running, orphaned.
    (here / "tasks.jsonl").write_text('{"task": {"id": "short"}, "prompt": "x"}\n{"task": {"id": "slow"}, '
                                      '"prompt": "x"}\n', encoding="utf-8")
    reader, writer = os.pipe()
    os.close(reader)
    started = time.monotonic()
    try:
        done = adws(here, "run-many", "--config", "c.toml", "--tasks", "tasks.jsonl", "--json", "--quiet",
                    stdout=writer)
    finally:
        os.close(writer)
    assert time.monotonic() - started < 20  # not the slow agent's 30 s
    assert done.returncode == cli.EXIT_OUTPUT, done.stderr
    assert "Traceback" not in done.stderr
    records = recorded(here)
    assert records["short"]["success"] is True
    assert records["slow"]["success"] is False and records["slow"]["attempts"][0]["reason"].startswith("cancelled")
    no_agent_left(here)


def test_run_many_with_stderr_gone_runs_and_records_every_task(here: Path) -> None:
    (here / "tasks.jsonl").write_text('{"task": {"id": "t1"}, "prompt": "x"}\n{"task": {"id": "t2"}, '
                                      '"prompt": "x"}\n', encoding="utf-8")
    reader, writer = os.pipe()
    os.close(reader)
    try:  # progress lines on stderr: a closed pipe there ends the view, not the tasks
        done = adws(here, "run-many", "--config", "c.toml", "--tasks", "tasks.jsonl", stderr=writer)
    finally:
        os.close(writer)
    assert done.returncode == 0
    assert sorted(done.stdout.splitlines()) == ["OK t1: succeeded on a", "OK t2: succeeded on a"]
    assert {k: r["success"] for k, r in recorded(here).items()} == {"t1": True, "t2": True}
    closed = adws(here, *RUN, '{"id": "t3"}', preexec=lambda: os.close(2), stderr=None)
    assert closed.returncode == 0 and "OK: succeeded on a" in closed.stdout  # stderr closed before the start


# -- a stop signal while the result is printed --------------------------------------------------------------


def test_sigterm_while_a_result_is_printed_lets_it_finish_and_exits_as_the_task_ended(here: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "adws", *RUN, '{"id": "big"}', "--json", "--quiet"], cwd=here,
                            env=_env(here), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = os.read(proc.stdout.fileno(), 1)  # the result is being printed: the rest waits in a full pipe
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    out, err = proc.communicate(timeout=60)
    result = json.loads(first + out)  # whole
    assert result["success"] is True and proc.returncode == 0
    assert err.decode().splitlines()[-1] == "adws: SIGTERM arrived after the task had ended; its result stands"


def test_a_result_nobody_reads_after_a_stop_signal_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process: stdout a pipe nobody reads; SIGTERM arrives; the grace passes: OutputError, not a hang.
    monkeypatch.setattr(cli, "PRINT_GRACE_SECONDS", 0.5)
    reader, writer = os.pipe()
    stream = io.TextIOWrapper(io.FileIO(writer, "w"), encoding="utf-8")
    guarded = cli._Guarded(stream, fatal=True)
    monkeypatch.setattr(sys, "stdout", guarded)
    alarm = signal.getsignal(signal.SIGALRM)
    restore = interrupts.install((signal.SIGTERM,))  # as `main` does for `adws run`
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    done = threading.Event()

    def drain() -> None:
        # The test's bound: should the grace never end the write, the pipe is read after 30 s, the write completes,
        # and the test fails (no OutputError) instead of hanging.
        if not done.wait(30):
            with contextlib.suppress(OSError):
                while os.read(reader, 1 << 16):
                    pass

    watchdog = threading.Thread(target=drain, daemon=True)
    watchdog.start()
    timer.start()
    try:
        with pytest.raises(cli.OutputError, match=r"not read within 0\.5 s of SIGTERM"):
            try:
                with cli._printing_whole():
                    cli._write_whole("x" * 1_000_000)
            except KeyboardInterrupt:  # the write ended (drained) and the held SIGTERM came: no grace
                pytest.fail("the output was not given up within the grace")
        assert signal.getsignal(signal.SIGALRM) == alarm  # the handler before it is back
    finally:
        done.set()
        timer.cancel()
        restore()
        monkeypatch.setattr(sys, "stdout", sys.__stdout__)
        with contextlib.suppress(OSError):
            stream.close()  # the drain (if it ran) sees the end of the pipe
        watchdog.join(10)
        os.close(reader)


def test_an_interrupted_run_that_carries_its_result_prints_it_and_exits_130(
        here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # E.g. a stop while `--wait` waits for capacity: the attempts made so far are printed, the exit code is 130.
    from adws.engine import Engine

    real_run = Engine.run
    ended: list[Any] = []

    def stopped(self: Engine, *args: Any, **kwargs: Any) -> Any:
        result = real_run(self, *args, **kwargs)
        ended.append(result)
        raise Interrupted("SIGTERM", result)

    monkeypatch.chdir(here)
    monkeypatch.setenv("ADWS_CACHE_DIR", str(here / "cache"))
    monkeypatch.setattr(Engine, "run", stopped)
    (here / "agent.py").write_text("import sys; print('nope', file=sys.stderr); sys.exit(1)\n", encoding="utf-8")
    assert cli.main([*RUN, '{"id": "t"}', "--json"]) == 130
    out, err = capsys.readouterr()
    assert json.loads(out)["success"] is False and len(json.loads(out)["attempts"]) == 1
    assert err.splitlines()[-1] == "adws: interrupted by SIGTERM; the agent's processes were stopped"
    # A stop that came once the task had succeeded (while its record was written) leaves its result standing.
    (here / "agent.py").write_text("print('done')\n", encoding="utf-8")
    assert cli.main([*RUN, '{"id": "t2"}', "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["success"] is True
    assert err.splitlines()[-1] == "adws: SIGTERM arrived after the task had ended; its result stands"
