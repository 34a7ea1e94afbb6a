"""Loading config.toml: parse, validate everything, compile. Every problem in the file is collected and raised
together as one `ConfigError`; each names its place (and its line, where the file has one).

`compile_config` runs passes in order, each a small function over a `_Checker` that collects problems:

1. from the document itself: conditions and failure-pattern regexes (so their errors show even when the
   structure around them is broken);
2. structure (pydantic, `adws.config.schema`), leaving broken providers, rules and scenarios out;
3. providers: registry names, templates (rendered against a sample of everything they may see), accounts,
   patterns and actions merged once, quotas;
4. intake; 5. chain and defaults; 6. rules; 7. settings (breaker, state); 8. scenarios.

A problem that only follows from an earlier one (a rule naming a broken provider, a variable "no template
reads" when a template does not parse) is not reported again.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import ValidationError

from adws.arguments import time_problem
from adws.attempt import OutcomeClass
from adws.classify import Pattern, pattern_chain
from adws.compiled import (
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
from adws.conditions import Condition, ConditionError, ConditionMemo, LabelSet, compile_conditions, make_label_set
from adws.config import quota_load
from adws.config.lines import key_lines, line_of
from adws.config.locations import problem_at
from adws.config.messages import pydantic_problems
from adws.config.schema import (
    COOLDOWN_DAYS,
    OUTPUT_FORMATS,
    WINDOW_DAYS,
    Config,
    LLMConfig,
    PoolConfig,
    ProviderConfig,
    QuotaConfig,
    RuleConfig,
    cut_tag,
    split_words,
)
from adws.config.verdicts import remembered
from adws.cron import CronMatcher
from adws.dataclass_cache import dataclass, replace
from adws.errors import ConfigError, Loc, Problem, RenderError, TaskError, suggest, suggest_typo, toml_value
from adws.files import unsafe_run_root
from adws.inputs import MAX_DEPTH, deepest_value
from adws.keywords import KeywordMatcher
from adws.quota import parse_window
from adws.state import STORES
from adws.strategies import STRATEGIES
from adws.task import Task
from adws.templates import (
    BUILTIN_VARIABLES,
    NO_PREVIOUS,
    from_legacy,
    is_plain,
    needs_jinja,
    render_argv,
    render_one,
    renders_without_jinja,
)
from adws.templates import check_template as _check_template
from adws.templates import variables_of as _variables_of
from adws.userregex import UserRegex, compile_user_regex


def _text_or_none(value: Any) -> str | None:
    return value if type(value) is str else None


def check_template(source: str, allowed: Iterable[str]) -> str | None:
    """`adws.templates.check_template`, remembered across edits for a template only Jinja can check
    (`adws.config.verdicts`)."""
    if not needs_jinja(source):
        return _check_template(source, allowed)
    names = sorted(set(allowed))
    return remembered("check", lambda: repr((source, names)), lambda: _check_template(source, names),
                      _text_or_none, none_ok=True)


def _names(value: Any) -> list[str] | None:
    return value if type(value) is list and all(type(name) is str for name in value) else None


def variables_of(source: str) -> frozenset[str] | None:
    """`adws.templates.variables_of`, remembered across edits for a template only Jinja can read."""
    if not needs_jinja(source):
        return _variables_of(source)

    def compute() -> list[str] | None:
        found = _variables_of(source)
        return None if found is None else sorted(found)
    # A stored null is not taken: only a template that does not parse has none, and its check fails anyway.
    names = remembered("variables", lambda: repr(source), compute, _names)
    return None if names is None else frozenset(names)


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
    OutcomeClass.VERIFY_FAILED: "next_tier",  # the work does not pass: another tier may do better
}


def parse_duration(text: str, days: int) -> float:
    """'5h', '30m', '1h30m', '7d' -> seconds, at most `days` days (ValueError with the accepted forms, or the
    bound, otherwise)."""
    return parse_window(text, timedelta(days=days)).total_seconds()




def load_file(path: str | os.PathLike[str], data: bytes | None = None) -> CompiledConfig:
    """Read, parse and compile a config file (no cache: `adws.config.load_config` is the cached entry point).
    `data`: the file's bytes when the caller has read them already (they are what gets compiled).
    Raises ConfigError whose problems carry the line of their place where the file has one."""
    source = str(path)
    text = _read_text(path) if data is None else _decode(data, source)
    raw = parse_toml(text, source)
    try:
        return compile_config(raw, source, str(Path(path).resolve().parent))
    except ConfigError as exc:
        lines = key_lines(text)
        raise ConfigError([p.at_line(line_of(p.loc, lines)) if p.loc else p for p in exc.problems],
                          source) from None


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    return parse_toml(_read_text(path), str(path))


def _read_text(path: str | os.PathLike[str]) -> str:
    source = str(path)
    try:
        from adws.inputs import MAX_CONFIG_BYTES, read_text

        return read_text(path, MAX_CONFIG_BYTES, "a config file")
    except FileNotFoundError:
        raise ConfigError([Problem("", "config file not found")], source, unreadable=True) from None
    except OSError as exc:
        from adws.inputs import TooLarge

        why = exc.strerror if isinstance(exc, TooLarge) else exc  # the source names the file already
        raise ConfigError([Problem("", f"cannot read config file: {why}")], source, unreadable=True) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", f"cannot read config file: {exc}")], source) from None


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:  # worded as _read_text words it
        raise ConfigError([Problem("", f"cannot read config file: {exc}")], source) from None


def parse_toml(text: str, source: str = "<string>") -> dict[str, Any]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem("", f"not valid TOML: {exc}")], source) from None
    except RecursionError:  # tomllib recurses per nesting level; Python's limit is far above MAX_DEPTH
        raise ConfigError([Problem("", f"nested too deeply: a config needs at most {MAX_DEPTH} levels of "
                                   "tables and arrays")], source) from None
    deepest = deepest_value(raw)
    if deepest is not None:
        depth, path = deepest
        shown = ".".join(str(part) for part in path[:4])
        raise ConfigError([Problem("", f"nested {depth} levels deep under {shown}: a config needs at most "
                                   f"{MAX_DEPTH} levels of tables and arrays")], source)
    return raw


class _Checker:
    """Collects problems while checking a config; knows which parts are already known to be broken."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.problems: list[Problem] = []
        # Providers that exist in the file but failed validation: naming them is not a second mistake.
        self.broken_providers: frozenset[str] = frozenset()
        # Some template does not parse or uses an unknown variable: what it would read is unknown.
        self.broken_templates = False
        # Settings left out for their own problems (their defaults stand in): what they declare is unknown.
        self.defaulted: frozenset[Loc] = frozenset()
        # Specializations a score table names, refused as typos: a rule naming one is not a second problem.
        self.refused_specializations: set[str] = set()

    def add(self, loc: Loc, message: str) -> None:
        self.problems.append(problem_at(loc, self.raw, message + self._word_of_one_string(loc)))

    def _word_of_one_string(self, loc: Loc) -> str:
        """For a place `command_template[i]` of a command written as one string whose word i holds a piece of a
        Jinja tag (`{{ model` split at an unclosed tag): that the string was split into words, and how not to."""
        if len(loc) != 4 or loc[0] != "providers" or loc[2] != "command_template" or not isinstance(loc[3], int):
            return ""
        providers = self.raw.get("providers")
        provider = providers.get(loc[1]) if isinstance(providers, dict) else None
        command = provider.get("command_template") if isinstance(provider, dict) else None
        if not isinstance(command, str):
            return ""
        words = split_words(command)
        if loc[3] >= len(words) or not cut_tag(words[loc[3]]):
            return ""
        return (f"; command_template is one string, split on whitespace into words (shell rules, each whole "
                f"{{{{ … }}}} or {{% … %}} kept in one word), and word {loc[3] + 1} is {words[loc[3]]!r}: write "
                "the command as an array with one string per argument")

    def guard(self, loc: Loc, check: Callable[[], Any]) -> Any:
        try:
            return check()
        except ValueError as exc:
            self.add(loc, str(exc))
            return None

    def left_out(self) -> list[dict[str, Any]]:
        """The tables, as written, of the providers left out for their own problems (a provider that is not a
        table gives an empty one): what they declare still counts for the cross-checks, so that naming it is
        not reported as unknown."""
        declared = self.raw.get("providers")
        tables = [declared.get(name) for name in sorted(self.broken_providers)] if isinstance(declared, dict) else []
        return [table if isinstance(table, dict) else {} for table in tables]

    def name_in(self, loc: Loc, what: str, name: str, registry: Iterable[str]) -> bool:
        """The one check for a name that must be a key of a registry (output format, strategy, backend)."""
        known = list(registry)
        if name in known:
            return True
        self.add(loc, f'unknown {what} "{name}"{suggest(name, known)}; known: {", ".join(known)}')
        return False


