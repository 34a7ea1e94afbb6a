"""`adws stats`: dispatch statistics from the audit log, in one streaming pass.

Two kinds of figures, each counted where it belongs:
- task figures (tasks, success rate, first-attempt success, fall-through rate, attempts per task) count each task
  once, under where it ended: the provider, account and model of its last attempt, its rule, its day;
- attempt figures (attempts, rejected attempts, p50/p95 duration, tokens, cost) count each attempt under the
  provider, account and model it ran on (with its task's rule and day), so a limit hit on tier 1 shows on tier 1
  even when the task then succeeded on tier 3.

The ledger (the state store's usage records, which quotas are judged on) is shown beside them when the config's
store exists: usage per provider and account in the same window, including usage no audit record carries (a run
whose log write failed, usage synced from a provider).

A task *fell through* when it made attempts on more than one provider. A *rejected* attempt is one the provider
refused for a limit (`rate_limited` or `quota_exhausted`). Durations are attempts' `duration_ms`; attempts that
never started a process (`unavailable`) are left out of them. Days are UTC dates of the record.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from adws.dataclass_cache import dataclass, field
from adws.errors import UsageError
from adws.insight.records import LIMIT_OUTCOMES, Reading, attempts_of, iter_records, record_time, tokens_of
from adws.state.base import StateStore

DIMENSIONS = ("provider", "account", "rule", "model", "day")
NONE = "-"  # a dimension a task or attempt has no value for (no account declared, no attempt made)


def parse_by(value: str | None) -> tuple[str, ...]:
    """`--by provider,account`: the grouping dimensions, in the order given. Raises UsageError."""
    if value is None:
        return ("provider",)
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    for name in names:
        if name not in DIMENSIONS:
            from adws.errors import suggest

            raise UsageError(f"--by: unknown dimension {name!r}{suggest(name, DIMENSIONS)}; choose from "
                             f"{', '.join(DIMENSIONS)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--by: a dimension is named twice in {value!r}")
    return names


@dataclass(slots=True)
class Group:
    tasks: int = 0
    successes: int = 0
    first_attempt_successes: int = 0
    fell_through: int = 0
    task_attempts: int = 0  # attempts of the tasks counted here (for attempts per task)
    attempts: int = 0  # attempts that ran here
    rejected: int = 0
    durations_ms: list[int] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "success_rate": _ratio(self.successes, self.tasks),
            "first_attempt_success": _ratio(self.first_attempt_successes, self.tasks),
            "fall_through_rate": _ratio(self.fell_through, self.tasks),
            "attempts_per_task": _ratio(self.task_attempts, self.tasks),
            "attempts": self.attempts,
            "rejected_attempts": self.rejected,
            "p50_ms": percentile(self.durations_ms, 50),
            "p95_ms": percentile(self.durations_ms, 95),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def percentile(values: list[int], pct: float) -> int | None:
    """Nearest-rank percentile (the smallest value with at least pct% of values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class Stats:
    by: tuple[str, ...]
    since: datetime | None
    groups: dict[tuple[str, ...], Group]
    total: Group
    reading: Reading
    records: int
    ledger: list[dict[str, Any]] | None = None  # per provider/account from the state store, when read

    def rows(self) -> list[dict[str, Any]]:
        return [{**dict(zip(self.by, key, strict=True)), **group.to_dict()}
                for key, group in sorted(self.groups.items())]

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since.isoformat() if self.since else None, "by": list(self.by),
                "records": self.records, "unreadable_lines": self.reading.skipped,
                "rows": self.rows(), "total": self.total.to_dict(), "ledger": self.ledger}


def compute(path: str | os.PathLike[str], *, by: Sequence[str] = ("provider",),
            since: datetime | None = None, until: datetime | None = None) -> Stats:
    """Statistics over the records of the audit log at `path` written in [since, until)."""
    return compute_records(iter_records(path, reading := Reading()), by=by, since=since, until=until,
                           reading=reading)


def compute_records(records: Iterable[Mapping[str, Any]], *, by: Sequence[str] = ("provider",),
                    since: datetime | None = None, until: datetime | None = None,
                    reading: Reading | None = None) -> Stats:
    by = tuple(by)
    groups: dict[tuple[str, ...], Group] = {}
    total = Group()
    count = 0
    for record in records:
        at = record_time(record)
        if at is None or (since is not None and at < since) or (until is not None and at >= until):
            continue
        count += 1
        _add(record, at, by, groups, total)
    return Stats(by, since, groups, total, reading or Reading(), count)


