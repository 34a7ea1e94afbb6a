"""The one place adws starts a child process.

Modelled on tox's ``execute/local_sub_process``: the caller gives the complete environment, argv runs
without a shell, a failure to start becomes a result instead of an exception, and the command that reaches
logs is redacted. The child leads its own process group so that a timeout (or a leader that leaves
children behind) can be handled by signalling the whole group: SIGTERM, a grace period, then SIGKILL.

Everything is driven by one poll loop over the child's pipes and an "exit" descriptor (a pidfd on Linux),
so no thread is started per attempt and no time is spent sleeping in a loop. The same loop enforces the
optional idle timeout: a child that writes nothing on stdout or stderr for `idle_timeout` seconds is ended
exactly like one that overran `timeout` (an agent CLI sleeping through a days-long retry-after prints nothing).
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import errno
import os
import secrets as _secrets
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

from adws.attempt import RunOutcome
from adws.dataclass_cache import dataclass
from adws.interrupts import interruptible, shielded
from adws.redact import REDACTED, matcher, replace_in, secret_forms

__all__ = ["DRAIN_SECONDS", "KILL_WAIT_SECONDS", "REDACTED", "RunRequest", "redact_argv", "run"]

# After the leader exits, how long its pipes may stay open (a grandchild holding them) before the rest of
# the group is terminated. Output already in the pipe is read within microseconds, so this can be short.
DRAIN_SECONDS = 0.25
# After SIGKILL, how long to wait for the pipes to close. They can only stay open if a process that left the
# group (setsid) holds them; then we stop reading instead of hanging forever.
KILL_WAIT_SECONDS = 2.0
_REDACTED_BYTES = REDACTED.encode("ascii")
_CHUNK = 64 * 1024  # the default Linux pipe capacity: one read empties a full pipe
_DEFAULT_SELECTOR: type[selectors.BaseSelector] = getattr(
    selectors, "PollSelector", selectors.DefaultSelector
)  # poll needs no extra descriptor per call, unlike epoll, and we watch at most four


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One child process to run. `env` is the complete environment: nothing from os.environ is added."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str | os.PathLike[str]
    out_dir: str | os.PathLike[str]  # per-attempt directory; created; gets stdout.log and stderr.log
    timeout: float  # seconds of wall time before the process group is terminated
    stdin: bytes | None = None  # None -> stdin is /dev/null
    grace: float = 5.0  # seconds between SIGTERM and SIGKILL
    output_cap: int = 16 * 1024 * 1024  # bytes kept in each log file; the rest is counted, not kept
    tail_bytes: int = 256 * 1024  # end of each stream kept in memory for classification
    secrets: Sequence[str] = ()  # literal values that must never appear in RunOutcome.argv
    # Seconds without a byte on stdout or stderr after which the group is terminated like at `timeout`
    # (RunOutcome.timed_out and .idle_timed_out); None: silence is allowed up to `timeout`.
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        # A wrong request is a bug in adws, not a child failure: refuse it when it is built. The messages are only
        # put together when something is wrong (a request is built for every attempt).
        if not isinstance(self.argv, str) and len(self.argv) > 0 and self.timeout > 0 and self.grace >= 0 \
                and (self.idle_timeout is None or self.idle_timeout > 0) and self.output_cap >= 0 \
                and self.tail_bytes >= 0:
            return
        problems = [
            message
            for failed, message in (
                (isinstance(self.argv, str), "argv must be a sequence of strings, not one string"),
                (len(self.argv) == 0, "argv must not be empty"),
                (not self.timeout > 0, f"timeout must be > 0, got {self.timeout!r}"),
                (not self.grace >= 0, f"grace must be >= 0, got {self.grace!r}"),
                (
                    self.idle_timeout is not None and not self.idle_timeout > 0,
                    f"idle_timeout must be > 0, got {self.idle_timeout!r}",
                ),
                (self.output_cap < 0, f"output_cap must be >= 0, got {self.output_cap!r}"),
                (self.tail_bytes < 0, f"tail_bytes must be >= 0, got {self.tail_bytes!r}"),
            )
            if failed
        ]
        if problems:
            raise ValueError("invalid RunRequest: " + "; ".join(problems))


def redact_argv(argv: Sequence[str], secrets: Sequence[str]) -> list[str]:
    """Replace every occurrence of every secret and of its encoded forms (also inside an argument, e.g.
    --key=SECRET; see adws.redact.secret_forms) with ***.

    Occurrences that overlap or touch collapse into one ***, so no character of any secret survives
    (replacing secrets one after another could leave the tail of one that overlaps another).
    """
    needles = matcher(secret_forms(secrets))
    if not needles:
        return list(argv)
    return [replace_in(needles, arg, REDACTED) for arg in argv]


class _Sink:
    """One output stream: the first `cap` bytes go to a file, the last `tail_bytes` stay in memory.

    With `secrets`, every occurrence of one or of its encoded forms (adws.redact.secret_forms) is written as ***
    (to the file and the tail alike), also when it arrives split across reads: what is written is the same for
    every way the child's output is cut into reads as for one read of all of it. The last (longest form - 1)
    bytes wait, as they came, for the next read or `finish()`.
    """

    __slots__ = ("_file", "_held", "_hold", "_needles", "_open", "_tail", "_tail_bytes", "cap", "fed", "kept",
                 "total")

    def __init__(self, file: BinaryIO, cap: int, tail_bytes: int, secrets: Sequence[str] = ()) -> None:
        self._file = file
        self._tail = bytearray()
        self._tail_bytes = tail_bytes
        self.cap = cap
        self.kept = 0
        self.total = 0  # bytes the child wrote
        self.fed = 0  # bytes after redaction, kept or not
        # The child's bytes are searched as they are: a value's undecodable bytes (surrogate escapes) as bytes.
        self._needles = matcher(secret_forms(secrets), raw=True)
        self._hold = max(self._needles.longest - 1, 0)
        self._held = b""  # not yet written, not yet replaced
        # How far into `_held` the occurrences behind the last *** written reach (-1: it was not the last thing
        # written): an occurrence starting there or before is part of that *** (one-shot redaction merges
        # overlapping and touching occurrences), not another.
        self._open = -1

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self._needles:
            data = self._redact(self._held + data, self._hold)
        if data:
            self._keep(data)

    def finish(self) -> None:
        """Write what was held back for redaction (call once the stream ended)."""
        if self._held:
            self._keep(self._redact(self._held, 0))

    def _redact(self, data: bytes, hold: int) -> bytes:
        """`data` up to its last `hold` bytes, redacted; those bytes are kept for the next call.

        An occurrence not yet whole in `data` starts within its last `hold` bytes (the longest form is
        `hold + 1`), so every occurrence starting before the cut is whole here: what is before the cut is
        written as one read would write it, and what is after it is searched again with the next read. Only
        an occurrence that starts before the cut and reaches past it is written as *** at once, and `_open`
        says where it ends, so that what overlaps or touches it later becomes no second ***."""
        cut = len(data) - hold
        if cut <= 0:
            self._held = data
            return b""
        parts: list[bytes] = []
        covered = self._open  # end of the occurrences behind the last *** in `parts`, -1 when there is none
        pos = max(covered, 0)
        for start, end in self._needles.iter_spans(data):
            if start >= cut:
                break  # searched again, whole, with what comes next
            if start > covered:
                parts += [data[pos:start], _REDACTED_BYTES]
            covered = pos = max(covered, end)
        if pos < cut:
            parts.append(data[pos:cut])
        self._held = data[cut:]
        self._open = covered - cut if covered >= cut else -1
        return b"".join(parts)  # (one part: that part itself, not a copy)

    def _keep(self, data: bytes) -> None:
        self.fed += len(data)
        if self.kept < self.cap:
            part = data[: self.cap - self.kept]
            try:
                self._file.write(part)
                self.kept += len(part)
            except OSError:
                # A full disk must not stop us draining the pipe (the child would block): keep counting.
                self.cap = self.kept
        if self._tail_bytes:
            self._tail += data
            excess = len(self._tail) - self._tail_bytes
            if excess > 0:
                del self._tail[:excess]  # bytearray deletes from the front without copying the rest

    @property
    def truncated(self) -> bool:
        return self.fed > self.kept

    def tail_text(self) -> str:
        data = bytes(self._tail)
        if self.total > len(data):
            # The cut may have split a UTF-8 character: drop its continuation bytes rather than show U+FFFD.
            skip = 0
            while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
                skip += 1
            data = data[skip:]
        return data.decode("utf-8", errors="replace")


class _ExitWatch:
    """A descriptor that becomes readable when the child exits, without reaping it.

    Leaving the leader a zombie until we are done keeps its pid (and so the process-group id) from being
    reused, so the final signal to the group cannot hit an unrelated process.
    """

    def __init__(self, pid: int) -> None:
        try:
            self.fd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux, kernel < 5.3, or a sandbox that forbids it
            self.fd = self.watch_with_thread(pid)

    @staticmethod
    def watch_with_thread(pid: int) -> int:
        read_fd, write_fd = os.pipe()

        def wait() -> None:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            with contextlib.suppress(OSError):  # the reader may be gone already
                os.write(write_fd, b"x")
            os.close(write_fd)

        threading.Thread(target=wait, name=f"adws-exit-{pid}", daemon=True).start()
        return read_fd

    def close(self) -> None:
        os.close(self.fd)


class _Phase(enum.Enum):
    RUNNING = "running"
    DRAINING = "draining"  # the leader exited; its pipes are still open
    TERMINATING = "terminating"  # SIGTERM sent to the group
    KILLED = "killed"  # SIGKILL sent to the group


# What to do when a phase's deadline passes: the signal for the group and the phase that follows.
# KILLED has no entry: when its deadline passes we stop reading.
_ESCALATION: dict[_Phase, tuple[signal.Signals, _Phase]] = {
    _Phase.RUNNING: (signal.SIGTERM, _Phase.TERMINATING),
    _Phase.DRAINING: (signal.SIGTERM, _Phase.TERMINATING),
    _Phase.TERMINATING: (signal.SIGKILL, _Phase.KILLED),
}


# -- what the child starts: process reaping ------------------------------------------------------------------
#
# A process group does not hold everything a child starts: a grandchild that calls setsid() (a daemon, an
# agent's language server) leaves it. Two mechanisms find those:
# - adws becomes a "child subreaper" (Linux prctl PR_SET_CHILD_SUBREAPER, see prctl(2)): an orphan of the
#   agent is re-parented to adws instead of init, so it stays in reach and adws can reap it;
# - every attempt's environment carries ADWS_ATTEMPT_ID, a random marker; a process re-parented to adws (or,
#   without a subreaper, anywhere) that carries it belongs to that attempt, as does everything below it.
# At the end of an attempt (normal exit, timeout, interruption) every such process is killed and reaped.
#
# The /proc scan that finds them reads every process on the machine (milliseconds on a busy host), so it is
# skipped when it provably has nothing to find. With the subreaper, once the leader is reaped, every process
# the attempt left (running, or a zombie nobody reaped) is a child of adws or below one: an orphan is
# re-parented to the nearest living subreaper above it, which is adws or a process that is itself below adws.
# So when adws has no child at all (one waitid(2) call, answered by the kernel for all its threads at once),
# nothing of the attempt is left; otherwise the scan runs.

ATTEMPT_ID_ENV = "ADWS_ATTEMPT_ID"
_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
_WALL = 0x40000000  # linux/wait.h __WALL: children of any exit signal count (Python does not export it)
REAP_WAIT_SECONDS = 1.0  # how long killed orphans get to die before we stop waiting to reap them
_TREE_ROUNDS = 10  # kill-and-rescan rounds: a process forking while we scan is caught by the next round
_subreaper: bool | None = None


def become_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux >= 3.4); False where unsupported."""
    global _subreaper
    if _subreaper is None:
        _subreaper = False
        try:
            import ctypes

            # The running program's own symbols, libc's among them: no library search (ctypes.util's
            # find_library would import tempfile and start ldconfig, milliseconds of a CLI run's start).
            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):  # not Linux, or no libc to ask
            _subreaper = False
    return _subreaper