# --- pass 1: from the document -------------------------------------------------------------------------------

def _document_conditions(raw: Any, check: _Checker) -> dict[int, tuple[Condition, ...]]:
    """Compile conditions straight from the document, so their errors show even when other parts are wrong."""
    compiled: dict[int, tuple[Condition, ...]] = {}
    memo: ConditionMemo = {}  # conditions written alike in several rules are compiled once and shared
    for i, rule in enumerate(_raw_list(raw, "routing", "rules")):
        if not isinstance(rule, dict) or not isinstance(rule.get("conditions", {}), dict):
            continue
        conditions, errors = compile_conditions(rule.get("conditions", {}), memo)
        for error in errors:
            check.add(("routing", "rules", i, "conditions", *error.loc), error.message)
        if not errors:
            compiled[i] = tuple(conditions)
    return compiled


def _document_patterns(raw: Any, check: _Checker) -> dict[tuple[str, int], UserRegex]:
    """Compile failure-pattern regexes from the document, so a bad regex shows even when a typo elsewhere in
    the same provider (a bad `class`) keeps that provider out of the cross-checks. Matching is case-insensitive
    (CLIs vary their capitals; `(?-i:...)` makes a part case-sensitive)."""
    compiled: dict[tuple[str, int], UserRegex] = {}
    providers = raw.get("providers")
    for name, provider in providers.items() if isinstance(providers, dict) else ():
        patterns = provider.get("failure_patterns") if isinstance(provider, dict) else None
        for i, entry in enumerate(patterns if isinstance(patterns, list) else ()):
            regex = entry.get("regex") if isinstance(entry, dict) else None
            if not isinstance(regex, str):
                continue
            try:
                compiled[(name, i)] = compile_user_regex(regex, True, allow_empty=False)
            except ValueError as exc:
                check.add(("providers", name, "failure_patterns", i, "regex"), str(exc))
    return compiled


def _document_nul(raw: Any, check: _Checker) -> None:
    """A NUL character cannot be in an argument, an environment variable or a path; in a config it can only
    fail a run later (and then look like the task's fault). Refused wherever it is, key or value."""
    stack: list[tuple[Any, Loc]] = [(raw, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, dict):
            for key, value in reversed(node.items()):
                if "\x00" in key:
                    check.add((*loc, key), "the key holds a NUL character, which no program or environment can carry")
                else:
                    stack.append((value, (*loc, key)))
        elif isinstance(node, list):
            stack.extend((value, (*loc, i)) for i, value in reversed(list(enumerate(node))))
        elif isinstance(node, str) and "\x00" in node:
            check.add(loc, "holds a NUL character, which no program or environment can carry")


def _raw_list(raw: Any, *path: str) -> list[Any]:
    node = raw
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, list) else []


# --- pass 3: providers -----------------------------------------------------------------------------------------

def _quota(q: QuotaConfig | PoolConfig | None, loc: Loc, tz: ZoneInfo, check: _Checker) -> QuotaSpec | None:
    if q is None:
        return None
    window = None
    if q.reset is not None:
        check.guard((*loc, "reset"), lambda: CronMatcher(q.reset or ""))
    if q.window is not None:
        window = check.guard((*loc, "window"), lambda: parse_duration(q.window or "", WINDOW_DAYS))
    zone = tz.key
    if q.timezone is not None:
        found = _zone(q.timezone, (*loc, "timezone"), check)
        zone = found.key if found is not None else zone
    # Thresholds in any order (they are sorted); one given twice is most likely a typo for another.
    for i, pct in enumerate(q.alert_percent or ()):
        if not 0 < pct <= 100:
            check.add((*loc, "alert_percent", i), f"must be within 0-100, got {toml_value(pct, brief=True)}")
        elif pct in (q.alert_percent or [])[:i]:
            check.add((*loc, "alert_percent", i), f"{toml_value(pct, brief=True)} is already in the list")
    spec = QuotaSpec(q.tokens, q.requests, q.cost_usd, q.reset, zone, window, q.hard_block_percent or 95.0,
                     tuple(sorted(q.alert_percent or ())))
    if isinstance(q, QuotaConfig) and q.pools:
        spec = replace(spec, pools=quota_load.pools(loc, q.pools, spec, lambda pq, at: _quota(pq, at, tz, check)))
    return spec


def _success_actions(cfg: Config, check: _Checker) -> None:
    """A success ends the walk whatever `actions` says: another action for it would have no effect."""
    tables: list[tuple[Loc, Mapping[OutcomeClass, str]]] = [(("routing", "actions"), cfg.routing.actions)]
    tables += [(("providers", name, "actions"), p.actions) for name, p in cfg.providers.items()]
    for loc, table in tables:
        action = table.get(OutcomeClass.SUCCESS)
        if action is not None and action != "stop":
            check.add((*loc, "success"), f'a success always stops the walk, so "{action}" would have no effect: '
                      "remove it")