def _add(record: Mapping[str, Any], at: datetime, by: tuple[str, ...], groups: dict[tuple[str, ...], Group],
         total: Group) -> None:
    attempts = attempts_of(record)
    decision = record.get("decision") if isinstance(record.get("decision"), Mapping) else {}
    assert isinstance(decision, Mapping)
    rule = str(decision.get("rule") or NONE)
    day = at.astimezone(UTC).date().isoformat()
    last = attempts[-1] if attempts else decision
    landing = {"provider": _value(last.get("provider")), "account": _value(last.get("account")),
               "model": _value(last.get("model")), "rule": rule, "day": day}
    success = bool(record.get("success"))
    first_ok = bool(attempts) and attempts[0].get("outcome") == "success"
    providers = {a.get("provider") for a in attempts}
    for group in (groups.setdefault(tuple(landing[d] for d in by), Group()), total):
        group.tasks += 1
        group.successes += success
        group.first_attempt_successes += first_ok
        group.fell_through += len(providers) > 1
        group.task_attempts += len(attempts)
    for attempt in attempts:
        where = {"provider": _value(attempt.get("provider")), "account": _value(attempt.get("account")),
                 "model": _value(attempt.get("model")), "rule": rule, "day": day}
        tokens_in, tokens_out, cost = tokens_of(attempt)
        rejected = attempt.get("outcome") in LIMIT_OUTCOMES
        ran = attempt.get("outcome") != "unavailable"
        duration = attempt.get("duration_ms")
        for group in (groups.setdefault(tuple(where[d] for d in by), Group()), total):
            group.attempts += 1
            group.rejected += rejected
            if ran and isinstance(duration, int):
                group.durations_ms.append(duration)
            group.input_tokens += tokens_in
            group.output_tokens += tokens_out
            group.cost_usd += cost


def ledger_rows(store: StateStore, providers: Iterable[str], since: datetime | None,
                until: datetime | None) -> list[dict[str, Any]]:
    """Usage per (provider, account) in the state store's ledger within [since, until); all of it without since."""
    start = since or datetime(1970, 1, 1, tzinfo=UTC)
    totals = store.usage_totals(dict.fromkeys(providers, start), until=until)
    return [{"provider": provider, "account": account, "requests": u.requests, "input_tokens": u.input_tokens,
             "output_tokens": u.output_tokens, "cost_usd": round(u.cost_usd, 6), "estimated": u.estimated}
            for (provider, account), u in sorted(totals.items())]


def _value(value: Any) -> str:
    return NONE if value in (None, "") else str(value)


# -- rendering ----------------------------------------------------------------------------------------------

_COLUMNS = (("tasks", "tasks", "{}"), ("success_rate", "ok", "{:.0%}"), ("first_attempt_success", "1st", "{:.0%}"),
            ("fall_through_rate", "fell", "{:.0%}"), ("attempts_per_task", "att/task", "{:.2f}"),
            ("rejected_attempts", "rejected", "{}"), ("p50_ms", "p50", "{}"), ("p95_ms", "p95", "{}"),
            ("tokens", "tokens", "{:,}"), ("cost_usd", "cost $", "{:.2f}"))


def render(stats: Stats) -> str:
    """A table, one row per group and a total; durations in seconds."""
    rows = [{**row, "tokens": row["input_tokens"] + row["output_tokens"]} for row in stats.rows()]
    total = {**{d: "" for d in stats.by}, **stats.total.to_dict()}
    total["tokens"] = total["input_tokens"] + total["output_tokens"]
    total[stats.by[0] if stats.by else "group"] = "total"
    head = [*stats.by, *(title for _, title, _ in _COLUMNS)]
    lines = []
    for row in [*rows, total]:
        cells = [str(row.get(d, "")) for d in stats.by]
        for key, _, fmt in _COLUMNS:
            value = row.get(key)
            if value is None:
                cells.append("-")
            elif key in ("p50_ms", "p95_ms"):
                cells.append(f"{value / 1000:.1f}s")
            else:
                cells.append(fmt.format(value))
        lines.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) if i < len(stats.by) else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths,
                                                                                                      strict=True)))]
    for cells in lines:
        out.append("  ".join(c.ljust(w) if i < len(stats.by) else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))))
    since = f" since {stats.since.isoformat()}" if stats.since else ""
    note = f"; {stats.reading.skipped} unreadable line(s) skipped" if stats.reading.skipped else ""
    out.append(f"({stats.records} task record(s){since}{note})")
    if stats.ledger is not None:
        out.append("ledger (state store, same window):")
        for row in stats.ledger:
            tokens = row["input_tokens"] + row["output_tokens"]
            out.append(f"  {row['provider'] + '/' + row['account']:<28} {row['requests']:>6} req {tokens:>14,} tok "
                       f"${row['cost_usd']:>9.2f}" + (" (includes estimates)" if row["estimated"] else ""))
        if not stats.ledger:
            out.append("  (no usage recorded)")
    return "\n".join(out)


