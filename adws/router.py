"""ModelRouter: the pure half of adws. Task in, Decision out; no side effects.

Rules are tried highest priority first (equal priorities in file order) and the first whose conditions all
hold wins. To keep that cheap with thousands of rules, rules are indexed by a condition every matching task
must satisfy (an exact label, a specialization or a priority), so only the candidates for a task are tested.
Explain walks every rule with the same compiled predicates, so explain and route cannot disagree.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from adws.accounts import AccountPlanner, StatefulAccounts, reads_tier_scores
from adws.arguments import FIRST_YEAR, LAST_YEAR, checked_callable, checked_now, checked_prompt, got
from adws.availability import Availability
from adws.compiled import CompiledConfig, ModelSpec, ProviderSpec, RuleSpec, fit_score
from adws.conditions import Condition
from adws.dataclass_cache import dataclass
from adws.decision import Decision, Skip, Step
from adws.errors import ArgumentError, TaskError, suggest
from adws.intake import prepare, prepare_fields
from adws.need import NeedSpec, estimate_need
from adws.scoring import TierFacts, TierScore, order_tiers
from adws.strategies import STRATEGIES
from adws.task import Task, coerce_task, common_fields
from adws.taskview import PRIORITY_RANK, TaskView

Clock = Callable[[], datetime]


CLOCK_CALL = "no arguments, returning an aware datetime"  # a clock's contract, for ArgumentError's message


def utc_now() -> datetime:
    return datetime.now(UTC)


_RETRY_PROBES = 32  # retry counts 0-31 get their own bucket; larger ones share the last
_CONTEXT_BUCKETS = 48  # context sizes bucketed by bit length (powers of two)
_NO_INDEX = 0.75  # a rule admitting more than this share of a dimension is not worth indexing
_MEMO_SIZE = 1024  # gathered candidate lists kept (see RuleIndex.candidate_entries) ...
_MEMO_LIST = 64  # ... each of at most this many rules
_SMALL = 8  # below this many enabled rules, a linear scan beats gathering buckets (measured side by side:
# 5 rules scan in half the time gathering takes; the shipped config's 13 in 1.5-3x the time)


Entry = tuple[RuleSpec, tuple[Callable[[TaskView], bool], ...]]  # a rule and its conditions' tests


class RuleIndex:
    """Enabled rules bucketed by one condition every matching task must satisfy; `candidates` keeps order.

    Each rule goes into the dimension where it admits the smallest share of values: an exact label, an
    attribute's value, a specialization, a priority, an hour, a retry count or a context-size range. Finite
    dimensions are filled by asking the compiled predicate itself which values it admits, so the index can only
    offer a superset of the rules that match; the predicates still decide.
    """

    def __init__(self, rules: Iterable[RuleSpec], linear_below: int = _SMALL) -> None:
        self.rules = [r for r in rules if r.enabled]
        # Each rule with its conditions as bound `__call__` methods: calling a bound method takes CPython's fast
        # path, calling an instance with __call__ the slow one. Conditions shared between rules (see
        # compile_conditions' memo) share their bound method too.
        bound: dict[int, Callable[[TaskView], bool]] = {}
        self.entries: tuple[Entry, ...] = tuple([
            (r, tuple([bound.get(id(c)) or bound.setdefault(id(c), c.__call__) for c in r.conditions]))
            for r in self.rules])
        self._memo: dict[tuple[Any, ...], tuple[Entry, ...]] = {}  # see candidate_entries
        self.by_label: dict[str, list[int]] = {}
        self.by_attr: dict[tuple[str, Any], list[int]] = {}
        self.by_attr_present: dict[str, list[int]] = {}
        self.by_spec: dict[str, list[int]] = {}
        self.by_priority: dict[int, list[int]] = {}
        self.by_hour: dict[int, list[int]] = {}
        self.by_retry: dict[int, list[int]] = {}
        self.by_context: dict[int, list[int]] = {}
        self.always: list[int] = []
        self.small = len(self.rules) < linear_below
        for pos, rule in enumerate(self.rules):
            options = [(share, bucket, list(keys)) for c in rule.conditions
                       if (found := self._keys(c)) is not None for share, bucket, keys in (found,)]
            if not options:
                self.always.append(pos)
                continue
            # The smallest share of values wins; on a tie, the condition naming fewer values is more selective.
            share, bucket, keys = min(options, key=lambda option: (option[0], len(option[2])))
            if share > _NO_INDEX:
                self.always.append(pos)
                continue
            for key in keys:
                bucket.setdefault(key, []).append(pos)

    def _keys(self, condition: Condition) -> tuple[float, dict[Any, list[int]], Iterable[Any]] | None:
        """(share of the dimension the condition admits, its buckets, the keys to file the rule under)."""
        hint = condition.index_keys()
        if hint is None:
            return None
        place = hint.field
        if place == "labels":
            return 0.0, self.by_label, hint.values
        if place == "attrs":
            return 0.0, self.by_attr, hint.values
        if place == "attr_present":  # any other attrs operator still needs the attribute to be there
            return 0.05, self.by_attr_present, hint.values
        if place == "specialization":
            return len(hint.values) / 8, self.by_spec, hint.values
        admits = hint.admits
        assert admits is not None  # every other field is an ordered one, which conditions answer by value
        if place == "priority_rank":
            ranks = [rank for rank in PRIORITY_RANK.values() if admits(rank)]
            return len(ranks) / 4, self.by_priority, ranks
        if place == "hour":
            hours = [hour for hour in range(24) if admits(hour)]
            return len(hours) / 24, self.by_hour, hours
        if place == "retry_count":
            counts = [count for count in range(_RETRY_PROBES) if admits(count)]
            counts.append(_RETRY_PROBES)  # larger counts are not enumerated: always a candidate there
            # Most tasks are first or second tries: judge the share on the counts tasks really have.
            return sum(c < 4 for c in counts) / 4, self.by_retry, counts
        if place == "context_tokens":
            buckets = _context_buckets(hint.low, hint.high)
            return len(buckets) / _CONTEXT_BUCKETS, self.by_context, buckets
        return None

    def candidates(self, view: TaskView) -> list[RuleSpec]:
        """The rules that may match `view`, in priority order (a superset of those that do)."""
        if self.small:
            return self.rules
        return [rule for rule, _ in self.candidate_entries(view)]

    def candidate_entries(self, view: TaskView) -> Sequence[Entry]:
        """`candidates` with each rule's condition tests (see `entries`): what route() walks. Shared: read only."""
        if self.small:
            return self.entries  # testing a handful of rules in turn is cheaper than gathering buckets
        # Conditional expressions, not min(): a builtin call per bucket is a good part of gathering.
        retry, size = view.retry_count, view.context_tokens.bit_length()
        retry = retry if retry < _RETRY_PROBES else _RETRY_PROBES
        size = size if size < _CONTEXT_BUCKETS - 1 else _CONTEXT_BUCKETS - 1
        # Without attrs, the candidates depend on these alone: tasks alike in them (most of a coordinator's) share
        # one gathered list. Only short lists are kept, and only so many, so the memo stays small.
        key = None if view.attrs else (view.labels, view.specialization, view.priority_rank, view.hour, retry, size)
        if key is not None:
            known = self._memo.get(key)
            if known is not None:
                return known
        found = list(self.always)
        if self.by_label:
            for label in view.labels:
                found.extend(self.by_label.get(label, ()))
        if self.by_attr_present:
            for name in view.attrs:
                found.extend(self.by_attr_present.get(name, ()))
        if self.by_attr:
            for name, value in view.attrs.items():
                try:  # noqa: SIM105  (a bare try is cheaper than contextlib.suppress on the hot path)
                    found.extend(self.by_attr.get((name, value), ()))
                except TypeError:  # an unhashable value (a list, a table) cannot equal an indexed scalar
                    pass
        found.extend(self.by_spec.get(view.specialization, ()))
        found.extend(self.by_priority.get(view.priority_rank, ()))
        found.extend(self.by_hour.get(view.hour, ()))
        found.extend(self.by_retry.get(retry, ()))
        found.extend(self.by_context.get(size, ()))
        entries = self.entries
        gathered = tuple([entries[pos] for pos in sorted(set(found))])
        if key is not None and len(gathered) <= _MEMO_LIST:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = gathered
        return gathered