def _provider_names(raw: Mapping[str, Any], check: _Checker) -> None:
    """Names an override (label "route:PROVIDER[/MODEL]", attrs.force) can tell apart: it reads the provider name
    without the spaces around it, in any case, up to the first "/"."""
    declared = raw.get("providers")
    seen: dict[str, str] = {}
    for name in declared if isinstance(declared, dict) else ():
        if "\x00" in name:
            continue  # _document_nul says so
        loc: Loc = ("providers", name)
        if not name.strip():
            check.add(loc, "a provider name must not be empty or blank")
        elif name != name.strip():
            check.add(loc, f'provider name "{name}" has spaces around it, which an override does not read: write '
                      f'"{name.strip()}"')
        elif "/" in name:
            check.add(loc, f'provider name "{name}" holds "/", which separates provider and model in an override '
                      '("route:PROVIDER/MODEL", attrs.force): rename it')
        elif name.casefold() in seen:
            check.add(loc, f'provider "{name}" differs from "{seen[name.casefold()]}" only in case, and an override '
                      "names a provider in any case: rename one")
        # casefold, not lower: "STRASSE" and "straße" are one name to a reader; keyed as compared.
        seen.setdefault(name.strip().casefold(), name)


def _template_variables(p: ProviderConfig) -> set[str]:
    allowed = set(BUILTIN_VARIABLES) | set(p.vars)
    if p.models:
        # A variable every model declares is always defined; one only some declare is not.
        allowed |= set.intersection(*(set(m.vars) for m in p.models.values()))
    return allowed


def _templates(loc: Loc, name: str, p: ProviderConfig, command: tuple[str, ...], check: _Checker) -> bool:
    """Check every template of a provider (command, env, account env): it parses, reads only variables it will
    have, and renders against a sample of every value it may see. True when all of them are sound."""
    allowed = _template_variables(p)
    sources = _template_sources(loc, p, command)
    sound = True
    for where, source in sources:
        error = check_template(source, allowed)
        if error:
            check.add(where, error)
            sound = False
    if sound:
        for where, source in sources:
            error = _sample_render(source, name, p, {})
            if error:
                check.add(where, error)
                sound = False
    if not sound:
        check.broken_templates = True
    return sound


def _template_sources(loc: Loc, p: ProviderConfig, command: tuple[str, ...]) -> list[tuple[Loc, str]]:
    sources: list[tuple[Loc, str]] = [((*loc, "command_template", i), element) for i, element in enumerate(command)]
    sources += [((*loc, "env", var), from_legacy(value)) for var, value in p.env.items()]
    sources += [((*loc, "accounts", i, "env", var), from_legacy(value))
                for i, acc in enumerate(p.accounts) for var, value in acc.env.items()]
    return sources


# Tasks a template may meet: every field given, and none given (what `{{ task.number + 1 }}` must survive).
_SAMPLE_TASKS = (
    ("a sample task", Task(id="sample-1", number=1, title="Sample title", body="Sample body", labels=("bug",),
                           priority="high", retry_count=1, specialization="code", context_tokens=1000,
                           attrs={"sample": "value"}).to_dict()),
    ("a task with no optional fields", Task().to_dict()),
)


_NO_ATTRIBUTE = re.compile(r"has no attribute '([^']+)'")


# `previous` after a failed attempt (what a fall-through tier and a prompt_suffix see): every field given, and
# only those an attempt always has (one that never started has no model, account or patch).
_SAMPLE_PREVIOUS = (
    ("after a failed attempt", {"provider": "other", "model": "sample-model", "account": "sample-account",
                                "outcome": "error", "reason": "Sample reason", "patch": "Sample patch"}),
    ("after an attempt with no model, account or patch", {**NO_PREVIOUS, "provider": "other", "outcome": "timeout",
                                                           "reason": "Sample reason"}),
)
# What a prompt_suffix is rendered with besides the vars (adws.manager): no prompt, files, account or paths.
SUFFIX_VARIABLES = frozenset({"previous", "task", "provider", "model", "workdir"})


def _sample_render(source: str, name: str, p: ProviderConfig, rule_vars: Mapping[str, Any],
                   suffix: bool = False) -> str | None:
    """`_render_samples`, remembered across edits for a template only Jinja can render (`adws.config.verdicts`):
    its answer depends on the template and the variables of every sample, whose `repr` is its key. `suffix`:
    `source` is a prompt_suffix (rendered only after a failed attempt, with `SUFFIX_VARIABLES` and the vars)."""
    if is_plain(source):
        return None  # text renders to itself
    samples = _samples(name, p, rule_vars, "previous" in source, suffix)
    if all(renders_without_jinja(source, v) for _, _, v in samples):
        return _render_samples(source, samples)
    return remembered("render", lambda: repr((source, samples)), lambda: _render_samples(source, samples),
                      _text_or_none, none_ok=True)


def _samples(name: str, p: ProviderConfig, rule_vars: Mapping[str, Any], previous: bool = False,
             suffix: bool = False) -> list[tuple[str, str, dict[str, Any]]]:
    """(model, what task, variables) of each render `_render_samples` tries: the variables `ProviderManager`
    gives an attempt, with every value a run can bring. `previous`: also as a fall-through tier after a failed
    attempt; `suffix`: the variables of a prompt_suffix, only after a failed attempt."""
    models: list[tuple[str, Mapping[str, Any]]] = [(mid, m.vars) for mid, m in p.models.items()] or [("", {})]
    accounts = [acc.name for acc in p.accounts] or [""]
    befores: list[tuple[str, Mapping[str, Any]]] = [] if suffix else [("", NO_PREVIOUS)]
    befores += list(_SAMPLE_PREVIOUS) if previous or suffix else []
    out = []
    for model, model_vars in models:
        for what, task in _SAMPLE_TASKS:
            for when, before in befores:
                variables = {**p.vars, **model_vars, **rule_vars, "prompt": "Sample prompt",
                             "prompt_file": "/run/prompt.txt", "output_file": "/run/output.txt", "model": model,
                             "provider": name, "account": accounts[0], "task": task, "workdir": "/work",
                             "run_dir": "/run", "home": "/home/user", "config_dir": "/config", "previous": before}
                if suffix:
                    variables = {k: v for k, v in variables.items()
                                 if k in SUFFIX_VARIABLES or k not in BUILTIN_VARIABLES}
                out.append((model, f"{what}, {when}" if when else what, variables))
    return out


def _render_samples(source: str, samples: list[tuple[str, str, dict[str, Any]]]) -> str | None:
    """Why `source` fails to render for some model, account and task it may meet (None when it renders for all):
    the variables are those `ProviderManager` gives an attempt, with every value a run can bring."""
    for model, what, variables in samples:
        try:
            render_one(source, variables)
        except RenderError as exc:
            cause = str(exc).split(": ", 1)[-1]
            on = f"model {model!r}, " if model else ""
            missing = _NO_ATTRIBUTE.search(cause)
            hint = suggest(missing.group(1), variables["task"]) if missing and "task" in source else ""
            if not hint and (missing or "undefined" in cause) and "task" in source:
                hint = '; give a default for what a task may lack (`| default("")`)'
            return f"template {source!r} cannot be rendered ({on}{what}): {cause}{hint}"
    return None


