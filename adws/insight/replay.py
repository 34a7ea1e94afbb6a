"""`adws replay`: route every task of an audit log again, at its recorded time, under a candidate config.

The candidate is judged as scenarios are (`adws.scenarios.scenario_router`: every enabled provider installed, every
key set, every quota fresh), then the situation the log recorded is laid over it: a tier that was skipped as a
whole at that moment for a reason of state or machine (quota, cooldown, open circuit, busy, program or key
missing) is left out of the candidate's plan too. So what moves is what the config changed, under the week the
log saw. Reasons that come from the config itself (a disabled provider, a model or context that does not fit,
accounts disabled in the file) are not laid over: the candidate decides those.

"Before" is, by default, what the log recorded; with a baseline config it is that config judged the same way,
which isolates a config edit exactly.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

from adws.compiled import CompiledConfig
from adws.dataclass_cache import dataclass
from adws.errors import ArgumentError, TaskError
from adws.insight.records import Reading, iter_records, routed_at, task_of
from adws.router import ModelRouter
from adws.scenarios import scenario_router

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
        decision = record.get("decision") if isinstance(record.get("decision"), dict) else {}
        assert isinstance(decision, dict)
        blocked = situational_skips(decision)
        if before_router is not None:
            before, before_error = _route(before_router, task, when, blocked)
        else:
            before = {f: decision.get(f) for f in FIELDS}
            before_error = None
        after, error = _route(after_router, task, when, blocked)
        change = Change(name, when.isoformat(), before, after, error or before_error)
        if change.moved or change.error:
            out.changes.append(change)
        else:
            out.unchanged += 1
    out.unreadable = reading.skipped
    return out


# Whole-tier skip reasons that come from the config, which the candidate decides for itself.
_CONFIG_REASONS = ("disabled in config", "context too small", "no model declared", "model ")


def situational_skips(decision: Mapping[str, Any]) -> frozenset[str]:
    """Tiers the recorded decision skipped as a whole for a reason of state or machine, not of config."""
    skipped = [s for s in decision.get("skipped") or [] if isinstance(s, Mapping)]
    out = set()
    for skip in skipped:
        reason = str(skip.get("reason") or "")
        if skip.get("account") is not None or reason.startswith(_CONFIG_REASONS):
            continue
        if reason.startswith("no usable account"):
            accounts = [str(s.get("reason")) for s in skipped
                        if s.get("provider") == skip.get("provider") and s.get("account") is not None]
            if accounts and all(r == "account disabled" for r in accounts):
                continue  # every account disabled in the file: a config matter
        out.add(str(skip.get("provider")))
    return frozenset(out)


def _route(router: ModelRouter, task: dict[str, Any], when: Any,
           blocked: frozenset[str]) -> tuple[dict[str, Any], str | None]:
    try:
        decision = router.route(task, now=when)
    except (TaskError, ArgumentError) as exc:  # (ArgumentError: a recorded time outside the years routing takes)
        return {f: None for f in FIELDS}, str(exc)
    plan = [step for step in decision.plan if step.provider not in blocked]
    first = plan[0] if plan else None
    return {"rule": decision.rule, "provider": first.provider if first else None,
            "model": first.model if first else None}, None


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
