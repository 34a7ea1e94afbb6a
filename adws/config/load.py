"""Loading config.toml: parse, translate the older format, validate everything, compile.

Every problem in the file is collected and raised together as one `ConfigError`; each names its place.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import ValidationError

from adws.attempt import OutcomeClass
from adws.conditions import ConditionError, LabelSet, compile_conditions, make_label_set
from adws.config.locations import format_loc
from adws.config.messages import pydantic_problems
from adws.config.schema import Config, LLMConfig, ProviderConfig, QuotaConfig, RuleConfig
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
from adws.templates import BUILTIN_VARIABLES, check_template, from_legacy, variables_of

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
        raise ConfigError([Problem("", "config file not found")], source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem("", f"cannot read config file: {exc}")], source) from None
    return parse_toml(text, source)


def parse_toml(text: str, source: str = "<string>") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem("", f"not valid TOML: {exc}")], source) from None


class _Checker:
    """Collects problems while cross-checking a structurally valid config."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.problems: list[Problem] = []
        # Providers that exist in the file but failed validation: naming them is not a second mistake.
        self.broken_providers: frozenset[str] = frozenset()

    def add(self, loc: Loc, message: str) -> None:
        self.problems.append(Problem(format_loc(loc, self.raw), message))

    def guard(self, loc: Loc, check: Callable[[], Any]) -> Any:
        try:
            return check()
        except ValueError as exc:
            self.add(loc, str(exc))
            return None