def _names_and_values(loc: Loc, p: ProviderConfig, command: tuple[str, ...], check: _Checker) -> None:
    """What the operating system refuses at run time: an empty program, a variable name that is empty or holds
    `=` (a NUL character anywhere is refused by `_document_nul`)."""
    if not (p.executable or command[0]).strip():
        check.add((*loc, "executable" if p.executable else "command_template", *(() if p.executable else (0,))),
                  "the program to run is empty")
    envs: list[tuple[Loc, Mapping[str, str]]] = [((*loc, "env"), p.env)]
    envs += [((*loc, "accounts", i, "env"), acc.env) for i, acc in enumerate(p.accounts)]
    for where, env in envs:
        for var in env:
            if (not var or "=" in var) and "\x00" not in var:  # NUL anywhere is reported by _document_nul
                check.add((*where, var), "an environment variable name must be non-empty and without `=`")
    key_vars: list[tuple[Loc, str | None]] = [((*loc, "api_key_env"), p.api_key_env)]
    key_vars += [((*loc, "accounts", i, "api_key_env"), acc.api_key_env) for i, acc in enumerate(p.accounts)]
    for where, key_var in key_vars:
        if key_var is not None and (not key_var or "=" in key_var) and "\x00" not in key_var:
            check.add(where, "an environment variable name must be non-empty and without `=`")


def _accounts(loc: Loc, p: ProviderConfig, tz: ZoneInfo, check: _Checker) -> tuple[AccountSpec, ...]:
    """The provider's accounts. A name given twice is refused, and so is one that differs from another only in case
    (casefold: "STRASSE" and "straße") or surrounding whitespace ("work " and "work"), as label keys are: the state
    store, rules and `adws quota` would keep two accounts a reader takes for one."""
    names: set[str] = set()
    seen: dict[str, str] = {}  # folded name (stripped, casefolded) -> the name first given
    accounts = []
    for i, acc in enumerate(p.accounts):
        folded = acc.name.strip().casefold()
        if acc.name in names:
            check.add((*loc, "accounts", i, "name"), f'duplicate account name "{acc.name}"')
        elif folded in seen:
            check.add((*loc, "accounts", i, "name"), f'account name "{acc.name}" differs from '
                      f'"{seen[folded]}" only in case or surrounding whitespace: rename one')
        names.add(acc.name)
        seen.setdefault(folded, acc.name)
        accounts.append(AccountSpec(acc.name, acc.enabled, {k: from_legacy(v) for k, v in acc.env.items()},
                                    acc.api_key_env, _quota(acc.quota, (*loc, "accounts", i, "quota"), tz, check),
                                    tuple(acc.usage_command or ())))
        quota_load.check_usage_command((*loc, "accounts", i, "usage_command"), tuple(acc.usage_command or ()), check)
    return tuple(accounts)


def _prompt_delivery(loc: Loc, p: ProviderConfig, command: tuple[str, ...], check: _Checker) -> bool:
    """The prompt must reach the agent the way `prompt` says, or every run would start without it. Returns
    whether a template names {{ prompt_file }} (only then is the prompt written to disk)."""
    used = [variables_of(element) or frozenset() for element in command]
    env_values = (*p.env.values(), *(v for a in p.accounts for v in a.env.values()))
    env_used = [variables_of(from_legacy(v)) or frozenset() for v in env_values]
    if p.prompt == "arg" and not any("prompt" in names for names in used):
        check.add((*loc, "prompt"), 'prompt = "arg" but no command_template element uses {{ prompt }}')
    uses_prompt_file = any("prompt_file" in names for names in (*used, *env_used))
    if p.prompt == "file" and not uses_prompt_file:
        check.add((*loc, "prompt"), 'prompt = "file" (the default) but no command_template element or env value '
                  'uses {{ prompt_file }}; name the file in the command, or set prompt = "stdin" or "arg"')
    return uses_prompt_file


def _failure_patterns(name: str, p: ProviderConfig,
                      compiled: Mapping[tuple[str, int], UserRegex]) -> tuple[Pattern, ...]:
    """The provider's declared patterns (compiled in pass 1), then the built-in ones: what `classify` reads."""
    own = [Pattern(compiled[(name, i)], OutcomeClass(pt.outcome))
           for i, pt in enumerate(p.failure_patterns) if (name, i) in compiled]
    return pattern_chain(own)


def _provider(name: str, p: ProviderConfig, tz: ZoneInfo, actions: Mapping[OutcomeClass, str],
              patterns: Mapping[tuple[str, int], UserRegex], check: _Checker) -> ProviderSpec:
    loc: Loc = ("providers", name)
    check.name_in((*loc, "output_format"), "output format", p.output_format, OUTPUT_FORMATS)
    check.name_in((*loc, "account_strategy"), "account strategy", p.account_strategy, STRATEGIES)
    command = tuple(from_legacy(element) for element in p.command_template)
    _names_and_values(loc, p, command, check)
    _model_without_models(loc, p, check)
    sound = _templates(loc, name, p, command, check)
    accounts = _accounts(loc, p, tz, check)
    # With a broken template what it reads is unknown: a prompt check would only repeat that problem.
    uses_prompt_file = _prompt_delivery(loc, p, command, check) if sound else True
    if p.requires_api_key and not p.api_key_env:
        check.add((*loc, "requires_api_key"), "requires_api_key = true needs `api_key_env` (the variable's name)")
    for mid in p.models:
        if not mid.strip() or mid != mid.strip():
            check.add((*loc, "models", mid), f'model id "{mid}" is empty or has spaces around it, which an override '
                      '("route:PROVIDER/MODEL") does not read: write it without them')
    models = {
        mid: ModelSpec(mid, m.context_window, m.latency_ms, m.cost_per_1k_tokens, dict(m.specializations), dict(m.vars))
        for mid, m in p.models.items()
    }
    executable = p.executable or command[0]
    if "{{" in executable or "{%" in executable:
        check.add((*loc, "executable" if p.executable else "command_template"),
                  "the program to run must be a fixed name or path, not a template")
    spec = ProviderSpec(
        name=name, enabled=p.enabled, description=p.description, command=command, executable=executable,
        uses_prompt_file=uses_prompt_file,
        uses_model=any("model" in (variables_of(element) or ()) for element in command),
        api_key_env=p.api_key_env, requires_api_key=p.requires_api_key,
        env={k: from_legacy(v) for k, v in p.env.items()}, timeout=p.timeout, kill_grace=p.kill_grace,
        prompt=p.prompt, output_format=p.output_format, max_concurrency=p.max_concurrency,
        account_strategy=p.account_strategy, scores=dict(p.specializations), models=models,
        accounts=accounts, quota=_quota(p.quota, (*loc, "quota"), tz, check),
        failure_patterns=_failure_patterns(name, p, patterns),
        actions={**actions, **p.actions}, vars=dict(p.vars), idle_timeout=p.idle_timeout,
        verify=_verify_templates(p.verify, (*loc, "verify"), [(name, p)], {}, _template_variables(p), check),
        verify_timeout=p.verify_timeout,
        prompt_suffix=_suffix_template(p.prompt_suffix, (*loc, "prompt_suffix"), [(name, p)], {},
                                       _template_variables(p), check),
        **quota_load.provider_extras(loc, p, check),
    )
    quota_load.check_pools(loc, spec, check)
    return spec


