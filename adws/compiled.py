"""The compiled configuration: plain, immutable objects built once at load from the validated file.

Routing reads only these (never the raw TOML or the pydantic models), so a decision never re-parses config.
They hold no pydantic objects and no compiled Jinja templates, which keeps them cheap to copy and to cache;
what is compiled once (conditions, failure patterns) is carried here so nothing downstream compiles it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adws.attempt import OutcomeClass
from adws.classify import Pattern
from adws.conditions import Condition, LabelSet
from adws.dataclass_cache import dataclass, field
from adws.keywords import KeywordMatcher
from adws.need import NeedSpec
from adws.scoring import ScoringSpec


def fit_score(specialization: str, *tables: Mapping[str, int]) -> int:
    """A specialization's score from the first table that has it, else the first table's `general`, else 0
    (tables: a model's own scores, then its provider's)."""
    for table in tables:
        if specialization in table:
            return table[specialization]
    for table in tables:
        if "general" in table:
            return table["general"]
    return 0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    context_window: int
    latency_ms: int | None
    cost_per_1k_tokens: float
    scores: Mapping[str, int]
    vars: Mapping[str, Any]

    def score(self, specialization: str, fallback: Mapping[str, int]) -> int:
        """Fit for a specialization: the model's own score, else the provider's, else their `general`."""
        return fit_score(specialization, self.scores, fallback)


@dataclass(frozen=True, slots=True)
class QuotaSpec:
    tokens: int | None
    requests: int | None
    cost_usd: float | None
    reset: str | None  # cron expression, evaluated in `timezone`
    timezone: str
    window_seconds: float | None
    hard_block_percent: float
    alert_percent: tuple[float, ...]
    # Named pools selected by model globs, each counted on its own (see adws.pools). With pools, the limits
    # above (if any) govern the models no pool selects; without any, those models are not metered.
    pools: tuple[PoolSpec, ...] = ()

    @property
    def limited(self) -> bool:
        return self.tokens is not None or self.requests is not None or self.cost_usd is not None


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """`[providers.NAME.quota.pools.P]`: a share of an account's quota that only some models draw on."""

    name: str
    models: tuple[str, ...]  # globs over model ids, matched case-insensitively
    quota: QuotaSpec  # its own limits and period; hard block and alerts inherited from the parent quota


IMPLICIT_ACCOUNT = "default"  # the one account of a provider that declares none: its name in state and ADWS_ACCOUNT


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """An account as declared in `[[providers.NAME.accounts]]` (see `Account` for the resolved form)."""

    name: str
    enabled: bool
    env: Mapping[str, str]
    api_key_env: str | None
    quota: QuotaSpec | None
    usage_command: tuple[str, ...] = ()  # argv templates; the provider's when empty


@dataclass(frozen=True, slots=True)
class Account:
    """An account a provider runs under, resolved at load: what routing checks and execution uses.

    Every provider has at least one: a provider without `[[accounts]]` runs under its implicit account,
    named `default` (IMPLICIT_ACCOUNT) in the state store, `adws quota` and ADWS_ACCOUNT, and not shown in
    plans and results (`shown` is None).
    """

    name: str
    position: int  # in the file; 0 for the implicit account
    enabled: bool
    implicit: bool
    env: Mapping[str, str]  # Jinja sources: the provider's `env`, then the account's over it
    key_env: str | None  # the variable that must be set for the account to run (its own key, else the
    #                      provider's where the provider requires one); None when nothing is required
    key_target: str | None  # where the CLI looks for the key: the account's own key is copied there for a run
    secret_vars: tuple[str, ...]  # variables whose values are redacted from what is recorded
    quota: QuotaSpec | None  # the account's own quota, else the provider's

    @property
    def shown(self) -> str | None:
        """The name in plans, attempts and results: None for the implicit account."""
        return None if self.implicit else self.name


