"""`adws simulate`: the real engine, an injected clock and simulated agents, over days of work in seconds.

The engine is `adws.engine.Engine` itself (rules, plans, account strategies, quotas, cooldowns, breakers,
fall-through and the audit log are the code that runs in production), built with the public constructor
options: `clock=` and `sleep=` move a simulated clock, `runner=` is `SimulatedAgents`, `store=` an in-memory
state store. Every program counts as installed and every API key as set, as scenarios assume.

`SimulatedAgents` answers each attempt as the provider would under the config's quotas: it keeps its own ledger of
what each account used, and once an account's quota (100%, not adws's hard block; less the workload's
`unseen_use`, the share people and other tools take from the same accounts, which adws cannot see) is spent it
rejects the attempt with a limit message that announces the true reset. Otherwise the attempt succeeds (or, at
the workload's `error_rate`, fails with an error) and prints its usage in the provider's own output format, so
the real parser, classifier and ledger take it from there. Tasks run one after another at their arrival
times; an attempt moves the clock on by its duration (the model's latency plus output tokens at the workload's
speed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adws.accounts import DEFAULT_ACCOUNT, build_period
from adws.arguments import FIRST_YEAR, LAST_YEAR, time_problem
from adws.attempt import RunOutcome
from adws.compiled import CompiledConfig, ProviderSpec, QuotaSpec
from adws.dataclass_cache import dataclass, field
from adws.engine import Engine
from adws.errors import UsageError
from adws.errors import count as counted  # (`count` is a loop variable below)
from adws.insight.workload import SimTask, Workload
from adws.pools import Governing, governing
from adws.quota import QuotaPeriod
from adws.runner import RunRequest
from adws.state.memory import MemoryStore

REJECTION_MS = 1500  # how long a refused attempt takes: the CLI starts, asks, and is told no
# Bounds of one run, so a typo (--days 100000) is an error and not a run that never ends: a simulated week of
# about 1,000 tasks takes 1-2 s (bench/results/simulate.md), so MAX_TASKS is a few minutes at most.
MAX_DAYS = 366
MAX_TASKS = 100_000


def _iso(moment: datetime | None) -> str | None:
    """Times in reports: UTC, whole seconds."""
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment is not None else None


class SimClock:
    """A settable clock; `sleep` moves it instead of waiting."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# -- what each output format looks like when an attempt succeeds (one entry per adws.parsers.PARSERS key) -------

Emitter = Callable[[str, int, int, float], str]


def _lines(*records: Mapping[str, Any]) -> str:
    return "\n".join(json.dumps(r) for r in records) + "\n"