def _verify_templates(sources: list[str] | None, loc: Loc, tiers: Sequence[tuple[str, ProviderConfig]],
                      rule_vars: Mapping[str, Any], allowed: set[str], check: _Checker) -> tuple[str, ...]:
    """verify argv templates, each checked like a command_template element: it parses, reads only what it will
    have, and renders against the samples of every tier it may run on (`tiers`, with a rule's `vars`); and the
    command has a program: its first element is not empty, and some element renders to text."""
    command = tuple(sources or ())
    sound = True
    for i, source in enumerate(command):
        sound = _rendered(source, (*loc, i), tiers, rule_vars, allowed, check) and sound
    if command and not command[0].strip():
        check.add((*loc, 0), "the program to run is empty")
    elif sound and command and (empty := _renders_empty(command, tiers, rule_vars)):
        check.add(loc, f"renders to an empty command ({empty})")
    return command


def _suffix_template(source: str | None, loc: Loc, tiers: Sequence[tuple[str, ProviderConfig]],
                     rule_vars: Mapping[str, Any], allowed: set[str], check: _Checker) -> str | None:
    """A prompt_suffix: checked against the variables it is rendered with (`SUFFIX_VARIABLES` and the vars) and
    rendered against the samples after a failed attempt, the only time it is rendered."""
    if source is not None:
        _rendered(source, loc, tiers, rule_vars, (allowed - BUILTIN_VARIABLES) | SUFFIX_VARIABLES, check,
                  suffix=True)
    return source


def _rendered(source: str, loc: Loc, tiers: Sequence[tuple[str, ProviderConfig]], rule_vars: Mapping[str, Any],
              allowed: set[str], check: _Checker, suffix: bool = False) -> bool:
    """Check one template beyond the command (a verify element, a prompt_suffix): it parses, reads only `allowed`
    and renders against the samples of each tier; the first problem is reported at `loc`. True when sound."""
    error = check_template(source, allowed)
    for name, p in () if error else tiers:
        error = _sample_render(source, name, p, rule_vars, suffix)
        if error:
            break
    if error:
        check.add(loc, error)
    return error is None


def _renders_empty(command: tuple[str, ...], tiers: Sequence[tuple[str, ProviderConfig]],
                   rule_vars: Mapping[str, Any]) -> str | None:
    """Which sample renders every element of `command` empty (then there is no program to run), or None."""
    if any(is_plain(element) and element for element in command):
        return None
    for name, p in tiers:
        for model, what, variables in _samples(name, p, rule_vars, any("previous" in e for e in command)):
            try:
                if not render_argv(command, variables):
                    return f"model {model!r}, {what}" if model else what
            except RenderError:
                continue  # reported by the element's own check
    return None


def _model_without_models(loc: Loc, p: ProviderConfig, check: _Checker) -> None:
    """`{{ model }}` in a provider that declares no models fails every run that reaches it without one (as a
    fall-through tier, or by "route:NAME"). The older format's `{model}` keeps its old meaning."""
    if p.models:
        return
    for i, element in enumerate(p.command_template[1:], 1):  # a templated program has its own message
        if from_legacy(element) == element and "model" in (variables_of(element) or ()):
            header = ".".join(str(part) for part in loc)
            check.add((*loc, "command_template", i), "uses {{ model }} but the provider declares no models, so a "
                      "run that reaches it as a fall-through tier has no model to give; declare "
                      f"[{header}.models.ID] or take {{{{ model }}}} out")
            return


# --- pass 4: intake ----------------------------------------------------------------------------------------

def _intake_entries(cfg: Config, providers: Mapping[str, ProviderSpec], check: _Checker) -> None:
    """Entries of intake that could never take effect: a label given twice in different case (labels are read in
    any case, so one of them is dead), an empty label or specialization, an empty or repeated priority_numbers."""
    it = cfg.routing.intake
    loc: Loc = ("routing", "intake")
    for key, table in (("priority_labels", it.priority_labels), ("specialization_labels", it.specialization_labels),
                       ("specialization_keywords", it.specialization_keywords)):
        seen: dict[str, str] = {}
        for label in table:
            what = "specialization" if key == "specialization_keywords" else "label"
            if not label.strip():
                check.add((*loc, key, label), f"a {what} must not be empty")
            elif label.strip().lower() in seen:
                check.add((*loc, key, label), f'"{label}" is "{seen[label.strip().lower()]}" in another case, and '
                          f"{what}s are read in any case: keep one")
            seen.setdefault(label.strip().lower(), label)
    for label, spec in it.specialization_labels.items():
        if label.strip() and not spec.strip():
            check.add((*loc, "specialization_labels", label), "the specialization must not be empty")
    if not it.default_specialization.strip():
        check.add((*loc, "default_specialization"), "must not be empty")
    if not it.priority_numbers and "priority_numbers" in it.model_fields_set:
        check.add((*loc, "priority_numbers"), 'empty: list the priority of P0, P1, ... (e.g. ["critical", "high", '
                  '"normal", "low"]), or leave it out for that')
    for i, priority in enumerate(it.priority_numbers):
        if priority in it.priority_numbers[:i]:
            check.add((*loc, "priority_numbers", i), f'"{priority}" is already P{it.priority_numbers.index(priority)}'
                      "; each number names another priority")
    for where, scores in _score_tables(providers):
        for spec in scores:
            if not spec.strip():
                check.add((*where, spec), "a specialization must not be empty")


