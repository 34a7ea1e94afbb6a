"""What `adws simulate` feeds the engine: a declared workload, an audit log's tasks, or an issue queue.

A workload file (TOML) declares arrivals, task sizes and the mix of tasks; every key is optional:

    [workload]
    tasks_per_day = 150          # mean arrivals per day (a Poisson process)
    weekend_factor = 0.3         # Saturdays and Sundays get this share of a weekday's arrivals
    hours = [8, 20]              # arrivals fall in these UTC hours, end excluded
    error_rate = 0.02            # share of attempts the simulated agent fails with an error (not a limit)
    unseen_use = 0.0             # share of every quota used outside adws (people, other tools): the provider
                                 # refuses when the rest is spent, though adws's own ledger shows room

    [workload.size]              # tokens per attempt, log-normal: a median and a 90th percentile
    input = { median = 20000, p90 = 80000 }
    output = { median = 3000, p90 = 12000 }
    output_tokens_per_second = 40  # with the model's latency_ms, how long an attempt takes

    [[workload.mix]]             # kinds of task, drawn by weight; each is a task as `adws route` takes it
    weight = 40
    task = { title = "Fix the parser", labels = ["bug"] }

A task's `context_tokens` is its drawn input size (unless its mix entry sets one), so rules on context size see
what the agent will read. Errors name the key, e.g. `workload.size.input.median: expected a positive number`.
"""

from __future__ import annotations

import json
import math
import random
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from adws.dataclass_cache import dataclass, field
from adws.errors import TaskError, UsageError, suggest
from adws.inputs import MAX_DEPTH, deepest_value
from adws.insight.records import attempts_of, iter_records, routed_at, task_of, tokens_of
from adws.task import Task

Z90 = 1.2815515655446004  # the standard normal's 90th percentile


@dataclass(frozen=True, slots=True)
class LogNormal:
    median: float
    p90: float

    def draw(self, rng: random.Random) -> int:
        sigma = math.log(self.p90 / self.median) / Z90
        return max(1, int(rng.lognormvariate(math.log(self.median), sigma)))


@dataclass(frozen=True, slots=True)
class Workload:
    tasks_per_day: float = 150.0
    weekend_factor: float = 0.3
    hours: tuple[int, int] = (0, 24)
    error_rate: float = 0.02
    unseen_use: float = 0.0
    input: LogNormal = LogNormal(20000, 80000)
    output: LogNormal = LogNormal(3000, 12000)
    output_tokens_per_second: float = 40.0
    mix: tuple[tuple[float, Mapping[str, Any]], ...] = ((1.0, {"title": "Implement the change"}),)


@dataclass(frozen=True, slots=True)
class SimTask:
    """One arrival: when, the task as route() takes it, and how many tokens an attempt on it uses."""

    at: datetime
    task: dict[str, Any]
    input_tokens: int
    output_tokens: int

    @property
    def key(self) -> str:
        return str(self.task["id"])


@dataclass(slots=True)
class _Reader:
    """Reads a TOML table and records the first problem with its place."""

    where: str
    data: Mapping[str, Any]
    allowed: tuple[str, ...]
    used: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for key in self.data:
            if key not in self.allowed:
                raise UsageError(f"{self.where}.{key}: unknown key{suggest(key, self.allowed)}; "
                                 f"allowed: {', '.join(self.allowed)}")

    def number(self, key: str, default: float, *, low: float = 0.0, high: float = math.inf,
               positive: bool = False) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high or (
                positive and value <= 0):
            bound = "a positive number" if positive else f"a number within {low:g}-{high:g}"
            raise UsageError(f"{self.where}.{key}: expected {bound}, got {value!r}")
        return float(value)

    def table(self, key: str) -> Mapping[str, Any]:
        value = self.data.get(key, {})
        if not isinstance(value, Mapping):
            raise UsageError(f"{self.where}.{key}: expected a table, got {value!r}")
        return value


def _lognormal(where: str, data: Any, default: LogNormal) -> LogNormal:
    if data is None:
        return default
    if not isinstance(data, Mapping):
        raise UsageError(f"{where}: expected {{ median = N, p90 = N }}, got {data!r}")
    reader = _Reader(where, data, ("median", "p90"))
    median = reader.number("median", default.median, positive=True)
    p90 = reader.number("p90", max(default.p90, median), positive=True)
    if p90 < median:
        raise UsageError(f"{where}.p90: must be at least the median ({median:g}), got {p90:g}")
    return LogNormal(median, max(p90, median * 1.0001))  # a zero spread would divide by zero: nearly fixed


