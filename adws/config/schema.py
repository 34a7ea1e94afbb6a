"""The shape of config.toml, as pydantic models; `adws schema` prints them as JSON Schema.

Only structure and single-value checks live here. Checks that need the whole file (a rule naming a provider,
a template using a variable, condition operators) are in `adws.config.load`, so that every problem in a file can
be reported at once with its place. Names that come from a registry (output formats, account strategies, state
backends) are checked there against the registry and appear here as JSON Schema enums taken from the same
registry, so the two cannot disagree. Every number has bounds: nothing `adws check` accepts overflows at run
time (`timeout = inf`, `1e12`, `chars_per_token = 1e-320`).

Adding a key is one field in one model below (with its bounds and description); the JSON Schema follows.
"""

# No `from __future__ import annotations` here, unlike the rest of adws: pydantic would then evaluate every
# field's annotation from its text (a compile and an eval each), about 11 M instructions of the first
# `adws route` after a config edit. Validators return `Self` for the same reason (a class cannot name itself
# in its own body).
import re
import shlex
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from adws.attempt import OutcomeClass
from adws.conditions import conditions_schema
from adws.durations import UNITS
from adws.scoring import MAX_WEIGHT
from adws.state import STORES
from adws.state.base import RUNS_KEPT
from adws.strategies import STRATEGIES

# The keys of adws.parsers.PARSERS, in its order (tests/config/test_config.py checks they are the same): named
# here so that validating a config does not import every parser (their regexes cost more than the config's
# own models).
OUTPUT_FORMATS: tuple[str, ...] = ("claude-stream-json", "claude-json", "copilot-json", "opencode-json",
                                   "gemini-json", "gemini-stream-json", "cline-json", "codex-json", "text")
PRIORITIES: tuple[str, ...] = ("critical", "high", "normal", "low")  # highest first
Priority = Literal["critical", "high", "normal", "low"]
Action = Literal["next_account", "next_tier", "retry", "stop"]
WorkdirPolicy = Literal["keep", "reset", "worktree"]  # adws.workdir.POLICIES
PromptMode = Literal["stdin", "arg", "file"]
Scalar = str | int | float | bool
# Outcome classes are written as strings; strict mode alone would demand enum instances.
Outcome = Annotated[OutcomeClass, Strict(False)]
Score = Annotated[int, Field(ge=0, le=100)]
# Bounds for times in seconds: long enough for any agent run, short enough that a date plus it stays a date.
DAY = 86_400.0
WEEK = 7 * DAY
# Bounds of the duration keys (strings such as "5h", read by adws.quota.parse_window), in days: a quota period or
# the audit history adws looks back over at most a year, a breaker's cooldown or a usage sync interval at most a
# month. `adws check` refuses a longer one; nothing accepted overflows a date it is added to.
WINDOW_DAYS = 366
COOLDOWN_DAYS = 30


def _duration(days: int, what: str, example: str) -> dict[str, Any]:
    """Field options of a duration key of at most `days` days: its description, and a JSON Schema pattern of the
    form parse_window reads, each unit with no more digits than the bound needs (the exact bound, a sum over
    the units, is `adws check`'s)."""
    most = days * 86_400
    units = "".join(f"(?:0*\\d{{1,{len(str(most // seconds))}}}{unit})?" for unit, seconds in UNITS)
    return {"description": f'{what}, e.g. "{example}": numbers with units w, d, h, m, s in that order; at most '
            f"{days} days ({days}d).",
            "json_schema_extra": {"pattern": f"^\\s*(?=[^\\s]*[1-9])(?:{units})\\s*$"}}


def _enum(names: Any) -> dict[str, Any]:
    """A string field whose value must be a registry key: an enum in the JSON Schema (load checks the same
    registry with a "did you mean")."""
    return {"json_schema_extra": {"enum": list(names)}}


def _empty_list() -> list[Any]:
    """The `default_factory` of list fields. Not `list` itself: pydantic reads every factory's signature when it
    builds a validator, and a builtin's is parsed from its text by the tokenizer, whose regexes are compiled on
    first use (about 15 M instructions of the first `adws route` after a config edit)."""
    return []


