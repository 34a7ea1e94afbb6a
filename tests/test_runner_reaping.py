"""Issue 9, "what adws starts, adws ends": a helper the agent daemonises (double fork + setsid: its own session
and process group) is ended with the attempt, on a normal exit and on a timeout, and reaped."""

from __future__ import annotations

import os
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
    import subprocess

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env={**os.environ, runner.ATTEMPT_ID_ENV: "0000000000000000"})
    try:
        run(_request(tmp_path, "daemon"))
        assert _state(stranger.pid) not in (None, "Z")
    finally:
        stranger.kill()
        stranger.wait()


def test_attempt_processes_finds_a_setsid_helper_by_its_marker(tmp_path: Path) -> None:
    import subprocess

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
