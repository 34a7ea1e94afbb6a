"""Events of a run or a batch, for progress displays, callbacks and logs (`adws.batch`, `adws.progress`).

Kept free of imports from the rest of adws but its errors: the manager emits attempt events, `Engine.run` adds
the task events around them (for `run` and `run_many` alike).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from adws.dataclass_cache import dataclass
from adws.errors import AdwsError, RunCancelled

if TYPE_CHECKING:
    from adws.result import Result

__all__ = ["Event", "EventKind", "EventSink", "SafeSink", "announce", "failure_of", "task_finished"]

log = logging.getLogger("adws.events")


class EventKind(enum.StrEnum):
    TASK_STARTED = "task_started"
    ATTEMPT_STARTED = "attempt_started"
    ATTEMPT_FINISHED = "attempt_finished"
    TASK_WAITING = "task_waiting"
    TASK_FINISHED = "task_finished"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to one task of a batch. `index` is the task's position in the input."""

    kind: EventKind
    index: int
    task: str  # the task's label: its id, "#<number>", or its place in the input
    at: datetime
    provider: str | None = None
    account: str | None = None
    model: str | None = None
    attempt: int | None = None  # 1-based, within the task
    tier: int | None = None  # 1-based position of the attempt's tier in the plan
    outcome: str | None = None  # attempt_finished: the outcome class; task_finished: "success" or "failed"
    reason: str | None = None
    until: datetime | None = None  # task_waiting: when it will try again
    duration_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        return {k: (v.isoformat() if isinstance(v, datetime) else str(v) if k == "kind" else v)
                for k, v in data.items() if v is not None}

    def describe(self) -> str:
        """One plain line: `#42 attempt 2 tier 1 claude/a sonnet: rate_limited (usage limit) 12.3 s`."""
        who = (f"tier {self.tier} " if self.tier else "") + (self.provider or "") + \
            (f"/{self.account}" if self.account else "")
        model = f" {self.model}" if self.model else ""
        took = f" {self.duration_ms / 1000:.1f} s" if self.duration_ms is not None else ""
        why = f" ({self.reason})" if self.reason else ""
        match self.kind:
            case EventKind.TASK_STARTED:
                return f"{self.task} started"
            case EventKind.ATTEMPT_STARTED:
                return f"{self.task} attempt {self.attempt} {who}{model}: started"
            case EventKind.ATTEMPT_FINISHED:
                said = f"{self.outcome}{why}" if self.outcome else (self.reason or "ended")
                return f"{self.task} attempt {self.attempt} {who}{model}: {said}{took}"
            case EventKind.TASK_WAITING:
                until = self.until.isoformat(timespec="minutes") if self.until else "?"
                return f"{self.task} waiting until {until}{why}"
            case EventKind.TASK_FINISHED:
                return f"{self.task} {self.outcome}{why}{took}"
        return f"{self.task} {self.kind}"  # pragma: no cover - every kind is matched above


EventSink = Callable[[Event], None]


class SafeSink:
    """A callback (`on_event`, a manager's `observer`) whose exceptions never reach the run: an attempt that ran is
    recorded whatever its observer does. The first Exception it raises is logged on the "adws.events" logger and
    kept in `failure`; later ones are ignored (a closed pipe under a progress display raises on every write), and
    it goes on hearing events: a callback that fails on one event may still want the next, and run_many's own
    book-keeping rides on it. A KeyboardInterrupt still stops the run. `take()` hands the failure on once, for
    the result's warnings. Wrapping a SafeSink again returns it as it is (see `of`)."""

    __slots__ = ("_taken", "failure", "sink")

    def __init__(self, sink: EventSink | None) -> None:
        self.sink = sink
        self.failure: str | None = None
        self._taken = False

    def __call__(self, event: Event) -> None:
        sink = self.sink
        if sink is None:
            return
        try:
            sink(event)
        except Exception as exc:
            if self.failure is None:
                self.failure = (f"the event callback (on_event) raised {type(exc).__name__}: {exc} at {event.kind} "
                                "(its first failure in this task; the task went on)")
                log.warning("%s", self.failure)

    def take(self) -> str | None:
        """The failure, the first time it is asked for after it happened; None otherwise."""
        if self.failure is None or self._taken:
            return None
        self._taken = True
        return self.failure


def announce(event: Event, sink: EventSink | None) -> None:
    """Log `event` (INFO on the "adws.events" logger, the event's fields in `extra["adws_event"]`), then hand
    it to `sink` if there is one. Every event adws emits goes through here exactly once."""
    if log.isEnabledFor(logging.INFO):  # the same test log.info makes, before building what it would discard
        log.info("%s", event.describe(), extra={"adws_event": event.to_dict()})
    if sink is not None:
        sink(event)


def failure_of(exc: BaseException) -> tuple[str, bool]:
    """How a task whose run raised `exc` is reported: (what to say, whether it was interrupted). A stop
    (KeyboardInterrupt, RunCancelled) is "interrupted"; an AdwsError says what is wrong itself; anything else is
    a bug in adws, named as one."""
    if isinstance(exc, (KeyboardInterrupt, RunCancelled)):
        return "interrupted", True
    if isinstance(exc, AdwsError):
        return str(exc), False
    return f"internal error: {type(exc).__name__}: {exc}", False


def task_finished(index: int, task: str, at: datetime, result: Result | None, failure: tuple[str, bool] | None,
                  *, stopping: bool, duration_ms: int) -> Event:
    """The `task_finished` event of a task that returned `result`, or raised (`failure`, see failure_of; `result`
    then what it ran, if anything). Outcome "success", "interrupted" (a stop, or any failure while the caller is
    `stopping`) or "failed"; `reason` is the failure's text, else the result's message."""
    success = failure is None and result is not None and result.success
    interrupted = not success and (stopping or (failure is not None and failure[1]))
    reason = None if success else (failure[0] if failure is not None else result.message if result else None)
    return Event(EventKind.TASK_FINISHED, index, task, at,
                 provider=result.provider if result else None, account=result.account if result else None,
                 model=result.model if result else None,
                 outcome="success" if success else "interrupted" if interrupted else "failed",
                 reason=reason, duration_ms=duration_ms)