class StrictModel(BaseModel):
    # extra="forbid" is what turns `enabeld = true` into an error instead of a silently ignored key.
    # strict: TOML has types, so `enabled = "yes"` or `timeout = "30"` is a mistake to report, not to coerce.
    # allow_inf_nan=False: `timeout = inf` or `nan` is refused here rather than overflowing a date at run time.
    # defer_build: a model's validator is built when first used, not at import. Validating `Config` builds one
    # validator holding every model inside it; built one by one at import, each model's schema was made twice
    # (its own, and again inside Config's). So a table's default is `Model.model_construct` (the defaults as
    # they are, which every validator accepts; tests/config check it), not `Model()`: that would build
    # the model's own validator just to fill in defaults.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True, allow_inf_nan=False, defer_build=True)


def _array_or_words(schema: dict[str, Any]) -> None:
    """JSON Schema of command_template: an array of strings, or the older format's one string."""
    array = {key: schema.pop(key) for key in ("type", "items", "minItems") if key in schema}
    schema["anyOf"] = [array, {"type": "string", "minLength": 1}]


# A Jinja tag: an expression, a statement or a comment, spaces and quotes inside it included.
_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_HELD = re.compile("\ue000(\\d+)\ue001")  # a tag held out of the split (private-use characters around its number)


def split_words(value: Any) -> Any:
    """Older configs wrote `command_template` as one string: it is split into words as a shell would split them
    (shlex, POSIX rules; it is never given to one), except that a Jinja tag is kept whole, spaces and quotes
    inside it included: `"ollama run {{ model }}"` is the three words ollama, run, {{ model }}, and
    `"--v={{ 'hi' if x else 'lo' }}"` one. ValueError for an unclosed quote."""
    if not isinstance(value, str):
        return value
    tags: list[str] = []

    def hold(tag: re.Match[str]) -> str:
        tags.append(tag.group())
        return f"\ue000{len(tags) - 1}\ue001"

    held = value if "\ue000" in value else _JINJA_TAG.sub(hold, value)
    try:
        words = shlex.split(held)
    except ValueError as exc:
        raise ValueError(f'cannot split "{value}" into words ({exc}); write the command as an array with one '
                         "string per argument") from None
    if not tags:  # nothing held (none, or the text holds the marker character itself): the words as split
        return words
    return [_HELD.sub(lambda held_tag: tags[int(held_tag.group(1))], word) for word in words]


def cut_tag(word: str) -> bool:
    """Whether a word holds a piece of a Jinja tag (`{{`, `model }}`): what splitting at an unclosed tag leaves."""
    rest = _JINJA_TAG.sub("", word)
    return any(mark in rest for mark in ("{{", "{%", "{#", "}}", "%}", "#}"))


class IntakeConfig(StrictModel):
    """How task input becomes priority, specialization and a token estimate."""

    priority_labels: dict[str, Priority] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "priority:p0": "critical",
            "priority:p1": "high",
            "priority:p2": "normal",
            "priority:p3": "low",
            "priority:critical": "critical",
            "priority:high": "high",
            "priority:normal": "normal",
            "priority:low": "low",
        },
        description="Label (case-insensitive) -> priority. The highest priority among a task's labels wins.",
    )
    priority_numbers: list[Priority] = Field(
        default_factory=lambda: ["critical", "high", "normal", "low"],  # type: ignore[arg-type]
        description="An integer priority N on a task means priority_numbers[N] (P0 = critical).",
    )
    default_priority: Priority | None = Field(
        None, description="Priority of a task that has none; unset: it has none and matches no priority condition."
    )
    specialization_labels: dict[str, str] = Field(
        default_factory=dict, description="Label (case-insensitive, globs allowed) -> specialization."
    )
    specialization_keywords: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Specialization -> words or phrases looked for in the title and body when no label decides.",
    )
    default_specialization: str = "general"
    chars_per_token: float = Field(4.0, ge=0.1, le=1000, description="Used to estimate context_tokens when not given.")
    retry_count: Literal["task", "history"] = Field(
        "task", description='"history": a task without retry_count gets the number of its failed runs in the '
        "audit log within history_window.")
    history_window: str = Field("7d", **_duration(WINDOW_DAYS, 'How far back retry_count = "history" looks', "7d"))
    override_label_prefix: str = Field(
        "route:", description='A label "route:<provider>[/<model>]" forces the target. "" disables.'
    )
    force_attr: str = Field("force", description='attrs.<force_attr> = "<provider>[/<model>]". "" disables.')


