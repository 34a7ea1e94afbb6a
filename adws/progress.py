"""Progress of a batch for a person watching: a live display on a terminal, one plain line per event elsewhere.

`progress_for(stream)` picks the view. On a terminal the live display (rich's `Live`) shows tasks done/total,
failures, and one line per running or waiting task (task, provider/account, model, attempt, elapsed or
countdown), redrawn a few times a second. Off a terminal (a log file, CI) each event is one plain line, so
the log reads the same as it grows. Colours only on a terminal, and never when NO_COLOR is set
(https://no-color.org).

Both views are callables taking `adws.events.Event`, used as context managers around the batch. Times are in
`zone` (the routing timezone, as every human view: adws.views): the plain view's stamp to the second (a log
line), a time inside an event (`waiting until ...`) to the minute (`adws.views.times_in`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from types import TracebackType
from typing import IO, TYPE_CHECKING, cast

from adws.batch import Event, EventKind
from adws.dataclass_cache import dataclass, replace
from adws.result import for_a_person
from adws.views import times_in


def describe(event: Event, zone: tzinfo | None, skipped: str | None = None) -> str:
    """`event.describe()` with its times to the minute in `zone` (None: as the event wrote them); a task that
    had nothing to run points at `skipped` for why (`adws.result.for_a_person`; None: at `decision.skipped`, as
    the event says)."""
    if skipped is not None and event.kind is EventKind.TASK_FINISHED and event.reason is not None:
        event = replace(event, reason=for_a_person(event.reason, skipped))
    text = event.describe()
    return text if zone is None else times_in(text, zone, event.at)


def escape(text: str) -> str:
    """Task titles and reasons are not rich markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

__all__ = ["LiveProgress", "PlainProgress", "progress_for"]

Monotonic = Callable[[], float]


