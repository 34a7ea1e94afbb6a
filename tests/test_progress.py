"""Progress views: the live terminal table (rendered to a fixed-width console), plain lines, colour rules."""

from __future__ import annotations

import io
import re
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console
from syrupy.assertion import SnapshotAssertion

from adws.batch import Event, EventKind
from adws.progress import LiveProgress, PlainProgress, progress_for, wants_colour
from adws.result import NOTHING_TO_RUN

COLOUR = re.compile(r"\x1b\[(?:3[0-7]|38;|9[0-7])")  # a foreground colour in an SGR sequence
AT = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)


class Tick:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def feed(view: LiveProgress | PlainProgress) -> None:
    view(Event(EventKind.TASK_STARTED, 0, "#42", AT))
    view(Event(EventKind.ATTEMPT_STARTED, 0, "#42", AT, provider="claude", account="work", model="sonnet",
               attempt=1, tier=1))
    view(Event(EventKind.TASK_STARTED, 1, "#43", AT))
    view(Event(EventKind.ATTEMPT_STARTED, 1, "#43", AT, provider="copilot", attempt=1, tier=2))
    view(Event(EventKind.ATTEMPT_FINISHED, 1, "#43", AT, provider="copilot", attempt=1, outcome="auth",
               reason="bad credentials", duration_ms=2100))
    view(Event(EventKind.TASK_FINISHED, 1, "#43", AT, outcome="failed", reason="plan spent", duration_ms=2300))
    view(Event(EventKind.TASK_STARTED, 2, "#44", AT))
    view(Event(EventKind.TASK_WAITING, 2, "#44", AT, reason="claude cooling down",
               until=AT + timedelta(minutes=12, seconds=5)))


def test_the_live_view_shows_counts_and_one_line_per_running_task(snapshot: SnapshotAssertion) -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None, force_terminal=False)
    tick = Tick()
    view = LiveProgress(5, console, monotonic=tick)
    feed(view)
    tick.now += 75  # 1:15 later
    console.print(view)
    assert out.getvalue() == snapshot


def test_plain_lines_one_per_event(snapshot: SnapshotAssertion) -> None:
    out = io.StringIO()
    feed(PlainProgress(out, clock=lambda: "13:00:00"))
    assert out.getvalue() == snapshot


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    assert wants_colour(Tty(), {}) is True
    assert wants_colour(Tty(), {"NO_COLOR": "1"}) is False
    assert wants_colour(io.StringIO(), {}) is False
    assert isinstance(progress_for(io.StringIO(), 3), PlainProgress)
    live = progress_for(Tty(), 3, environ={"NO_COLOR": "1"})
    assert isinstance(live, LiveProgress) and live.console.no_color
    assert not progress_for(Tty(), 3, environ={}).console.no_color  # type: ignore[union-attr]


def test_the_live_view_draws_on_a_terminal_and_clears_itself() -> None:
    out = Tty()
    view = progress_for(out, 1, environ={"NO_COLOR": "1"})
    with view:
        view(Event(EventKind.TASK_STARTED, 0, "#1", AT))
        view(Event(EventKind.TASK_FINISHED, 0, "#1", AT, outcome="success", duration_ms=1000))
    text = out.getvalue()
    assert "✓ #1 success 1.0 s" in text
    assert COLOUR.search(text) is None  # no colour codes with NO_COLOR (cursor movement and bold are fine)


@pytest.mark.parametrize("stream", [io.StringIO, Tty], ids=["plain", "live"])
def test_a_task_with_nothing_to_run_points_a_person_where_they_see_why(stream: type[io.StringIO]) -> None:
    # The event's reason is the result's message, which points a program at decision.skipped (a JSON field).
    out = stream()
    with progress_for(out, 1, environ={"NO_COLOR": "1"}, skipped="see above") as view:
        view(Event(EventKind.TASK_STARTED, 0, "#1", AT))
        view(Event(EventKind.TASK_FINISHED, 0, "#1", AT, outcome="failed", reason=NOTHING_TO_RUN, duration_ms=0))
    assert "#1 failed (nothing to run: every tier was skipped (why: see above)) 0.0 s" in \
        out.getvalue()
    assert "decision.skipped" not in out.getvalue()


def test_on_a_terminal_without_no_color_finished_tasks_are_coloured() -> None:
    out = Tty()
    view = progress_for(out, 2, environ={})
    with view:
        for index, outcome in enumerate(("success", "failed")):
            view(Event(EventKind.TASK_STARTED, index, f"#{index}", AT))
            view(Event(EventKind.TASK_FINISHED, index, f"#{index}", AT, outcome=outcome))
    assert COLOUR.search(out.getvalue()) is not None


def test_plain_lines_are_in_the_routing_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine's clock is in New York; the routing timezone is Berlin: every time shown is Berlin's.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        out = io.StringIO()
        view = PlainProgress(out, zone=ZoneInfo("Europe/Berlin"))
        view(Event(EventKind.TASK_WAITING, 2, "#44", AT, reason="claude cooling down",
                   until=AT + timedelta(minutes=12, seconds=5)))
        stamp, rest = out.getvalue().split(" ", 1)
        assert rest == "#44 waiting until 14:12 CET (claude cooling down)\n"
        berlin = datetime.now(ZoneInfo("Europe/Berlin"))
        h, m, sec = map(int, stamp.split(":"))
        apart = abs((berlin.hour * 3600 + berlin.minute * 60 + berlin.second) - (h * 3600 + m * 60 + sec))
        assert min(apart, 86400 - apart) < 60, (stamp, berlin)  # New York is 6 hours away
    finally:
        monkeypatch.undo()
        time.tzset()


class _Breaks(io.StringIO):
    """A stream that takes `room` writes, then fails as a closed pipe does."""

    def __init__(self, room: int, tty: bool = False) -> None:
        super().__init__()
        self.room = room
        self.tty = tty

    def write(self, text: str) -> int:
        if self.room <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.room -= 1
        return super().write(text)

    def isatty(self) -> bool:
        return self.tty


def test_a_view_whose_stream_fails_stops_writing_and_never_raises() -> None:
    # The tasks it watches go on: a progress view that cannot be shown is given up, not the batch.
    stream = _Breaks(room=1)
    plain = PlainProgress(stream, clock=lambda: "13:05:12")
    feed(plain)
    assert stream.getvalue() == "13:05:12 #42 started\n" and isinstance(plain.failed, BrokenPipeError)
    live = progress_for(_Breaks(room=0, tty=True), 3)
    with live:
        feed(live)
        live.console.print("more")