def has_children() -> bool:
    """Whether this process has any child but its guard, running or a zombie (of any thread); True when it cannot
    tell.

    One non-blocking waitid(2) with WNOWAIT: it consumes no child's exit status (another thread's `wait` still
    gets its own) and fails with ECHILD exactly when there is no child at all. Once the guard runs there always is
    one: then each thread's list of children in /proc is read (30 us), to find one that is not the guard.
    """
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT | _WALL)
    except ChildProcessError:
        return False
    except (OSError, AttributeError):  # no waitid, or a kernel that refuses __WALL: assume there may be some
        return True
    guard = _guard
    return guard is None or _has_child_but(guard.proc.pid)


def _read_small(path: str) -> bytes:
    """The content of a /proc file (one page or less), unbuffered: two system calls fewer than open()."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


class _Entry(NamedTuple):
    """One process as /proc/PID/stat shows it."""

    ppid: int
    state: str  # the state letter: "R", "S", "Z" (a zombie) ...
    group: int  # process group id
    session: int
    start: int  # start time, clock ticks after boot: with the pid, it names one process (a reused pid starts later)


def _stat_fields(stat: bytes) -> list[bytes]:
    # After "pid (comm) " (comm may hold spaces and parentheses): state ppid pgrp session ... starttime (22nd field).
    return stat[stat.rindex(b")") + 2:].split(None, 20)


def _process_table() -> dict[int, _Entry]:
    """Every process /proc shows, by pid; empty where there is no /proc."""
    table: dict[int, _Entry] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for name in entries:
        if not name.isdigit():
            continue
        try:
            fields = _stat_fields(_read_small(f"/proc/{name}/stat"))
        except OSError:
            continue  # gone since the listing
        table[int(name)] = _Entry(int(fields[1]), fields[0].decode("ascii", "replace"), int(fields[2]),
                                  int(fields[3]), int(fields[19]))
    return table


def _start_time(pid: int) -> int | None:
    """The start time of the process now at `pid` (see _Entry.start); None when there is none."""
    try:
        return int(_stat_fields(_read_small(f"/proc/{pid}/stat"))[19])
    except (OSError, ValueError, IndexError):
        return None


def _carries(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return marker in fh.read().split(b"\0")
    except OSError:
        return False


# -- whose pid is it: attempts side by side ------------------------------------------------------------------
#
# Attempts run in parallel threads (run-many, arun), and each one's end signals and reaps processes that /proc
# scans found. A pid is only a name: once its process is reaped (by adws or by the process's own parent), the next
# fork may get it, and that may be another attempt's leader, adws's own child. Reaping that leader here would take
# its exit status from the thread that waits for it (Python's subprocess then reports exit 0 for a failed agent);
# signalling it would kill another attempt. Two guards:
# - the leaders adws started and has not reaped yet are listed in _live_leaders. Starting one (Popen and the
#   listing) and every signal or reap of a found process hold _leaders_lock, so a found process is never signalled
#   or reaped while it is, or as it becomes, another attempt's leader;
# - a process found by a scan is held from then on by a pidfd (Linux >= 5.3; reaping through it, >= 5.4) opened
#   right after the scan and checked to be the process scanned (the same start time): what is signalled or reaped
#   through it is that process or nothing. Without pidfds its pid is used, and only while the process at that pid
#   still has the start time the scan saw (a reuse within the same clock tick, 10 ms, would go unseen).

_leaders_lock = threading.Lock()
_live_leaders: set[int] = set()  # pids of attempt leaders started and not yet reaped, in any thread
_WAITID_PIDFD = hasattr(os, "P_PIDFD")


def _start_leader(start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """The process `start()` makes (a Popen), listed as a live leader before any other thread can signal or reap a
    found process at its pid. Raises what `start` raises (nothing is listed then), and an interruption (Ctrl-C)
    that lands once it has started: that process is then ended and reaped first, as nobody else holds it."""
    with _leaders_lock:
        _start_guard()  # before the agent: the guard's own start (fork and exec of sh) is no window for a stop
        proc = None
        try:
            proc = start()
            _live_leaders.add(proc.pid)
            _tell_guard(proc.pid, True)
        except BaseException:
            if proc is not None:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
                _live_leaders.discard(proc.pid)
                _tell_guard(proc.pid, False)
            raise
    return proc


def _wait_leader(proc: subprocess.Popen[bytes]) -> int:
    """proc.wait(), then the leader is unlisted (its pid is free from then on). Interrupted, it stays listed: its
    exit status is still this thread's to take."""
    with _leaders_lock:
        _tell_guard(proc.pid, False)  # before the reaping frees its pid
    returncode = proc.wait()
    with _leaders_lock:
        _live_leaders.discard(proc.pid)
    return returncode


