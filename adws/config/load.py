"""Loading config.toml: parse, translate the older format, validate everything, compile.

Every problem in the file is collected and raised together as one `ConfigError`; each names its place.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from adws.attempt import OutcomeClass
from adws.conditions import ConditionError, LabelSet, compile_conditions, make_label_set
from adws.config.locations import fields_at, format_loc
from adws.config.schema import Config, ProviderConfig, QuotaConfig, RuleConfig
from adws.errors import ConfigError, Loc, Problem, TaskError, suggest
from adws.model import (
    AccountSpec,
    BreakerSpec,
    CompiledConfig,
    IntakeSpec,
    ModelSpec,
    ProviderSpec,
    QuotaSpec,
    RetrySpec,
    RuleSpec,
    ScenarioSpec,
)
from adws.templates import BUILTIN_VARIABLES, check_template, from_legacy

# The specializations SPEC.md names; configs may add their own by using them in scores, labels or keywords.
BASE_SPECIALIZATIONS = ("code", "reasoning", "architecture", "large_document", "fast_response", "docs", "general")

DEFAULT_ACTIONS: dict[OutcomeClass, str] = {
    OutcomeClass.SUCCESS: "stop",
    OutcomeClass.RATE_LIMITED: "next_account",
    OutcomeClass.QUOTA_EXHAUSTED: "next_account",
    OutcomeClass.AUTH: "next_account",
    OutcomeClass.CONTEXT_OVERFLOW: "next_tier",
    OutcomeClass.TIMEOUT: "next_tier",
    OutcomeClass.CRASHED: "retry",
    OutcomeClass.ERROR: "next_tier",
    OutcomeClass.BAD_OUTPUT: "next_tier",
    OutcomeClass.UNAVAILABLE: "next_tier",
}

def parse_duration(text: str) -> float:
    """'5h', '30m', '1h30m', '7d' -> seconds (ValueError with the accepted forms otherwise)."""
    from adws.quota import parse_window

    return parse_window(text).total_seconds()


def _registry(module: str, name: str) -> Mapping[str, Any]:
    import importlib

    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem("", f"config file not found: {source}")], source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem("", f"cannot read config file: {exc}")], source) from None
    return parse_toml(text, source)


def parse_toml(text: str, source: str = "<string>") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem("", f"not valid TOML: {exc}")], source) from None


def _legacy(raw: dict[str, Any]) -> dict[str, Any]:
    """Translate the older format in place of the parsed document (a shallow copy is returned).

    Older configs wrote `command_template` as one string; it is split like a shell would split words
    (never run by one).
    """
    providers = raw.get("providers")
    if isinstance(providers, dict):
        for provider in providers.values():
            if isinstance(provider, dict) and isinstance(provider.get("command_template"), str):
                # An unbalanced quote leaves it a string: the schema then reports it with its place.
                with contextlib.suppress(ValueError):
                    provider["command_template"] = shlex.split(provider["command_template"])
    return raw


def _pydantic_problems(exc: ValidationError, raw: Any) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        message = err["msg"].removeprefix("Value error, ")
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
            message = f"bad key {loc[-1]!r}: {message}" if loc else message
            loc = loc[:-1]
        if kind == "extra_forbidden" and loc:
            key = str(loc[-1])
            allowed = fields_at(Config, loc[:-1]) or []
            problems.append(Problem(format_loc(loc[:-1], raw), f'unknown key "{key}"{suggest(key, allowed)}'))
            continue
        if kind == "missing" and loc:
            problems.append(Problem(format_loc(loc[:-1], raw), f'missing required key "{loc[-1]}"'))
            continue
        given = err.get("input")
        if not isinstance(given, (dict, list)) and kind not in ("value_error", "assertion_error"):
            message = f"{message}, got {given!r}"
        problems.append(Problem(format_loc(loc, raw), message))
    return problems


class _Checker:
    """Collects problems while cross-checking a structurally valid config."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.problems: list[Problem] = []

    def add(self, loc: Loc, message: str) -> None:
        self.problems.append(Problem(format_loc(loc, self.raw), message))

    def guard(self, loc: Loc, check: Callable[[], Any]) -> Any:
        try:
            return check()
        except ValueError as exc:
            self.add(loc, str(exc))
            return None