def _check_raw_patterns(raw: Any, check: _Checker) -> None:
    """Compile failure-pattern regexes from the document, so a bad regex shows even when a typo elsewhere in
    the same provider (a bad `class`) keeps that provider out of the cross-checks."""
    providers = raw.get("providers")
    if not isinstance(providers, dict):
        return
    for name, provider in providers.items():
        patterns = provider.get("failure_patterns") if isinstance(provider, dict) else None
        for i, entry in enumerate(patterns if isinstance(patterns, list) else ()):
            regex = entry.get("regex") if isinstance(entry, dict) else None
            if isinstance(regex, str):
                try:
                    re.compile(regex)
                except re.error as exc:
                    where = f" at position {exc.pos}" if exc.pos is not None else ""
                    check.add(("providers", name, "failure_patterns", i, "regex"),
                              f"invalid regex {regex!r}: {exc.msg}{where}")


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
        found = _zone(q.timezone, (*loc, "timezone"), check)
        zone = found.key if found is not None else zone
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
        try:
            re.compile(pattern.regex)
        except re.error:
            continue  # already reported from the document by _check_raw_patterns
        # The same compiler the classifier uses, so what loads is exactly what runs (it also refuses a regex
        # that matches empty text).
        check.guard((*loc, "failure_patterns", i, "regex"),
                    lambda pt=pattern: compile_pattern(pt.regex, pt.outcome))  # type: ignore[misc]
    # The prompt must reach the agent the way `prompt` says, or every run would start without it.
    used = [variables_of(element) for element in command]
    if p.prompt == "arg" and None not in used and not any("prompt" in names for names in used if names):
        check.add((*loc, "prompt"), 'prompt = "arg" but no command_template element uses {{ prompt }}')
    env_values = (*p.env.values(), *(v for a in p.accounts for v in a.env.values()))
    env_used = [variables_of(from_legacy(v)) for v in env_values]
    uses_prompt_file = any("prompt_file" in names for names in (*used, *env_used) if names)
    if p.prompt == "file" and None not in used and not uses_prompt_file:
        check.add((*loc, "prompt"), 'prompt = "file" (the default) but no command_template element or env value '
                  'uses {{ prompt_file }}; name the file in the command, or set prompt = "stdin" or "arg"')
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
        uses_prompt_file=uses_prompt_file, uses_model=any("model" in names for names in used if names),
        api_key_env=p.api_key_env, requires_api_key=p.requires_api_key,
        env={k: from_legacy(v) for k, v in p.env.items()}, timeout=p.timeout, kill_grace=p.kill_grace,
        prompt=p.prompt, output_format=p.output_format, max_concurrency=p.max_concurrency,
        account_strategy=p.account_strategy, scores=dict(p.specializations), models=models,
        accounts=tuple(accounts), quota=_quota(p.quota, (*loc, "quota"), tz, check),
        patterns=tuple((pt.regex, pt.outcome) for pt in p.failure_patterns),
        actions=dict(p.actions), vars=dict(p.vars), idle_timeout=p.idle_timeout,
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
    keywords: list[tuple[str, str]] = []  # (specialization, regex source of its words)
    for spec, words in it.specialization_keywords.items():
        cleaned = [w.strip() for w in words if w.strip()]
        if not cleaned:
            check.add((*loc, "specialization_keywords", spec), "give at least one keyword")
            continue
        # Case-insensitive, anchored at a word start only: "design" also fires on "designs".
        keywords.append((spec.lower(), r"\b(?:" + "|".join(re.escape(w) for w in cleaned) + r")"))
    # One pattern with a group per specialization: the classifier reads the text once, not once per entry.
    keyword_pattern = (re.compile("|".join(f"({source})" for _, source in keywords), re.IGNORECASE)
                       if keywords else None)
    scored = set(BASE_SPECIALIZATIONS)
    for p in providers.values():
        scored |= set(p.scores)
        for m in p.models.values():
            scored |= set(m.scores)
    # A specialization that intake introduces is allowed (it falls back to `general` scores), but one a letter
    # away from a known name is a typo that would silently route elsewhere: refuse it with a suggestion.
    introduced: list[tuple[Loc, str]] = [
        (("routing", "intake", "default_specialization"), it.default_specialization.lower())]
    introduced += [(("routing", "intake", "specialization_labels", label), spec.lower())
                   for label, spec in it.specialization_labels.items()]
    introduced += [(("routing", "intake", "specialization_keywords", spec), spec.lower())
                   for spec in it.specialization_keywords]
    for where, spec in introduced:
        hint = suggest(spec, scored)
        if spec not in scored and hint:
            check.add(where, f'unknown specialization "{spec}"{hint}; a new one needs a name that is not a near '
                      "miss of a known one")
    known = scored | {spec for _, spec in introduced}
    return IntakeSpec(
        priority_labels={k.lower(): v for k, v in it.priority_labels.items()},
        priority_numbers=tuple(it.priority_numbers), default_priority=it.default_priority,
        specialization_labels=tuple(spec_labels),
        exact_specialization_labels=_exact_labels(spec_labels),
        keyword_specs=tuple(spec for spec, _ in keywords), keyword_pattern=keyword_pattern,
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


def _check_rule_vars(rules: list[RuleConfig], providers: Mapping[str, ProviderSpec], check: _Checker) -> None:
    """A rule's `vars` entry that no template reads has no effect: most likely a typo (`thinkin_budget`)."""
    read: set[str] = set()
    for p in providers.values():
        for source in (*p.command, *p.env.values(), *(v for a in p.accounts for v in a.env.values())):
            read |= variables_of(source) or set()
    for i, rule in enumerate(rules):
        for name in rule.vars:
            if name not in read:
                check.add(("routing", "rules", i, "vars", name),
                          f'no command template reads "{name}"{suggest(name, read)}, so it would have no effect')


def _provider_for_model(model: str, providers: Mapping[str, ProviderSpec]) -> list[str]:
    return [name for name, p in providers.items() if model in p.models]


def _check_model(check: _Checker, loc: Loc, provider: ProviderSpec, model: str) -> None:
    if provider.models and model not in provider.models:
        check.add(loc, f'provider "{provider.name}" has no model "{model}"{suggest(model, provider.models)}; '
                  f"its models: {', '.join(provider.models)}")


def _check_provider(check: _Checker, loc: Loc, name: str, providers: Mapping[str, ProviderSpec]) -> bool:
    if name in providers:
        return True
    if name in check.broken_providers:
        return False
    # Every provider in the file, also those left out for their own problems, in file order.
    declared = check.raw.get("providers")
    names = [n for n in declared if n in providers or n in check.broken_providers] \
        if isinstance(declared, dict) else list(providers)
    check.add(loc, f'unknown provider "{name}"{suggest(name, names)}; providers: {", ".join(names)}')
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
        elif not owners and not check.broken_providers:
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
                      f"{suggest(r.account, names)}" + (f"; its accounts: {', '.join(names)}" if names else
                                                        f"; it declares no [[providers.{provider}.accounts]]"))
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


