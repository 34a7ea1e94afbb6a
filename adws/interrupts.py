"""Stop signals (SIGTERM, SIGHUP, SIGINT) for `adws run`: delivered once, never in the middle of recording.

`install()` makes the first stop signal raise KeyboardInterrupt (named after the signal) so the run unwinds:
the runner ends the agent's processes, slots are released, the audit log is written. Two rules keep that
unwinding from losing what it is there to keep:
- inside `shielded()` (recording an attempt that ran: ledger, breaker, result) a signal is held and raised
  when the block ends, so an attempt is never half recorded;
- only the first signal is raised; later ones (an impatient second Ctrl-C, SIGTERM then SIGHUP from a
  supervisor) are noted and ignored while adws records what happened, then exits.

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


class _State:
    depth = 0  # nesting of shielded() blocks (interruptible() sets it to 0 for its own block)
    pending: str | None = None  # a signal held by a shield
    delivered = False  # a stop was raised already: later signals are ignored


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
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


@contextmanager
def shielded() -> Iterator[None]:
    """Hold stop signals for the block; one that arrived is raised as KeyboardInterrupt when it ends.
    Outside the main thread: no effect."""
    if not _main_thread():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
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