class RetryConfig(StrictModel):
    max_retries: int = Field(1, ge=0, le=10, description="Retries of the same target for the `retry` action.")
    backoff_seconds: float = Field(5.0, ge=0, le=DAY, description="Seconds before the first retry.")
    backoff_factor: float = Field(2.0, ge=1, le=100, description="Each further retry waits this much longer.")
    max_backoff_seconds: float = Field(120.0, ge=0, le=DAY, description="No wait is longer than this.")


class BreakerConfig(StrictModel):
    failure_threshold: int = Field(3, ge=1, le=1000, description="Consecutive infrastructure failures that open it.")
    cooldown: str = Field("10m", **_duration(COOLDOWN_DAYS, "How long it stays open before one probe", "10m"))
    counts: list[Outcome] = Field(
        default_factory=lambda: [OutcomeClass.CRASHED, OutcomeClass.TIMEOUT, OutcomeClass.UNAVAILABLE],
        description="Outcome classes that count as infrastructure failures.",
    )


class NeedConfig(StrictModel):
    """Expected need of a task (tokens): a fixed figure, a multiple of context_tokens, or learned (adws.need)."""

    tokens: int | None = Field(None, gt=0, le=1_000_000_000, description="A fixed figure.")
    context_multiple: float | None = Field(None, gt=0, le=1000, description="Need = this × the task's context_tokens.")
    learned_runs: int | None = Field(None, ge=1, json_schema_extra={"maximum": RUNS_KEPT},
                                     description="Median of this many recent runs of the same provider and "
                                     "specialization; tokens/context_multiple until min_runs exist.")
    min_runs: int = Field(5, ge=1, le=RUNS_KEPT)
    margin_percent: float = Field(0.0, ge=0, le=1000, description="Added to the need before the fit test.")

    @field_validator("learned_runs")
    @classmethod
    def _runs_kept(cls, value: int | None) -> int | None:
        # Not Field(le=...): the bare bound would not say why. Every backend keeps the newest RUNS_KEPT runs.
        if value is not None and value > RUNS_KEPT:
            raise ValueError(f"must be <= {RUNS_KEPT}, got {value}: the state store keeps the newest "
                             f"{RUNS_KEPT:,} successful runs per provider and specialization")
        return value

    @model_validator(mode="after")
    def _one_basis(self) -> Self:
        if self.tokens is None and self.context_multiple is None and self.learned_runs is None:
            raise ValueError("give `tokens`, `context_multiple` or `learned_runs`")
        if self.tokens is not None and self.context_multiple is not None:
            raise ValueError("give `tokens` (a fixed figure) or `context_multiple`, not both")
        if self.learned_runs is not None and self.min_runs > self.learned_runs:
            raise ValueError(f"min_runs ({self.min_runs}) cannot exceed learned_runs ({self.learned_runs})")
        return self


TierOrder = Literal["chain", "by_score", "cheapest"]


class WeightsConfig(StrictModel):
    """Relative weights of the tier score's components, each 0 to adws.scoring.MAX_WEIGHT (1000)."""

    quota: float = Field(0.4, ge=0, le=MAX_WEIGHT)
    latency: float = Field(0.3, ge=0, le=MAX_WEIGHT)
    fit: float = Field(0.3, ge=0, le=MAX_WEIGHT)
    cost: float = Field(0.0, ge=0, le=MAX_WEIGHT)

    @model_validator(mode="after")
    def _some_weight(self) -> Self:
        if not (self.quota or self.latency or self.fit or self.cost):
            raise ValueError("at least one weight must be > 0")
        return self


