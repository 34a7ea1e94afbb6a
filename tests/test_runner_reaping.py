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

import pytest

from adws import runner
from adws.attempt import RunOutcome
from adws.runner import RunRequest, attempt_processes, become_subreaper, run
from tests.hostile import AGENT, config_text, engine


def _state(pid: int) -> str | None:
    """The process's state letter, or None when it no longer exists (reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _gone(pid: int, bound: float = 5) -> bool:
    deadline = time.monotonic() + bound  # SIGKILL is asynchronous; bounded wait for the kernel to finish it
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


# -- a pid remembered from a scan, reused meanwhile (attempts run side by side in threads) -----------------------
#
# The kernel recycling a pid cannot be arranged on demand, so these tests hand one attempt's end a process it holds
# (as from an earlier scan) at a pid that, meanwhile, names another attempt's leader or another child of adws.

_WITHOUT_PIDFDS = [pytest.param(False, id="pidfd"), pytest.param(True, id="no-pidfd")]


def _open_writer(fifo: Path) -> int:
    """The write end of `fifo`, once its reader has opened it (a bounded wait: the reader is a child starting)."""
    for _ in range(3000):
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            time.sleep(0.01)
    raise AssertionError(f"nothing opened {fifo} to read")


def _other_attempt(tmp_path: Path, script: str) -> tuple[threading.Thread, dict[str, RunOutcome], int, int]:
    """Attempt B, running `script` (sh) in a thread until the test closes the writer of tmp_path/fifo: (its
    thread, where its outcome lands, its leader's pid, that writer)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done: dict[str, RunOutcome] = {}
    request = RunRequest(argv=["/bin/sh", "-c", script.format(fifo=fifo, pidfile=tmp_path / "b.pid")],
                         env=dict(os.environ), cwd=tmp_path, out_dir=tmp_path / "b", timeout=600)
    thread = threading.Thread(target=lambda: done.setdefault("b", run(request)))
    thread.start()
    writer = _open_writer(fifo)  # B's script wrote its pid before it opened the fifo
    return thread, done, int((tmp_path / "b.pid").read_text()), writer


def _end_attempt_a(held_pid: int, held: runner._Held | None) -> None:
    """End attempt A (its leader exited and was reaped) holding `held` at `held_pid`, as its earlier scans left it."""
    leader = subprocess.Popen(["/bin/true"])
    leader.wait()
    assert held is not None
    runner.end_attempt_processes(leader.pid, "a" * 16, {held_pid: held}, leader_reaped=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
@pytest.mark.parametrize("without_pidfds", _WITHOUT_PIDFDS)
def test_a_stale_pid_never_reaps_another_attempts_exited_leader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, without_pidfds: bool) -> None:
    # B's agent exits 3 while its child holds B's output pipe (B waits for it, its leader unreaped). A's end holds
    # a process at that pid with B's leader's very start time (a reuse within one clock tick; with pidfds, a scan
    # that took B's leader for A's): only the list of live leaders keeps A from taking B's exit status (B would then
    # report exit 0).
    if without_pidfds:
        monkeypatch.delattr(os, "pidfd_open")
    monkeypatch.setattr(runner, "DRAIN_SECONDS", 600)  # B waits for its pipes until the test lets them close
    thread, done, b_leader, writer = _other_attempt(
        tmp_path, "echo $$ > {pidfile}; (read x < {fifo}) & exit 3")
    try:
        os.waitid(os.P_PID, b_leader, os.WEXITED | os.WNOWAIT)  # B's agent has exited, not reaped
        _end_attempt_a(b_leader, runner._Held.take(b_leader, runner._start_time(b_leader) or -1))
    finally:
        os.close(writer)
        thread.join()
    assert (done["b"].exit_code, done["b"].signal) == (3, None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
@pytest.mark.parametrize("without_pidfds", _WITHOUT_PIDFDS)
def test_a_process_held_since_gone_is_not_signalled_or_reaped_at_its_reused_pid(
        monkeypatch: pytest.MonkeyPatch, without_pidfds: bool) -> None:
    # A held a process that exited and was reaped; its pid now names another child of adws (not a leader: a git
    # command, say). Through its pidfd, or its start time, A's end leaves that child alone, running or exited.
    if without_pidfds:
        monkeypatch.delattr(os, "pidfd_open")
    gone = subprocess.Popen(["/bin/true"])
    gone_start = runner._start_time(gone.pid)
    assert gone_start is not None
    # Handles on it, one per use below (an end of A takes over and closes the one it is given).
    handles = [runner._Held.take(gone.pid, gone_start) for _ in range(3)]
    gone.wait()
    # A pid reused within the clock tick its process started in shows the same start time (only the pidfd tells
    # them apart then); the kernel takes far longer to cycle through every pid, not this test.
    for _ in range(1000):
        other = subprocess.Popen(["/bin/sh", "-c", "read x; exit 3"], stdin=subprocess.PIPE)
        if runner._start_time(other.pid) != gone_start:
            break
        other.kill()
        other.wait()
        time.sleep(0.001)
    assert other.stdin is not None and runner._start_time(other.pid) != gone_start
    try:
        held = handles.pop()
        assert held is not None
        # What A held, now at the other child's pid.
        runner._Held(other.pid, gone_start, held.fd).signal(signal.SIGKILL)
        held = handles.pop()
        assert held is not None
        _end_attempt_a(other.pid, runner._Held(other.pid, gone_start, held.fd))
        assert other.poll() is None, "killed by A"
        other.stdin.close()
        os.waitid(os.P_PID, other.pid, os.WEXITED | os.WNOWAIT)
        held = handles.pop()
        assert held is not None
        _end_attempt_a(other.pid, runner._Held(other.pid, gone_start, held.fd))
    finally:
        other.kill()
        for left in handles:
            if left is not None:
                left.close()
    assert other.wait() == 3, "reaped by A's end (subprocess then says 0)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
@pytest.mark.parametrize("without_pidfds", _WITHOUT_PIDFDS)
def test_a_process_replaced_between_scan_and_signal_is_left_alone(
        monkeypatch: pytest.MonkeyPatch, without_pidfds: bool) -> None:
    # A's scan saw a process of its own at a pid; by the time A signals, that process is gone and the pid names
    # another (made here by the scan reporting an earlier start time than the process now at that pid has).
    if without_pidfds:
        monkeypatch.delattr(os, "pidfd_open")
    become_subreaper()
    marker = "0123456789abcdef"
    stranger = subprocess.Popen(["sleep", "60"], env={**os.environ, runner.ATTEMPT_ID_ENV: marker})
    table = runner._process_table

    def earlier() -> dict[int, runner._Entry]:
        found = table()
        if stranger.pid in found:
            found[stranger.pid] = found[stranger.pid]._replace(start=found[stranger.pid].start - 1)
        return found

    monkeypatch.setattr(runner, "_process_table", earlier)
    leader = subprocess.Popen(["/bin/true"])
    leader.wait()
    try:
        assert stranger.pid in attempt_processes(leader.pid, marker, leader_reaped=True)[0]
        runner.end_attempt_processes(leader.pid, marker, leader_reaped=True)
        assert stranger.poll() is None, "the process now at the pid was killed"
    finally:
        stranger.kill()
        stranger.wait()


# -- adws itself SIGKILLed ------------------------------------------------------------------------------------

# The agent reads its stdin before it says it runs: adws writes the stdin once the agent is started and listed.
_KILLED_ADWS = """
import os
from adws.runner import RunRequest, run
run(RunRequest(argv=["/bin/sh", "-c", "read x; echo $$ > agent.pid; exec sleep 600"], env=dict(os.environ),
               cwd=".", out_dir="o", timeout=600, stdin=b"go\\n"))
"""


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
        return {int(child) for child in fh.read().split()}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
def test_a_sigkill_of_adws_ends_its_running_agent(tmp_path: Path) -> None:
    become_subreaper()  # what adws leaves is re-parented to this process, which reaps it below
    adws = subprocess.Popen([sys.executable, "-c", _KILLED_ADWS], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    pidfile = tmp_path / "agent.pid"
    try:
        for _ in range(6000):  # bounded: a loaded machine starts Python slowly
            if pidfile.exists() and pidfile.read_text().strip():
                break
            assert adws.poll() is None, "adws ended before its agent ran"
            time.sleep(0.01)
        agent = int(pidfile.read_text())
        others = _children(adws.pid) - {agent}  # the guard
    finally:
        adws.kill()
        adws.wait()
    try:
        assert _gone(agent, bound=60), "the agent outlived adws"
    finally:
        for pid in {agent} | others:  # re-parented to this process: reaped, as each exits
            if _state(pid) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux")
def test_a_guard_that_died_is_replaced_and_told_every_live_group(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Killed by someone else, the guard is noticed at the next attempt's start, reaped, and a new one is told of
    # every attempt still running (here, the one starting).
    run(RunRequest(argv=["/bin/true"], env=dict(os.environ), cwd=tmp_path, out_dir=tmp_path / "o", timeout=30))
    assert runner._guard is not None
    dead = runner._guard.proc
    dead.kill()
    os.waitid(os.P_PID, dead.pid, os.WEXITED | os.WNOWAIT)
    seen: list[bytes] = []
    send = runner._Guard.send

    def sent(guard: runner._Guard, line: bytes) -> bool:
        seen.append(line)
        return send(guard, line)

    monkeypatch.setattr(runner._Guard, "send", sent)
    outcome = run(RunRequest(argv=["/bin/sh", "-c", "echo $$"], env=dict(os.environ), cwd=tmp_path,
                             out_dir=tmp_path / "o", timeout=30))
    leader = int(outcome.stdout_tail)
    assert dead.returncode is not None, "the dead guard was reaped"
    assert runner._guard is not None and runner._guard.proc is not dead
    assert seen == [b"+%d\n" % leader, b"+%d\n" % leader, b"-%d\n" % leader]  # to the dead one, then the new one


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_child_forked_while_another_thread_starts_an_agent_can_run_its_own(tmp_path: Path) -> None:
    # multiprocessing's default on Linux: os.fork() while another thread holds the leaders' lock (it is held for
    # a whole Popen). The child must neither wait for that lock for ever nor hold the parent's guard pipe open.
    run(RunRequest(argv=["/bin/true"], env=dict(os.environ), cwd=tmp_path, out_dir=tmp_path / "o0", timeout=30))
    assert runner._guard is not None
    parent_guard_fd = runner._guard.fd
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with runner._leaders_lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        pid = os.fork()
        if pid == 0:  # the child: bounded by an alarm, whatever happens
            signal.alarm(20)
            try:
                os.fstat(parent_guard_fd)
                code = 3  # the parent's guard pipe is still open here
            except OSError:
                outcome = run(RunRequest(argv=["/bin/sh", "-c", "exit 7"], env=dict(os.environ), cwd=tmp_path,
                                         out_dir=tmp_path / "o1", timeout=10))
                code = 0 if outcome.exit_code == 7 else 4
            os._exit(code)
    finally:
        release.set()
        holder.join(30)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # -14: the child hung on the lock (SIGALRM); 3: the pipe


def test_an_interruption_as_an_agent_starts_leaves_it_neither_running_nor_listed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C lands after Popen returned but before the runner holds the process: it is ended and reaped there.
    started: list[subprocess.Popen[bytes]] = []
    tell = runner._tell_guard

    def interrupted(pid: int, live: bool) -> None:
        tell(pid, live)
        if live:
            raise KeyboardInterrupt("SIGINT")

    monkeypatch.setattr(runner, "_tell_guard", interrupted)
    real = subprocess.Popen

    def popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = real(*args, **kwargs)  # type: ignore[call-overload]
        started.append(proc)
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(KeyboardInterrupt):
        run(RunRequest(argv=["/bin/sleep", "30"], env=dict(os.environ), cwd=tmp_path, out_dir=tmp_path / "o",
                       timeout=60))
    agent = started[-1]
    assert agent.returncode is not None, "the agent was not reaped"
    assert agent.pid not in runner._live_leaders and agent.pid not in runner._guard_listed


def test_a_replacement_guard_is_told_only_the_groups_still_listed(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # A leader's "-" goes out before it is reaped (and unlisted from the live leaders): a guard started in that
    # window must not be told it again, or it would kill that group id at exit, whoever holds it by then.
    told: list[list[bytes]] = []

    class Recording:
        def __init__(self) -> None:
            told.append([])
            self.fd = -1

        def send(self, line: bytes) -> bool:
            told[-1].append(line)
            return len(told) > 1  # the first one "stops reading" at once

        def close(self, kill: bool = False) -> None:
            pass

    monkeypatch.setattr(runner, "_Guard", Recording)
    monkeypatch.setattr(runner, "_guard", Recording())
    monkeypatch.setattr(runner, "_guard_listed", {101})
    monkeypatch.setattr(runner, "_live_leaders", {101, 102})  # 101 ended ("-" sent) but is not reaped yet
    with runner._leaders_lock:
        runner._tell_guard(101, False)  # to the first guard, which no longer reads
        runner._tell_guard(102, True)  # a second is started, and told what is listed
    assert told == [[b"-101\n"], [b"+102\n"]]


def test_a_stop_as_an_attempt_ends_is_held_until_its_end_is_done(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The first stop signal lands while the attempt's end is under way (its leader being reaped, what it left being
    # ended): the end is finished, and the stop comes back with the outcome, as one during the run does, instead of
    # leaving the leader listed, its pidfds open and the outcome lost.
    from adws import interrupts

    end = runner.end_attempt_processes

    def stopped_meanwhile(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGUSR1)
        end(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "end_attempt_processes", stopped_meanwhile)
    restore = interrupts.install((signal.SIGUSR1,))
    try:
        outcome = run(RunRequest(argv=["/bin/true"], env=dict(os.environ), cwd=tmp_path, out_dir=tmp_path / "o",
                                 timeout=30))
    finally:
        restore()
    assert (outcome.exit_code, outcome.interrupted) == (0, "SIGUSR1")
    assert not runner._live_leaders