def _intake(cfg: Config, providers: Mapping[str, ProviderSpec], check: _Checker) -> IntakeSpec:
    it = cfg.routing.intake
    loc: Loc = ("routing", "intake")
    _intake_entries(cfg, providers, check)
    spec_labels: list[tuple[LabelSet, str]] = []
    for label, spec in it.specialization_labels.items():
        try:
            spec_labels.append((make_label_set([label]), spec.lower()))
        except ConditionError as exc:
            check.add((*loc, "specialization_labels", label), exc.message)
    keywords: list[tuple[str, tuple[str, ...]]] = []  # (specialization, its words), in file order
    for spec, words in it.specialization_keywords.items():
        cleaned = tuple(w.strip() for w in words if w.strip())
        if not cleaned:
            check.add((*loc, "specialization_keywords", spec), "give at least one keyword")
            continue
        # Case-insensitive, anchored at a word start only: "design" also fires on "designs" (adws.keywords).
        keywords.append((spec.lower(), cleaned))
    # A specialization that intake introduces is allowed (it falls back to `general` scores), and so is one a
    # score table names (a task may give it), but one a letter away from a known name is a typo that would
    # silently route elsewhere, or a score never read (`cod`, `fast_respons`): refuse it with a suggestion.
    introduced: list[tuple[Loc, str]] = [
        (("routing", "intake", "default_specialization"), it.default_specialization.lower())]
    introduced += [(("routing", "intake", "specialization_labels", label), spec.lower())
                   for label, spec in it.specialization_labels.items()]
    introduced += [(("routing", "intake", "specialization_keywords", spec), spec.lower())
                   for spec in it.specialization_keywords]
    # Scores are judged first, against SPEC.md's names and intake's; a refused one is then no name to judge
    # intake by. With [routing.intake] left out for its own problem, what it names is unknown: no judging.
    named = set(BASE_SPECIALIZATIONS) | {spec for _, spec in introduced}
    scored = set(BASE_SPECIALIZATIONS)
    for where, scores in _score_tables(providers):
        for spec in scores:
            if ("routing", "intake") not in check.defaulted and _near_miss((*where, spec), spec, named, check):
                check.refused_specializations.add(spec.lower())
            else:
                scored.add(spec)
    for table in check.left_out():  # what a provider left out for its own problem scores is still declared
        scored |= _score_names_as_written(table)
    for where, spec in introduced:
        # A label often names what it means ("docs" = "documents" means "docs"): such a name is the likelier fix.
        label = str(where[-1]) if where[-2] == "specialization_labels" else ""
        _near_miss(where, spec, scored, check, meant=re.split(r"[^a-z0-9_]+", label.lower().replace("-", "_")))
    known = scored | {spec for _, spec in introduced}
    return IntakeSpec(
        priority_labels={k.lower(): v for k, v in it.priority_labels.items()},
        priority_numbers=tuple(it.priority_numbers), default_priority=it.default_priority,
        specialization_labels=tuple(spec_labels),
        exact_specialization_labels=_exact_labels(spec_labels),
        keywords=KeywordMatcher(tuple(keywords)) if keywords else None,
        default_specialization=it.default_specialization.lower(), known_specializations=frozenset(known),
        chars_per_token=it.chars_per_token, override_label_prefix=it.override_label_prefix.lower(),
        force_attr=it.force_attr, retry_count_from_history=it.retry_count == "history",
        history_window_seconds=check.guard(
            (*loc, "history_window"), lambda: parse_duration(it.history_window, WINDOW_DAYS)) or 7 * 86400.0,
    )


def _near_miss(loc: Loc, spec: str, known: set[str], check: _Checker, meant: Iterable[str] = ()) -> bool:
    """Refuse a specialization that is not known but a typo of a known one (`is_typo`: "cod", "archtecture"); a
    name of one's own is allowed, even one that shares a known one's start ("codegen", "reasoner"). True when
    refused. `meant`: names the place suggests (`suggest`)."""
    hint = suggest_typo(spec, known, meant) if spec not in known else ""
    if hint:
        check.add(loc, f'unknown specialization "{spec}"{hint}; a new one needs a name that is not a near miss of a '
                  "known one")
    return bool(hint)


def _score_tables(providers: Mapping[str, ProviderSpec]) -> list[tuple[Loc, Mapping[str, int]]]:
    """(place, scores) of every `specializations` table of the providers and their models."""
    tables: list[tuple[Loc, Mapping[str, int]]] = []
    for name, p in providers.items():
        tables.append((("providers", name, "specializations"), p.scores))
        tables += [(("providers", name, "models", mid, "specializations"), m.scores) for mid, m in p.models.items()]
    return tables


def _score_names_as_written(table: Mapping[str, Any]) -> set[str]:
    """The specializations a provider table, as written, scores (its own and its models')."""
    owners: list[Any] = [table]
    models = table.get("models")
    owners += list(models.values()) if isinstance(models, dict) else []
    names: set[str] = set()
    for owner in owners:
        scores = owner.get("specializations") if isinstance(owner, dict) else None
        names |= {key for key in scores if isinstance(key, str)} if isinstance(scores, dict) else set()
    return names


def _exact_labels(spec_labels: list[tuple[LabelSet, str]]) -> dict[str, tuple[int, str]]:
    exact: dict[str, tuple[int, str]] = {}
    for order, (label_set, spec) in enumerate(spec_labels):
        for label in label_set.exact:
            exact.setdefault(label, (order, spec))
    return exact


# --- passes 5-6: chain, defaults, rules (chain and defaults sit below compile_config) ------------------

def _check_rule_vars(rules: list[RuleConfig], index: Sequence[int], providers: Mapping[str, ProviderSpec],
                     check: _Checker) -> None:
    """A rule's `vars` entry that no template reads has no effect: most likely a typo (`thinkin_budget`)."""
    if check.broken_templates:
        return  # what a broken template reads is unknown: the template's own problem is the one to fix
    read: set[str] = set()
    for p in providers.values():
        for source in (*p.command, *p.env.values(), *(v for a in p.accounts for v in a.env.values()), *p.verify,
                       *((p.prompt_suffix,) if p.prompt_suffix is not None else ())):
            read |= variables_of(source) or set()
    for table in check.left_out():
        # A provider left out for a problem elsewhere (its `need`, a quota) still has templates that read vars.
        left_out_reads = _reads_as_written(table)
        if left_out_reads is None:
            return  # its templates are part of its problem: what they would read is unknown
        read |= left_out_reads
    for i, rule in zip(index, rules, strict=True):
        own = (*(rule.verify or ()), *((rule.prompt_suffix,) if rule.prompt_suffix is not None else ()))
        reads = read.union(*(variables_of(source) or () for source in own))
        for name in rule.vars:
            if name not in reads:
                check.add(("routing", "rules", i, "vars", name),
                          f'no command template reads "{name}"{suggest(name, read)}, so it would have no effect')


def _reads_as_written(table: Mapping[str, Any]) -> set[str] | None:
    """The variables the templates of a provider table read, from the document (command_template, env, account
    env); None when one of them is missing (a provider always has a command) or is not a template that parses:
    then what the provider reads is unknown."""
    command = table.get("command_template")
    if isinstance(command, str):
        try:
            command = split_words(command)
        except ValueError:
            return None
    env = table.get("env", {})
    accounts = table.get("accounts", [])
    if not (isinstance(command, list) and isinstance(env, dict) and isinstance(accounts, list)
            and all(isinstance(a, dict) and isinstance(a.get("env", {}), dict) for a in accounts)):
        return None
    sources = [*command, *env.values(), *(v for a in accounts for v in a.get("env", {}).values())]
    read: set[str] = set()
    for source in sources:
        names = variables_of(from_legacy(source)) if isinstance(source, str) else None
        if names is None:
            return None
        read |= names
    return read


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