class ScoringConfig(WeightsConfig):
    """`[routing.scoring]`: weights of the tier score, per-provider overrides, the default tier order."""

    order: TierOrder = Field("chain", description="Tier order of decisions whose rule gives none.")
    providers: dict[str, WeightsConfig] = Field(default_factory=dict, description="Per-provider weights.")


class RuleConfig(StrictModel):
    name: str = Field(min_length=1)
    priority: int = Field(50, ge=-1_000_000, le=1_000_000,
                          description="Higher is tried first; equal priorities keep file order.")
    enabled: bool = True
    description: str = ""
    conditions: dict[str, Any] = Field(default_factory=dict, json_schema_extra=conditions_schema())
    provider: str | None = None
    model: str | None = None
    account: str | None = None
    models: dict[str, str] = Field(default_factory=dict, description="Per-tier model choice: provider -> model.")
    chain: list[str] | None = Field(None, description="This rule's own fall-through order after its target.")
    fallback: bool = Field(True, description="false: only the target is tried.")
    vars: dict[str, Scalar] = Field(default_factory=dict, description="Extra command-template variables.")
    verify: list[str] | None = Field(None, description="Argv templates checking a successful attempt's work.")
    workdir: WorkdirPolicy | None = Field(None, description="This rule's [run] workdir policy.")
    prompt_suffix: str | None = Field(None, description="Template added to the prompt after a failed attempt.")
    order: TierOrder | None = Field(None, description='"chain", "by_score" or "cheapest"; default routing.scoring.')
    need: NeedConfig | None = Field(None, description="Expected need for this rule's tasks (overrides providers').")


class RoutingConfig(StrictModel):
    enabled: bool = True
    default_provider: str | None = None
    default_model: str | None = None
    chain: list[str] = Field(default_factory=_empty_list, description="Tier order. Empty: providers in file order.")
    timezone: str = "UTC"
    rules: list[RuleConfig] = Field(default_factory=_empty_list)
    intake: IntakeConfig = Field(default_factory=IntakeConfig.model_construct)
    actions: dict[Outcome, Action] = Field(default_factory=dict, description="Outcome class -> action.")
    retry: RetryConfig = Field(default_factory=RetryConfig.model_construct)
    circuit_breaker: BreakerConfig = Field(default_factory=BreakerConfig.model_construct)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig.model_construct)


class ModelConfig(StrictModel):
    context_window: int = Field(gt=0, le=1_000_000_000, description="Tokens the model holds.")
    latency_ms: int | None = Field(None, ge=0, le=3_600_000)
    cost_per_1k_tokens: float = Field(0.0, ge=0, le=1_000_000, description="Money per 1,000 tokens.")
    specializations: dict[str, Score] = Field(default_factory=dict, description="Fit per specialization, 0-100.")
    vars: dict[str, Scalar] = Field(default_factory=dict)
    description: str = ""


# Alert thresholds, each within (0, 100] (adws.config.load says so with the place of the one that is not).
_PERCENTS: dict[str, Any] = {"json_schema_extra": {"items": {"type": "number", "exclusiveMinimum": 0,
                                                             "maximum": 100}}}


class PoolConfig(StrictModel):
    """`[providers.NAME.quota.pools.P]`: a share of the quota drawn on only by the models its globs select."""

    models: list[str] = Field(min_length=1, description='Globs over model ids, e.g. ["claude-*"].')
    tokens: int | None = Field(None, gt=0, le=10**15, description="Tokens (input + output) per period.")
    requests: int | None = Field(None, gt=0, le=10**12, description="Requests (attempts) per period.")
    cost_usd: float | None = Field(None, gt=0, le=10**12, description="Money per period.")
    reset: str | None = None
    window: str | None = Field(None, **_duration(WINDOW_DAYS, "Rolling window instead of a reset", "5h"))
    timezone: str | None = None
    hard_block_percent: float | None = Field(None, gt=0, le=100, description="Default: the quota's.")
    alert_percent: list[float] | None = Field(None, description="Default: the quota's.", **_PERCENTS)

    @model_validator(mode="after")
    def _limits_and_period(self) -> Self:
        _check_period(self.reset, self.window, self.tokens, self.requests, self.cost_usd, required=True)
        return self