_TASK_FIELD = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])?): (.*)$", re.DOTALL)


def _scenarios(cfg: Config, index: Sequence[int], providers: Mapping[str, ProviderSpec],
               rule_names: Iterable[str], check: _Checker) -> tuple[ScenarioSpec, ...]:
    from adws.task import Task

    names = set(rule_names) | {"default", "override"}
    seen: set[str] = set()
    out = []
    for i, s in zip(index, cfg.scenarios, strict=True):
        loc: Loc = ("scenarios", i)
        if s.name in seen:
            check.add((*loc, "name"), f'duplicate scenario name "{s.name}"')
        seen.add(s.name)
        try:
            Task.from_dict(s.task)
        except TaskError as exc:
            for problem in exc.problems:
                # "title: expected a string" names a field of the task: make it part of the place.
                field = _TASK_FIELD.match(problem)
                if field:
                    check.add((*loc, "task", field.group(1)), field.group(2))
                else:
                    check.add((*loc, "task"), problem)
        if s.at is not None and s.at.tzinfo is None:
            check.add((*loc, "at"), "give a timezone offset (e.g. 2026-11-22T10:00:00Z)")
        e = s.expect
        if e.provider is not None:
            if _check_provider(check, (*loc, "expect", "provider"), e.provider, providers):
                spec = providers[e.provider]
                if e.model is not None:
                    _check_model(check, (*loc, "expect", "model"), spec, e.model)
                if e.account is not None and spec.account(e.account) is None:
                    check.add((*loc, "expect", "account"), f'provider "{e.provider}" has no account "{e.account}"'
                              f"{suggest(e.account, [a.name for a in spec.accounts])}")
        elif e.model is not None and not check.broken_providers and any(p.models for p in providers.values()) \
                and not _provider_for_model(e.model, providers):
            known = sorted({m for p in providers.values() for m in p.models})
            check.add((*loc, "expect", "model"), f'no provider declares model "{e.model}"{suggest(e.model, known)}')
        if e.rule is not None and e.rule not in names:
            check.add((*loc, "expect", "rule"), f'unknown rule "{e.rule}"{suggest(e.rule, names)}')
        for j, tier in enumerate(e.plan or ()):
            _check_provider(check, (*loc, "expect", "plan", j), tier, providers)
        out.append(ScenarioSpec(s.name, s.description, dict(s.task), s.at.isoformat() if s.at else None,
                                e.model_dump(exclude_none=True)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Validated:
    """The validated file, possibly with its broken parts left out (then `problems` says what they were)."""

    cfg: Config
    rule_index: tuple[int, ...]  # the position in the file of each rule in cfg.routing.rules
    scenario_index: tuple[int, ...]
    broken_providers: frozenset[str]


def _validate(raw: dict[str, Any]) -> tuple[_Validated | None, list[Problem]]:
    """Validate the structure. When it fails, validate again without the broken providers, rules, scenarios and
    settings, so that the cross-checks can still report their problems in the same run."""
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        errors, problems = exc.errors(include_url=False), pydantic_problems(exc, raw)
    else:
        return _Validated(cfg, tuple(range(len(cfg.routing.rules))), tuple(range(len(cfg.scenarios))),
                          frozenset()), []
    pruned = copy.deepcopy(raw)
    bad_providers: set[str] = set()
    bad_rules: set[int] = set()
    bad_scenarios: set[int] = set()
    for err in errors:
        loc = tuple(err["loc"])
        if loc[:1] == ("providers",) and len(loc) > 1 and isinstance(loc[1], str):
            bad_providers.add(loc[1])
        elif loc[:2] == ("routing", "rules") and len(loc) > 2 and isinstance(loc[2], int):
            bad_rules.add(loc[2])
        elif loc[:1] == ("scenarios",) and len(loc) > 1 and isinstance(loc[1], int):
            bad_scenarios.add(loc[1])
        elif loc and isinstance(loc[0], str):
            section = pruned.get(loc[0])
            if len(loc) > 1 and isinstance(section, dict):
                section.pop(loc[1], None)  # a setting such as routing.timezone: its default stands in
            else:
                pruned.pop(loc[0], None)
    for name in bad_providers:
        pruned["providers"].pop(name, None)
    rules = pruned.get("routing", {}).get("rules") if isinstance(pruned.get("routing"), dict) else None
    rule_index = [i for i in range(len(rules)) if i not in bad_rules] if isinstance(rules, list) else []
    if isinstance(rules, list):
        pruned["routing"]["rules"] = [rules[i] for i in rule_index]
    scenarios = pruned.get("scenarios")
    scenario_index = [i for i in range(len(scenarios)) if i not in bad_scenarios] if isinstance(scenarios, list) else []
    if isinstance(scenarios, list):
        pruned["scenarios"] = [scenarios[i] for i in scenario_index]
    try:
        cfg = Config.model_validate(pruned)
    except ValidationError:
        return None, problems  # nothing sound left to cross-check (e.g. every provider is broken)
    return _Validated(cfg, tuple(rule_index), tuple(scenario_index), frozenset(bad_providers)), problems


def _zone(name: str, loc: Loc, check: _Checker) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        zones = available_timezones()
        # Case slips ("utc", "europe/berlin") are the common typo; difflib alone does not see them.
        same_case = [z for z in zones if z.lower() == name.lower()]
        hint = f' (did you mean "{same_case[0]}"?)' if same_case else suggest(name, zones)
        check.add(loc, f'unknown timezone "{name}"' + (hint or
                                                        ': use an IANA name such as "UTC" or "Europe/Berlin"'))
        return None


def compile_config(raw: dict[str, Any], source: str = "<string>", base_dir: str = ".") -> CompiledConfig:
    check = _Checker(raw)
    conditions = _compile_rules_conditions(raw, check)
    _check_raw_patterns(raw, check)
    validated, structure_problems = _validate(raw)
    if validated is None:
        raise ConfigError([*structure_problems, *check.problems], source)
    cfg = validated.cfg
    check.broken_providers = validated.broken_providers
    routing = cfg.routing
    tz = _zone(routing.timezone, ("routing", "timezone"), check) or ZoneInfo("UTC")
    providers = {name: _provider(name, p, tz, check) for name, p in cfg.providers.items()}
    intake = _intake(cfg, providers, check)

    chain = tuple(routing.chain) or tuple(providers)
    for i, tier in enumerate(routing.chain):
        _check_provider(check, ("routing", "chain", i), tier, providers)
        if tier in routing.chain[:i]:
            check.add(("routing", "chain", i), f'"{tier}" appears twice in the chain')
    default_provider, default_model = _defaults(cfg, chain, providers, check)

    rules = []
    seen: dict[str, int] = {}
    for i, rule_cfg in zip(validated.rule_index, routing.rules, strict=True):
        name = rule_cfg.name
        if name in seen:
            check.add(("routing", "rules", i, "name"),
                      f'duplicate rule name "{name}" (first at routing.rules[{seen[name]}])')
        seen.setdefault(name, i)
        rules.append(_rule(i, rule_cfg, conditions.get(i, ()), providers, intake.known_specializations, check))
    rules.sort(key=lambda rule: (-rule.priority, rule.order))
    _check_rule_vars(routing.rules, providers, check)

    breaker_cooldown = check.guard(("routing", "circuit_breaker", "cooldown"),
                                   lambda: parse_duration(routing.circuit_breaker.cooldown))
    stores = _registry("adws.state", "STORES")
    backend = stores.get(cfg.state.backend)
    if backend is None:
        check.add(("state", "backend"), f'unknown state backend "{cfg.state.backend}"'
                  f"{suggest(cfg.state.backend, stores)}; known: {', '.join(stores)}")
    else:
        for key in sorted(cfg.state.model_fields_set - {"backend", *backend.reads}):
            check.add(("state", key), f'not read by backend "{cfg.state.backend}" (it reads '
                      f"{', '.join(backend.reads) or 'nothing'}); remove it or change the backend")
    # Rules left out for their own problems still exist: a scenario expecting one is not wrong for that.
    raw_rules = raw.get("routing", {}).get("rules") if isinstance(raw.get("routing"), dict) else None
    rule_names = set(seen)
    if isinstance(raw_rules, list):
        rule_names |= {r["name"] for r in raw_rules if isinstance(r, dict) and isinstance(r.get("name"), str)}
    scenarios = _scenarios(cfg, validated.scenario_index, providers, rule_names, check)
    if structure_problems or check.problems:
        raise ConfigError([*structure_problems, *check.problems], source)
    assert backend is not None  # an unknown one is a problem above

    def resolve(path: str) -> str:
        return path if path == ":memory:" else str(Path(base_dir, os.path.expanduser(path)))

    r = routing
    return CompiledConfig(
        source=source, base_dir=base_dir, enabled=r.enabled, default_provider=default_provider,
        default_model=default_model, chain=chain, timezone=r.timezone, rules=tuple(rules), intake=intake,
        providers=providers, actions={**DEFAULT_ACTIONS, **r.actions},
        retry=RetrySpec(r.retry.max_retries, r.retry.backoff_seconds, r.retry.backoff_factor,
                        r.retry.max_backoff_seconds),
        breaker=BreakerSpec(r.circuit_breaker.failure_threshold, breaker_cooldown or 600.0,
                            frozenset(r.circuit_breaker.counts)),
        state_backend=cfg.state.backend, state_path=getattr(cfg.state, backend.setting),
        audit_enabled=cfg.audit.enabled,
        audit_path=resolve(cfg.audit.path), audit_include_prompt=cfg.audit.include_prompt,
        run_dir=resolve(cfg.run.dir), output_cap_bytes=cfg.run.output_cap_bytes, keep_runs=cfg.run.keep_runs,
        scenarios=scenarios, raw=raw,
        state_options={key: getattr(cfg.state, key) for key in backend.reads if key != backend.setting},
    )


def _defaults(cfg: Config, chain: tuple[str, ...], providers: Mapping[str, ProviderSpec],
              check: _Checker) -> tuple[str, str | None]:
    """The default target: `[routing]` default_provider/default_model, else the older `[llm]` table, else the
    first tier. Both tables are checked even where one shadows the other: a typo must not wait to surface."""
    routing, llm = cfg.routing, cfg.llm or LLMConfig()
    default_provider = routing.default_provider or llm.provider or chain[0]
    if routing.default_provider is not None:
        _check_provider(check, ("routing", "default_provider"), routing.default_provider, providers)
    if llm.provider is not None:
        _check_provider(check, ("llm", "provider"), llm.provider, providers)
    # [llm] model_default belongs to [llm] provider; it is the default model only where that is the default.
    llm_provider = llm.provider or default_provider
    if llm.model_default is not None and llm_provider in providers:
        _check_model(check, ("llm", "model_default"), providers[llm_provider], llm.model_default)
    if routing.default_model is not None and default_provider in providers:
        _check_model(check, ("routing", "default_model"), providers[default_provider], routing.default_model)
    legacy_model = llm.model_default if llm_provider == default_provider else None
    return default_provider, routing.default_model or legacy_model


def load_config(path: str | os.PathLike[str]) -> CompiledConfig:
    """Kept for callers of the older module path: the cached loader in `adws.config`."""
    from adws.config import load_config as cached

    return cached(path)
