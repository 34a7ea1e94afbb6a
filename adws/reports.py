"""Human and JSON views shared by the CLI and tools/: providers, quota, routing with scenario verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from adws.accounts import DEFAULT_ACCOUNT, cooldown_applies, limits_of
from adws.attempt import Usage
from adws.compiled import CompiledConfig
from adws.engine import Engine
from adws.errors import toml_value
from adws.observe import merge
from adws.pools import subjects
from adws.quota import Burn, QuotaLimits, alert_level, burn_rate, countdown, percent_used
from adws.scenarios import scenario_lines
from adws.standing import standing
from adws.views import minute, table, times_in


def providers_report(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """Each provider's standing (adws.standing: available iff route() could plan it now for some task), what it
    runs and its accounts. `skipped` holds every reason it or one of its accounts is out, with the fields of a
    decision's `skipped`; `until` is when the tier comes back (exact ISO 8601, None when available or unknown).
    """
    out = []
    for name in _ordered(engine.config):
        p = engine.config.providers[name]
        st = standing(engine.router, p, now)
        blocked = {skip.account: skip.reason for skip in st.skipped if skip.account is not None}
        # The implicit account of a provider without declared accounts: why it is out, as before.
        implicit = None if p.accounts else next(
            (skip.reason for skip in st.skipped if skip.account is None and skip.reason.startswith(_STATE)), None)
        out.append({
            "name": name,
            "tier": engine.config.chain.index(name) + 1 if name in engine.config.chain else None,
            "status": "available" if st.available else "unavailable",
            "reason": st.reason,
            "until": st.until.isoformat() if st.until else None,
            "skipped": [skip.to_dict() for skip in st.skipped],
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


_STATE = ("cooling down", "quota ")  # reasons the state store gives (the rest are the config's or the machine's)


def render_providers(rows: list[dict[str, Any]], zone: tzinfo = UTC, now: datetime | None = None) -> str:
    """`adws providers` for people: one status line per provider (the answer), then what it runs, its models
    and its accounts, one line per account that is out. Times to the minute in `zone`."""
    lines = []
    for row in rows:
        tier = f"tier {row['tier']}" if row["tier"] else "not in chain"
        if row["status"] == "available":
            state = "available"
        else:
            back = row.get("until")
            state = f"UNAVAILABLE: {row['reason']}" + (f" (back at {back})" if back and back not in row["reason"]
                                                       else "")
        lines.append(times_in(f"{row['name']} ({tier}): {state}", zone, now))
        lines.append(f"  run: {row['executable']} (prompt by {row['prompt']}, output {row['output_format']})")
        models = ", ".join(f"{m} ({v['context_window']:,} tokens)" for m, v in row["models"].items())
        lines.append(f"  models: {models or '(none declared)'}")
        tier_reason = row["reason"] or ""
        if row.get("blocked") and row["blocked"] != tier_reason:
            lines.append(times_in(f"  out: {row['blocked']}", zone, now))
        if row["accounts"]:
            # Account lines carry their own times: the skip with the same account says until when.
            until = {s["account"]: s.get("until") for s in row.get("skipped", ()) if s.get("account")}
            out = [a for a in row["accounts"] if a.get("blocked")]
            rest = ", ".join(a["name"] + ("" if a["enabled"] else " (disabled)")
                             for a in row["accounts"] if not a.get("blocked"))
            lines.append(f"  accounts ({row['account_strategy']}): {rest or '(none usable)'}")
            for a in out:
                back = until.get(a["name"])
                tail = f" (back at {back})" if back and back not in a["blocked"] else ""
                lines.append(times_in(f"    {a['name']}: {a['blocked']}{tail}", zone, now))
    return "\n".join(lines)


UNMETERED_WINDOW = timedelta(days=7)  # what `adws quota` shows for providers without a quota


def quota_report(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """Usage per provider, account and pool in its current period, as of `now` (usage after `now` is not
    counted), with the burn rate over the period so far, the projected exhaustion and when capacity returns.

    Read-only: without a state file yet, every account shows no usage and nothing is created.
    """
    acc = engine.accounts
    store = engine.store  # reading creates nothing
    cooldowns = store.cooldowns(now)
    observed = store.observations()
    rows = []
    for name in _ordered(engine.config):
        p = engine.config.providers[name]
        for spec in p.runs_as:
            account, quota = spec.name, spec.quota
            # One row per quota subject: the account itself, or each of its pools (adws.pools).
            for subject, pool, governed in subjects(quota, account) or [(account, None, None)]:
                since = acc.period_of(governed).start(now) if governed is not None else now - UNMETERED_WINDOW
                usage = store.usage_totals({name: since}, until=now).get((name, subject), Usage(requests=0))
                row: dict[str, Any] = {
                    "provider": name, "account": account, "pool": pool, "since": since.isoformat(),
                    "requests": usage.requests, "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens, "cost_usd": round(usage.cost_usd, 6),
                    "estimated": usage.estimated, "limits": None, "percent": None, "alert": None,
                    "resets_at": None, "resets_in": None, "cooldown_until": None, "cooldown_reason": None,
                    "burn": None, "ledger_percent": None, "observed": None,
                }
                reset = None
                if governed is not None:
                    # An observation of real usage higher than the ledger wins; both are shown (adws.observe).
                    merged = merge(percent_used(usage, limits_of(governed)), observed.get((name, subject)), now,
                                   since)
                    percent = merged.percent
                    row["ledger_percent"] = round(merged.ledger_percent, 1)
                    if merged.observation is not None:
                        o = merged.observation
                        row["observed"] = {"percent": round(o.percent, 1), "source": o.source, "at": o.at.isoformat(),
                                           "reset_at": o.reset_at.isoformat() if o.reset_at else None,
                                           "counts": merged.observed_wins, "text": merged.describe(now)}
                    reset = acc.subject_reset(name, subject, governed, now)
                    row.update(
                        limits={"tokens": governed.tokens, "requests": governed.requests,
                                "cost_usd": governed.cost_usd},
                        percent=round(percent, 1),
                        alert=alert_level(percent, governed.alert_percent, governed.hard_block_percent),
                        resets_at=reset.isoformat() if reset else None,
                        resets_in=countdown(reset - now) if reset else None,
                    )
                    row["burn"] = _burn_row(burn_rate(usage, limits_of(governed), since, now, reset), now)
                cooldown = cooldowns.get((name, subject))
                if cooldown is not None and cooldown_applies(cooldown, spec, engine.availability.environ):
                    row.update(cooldown_until=cooldown.until.isoformat(), cooldown_reason=cooldown.reason)
                rows.append(row)
    return [_announced(row) for row in rows]


def _burn_row(burn: Burn | None, now: datetime) -> dict[str, Any] | None:
    if burn is None:
        return None
    return {"dimension": burn.dimension, "per_hour": round(burn.per_hour, 3),
            "exhausts_at": burn.exhausts_at.isoformat() if burn.exhausts_at else None,
            "exhausts_in": countdown(burn.exhausts_at - now) if burn.exhausts_at else None,
            "exhausts_before_reset": burn.exhausts_before_reset, "text": burn.describe(now)}


def tier_burn(rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Per tier (provider) and pool: the accounts' usage summed against their summed limits, its burn rate over
    the period so far and the projected exhaustion of the tier as a whole; capacity comes back at the earliest
    reset among its accounts."""
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for row in rows:
        if row["limits"] is not None:
            groups.setdefault((row["provider"], row["pool"]), []).append(row)
    out = []
    for (provider, pool), members in groups.items():
        if len(members) < 2:
            continue  # one account: its own line already says it all
        def total(key: str, members: list[dict[str, Any]] = members) -> float | None:
            values = [m["limits"][key] for m in members]
            return None if any(v is None for v in values) else float(sum(values))
        usage = Usage(sum(m["requests"] for m in members), sum(m["input_tokens"] for m in members),
                      sum(m["output_tokens"] for m in members), sum(m["cost_usd"] for m in members))
        tokens, requests, cost = total("tokens"), total("requests"), total("cost_usd")
        limits = QuotaLimits(int(tokens) if tokens else None, int(requests) if requests else None, cost)
        resets = [datetime.fromisoformat(m["resets_at"]) for m in members if m["resets_at"]]
        since = min(datetime.fromisoformat(m["since"]) for m in members)
        back = min(resets, default=None)
        burn = burn_rate(usage, limits, since, now, back)
        percent = percent_used(usage, limits)
        out.append({"provider": provider, "pool": pool, "accounts": len(members), "percent": round(percent, 1),
                    "alert": alert_level(percent, (80.0, 95.0), 100.0),
                    "capacity_back_at": back.isoformat() if back else None,
                    "capacity_back_in": countdown(back - now) if back else None,
                    "burn": _burn_row(burn, now)})
    return out