def wants_colour(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set to anything non-empty."""
    env = os.environ if environ is None else environ
    return bool(getattr(stream, "isatty", lambda: False)()) and not env.get("NO_COLOR")


class PlainProgress:
    """One line per event: `13:05:12 #42 attempt 1 claude/a sonnet: started`. Thread-safe. Never raises for its
    stream: once a write fails (a closed pipe, a full disk) it writes nothing more (`failed`).

    `zone`: the timezone of the stamp (the wall clock when the line is written) and of times inside events;
    None: the machine's local time. `skipped`: where a person sees why a task had nothing to run (`describe`).
    `clock` replaces the stamp (tests)."""

    def __init__(self, stream: IO[str], *, zone: tzinfo | None = None, skipped: str | None = None,
                 clock: Callable[[], str] | None = None) -> None:
        self.stream = stream
        self.zone = zone
        self.skipped = skipped
        self._stamp = clock or (lambda: datetime.now(zone).strftime("%H:%M:%S"))
        self._lock = threading.Lock()
        # The error that ended the view (its stream failed), or None. A view that cannot be shown is given up: the
        # tasks it watches go on and are recorded all the same.
        self.failed: OSError | ValueError | None = None

    def __call__(self, event: Event) -> None:
        if self.failed is not None:
            return
        line = describe(event, self.zone, self.skipped)
        with self._lock:
            if self.failed is not None:
                return
            try:
                self.stream.write(f"{self._stamp()} {line}\n")
                self.stream.flush()
            except (OSError, ValueError) as exc:  # a closed pipe, a full disk, a closed file: the view stops
                self.failed = exc

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        return None


@dataclass(slots=True)
class _Running:
    task: str
    since: float  # monotonic seconds
    provider: str | None = None
    account: str | None = None
    model: str | None = None
    attempt: int | None = None
    tier: int | None = None
    wait_ends: float | None = None  # monotonic seconds


class LiveProgress:
    """The live terminal view. `total` tasks; events update it; rich redraws it (`__rich__`)."""

    def __init__(self, total: int, console: Console, *, monotonic: Monotonic = time.monotonic,
                 zone: tzinfo | None = None, skipped: str | None = None) -> None:
        """`zone`: the timezone of times inside events (None: as the events wrote them); `skipped`: where a person
        sees why a task had nothing to run (`describe`)."""
        self.total = total
        self.zone = zone
        self.skipped = skipped
        self.console = console
        self.done = 0
        self.failed = 0
        self.running: dict[int, _Running] = {}
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __call__(self, event: Event) -> None:
        now = self._monotonic()
        finished: str | None = None
        with self._lock:
            row = self.running.get(event.index)
            if event.kind is EventKind.TASK_STARTED or row is None:
                row = self.running[event.index] = _Running(event.task, now)
            if event.kind is EventKind.ATTEMPT_STARTED:
                row.provider, row.account, row.model = event.provider, event.account, event.model
                row.attempt, row.tier = event.attempt, event.tier
                row.wait_ends = None
            elif event.kind is EventKind.TASK_WAITING and event.until is not None:
                row.wait_ends = now + max(0.0, (event.until - event.at).total_seconds())
            elif event.kind is EventKind.TASK_FINISHED:
                del self.running[event.index]
                self.done += 1
                ok = event.outcome == "success"
                self.failed += not ok
                line = escape(describe(event, self.zone, self.skipped))
                finished = f"{'[green]✓[/green]' if ok else '[red]✗[/red]'} {line}"
        if finished is not None:
            # Outside the lock: printing redraws the live area, which reads this object. A finished task
            # scrolls above the live area, so the record stays readable afterwards.
            with contextlib.suppress(OSError, ValueError):  # the terminal went away: the tasks go on without it
                self.console.print(finished, highlight=False)

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = self._monotonic()
        with self._lock:
            rows = sorted(self.running.items())
            head = (f"{self.done}/{self.total} done · {self.failed} failed · "
                    f"{sum(r.wait_ends is None for _, r in rows)} running · "
                    f"{sum(r.wait_ends is not None for _, r in rows)} waiting")
            table = Table(box=None, pad_edge=False, expand=False)
            for name in ("task", "tier", "provider", "model", "attempt", "time"):
                table.add_column(name, no_wrap=True, overflow="ellipsis",
                                 justify="right" if name in ("tier", "attempt", "time") else "left")
            for _, row in rows:
                who = (row.provider or "-") + (f"/{row.account}" if row.account else "")
                waiting = row.wait_ends is not None
                when = f"waits {_clock((row.wait_ends or now) - now)}" if waiting else _clock(now - row.since)
                table.add_row(row.task, str(row.tier or "-"), who, row.model or "", str(row.attempt or "-"), when)
        return Group(Text(head, no_wrap=True, overflow="ellipsis"), table) if rows else Text(head)

    def __enter__(self) -> LiveProgress:
        from rich.live import Live

        self._live = Live(self, console=self.console, refresh_per_second=4, transient=True)
        self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(kind, value, trace)
            self._live = None


def _clock(seconds: float) -> str:
    """Elapsed or remaining time as `m:ss`, or `h:mm:ss` from an hour on."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_for(stream: IO[str], total: int, *, environ: Mapping[str, str] | None = None,
                 zone: tzinfo | None = None, skipped: str | None = None) -> PlainProgress | LiveProgress:
    """The live view when `stream` is a terminal, else plain lines (no colour codes off a terminal); times in
    `zone` (the routing timezone; None: the machine's local time); a task that had nothing to run points at
    `skipped` for why (None: at `decision.skipped`)."""
    if not getattr(stream, "isatty", lambda: False)():
        return PlainProgress(stream, zone=zone, skipped=skipped)
    from rich.console import Console

    console = Console(file=cast("IO[str]", _Forgiving(stream)), no_color=not wants_colour(stream, environ),
                      highlight=False)
    return LiveProgress(total, console, zone=zone, skipped=skipped)


class _Forgiving:
    """A stream whose writes stop, silently, after the first one that fails (a closed terminal, a full disk): the
    live view redraws from a thread of rich's, where an error would end that thread with a traceback and leave the
    tasks it watches none the better. Everything else (isatty, fileno, encoding) is the stream's."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.failed = False

    def write(self, text: str) -> int:
        if not self.failed:
            try:
                return self.stream.write(text)
            except (OSError, ValueError):
                self.failed = True
        return len(text)

    def flush(self) -> None:
        if not self.failed:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.failed = True

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)