# The keys that say when tasks arrive and what they are: meaningless when the tasks come from elsewhere.
ARRIVAL_KEYS = ("tasks_per_day", "weekend_factor", "hours", "mix")


def load_workload(path: str, *, tasks_from: str | None = None) -> Workload:
    """Read a workload file. Raises UsageError naming the key for anything it does not understand.

    `tasks_from` (an option such as "--issues") names where the tasks come from when not from this file: its
    sizes and agent behaviour still apply, but a key of ARRIVAL_KEYS would be silently ignored, so it is refused.
    """
    try:
        from adws.inputs import MAX_CONFIG_BYTES, read_text

        data = tomllib.loads(read_text(path, MAX_CONFIG_BYTES, "a workload file"))
    except OSError as exc:
        raise UsageError(f"cannot read the workload {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nesting level: the config loader's limit, said the same way
        raise UsageError(f"{path}: nested too deeply: a workload needs at most {MAX_DEPTH} levels of tables and "
                         "arrays") from None
    deepest = deepest_value(data)
    if deepest is not None:
        depth, place = deepest
        shown = ".".join(str(part) for part in place[:4])
        raise UsageError(f"{path}: nested {depth} levels deep under {shown}: a workload needs at most {MAX_DEPTH} "
                         "levels of tables and arrays")
    top = _Reader(path, data, ("workload",))
    body = top.table("workload")
    ignored = [key for key in ARRIVAL_KEYS if key in body] if tasks_from is not None else []
    if ignored:
        keys = ", ".join(f"workload.{key}" for key in ignored)
        raise UsageError(f"{path}: {keys} cannot apply with {tasks_from}: the tasks and their times come from "
                         f"there (the workload's size, error_rate and unseen_use do apply); remove {keys}, "
                         f"or leave {tasks_from} out to generate the tasks")
    w = _Reader("workload", body, ("tasks_per_day", "weekend_factor", "hours", "error_rate", "unseen_use", "size",
                                       "mix"))
    hours = body.get("hours", [0, 24])
    if (not isinstance(hours, list) or len(hours) != 2 or not all(type(h) is int for h in hours)
            or not 0 <= hours[0] < hours[1] <= 24):
        raise UsageError(f"workload.hours: expected [start, end] with 0 <= start < end <= 24, got {hours!r}")
    size = _Reader("workload.size", w.table("size"), ("input", "output", "output_tokens_per_second"))
    base = Workload()
    mix_raw = body.get("mix", None)
    mix = base.mix
    if mix_raw is not None:
        if not isinstance(mix_raw, list) or not mix_raw:
            raise UsageError("workload.mix: expected a non-empty array of tables ([[workload.mix]])")
        entries = []
        for i, entry in enumerate(mix_raw):
            where = f"workload.mix[{i}]"
            if not isinstance(entry, Mapping):
                raise UsageError(f"{where}: expected a table, got {entry!r}")
            reader = _Reader(where, entry, ("weight", "task"))
            weight = reader.number("weight", 1.0, positive=True)
            task = reader.table("task")
            try:
                Task.from_dict(task)
            except TaskError as exc:  # nested no deeper than MAX_DEPTH (read_workload): no RecursionError
                raise UsageError(f"{where}.task: {exc}") from None
            entries.append((weight, dict(task)))
        mix = tuple(entries)
    return Workload(
        tasks_per_day=w.number("tasks_per_day", base.tasks_per_day),
        weekend_factor=w.number("weekend_factor", base.weekend_factor),
        hours=(hours[0], hours[1]),
        error_rate=w.number("error_rate", base.error_rate, high=1.0),
        unseen_use=w.number("unseen_use", base.unseen_use, high=0.99),
        input=_lognormal("workload.size.input", size.data.get("input"), base.input),
        output=_lognormal("workload.size.output", size.data.get("output"), base.output),
        output_tokens_per_second=size.number("output_tokens_per_second", base.output_tokens_per_second,
                                             positive=True),
        mix=mix,
    )


def _sized(rng: random.Random, workload: Workload, at: datetime, task: dict[str, Any], ident: str,
           input_tokens: int | None = None, output_tokens: int | None = None) -> SimTask:
    tokens_in = input_tokens if input_tokens is not None else workload.input.draw(rng)
    tokens_out = output_tokens if output_tokens is not None else workload.output.draw(rng)
    task = {**task, "id": ident}
    task.setdefault("context_tokens", tokens_in)
    return SimTask(at, task, tokens_in, tokens_out)


def generate(workload: Workload, start: datetime, days: int, rng: random.Random) -> list[SimTask]:
    """Arrivals over `days` UTC days from the one `start` falls in: Poisson per day (thinned on weekends), uniform
    within `hours` (UTC); arrivals before `start` are dropped."""
    tasks: list[SimTask] = []
    weights = [w for w, _ in workload.mix]
    start_h, end_h = workload.hours
    first = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for day in range(days):
        midnight = first + timedelta(days=day)
        rate = workload.tasks_per_day * (workload.weekend_factor if midnight.weekday() >= 5 else 1.0)
        count = _poisson(rng, rate)
        offsets = sorted(rng.uniform(start_h * 3600, end_h * 3600) for _ in range(count))
        for offset in offsets:
            (task,) = rng.choices([t for _, t in workload.mix], weights=weights)
            at = midnight + timedelta(seconds=int(offset))
            if at < start:
                continue
            ident = f"sim-{len(tasks) + 1:05d}"
            tasks.append(_sized(rng, workload, at, dict(task), ident))
    return tasks


def _poisson(rng: random.Random, rate: float) -> int:
    if rate <= 0:
        return 0
    if rate > 500:  # Knuth's method underflows: the normal approximation is exact enough here
        return max(0, round(rng.gauss(rate, math.sqrt(rate))))
    limit, k, p = math.exp(-rate), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def from_audit(path: str, workload: Workload, rng: random.Random, start: datetime | None,
               days: int) -> list[SimTask]:
    """The tasks of an audit log at their recorded times (shifted so the first lands on `start`, if given),
    sized by what their successful attempt used (else drawn). Only the first `days` days are kept."""
    found: list[tuple[datetime, dict[str, Any], int | None, int | None]] = []
    for record in iter_records(path):
        task, when = task_of(record), routed_at(record)
        if task is None or when is None:
            continue
        used = [tokens_of(a) for a in attempts_of(record) if a.get("outcome") == "success"]
        tokens_in, tokens_out = (used[-1][0], used[-1][1]) if used and used[-1][0] + used[-1][1] else (None, None)
        found.append((when, task, tokens_in, tokens_out))
    found.sort(key=lambda item: item[0])
    if not found:
        raise UsageError(f"{path}: no task records to simulate")
    shift = (start - found[0][0]) if start is not None else timedelta(0)
    first = found[0][0] + shift
    out = []
    for i, (when, task, tokens_in, tokens_out) in enumerate(found):
        at = when + shift
        if at - first >= timedelta(days=days):
            break
        out.append(_sized(rng, workload, at, task, str(task.get("id") or f"audit-{i + 1:05d}"), tokens_in,
                          tokens_out))
    return out


def from_issues(path: str, workload: Workload, rng: random.Random, start: datetime) -> list[SimTask]:
    """An open-issue queue as `gh issue list --json number,title,body,labels` prints it, all waiting at `start`
    (one a minute, in the order listed), sized by the workload's distribution."""
    try:
        from adws.inputs import MAX_TASKS_BYTES, read_text

        data = json.loads(read_text(path, MAX_TASKS_BYTES, "an issue list"))
    except OSError as exc:
        raise UsageError(f"cannot read the issue list {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # ValueError: also an integer beyond Python's digit limit
        raise UsageError(f"{path}: not JSON: {exc}") from None
    except RecursionError:  # as `adws route` says of a task
        raise UsageError(f"{path}: the JSON is nested too deeply") from None
    deepest = deepest_value(data)
    if deepest is not None:  # the config's limit: a task goes through the same recursive checks as its values
        depth, place = deepest
        raise UsageError(f"{path}: [{place[0]}]: nested {depth} levels deep: a task needs at most {MAX_DEPTH} levels")
    if not isinstance(data, list):
        raise UsageError(f"{path}: expected a JSON array (gh issue list --json number,title,body,labels)")
    out = []
    for i, issue in enumerate(data):
        try:
            task = Task.from_dict(issue)
        except TaskError as exc:  # nested no deeper than MAX_DEPTH (checked above): no RecursionError
            raise UsageError(f"{path}: [{i}]: {exc}") from None
        raw = {k: v for k, v in task.to_dict().items() if v not in (None, {}, [])}
        ident = f"#{task.number}" if task.number is not None else f"issue-{i + 1:05d}"
        out.append(_sized(rng, workload, start + timedelta(minutes=i), raw, ident))
    return out