# -- when adws itself is killed ------------------------------------------------------------------------------
#
# A SIGKILL of adws runs none of its cleanup: its running agents would go on, with no timeout. So each adws process
# has one guard process, started with its first attempt, that holds the read end of a pipe only adws writes to:
# "+PGID" once an attempt's process group exists, "-PGID" just before its leader (SIGKILLed by then) is reaped.
# At end-of-file (adws exited, however it died) the guard SIGKILLs the groups still listed. A leader is listed
# until it is reaped, so a listed group id cannot name a later process's group while adws lives. The guard is a
# loop of shell builtins (no process per line: one sh start per adws process) in a process group of its own, so
# a signal to adws's group (Ctrl-C, a supervisor's stop) does not end it first. One that no longer reads (killed,
# stopped, its pipe full) is replaced by a new one told every live group. It is adws's child, which has_children
# discounts. It reaches only the agents' groups: a helper that left its group (setsid) is not ended by it.

_GUARD_SCRIPT = """
live=" "
while IFS= read -r line; do
  case $line in
    +*) live="$live${line#+} " ;;
    -*) g=${line#-}; case $live in *" $g "*) live=${live%%" $g "*}" "${live#*" $g "} ;; esac ;;
  esac
done
for g in $live; do kill -s KILL -- "-$g"; done 2>/dev/null
"""
GUARD_EXIT_WAIT_SECONDS = 5.0  # at adws's exit, how long the guard may take to read end-of-file and exit


