"""The config's own `[[scenarios]]` judged: the verdicts `adws check` and tools/show-routing.py give.

Kept apart from adws.reports (which needs the engine) so that `adws check` stays as lean as routing: this imports
the router and what it routes with, nothing of the run machinery or the views.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from adws.accounts import StatefulAccounts, reads_tier_scores
from adws.arguments import time_problem
from adws.availability import Availability
from adws.compiled import CompiledConfig
from adws.errors import TaskError
from adws.router import Explanation, ModelRouter
from adws.state.memory import MemoryStore

__all__ = ["routing_report", "scenario_lines", "scenario_router"]


class _EveryVariableSet(Mapping[str, str]):
    """An environment in which every API-key variable is set, so scenarios never depend on this machine's."""

    def __getitem__(self, name: str) -> str:
        return "assumed"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _AssumedAvailability(Availability):
    """Every program counts as installed, whether named on PATH or by a path that exists elsewhere only."""

    def locate(self, executable: str) -> str | None:
        return executable


def scenario_router(config: CompiledConfig) -> ModelRouter:
    """A router that judges rules, not this machine: every enabled provider installed, its API key and its
    accounts' keys set, every quota fresh."""
    availability = _AssumedAvailability(environ=_EveryVariableSet())
    accounts = StatefulAccounts(dict(config.providers), availability, MemoryStore(None),
                                config.breaker.cooldown_seconds, tier_scores=reads_tier_scores(config))
    return ModelRouter(config, availability=availability, accounts=accounts)


def _judged(router: ModelRouter, task: Mapping[str, Any], expect: Mapping[str, Any],
            when: datetime) -> tuple[dict[str, Any], list[str], list[str]]:
    """One scenario's (got, failures, why) at `when`: what the router decided, each expectation it missed, and why
    (a task it refused: its problem as the one failure)."""
    try:
        explanation = router.explain(dict(task), now=when)
    except TaskError as exc:
        return {}, [str(exc)], []
    d = explanation.decision
    got: dict[str, Any] = {"provider": d.provider, "model": d.model, "account": d.account,
                           "rule": d.rule, "plan": [step.provider for step in d.plan]}
    failures = [f"{k}: expected {v!r}, got {got[k]!r}" for k, v in expect.items() if got.get(k) != v]
    return got, failures, _why_not(expect, explanation) if failures else []


def routing_report(config: CompiledConfig, at: datetime) -> dict[str, Any]:
    router = scenario_router(config)
    scenarios = []
    for s in config.scenarios:
        when = datetime.fromisoformat(s.at) if s.at else at
        problem = time_problem(when)
        got: dict[str, Any]
        why: list[str]
        if problem:  # `at` out of range: the scenario's own place named, not route()'s `now`
            got, failures, why = {}, [f"at: {problem}"], []
        else:
            got, failures, why = _judged(router, s.task, s.expect, when)
        scenarios.append({"name": s.name, "at": when.isoformat(), "expect": dict(s.expect), "got": got,
                          "ok": not failures, "failures": failures, "why": why})
    return {
        "config": config.source,
        "routing_enabled": config.enabled,
        "default": {"provider": config.default_provider, "model": config.default_model},
        "chain": list(config.chain),
        "timezone": config.timezone,
        "rules": [
            {"name": r.name, "priority": r.priority, "enabled": r.enabled, "conditions": dict(r.raw_conditions),
             "provider": r.provider, "model": r.model, "account": r.account, "models": dict(r.models),
             "chain": list(r.chain) if r.chain is not None else None, "fallback": r.fallback,
             "description": r.description}
            for r in config.rules
        ],
        "scenarios": scenarios,
        "ok": all(s["ok"] for s in scenarios),
    }


def _why_not(expect: Mapping[str, Any], explanation: Explanation) -> list[str]:
    """Why a scenario's expectation failed, from the same traces `adws route --explain` shows: the expected
    rule's first failing condition (or the rule that came first), and why an expected provider, model or account
    is not where the scenario wants it."""
    d = explanation.decision
    why: list[str] = []
    wanted_rule = expect.get("rule")
    if wanted_rule is not None and wanted_rule != d.rule:
        trace = next((t for t in explanation.traces if t.rule.name == wanted_rule), None)
        if wanted_rule == "default":
            why.append(f'rule "{d.rule}" matches first, so the defaults were not used')
        elif wanted_rule == "override":
            why.append("no override label or attribute on the task")
        elif trace is None:  # load refuses a scenario naming an unknown rule
            raise AssertionError(f"scenario expects unknown rule {wanted_rule!r}")
        elif trace.status == "failed":
            why.append(f'rule "{wanted_rule}" does not match: {trace.condition}: task has {trace.actual}, '
                       f"rule wants {trace.expected}")
        elif trace.status == "disabled":
            why.append(f'rule "{wanted_rule}" is disabled')
        elif d.via == "override":
            why.append(f'rule "{wanted_rule}" matches, but the {d.override_source} override decides')
        elif d.matched is not None:
            why.append(f'rule "{wanted_rule}" matches, but "{d.matched.name}" (priority {d.matched.priority}) '
                       "comes first")
    if why:  # the rule is the cause: where it would have sent the task follows from it
        return [f"because {w}" for w in why]
    via = f'rule "{d.rule}"' if d.via == "rule" else f"the {d.via}" if d.via == "override" else "the defaults"
    for key in ("provider", "model", "account"):
        wanted = expect.get(key)
        if wanted is None or getattr(d, key) == wanted:
            continue
        if key == "provider":
            skips = [skip for skip in d.skipped if skip.provider == wanted]
            tiers = [step.provider for step in d.plan]
            if skips:
                why += [f"{wanted} was skipped: {skip.reason}" for skip in skips]
            elif wanted not in tiers:
                why.append(f"{wanted} is not a tier of the plan of {via}")
            else:
                why.append(f"{wanted} is tier {tiers.index(wanted) + 1} of the plan of {via}, after {tiers[0]}")
        elif d.plan and key == "model":
            why.append(f"{d.plan[0].provider}: {d.plan[0].model_reason}")
        elif d.plan and key == "account":
            out = [skip for skip in d.skipped if skip.account == wanted]
            why += [f"account {wanted} was skipped: {skip.reason}" for skip in out]
    return [f"because {w}" for w in dict.fromkeys(why)]


def scenario_lines(scenarios: list[dict[str, Any]]) -> list[str]:
    """Each scenario of `routing_report(...)["scenarios"]` with its verdict (`ok  ` or `FAIL`, where it went),
    a failing one followed by what differed and why: what tools/show-routing.py and `adws check` print."""
    lines = []
    for s in scenarios:
        lines.append(f"  {'ok  ' if s['ok'] else 'FAIL'} {s['name']}: {_verdict_target(s['got'])}")
        lines.extend(f"         {f}" for f in s["failures"])
        lines.extend(f"         {w}" for w in s.get("why", ()))
    return lines


def _verdict_target(got: dict[str, Any]) -> str:
    if not got:
        return "(error)"
    if got.get("provider") is None:
        return f"nothing usable via {got.get('rule')}"
    model = f" / {got['model']}" if got.get("model") else ""  # a provider without declared models has none
    return f"{got['provider']}{model} via {got.get('rule')}"
