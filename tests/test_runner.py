"""Tests for adws.runner with real child processes (no mocks of subprocess)."""

from __future__ import annotations

import base64
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adws import runner
from adws.attempt import RunOutcome
from adws.runner import RunRequest, redact_argv, run

PY = sys.executable
BAD_PROCESS = str(Path(__file__).parent / "fakes" / "bad_process.py")
TRUE = shutil.which("true") or "/bin/true"
ENV_BIN = shutil.which("env") or "/usr/bin/env"


def make_request(tmp_path: Path, argv: list[str], **overrides: object) -> RunRequest:
    fields: dict[str, object] = {
        "argv": argv,
        "env": dict(os.environ),
        "cwd": tmp_path,
        "out_dir": tmp_path / "attempt",
        "timeout": 30.0,
    }
    fields.update(overrides)
    return RunRequest(**fields)  # type: ignore[arg-type]


def python(tmp_path: Path, code: str, **overrides: object) -> RunOutcome:
    return run(make_request(tmp_path, [PY, "-c", code], **overrides))


def read_pids(pidfile: Path) -> dict[str, int]:
    roles = (line.split() for line in pidfile.read_text().splitlines())
    return {role: int(pid) for role, pid in roles}


def is_alive(pid: int) -> bool:
    """A zombie counts as dead: it runs no code, and in a container nobody may ever reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def dies_soon(pid: int) -> bool:
    """SIGKILL is delivered at once but a process takes a moment to be torn down; wait for the state."""
    for _ in range(500):
        if not is_alive(pid):
            return True
        time.sleep(0.01)
    return False


# --- success, stdin, cwd, env ------------------------------------------------------------------------


def test_success_delivers_stdin_and_runs_in_cwd(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    code = (
        "import os, sys\n"
        "data = sys.stdin.buffer.read()\n"
        "sys.stdout.buffer.write(data[::-1])\n"
        "sys.stderr.write(os.getcwd())\n"
    )
    outcome = python(tmp_path, code, cwd=workdir, stdin=b"hello runner")

    assert outcome == RunOutcome(
        argv=[PY, "-c", code],
        exit_code=0,
        signal=None,
        timed_out=False,
        duration_ms=outcome.duration_ms,
        stdout_path=str(tmp_path / "attempt" / "stdout.log"),
        stderr_path=str(tmp_path / "attempt" / "stderr.log"),
        stdout_tail="rennur olleh",
        stderr_tail=str(workdir.resolve()),
        stdout_bytes=12,
        stderr_bytes=len(str(workdir.resolve())),
        truncated=False,
        spawn_error=None,
    )
    assert (tmp_path / "attempt" / "stdout.log").read_bytes() == b"rennur olleh"


def test_child_sees_exactly_the_env_given(tmp_path: Path) -> None:
    env = {"ADWS_TOKEN_VAR": "abc", "WITH SPACE": "a b  c", "EMPTY": "", "UNICODE": "é→✓", "LINES": "1\n2"}
    outcome = run(make_request(tmp_path, [ENV_BIN, "-0"], env=env))

    printed = Path(outcome.stdout_path or "").read_bytes().decode()
    seen = dict(item.split("=", 1) for item in printed.split("\0") if item)
    assert outcome.exit_code == 0
    # Plus the attempt's marker, by which adws finds the processes it started (see runner.attempt_processes).
    assert len(seen.pop("ADWS_ATTEMPT_ID")) == 16
    assert seen == env


def test_env_is_not_merged_with_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADWS_RUNNER_LEAK_CHECK", "parent-only")
    outcome = run(make_request(tmp_path, [ENV_BIN], env={"ONLY": "this"}))
    lines = outcome.stdout_tail.splitlines()
    assert lines[0] == "ONLY=this" and [line.split("=")[0] for line in lines[1:]] == ["ADWS_ATTEMPT_ID"]


def test_program_is_looked_up_on_the_child_env_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "adws-fake-tool"
    tool.write_text(f"#!{PY}\nprint('found me')\n")
    tool.chmod(0o755)
    outcome = run(make_request(tmp_path, ["adws-fake-tool"], env={"PATH": str(bin_dir)}))
    assert (outcome.exit_code, outcome.stdout_tail) == (0, "found me\n")


def test_no_stdin_means_dev_null(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "same = os.path.samestat(os.fstat(0), os.stat('/dev/null'))\n"
        "print(same, repr(sys.stdin.read()))\n"
    )
    assert python(tmp_path, code).stdout_tail == "True ''\n"


def test_empty_stdin_is_an_immediate_end_of_file(tmp_path: Path) -> None:
    code = "import sys; print(repr(sys.stdin.buffer.read()))"
    assert python(tmp_path, code, stdin=b"").stdout_tail == "b''\n"


def test_large_stdin_while_the_child_writes_back(tmp_path: Path) -> None:
    # Both directions exceed the pipe buffer: writing all of stdin before reading would deadlock.
    data = bytes(range(256)) * 8192  # 2 MiB
    code = "import sys, shutil\nshutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer, 4096)\n"
    outcome = python(tmp_path, code, stdin=data)
    assert (outcome.exit_code, outcome.stdout_bytes) == (0, len(data))
    assert Path(outcome.stdout_path or "").read_bytes() == data


def test_child_that_never_reads_its_stdin(tmp_path: Path) -> None:
    outcome = python(tmp_path, "raise SystemExit(3)", stdin=b"x" * (1024 * 1024))
    assert (outcome.exit_code, outcome.signal, outcome.timed_out) == (3, None, False)


@pytest.mark.parametrize("code", [0, 1, 2, 42, 255])
def test_exit_codes(tmp_path: Path, code: int) -> None:
    outcome = python(tmp_path, f"raise SystemExit({code})")
    assert (outcome.exit_code, outcome.signal, outcome.timed_out) == (code, None, False)


# --- signals, timeouts, process groups ---------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT])
def test_death_by_signal(tmp_path: Path, sig: signal.Signals) -> None:
    code = (
        "import os, resource\n"
        "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file\n"
        f"os.kill(os.getpid(), {int(sig)})\n"
    )
    outcome = python(tmp_path, code)
    assert (outcome.exit_code, outcome.signal, outcome.timed_out) == (None, int(sig), False)


def test_timeout_terminates_a_sleeping_child(tmp_path: Path) -> None:
    outcome = run(make_request(tmp_path, ["sleep", "30"], timeout=0.2, grace=5.0))
    # sleep dies on SIGTERM, so the grace period is not used up.
    assert (outcome.exit_code, outcome.signal, outcome.timed_out) == (None, signal.SIGTERM, True)


def test_child_that_handles_sigterm_reports_its_own_exit_code(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
        "print('waiting', flush=True)\n"
        "time.sleep(30)\n"
    )
    outcome = python(tmp_path, code, timeout=1.0)
    assert (outcome.exit_code, outcome.signal, outcome.timed_out) == (143, None, True)


def test_stubborn_leader_and_grandchild_are_both_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    outcome = run(make_request(tmp_path, [PY, BAD_PROCESS, "stubborn", str(pidfile)], timeout=1.0, grace=0.5))

    pids = read_pids(pidfile)
    assert set(pids) == {"leader", "grandchild"}  # both ignored SIGTERM before the timeout hit
    assert outcome.stdout_tail == "ready\n"
    assert (outcome.exit_code, outcome.signal, outcome.timed_out) == (None, signal.SIGKILL, True)
    assert not is_alive(pids["leader"])  # reaped by run()
    assert dies_soon(pids["grandchild"])


@pytest.mark.parametrize("mode", ["pipes", "stubborn", "detached"])
def test_leader_exits_but_leaves_a_grandchild(tmp_path: Path, mode: str) -> None:
    pidfile = tmp_path / "pids"
    outcome = run(make_request(tmp_path, [PY, BAD_PROCESS, "orphan", str(pidfile), mode], grace=0.5))

    pids = read_pids(pidfile)
    assert set(pids) == {"leader", "grandchild"}
    assert (outcome.exit_code, outcome.signal, outcome.timed_out) == (0, None, False)
    assert outcome.stdout_tail == "leader done\n"
    assert dies_soon(pids["grandchild"])


def test_works_without_pidfd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not Linux, an old kernel or a seccomp sandbox: a thread waits for the exit instead.
    monkeypatch.delattr(os, "pidfd_open")
    pidfile = tmp_path / "pids"
    ok = python(tmp_path, "print('hi')")
    orphaned = run(make_request(tmp_path, [PY, BAD_PROCESS, "orphan", str(pidfile), "pipes"], grace=0.5))
    timed_out = run(make_request(tmp_path, ["sleep", "30"], timeout=0.2))

    assert (ok.exit_code, ok.stdout_tail) == (0, "hi\n")
    assert (orphaned.exit_code, orphaned.stdout_tail) == (0, "leader done\n")
    assert dies_soon(read_pids(pidfile)["grandchild"])
    assert (timed_out.signal, timed_out.timed_out) == (signal.SIGTERM, True)


def test_thread_exit_watch_signals_exit_without_reaping() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    fd = runner._ExitWatch.watch_with_thread(proc.pid)
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        assert selector.select(0) == []
        proc.kill()
        assert len(selector.select(10)) == 1
    # Still a zombie: the pid (and so the process-group id) cannot be reused until we reap it.
    assert os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    assert proc.wait() == -signal.SIGKILL
    os.close(fd)


# --- output capture ----------------------------------------------------------------------------------

MIB = 1024 * 1024
BLOCK_CODE = "def block(k):\n    return b'%07d|' % k * (1024 * 1024 // 8)\n"


def block(k: int) -> bytes:
    return b"%07d|" % k * (MIB // 8)


def test_megabytes_of_output_are_capped_and_counted(tmp_path: Path) -> None:
    code = BLOCK_CODE + (
        "import sys\n"
        "for k in range(20):\n"
        "    sys.stdout.buffer.write(block(k))\n"
        "    if k < 3:\n"
        "        sys.stderr.buffer.write(block(100 + k))\n"
    )
    outcome = python(tmp_path, code, output_cap=MIB, tail_bytes=64 * 1024)

    stdout = b"".join(block(k) for k in range(20))
    stderr = b"".join(block(100 + k) for k in range(3))
    assert (outcome.exit_code, outcome.truncated) == (0, True)
    assert (outcome.stdout_bytes, outcome.stderr_bytes) == (20 * MIB, 3 * MIB)
    assert Path(outcome.stdout_path or "").read_bytes() == stdout[:MIB]
    assert Path(outcome.stderr_path or "").read_bytes() == stderr[:MIB]
    assert outcome.stdout_tail == stdout[-64 * 1024 :].decode()
    assert outcome.stderr_tail == stderr[-64 * 1024 :].decode()
    assert outcome.stdout_tail.endswith("0000019|")


def test_output_at_exactly_the_cap_is_not_truncated(tmp_path: Path) -> None:
    outcome = python(tmp_path, "print('x' * 99)", output_cap=100)
    assert (outcome.stdout_bytes, outcome.truncated) == (100, False)


def test_zero_cap_keeps_no_file_content_but_counts_and_tails(tmp_path: Path) -> None:
    outcome = python(tmp_path, "print('hello')", output_cap=0)
    assert Path(outcome.stdout_path or "").read_bytes() == b""
    assert (outcome.stdout_bytes, outcome.truncated, outcome.stdout_tail) == (6, True, "hello\n")


def test_binary_garbage_survives(tmp_path: Path) -> None:
    garbage = bytes(range(256)) * 3 + b"\xff\xfe\xc3"
    code = f"import sys\ndata = {garbage!r}\nsys.stdout.buffer.write(data)\nsys.stderr.buffer.write(data)\n"
    outcome = python(tmp_path, code)

    assert outcome.exit_code == 0
    assert Path(outcome.stdout_path or "").read_bytes() == garbage
    assert Path(outcome.stderr_path or "").read_bytes() == garbage
    assert outcome.stdout_tail == garbage.decode("utf-8", errors="replace")
    assert outcome.stderr_tail == outcome.stdout_tail


def test_tail_does_not_start_inside_a_utf8_character(tmp_path: Path) -> None:
    # 2000 bytes of two-byte characters; a 101-byte tail starts with a continuation byte, which is dropped.
    outcome = python(tmp_path, "import sys; sys.stdout.write('é' * 1000)", tail_bytes=101)
    assert outcome.stdout_tail == "é" * 50


def test_out_dir_is_created(tmp_path: Path) -> None:
    out_dir = tmp_path / "runs" / "task-1" / "attempt-3"
    outcome = run(make_request(tmp_path, [TRUE], out_dir=out_dir))
    assert outcome.stdout_path == str(out_dir / "stdout.log")
    assert sorted(p.name for p in out_dir.iterdir()) == ["stderr.log", "stdout.log"]


# --- failures to start -------------------------------------------------------------------------------


def spawn_failure(error: str, argv: list[str]) -> RunOutcome:
    return RunOutcome(
        argv=argv,
        exit_code=None,
        signal=None,
        timed_out=False,
        duration_ms=0,
        stdout_path=None,
        stderr_path=None,
        stdout_tail="",
        stderr_tail="",
        stdout_bytes=0,
        stderr_bytes=0,
        truncated=False,
        spawn_error=error,
    )


def frozen_clock() -> float:
    return 7.0


def test_missing_executable_by_path(tmp_path: Path) -> None:
    argv = [str(tmp_path / "no-such-tool"), "-p"]
    outcome = run(make_request(tmp_path, argv), clock=frozen_clock)
    assert outcome == spawn_failure(f"executable not found: {tmp_path / 'no-such-tool'}", argv)
    assert not (tmp_path / "attempt" / "stdout.log").exists()


def test_missing_executable_on_path(tmp_path: Path) -> None:
    outcome = run(
        make_request(tmp_path, ["no-such-adws-tool"], env={"PATH": str(tmp_path)}), clock=frozen_clock
    )
    assert outcome == spawn_failure("executable not found: no-such-adws-tool", ["no-such-adws-tool"])


def test_file_without_execute_permission(tmp_path: Path) -> None:
    script = tmp_path / "agent"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    outcome = run(make_request(tmp_path, [str(script)]), clock=frozen_clock)
    assert outcome == spawn_failure(f"permission denied: {script}", [str(script)])


def test_bad_cwd(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    outcome = run(make_request(tmp_path, [TRUE], cwd=missing), clock=frozen_clock)
    expected = f"cannot start {TRUE}: [Errno 2] No such file or directory: '{missing}'"
    assert outcome == spawn_failure(expected, [TRUE])


def test_file_that_is_not_a_program(tmp_path: Path) -> None:
    script = tmp_path / "notes.txt"
    script.write_text("just text, no #! line\n")
    script.chmod(0o755)
    outcome = run(make_request(tmp_path, [str(script)]), clock=frozen_clock)
    expected = f"cannot start {script}: [Errno 8] Exec format error: '{script}'"
    assert outcome == spawn_failure(expected, [str(script)])


def test_nul_byte_in_an_argument(tmp_path: Path) -> None:
    outcome = run(make_request(tmp_path, [TRUE, "a\0b"]), clock=frozen_clock)
    assert outcome == spawn_failure(f"cannot start {TRUE}: embedded null byte", [TRUE, "a\0b"])


def test_unwritable_out_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    outcome = run(make_request(tmp_path, [TRUE], out_dir=blocker / "attempt"), clock=frozen_clock)
    expected = f"cannot start {TRUE}: [Errno 20] Not a directory: '{blocker / 'attempt'}'"
    assert outcome == spawn_failure(expected, [TRUE])


def test_logs_that_cannot_be_created_once_the_child_started_end_it_as_a_spawn_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The directory exists, so the logs are made after the child starts; a link planted at stderr.log is never
    # followed (O_NOFOLLOW): the child is killed and reaped, no log is left to be read as its output, and the
    # reason says that it was started.
    out_dir = tmp_path / "attempt"
    out_dir.mkdir()
    (out_dir / "stderr.log").symlink_to(tmp_path / "elsewhere")
    tag = f"adws-test-{os.getpid()}-{time.monotonic_ns()}"
    argv = [PY, "-c", f"import time; time.sleep(60)  # {tag}"]
    signalled: list[signal.Signals] = []
    real_signal_group = runner._signal_group
    monkeypatch.setattr(runner, "_signal_group",
                        lambda pgid, sig: signalled.append(sig) or real_signal_group(pgid, sig))
    outcome = run(make_request(tmp_path, argv, out_dir=out_dir), clock=frozen_clock)
    error = f"[Errno 40] Too many levels of symbolic links: '{out_dir / 'stderr.log'}'"
    assert outcome == spawn_failure(f"started {PY}, then ended it at once: cannot create its log file: {error}",
                                    argv)
    assert sorted(p.name for p in out_dir.iterdir()) == ["stderr.log"]  # the planted link, untouched
    assert not (tmp_path / "elsewhere").exists()
    left = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and tag.encode() in (entry / "cmdline").read_bytes():
                left.append(entry.name)
        except OSError:
            continue  # gone meanwhile
    assert signalled == [signal.SIGKILL], "killed at once, not waited for"
    assert left == [], "nothing of it is left running"


def test_logs_made_after_the_start_hold_all_the_output(tmp_path: Path) -> None:
    # More than a pipe holds (64 KiB) written at once: the child waits for the reader, nothing is lost.
    out_dir = tmp_path / "attempt"
    out_dir.mkdir()
    outcome = python(tmp_path, "import sys; sys.stdout.write('x' * 300_000); sys.stderr.write('e')", out_dir=out_dir)
    assert (out_dir / "stdout.log").read_text() == "x" * 300_000
    assert (out_dir / "stderr.log").read_text() == "e"
    assert outcome.exit_code == 0 and outcome.stdout_bytes == 300_000


# --- redaction ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "secrets", "expected"),
    [
        (["tool", "--key=SECRET", "SECRET"], ["SECRET"], ["tool", "--key=***", "***"]),
        (["a", "b"], [], ["a", "b"]),
        (["keep"], [""], ["keep"]),  # an empty secret would otherwise match everywhere
        (["xSECRETySECRETz"], ["SECRET"], ["x***y***z"]),
        (["SS"], ["S"], ["***"]),  # touching occurrences collapse into one
        (["abcdef"], ["abc", "cdef"], ["***"]),  # overlapping secrets: nothing of either survives
        (["xabcx"], ["ab", "abc"], ["x***x"]),
        (["k=tok1,tok2"], ["tok1", "tok2", "tok1"], ["k=***,***"]),
    ],
)
def test_redact_argv(argv: list[str], secrets: list[str], expected: list[str]) -> None:
    assert redact_argv(argv, secrets) == expected


def test_redact_argv_takes_the_encoded_forms_too() -> None:
    # A template may render a key encoded (a Basic-auth header, a URL): the shown command must not hold it either.
    secret = "hunter2/hunter2"
    header = "Authorization: Basic " + base64.b64encode(f"u:{secret}".encode()).decode()
    shown = redact_argv(["curl", "-H", header, f"https://h.invalid/?k={quote(secret, safe='')}"], [secret])
    assert shown == ["curl", "-H", "Authorization: Basic dTp***I=", "https://h.invalid/?k=***"]


@given(
    st.lists(st.text(alphabet="abc=-", max_size=12), max_size=4),
    st.lists(st.text(alphabet="abc", min_size=1, max_size=4), min_size=1, max_size=3),
)
def test_no_secret_survives_redaction(argv: list[str], secrets: list[str]) -> None:
    for arg in redact_argv(argv, secrets):
        assert not any(secret in arg for secret in secrets)


def test_run_redacts_its_argv_but_the_child_gets_the_real_one(tmp_path: Path) -> None:
    argv = [PY, "-c", "import sys; print(sys.argv[1] == '--token=hun' + 'ter2', sys.argv[1])", "--token=hunter2"]
    outcome = run(make_request(tmp_path, argv, secrets=["hunter2"]))
    assert outcome.argv == [*argv[:3], "--token=***"]
    # The child got the real value; what it printed of it is redacted in the log and the tail (issue 9).
    assert outcome.stdout_tail == "True --token=***\n"
    assert Path(outcome.stdout_path or "").read_text() == "True --token=***\n"


def test_spawn_error_is_redacted(tmp_path: Path) -> None:
    argv = [str(tmp_path / "hunter2" / "tool")]
    outcome = run(make_request(tmp_path, argv, secrets=["hunter2"]))
    assert outcome.argv == [str(tmp_path / "***" / "tool")]
    assert outcome.spawn_error == f"executable not found: {tmp_path / '***' / 'tool'}"


# --- clock and request validation --------------------------------------------------------------------


def test_duration_comes_from_the_injected_clock(tmp_path: Path) -> None:
    ticks = iter([100.0, 102.5])
    outcome = run(make_request(tmp_path, [TRUE]), clock=lambda: next(ticks))
    assert outcome.duration_ms == 2500


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"argv": []}, "invalid RunRequest: argv must not be empty"),
        ({"argv": "claude -p"}, "invalid RunRequest: argv must be a sequence of strings, not one string"),
        ({"timeout": 0}, "invalid RunRequest: timeout must be > 0, got 0"),
        (
            {"grace": -1.0, "output_cap": -5},
            "invalid RunRequest: grace must be >= 0, got -1.0; output_cap must be >= 0, got -5",
        ),
        ({"tail_bytes": -1}, "invalid RunRequest: tail_bytes must be >= 0, got -1"),
    ],
)
def test_invalid_request_is_refused_when_built(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    fields = {"argv": [TRUE], **overrides}
    argv = fields.pop("argv")
    with pytest.raises(ValueError) as excinfo:
        make_request(tmp_path, argv, **fields)  # type: ignore[arg-type]
    assert str(excinfo.value) == message


# --- interrupted supervision -------------------------------------------------------------------------


def processes_running(argv: list[str]) -> list[int]:
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and (entry / "cmdline").read_bytes() == wanted
                and is_alive(int(entry.name))
            ):
                found.append(int(entry.name))
        except OSError:
            continue  # the process ended while we looked
    return found


class InterruptedSelector(selectors.PollSelector):
    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        raise KeyboardInterrupt


def test_interrupt_while_supervising_still_kills_and_reaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C in adws must not leave the agent running: the group is killed, and the attempt is reported as
    # interrupted (not raised) so that the caller records it before unwinding.
    monkeypatch.setattr(runner, "_DEFAULT_SELECTOR", InterruptedSelector)
    argv = ["sleep", "31.4159"]
    fds_before = sorted(os.listdir("/proc/self/fd"))

    outcome = run(make_request(tmp_path, argv, stdin=b"unread"))

    assert (outcome.interrupted, outcome.signal) == ("SIGINT", 9)
    assert processes_running(argv) == []
    assert sorted(os.listdir("/proc/self/fd")) == fds_before


# --- idle timeout -------------------------------------------------------------------------------------------


def test_a_child_silent_past_its_idle_timeout_is_ended_like_a_timeout(tmp_path: Path) -> None:
    # It speaks once, then sleeps far past the idle timeout but well inside the wall-clock timeout.
    code = "import sys, time; print('started', flush=True); time.sleep(60)"
    outcome = python(tmp_path, code, timeout=120.0, idle_timeout=0.5, grace=1.0)
    assert (outcome.timed_out, outcome.idle_timed_out, outcome.signal) == (True, True, signal.SIGTERM)
    assert outcome.idle_ms >= 500
    assert outcome.stdout_tail == "started\n"


def test_output_keeps_the_idle_timeout_from_firing(tmp_path: Path) -> None:
    # A byte every 50 ms for 1 s never leaves 30 s of silence: the child ends on its own.
    code = "import time\nfor _ in range(20):\n    print('.', end='', flush=True); time.sleep(0.05)"
    outcome = python(tmp_path, code, idle_timeout=30.0)
    assert (outcome.exit_code, outcome.timed_out, outcome.idle_timed_out) == (0, False, False)
    assert outcome.stdout_tail == "." * 20


def test_without_an_idle_timeout_silence_is_allowed_up_to_the_timeout(tmp_path: Path) -> None:
    outcome = python(tmp_path, "import time; time.sleep(60)", timeout=0.5, grace=1.0)
    assert (outcome.timed_out, outcome.idle_timed_out) == (True, False)


# --- process group and session --------------------------------------------------------------------------

_IDS = "import os; print(os.getpid(), os.getpgid(0), os.getsid(0))"


@pytest.mark.parametrize("terminal", [False, True])
def test_the_child_leads_its_own_group_and_its_own_session_only_under_a_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, terminal: bool) -> None:
    monkeypatch.setattr(runner, "has_terminal", lambda: terminal)
    pid, group, session = map(int, python(tmp_path, _IDS).stdout_tail.split())
    assert group == pid, "its own process group: the group signal reaches everything it starts"
    assert (session == pid) is terminal, "a session of its own (no terminal to open) only when adws has one"
    if not terminal:
        assert session == os.getsid(0)


def _terminal_seen(*, under_pty: bool) -> str:
    code = "from adws.runner import has_terminal; print(has_terminal())"
    if not under_pty:  # a new session has no controlling terminal
        return subprocess.run([PY, "-c", code], start_new_session=True, capture_output=True, text=True,
                              check=True, timeout=60).stdout.strip()
    import pty

    child, fd = pty.fork()  # the child leads a new session whose controlling terminal is the pty
    if child == 0:
        os.execv(PY, [PY, "-c", code])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    os.waitpid(child, 0)
    return out.decode().strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/tty and pty as on Linux")
def test_has_terminal_tells_a_controlling_terminal_apart() -> None:
    assert _terminal_seen(under_pty=False) == "False"
    assert _terminal_seen(under_pty=True) == "True"