def _rule(i: int, r: RuleConfig, conditions: tuple[Condition, ...], providers: Mapping[str, ProviderSpec],
          known_specs: frozenset[str], configs: Mapping[str, ProviderConfig], check: _Checker) -> RuleSpec:
    loc: Loc = ("routing", "rules", i)
    # The rule's verify and prompt_suffix may run on any tier its plan reaches: each is rendered for every one.
    tiers = [(name, configs[name]) for name in providers if name in configs]
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
    chain = r.chain or []
    for j, tier in enumerate(chain):
        if not _check_provider(check, (*loc, "chain", j), tier, providers):
            continue
        if tier in chain[:j]:
            check.add((*loc, "chain", j), f'"{tier}" appears twice in the chain')
        elif tier == provider and (r.provider is not None or r.model is not None):
            check.add((*loc, "chain", j), f'"{tier}" is the rule\'s own provider, tried first: its chain lists the '
                      "tiers after it")
    if r.chain == [] and (r.provider is not None or r.model is not None):  # without a target: "has no target"
        check.add((*loc, "chain"), "empty: the rule would fall through to no tier; write `fallback = false` to try "
                  "only its target, or leave `chain` out to fall down routing.chain")
    # With [routing.intake] left out for its own problem, the specializations it introduces are unknown; one a
    # score table names that was refused as a typo is that table's problem.
    spec_cond = r.conditions.get("specialization") if ("routing", "intake") not in check.defaulted else None
    for value in [spec_cond] if isinstance(spec_cond, str) else spec_cond if isinstance(spec_cond, list) else []:
        if isinstance(value, str) and value.lower() not in known_specs | check.refused_specializations:
            check.add((*loc, "conditions", "specialization"),
                      f'unknown specialization "{value}"{suggest(value.lower(), known_specs)}; '
                      f"known: {', '.join(sorted(known_specs))}")
    return RuleSpec(
        name=r.name, priority=r.priority, order=i, enabled=r.enabled, description=r.description,
        conditions=conditions, raw_conditions=r.conditions, provider=provider, model=r.model, account=r.account,
        models=dict(r.models), chain=tuple(r.chain) if r.chain is not None else None, fallback=r.fallback,
        vars=dict(r.vars), workdir=r.workdir, tier_order=r.order, need=quota_load.need_spec(r.need),
        verify=_verify_templates(r.verify, (*loc, "verify"), tiers, r.vars, set(BUILTIN_VARIABLES) | set(r.vars),
                                 check) if r.verify is not None else None,
        prompt_suffix=_suffix_template(r.prompt_suffix, (*loc, "prompt_suffix"), tiers, r.vars,
                                       set(BUILTIN_VARIABLES) | set(r.vars), check),
    )


# --- pass 8: scenarios ------------------------------------------------------------------------------------

_TASK_FIELD = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])?): (.*)$", re.DOTALL)


def _scenarios(cfg: Config, index: Sequence[int], providers: Mapping[str, ProviderSpec],
               rule_names: Iterable[str] | None, check: _Checker) -> tuple[ScenarioSpec, ...]:
    names = None if rule_names is None else set(rule_names) | {"default", "override"}
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
        elif s.at is not None and (outside := time_problem(s.at)) is not None:  # a period around it must stay a date
            check.add((*loc, "at"), outside)
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
        if e.rule is not None and names is not None and e.rule not in names:
            check.add((*loc, "expect", "rule"), f'unknown rule "{e.rule}"{suggest(e.rule, names)}')
        for j, tier in enumerate(e.plan or ()):
            _check_provider(check, (*loc, "expect", "plan", j), tier, providers)
        out.append(ScenarioSpec(s.name, s.description, dict(s.task), s.at.isoformat() if s.at else None,
                                # model_dump(exclude_none=True), without building ExpectConfig's serializer
                                {name: list(v) if isinstance(v, list) else v for name, v in e if v is not None}))
    return tuple(out)


# --- pass 2: structure ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Validated:
    """The validated file, possibly with its broken parts left out (then `problems` says what they were)."""

    cfg: Config
    rule_index: tuple[int, ...]  # the position in the file of each rule in cfg.routing.rules
    scenario_index: tuple[int, ...]
    broken_providers: frozenset[str]
    defaulted: frozenset[Loc] = frozenset()  # settings left out for their problems: their defaults stand in


# The provider that stands in for the schema's "one provider at least" while a file whose every provider is broken
# is checked further. Only then is it added, when no provider of the file is left to collide with, and it is gone
# before anything reads the providers.
_STAND_IN = "\0"


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
    defaulted: set[Loc] = set()
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
                defaulted.add(tuple(loc[:2]))
            else:
                pruned.pop(loc[0], None)
                defaulted.add(tuple(loc[:1]))
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
    every_provider_broken = isinstance(pruned.get("providers"), dict) and not pruned["providers"] and bad_providers
    if every_provider_broken:
        # The schema wants one provider at least; the rest of the file is still checked with none.
        pruned["providers"] = {_STAND_IN: {"command_template": ["true"]}}
    try:
        cfg = Config.model_validate(pruned)
    except ValidationError:
        return None, problems  # nothing sound left to cross-check
    if every_provider_broken:
        cfg = cfg.model_copy(update={"providers": {}})
    return _Validated(cfg, tuple(rule_index), tuple(scenario_index), frozenset(bad_providers),
                      frozenset(defaulted)), problems


def _zone(name: str, loc: Loc, check: _Checker) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        hint = suggest(name, available_timezones())
        check.add(loc, f'unknown timezone "{name}"' + (hint or
                                                        ': use an IANA name such as "UTC" or "Europe/Berlin"'))
        return None


# --- all passes in order -----------------------------------------------------------------------------------

