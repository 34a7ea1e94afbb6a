"""Stop signals (SIGTERM, SIGHUP, SIGINT) for `adws run`: delivered once, never in the middle of recording.

`install()` makes the first stop signal raise KeyboardInterrupt (named after the signal) so the run unwinds:
the runner ends the agent's processes, slots are released, the audit log is written. Two rules keep that
unwinding from losing what it is there to keep:
- inside `shielded()` (recording an attempt that ran: ledger, breaker, result) a signal is held and raised
  when the block ends, so an attempt is never half recorded;
- only the first signal is raised; later ones (an impatient second Ctrl-C, SIGTERM then SIGHUP from a
  supervisor) are noted and ignored while adws records what happened, then exits.

A shield may be given a `grace` (the CLI's printing of a result, `adws.cli.PRINT_GRACE_SECONDS`): should the block
still run that long after the first stop signal it holds (a reader that takes no more of the output), the block is
abandoned with the exception `stalled` makes of that signal's name, and the stop counts as delivered.

`interruptible()` marks where a stop is expected to land inside a shielded block: the runner waiting on a child
(the agent, its verify command, a usage command), and the walk inside `Engine.run`'s shield, which holds a stop
from the walk's end to the audit record. The runner turns a KeyboardInterrupt during its wait into an outcome
marked `interrupted`; whoever called it raises it again once what ran is recorded (adws.manager, adws.verify,
adws.usage_sync), so a stop always ends the run. Without `install()` (adws used as a library) the process keeps
its own handlers, and the same holds for a KeyboardInterrupt.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["STOP_SIGNALS", "install", "interruptible", "shielded"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class _Grace:
    """A shield's bound on how long it holds a stop: `seconds` after the first signal (`first`, its name), SIGALRM
    raises `stalled(first)`."""

    def __init__(self, seconds: float, stalled: Callable[[str], BaseException] | None) -> None:
        self.seconds = seconds
        self.stalled = stalled
        self.first: str | None = None


class _State:
    depth = 0  # nesting of shielded() blocks (interruptible() sets it to 0 for its own block)
    pending: str | None = None  # a signal held by a shield
    delivered = False  # a stop was raised already: later signals are ignored
    grace: _Grace | None = None  # the innermost shield's grace, if it has one


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    grace = _state.grace
    if grace is not None and grace.first is None:  # before `delivered`: a stop after the first is bounded too
        grace.first = name
        signal.setitimer(signal.ITIMER_REAL, grace.seconds)
    if _state.delivered:
        return
    if _state.depth > 0:
        _state.pending = _state.pending or name
        return
    _state.delivered = True
    raise KeyboardInterrupt(name)


def install(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Callable[[], None]:
    """Handle `signals` as described above (main thread only); returns a function restoring the old handlers."""
    _state.depth, _state.pending, _state.delivered = 0, None, False
    previous = {sig: signal.signal(sig, _handler) for sig in signals}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _raise_pending() -> None:
    if _state.pending is not None and not _state.delivered and _state.depth == 0:
        name, _state.pending = _state.pending, None
        _state.delivered = True
        raise KeyboardInterrupt(name)


def _main_thread() -> bool:
    # Python runs signal handlers in the main thread only: a worker thread (Engine.arun, a thread pool) has
    # nothing to hold, and must not move the main thread's count.
    return threading.current_thread() is threading.main_thread()


def _stalled(signum: int, frame: FrameType | None) -> None:
    grace = _state.grace
    if grace is None or grace.first is None:  # a timer left from a block that has ended
        return
    _state.pending, _state.delivered = None, True  # the stop is answered by abandoning the block
    if grace.stalled is not None:
        raise grace.stalled(grace.first)
    raise TimeoutError(f"still running {grace.seconds:g} s after {grace.first}")


@contextmanager
def shielded(grace: float | None = None,
             stalled: Callable[[str], BaseException] | None = None) -> Iterator[None]:
    """Hold stop signals for the block; one that arrived is raised as KeyboardInterrupt when it ends (unless one
    was raised already: see the module doc). With `grace` (seconds), a block still running that long after the
    first stop signal that arrived in it is abandoned: SIGALRM raises `stalled(name of that signal)` (default a
    TimeoutError) from inside it. Stop signals reach this module's handler only after `install()`; SIGALRM's
    handler is this block's while it runs. Outside the main thread: no effect."""
    if not _main_thread():
        yield
        return
    outer, previous = _state.grace, None
    if grace is not None:
        _state.grace = _Grace(grace, stalled)
        previous = signal.signal(signal.SIGALRM, _stalled)
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if grace is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            _state.grace = outer
    _raise_pending()


@contextmanager
def interruptible() -> Iterator[None]:
    """Let stop signals through for the block, even inside a shield (a held one is raised on entry).
    Outside the main thread: no effect."""
    if not _main_thread():
        yield
        return
    depth, _state.depth = _state.depth, 0
    try:
        _raise_pending()
        yield
    finally:
        _state.depth = depth