def _check_period(reset: str | None, window: str | None, *limits: float | None, required: bool) -> None:
    if reset is not None and window is not None:
        raise ValueError("give `reset` (a cron expression) or `window` (a rolling period), not both")
    if all(limit is None for limit in limits):
        if required:
            raise ValueError("give at least one limit: `tokens`, `requests` or `cost_usd`")
        if reset is not None or window is not None:
            raise ValueError("a period without a limit limits nothing: give `tokens`, `requests` or `cost_usd`")
        return
    if reset is None and window is None:
        raise ValueError('the quota needs a period: give `reset` (a cron expression such as "0 0 * * 0") '
                         'or `window` (a rolling period such as "5h")')


class QuotaConfig(StrictModel):
    tokens: int | None = Field(None, gt=0, le=10**15, description="Tokens (input + output) per period.")
    requests: int | None = Field(None, gt=0, le=10**12, description="Requests (attempts) per period.")
    cost_usd: float | None = Field(None, gt=0, le=10**12, description="Money per period, where models have a price.")
    reset: str | None = Field(None, description='Cron expression of the period reset, e.g. "0 0 * * 0".')
    window: str | None = Field(None, **_duration(WINDOW_DAYS, "Rolling window instead of a reset", "5h"))
    timezone: str | None = Field(None, description="Timezone of `reset`; default: routing.timezone.")
    hard_block_percent: float = Field(95.0, gt=0, le=100)
    alert_percent: list[float] = Field(default_factory=lambda: [80.0, 95.0], **_PERCENTS)
    pools: dict[str, PoolConfig] = Field(default_factory=dict, description="Named pools selected by model globs.")

    @model_validator(mode="after")
    def _one_period(self) -> Self:
        # With pools, the quota's own limits are optional: they govern the models no pool selects.
        _check_period(self.reset, self.window, self.tokens, self.requests, self.cost_usd, required=not self.pools)
        return self


class AccountConfig(StrictModel):
    name: str = Field(min_length=1)
    enabled: bool = True
    env: dict[str, str] = Field(default_factory=dict, description="Environment overrides for this account.")
    api_key_env: str | None = Field(None, description="The variable holding this account's key.")
    quota: QuotaConfig | None = Field(None, description="This account's own quota, else the provider's.")
    usage_command: list[str] | None = Field(None, min_length=1, description="This account's own usage_command.")


class PatternConfig(StrictModel):
    regex: str
    outcome: Outcome = Field(alias="class")