# What a limit the provider announced means as an alert (the cooldown it set carries the outcome class), by
# severity: the computed alert for the same row stays unless the announced one is worse.
ANNOUNCED_ALERTS: dict[str, str] = {"rate_limited": "rate limited", "quota_exhausted": "exhausted"}
_SEVERITY = ("rate limited", "blocked", "exhausted")


def _severity(alert: str | None) -> int:
    if alert is None:
        return 0
    return 2 + next((i for i, word in enumerate(_SEVERITY) if alert.startswith(word)), -1)


def _announced(row: dict[str, Any]) -> dict[str, Any]:
    """`alert` for the limits the provider announced as well as for those adws computed, and `alert_source`
    ("computed", "announced" or None) saying which one it shows."""
    announced = ANNOUNCED_ALERTS.get(row["cooldown_reason"] or "")
    source = "computed" if row["alert"] is not None else None
    if announced is not None and _severity(announced) > _severity(row["alert"]):
        row["alert"], source = announced, "announced"
    row["alert_source"] = source
    return row


def render_quota(rows: list[dict[str, Any]], tiers: list[dict[str, Any]] | None = None, zone: tzinfo = UTC,
                 now: datetime | None = None, columns: int | None = None) -> str:
    """`adws quota` for people: one labelled row per provider and account (and pool), times to the minute in
    `zone` (the routing timezone); `~` marks usage that includes estimates. Wider than `columns`, the last
    columns move under each row as `label: value` lines."""
    body = []
    for r in rows:
        tokens = r["input_tokens"] + r["output_tokens"]
        limits = r["limits"] or {}
        parts = []
        if limits.get("tokens") or not limits.get("requests"):
            parts.append(f"{tokens:,} tok" + (f" / {limits['tokens']:,}" if limits.get("tokens") else ""))
        if limits.get("requests"):
            parts.append(f"{r['requests']} / {limits['requests']} req")
        used = ", ".join(parts) + ("~" if r["estimated"] else "")
        pct = "-" if r["percent"] is None else f"{r['percent']:.1f}%"
        alert = (r["alert"] or "") + (" (announced)" if r.get("alert_source") == "announced" else "")
        # A rolling window with nothing in it has no reset to wait for; no quota at all shows a week of usage.
        if r["resets_at"]:
            resets = f"{minute(datetime.fromisoformat(r['resets_at']), zone, now)} (in {r['resets_in']})"
        else:
            resets = "no quota (last 7 days)" if r["limits"] is None else "nothing to reset"
        cooling = ""
        if r["cooldown_until"]:
            cooling = f"until {minute(datetime.fromisoformat(r['cooldown_until']), zone, now)} " \
                      f"({r['cooldown_reason']})"
        observed = r["observed"]["text"] if r.get("observed") else "-"
        body.append([_who(r), used, pct, alert or "-", resets, cooling or "-", observed])
    headers = ["provider/account", "used / limit", "% used", "alert", "next reset", "cooling down", "observed"]
    if not any(r.get("observed") for r in rows):  # no usage_command reported: no column for it
        headers, body = headers[:-1], [cells[:-1] for cells in body]
    lines = table(headers, body, right=(1, 2), columns=columns)
    lines.append("(~ = includes estimated usage; an alert is announced by the provider or computed from usage)")
    burning = [r for r in rows if r.get("burn")]
    if burning or tiers:
        lines.append("")
        lines.append("burn rate over the current period:")
        lines += [f"  {_who(r)}: {r['burn']['text']}" for r in burning]
        for t in tiers or ():
            who = t["provider"] + (f"/{t['pool']}" if t["pool"] else "")
            alert = f" [{t['alert']}]" if t["alert"] else ""
            text = t["burn"]["text"] if t["burn"] else "not metered"
            lines.append(f"  tier {who} ({t['accounts']} accounts, {t['percent']:.1f}% used){alert}: {text}")
    return "\n".join(lines)


def _who(row: dict[str, Any]) -> str:
    who = str(row["provider"]) + ("" if row["account"] == DEFAULT_ACCOUNT else f"/{row['account']}")
    return who + (f"/{row['pool']}" if row.get("pool") else "")


def _ordered(config: CompiledConfig) -> list[str]:
    return [*config.chain, *(n for n in config.providers if n not in config.chain)]


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
    lines += scenario_lines(report["scenarios"])
    return "\n".join(lines)