# -- Prometheus text exposition (for node_exporter's textfile collector) --------------------------------------

_FAMILIES: tuple[tuple[str, str, str, str], ...] = (
    # (metric name, type, help, key in Group.to_dict())
    ("adws_tasks", "gauge", "Tasks that ended in this group within the window.", "tasks"),
    ("adws_task_success_ratio", "gauge", "Share of those tasks that succeeded.", "success_rate"),
    ("adws_first_attempt_success_ratio", "gauge", "Share of tasks whose first attempt succeeded.",
     "first_attempt_success"),
    ("adws_fall_through_ratio", "gauge", "Share of tasks that tried more than one provider.", "fall_through_rate"),
    ("adws_attempts_per_task", "gauge", "Attempts per task.", "attempts_per_task"),
    ("adws_attempts", "gauge", "Attempts that ran in this group within the window.", "attempts"),
    ("adws_rejected_attempts", "gauge", "Attempts a provider refused for a rate limit or a spent quota.",
     "rejected_attempts"),
)


def escape_label(value: str) -> str:
    """A label value as the exposition format writes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def render_prometheus(stats: Stats) -> str:
    """Prometheus text exposition format 0.0.4: HELP and TYPE before each family, families contiguous.

    Every figure is a gauge over the `--since` window (a textfile is rewritten on each run, so counters that
    could go down when the window moves would be wrong). Durations are a summary in seconds; tokens carry a
    `direction` label.
    """
    rows = [(tuple(zip(stats.by, key, strict=True)), group.to_dict()) for key, group in sorted(stats.groups.items())]
    out: list[str] = []
    for name, kind, help_text, key in _FAMILIES:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        out += [f"{name}{_labels(labels)} {_number(row[key])}" for labels, row in rows if row[key] is not None]
    name = "adws_attempt_duration_seconds"
    out += [f"# HELP {name} Duration of attempts that ran.", f"# TYPE {name} summary"]
    for (labels, _), group in zip(rows, (stats.groups[k] for k in sorted(stats.groups)), strict=True):
        if not group.durations_ms:
            continue
        for quantile in (50, 95):
            value = percentile(group.durations_ms, quantile)
            assert value is not None
            out.append(f"{name}{_labels([*labels, ('quantile', str(quantile / 100))])} {_number(value / 1000)}")
        out.append(f"{name}_sum{_labels(labels)} {_number(sum(group.durations_ms) / 1000)}")
        out.append(f"{name}_count{_labels(labels)} {len(group.durations_ms)}")
    name = "adws_tokens"
    out += [f"# HELP {name} Tokens the attempts used.", f"# TYPE {name} gauge"]
    for labels, row in rows:
        for direction in ("input", "output"):
            out.append(f"{name}{_labels([*labels, ('direction', direction)])} {row[direction + '_tokens']}")
    name = "adws_cost_usd"
    out += [f"# HELP {name} Cost of the attempts in US dollars.", f"# TYPE {name} gauge"]
    out += [f"{name}{_labels(labels)} {_number(float(row['cost_usd']))}" for labels, row in rows]
    if stats.ledger is not None:
        who = [((("provider", r["provider"]), ("account", r["account"])), r) for r in stats.ledger]
        name = "adws_ledger_tokens"
        out += [f"# HELP {name} Tokens in the state store's ledger within the window.", f"# TYPE {name} gauge"]
        out += [f"{name}{_labels([*labels, ('direction', d)])} {row[d + '_tokens']}"
                for labels, row in who for d in ("input", "output")]
        name = "adws_ledger_requests"
        out += [f"# HELP {name} Requests in the state store's ledger within the window.", f"# TYPE {name} gauge"]
        out += [f"{name}{_labels(labels)} {row['requests']}" for labels, row in who]
        name = "adws_ledger_cost_usd"
        out += [f"# HELP {name} Cost in the state store's ledger within the window, US dollars.",
                f"# TYPE {name} gauge"]
        out += [f"{name}{_labels(labels)} {_number(float(row['cost_usd']))}" for labels, row in who]
    return "\n".join(out) + "\n"
