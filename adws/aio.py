"""Cancelling a run from asyncio (`Engine.arun`): end the agent's whole process group, stop the walk.

A run executes in a worker thread (the manager and the runner are synchronous), so a cancelled coroutine
cannot interrupt it directly. Instead each run of `arun` carries a `CancelToken`: the runner wrapper from
`cancellable()` marks every child it starts with a variable in its environment (inherited by the child's own
children), and `CancelToken.end_marked()` finds the marked processes in /proc and signals their process
groups — SIGTERM first, SIGKILL once the provider's `kill_grace` has passed, the runner's own escalation. The
runner then sees its child end, and the wrapper raises RunCancelled with that outcome, which the manager
records as the attempt (outcome "error", reason "cancelled: ...") before the walk stops. The next runner call
of a cancelled run raises at once, so a walk between attempts stops too; so does a sleep through
`cancellable_sleep` (a retry's backoff, a task parked by `wait`), which a cancellation cuts short. Linux (/proc);
elsewhere the run stops at its next attempt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator

from adws.attempt import RunOutcome
from adws.errors import RunCancelled
from adws.runner import RunRequest

MARKER_VAR = "ADWS_RUN_MARKER"
Runner = Callable[[RunRequest], RunOutcome]
Sleeper = Callable[[float], None]

_current = threading.local()  # the CancelToken of the run this thread executes, if any


class CancelToken:
    """One cancellable run: set `cancelled`, then call `end_marked()` until the run's thread is done."""

    def __init__(self) -> None:
        self.marker = secrets.token_hex(12)
        self.cancelled = threading.Event()
        self.grace = 5.0  # seconds from SIGTERM to SIGKILL: the running attempt's kill_grace
        self._since: float | None = None

    def cancel(self) -> None:
        self.cancelled.set()
        if self._since is None:
            self._since = time.monotonic()

    def end_marked(self) -> int:
        """Signal the process group of every process carrying this run's marker; returns how many groups."""
        needle = f"{MARKER_VAR}={self.marker}".encode()
        late = self._since is not None and time.monotonic() - self._since >= self.grace
        sig = signal.SIGKILL if late else signal.SIGTERM
        groups: set[int] = set()
        try:
            pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        except OSError:
            return 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/environ", "rb") as handle:
                    if needle not in handle.read().split(b"\0"):
                        continue
                groups.add(os.getpgid(pid))
            except OSError:  # gone, or not ours to read
                continue
        for group in groups:
            with contextlib.suppress(OSError):
                os.killpg(group, sig)
        return len(groups)


@contextlib.contextmanager
def running(token: CancelToken) -> Iterator[None]:
    """Runs started by this thread within the block belong to `token`."""
    _current.token = token
    try:
        yield
    finally:
        _current.token = None


def cancellable(runner: Runner) -> Runner:
    """`runner`, made to honour the CancelToken of the calling thread (a no-op outside `running`)."""

    def run(request: RunRequest) -> RunOutcome:
        token: CancelToken | None = getattr(_current, "token", None)
        if token is None:
            return runner(request)
        if token.cancelled.is_set():
            raise RunCancelled()
        token.grace = request.grace
        outcome = runner(dataclasses.replace(request, env={**request.env, MARKER_VAR: token.marker}))
        if token.cancelled.is_set():
            raise RunCancelled(outcome)
        return outcome

    return run


def cancellable_sleep(sleep: Sleeper) -> Sleeper:
    """`sleep` (seconds), made to honour the CancelToken of the calling thread (a no-op outside `running`): raises
    RunCancelled instead of sleeping once the run is cancelled, and as soon as it is cancelled meanwhile. The real
    `time.sleep` is replaced by a wait on the token; any other sleeper (a test's) is called as it is and the token
    looked at afterwards."""

    def wait(seconds: float) -> None:
        token: CancelToken | None = getattr(_current, "token", None)
        if token is None:
            sleep(seconds)
            return
        if token.cancelled.is_set():
            raise RunCancelled()
        if sleep is time.sleep:
            token.cancelled.wait(max(seconds, 0.0))
        else:
            sleep(seconds)
        if token.cancelled.is_set():
            raise RunCancelled()

    return wait