def resolve_accounts(declared: tuple[AccountSpec, ...], env: Mapping[str, str], api_key_env: str | None,
                     requires_api_key: bool, quota: QuotaSpec | None) -> tuple[Account, ...]:
    """Every account of one provider, resolved once: the one place that decides which key variable applies."""
    required = api_key_env if requires_api_key else None
    if not declared:
        secret: tuple[str, ...] = (api_key_env,) if api_key_env else ()
        return (Account(IMPLICIT_ACCOUNT, 0, True, True, dict(env), required, None, secret, quota),)
    out = []
    for position, acc in enumerate(declared):
        own = acc.api_key_env
        secret = tuple(dict.fromkeys(v for v in (api_key_env, own) if v))
        out.append(Account(acc.name, position, acc.enabled, False, {**env, **acc.env}, own or required,
                           api_key_env if own else None, secret, acc.quota or quota))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    enabled: bool
    description: str
    command: tuple[str, ...]  # Jinja sources, one per argv element
    executable: str
    uses_prompt_file: bool  # a template names {{ prompt_file }}: only then is the prompt written to disk
    uses_model: bool  # a command element reads {{ model }}
    api_key_env: str | None
    requires_api_key: bool
    env: Mapping[str, str]
    timeout: float
    kill_grace: float
    prompt: str
    output_format: str
    max_concurrency: int | None
    account_strategy: str
    scores: Mapping[str, int]
    models: Mapping[str, ModelSpec]  # in file order
    accounts: tuple[AccountSpec, ...]
    quota: QuotaSpec | None
    failure_patterns: tuple[Pattern, ...]  # the provider's own, then the built-in ones: what classify reads
    actions: Mapping[OutcomeClass, str]  # every outcome class: the provider's, else [routing.actions], else default
    vars: Mapping[str, Any]
    need: NeedSpec | None = None  # expected need per task (adws.need); None: only the hard block applies
    usage_command: tuple[str, ...] = ()  # argv templates printing observed usage as JSON (adws.observe)
    usage_sync_seconds: float | None = None  # run usage_command before routing at most this often
    wait_for_reset: float = 0.0  # seconds: a limit resetting sooner is waited out on the same account
    idle_timeout: float | None = None  # seconds without output before the attempt ends as a timeout
    verify: tuple[str, ...] = ()  # argv templates (adws.verify)
    verify_timeout: float = 600.0
    prompt_suffix: str | None = None  # template added to the prompt after a failed attempt (`previous`)
    # Resolved from the fields above when the spec is built (at load), never written by hand:
    runs_as: tuple[Account, ...] = field(init=False, repr=False, compare=False)  # the implicit one included
    key_vars: tuple[str, ...] = field(init=False, repr=False, compare=False)  # every key variable that matters
    _by_name: Mapping[str, Account] = field(init=False, repr=False, compare=False)
    # Some account's quota is split into pools, so which model runs decides which quota counts.
    pooled: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        runs_as = resolve_accounts(self.accounts, self.env, self.api_key_env, self.requires_api_key, self.quota)
        key_vars = [a.key_env for a in runs_as if a.key_env]
        if self.requires_api_key and self.api_key_env:
            key_vars.append(self.api_key_env)  # accounts with keys of their own may leave it unset
        object.__setattr__(self, "runs_as", runs_as)
        object.__setattr__(self, "key_vars", tuple(dict.fromkeys(key_vars)))
        object.__setattr__(self, "_by_name", {a.name: a for a in runs_as})
        object.__setattr__(self, "pooled", any(a.quota is not None and a.quota.pools for a in runs_as))

    def account(self, name: str) -> AccountSpec | None:
        """A declared account by name (the implicit one is not declared)."""
        for acc in self.accounts:
            if acc.name == name:
                return acc
        return None

    def run_account(self, name: str | None) -> Account:
        """The resolved account by name; None (a plan step without accounts) is the implicit one.

        Raises KeyError for a name the provider does not run under.
        """
        if name is None:
            if not self.runs_as[0].implicit:
                raise KeyError(f"provider {self.name} declares accounts: name one")
            return self.runs_as[0]
        return self._by_name[name]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str
    priority: int
    order: int  # position in the file; breaks ties between equal priorities
    enabled: bool
    description: str
    conditions: tuple[Condition, ...]
    raw_conditions: Mapping[str, Any]  # as written, for display
    provider: str | None
    model: str | None
    account: str | None
    models: Mapping[str, str]
    chain: tuple[str, ...] | None
    fallback: bool
    vars: Mapping[str, Any]
    verify: tuple[str, ...] | None = None  # None: the provider's
    workdir: str | None = None  # None: [run] workdir
    prompt_suffix: str | None = None  # None: the provider's
    tier_order: str | None = None  # `order` in the file: "chain" | "by_score" | "cheapest"; None: routing.scoring.order
    need: NeedSpec | None = None  # overrides the providers' expected need for this rule's decisions