def compile_config(raw: dict[str, Any], source: str = "<string>", base_dir: str = ".") -> CompiledConfig:
    """The compiled configuration of a parsed TOML document; ConfigError listing every problem otherwise.
    Relative paths in the file (state, audit, run dir) are taken relative to `base_dir`."""
    check = _Checker(raw)
    _document_nul(raw, check)
    conditions = _document_conditions(raw, check)
    patterns = _document_patterns(raw, check)
    validated, structure_problems = _validate(raw)
    if validated is None:
        raise ConfigError([*structure_problems, *check.problems], source)
    cfg = validated.cfg
    check.broken_providers = validated.broken_providers
    check.defaulted = validated.defaulted
    routing = cfg.routing
    tz = _zone(routing.timezone, ("routing", "timezone"), check) or ZoneInfo("UTC")
    actions = {**DEFAULT_ACTIONS, **routing.actions}
    _success_actions(cfg, check)
    _provider_names(raw, check)
    providers = {name: _provider(name, p, tz, actions, patterns, check) for name, p in cfg.providers.items()}
    intake = _intake(cfg, providers, check)
    chain = _chain(cfg, providers, check)
    default_provider, default_model = _defaults(cfg, chain, providers, check)
    rules = _rules(cfg, validated.rule_index, conditions, providers, intake, check)
    breaker_cooldown = check.guard(("routing", "circuit_breaker", "cooldown"),
                                   lambda: parse_duration(routing.circuit_breaker.cooldown, COOLDOWN_DAYS))
    check.name_in(("state", "backend"), "state backend", cfg.state.backend, STORES)
    backend = STORES.get(cfg.state.backend)
    if backend is not None and ("state", "backend") not in check.defaulted:  # else the keys' backend is unknown
        for key in sorted(cfg.state.model_fields_set - {"backend", *backend.reads}):
            check.add(("state", key), f'not read by backend "{cfg.state.backend}" (it reads '
                      f"{', '.join(backend.reads) or 'nothing'}); remove it or change the backend")
        written = getattr(cfg.state, backend.setting, None)
        problem = None if backend.problem is None or written is None else backend.problem(written)
        if problem is not None:  # in words that show no password: the URL itself is not quoted
            check.add(("state", backend.setting), problem)
    # Rules left out for their own problems still exist: a scenario expecting one is not wrong for that. When
    # one has no readable name, or the whole array was left out, the names are unknown (None).
    written = _raw_list(raw, "routing", "rules")
    readable = all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in written) and not \
        {("routing",), ("routing", "rules")} & check.defaulted
    rule_names = {r["name"] for r in written} if readable else None
    scenarios = _scenarios(cfg, validated.scenario_index, providers, rule_names, check)
    unsafe = unsafe_run_root(str(Path(base_dir, os.path.expanduser(cfg.run.dir))))
    if unsafe is not None:  # adws prunes old runs there: it must be a directory of its own (adws.files)
        check.add(("run", "dir"), f'"{cfg.run.dir}" {unsafe}; point [run] dir at a directory of its own, '
                                  'e.g. ".adws/runs"')
    scoring = quota_load.scoring_spec(routing.scoring, providers, check)
    if structure_problems or check.problems:
        raise ConfigError([*structure_problems, *check.problems], source)
    assert backend is not None  # an unknown one is a problem above

    def resolve(path: str) -> str:
        return path if path == ":memory:" else str(Path(base_dir, os.path.expanduser(path)))

    r = routing
    return CompiledConfig(
        source=source, base_dir=base_dir, enabled=r.enabled, default_provider=default_provider,
        default_model=default_model, chain=chain, timezone=r.timezone, rules=rules, intake=intake,
        providers=providers, actions=actions,
        retry=RetrySpec(r.retry.max_retries, r.retry.backoff_seconds, r.retry.backoff_factor,
                        r.retry.max_backoff_seconds),
        breaker=BreakerSpec(r.circuit_breaker.failure_threshold, breaker_cooldown or 600.0,
                            frozenset(r.circuit_breaker.counts)),
        state_backend=cfg.state.backend, state_path=getattr(cfg.state, backend.setting),
        audit_enabled=cfg.audit.enabled,
        audit_path=resolve(cfg.audit.path), audit_include_prompt=cfg.audit.include_prompt,
        run_dir=resolve(cfg.run.dir), output_cap_bytes=cfg.run.output_cap_bytes, keep_runs=cfg.run.keep_runs,
        scenarios=scenarios, raw=raw, workdir_policy=cfg.run.workdir, scoring=scoring,
        state_options={key: getattr(cfg.state, key) for key in backend.reads if key != backend.setting},
    )


def _chain(cfg: Config, providers: Mapping[str, ProviderSpec], check: _Checker) -> tuple[str, ...]:
    """The tier order: `routing.chain`, else the providers in file order."""
    chain = cfg.routing.chain
    if not chain and "chain" in cfg.routing.model_fields_set:  # else `chain = []` would mean file order silently
        check.add(("routing", "chain"), "empty: leave `chain` out for the providers in file order, or list the "
                  "tiers in their order")
    for i, tier in enumerate(chain):
        _check_provider(check, ("routing", "chain", i), tier, providers)
        if tier in chain[:i]:
            check.add(("routing", "chain", i), f'"{tier}" appears twice in the chain')
    return tuple(chain) or tuple(providers)


def _rules(cfg: Config, index: Sequence[int], conditions: Mapping[int, tuple[Condition, ...]],
           providers: Mapping[str, ProviderSpec], intake: IntakeSpec, check: _Checker) -> tuple[RuleSpec, ...]:
    """The valid rules, sorted highest priority first (equal priorities keep file order)."""
    rules = []
    seen: dict[str, int] = {}
    for i, rule_cfg in zip(index, cfg.routing.rules, strict=True):
        name = rule_cfg.name
        if name in seen:
            check.add(("routing", "rules", i, "name"),
                      f'duplicate rule name "{name}" (first at routing.rules[{seen[name]}])')
        seen.setdefault(name, i)
        rules.append(_rule(i, rule_cfg, conditions.get(i, ()), providers, intake.known_specializations,
                           cfg.providers, check))
    rules.sort(key=lambda rule: (-rule.priority, rule.order))
    _check_rule_vars(cfg.routing.rules, index, providers, check)
    _render_with_rule_vars(cfg, index, check)
    return tuple(rules)


def _render_with_rule_vars(cfg: Config, index: Sequence[int], check: _Checker) -> None:
    """A rule's `vars` reach every tier of its plan: each template must still render with them (a string where
    the template compares a number fails every run of that rule)."""
    if check.broken_templates:
        return  # the broken template is the problem to report
    for i, rule in zip(index, cfg.routing.rules, strict=True):
        if not rule.vars:
            continue
        for name, p in cfg.providers.items():
            command = tuple(from_legacy(element) for element in p.command_template)
            sources = [(source, False) for _, source in _template_sources(("providers", name), p, command)]
            sources += [(source, False) for source in p.verify if rule.verify is None]
            sources += [(p.prompt_suffix, True)] if p.prompt_suffix is not None and rule.prompt_suffix is None else []
            for source, suffix in sources:
                error = _sample_render(source, name, p, rule.vars, suffix)
                if error:
                    check.add(("routing", "rules", i, "vars"), f'provider "{name}": {error}')
                    break


def _defaults(cfg: Config, chain: tuple[str, ...], providers: Mapping[str, ProviderSpec],
              check: _Checker) -> tuple[str, str | None]:
    """The default target: `[routing]` default_provider/default_model, else the older `[llm]` table, else the
    first tier. Both tables are checked even where one shadows the other: a typo must not wait to surface."""
    routing, llm = cfg.routing, cfg.llm or LLMConfig.model_construct()  # the defaults, without a validator
    # No chain: every provider was left out for its own problems, and the config is refused whatever this is.
    default_provider = routing.default_provider or llm.provider or (chain[0] if chain else "")
    if routing.default_provider is not None:
        _check_provider(check, ("routing", "default_provider"), routing.default_provider, providers)
    if llm.provider is not None:
        _check_provider(check, ("llm", "provider"), llm.provider, providers)
    # [llm] model_default belongs to [llm] provider; it is the default model only where that is the default.
    llm_provider = llm.provider or default_provider
    # A setting left out for its own problem (a default_provider that is not a string, a broken chain) leaves
    # the provider a default model belongs to unknown: the one standing in is not the one it was written for.
    left_out = check.defaulted
    llm_unknown = bool({("llm",), ("llm", "provider")} & left_out)
    first_tier_unknown = llm.provider is None and ("routing", "chain") in left_out
    default_unknown = ("routing", "default_provider") in left_out or (
        routing.default_provider is None and (llm_unknown or first_tier_unknown))
    llm_provider_unknown = llm_unknown or (llm.provider is None and default_unknown)
    if llm.model_default is not None and llm_provider in providers and not llm_provider_unknown:
        _check_model(check, ("llm", "model_default"), providers[llm_provider], llm.model_default)
    if routing.default_model is not None and default_provider in providers and not default_unknown:
        _check_model(check, ("routing", "default_model"), providers[default_provider], routing.default_model)
    legacy_model = llm.model_default if llm_provider == default_provider else None
    return default_provider, routing.default_model or legacy_model
