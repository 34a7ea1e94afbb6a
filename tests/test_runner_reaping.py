"""Issue 9, "what adws starts, adws ends": a helper the agent daemonises (double fork + setsid: its own session
and process group) is ended with the attempt, on a normal exit and on a timeout, and reaped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adws import runner
from adws.runner import RunRequest, attempt_processes, become_subreaper, run
from tests.hostile import AGENT, config_text, engine


def _state(pid: int) -> str | None:
    """The process's state letter, or None when it no longer exists (reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 5  # SIGKILL is asynchronous; bounded wait for the kernel to finish it
    while _state(pid) not in (None, "Z"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _request(tmp_path: Path, mode: str, timeout: float = 30) -> RunRequest:
    env = {**os.environ, "HOSTILE_PIDFILE": str(tmp_path / "pids")}
    return RunRequest(argv=[sys.executable, str(AGENT), mode, "p"], env=env, cwd=tmp_path, out_dir=tmp_path / "o",
                      timeout=timeout, grace=0.5)


def _helpers(tmp_path: Path) -> list[int]:
    return [int(line) for line in (tmp_path / "pids").read_text().split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
def test_adws_is_the_subreaper() -> None:
    assert become_subreaper()
    with open("/proc/self/status", encoding="ascii") as fh:
        assert any(line.startswith("PPid:") for line in fh)


@pytest.mark.parametrize(("mode", "timeout", "timed_out"), [("daemon", 30, False), ("daemon_hang", 1, True)])
def test_a_daemonised_helper_is_ended_with_its_attempt(tmp_path: Path, mode: str, timeout: float,
                                                       timed_out: bool) -> None:
    outcome = run(_request(tmp_path, mode, timeout))
    assert outcome.timed_out is timed_out
    [helper] = _helpers(tmp_path)
    assert _gone(helper)
    assert _state(helper) is None, "re-parented to adws, the helper was reaped too (no zombie left)"


def test_a_helper_of_another_attempt_is_left_alone(tmp_path: Path) -> None:
    # Two attempts' processes are told apart by their marker: ending one attempt never touches another's.
    other = tmp_path / "other"
    other.mkdir()
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env={**os.environ, runner.ATTEMPT_ID_ENV: "0000000000000000"})
    try:
        run(_request(tmp_path, "daemon"))
        assert _state(stranger.pid) not in (None, "Z")
    finally:
        stranger.kill()
        stranger.wait()


def test_attempt_processes_finds_a_setsid_helper_by_its_marker(tmp_path: Path) -> None:
    become_subreaper()
    marker = "feedfacecafebeef"
    leader = subprocess.Popen([sys.executable, str(AGENT), "daemon", "p"], start_new_session=True,
                              env={**os.environ, "HOSTILE_PIDFILE": str(tmp_path / "pids"),
                                   runner.ATTEMPT_ID_ENV: marker}, stdout=subprocess.DEVNULL)
    leader.wait()
    [helper] = _helpers(tmp_path)
    running, _ = attempt_processes(leader.pid, marker)
    assert helper in running  # re-parented to us, found by its marker although its leader is gone
    runner.end_attempt_processes(leader.pid, marker)
    assert _gone(helper)


def test_engine_run_leaves_no_helper_behind(tmp_path: Path) -> None:
    result = engine(tmp_path, config_text("daemon")).run({"id": "t"}, prompt="go", workdir=tmp_path)
    assert result.success
    assert all(_gone(pid) for pid in _helpers(tmp_path))


def _zombie_children() -> set[int]:
    """This process's children that have exited and were not reaped."""
    me, found = os.getpid(), set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == me:
                found.add(int(name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
def test_a_child_left_in_the_group_is_reaped_not_left_a_zombie(tmp_path: Path) -> None:
    # The leader exits at once; its background child dies of the group's SIGKILL, usually before adws looks:
    # re-parented to adws as a zombie, it is recognised by its process group (a zombie shows no environment).
    pidfile = tmp_path / "child"
    before = _zombie_children()
    for _ in range(5):
        outcome = run(RunRequest(argv=["/bin/sh", "-c", f"sleep 30 >/dev/null 2>&1 & echo $! > {pidfile}; echo hi"],
                                 env=dict(os.environ), cwd=tmp_path, out_dir=tmp_path / "o", timeout=30))
        assert outcome.exit_code == 0
        assert _state(int(pidfile.read_text())) is None, "the background child was killed and reaped"
    assert _zombie_children() <= before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
def test_a_daemons_first_fork_is_reaped_too(tmp_path: Path) -> None:
    # Double fork + setsid: the first fork exits as soon as it forked the helper; re-parented to adws, it is
    # recognised as the attempt's because it leads the helper's session.
    before = _zombie_children()
    outcome = run(_request(tmp_path, "daemon"))
    assert outcome.exit_code == 0
    [helper] = _helpers(tmp_path)
    assert _state(helper) is None
    assert _zombie_children() <= before


# Run in a fresh interpreter: whether adws has children is a property of the whole process, and other tests
# may leave children of their own in the test process.
_FAST_PATH = """
import os, subprocess, sys
from adws import runner
from adws.runner import RunRequest, has_children, run

scans = []
table = runner._process_table
runner._process_table = lambda: scans.append(1) or table()

def attempt(*argv):
    return run(RunRequest(argv=list(argv), env=dict(os.environ), cwd=".", out_dir="o", timeout=30))

print("children at start", has_children())
attempt("/bin/echo", "hi")
print("scans after a clean attempt", len(scans))
stranger = subprocess.Popen(["sleep", "30"])
print("children with a stranger", has_children())
attempt("/bin/echo", "hi")
print("scans with a stranger", len(scans) > 0)
print("stranger still running", stranger.poll() is None)
stranger.kill()
os.waitid(os.P_PID, stranger.pid, os.WEXITED | os.WNOWAIT)
print("children with a zombie", has_children())
stranger.wait()
print("children after wait", has_children())
scans.clear()
attempt("/bin/sh", "-c", "sleep 30 >/dev/null 2>&1 & echo hi")
print("scans after an attempt that left a child", len(scans) > 0)
print("children after that attempt", has_children())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
def test_the_proc_scan_runs_only_when_adws_has_children(tmp_path: Path) -> None:
    shown = subprocess.run([sys.executable, "-c", _FAST_PATH], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                           timeout=60, check=True).stdout.splitlines()
    assert shown == ["children at start False", "scans after a clean attempt 0", "children with a stranger True",
                     "scans with a stranger True", "stranger still running True", "children with a zombie True",
                     "children after wait False", "scans after an attempt that left a child True",
                     "children after that attempt False"]