def _compile_rules_conditions(raw: Any, check: _Checker) -> dict[int, tuple[Any, ...]]:
    """Compile conditions straight from the document, so their errors show even when other parts are wrong."""
    compiled: dict[int, tuple[Any, ...]] = {}
    rules = raw.get("routing", {}).get("rules") if isinstance(raw.get("routing"), dict) else None
    if not isinstance(rules, list):
        return compiled
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or not isinstance(rule.get("conditions", {}), dict):
            continue
        conditions, errors = compile_conditions(rule.get("conditions", {}))
        for error in errors:
            check.add(("routing", "rules", i, "conditions", *error.loc), error.message)
        if not errors:
            compiled[i] = tuple(conditions)
    return compiled


def _quota(q: QuotaConfig | None, loc: Loc, tz: ZoneInfo, check: _Checker) -> QuotaSpec | None:
    if q is None:
        return None
    window = None
    if q.reset is not None:
        from adws.cron import CronMatcher

        check.guard((*loc, "reset"), lambda: CronMatcher(q.reset or ""))
    if q.window is not None:
        window = check.guard((*loc, "window"), lambda: parse_duration(q.window or ""))
    zone = tz.key
    if q.timezone is not None:
        try:
            zone = ZoneInfo(q.timezone).key
        except (ZoneInfoNotFoundError, ValueError):
            check.add((*loc, "timezone"), f'unknown timezone "{q.timezone}"')
    for i, pct in enumerate(q.alert_percent):
        if not 0 < pct <= 100:
            check.add((*loc, "alert_percent", i), f"must be within 0-100, got {pct}")
    return QuotaSpec(q.tokens, q.requests, q.cost_usd, q.reset, zone, window, q.hard_block_percent,
                     tuple(sorted(q.alert_percent)))


def _provider(name: str, p: ProviderConfig, tz: ZoneInfo, check: _Checker) -> ProviderSpec:
    loc: Loc = ("providers", name)
    parsers = _registry("adws.parsers", "PARSERS")
    if p.output_format not in parsers:
        check.add((*loc, "output_format"), f'unknown output format "{p.output_format}"'
                  f"{suggest(p.output_format, parsers)}; known: {', '.join(parsers)}")
    strategies = _registry("adws.accounts", "STRATEGIES")
    if p.account_strategy not in strategies:
        check.add((*loc, "account_strategy"), f'unknown account strategy "{p.account_strategy}"'
                  f"{suggest(p.account_strategy, strategies)}; known: {', '.join(strategies)}")
    command = tuple(from_legacy(element) for element in p.command_template)
    allowed = set(BUILTIN_VARIABLES) | set(p.vars)
    if p.models:
        # A variable every model declares is always defined; one only some declare is not.
        common = set.intersection(*(set(m.vars) for m in p.models.values()))
        allowed |= common
    for i, element in enumerate(command):
        error = check_template(element, allowed)
        if error:
            check.add((*loc, "command_template", i), error)
    for var, value in p.env.items():
        error = check_template(from_legacy(value), allowed)
        if error:
            check.add((*loc, "env", var), error)
    seen: set[str] = set()
    accounts = []
    for i, acc in enumerate(p.accounts):
        if acc.name in seen:
            check.add((*loc, "accounts", i, "name"), f'duplicate account name "{acc.name}"')
        seen.add(acc.name)
        for var, value in acc.env.items():
            error = check_template(from_legacy(value), allowed)
            if error:
                check.add((*loc, "accounts", i, "env", var), error)
        accounts.append(AccountSpec(acc.name, acc.enabled, {k: from_legacy(v) for k, v in acc.env.items()},
                                    acc.api_key_env, _quota(acc.quota, (*loc, "accounts", i, "quota"), tz, check)))
    from adws.classify import compile_pattern

    for i, pattern in enumerate(p.failure_patterns):
        # The same compiler the classifier uses, so what loads is exactly what runs.
        check.guard((*loc, "failure_patterns", i, "regex"),
                    lambda pt=pattern: compile_pattern(pt.regex, pt.outcome))  # type: ignore[misc]
    if p.prompt == "arg" and not any("prompt" in element and "prompt_file" not in element for element in command):
        check.add((*loc, "prompt"), 'prompt = "arg" but no command_template element uses {{ prompt }}')
    if p.requires_api_key and not p.api_key_env:
        check.add((*loc, "requires_api_key"), "requires_api_key = true needs `api_key_env` (the variable's name)")
    models = {
        mid: ModelSpec(mid, m.context_window, m.latency_ms, m.cost_per_1k_tokens, dict(m.specializations), dict(m.vars))
        for mid, m in p.models.items()
    }
    executable = p.executable or command[0]
    if "{{" in executable or "{%" in executable:
        check.add((*loc, "executable" if p.executable else "command_template"),
                  "the program to run must be a fixed name or path, not a template")
    return ProviderSpec(
        name=name, enabled=p.enabled, description=p.description, command=command, executable=executable,
        api_key_env=p.api_key_env, requires_api_key=p.requires_api_key,
        env={k: from_legacy(v) for k, v in p.env.items()}, timeout=p.timeout, kill_grace=p.kill_grace,
        prompt=p.prompt, output_format=p.output_format, max_concurrency=p.max_concurrency,
        account_strategy=p.account_strategy, scores=dict(p.specializations), models=models,
        accounts=tuple(accounts), quota=_quota(p.quota, (*loc, "quota"), tz, check),
        patterns=tuple((pt.regex, pt.outcome) for pt in p.failure_patterns),
        actions=dict(p.actions), vars=dict(p.vars),
    )


