"""`adws lint`: what `adws check` cannot see, because the file is valid but the routing it declares is not
what its author meant.

Each check is one entry of `CHECKS`; each finding has a stable code, a level, a place in the file and a
one-line reason. Codes (stable for scripts and for suppressing in CI):

- ADWS101 error: a rule can never fire: an earlier rule (higher priority, or equal and earlier in the file)
  matches every task it matches.
- ADWS102 info: whether a rule is shadowed cannot be decided (a regex, a glob, a cron day of month).
- ADWS103 warning: two rules of equal priority both match some task; only file order decides between them.
- ADWS201 error: a rule (or the default) reaches only providers that are disabled or whose accounts all are.
- ADWS202 warning: a rule (or the default) reaches only providers whose API key is not set in this environment.
- ADWS203 warning: a tier of routing.chain that no plan can reach.
- ADWS301 warning: an enabled rule that no scenario exercises.
- ADWS401 warning: a quota's hard block leaves less room above it than a typical task uses, so a task started
  just under the block overruns the quota and is refused.
- ADWS402 error: a quota's hard block stops the account before it can run one typical task.

Shadowing is judged against each earlier rule, then against earlier rules together where they differ from the
rule in one dimension only (see `adws.insight.predicates`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from adws.compiled import CompiledConfig, ProviderSpec, QuotaSpec, RuleSpec
from adws.dataclass_cache import dataclass
from adws.errors import ArgumentError, TaskError
from adws.insight.predicates import Predicates
from adws.scenarios import scenario_router

LEVELS = ("error", "warning", "info")
TYPICAL_TOKENS = 20000  # input plus output of a typical agent task; --typical-tokens changes it


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    level: str  # "error" | "warning" | "info"
    place: str  # where in the file, as `adws check` names places
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "level": self.level, "place": self.place, "message": self.message}

    def render(self) -> str:
        return f"{self.place}: {self.code} {self.level}: {self.message}"


@dataclass(frozen=True, slots=True)
class LintContext:
    config: CompiledConfig
    environ: Mapping[str, str]
    typical_tokens: int


def _rule_place(rule: RuleSpec) -> str:
    return f'routing.rules[{rule.order}] (name="{rule.name}")'


def _earlier(config: CompiledConfig) -> list[RuleSpec]:
    return [r for r in config.rules if r.enabled]  # already in routing order: priority desc, then file order


def check_shadowing(ctx: LintContext) -> list[Finding]:
    rules = _earlier(ctx.config)
    predicates = Predicates(ctx.config)
    out: list[Finding] = []
    for i, rule in enumerate(rules):
        undecided: list[tuple[RuleSpec, list[str]]] = []
        for earlier in rules[:i]:
            verdict, why = predicates.covers(earlier, rule)
            if verdict:
                out.append(Finding("ADWS101", "error", _rule_place(rule),
                                   f'can never fire: rule "{earlier.name}" (priority {earlier.priority}) matches '
                                   "every task it matches"))
                break
            if verdict is None:
                undecided.append((earlier, why))
        else:
            together = predicates.covers_together(rules[:i], rule)
            if together is not None:
                names = ", ".join(f'"{r.name}"' for r in together)
                out.append(Finding("ADWS101", "error", _rule_place(rule),
                                   f"can never fire: rules {names} together match every task it matches"))
                continue
            for earlier, why in undecided:
                out.append(Finding("ADWS102", "info", _rule_place(rule),
                                   f'cannot decide whether rule "{earlier.name}" matches every task it matches: '
                                   + ", ".join(sorted(set(why)))))
        for earlier in rules[:i]:
            if earlier.priority != rule.priority or any(f.code == "ADWS101" and f.place == _rule_place(rule)
                                                        for f in out):
                continue
            verdict, _ = predicates.overlap(earlier, rule)
            if verdict:
                out.append(Finding("ADWS103", "warning", _rule_place(rule),
                                   f'overlaps rule "{earlier.name}" of equal priority {rule.priority}: a task both '
                                   f'match goes to "{earlier.name}" only because it comes first in the file'))
    return out


def _tiers(config: CompiledConfig, rule: RuleSpec | None) -> list[str]:
    """The providers a plan for `rule` (None: the default) can contain, in order."""
    target = rule.provider if rule is not None and rule.provider else config.default_provider
    if rule is not None and not rule.fallback:
        return [target]
    if rule is not None and rule.chain is not None:
        rest: tuple[str, ...] = rule.chain
    else:
        chain = config.chain
        rest = chain[chain.index(target) + 1:] if target in chain else chain
    return [target, *(t for t in rest if t != target)]


def _unusable(provider: ProviderSpec, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(kind, reason) when the provider can never run: "config" (disabled) or "env" (keys missing here)."""
    if not provider.enabled:
        return "config", "disabled"
    if provider.accounts and not any(a.enabled for a in provider.accounts):
        return "config", "every account disabled"
    if provider.requires_api_key and provider.api_key_env and not environ.get(provider.api_key_env) \
            and not any(a.api_key_env and environ.get(a.api_key_env) for a in provider.accounts):
        return "env", f"{provider.api_key_env} not set"
    return None