class ProviderConfig(StrictModel):
    enabled: bool = True
    description: str = ""
    command_template: list[str] = Field(
        min_length=1, description="One string per argv element (Jinja templates); the older format's one string "
        "is split into words as a shell would (each whole Jinja tag kept in one word), and never given to one.",
        json_schema_extra=_array_or_words)
    executable: str | None = Field(None, description="What must exist to run: default command_template[0].")
    api_key_env: str | None = None
    requires_api_key: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(1800.0, gt=0, le=WEEK, description="Seconds before the process group is terminated.")
    kill_grace: float = Field(10.0, ge=0, le=3600, description="Seconds between SIGTERM and SIGKILL.")
    idle_timeout: float | None = Field(
        None, gt=0, le=WEEK,
        description="Seconds without output on stdout or stderr before the attempt ends as a timeout.",
    )
    prompt: PromptMode = "file"
    output_format: str = Field("text", **_enum(OUTPUT_FORMATS))
    max_concurrency: int | None = Field(None, ge=1, le=100_000)
    account_strategy: str = Field("least_used", **_enum(STRATEGIES))
    specializations: dict[str, Score] = Field(
        default_factory=dict, description="Fit of the whole provider (0-100), used for models that give no score."
    )
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    accounts: list[AccountConfig] = Field(default_factory=_empty_list)
    quota: QuotaConfig | None = None
    failure_patterns: list[PatternConfig] = Field(default_factory=_empty_list)
    actions: dict[Outcome, Action] = Field(default_factory=dict)
    vars: dict[str, Scalar] = Field(default_factory=dict)
    verify: list[str] = Field(default_factory=_empty_list, description="Argv templates run after a successful attempt.")
    verify_timeout: float = Field(600.0, gt=0, le=WEEK, description="Seconds the verify command may run.")
    prompt_suffix: str | None = Field(None, description="Template added to the prompt after a failed attempt.")
    need: NeedConfig | None = Field(None, description="Expected need per task, for the fit test.")
    usage_command: list[str] | None = Field(None, min_length=1, description="argv templates printing usage JSON.")
    usage_sync_interval: str | None = Field(None, **_duration(
        COOLDOWN_DAYS, "Run usage_command before routing at most this often (unset: only `adws quota --sync` runs "
        "it)", "10m"))
    wait_for_reset: float = Field(0.0, ge=0, le=3600, description="Seconds: a limit resetting sooner is waited out.")

    _split_command = field_validator("command_template", mode="before")(split_words)


class StateConfig(StrictModel):
    backend: str = Field("sqlite", **_enum(STORES))
    path: str = Field(".adws/state.sqlite3", description="The SQLite file (backend sqlite).")
    url: str | None = Field(None, description="The Redis server, redis://[:password@]host:port/db or rediss:// "
                            "(backend redis); ADWS_STATE_URL overrides it.")
    key_prefix: str = Field("adws:", min_length=1, description="Prefix of every Redis key: fleets sharing a "
                            "server use different ones.")


class AuditConfig(StrictModel):
    enabled: bool = True
    path: str = ".adws/audit.jsonl"
    include_prompt: bool = False


class RunConfig(StrictModel):
    dir: str = Field(".adws/runs", description="Per-attempt output files go under this directory.")
    output_cap_bytes: int = Field(16 * 1024 * 1024, ge=1024, le=1 << 34)
    keep_runs: int = Field(200, ge=0, le=1_000_000, description="Run directories kept; older ones are removed.")
    workdir: WorkdirPolicy = Field("keep", description="What a failed attempt leaves: keep, reset or worktree.")


class ExpectConfig(StrictModel):
    provider: str | None = None
    model: str | None = None
    account: str | None = None
    rule: str | None = None
    plan: list[str] | None = Field(None, description="Providers of the plan, in order.")


class ScenarioConfig(StrictModel):
    name: str = Field(min_length=1)
    description: str = ""
    task: dict[str, Any]
    at: datetime | None = None
    expect: ExpectConfig

    @field_validator("at", mode="before")
    @classmethod
    def _iso_datetime(cls, value: Any) -> Any:
        # A quoted ISO 8601 string is read here; pydantic's own lax parsing would also take numbers as Unix times.
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f'expected an ISO 8601 date-time such as "2026-11-22T10:00:00Z", got "{value}"') \
                    from None
        return value


class LLMConfig(StrictModel):
    """The older format's defaults; `routing.default_*` wins where both are given."""

    provider: str | None = None
    model_default: str | None = None


class Config(StrictModel):
    routing: RoutingConfig = Field(default_factory=RoutingConfig.model_construct)
    providers: dict[str, ProviderConfig] = Field(min_length=1)
    state: StateConfig = Field(default_factory=StateConfig.model_construct)
    audit: AuditConfig = Field(default_factory=AuditConfig.model_construct)
    run: RunConfig = Field(default_factory=RunConfig.model_construct)
    scenarios: list[ScenarioConfig] = Field(default_factory=_empty_list)
    llm: LLMConfig | None = None