class _Guard:
    """The guard process and the write end of its pipe. Raises OSError when it cannot be started."""

    def __init__(self) -> None:
        read_fd, self.fd = os.pipe()
        try:
            self.proc = subprocess.Popen(["/bin/sh", "-c", _GUARD_SCRIPT], stdin=read_fd, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, cwd="/", env={}, process_group=0, close_fds=True)
        except BaseException:
            os.close(self.fd)
            raise
        finally:
            os.close(read_fd)
        os.set_blocking(self.fd, False)  # a guard that stops reading must not stop adws

    def send(self, line: bytes) -> bool:
        """Write one line (atomic: shorter than PIPE_BUF); False when the guard no longer reads."""
        try:
            return os.write(self.fd, line) == len(line)
        except OSError:  # EPIPE: it is gone; EAGAIN: it stopped reading
            return False

    def close(self, kill: bool = False) -> None:
        """End-of-file for the guard (it ends the groups still listed and exits), and reap it. With `kill` it is
        killed first, so that it ends nothing (it is replaced while those groups live)."""
        if kill:
            self.proc.kill()  # (a process with SIGKILL pending runs no more of its own code)
        os.close(self.fd)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(GUARD_EXIT_WAIT_SECONDS)


_guard: _Guard | None = None
_guard_unavailable = False  # it cannot be started here (no /bin/sh, or not executable): adws runs without one
# The groups the guard is to end should adws die: "+" added, "-" removed, whether or not the line reached it. A
# successor is told these, not _live_leaders: a leader is still listed there between its "-" and its reaping.
_guard_listed: set[int] = set()


def _start_guard() -> None:
    """Start the guard if there is none, telling it every group listed (call with _leaders_lock held). Without
    one (the machine cannot run /bin/sh now) adws runs on; a failure that may pass (no memory, no descriptors, the
    process limit) is tried again at the next attempt."""
    global _guard, _guard_unavailable
    if _guard is not None or _guard_unavailable:
        return
    try:
        guard = _Guard()
    except (FileNotFoundError, PermissionError):
        _guard_unavailable = True
        return
    except OSError:
        return
    for leader in _guard_listed:
        if not guard.send(b"+%d\n" % leader):
            break
    _guard = guard


def _tell_guard(pid: int, live: bool) -> None:
    """Tell the guard the group `pid` is live or ended (call with _leaders_lock held); replace it when it no
    longer reads."""
    global _guard
    (_guard_listed.add if live else _guard_listed.discard)(pid)
    if _guard is not None:
        if _guard.send(b"%c%d\n" % (43 if live else 45, pid)):  # "+" or "-"
            return
        _guard.close(kill=True)  # it no longer reads: what it listed is told to its successor
        _guard = None
    if _guard_listed:
        _start_guard()


def _after_fork_in_child() -> None:
    """In a child made by os.fork() (multiprocessing's default on Linux): none of the parent's attempts are its
    own, and the lock may have been held by a parent thread at the fork (it would never be released here). The
    guard's pipe is closed, so that the parent's guard still sees end-of-file when the parent dies."""
    global _leaders_lock, _guard, _guard_unavailable
    _leaders_lock = threading.Lock()
    _live_leaders.clear()
    _guard_listed.clear()
    if _guard is not None:
        with contextlib.suppress(OSError):
            os.close(_guard.fd)
        _guard = None
    _guard_unavailable = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_guard() -> None:
    global _guard
    with _leaders_lock:
        guard, _guard = _guard, None
    if guard is not None:
        guard.close()


atexit.register(_close_guard)  # a normal exit ends what is still listed (an attempt in a daemon thread), reaps it


def _has_child_but(pid: int) -> bool:
    """Whether this process has a child other than `pid` (read from /proc/self/task/*/children); True when it
    cannot tell."""
    try:
        for tid in os.listdir("/proc/self/task"):
            children = _read_small(f"/proc/self/task/{tid}/children")
            if len(children) >= 4096 or any(int(child) != pid for child in children.split()):
                return True
    except (OSError, ValueError):
        return True
    return False


