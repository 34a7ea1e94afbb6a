"""`adws replay`: route every task of an audit log again, at its recorded time, under a candidate config.

The candidate is judged as scenarios are (`adws.reports.scenario_router`): every enabled provider installed, every
key set, every quota fresh, so what moves is what the config changed, not what this machine or this week's
quotas did. "Before" is, by default, what the log recorded (the decision adws took then, quotas included); with
a baseline config it is that config judged the same way, which isolates a config edit exactly.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from adws.errors import TaskError
from adws.insight.records import Reading, iter_records, routed_at, task_of
from adws.model import CompiledConfig
from adws.reports import scenario_router
from adws.router import ModelRouter

FIELDS = ("rule", "provider", "model")


@dataclass(frozen=True, slots=True)
class Change:
    task: str
    at: str
    before: dict[str, Any]  # rule, provider, model
    after: dict[str, Any]
    error: str | None = None  # the task no longer routes (e.g. an override names a removed provider)

    @property
    def moved(self) -> tuple[str, ...]:
        return tuple(f for f in FIELDS if self.before.get(f) != self.after.get(f))

    def to_dict(self) -> dict[str, Any]:
        out = {"task": self.task, "at": self.at, "before": self.before, "after": self.after,
               "changed": list(self.moved)}
        if self.error:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class Replay:
    tasks: int
    unchanged: int
    changes: list[Change]
    skipped: int  # records without a task or a time
    unreadable: int

    def summary(self) -> dict[str, Any]:
        moves = Counter(f"{c.before.get('provider')} → {c.after.get('provider')}" for c in self.changes
                        if "provider" in c.moved)
        return {"tasks": self.tasks, "changed": len(self.changes), "unchanged": self.unchanged,
                "rule_changed": sum("rule" in c.moved for c in self.changes),
                "provider_changed": sum("provider" in c.moved for c in self.changes),
                "model_changed": sum("model" in c.moved for c in self.changes),
                "errors": sum(c.error is not None for c in self.changes),
                "provider_moves": dict(sorted(moves.items())), "skipped_records": self.skipped,
                "unreadable_lines": self.unreadable}

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "changes": [c.to_dict() for c in self.changes]}


def replay(path: str | os.PathLike[str], candidate: CompiledConfig,
           baseline: CompiledConfig | None = None) -> Replay:
    """Re-route each recorded task under `candidate` (and `baseline`, when given) at the time it was routed."""
    after_router = scenario_router(candidate)
    before_router = scenario_router(baseline) if baseline is not None else None
    reading = Reading()
    out = Replay(0, 0, [], 0, 0)
    for record in iter_records(path, reading):
        task, when = task_of(record), routed_at(record)
        if task is None or when is None:
            out.skipped += 1
            continue
        out.tasks += 1
        name = _name(record, task)
        if before_router is not None:
            before, before_error = _route(before_router, task, when)
        else:
            decision = record.get("decision") or {}
            before = {f: decision.get(f) for f in FIELDS} if isinstance(decision, dict) else {}
            before_error = None
        after, error = _route(after_router, task, when)
        change = Change(name, when.isoformat(), before, after, error or before_error)
        if change.moved or change.error:
            out.changes.append(change)
        else:
            out.unchanged += 1
    out.unreadable = reading.skipped
    return out


def _route(router: ModelRouter, task: dict[str, Any], when: Any) -> tuple[dict[str, Any], str | None]:
    try:
        decision = router.route(task, now=when)
    except TaskError as exc:
        return {f: None for f in FIELDS}, str(exc)
    return {"rule": decision.rule, "provider": decision.provider, "model": decision.model}, None


def _name(record: dict[str, Any], task: dict[str, Any]) -> str:
    raw = record.get("task") or {}
    ident = raw.get("id") if isinstance(raw, dict) else None
    title = str(task.get("title") or "")
    label = str(ident) if ident else "(no id)"
    return f"{label} {title[:50]}".strip()


def render(result: Replay) -> str:
    lines = []
    for change in result.changes:
        before, after = change.before, change.after
        lines.append(f"{change.task} at {change.at}")
        if change.error:
            lines.append(f"  error: {change.error}")
        for f in FIELDS:
            mark = "→" if f in change.moved else "="
            lines.append(f"  {f:<9}{before.get(f)!s:<28} {mark} {after.get(f)}")
    s = result.summary()
    lines.append(f"{s['tasks']} task(s) replayed: {s['changed']} changed ({s['rule_changed']} rule, "
                 f"{s['provider_changed']} provider, {s['model_changed']} model), {s['unchanged']} unchanged"
                 + (f", {s['errors']} no longer route" if s["errors"] else ""))
    for move, count in s["provider_moves"].items():
        lines.append(f"  {move}: {count}")
    if s["skipped_records"] or s["unreadable_lines"]:
        lines.append(f"  ({s['skipped_records']} record(s) without a task, {s['unreadable_lines']} unreadable "
                     "line(s) skipped)")
    return "\n".join(lines)