def _context_buckets(low: float, high: float) -> list[int]:
    """Bit-length buckets that a context size within [low, high] can fall in."""
    top = 1 << (_CONTEXT_BUCKETS - 1)
    low_n, high_n = int(max(low, 0)), int(min(high, top))
    last = _CONTEXT_BUCKETS - 1
    return list(range(min(low_n.bit_length(), last), min(high_n.bit_length(), last) + 1))


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """One rule as explain sees it."""

    rule: RuleSpec
    status: str  # "matched" | "failed" | "disabled" | "not reached"
    condition: str | None = None  # the first failing condition's key
    actual: str | None = None
    expected: str | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    traces: tuple[RuleTrace, ...]
    routing_enabled: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.to_dict(),
            "routing_enabled": self.routing_enabled,
            "rules": [
                {"name": t.rule.name, "priority": t.rule.priority, "status": t.status,
                 **({"condition": t.condition, "task_value": t.actual, "rule_value": t.expected}
                    if t.condition else {})}
                for t in self.traces
            ],
        }

    def render(self) -> str:
        """The decision first, then every rule's verdict: what `adws route --explain` prints (adws.views)."""
        from adws.views import render_decision, render_rules  # for people: route() alone never needs it

        return "\n".join([*render_decision(self.decision), *render_rules(self)])