class _Held:
    """A process a scan found: signalled and reaped only while it is that process, and never when it is another
    attempt's leader. `close()` releases its pidfd."""

    __slots__ = ("fd", "pid", "start")

    def __init__(self, pid: int, start: int, fd: int | None) -> None:
        self.pid = pid
        self.start = start  # as _Entry.start
        self.fd = fd  # a pidfd; None where there are none

    @classmethod
    def take(cls, pid: int, start: int) -> _Held | None:
        """Hold the process a scan saw at `pid` starting at `start`; None when it is gone or `pid` names another."""
        fd: int | None
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except (AttributeError, OSError):
            # Not Linux, a kernel < 5.3, a sandbox that forbids pidfds, or out of descriptors: held by pid and start
            # time.
            fd = None
        # Read after the pidfd was opened: the same start time means the scanned process held the pid all along,
        # so the pidfd names it.
        if _start_time(pid) != start:
            if fd is not None:
                os.close(fd)
            return None
        return cls(pid, start, fd)

    def _current(self) -> bool:
        return _start_time(self.pid) == self.start

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig`, unless the process is gone (or, held without a pidfd, its pid names another one now)."""
        with _leaders_lock:
            if self.pid in _live_leaders:
                return  # another attempt's leader: only its own attempt signals it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if self.fd is not None:
                    signal.pidfd_send_signal(self.fd, sig)
                elif self._current():
                    os.kill(self.pid, sig)

    def reap(self) -> bool:
        """Reap the process if it is adws's child and has exited. True when done with it (reaped; gone; or not
        adws's child, so its own parent reaps it), False while it runs."""
        with _leaders_lock:
            if self.pid in _live_leaders:
                return True  # another attempt's leader: its exit status belongs to the thread that started it
            if self.fd is not None and _WAITID_PIDFD:
                try:
                    return os.waitid(os.P_PIDFD, self.fd, os.WEXITED | os.WNOHANG | _WALL) is not None
                except ChildProcessError:
                    return True
                except OSError:
                    pass  # a kernel without waitid(P_PIDFD) (before 5.4): by pid, as below
            if not self._current():
                return True
            try:
                return os.waitpid(self.pid, os.WNOHANG)[0] != 0
            except ChildProcessError:
                return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _hold(held: dict[int, _Held], pid: int, start: int) -> _Held | None:
    """The process a scan saw at `pid` starting at `start`, from `held` or taken into it; None when it is gone."""
    known = held.get(pid)
    if known is not None:
        if known.start == start:
            return known
        del held[pid]  # the process held there is gone (reaped): the pid names another process of the attempt now
        known.close()
    taken = _Held.take(pid, start)
    if taken is not None:
        held[pid] = taken
    return taken


def attempt_processes(leader: int, attempt_id: str, *, leader_reaped: bool = False) -> tuple[set[int], set[int]]:
    """The attempt's processes other than the leader: (still running, zombies adws must reap).

    Everything below the leader, plus every process carrying the attempt's marker that was re-parented to
    adws (with a subreaper) or is anywhere (without one), and everything below those. A zombie no longer shows
    its environment (nor does an exiting process), so adws's children are also recognised otherwise: those in
    the leader's process group, and zombies that lead the process group or session of a process found (a
    daemon's first fork, which called setsid: every process of that session descends from it).
    `leader_reaped`: the leader was reaped, so its pid may name another process by now: it is no root, and a
    process group leader is never taken for one of its members. Another attempt's live leader is never one.
    """
    running, zombies, _ = _scan(leader, attempt_id, leader_reaped)
    return running, zombies


def _scan(leader: int, attempt_id: str, leader_reaped: bool) -> tuple[set[int], set[int], dict[int, _Entry]]:
    """attempt_processes, and the process table it read (every pid it returns is in it)."""
    table = _process_table()
    with _leaders_lock:
        # This attempt's leader is listed until reaped; listed after that, its pid is another attempt's leader.
        others = _live_leaders - (set() if leader_reaped else {leader})
    me, marker = os.getpid(), f"{ATTEMPT_ID_ENV}={attempt_id}".encode()
    roots = set() if leader_reaped else {leader}
    for pid, (ppid, state, group, _, _) in table.items():
        if pid in (leader, me) or state == "Z" or pid in others:
            continue
        # adws's own child still in the leader's group is the attempt's even without a readable marker: one
        # that is exiting (its SIGKILL from the group signal) has already lost its environment, not its group.
        if (ppid == me and group == leader) or ((ppid == me or not _subreaper) and _carries(pid, marker)):
            roots.add(pid)
    children: dict[int, list[int]] = {}
    for pid, entry in table.items():
        children.setdefault(entry.ppid, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    found.discard(leader)
    found = {pid for pid in found if pid in table}
    zombies = {pid for pid in found if table[pid].state == "Z"}
    running = found - zombies
    leaders = {group for pid in running for group in (table[pid].group, table[pid].session)}  # and sessions
    ours = {pid for pid in zombies if table[pid].ppid == me}
    # The group test skips a group leader (pid == group id): after the leader's reaping its pid may be another
    # attempt's leader, whose exit status belongs to the thread that started it.
    ours |= {pid for pid, (ppid, state, group, _, _) in table.items()
             if state == "Z" and ppid == me and pid != leader and (group == leader or pid in leaders)}
    return running, ours - others, table


def _signal_tree(leader: int, attempt_id: str, sig: signal.Signals, held: dict[int, _Held]) -> None:
    """`sig` to the leader's process group and to every other process of the attempt, which is taken into `held`
    (once dead it can no longer be recognised, but adws must still reap it)."""
    _signal_group(leader, sig)
    running, _, table = _scan(leader, attempt_id, False)
    for pid in running:
        proc = _hold(held, pid, table[pid].start)
        if proc is not None:
            proc.signal(sig)


def end_attempt_processes(leader: int, attempt_id: str, signalled: dict[int, _Held] | None = None, *,
                          leader_reaped: bool = False) -> None:
    """SIGKILL every process of the attempt but the leader, until none runs; reap those re-parented to us,
    including `signalled` (processes of the attempt signalled earlier, e.g. on its timeout: see _signal_tree).

    Takes over `signalled`: every pidfd held is closed on return. Bounded: at most _TREE_ROUNDS scans, and
    REAP_WAIT_SECONDS for the killed ones to die. With `leader_reaped` (see attempt_processes) and the subreaper,
    returns at once when adws has no child left: then nothing of the attempt can be (see the section comment).
    """
    killed: dict[int, _Held] = dict(signalled or {})
    try:
        if leader_reaped and _subreaper and not has_children():
            return
        for _ in range(_TREE_ROUNDS):
            running, zombies, table = _scan(leader, attempt_id, leader_reaped)
            for pid in running | zombies:
                proc = _hold(killed, pid, table[pid].start)
                if proc is not None and pid in running:
                    proc.signal(signal.SIGKILL)
            _reap(killed)
            if not running:
                break
            time.sleep(0.01)  # SIGKILL is delivered asynchronously; give the kernel a moment before rescanning
        deadline = time.monotonic() + REAP_WAIT_SECONDS
        while killed and time.monotonic() < deadline:
            time.sleep(0.01)
            _reap(killed)
    finally:
        for proc in killed.values():
            proc.close()
        for proc in (signalled or {}).values():
            proc.close()  # (those replaced in `killed` by a later process at the same pid were closed then)


def _reap(held: dict[int, _Held]) -> None:
    """Reap those of `held` that are our children and have died; forget (and close) those that are not our
    children (their own parent reaps them) or are gone. A zombie has no environment left to show its marker, so
    the processes killed are held rather than found again."""
    for pid, proc in list(held.items()):
        if proc.reap():
            del held[pid]
            proc.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group may be empty already, or hold a member we may not signal; neither is our failure.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    if sig == signal.SIGTERM:
        # A stopped process keeps SIGTERM pending until resumed, which would waste the whole grace period.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGCONT)


class _Supervisor:
    """Pumps stdin and the two output pipes and escalates signals until the child and its pipes are done."""

    def __init__(self, pid: int, request: RunRequest, sinks: dict[int, _Sink], stdin_fd: int | None,
                 attempt_id: str) -> None:
        self.pid = pid
        self.attempt_id = attempt_id
        self.signalled: dict[int, _Held] = {}  # processes of the attempt outside its group that were signalled
        self.request = request
        self.sinks = sinks
        self.open_reads = set(sinks)
        self.stdin_fd = stdin_fd
        self.pending = memoryview(request.stdin or b"")
        # Made in supervise(), inside its try: if making them fails, the pipes are still closed.
        self.selector: selectors.BaseSelector | None = None
        self.watch: _ExitWatch | None = None
        self.leader_gone = False
        self.timed_out = False
        self.idle_timed_out = False
        self.phase = _Phase.RUNNING
        self.deadline = time.monotonic() + request.timeout
        self.last_output = time.monotonic()  # the idle clock starts with the process
        self.idle_ms = 0

    def supervise(self) -> None:
        try:
            selector = self.selector = _DEFAULT_SELECTOR()
            watch = self.watch = _ExitWatch(self.pid)
            exit_fd = watch.fd
            self._register(selector, exit_fd)
            while not (self.leader_gone and not self.open_reads):
                now = time.monotonic()
                wait = self.deadline - now
                idle_wait = self._idle_wait(now)
                if idle_wait is not None and idle_wait <= 0:
                    # Silent too long: end it as a timeout, measured from the last byte it wrote.
                    self.idle_timed_out = True
                    self.idle_ms = round((now - self.last_output) * 1000)
                    self._escalate()
                    continue
                if wait <= 0:
                    if not self._escalate():
                        return
                    continue
                for key, _ in selector.select(wait if idle_wait is None else min(wait, idle_wait)):
                    self._dispatch(key.fd, exit_fd)
        finally:
            self._close_all()

    def _idle_wait(self, now: float) -> float | None:
        """Seconds until the idle timeout fires; None when it cannot (not set, or the run is already ending)."""
        if self.request.idle_timeout is None or self.phase is not _Phase.RUNNING:
            return None
        return self.last_output + self.request.idle_timeout - now

    def _register(self, selector: selectors.BaseSelector, exit_fd: int) -> None:
        for fd in self.sinks:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        selector.register(exit_fd, selectors.EVENT_READ)
        if self.stdin_fd is not None:
            if self.pending:
                os.set_blocking(self.stdin_fd, False)
                selector.register(self.stdin_fd, selectors.EVENT_WRITE)
            else:
                self._close_stdin()  # empty input: the child sees end-of-file at once

    def _dispatch(self, fd: int, exit_fd: int) -> None:
        if fd == exit_fd:
            self._on_leader_exit(exit_fd)
        elif fd == self.stdin_fd:
            self._write_stdin()
        elif fd in self.open_reads:
            self._read(fd)

    def _on_leader_exit(self, exit_fd: int) -> None:
        self.leader_gone = True
        self._unregister(exit_fd)
        self._close_stdin()  # nobody we wait for will read the rest
        if self.phase is _Phase.RUNNING and self.open_reads:
            self.phase = _Phase.DRAINING
            self.deadline = time.monotonic() + DRAIN_SECONDS

    def _escalate(self) -> bool:
        """The current phase ran out of time: signal the group and move on. False means: stop reading."""
        step = _ESCALATION.get(self.phase)
        if step is None:
            return False
        if self.phase is _Phase.RUNNING:
            self.timed_out = True  # only the leader overrunning is a timeout; a lingering grandchild is not
        sig, self.phase = step
        _signal_tree(self.pid, self.attempt_id, sig, self.signalled)
        wait = self.request.grace if self.phase is _Phase.TERMINATING else KILL_WAIT_SECONDS
        self.deadline = time.monotonic() + wait
        return True

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # treat a broken pipe like end-of-file
        if data:
            self.sinks[fd].feed(data)
            self.last_output = time.monotonic()
            return
        self._unregister(fd)
        self.open_reads.discard(fd)
        os.close(fd)

    def _write_stdin(self) -> None:
        assert self.stdin_fd is not None
        try:
            written = os.write(self.stdin_fd, self.pending[:_CHUNK])
            self.pending = self.pending[written:]
        except BlockingIOError:
            return
        except OSError:
            self.pending = self.pending[:0]  # the child closed stdin: it does not want the rest
        if not self.pending:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_fd is None:
            return
        self._unregister(self.stdin_fd)
        os.close(self.stdin_fd)
        self.stdin_fd = None

    def _unregister(self, fd: int) -> None:
        if self.selector is not None:
            with contextlib.suppress(KeyError):  # never registered (empty stdin) or already gone
                self.selector.unregister(fd)

    def _close_all(self) -> None:
        self._close_stdin()
        for fd in self.open_reads:
            os.close(fd)
        self.open_reads.clear()
        if self.selector is not None:
            self.selector.close()
        if self.watch is not None:
            self.watch.close()


def run(request: RunRequest, *, clock: Callable[[], float] = time.monotonic) -> RunOutcome:
    """Run one child to completion and report what happened. Never raises for an OS failure.

    `clock` only measures `duration_ms`; waits always use real monotonic time.

    When `out_dir` exists (the manager makes it), the log files are created right after the child is started,
    while it runs: its output waits in the pipes meanwhile, and creating a file then costs the attempt nothing. (A
    new inode on a busy ext4 disk waits for the journal commit under way, 0.2-0.6 ms, on journaled ext4, and costs
    0.5-2 ms of CPU passing over recently deleted inodes near it on ext4 without a journal; see adws.files.) When
    they cannot be created the child is killed at once and the outcome is the same spawn failure as for a directory
    that cannot be made, which is created before the child starts.
    """
    started = clock()
    argv = [str(arg) for arg in request.argv]
    shown = redact_argv(argv, request.secrets)
    # The paths as the pathlib Path of the directory has always spelled them (normalized), without making one
    # when the caller gave one.
    out_dir = os.fspath(request.out_dir if isinstance(request.out_dir, Path) else Path(request.out_dir))
    paths = (os.path.join(out_dir, "stdout.log"), os.path.join(out_dir, "stderr.log"))
    files: list[BinaryIO] = []
    if not os.path.isdir(out_dir):
        # No directory yet (the manager makes it beforehand, other callers need not), or something in the way:
        # made or refused here, before anything starts, so the error names what it always named.
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            _open_logs(paths, files)
        except OSError as exc:
            _close_quietly(files)
            return _failed_outcome(shown, _describe_spawn_error(exc, argv[0], request.secrets), started, clock)
    try:
        return _run_with_files(request, argv, shown, started, clock, files, paths)
    finally:
        _close_quietly(files)


def _open_logs(paths: tuple[str, str], files: list[BinaryIO]) -> None:
    """Create both log files into `files` (what was opened is there when the second fails: the caller closes it)."""
    for path in paths:
        # 0600 and never through a link: the agent's output is customer text.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        files.append(os.fdopen(fd, "wb"))


def has_terminal() -> bool:
    """Whether adws has a controlling terminal; True also when it cannot tell.

    With one, the child gets a session of its own (setsid), which has none: an agent that opens /dev/tty (a
    credential or host-key prompt) then fails at once, instead of being stopped (SIGTTIN) as a background job
    of adws's terminal until its timeout. Without one there is no terminal to keep from the child, and a new
    session would only cost: setsid() also puts the child in a new scheduler autogroup (Linux,
    sched_autogroup_enabled), which a loaded machine runs only after a scheduling period, and adws waits for
    the child's exec all that time (milliseconds). Its own process group then suffices.
    """
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno != errno.ENXIO  # ENXIO: no controlling terminal; anything else: assume one
    os.close(fd)
    return True


def _close_quietly(files: list[BinaryIO]) -> None:
    # Flushing the last bytes can fail on a full disk; the attempt's result matters more than its log.
    for file in files:
        with contextlib.suppress(OSError):
            file.close()


def _run_with_files(
    request: RunRequest,
    argv: list[str],
    shown: list[str],
    started: float,
    clock: Callable[[], float],
    files: list[BinaryIO],
    paths: tuple[str, str],
) -> RunOutcome:
    """`files`: both logs, or empty when they are to be created once the child has started (see `run`)."""
    become_subreaper()
    attempt_id = _secrets.token_hex(8)
    opened: list[int] = []  # every descriptor made here, so a failure part-way closes them all
    out_r, out_w = _pipe(opened)
    err_r, err_w = _pipe(opened)
    in_r, in_w = _pipe(opened) if request.stdin is not None else (None, None)
    # Its own process group, so that signals reach the whole tree; its own session too when adws has a terminal.
    detach = has_terminal()
    try:
        # Listed as a live leader as it starts, so that no other attempt's end signals or reaps it (see _Held).
        proc = _start_leader(lambda: subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if in_r is None else in_r,
            stdout=out_w,
            stderr=err_w,
            cwd=os.fspath(request.cwd),
            env={**request.env, ATTEMPT_ID_ENV: attempt_id},
            start_new_session=detach,
            process_group=None if detach else 0,
            close_fds=True,
        ))
    except BaseException as exc:
        for fd in opened:
            os.close(fd)
        _remove_logs(files, paths)
        if not isinstance(exc, (OSError, ValueError)):  # ValueError: a NUL byte in argv or env
            raise  # an interruption: what started was ended (_start_leader)
        return _failed_outcome(shown, _describe_spawn_error(exc, argv[0], request.secrets), started, clock)
    for child_end in (out_w, err_w, in_r):  # the child has its copies; ours would keep the pipes open
        if child_end is not None:
            os.close(child_end)
    if not files:
        try:
            _open_logs(paths, files)
        except BaseException as exc:
            # Nothing may run without its logs: the child, started microseconds ago, is ended before it could do
            # anything of note, and the attempt is the spawn failure it was when the logs came first.
            _signal_group(proc.pid, signal.SIGKILL)
            _wait_leader(proc)
            end_attempt_processes(proc.pid, attempt_id, leader_reaped=True)
            for end in (out_r, err_r, in_w):
                if end is not None:
                    os.close(end)
            _remove_logs(files, paths)
            if not isinstance(exc, OSError):
                raise  # an interruption: nothing of the attempt is left running
            # Said as it happened: the program was started and ended (within microseconds on a healthy disk, but
            # a stalled one may have let it run a moment); what failed is adws's own disk, as for a directory.
            error = redact_argv([f"started {argv[0]}, then ended it at once: cannot create its log file: {exc}"],
                                request.secrets)[0]
            return _failed_outcome(shown, error, started, clock)
    out_file, err_file = files
    out_sink = _Sink(out_file, request.output_cap, request.tail_bytes, request.secrets)
    err_sink = _Sink(err_file, request.output_cap, request.tail_bytes, request.secrets)
    supervisor = _Supervisor(proc.pid, request, {out_r: out_sink, err_r: err_sink}, in_w, attempt_id)
    interrupted: str | None = None
    try:
        with interruptible():
            supervisor.supervise()  # closes every pipe end it was given, also when it fails
    except KeyboardInterrupt as exc:
        # adws is being stopped: end the agent (below) and report the attempt, so the caller records it.
        interrupted = str(exc) or "SIGINT"
    finally:
        # A stop signal that lands here is held until the attempt's end is done (the leader reaped and unlisted,
        # what it left ended, its pidfds closed), then reported with the outcome as one during its run is.
        try:
            with shielded():
                # Whatever is still in the group, or was started by the attempt and left it (setsid), is an orphan
                # of the (exited or killed) leader: no process of an attempt may outlive it. The leader is not
                # reaped yet, so the group id cannot have been reused.
                _signal_group(proc.pid, signal.SIGKILL)
                # Reaped first (it has exited, or dies of that SIGKILL): its children are then re-parented to adws,
                # which lets end_attempt_processes know without a /proc scan when nothing of the attempt is left.
                returncode = _wait_leader(proc)
                end_attempt_processes(proc.pid, attempt_id, supervisor.signalled, leader_reaped=True)
                out_sink.finish()
                err_sink.finish()
        except KeyboardInterrupt as exc:
            interrupted = interrupted or str(exc) or "SIGINT"
    ended = clock()
    return RunOutcome(
        argv=shown,
        exit_code=returncode if returncode >= 0 else None,
        signal=-returncode if returncode < 0 else None,
        timed_out=supervisor.timed_out,
        idle_timed_out=supervisor.idle_timed_out,
        idle_ms=supervisor.idle_ms,
        duration_ms=_ms(started, ended),
        stdout_path=paths[0],
        stderr_path=paths[1],
        stdout_tail=out_sink.tail_text(),
        stderr_tail=err_sink.tail_text(),
        stdout_bytes=out_sink.total,
        stderr_bytes=err_sink.total,
        truncated=out_sink.truncated or err_sink.truncated,
        interrupted=interrupted,
    )


# Spawn failures that name the program get a short message; any other OSError is shown as the OS says it.
_SPAWN_MESSAGES: dict[type[OSError], str] = {
    FileNotFoundError: "executable not found: {program}",
    PermissionError: "permission denied: {program}",
}


def _describe_spawn_error(exc: Exception, argv0: str, secrets: Sequence[str]) -> str:
    # subprocess names the cwd (not the program) as the filename when chdir failed, so check which it is.
    template = "cannot start {program}: {error}"
    if isinstance(exc, OSError) and exc.filename == argv0:
        template = _SPAWN_MESSAGES.get(type(exc), template)
    # The OS message may repeat argv[0] or a path: redact the whole message, not just the program name.
    return redact_argv([template.format(program=argv0, error=exc)], secrets)[0]


def _remove_logs(files: list[BinaryIO], paths: tuple[str, str]) -> None:
    """Close and delete the log files made for a child that did not run (none may be left to read as its output)."""
    _close_quietly(files)
    for path in paths[:len(files)]:
        with contextlib.suppress(OSError):
            os.unlink(path)
    files.clear()


def _pipe(opened: list[int]) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    opened += (read_fd, write_fd)
    return read_fd, write_fd


def _failed_outcome(shown: list[str], error: str, started: float, clock: Callable[[], float]) -> RunOutcome:
    return RunOutcome(
        argv=shown,
        exit_code=None,
        signal=None,
        timed_out=False,
        duration_ms=_ms(started, clock()),
        stdout_path=None,
        stderr_path=None,
        stdout_tail="",
        stderr_tail="",
        stdout_bytes=0,
        stderr_bytes=0,
        truncated=False,
        spawn_error=error,
    )


def _ms(started: float, ended: float) -> int:
    return max(0, round((ended - started) * 1000))
