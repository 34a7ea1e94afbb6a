"""Human and JSON views shared by the CLI and tools/: providers, quota, routing with scenario verdicts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from adws.accounts import DEFAULT_ACCOUNT, StatefulAccounts, cooldown_applies, limits_of
from adws.attempt import Usage
from adws.availability import Availability
from adws.compiled import CompiledConfig
from adws.engine import Engine
from adws.errors import TaskError, toml_value
from adws.quota import percent_used
from adws.router import Explanation, ModelRouter
from adws.state.memory import MemoryStore


def providers_report(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    out = []
    engine.accounts.generation(now)
    for name in _ordered(engine.config):
        p = engine.config.providers[name]
        why = engine.availability.why_not(p) or engine.accounts.provider_blocked(p, now)
        # Why each account is out right now (cooling down after a limit or rejected credentials, quota...); the
        # implicit account of a provider without declared accounts is the provider's own line.
        skipped = engine.accounts.rank(p, None, now).skipped
        blocked = {skip.account: skip.reason for skip in skipped if skip.account}
        state = ("cooling down", "quota ")  # what the state store says; missing keys are the status line's
        implicit = next((s.reason for s in skipped if s.account is None and s.reason.startswith(state)), None) \
            if not p.accounts else None
        out.append({
            "name": name,
            "tier": engine.config.chain.index(name) + 1 if name in engine.config.chain else None,
            "status": "available" if why is None else "unavailable",
            "reason": why,
            "executable": engine.availability.locate(p.executable) or p.executable,
            "prompt": p.prompt,
            "output_format": p.output_format,
            "models": {m.id: {"context_window": m.context_window, "latency_ms": m.latency_ms}
                       for m in p.models.values()},
            # `blocked` (why the account is out right now) only where it is out: an enabled account at rest
            # shows as before.
            "accounts": [{"name": a.name, "enabled": a.enabled}
                         | ({"blocked": blocked[a.name]} if a.enabled and a.name in blocked else {})
                         for a in p.accounts],
            "account_strategy": p.account_strategy,
            "description": p.description,
        } | ({"blocked": implicit} if implicit else {}))
    return out


def render_providers(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        tier = f"tier {row['tier']}" if row["tier"] else "not in chain"
        state = "available" if row["status"] == "available" else f"UNAVAILABLE: {row['reason']}"
        lines.append(f"{row['name']} ({tier}): {state}")
        lines.append(f"  run: {row['executable']} (prompt by {row['prompt']}, output {row['output_format']})")
        models = ", ".join(f"{m} ({v['context_window']:,} tokens)" for m, v in row["models"].items())
        lines.append(f"  models: {models or '(none declared)'}")
        if row.get("blocked"):
            lines.append(f"  out: {row['blocked']}")
        if row["accounts"]:
            accounts = ", ".join(a["name"] + _account_state(a) for a in row["accounts"])
            lines.append(f"  accounts ({row['account_strategy']}): {accounts}")
    return "\n".join(lines)


def _account_state(account: dict[str, Any]) -> str:
    if not account["enabled"]:
        return " (disabled)"
    return f" ({account['blocked']})" if account.get("blocked") else ""


UNMETERED_WINDOW = timedelta(days=7)  # what `adws quota` shows for providers without a quota


def quota_report(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """Usage per provider and account in its current period, as of `now` (usage after `now` is not counted).

    Read-only: without a state file yet, every account shows no usage and nothing is created.
    """
    acc = engine.accounts
    store = engine.store  # reading creates nothing
    cooldowns = store.cooldowns(now)
    rows = []
    for name in _ordered(engine.config):
        p = engine.config.providers[name]
        for spec in p.runs_as:
            account, quota = spec.name, spec.quota
            since = acc.period_of(quota).start(now) if quota is not None else now - UNMETERED_WINDOW
            usage = store.usage_totals({name: since}, until=now).get((name, account), Usage(requests=0))
            row: dict[str, Any] = {
                "provider": name, "account": account, "since": since.isoformat(), "requests": usage.requests,
                "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "cost_usd": round(usage.cost_usd, 6), "estimated": usage.estimated,
                "limits": None, "percent": None, "alert": None, "resets_at": None, "resets_in": None,
                "cooldown_until": None, "cooldown_reason": None,
            }
            if quota is not None:
                percent = percent_used(usage, limits_of(quota))
                reset = acc.next_reset(p, spec, now)
                row.update(
                    limits={"tokens": quota.tokens, "requests": quota.requests, "cost_usd": quota.cost_usd},
                    percent=round(percent, 1), alert=_alert(percent, quota.alert_percent, quota.hard_block_percent),
                    resets_at=reset.isoformat() if reset else None,
                    resets_in=_span(reset - now) if reset else None,
                )
            cooldown = cooldowns.get((name, account))
            if cooldown is not None and cooldown_applies(cooldown, spec, engine.availability.environ):
                row.update(cooldown_until=cooldown.until.isoformat(), cooldown_reason=cooldown.reason)
            rows.append(row)
    return rows


def _alert(percent: float, alerts: tuple[float, ...], hard: float) -> str | None:
    if percent >= 100:
        return "exhausted"
    if percent >= hard:
        return f"blocked (>= {hard:g}%)"
    passed = [a for a in alerts if percent >= a]
    return f">= {passed[-1]:g}%" if passed else None


def _span(delta: Any) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return (f"{days}d " if days else "") + f"{hours}h{rest // 60:02d}m"


def render_quota(rows: list[dict[str, Any]], timezone: str = "UTC") -> str:
    """The quota table for a person: every column labelled, times to the minute in `timezone` (the routing
    timezone), a reset both as a moment and as a countdown."""
    at = f"resets at ({timezone})"
    lines = [f"{'provider/account':<24} {'used/limit':>22} {'used %':>6}  {'alert':<16} {at:<16} resets in"]
    for r in rows:
        who = r["provider"] + ("" if r["account"] == DEFAULT_ACCOUNT else f"/{r['account']}")
        tokens = r["input_tokens"] + r["output_tokens"]
        limits = r["limits"] or {}
        parts = []
        if limits.get("tokens") or not limits.get("requests"):
            parts.append(f"{tokens:,} tok" + (f"/{limits['tokens']:,}" if limits.get("tokens") else ""))
        if limits.get("requests"):
            parts.append(f"{r['requests']}/{limits['requests']} req")
        used = ", ".join(parts) + ("~" if r["estimated"] else "")
        pct = "-" if r["percent"] is None else f"{r['percent']:.1f}"
        # A rolling window with nothing in it has no reset to wait for; no quota at all shows a week of usage.
        resets = r["resets_in"] or ("no quota (last 7 days)" if r["limits"] is None else "nothing to reset")
        moment = _minute(r.get("resets_at"), timezone)
        line = f"{who:<24} {used:>22} {pct:>6}  {r['alert'] or '':<16} {moment:<16} {resets}"
        if r["cooldown_until"]:
            line += f"  cooling down until {_minute(r['cooldown_until'], timezone)} ({r['cooldown_reason']})"
        lines.append(line)
    lines.append("(~ = includes estimated usage)")
    return "\n".join(lines)


def _minute(iso: str | None, timezone: str) -> str:
    """`Wed 18 Nov 14:00` in `timezone` from an ISO 8601 time; "-" for none."""
    if not iso:
        return "-"
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(iso).astimezone(ZoneInfo(timezone)).strftime("%a %d %b %H:%M")


def _ordered(config: CompiledConfig) -> list[str]:
    return [*config.chain, *(n for n in config.providers if n not in config.chain)]


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
                                config.breaker.cooldown_seconds)
    return ModelRouter(config, availability=availability, accounts=accounts)


def routing_report(config: CompiledConfig, at: datetime) -> dict[str, Any]:
    router = scenario_router(config)
    scenarios = []
    for s in config.scenarios:
        when = datetime.fromisoformat(s.at) if s.at else at
        try:
            d = router.route(dict(s.task), now=when)
            got: dict[str, Any] = {"provider": d.provider, "model": d.model, "account": d.account,
                                   "rule": d.rule, "plan": [step.provider for step in d.plan]}
            failures = [f"{k}: expected {v!r}, got {got[k]!r}" for k, v in s.expect.items() if got.get(k) != v]
            why = _why_not(router.explain(dict(s.task), now=when), dict(s.expect)) if failures else []
        except TaskError as exc:
            got, failures, why = {}, [str(exc)], []
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


def _why_not(explanation: Explanation, expect: dict[str, Any]) -> list[str]:
    """Why a scenario did not get what it expected, from the same traces that route (explain)."""
    d = explanation.decision
    wanted = expect.get("rule")
    if wanted is not None and wanted != d.rule:
        trace = next((t for t in explanation.traces if t.rule.name == wanted), None)
        first = f'"{d.rule}" (priority {d.matched.priority})' if d.matched is not None else f"the {d.via}"
        if trace is None:
            return [f'because no enabled rule is named "{wanted}"' if wanted not in ("default", "override")
                    else f"because {first} decided"]
        if trace.status == "failed":
            return [f'because rule "{wanted}" does not match: {trace.condition}: task has {trace.actual}, '
                    f"rule wants {trace.expected}"]
        if trace.status == "disabled":
            return [f'because rule "{wanted}" is disabled']
        return [f'because rule "{wanted}" matches, but {first} comes first']
    why = [f"because {reason}" for reason in d.reasons[-1:]]
    why += [f"skipped {skip.provider}: {skip.reason}" for skip in d.skipped]
    return why


def render_routing(report: dict[str, Any]) -> str:
    default = report["default"]
    lines = [
        f"config: {report['config']}",
        f"routing: {'enabled' if report['routing_enabled'] else 'DISABLED (defaults only; rules shown)'}",
        f"default: {default['provider']}" + (f" / {default['model']}" if default["model"] else " / best model"),
        f"chain: {' → '.join(report['chain'])}",
        f"timezone: {report['timezone']}",
        "",
        "rules (highest priority first; equal priorities in file order):",
    ]
    for r in report["rules"]:
        target = r["provider"] or ""
        if r["model"]:
            target += f" / {r['model']}"
        if r["account"]:
            target += f" (account {r['account']})"
        extras = []
        if r["models"]:
            extras.append("per tier " + toml_value(r["models"]))
        if not r["fallback"]:
            extras.append("no fall-through")
        elif r["chain"] is not None:
            extras.append("then " + " → ".join(r["chain"]))
        off = "" if r["enabled"] else "  [disabled]"
        lines.append(f"  {r['priority']:>4}  {r['name']}{off}")
        lines.append(f"        when {toml_value(r['conditions']) if r['conditions'] else 'always'}")
        lines.append(f"        → {target}" + (f"  ({'; '.join(extras)})" if extras else ""))
    lines.append("")
    passed = sum(s["ok"] for s in report["scenarios"])
    lines.append(f"scenarios: {passed}/{len(report['scenarios'])} as expected")
    for s in report["scenarios"]:
        where = _verdict_target(s["got"])
        lines.append(f"  {'ok  ' if s['ok'] else 'FAIL'} {s['name']}: {where}")
        lines.extend(f"         {f}" for f in s["failures"])
        lines.extend(f"         {w}" for w in s.get("why", ()))
    return "\n".join(lines)


def _verdict_target(got: dict[str, Any]) -> str:
    if not got:
        return "(error)"
    if got.get("provider") is None:
        return f"nothing usable via {got.get('rule')}"
    model = f" / {got['model']}" if got.get("model") else ""  # a provider without declared models has none
    return f"{got['provider']}{model} via {got.get('rule')}"
