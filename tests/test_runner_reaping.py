"""Issue 9, "what adws starts, adws ends": a helper the agent daemonises (double fork + setsid: its own session
and process group) is ended with the attempt, on a normal exit and on a timeout, and reaped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

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
table, descendants = runner._process_table, runner._descendant_table
runner._process_table = lambda *args: scans.append(1) or table(*args)
runner._descendant_table = lambda *args: scans.append(1) or descendants(*args)

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


def _hops(log: Path) -> list[tuple[int, int, float]]:
    """(pid, process group, time) of each move of the hopper, from its log."""
    if not log.exists():
        return []
    return [(int(pid), int(group), float(at)) for pid, group, at in
            (line.split() for line in log.read_text().splitlines() if line.count(" ") == 2)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
@pytest.mark.parametrize(("mode", "timeout"), [("hopper", 30), ("hopper_setsid", 30), ("hopper_hang", 1)])
def test_a_helper_that_keeps_changing_its_pid_is_ended_with_its_attempt(tmp_path: Path, mode: str,
                                                                        timeout: float) -> None:
    # The helper forks and lets its parent exit in a loop (bounded by its own 4 s): every pid a /proc scan finds
    # is gone by the time it is signalled. Nothing of it may run once `run` has returned.
    log = tmp_path / "hops"
    request = _request(tmp_path, mode, timeout)
    request = RunRequest(argv=request.argv, env={**request.env, "HOSTILE_HOPLOG": str(log), "HOSTILE_HOP": "4"},
                         cwd=tmp_path, out_dir=tmp_path / "o", timeout=timeout, grace=0.5)
    try:
        outcome = run(request)
        returned = time.time()
        size = log.stat().st_size
        assert outcome.timed_out is (mode == "hopper_hang")
        assert len(_hops(log)) > 10, "the helper did hop while its attempt ran"
        time.sleep(0.3)
        late = [hop for hop in _hops(log) if hop[2] > returned]
        assert log.stat().st_size == size and not late, f"{len(late)} moves after run returned"
        assert all(_gone(pid) for pid, _, _ in _hops(log)[-3:])
    finally:
        for group in {group for _, group, _ in _hops(log)}:  # a failed test leaves nothing running either
            with contextlib.suppress(OSError):
                os.killpg(group, signal.SIGKILL)


# -- ending an attempt never reaches another's processes, and leaves nothing stopped or unreaped -----------------

_NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"


@pytest.mark.skipif(not os.access(_NS_LAST_PID, os.W_OK), reason="forcing a pid's reuse needs ns_last_pid (root)")
@pytest.mark.parametrize("b_state", ["running", "exited"])
def test_a_pid_signalled_at_a_timeout_then_reused_by_another_attempt_is_left_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, b_state: str) -> None:
    # Attempt A times out: its helper C (own session) gets SIGTERM by pid, exits, and A's agent reaps it. C's pid
    # is then reused (forced here, as pid wrap-around does on a busy host) by attempt B's agent, started in
    # another thread. A's end must neither kill B's agent nor reap it (B would report exit 0 for its exit 3).
    # (B's "sleep 5" holds its output pipe: B drains a moment while its exited agent waits, unreaped.)
    pidfile = tmp_path / "pids"
    results: dict[str, object] = {}
    b_may_start = threading.Event()
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    script = "echo $$; sleep 1.5" if b_state == "running" else "echo $$; sleep 5 & exit 3"

    def attempt_b() -> None:
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and "reaped" in pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.005)
        b_may_start.wait(10)
        helper = int(pidfile.read_text().split()[0])
        results["helper"] = helper
        with open(_NS_LAST_PID, "w", encoding="ascii") as fh:
            fh.write(str(helper - 1))
        results["b"] = run(RunRequest(argv=["/bin/sh", "-c", script], env=dict(os.environ), cwd=b_dir,
                                      out_dir=b_dir / "o", timeout=30))

    real_end = runner.end_attempt_processes

    def end(leader: int, attempt_id: str, signalled: object = None, **kwargs: bool) -> None:
        if signalled:  # A's end, after its timeout signalled C: B starts meanwhile
            b_may_start.set()
            time.sleep(0.5 if b_state == "running" else 0.15)
        real_end(leader, attempt_id, signalled, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "end_attempt_processes", end)
    thread = threading.Thread(target=attempt_b)
    thread.start()
    try:
        outcome_a = run(_request(tmp_path, "stale_helper", timeout=1))
    finally:
        b_may_start.set()
        thread.join(30)
    assert outcome_a.timed_out
    b = results["b"]
    assert isinstance(b, runner.RunOutcome)
    if b.stdout_tail.split() != [str(results["helper"])]:
        pytest.skip("another process took the pid first")
    if b_state == "running":
        # Killed, B's agent would show signal 9, or exit 0 early when A's end also reaped it.
        assert (b.exit_code, b.signal) == (0, None) and b.duration_ms >= 1400, "B's agent was killed by A's end"
    else:
        assert (b.exit_code, b.signal) == (3, None), "B's agent was reaped by A's end"


def _tree(tmp_path: Path, marker: str, mib: int = 0) -> tuple[int, int, int]:
    """An agent's leftover R (own session, re-parented to adws) and R's child G (own session), the agent reaped:
    (agent pid, R, G)."""
    become_subreaper()
    agent = subprocess.Popen([sys.executable, str(AGENT), "tree", "p"], start_new_session=True,
                             stdout=subprocess.DEVNULL,
                             env={**os.environ, "HOSTILE_PIDFILE": str(tmp_path / "pids"), "HOSTILE_MB": str(mib),
                                  runner.ATTEMPT_ID_ENV: marker})
    agent.wait(30)
    found = dict(line.split() for line in (tmp_path / "pids").read_text().splitlines())
    return agent.pid, int(found["R"]), int(found["G"])


def _kill_and_reap(tmp_path: Path) -> None:
    """Whatever a tree test left (stopped or running) is killed and reaped, so a failed test leaves nothing."""
    pidfile = tmp_path / "pids"
    pids = [int(word) for word in pidfile.read_text().split() if word.isdigit()] if pidfile.exists() else []
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0 and _state(pid) not in (None, "Z"):
                    continue
            if _state(pid) is None:
                pids.remove(pid)
        time.sleep(0.01)


def _reaped(pid: int) -> bool:
    deadline = time.monotonic() + 2
    while _state(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    return _state(pid) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
def test_what_was_stopped_is_killed_and_reaped_when_the_time_runs_out(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "END_SECONDS", 0.0)  # the stopping ends after its first round
    try:
        agent, helper, grandchild = _tree(tmp_path, "0123456789abcdef")
        runner.end_attempt_processes(agent, "0123456789abcdef", leader_reaped=True)
        assert _reaped(grandchild), f"left {_state(grandchild)}"
        assert _reaped(helper), f"left {_state(helper)}"
    finally:
        _kill_and_reap(tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
def test_what_was_stopped_is_killed_and_reaped_when_interrupted(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Library use: a KeyboardInterrupt arrives in the middle of stopping (here: in its second scan).
    calls: list[int] = []
    real_table = runner._descendant_table

    def table(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_table(*args)

    monkeypatch.setattr(runner, "_descendant_table", table)
    try:
        agent, helper, grandchild = _tree(tmp_path, "fedcba9876543210")
        with pytest.raises(KeyboardInterrupt):
            runner.end_attempt_processes(agent, "fedcba9876543210", leader_reaped=True)
        assert _reaped(grandchild), f"left {_state(grandchild)}"
        assert _reaped(helper), f"left {_state(helper)}"
    finally:
        _kill_and_reap(tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
def test_a_grandchild_killed_with_its_slow_dying_parent_is_reaped(tmp_path: Path) -> None:
    # R holds memory, so it takes a while to exit once killed: G, killed too, is R's child until then, and
    # adws's zombie after. It must be waited for and reaped, not forgotten.
    before = _zombie_children()
    try:
        for _ in range(3):
            (tmp_path / "pids").unlink(missing_ok=True)
            outcome = run(RunRequest(argv=[sys.executable, str(AGENT), "tree", "p"],
                                     env={**os.environ, "HOSTILE_PIDFILE": str(tmp_path / "pids"),
                                          "HOSTILE_MB": "300"},
                                     cwd=tmp_path, out_dir=tmp_path / "o", timeout=30))
            assert outcome.exit_code == 0
            found = dict(line.split() for line in (tmp_path / "pids").read_text().splitlines())
            time.sleep(0.3)
            assert {name: _state(int(pid)) for name, pid in found.items()} == {"R": None, "G": None}
            _kill_and_reap(tmp_path)
        assert _zombie_children() <= before
    finally:
        _kill_and_reap(tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
def test_another_process_of_adws_exiting_does_not_make_the_end_spin(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Another attempt's agent, holding much memory, takes a while to exit just as this attempt ends: it is not
    # this attempt's, so it is no reason to scan again and again.
    big = subprocess.Popen([sys.executable, "-c", "b = bytearray(2 << 30)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
                            "print('ready', flush=True)\nimport time; time.sleep(60)"], stdout=subprocess.PIPE)
    scans: list[int] = []
    real_table, real_descendants = runner._process_table, runner._descendant_table
    real_end = runner.end_attempt_processes
    monkeypatch.setattr(runner, "_process_table", lambda *args: scans.append(1) or real_table(*args))
    monkeypatch.setattr(runner, "_descendant_table", lambda *args: scans.append(1) or real_descendants(*args))

    def end(*args: Any, **kwargs: Any) -> None:
        big.kill()  # the sibling starts exiting now (freeing its memory takes a while)
        deadline = time.monotonic() + 2
        while (entry := runner._stat_entry(big.pid)) and entry[1] not in (runner.EXITING, "Z"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.0005)
        real_end(*args, **kwargs)

    monkeypatch.setattr(runner, "end_attempt_processes", end)
    runner._register_leader(big.pid, True)  # it stands for another attempt's agent
    try:
        assert big.stdout is not None and big.stdout.readline() == b"ready\n"
        outcome = run(RunRequest(argv=["/bin/true"], env=dict(os.environ), cwd=tmp_path, out_dir=tmp_path / "o",
                                 timeout=30))
        assert outcome.exit_code == 0
        assert len(scans) <= 10
    finally:
        runner._register_leader(big.pid, False)
        big.kill()
        big.wait(30)
        if big.stdout is not None:
            big.stdout.close()


def test_a_cached_zombie_is_forgotten_once_adws_reaped_any(tmp_path: Path) -> None:
    # A zombie's entry is cached between scans; once any thread of adws reaped (a pid may then name another
    # process), the cache is dropped. A run's own wait for its agent counts.
    before = runner._count_reaps(0)
    run(RunRequest(argv=["/bin/true"], env=dict(os.environ), cwd=tmp_path, out_dir=tmp_path / "o", timeout=30))
    assert runner._count_reaps(0) > before
    ending = runner._Ending(os.getpid(), "00ff00ff00ff00ff", True, {})
    ending.zombies_seen[2 ** 22 + 1] = (os.getpid(), "Z", 1, 1, 0)
    runner._count_reaps()
    ending.scan()
    assert 2 ** 22 + 1 not in ending.zombies_seen