def _claude(text: str, tokens_in: int, tokens_out: int, cost: float) -> str:
    return _lines({"type": "result", "subtype": "success", "is_error": False, "result": text,
                   "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}, "total_cost_usd": cost})


def _copilot(text: str, tokens_in: int, tokens_out: int, cost: float) -> str:
    return _lines({"type": "assistant.message", "data": {"messageId": "m1", "content": text}},
                  {"type": "assistant.usage", "data": {"inputTokens": tokens_in, "outputTokens": tokens_out}},
                  {"type": "result", "exitCode": 0})


def _opencode(text: str, tokens_in: int, tokens_out: int, cost: float) -> str:
    return _lines({"type": "text", "part": {"messageID": "m1", "text": text}},
                  {"type": "step_finish", "part": {"tokens": {"input": tokens_in, "output": tokens_out},
                                                   "cost": cost}})


def _gemini(text: str, tokens_in: int, tokens_out: int, cost: float) -> str:
    return json.dumps({"response": text, "stats": {"models": {"m": {"tokens": {"prompt": tokens_in,
                                                                              "candidates": tokens_out}}}}})


def _gemini_stream(text: str, tokens_in: int, tokens_out: int, cost: float) -> str:
    return _lines({"type": "message", "role": "assistant", "content": text},
                  {"type": "result", "status": "success",
                   "stats": {"input_tokens": tokens_in, "output_tokens": tokens_out}})


def _cline(text: str, tokens_in: int, tokens_out: int, cost: float) -> str:
    return _lines({"type": "run_result", "finishReason": "completed", "text": text,
                   "usage": {"inputTokens": tokens_in, "outputTokens": tokens_out, "totalCost": cost}})


def _codex(text: str, tokens_in: int, tokens_out: int, cost: float) -> str:
    return _lines({"type": "thread.started", "thread_id": "t1"}, {"type": "turn.started"},
                  {"type": "item.completed", "item": {"id": "i1", "type": "agent_message", "text": text}},
                  {"type": "turn.completed", "usage": {"input_tokens": tokens_in, "cached_input_tokens": 0,
                                                       "output_tokens": tokens_out}})


def _text(text: str, tokens_in: int, tokens_out: int, cost: float) -> str:
    return text  # plain text reports no usage: adws estimates it (see SimulatedAgents.__call__)


EMITTERS: dict[str, Emitter] = {
    "claude-stream-json": _claude, "claude-json": _claude, "copilot-json": _copilot, "opencode-json": _opencode,
    "gemini-json": _gemini, "gemini-stream-json": _gemini_stream, "cline-json": _cline, "codex-json": _codex,
    "text": _text,
}


@dataclass(slots=True)
class _Use:
    at: float  # epoch seconds
    tokens: int
    cost: float


class SimulatedAgents:
    """The `runner=` of a simulated engine: answers like the providers would under the config's quotas."""

    def __init__(self, config: CompiledConfig, tasks: Mapping[str, SimTask], clock: SimClock, rng: random.Random,
                 error_rate: float, output_tokens_per_second: float, unseen_use: float = 0.0) -> None:
        self.config = config
        self.tasks = tasks
        self.clock = clock
        self.rng = rng
        self.error_rate = error_rate
        self.speed = output_tokens_per_second
        self.share = 1.0 - unseen_use  # of each quota, what is left for adws's tasks
        self.used: dict[tuple[str, str], list[_Use]] = defaultdict(list)
        # Room that tasks sent elsewhere are counted as having had: each such task takes its share, so the same
        # spare tokens are not counted again for every later task.
        self.claimed: dict[tuple[str, str], list[_Use]] = defaultdict(list)
        self.rejections: list[tuple[datetime, str, str, datetime | None]] = []
        self._periods: dict[int, QuotaPeriod] = {}  # one per quota: a cron period caches its bounds

    def period(self, quota: QuotaSpec) -> QuotaPeriod:
        found = self._periods.get(id(quota))
        if found is None:
            found = self._periods[id(quota)] = build_period(quota)
        return found

    def quota(self, provider: ProviderSpec, account: str) -> QuotaSpec | None:
        spec = provider.account(account)
        return (spec.quota if spec is not None else None) or provider.quota

    def governed(self, provider: ProviderSpec, account: str, model: str | None) -> Governing:
        """The quota an attempt of `model` on `account` draws on: one of its pools, the account's own, or none
        (`adws.pools.governing`; a pooled quota without limits of its own meters no model outside its pools)."""
        return governing(self.quota(provider, account), account, model)

    def period_use(self, provider: str, subject: str, quota: QuotaSpec, now: datetime,
                   claimed: bool = False) -> tuple[int, int, float]:
        """(tokens, requests, cost) the provider counts against `subject` (an account, or ACCOUNT/POOL) in its
        quota period at `now` (with `claimed`: plus the room already counted for tasks that went elsewhere)."""
        since = self.period(quota).start(now).timestamp()
        uses = [u for u in self.used.get((provider, subject), ()) if u.at >= since]
        if claimed:
            uses += [u for u in self.claimed.get((provider, subject), ()) if u.at >= since]
        return sum(u.tokens for u in uses), len(uses), sum(u.cost for u in uses)

    def spent(self, provider: ProviderSpec, account: str, now: datetime, model: str | None = None) -> bool:
        """Whether the quota an attempt of `model` on `account` draws on is spent (to the workload's share)."""
        governed = self.governed(provider, account, model)
        quota = governed.quota
        if quota is None:
            return False
        tokens, requests, cost = self.period_use(provider.name, governed.subject, quota, now)
        k = self.share
        return bool((quota.tokens and tokens >= quota.tokens * k)
                    or (quota.requests and requests >= quota.requests * k)
                    or (quota.cost_usd and cost >= quota.cost_usd * k))

    def claim_room(self, provider: ProviderSpec, accounts: list[str], now: datetime, tokens: int,
                   model: str | None = None) -> bool:
        """Whether the provider would still have taken a task of `tokens` tokens of `model` on one of `accounts`
        (the room is then claimed for it)."""
        for account in accounts:
            governed = self.governed(provider, account, model)
            quota = governed.quota
            if quota is not None:
                used, requests, cost = self.period_use(provider.name, governed.subject, quota, now, claimed=True)
                k = self.share
                if ((quota.tokens and used + tokens > quota.tokens * k)
                        or (quota.requests and requests + 1 > quota.requests * k)
                        or (quota.cost_usd and cost >= quota.cost_usd * k)):
                    continue
            self.claimed[(provider.name, governed.subject)].append(_Use(now.timestamp(), tokens, 0.0))
            return True
        return False

    def true_reset(self, provider: ProviderSpec, account: str, now: datetime,
                   model: str | None = None) -> datetime | None:
        governed = self.governed(provider, account, model)
        quota = governed.quota
        if quota is None:
            return None
        period = self.period(quota)
        reset = period.next_reset(now)
        if reset is None and quota.window_seconds:  # rolling: when the oldest use in the window ages out
            since = period.start(now).timestamp()
            oldest = min((u.at for u in self.used.get((provider.name, governed.subject), ()) if u.at >= since),
                         default=None)
            reset = datetime.fromtimestamp(oldest + quota.window_seconds, UTC) if oldest is not None else None
        return reset

    def __call__(self, request: RunRequest) -> RunOutcome:
        env = request.env
        provider = self.config.providers[env["ADWS_PROVIDER"]]
        account = env.get("ADWS_ACCOUNT") or DEFAULT_ACCOUNT
        task = self.tasks[env["ADWS_TASK_ID"]]
        now = self.clock()
        model_id = env.get("ADWS_MODEL") or None
        subject = self.governed(provider, account, model_id).subject
        if self.spent(provider, account, now, model_id):
            reset = self.true_reset(provider, account, now, model_id)
            self.rejections.append((now, provider.name, account, reset))
            when = f"; your quota resets on {reset.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if reset else ""
            self.clock.sleep(REJECTION_MS / 1000)
            return _outcome(request, 1, "", f"Error: usage limit reached for this account{when}\n", REJECTION_MS)
        model = provider.models.get(model_id or "")
        seconds = (model.latency_ms or 1000) / 1000 if model else 1.0
        seconds += task.output_tokens / self.speed
        duration_ms = int(seconds * 1000)
        self.clock.sleep(seconds)
        if self.rng.random() < self.error_rate:
            return _outcome(request, 1, "", "Error: the agent stopped: internal error\n", duration_ms)
        cost = (task.input_tokens + task.output_tokens) / 1000 * (model.cost_per_1k_tokens if model else 0.0)
        self.used[(provider.name, subject)].append(_Use(now.timestamp(), task.input_tokens + task.output_tokens,
                                                        cost))
        stdout = EMITTERS[provider.output_format]("done", task.input_tokens, task.output_tokens, cost)
        size = len(stdout.encode())
        if provider.output_format == "text":
            # No usage in plain text: adws estimates output tokens from the bytes written, so report the size
            # the answer would have had.
            size = int((task.input_tokens + task.output_tokens) * self.config.intake.chars_per_token)
        return _outcome(request, 0, stdout, "", duration_ms, size)


def _outcome(request: RunRequest, code: int, stdout: str, stderr: str, duration_ms: int,
             size: int | None = None) -> RunOutcome:
    return RunOutcome(argv=list(request.argv), exit_code=code, signal=None, timed_out=False, duration_ms=duration_ms,
                      stdout_path=None, stderr_path=None, stdout_tail=stdout, stderr_tail=stderr,
                      stdout_bytes=len(stdout.encode()) if size is None else size, stderr_bytes=len(stderr.encode()),
                      truncated=False)


# -- the run ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Account:
    blocked_at: datetime | None = None  # adws stopped planning it (hard block or cooldown after a rejection)
    rejected_at: datetime | None = None  # the provider first refused it
    back_at: datetime | None = None  # when capacity returned after the first exhaustion
    rejected: int = 0
    episodes: list[tuple[str, str | None]] = field(default_factory=list)  # (from, until) of each exhaustion

    def block(self, at: datetime, until: datetime | None) -> None:
        if self.episodes and (self.back_at is None or at < self.back_at):
            if until is not None and (self.back_at is None or until > self.back_at):
                self.back_at = until
                self.episodes[-1] = (self.episodes[-1][0], _iso(until))
            return
        self.blocked_at = self.blocked_at or at
        self.back_at = until
        self.episodes.append((str(_iso(at)), _iso(until)))


@dataclass(slots=True)
class Simulation:
    config: CompiledConfig
    start: datetime
    days: int
    seed: int
    tasks: int = 0
    succeeded: int = 0
    landed: Counter[str] = field(default_factory=Counter)  # "provider/model" of the successful attempt
    landed_tier: Counter[str] = field(default_factory=Counter)
    per_day: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    below_tier1: Counter[str] = field(default_factory=Counter)  # why, when tier 1 had room
    below_examples: list[str] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    accounts: dict[str, _Account] = field(default_factory=dict)
    tiers: dict[str, dict[str, str | None]] = field(default_factory=dict)
    attempts: int = 0
    elapsed_s: float = 0.0
    audit_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        chain = list(self.config.chain)
        return {
            "config": self.config.source, "start": _iso(self.start), "days": self.days, "seed": self.seed,
            "tasks": self.tasks, "succeeded": self.succeeded, "failed": self.tasks - self.succeeded,
            "attempts": self.attempts,
            "landed": {t: self.landed_tier[t] for t in [*chain, *sorted(set(self.landed_tier) - set(chain))]
                       if self.landed_tier[t]},
            "landed_models": dict(sorted(self.landed.items(), key=lambda kv: (-kv[1], kv[0]))),
            "per_day": {day: dict(counts) for day, counts in sorted(self.per_day.items())},
            "below_tier1_with_room": {"total": sum(self.below_tier1.values()), **dict(sorted(self.below_tier1.items())),
                                      "examples": self.below_examples},
            "rejected_attempts": dict(sorted(self.rejected.items())),
            "tiers": self.tiers,
            "accounts": {name: {"blocked_at": _iso(a.blocked_at), "rejected_at": _iso(a.rejected_at),
                                "capacity_returns": a.episodes[0][1] if a.episodes else None,
                                "rejected": a.rejected, "exhaustions": [list(e) for e in a.episodes]}
                         for name, a in sorted(self.accounts.items())},
            "audit": self.audit_path,
        }


def simulate(config: CompiledConfig, tasks: list[SimTask], *, workload: Workload, start: datetime, days: int,
             seed: int, audit_path: str | None = None) -> Simulation:
    """Run `tasks` (sorted by arrival) through a real Engine on `config` with simulated agents.

    `audit_path`: where the simulated audit log goes (for `adws stats` and `adws report`); a temporary file
    that is removed afterwards when None. Deterministic for a seed: every random choice comes from one
    `random.Random(seed)` and nothing reads the wall clock. Raises UsageError (naming --start) when the span
    leaves the years a routing time may be in (adws.arguments.time_problem).
    """
    _check_span(start, days, tasks)
    began = time.perf_counter()
    rng = random.Random(seed ^ 0x5EED)
    result = Simulation(config, start, days, seed)
    # The manager makes a run directory per task and per attempt: in memory where the machine offers it.
    scratch = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="adws-simulate-", dir=scratch) as tmp:
        audit = audit_path or str(Path(tmp) / "audit.jsonl")
        if audit_path:
            Path(audit_path).unlink(missing_ok=True)  # a fresh log: one simulation per file
        cfg = dataclasses.replace(config, run_dir=str(Path(tmp) / "runs"), keep_runs=0, audit_enabled=True,
                                  audit_path=audit, audit_include_prompt=True, state_backend="memory")
        clock = SimClock(start)
        by_key = {t.key: t for t in tasks}
        agents = SimulatedAgents(cfg, by_key, clock, rng, workload.error_rate, workload.output_tokens_per_second,
                                 workload.unseen_use)
        key_vars = {v for p in cfg.providers.values() for v in (p.api_key_env, *(a.api_key_env for a in p.accounts))
                    if v}
        environ = {"PATH": "/simulated", "HOME": tmp, **dict.fromkeys(sorted(key_vars), "simulated")}
        engine = Engine(cfg, store=MemoryStore(), clock=clock, sleep=clock.sleep, runner=agents, environ=environ,
                        which=lambda name: f"/simulated/{name}")
        tier1 = cfg.providers[cfg.chain[0]] if cfg.chain else None
        for task in sorted(tasks, key=lambda t: t.at):  # stable: equal times keep their given order
            clock.now = max(clock.now, task.at)  # one task at a time: a late task waits for the one before
            seen = len(agents.rejections)
            result_ = engine.run(task.task, prompt=f"simulated task {task.key}", workdir=tmp, now=clock.now)
            _tally(result, result_, task, agents, tier1, seen)
        engine.close()
        _tier_exhaustion(result)
        result.audit_path = audit_path
    result.elapsed_s = time.perf_counter() - began
    return result


def _check_span(start: datetime, days: int, tasks: list[SimTask]) -> None:
    """UsageError (naming --start) unless the simulated span, from `start` to the later of its last day and the
    last task's arrival, plus a day for the last tasks' attempts, lies in the years adws routes at."""
    problem = time_problem(start)
    if problem is None:
        end = max([start + timedelta(days=days), *(t.at for t in tasks)])
        # (a day added only once `end` is in range: a task's arrival may be in the year 9999)
        if time_problem(end) or time_problem(end + timedelta(days=1)):
            problem = (f"the simulated span {start.isoformat()} to {end.isoformat()} leaves the times adws routes at "
                       f"(the years {FIRST_YEAR} to {LAST_YEAR})")
    if problem:
        raise UsageError(f"--start: {problem}")


def _tally(sim: Simulation, result: Any, task: SimTask, agents: SimulatedAgents, tier1: ProviderSpec | None,
           seen: int) -> None:
    sim.tasks += 1
    sim.attempts += len(result.attempts)
    decision = result.decision
    day = decision.now.astimezone(UTC).date().isoformat()
    for skip in decision.skipped:
        if skip.account is not None and ("quota" in skip.reason or "cooling down" in skip.reason):
            sim.accounts.setdefault(f"{skip.provider}/{skip.account}", _Account()).block(decision.now, skip.until)
        elif skip.account is None and (skip.reason.startswith("no usable account") or "quota" in skip.reason):
            name = f"{skip.provider}/{DEFAULT_ACCOUNT}" if not agents.config.providers[skip.provider].accounts \
                else None
            if name:
                sim.accounts.setdefault(name, _Account()).block(decision.now, skip.until)
            tier = sim.tiers.setdefault(skip.provider, {"exhausted_at": None, "capacity_returns": None})
            if tier["exhausted_at"] is None:
                tier["exhausted_at"] = _iso(decision.now)
                tier["capacity_returns"] = _iso(skip.until)
    for at, provider, account, reset in agents.rejections[seen:]:
        acc = sim.accounts.setdefault(f"{provider}/{account}", _Account())
        acc.rejected += 1
        acc.rejected_at = acc.rejected_at or at
        acc.block(at, reset)
        sim.rejected[f"{provider}/{account}"] += 1
    if result.success:
        sim.succeeded += 1
        last = result.attempts[-1]
        sim.landed[f"{last.provider}/{last.model}" if last.model else last.provider] += 1
        sim.landed_tier[last.provider] += 1
        sim.per_day[day][last.provider] += 1
    else:
        sim.per_day[day]["(failed)"] += 1
    if tier1 is None or not result.attempts or result.attempts[-1].provider == tier1.name:
        return
    start = decision.now
    names = [a.name for a in tier1.accounts if a.enabled] or [DEFAULT_ACCOUNT]
    size = task.input_tokens + task.output_tokens
    # The model tier 1 would have run: its step in the plan, else its first declared model (for a pooled quota).
    model = next((s.model for s in decision.plan if s.provider == tier1.name), None) or next(iter(tier1.models), None)
    if not agents.claim_room(tier1, names, start, size, model):
        return
    tried = {a.provider for a in result.attempts}
    skips = [s.reason for s in decision.skipped if s.provider == tier1.name]
    if tier1.name in tried:
        why = "tier 1 tried and failed"
    elif any("quota" in reason for reason in skips):
        why = "tier 1 at adws's hard block"
    elif any("cooling down" in reason for reason in skips):
        why = "tier 1 cooling down"
    elif skips:
        why = "tier 1 skipped: " + skips[-1]
    else:
        why = f"rule {decision.rule}" if decision.via == "rule" else f"{decision.via} routing"
    sim.below_tier1[why] += 1
    if len(sim.below_examples) < 5:
        sim.below_examples.append(f"{task.key} → {result.attempts[-1].provider} ({why})")


def _tier_exhaustion(sim: Simulation) -> None:
    """A tier whose accounts were all blocked at once, seen from the accounts (for tiers the router never
    skipped whole because a rule kept it out of the plan)."""
    for name, provider in sim.config.providers.items():
        if name in sim.tiers or not provider.accounts:
            continue
        accounts = [sim.accounts.get(f"{name}/{a.name}") for a in provider.accounts if a.enabled]
        if accounts and all(a is not None and a.blocked_at for a in accounts):
            blocked = [a for a in accounts if a is not None]
            sim.tiers[name] = {"exhausted_at": _iso(max(a.blocked_at for a in blocked if a.blocked_at)),
                               "capacity_returns": min((a.episodes[0][1] for a in blocked if a.episodes[0][1]),
                                                       default=None)}


def render(sim: Simulation) -> str:
    d = sim.to_dict()
    lines = [f"simulated {d['days']} day(s) from {d['start']} (seed {d['seed']}): {counted(d['tasks'], 'task')}, "
             f"{d['succeeded']} succeeded, {d['failed']} failed, {counted(d['attempts'], 'attempt')}"]
    lines.append("where tasks landed:")
    for tier, count in d["landed"].items():
        lines.append(f"  {tier:<14}{count:>6}  {count / max(d['tasks'], 1):>4.0%}")
    columns = [*d["landed"], *(["(failed)"] if d["failed"] else [])]
    if d["per_day"] and columns:
        lines.append("per day:      " + " ".join(f"{c:>12}" for c in columns))
        for day, counts in d["per_day"].items():
            lines.append(f"  {day:<11}" + " ".join(f"{counts.get(c, 0):>12}" for c in columns))
    if d["tiers"]:
        lines.append("tiers out of quota:")
        for tier, info in d["tiers"].items():
            lines.append(f"  {tier:<14} from {info['exhausted_at']}, capacity returns {info['capacity_returns']}")
    out = {k: v for k, v in d["accounts"].items() if v["blocked_at"] or v["rejected_at"]}
    if out:
        lines.append("accounts out of quota (adws stopped using it / provider refused / capacity returns):")
        for name, info in out.items():
            lines.append(f"  {name:<22} {info['blocked_at'] or '-':<26} {info['rejected_at'] or '-':<26} "
                         f"{info['capacity_returns'] or '-'}")
    below = d["below_tier1_with_room"]
    lines.append(f"sent below tier 1 while tier 1 had room: {below['total']}")
    for why, count in below.items():
        if why not in ("total", "examples"):
            lines.append(f"  {why}: {count}")
    lines.append(f"rejected attempts: {sum(d['rejected_attempts'].values())}")
    for name, count in d["rejected_attempts"].items():
        lines.append(f"  {name}: {count}")
    if d["audit"]:
        lines.append(f"audit log: {d['audit']} (try `adws stats --audit {d['audit']}`)")
    return "\n".join(lines)


def default_start() -> datetime:
    """This week's Monday 00:00 UTC: a week that starts fresh on weekly quotas, the same all week long."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=today.weekday())