def _intake(cfg: Config, providers: Mapping[str, ProviderSpec], check: _Checker) -> IntakeSpec:
    it = cfg.routing.intake
    loc: Loc = ("routing", "intake")
    spec_labels: list[tuple[LabelSet, str]] = []
    for label, spec in it.specialization_labels.items():
        try:
            spec_labels.append((make_label_set([label]), spec.lower()))
        except ConditionError as exc:
            check.add((*loc, "specialization_labels", label), exc.message)
    keywords = []
    for spec, words in it.specialization_keywords.items():
        cleaned = [w.strip() for w in words if w.strip()]
        if not cleaned:
            check.add((*loc, "specialization_keywords", spec), "give at least one keyword")
            continue
        # Whole words, case-insensitive: "design" must not fire on "redesigned"? It should: \b only at the start.
        pattern = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in cleaned) + r")", re.IGNORECASE)
        keywords.append((spec.lower(), pattern))
    known = set(BASE_SPECIALIZATIONS) | {it.default_specialization} | {s for _, s in spec_labels}
    known |= {s for s, _ in keywords}
    for p in providers.values():
        known |= set(p.scores)
        for m in p.models.values():
            known |= set(m.scores)
    return IntakeSpec(
        priority_labels={k.lower(): v for k, v in it.priority_labels.items()},
        priority_numbers=tuple(it.priority_numbers), default_priority=it.default_priority,
        specialization_labels=tuple(spec_labels),
        exact_specialization_labels=_exact_labels(spec_labels), keywords=tuple(keywords),
        default_specialization=it.default_specialization.lower(), known_specializations=frozenset(known),
        chars_per_token=it.chars_per_token, override_label_prefix=it.override_label_prefix.lower(),
        force_attr=it.force_attr,
    )


def _exact_labels(spec_labels: list[tuple[LabelSet, str]]) -> dict[str, tuple[int, str]]:
    exact: dict[str, tuple[int, str]] = {}
    for order, (label_set, spec) in enumerate(spec_labels):
        for label in label_set.exact:
            exact.setdefault(label, (order, spec))
    return exact


def _provider_for_model(model: str, providers: Mapping[str, ProviderSpec]) -> list[str]:
    return [name for name, p in providers.items() if model in p.models]


def _check_model(check: _Checker, loc: Loc, provider: ProviderSpec, model: str) -> None:
    if provider.models and model not in provider.models:
        check.add(loc, f'provider "{provider.name}" has no model "{model}"{suggest(model, provider.models)}; '
                  f"its models: {', '.join(provider.models)}")