# A plan: its steps in the order to try them, the skipped candidates, how the tiers were ordered, and every
# tier's score when that order is not the chain.
Plan = tuple[list[Step], list[Skip], str, tuple[TierScore, ...]]


class PlanInput(NamedTuple):
    """Everything a plan depends on: the plan cache's key, and the only task, environment and state data the
    plan is built from (`_plan` reads nothing else but the clock reading, whose effect on accounts and breakers
    goes through `generation`). A new input added here cannot be left out of the key."""

    via: str  # "rule" | "default" | "override" | "disabled"
    rule: str | None  # the matched rule's name
    override: tuple[str, str | None] | None  # (provider, model) an override names
    specialization: str
    need: int | None  # the smallest declared context window that holds the task; None: none does
    task_key: str | None  # None unless an account strategy depends on the task
    generation: int  # of the accounts' state snapshot
    keys_set: tuple[str, ...]  # which API-key variables of any provider are set
    context_tokens: int | None  # the task's size, where some expected need is a multiple of it; else None


class ModelRouter:
    def __init__(self, config: CompiledConfig, *, availability: Availability | None = None,
                 accounts: AccountPlanner | None = None, clock: Clock = utc_now) -> None:
        """`config` from adws.config.load_config. Raises ArgumentError (a TypeError) for anything else."""
        if not isinstance(config, CompiledConfig):
            raise ArgumentError(f"config: expected a CompiledConfig (from adws.config.load_config(path)), "
                                f"got {got(config)}")
        checked_callable("clock", clock, what=CLOCK_CALL, optional=False)
        self.config = config
        self.tz = ZoneInfo(config.timezone)
        self.availability = availability or Availability()
        tier_scores = reads_tier_scores(config)
        self.accounts: AccountPlanner = accounts or StatefulAccounts(
            dict(config.providers), self.availability, None, tier_scores=tier_scores)
        self.clock = clock
        self.index = RuleIndex(config.rules)
        self._all_entries = self.index.entries if self.index.small else None  # see route
        self._intake, self._enabled = config.intake, config.enabled
        self._ranked: dict[tuple[str, str], list[ModelSpec]] = {}
        self._provider_names = {name.casefold(): name for name in config.providers}  # as adws check compares them
        # Plans depend on the task only through these, so identical inputs reuse one plan (see _decide).
        self._windows = sorted({m.context_window for p in config.providers.values() for m in p.models.values()})
        self._by_task = any(STRATEGIES[p.account_strategy].depends_on_task for p in config.providers.values())
        self._smallest = {p.name for p in config.providers.values()  # needs whose `smallest` is read (best_fit)
                          if STRATEGIES[p.account_strategy].reads_smallest_need}
        needs = [p.need for p in config.providers.values()] + [r.need for r in config.rules]
        # The exact task size enters the plan only where something reads it: a need that is a multiple of it, or
        # a tier score (fit is adjusted for how much of the context window the task fills).
        self._context_needs = any(n is not None and n.context_multiple is not None for n in needs) or tier_scores
        self._key_vars = sorted({v for p in config.providers.values() for v in p.key_vars})
        self._rules = {r.name: r for r in config.rules}
        self._override_prefix = config.intake.override_label_prefix  # see _names_override
        self._force_attr = config.intake.force_attr
        self._plans: dict[tuple[Any, ...], Plan] = {}  # keyed by PlanInput (or a plain tuple equal to one)
        # (provider, the step's inputs) -> (the provider's stamp, the step and its facts or None, its skips)
        self._steps: dict[tuple[Any, ...], tuple[int, tuple[Step, TierFacts] | None, tuple[Skip, ...]]] = {}

    # -- public -------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Look programs up again (e.g. after installing a CLI) and forget the plans built on the old answers.

        Plans are cached by task shape, not by what is installed, so `Availability.refresh()` alone would leave
        cached plans that still skip the new program.
        """
        self.availability.refresh()
        self._plans.clear()
        self._steps.clear()

    def gate(self, provider: ProviderSpec, now: datetime, keys_set: Collection[str] | None = None) -> Skip | None:
        """The checks on a whole tier that come before its model and accounts: enabled, installed, its API key
        set (`keys_set`: which key variables are set, else read from the environment), circuit breaker and
        concurrency slots. Call `accounts.generation(now)` first (route() does, once per decision)."""
        why = self.availability.why_not(provider, keys_set)
        if why is not None:
            return Skip(provider.name, why)
        return self.accounts.provider_blocked(provider, now)

    def coerce(self, task: Task | Mapping[str, Any]) -> Task:
        """`coerce_task`, listing every problem in one TaskError: when a field is malformed (a negative
        retry_count), the fields that passed are still checked against the config (an unknown priority or
        specialization, an override naming no provider)."""
        try:
            return coerce_task(task)
        except TaskError as exc:
            if exc.partial is not None:
                try:
                    self.prepare_checked(exc.partial, self.clock(), None)
                except TaskError as more:
                    exc.problems.extend(more.problems)
            raise TaskError(exc.problems) from None

    def prepare_checked(self, task: Task, now: datetime,
                        prompt: str | None) -> tuple[TaskView, tuple[str, str | None, str] | None]:
        """The task's view and its override (provider, model, source) or None. Raises one TaskError with
        the problems of both (priority, specialization, override label or attribute)."""
        try:
            view = prepare(task, self.config.intake, self.tz, now, prompt)
        except TaskError as exc:  # every problem of the task at once: the override's own too
            try:
                self._override(task)
            except TaskError as more:
                exc.problems.extend(more.problems)
            raise TaskError(exc.problems) from None
        return view, self._override(task) if self._names_override(view) else None

    def _names_override(self, view: TaskView) -> bool:
        """Might the task name an override? Looked for in the view's labels (stripped and lowercased, as
        _override compares them) and attrs, so most tasks, which name none, skip _override's own reading.
        route() writes this out: keep the two the same."""
        prefix = self._override_prefix
        if prefix:
            size = len(prefix)
            for label in view.labels:
                # `startswith` as a slice compare: str.startswith parses its arguments the slow way (a tuple).
                if label[:size] == prefix:
                    return True
        force = self._force_attr
        return force in view.attrs if force else False

    def prepare(self, task: Task | Mapping[str, Any], now: datetime | None = None,
                prompt: str | None = None) -> TaskView:
        """The task's view (see route for the arguments and the errors)."""
        checked_prompt(prompt, optional=True)
        return prepare(self.coerce(task), self.config.intake, self.tz, checked_now(now) or self.clock(), prompt)

    def route(self, task: Task | Mapping[str, Any], *, now: datetime | None = None,
              prompt: str | None = None) -> Decision:
        """Where the task would run: pure, no side effects.

        `task`: a Task or a dict (see adws.task); `now`: a datetime (naive: read in the routing timezone) or None
        for the clock; `prompt`: the prompt's text (its length sizes the task) or None. Raises TaskError listing
        every problem of the task, ArgumentError (a TypeError) for a `now` or `prompt` of the wrong type, and
        for a `now` outside the years adws.arguments.FIRST_YEAR to LAST_YEAR.
        """
        # The argument checks at their cheapest: two `is` tests in the common case (this runs once per decision).
        if now is None:
            now = self.clock()
        elif type(now) is not datetime or not FIRST_YEAR <= now.year <= LAST_YEAR:
            # A subclass of datetime passes; anything else (a string), or a time out of range, is an ArgumentError.
            checked_now(now)
        if prompt is not None and type(prompt) is not str:
            checked_prompt(prompt, optional=True)
        # The view straight from the task's fields: a Task's, or a dict's in the usual shape (see common_fields,
        # no Task built). Any other input, and a task whose intake fails, goes the general way, which reports
        # every problem at once; so does one that may name an override (rare), which reads a Task.
        # (Task.key and task_key written out here, once for both shapes: one call less per decision. A Task's
        # fields are read one by one, not packed into a tuple: the label-decided route is ~5 µs.)
        view: TaskView | None = None
        try:
            if type(task) is Task:
                task_id, number, title, body, labels = task.id, task.number, task.title, task.body, task.labels
                priority, retry_count, spec, tokens = task.priority, task.retry_count, task.specialization, \
                    task.context_tokens
                attrs = task.attrs
                plain = True
            else:
                fields = common_fields(task)
                plain = fields is not None
                if fields is not None:
                    task_id, number, title, body, labels, priority, retry_count, spec, tokens = fields
                    attrs = {}
            if plain:
                view = prepare_fields(task_id if task_id is not None else None if number is None else f"#{number}",
                                      number, title, body, labels, priority, retry_count, spec, tokens, attrs,
                                      self._intake, self.tz, now, prompt)
        except TaskError:
            pass
        override: tuple[str, str | None, str] | None = None
        if view is None:
            view, override = self.prepare_checked(task if type(task) is Task else self.coerce(task), now, prompt)
        else:
            # _names_override(view) written out (one call less per decision): keep the two the same.
            prefix = self._override_prefix
            names = False
            if prefix:
                size = len(prefix)
                for label in view.labels:
                    if label[:size] == prefix:
                        names = True
                        break
            if not names:
                force = self._force_attr
                names = force in view.attrs if force else False
            if names:
                override = self._override(task if type(task) is Task else self.coerce(task))
        if override is not None:
            return self._decide(view, "override", None, override)
        if not self._enabled:
            return self._decide(view, "disabled", None, None)
        # A handful of rules are all tested in turn (RuleIndex.candidate_entries' own first answer, without the call).
        entries = self._all_entries
        for rule, tests in entries if entries is not None else self.index.candidate_entries(view):
            for test in tests:
                if not test(view):
                    break
            else:
                return self._decide(view, "rule", rule, None)
        return self._decide(view, "default", None, None)

    def explain(self, task: Task | Mapping[str, Any], *, now: datetime | None = None,
                prompt: str | None = None) -> Explanation:
        decision = self.route(task, now=now, prompt=prompt)
        view = decision.view
        traces = []
        for rule in self.config.rules:
            if not rule.enabled:
                traces.append(RuleTrace(rule, "disabled"))
                continue
            for condition in rule.conditions:
                if not condition(view):
                    traces.append(RuleTrace(rule, "failed", condition.key, condition.actual(view),
                                            condition.expected()))
                    break
            else:
                traces.append(RuleTrace(rule, "matched"))
        return Explanation(decision, tuple(traces), self.config.enabled)

    # -- internals ----------------------------------------------------------------------------------------

    def _override(self, task: Task) -> tuple[str, str | None, str] | None:
        intake = self.config.intake
        wanted: tuple[str, str] | None = None
        if intake.override_label_prefix:
            for label in task.labels:
                if label.strip().lower().startswith(intake.override_label_prefix):
                    wanted = (label.strip()[len(intake.override_label_prefix):], f'label "{label}"')
        if intake.force_attr and intake.force_attr in task.attrs:
            value = task.attrs[intake.force_attr]
            if not isinstance(value, str):
                raise TaskError([f"attrs.{intake.force_attr}: expected \"provider[/model]\", got {value!r}"])
            wanted = (value, f"attrs.{intake.force_attr}")
        if wanted is None:
            return None
        text, source = wanted
        name, _, model = text.strip().partition("/")
        provider = self._provider_names.get(name.casefold())
        if provider is None:
            # Name the choices as `adws check` does: the coordinator that sent the label may not have the config.
            raise TaskError([f'{source}: unknown provider "{name}"{suggest(name, self.config.providers)}; '
                             f"providers: {', '.join(self.config.providers)}"])
        spec = self.config.providers[provider]
        if model and spec.models and model not in spec.models:
            # Labels are case-insensitive on GitHub; a model id that differs only in case is the same model.
            model = next((m for m in spec.models if m.casefold() == model.casefold()), model)
        if model and spec.models and model not in spec.models:
            raise TaskError([f'{source}: provider "{provider}" has no model "{model}"{suggest(model, spec.models)}; '
                             f"its models: {', '.join(spec.models)}"])
        return provider, model or None, source

    def _decide(self, view: TaskView, via: str, rule: RuleSpec | None,
                override: tuple[str, str | None, str] | None) -> Decision:
        environ = self.availability.environ
        windows = self._windows
        fits = bisect_left(windows, view.context_tokens)
        name = rule.name if rule is not None else None
        # The key as a plain tuple, equal (and hashing equal) to the PlanInput it stands for: the PlanInput
        # itself is built only when the plan is.
        key = (via, name, override[:2] if override else None, view.specialization,
               windows[fits] if fits < len(windows) else None,
               view.task_id if self._by_task else None, self.accounts.generation(view.local_now),
               tuple([v for v in self._key_vars if environ.get(v)]) if self._key_vars else (),
               view.context_tokens if self._context_needs else None)
        cached = self._plans.get(key)
        if cached is None:
            if len(self._plans) > 4096:  # a new state generation makes old keys dead; keep memory bounded
                self._plans.clear()
            inp = PlanInput(*key)
            cached = self._plans[inp] = self._plan(inp, view.local_now)
        steps, skips, order, scores = cached
        # Positional, in Decision's field order: this runs once per decision.
        return Decision(name if name is not None else ("override" if override else "default"), via, list(steps),
                        list(skips), view, view.local_now, rule, override[2] if override else None, order, scores)

    def _plan(self, inp: PlanInput, now: datetime) -> Plan:
        """The plan's steps and the skipped candidates, from `inp` alone (and `now`, see PlanInput)."""
        cfg = self.config
        explicit: dict[str, str] = {}
        chain: tuple[str, ...] | None = None
        fallback = True
        rule_vars: dict[str, Any] = {}
        rule = self._rules[inp.rule] if inp.rule is not None else None
        if inp.override is not None:
            target, model = inp.override
            if model:
                explicit[target] = model
        elif rule is not None:
            assert rule.provider is not None  # load refuses rules without a target
            target = rule.provider
            explicit.update(rule.models)
            if rule.model:
                explicit[target] = rule.model
            chain, fallback, rule_vars = rule.chain, rule.fallback, dict(rule.vars)
        else:
            target = cfg.default_provider
            if cfg.default_model:
                explicit[target] = cfg.default_model
        tiers = [target]
        if fallback:
            rest = chain if chain is not None else self._after(target)
            tiers.extend(t for t in rest if t != target)
        steps: list[Step] = []
        skipped: list[Skip] = []
        facts: list[TierFacts] = []
        pinned = rule.account if rule is not None else None
        for tier in tiers:
            found = self._step(cfg.providers[tier], explicit.get(tier), inp, now, rule_vars, skipped,
                               pinned if tier == target else None, rule.need if rule is not None else None)
            if found is not None:
                steps.append(found[0])
                facts.append(found[1])
        order = (rule.tier_order if rule is not None else None) or cfg.scoring.order
        if order == "chain" or len(steps) < 1:
            return steps, skipped, "chain", ()
        positions, scores = order_tiers(facts, order, cfg.scoring)
        return [steps[i] for i in positions], skipped, order, tuple(scores[i] for i in positions)

    def _after(self, target: str) -> tuple[str, ...]:
        chain = self.config.chain
        if target in chain:
            return chain[chain.index(target) + 1:]
        return chain

    def _step(self, provider: ProviderSpec, explicit: str | None, inp: PlanInput, now: datetime,
              rule_vars: dict[str, Any], skipped: list[Skip], pinned: str | None = None,
              rule_need: NeedSpec | None = None) -> tuple[Step, TierFacts] | None:
        """One tier of a plan, and its skips appended to `skipped`. Kept per tier across state generations while
        the provider's own state has not changed (`AccountPlanner.stamp`): after a write on one provider, a plan
        is rebuilt from the other tiers' kept steps and that one provider's new step."""
        key = (provider.name, explicit, inp.specialization, inp.need, inp.task_key, inp.keys_set, inp.context_tokens,
               pinned, rule_need, inp.rule if rule_vars else None)
        stamp = self.accounts.stamp(provider.name)
        kept = self._steps.get(key)
        if kept is not None and kept[0] == stamp:
            skipped.extend(kept[2])
            return kept[1]
        if len(self._steps) > 16384:  # old stamps make old entries dead; keep memory bounded
            self._steps.clear()
        mine: list[Skip] = []
        found = self._new_step(provider, explicit, inp, now, rule_vars, mine, pinned, rule_need)
        self._steps[key] = (stamp, found, tuple(mine))
        skipped.extend(mine)
        return found

    def _new_step(self, provider: ProviderSpec, explicit: str | None, inp: PlanInput, now: datetime,
                  rule_vars: dict[str, Any], skipped: list[Skip], pinned: str | None,
                  rule_need: NeedSpec | None) -> tuple[Step, TierFacts] | None:
        gate = self.gate(provider, now, inp.keys_set)
        if gate is not None:
            skipped.append(gate)
            return None
        model, reason = self._model(provider, explicit, inp)
        if model is None and provider.models:
            skipped.append(Skip(provider.name, reason))
            return None
        model_id = model.id if model else explicit
        need = estimate_need(rule_need or provider.need, provider.name, inp.specialization, inp.context_tokens or 0,
                             self.accounts, smallest=provider.name in self._smallest)
        ranking = self.accounts.rank(provider, inp.task_key, now, model=model_id, need=need)
        skipped.extend(ranking.skipped)
        if not ranking.usable:
            return None
        accounts = tuple(ranking.eligible)
        if pinned in accounts:
            # The rule's account goes first; the tier's other usable accounts stay behind it for next_account.
            accounts = (pinned, *(a for a in accounts if a != pinned))
        model_vars = model.vars if model else {}
        variables = {**provider.vars, **model_vars, **rule_vars}
        facts = TierFacts(provider.name, model_id, ranking.first_percent, model.latency_ms if model else None,
                          inp.specialization, model.score(inp.specialization, provider.scores) if model else
                          fit_score(inp.specialization, provider.scores),
                          inp.context_tokens or 0,
                          model.context_window if model else None, model.cost_per_1k_tokens if model else 0.0)
        return Step(provider.name, model_id, accounts[0] if accounts else None, accounts, variables, reason,
                    need), facts

    def _model(self, provider: ProviderSpec, explicit: str | None,
               inp: PlanInput) -> tuple[ModelSpec | None, str]:
        # Windows are compared with the smallest declared window that holds the task: the same answers as
        # comparing with its token count, from an input shared by every task of that size class.
        need = inp.need if inp.need is not None else 1 << 62
        if explicit is not None:
            model = provider.models.get(explicit)
            if model is None:
                return None, f"model {explicit} as chosen"
            if model.context_window < need:
                return None, f"context too small: {explicit} holds {model.context_window} tokens"
            return model, f"model {explicit} as chosen"
        ranked = self._ranked_models(provider, inp.specialization)
        for model in ranked:
            if model.context_window >= need:
                return model, (f"best {inp.specialization} score "
                               f"{model.score(inp.specialization, provider.scores)} among models that hold the task")
        if not ranked:
            return None, "no model declared"
        largest = max(m.context_window for m in ranked)
        return None, f"context too small: no model holds the task (largest window {largest})"

    def _ranked_models(self, provider: ProviderSpec, specialization: str) -> list[ModelSpec]:
        key = (provider.name, specialization)
        ranked = self._ranked.get(key)
        if ranked is None:
            order = {mid: i for i, mid in enumerate(provider.models)}
            ranked = sorted(provider.models.values(),
                            key=lambda m: (-m.score(specialization, provider.scores),
                                           m.latency_ms if m.latency_ms is not None else 1 << 30, order[m.id]))
            self._ranked[key] = ranked
        return ranked