@dataclass(frozen=True, slots=True)
class IntakeSpec:
    priority_labels: Mapping[str, str]  # lowercased label -> priority
    priority_numbers: tuple[str, ...]
    default_priority: str | None  # None: a task without a priority has none
    specialization_labels: tuple[tuple[LabelSet, str], ...]  # declaration order; the first that matches wins
    exact_specialization_labels: Mapping[str, tuple[int, str]]  # label -> (declaration order, specialization)
    keywords: KeywordMatcher | None  # specialization_keywords, read in one pass (see adws.keywords)
    default_specialization: str
    known_specializations: frozenset[str]
    chars_per_token: float
    override_label_prefix: str
    force_attr: str
    retry_count_from_history: bool = False
    history_window_seconds: float = 7 * 86400.0
    # Derived when the spec is built, never written by hand: the entries of specialization_labels that have globs,
    # as (declaration order, label set, specialization). Exact labels are found by lookup; only these are tested
    # one by one, so a task's labels are not held against every entry on each decision.
    glob_specialization_labels: tuple[tuple[int, LabelSet, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "glob_specialization_labels", tuple(
            (order, label_set, spec) for order, (label_set, spec) in enumerate(self.specialization_labels)
            if label_set.globs))


@dataclass(frozen=True, slots=True)
class RetrySpec:
    max_retries: int
    backoff_seconds: float
    backoff_factor: float
    max_backoff_seconds: float


@dataclass(frozen=True, slots=True)
class BreakerSpec:
    failure_threshold: int
    cooldown_seconds: float
    counts: frozenset[OutcomeClass]


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    name: str
    description: str
    task: Mapping[str, Any]
    at: str | None  # ISO 8601 as written
    expect: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CompiledConfig:
    source: str  # path of the file, for messages
    base_dir: str  # relative paths in the file are relative to this
    enabled: bool
    default_provider: str
    default_model: str | None
    chain: tuple[str, ...]
    timezone: str
    rules: tuple[RuleSpec, ...]  # sorted: priority desc, then file order
    intake: IntakeSpec
    providers: Mapping[str, ProviderSpec]
    actions: Mapping[OutcomeClass, str]
    retry: RetrySpec
    breaker: BreakerSpec
    state_backend: str
    state_path: str | None  # the backend's location as written (`[state] path`; `url` for Redis): it locates it
    #                         (adws.state.open_configured); None when not given (ADWS_STATE_URL must be)
    audit_enabled: bool
    audit_path: str
    audit_include_prompt: bool
    run_dir: str
    output_cap_bytes: int
    keep_runs: int
    scenarios: tuple[ScenarioSpec, ...]
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)  # the parsed TOML, for tools
    scoring: ScoringSpec = field(default_factory=ScoringSpec)
    state_options: Mapping[str, Any] = field(default_factory=dict)  # the backend's other `[state]` keys
    workdir_policy: str = "keep"  # [run] workdir (adws.workdir.POLICIES)


def key_variables(config: CompiledConfig) -> list[str]:
    """Every variable the config names as a key (`api_key_env` of providers and accounts), in file order: the
    values adws redacts besides those of secret-looking names (adws.redact.secret_values)."""
    return list(dict.fromkeys(n for p in config.providers.values() for a in p.runs_as for n in a.secret_vars))