def _check_provider(check: _Checker, loc: Loc, name: str, providers: Mapping[str, ProviderSpec]) -> bool:
    if name in providers:
        return True
    check.add(loc, f'unknown provider "{name}"{suggest(name, providers)}; providers: {", ".join(providers)}')
    return False


def _rule(i: int, r: RuleConfig, conditions: tuple[Any, ...], providers: Mapping[str, ProviderSpec],
          known_specs: frozenset[str], check: _Checker) -> RuleSpec:
    loc: Loc = ("routing", "rules", i)
    provider = r.provider
    if provider is not None:
        _check_provider(check, (*loc, "provider"), provider, providers)
    elif r.model is not None:
        owners = _provider_for_model(r.model, providers)
        if len(owners) == 1:
            provider = owners[0]
        elif not owners:
            check.add((*loc, "model"), f'no provider declares model "{r.model}"; give `provider` too')
        else:
            check.add((*loc, "model"), f'model "{r.model}" is declared by {", ".join(owners)}: give `provider`')
    elif r.account is not None:
        check.add((*loc, "account"), "an account needs its provider: give `provider` too")
    elif r.chain:
        provider = r.chain[0]
    else:
        check.add(loc, "the rule has no target: give `provider`, `model` or `chain`")
    if provider is not None and provider in providers:
        spec = providers[provider]
        if r.model is not None:
            _check_model(check, (*loc, "model"), spec, r.model)
        if r.account is not None and spec.account(r.account) is None:
            names = [a.name for a in spec.accounts]
            check.add((*loc, "account"), f'provider "{provider}" has no account "{r.account}"'
                      f"{suggest(r.account, names)}" + (f"; its accounts: {', '.join(names)}" if names else ""))
    for tier, model in r.models.items():
        if _check_provider(check, (*loc, "models", tier), tier, providers):
            _check_model(check, (*loc, "models", tier), providers[tier], model)
    for j, tier in enumerate(r.chain or ()):
        _check_provider(check, (*loc, "chain", j), tier, providers)
    spec_cond = r.conditions.get("specialization")
    for value in [spec_cond] if isinstance(spec_cond, str) else spec_cond if isinstance(spec_cond, list) else []:
        if isinstance(value, str) and value.lower() not in known_specs:
            check.add((*loc, "conditions", "specialization"),
                      f'unknown specialization "{value}"{suggest(value.lower(), known_specs)}; '
                      f"known: {', '.join(sorted(known_specs))}")
    return RuleSpec(
        name=r.name, priority=r.priority, order=i, enabled=r.enabled, description=r.description,
        conditions=conditions, raw_conditions=r.conditions, provider=provider, model=r.model, account=r.account,
        models=dict(r.models), chain=tuple(r.chain) if r.chain is not None else None, fallback=r.fallback,
        vars=dict(r.vars),
    )


def _scenarios(cfg: Config, providers: Mapping[str, ProviderSpec], rule_names: Iterable[str],
               check: _Checker) -> tuple[ScenarioSpec, ...]:
    from adws.task import Task

    names = set(rule_names) | {"default", "override"}
    seen: set[str] = set()
    out = []
    for i, s in enumerate(cfg.scenarios):
        loc: Loc = ("scenarios", i)
        if s.name in seen:
            check.add((*loc, "name"), f'duplicate scenario name "{s.name}"')
        seen.add(s.name)
        try:
            Task.from_dict(s.task)
        except TaskError as exc:
            for problem in exc.problems:
                check.add((*loc, "task"), problem)
        if s.at is not None and s.at.tzinfo is None:
            check.add((*loc, "at"), "give a timezone offset (e.g. 2026-11-22T10:00:00Z)")
        e = s.expect
        if e.provider is not None and _check_provider(check, (*loc, "expect", "provider"), e.provider, providers) \
                and e.model is not None:
            _check_model(check, (*loc, "expect", "model"), providers[e.provider], e.model)
        if e.rule is not None and e.rule not in names:
            check.add((*loc, "expect", "rule"), f'unknown rule "{e.rule}"{suggest(e.rule, names)}')
        for j, tier in enumerate(e.plan or ()):
            _check_provider(check, (*loc, "expect", "plan", j), tier, providers)
        out.append(ScenarioSpec(s.name, s.description, dict(s.task), s.at.isoformat() if s.at else None,
                                e.model_dump(exclude_none=True)))
    return tuple(out)