def check_reach(ctx: LintContext) -> list[Finding]:
    cfg = ctx.config
    out: list[Finding] = []
    for rule in [None, *(r for r in cfg.rules if r.enabled)]:
        tiers = _tiers(cfg, rule)
        why = [_unusable(cfg.providers[t], ctx.environ) for t in tiers]
        if any(w is None for w in why):
            continue
        place = _rule_place(rule) if rule is not None else "routing.default_provider"
        what = f'rule "{rule.name}"' if rule is not None else "the default"
        reasons = ", ".join(f"{t} ({w[1]})" for t, w in zip(tiers, why, strict=True) if w)
        if all(w is not None and w[0] == "config" for w in why):
            out.append(Finding("ADWS201", "error", place, f"{what} reaches only providers that cannot run: {reasons}"))
        else:
            out.append(Finding("ADWS202", "warning", place,
                               f"{what} reaches only providers without their API key here: {reasons}"))
    reached = {t for rule in [None, *(r for r in cfg.rules if r.enabled)] for t in _tiers(cfg, rule)}
    for i, tier in enumerate(cfg.chain):
        if tier not in reached:
            out.append(Finding("ADWS203", "warning", f"routing.chain[{i}]",
                               f'tier "{tier}" is in no plan: no rule targets it or falls through to it, and the '
                               "default plan does not reach it"))
    return out


def check_scenarios(ctx: LintContext) -> list[Finding]:
    cfg = ctx.config
    router = scenario_router(cfg)
    covered: set[str] = set()
    for scenario in cfg.scenarios:
        when = datetime.fromisoformat(scenario.at) if scenario.at else datetime(2026, 1, 5, 12, tzinfo=UTC)
        try:
            covered.add(router.route(dict(scenario.task), now=when).rule)
        except (TaskError, ArgumentError):  # (ArgumentError: an `at` outside the years routing takes)
            continue  # show-routing reports a broken scenario; here it simply covers nothing
    return [Finding("ADWS301", "warning", _rule_place(rule), "no scenario routes a task through this rule")
            for rule in cfg.rules if rule.enabled and rule.name not in covered]


def _quotas(provider: ProviderSpec) -> list[tuple[str, QuotaSpec]]:
    found = [(f"providers.{provider.name}.quota", provider.quota)] if provider.quota is not None else []
    for i, account in enumerate(provider.accounts):
        if account.quota is not None and account.quota is not provider.quota:
            found.append((f"providers.{provider.name}.accounts[{i}].quota", account.quota))
    return found


def check_quota_room(ctx: LintContext) -> list[Finding]:
    out: list[Finding] = []
    typical = ctx.typical_tokens
    for provider in ctx.config.providers.values():
        if not provider.enabled:
            continue
        for place, quota in _quotas(provider):
            hard = quota.hard_block_percent
            if quota.tokens:
                usable = quota.tokens * hard / 100
                margin = quota.tokens - usable
                if usable < typical:
                    out.append(Finding("ADWS402", "error", place,
                                       f"the hard block at {hard:g}% stops at {usable:,.0f} tokens, less than one "
                                       f"typical task ({typical:,} tokens)"))
                elif margin < typical:
                    out.append(Finding("ADWS401", "warning", place,
                                       f"the hard block at {hard:g}% leaves {margin:,.0f} of {quota.tokens:,} tokens; "
                                       f"a typical task ({typical:,}) started just under it overruns the quota"))
            if quota.requests and quota.requests * hard / 100 < 1:
                out.append(Finding("ADWS402", "error", place,
                                   f"the hard block at {hard:g}% of {quota.requests} requests stops before the first"))
    return out


CHECKS: dict[str, Callable[[LintContext], list[Finding]]] = {
    "shadowing": check_shadowing,
    "reach": check_reach,
    "scenarios": check_scenarios,
    "quota_room": check_quota_room,
}


def lint(config: CompiledConfig, *, environ: Mapping[str, str] | None = None,
         typical_tokens: int = TYPICAL_TOKENS) -> list[Finding]:
    """Every finding of every check, errors first, then by place."""
    ctx = LintContext(config, os.environ if environ is None else environ, typical_tokens)
    findings = [f for check in CHECKS.values() for f in check(ctx)]
    return sorted(findings, key=lambda f: (LEVELS.index(f.level), f.code, f.place))


def to_dict(config: CompiledConfig, findings: list[Finding]) -> dict[str, Any]:
    return {"config": config.source, "findings": [f.to_dict() for f in findings],
            "counts": {level: sum(f.level == level for f in findings) for level in LEVELS}}


def render(config: CompiledConfig, findings: list[Finding]) -> str:
    lines = [f.render() for f in findings]
    counts = ", ".join(f"{sum(f.level == level for f in findings)} {level}(s)" for level in LEVELS)
    lines.append(f"{config.source}: {counts}")
    return "\n".join(lines)