def compile_config(raw: dict[str, Any], source: str = "<string>", base_dir: str = ".") -> CompiledConfig:
    raw = _legacy(raw)
    check = _Checker(raw)
    conditions = _compile_rules_conditions(raw, check)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([*_pydantic_problems(exc, raw), *check.problems], source) from None
    routing = cfg.routing
    try:
        tz = ZoneInfo(routing.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        check.add(("routing", "timezone"), f'unknown timezone "{routing.timezone}" (use an IANA name such as "UTC" '
                  'or "Europe/Berlin")')
        tz = ZoneInfo("UTC")
    providers = {name: _provider(name, p, tz, check) for name, p in cfg.providers.items()}
    intake = _intake(cfg, providers, check)

    chain = tuple(routing.chain) or tuple(providers)
    for i, tier in enumerate(routing.chain):
        _check_provider(check, ("routing", "chain", i), tier, providers)
        if tier in routing.chain[:i]:
            check.add(("routing", "chain", i), f'"{tier}" appears twice in the chain')
    legacy = cfg.llm
    default_provider = routing.default_provider or (legacy.provider if legacy else None) or chain[0]
    default_model = routing.default_model or (legacy.model_default if legacy else None)
    where: Loc = ("routing", "default_provider") if routing.default_provider else ("llm", "provider")
    if _check_provider(check, where, default_provider, providers) and default_model is not None:
        where = ("routing", "default_model") if routing.default_model else ("llm", "model_default")
        _check_model(check, where, providers[default_provider], default_model)

    rules = []
    seen: dict[str, int] = {}
    for i, rule_cfg in enumerate(routing.rules):
        if rule_cfg.name in seen:
            check.add(("routing", "rules", i, "name"),
                      f'duplicate rule name "{rule_cfg.name}" (first at routing.rules[{seen[rule_cfg.name]}])')
        seen.setdefault(rule_cfg.name, i)
        rules.append(_rule(i, rule_cfg, conditions.get(i, ()), providers, intake.known_specializations, check))
    rules.sort(key=lambda rule: (-rule.priority, rule.order))

    breaker_cooldown = check.guard(("routing", "circuit_breaker", "cooldown"),
                                   lambda: parse_duration(routing.circuit_breaker.cooldown))
    stores = _registry("adws.state", "STORES")
    if cfg.state.backend not in stores:
        check.add(("state", "backend"), f'unknown state backend "{cfg.state.backend}"'
                  f"{suggest(cfg.state.backend, stores)}; known: {', '.join(stores)}")
    scenarios = _scenarios(cfg, providers, seen, check)
    if check.problems:
        raise ConfigError(check.problems, source)

    def resolve(path: str) -> str:
        return path if path == ":memory:" else str(Path(base_dir, os.path.expanduser(path)))

    rt = routing
    return CompiledConfig(
        source=source, base_dir=base_dir, enabled=rt.enabled, default_provider=default_provider,
        default_model=default_model, chain=chain, timezone=rt.timezone, rules=tuple(rules), intake=intake,
        providers=providers, actions={**DEFAULT_ACTIONS, **rt.actions},
        retry=RetrySpec(rt.retry.max_retries, rt.retry.backoff_seconds, rt.retry.backoff_factor,
                        rt.retry.max_backoff_seconds),
        breaker=BreakerSpec(rt.circuit_breaker.failure_threshold, breaker_cooldown or 600.0,
                            frozenset(rt.circuit_breaker.counts)),
        state_backend=cfg.state.backend, state_path=resolve(cfg.state.path), audit_enabled=cfg.audit.enabled,
        audit_path=resolve(cfg.audit.path), audit_include_prompt=cfg.audit.include_prompt,
        run_dir=resolve(cfg.run.dir), output_cap_bytes=cfg.run.output_cap_bytes, keep_runs=cfg.run.keep_runs,
        scenarios=scenarios, raw=raw,
    )


def load_config(path: str | os.PathLike[str]) -> CompiledConfig:
    raw = read_toml(path)
    return compile_config(raw, str(path), str(Path(path).resolve().parent))
