"""A test-time world with true quotas: agents that spend real tokens and refuse, the way Claude Code does, once an
account is spent, announcing the true reset. Driven through the public API (`Engine.run`) with an injected clock.

The world knows what adws cannot: each task's true size and each account's true remaining quota. It records every
attempt with that truth beside it, so the figures of issue 11 can be measured:
- tasks sent below tier 1 while a tier-1 account had room for them;
- the share of tier-1 capacity used when tier 2 takes its first task;
- rejected attempts per account per period;
- the share of tasks on tier 1 after the reset.

Outputs are the recorded Claude Code stream-json of tests/data/outputs (a success with its usage, a `rejected`
rate_limit_event with `resetsAt`), with the figures of this world written in.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adws.attempt import RunOutcome
from adws.quota import CronPeriod
from adws.runner import RunRequest

OUTPUTS = Path(__file__).parent / "data" / "outputs"
TIER1 = "antigravity"
WEEKLY = "0 0 * * 0"  # Sunday 00:00 UTC
START = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)  # a Monday: the week runs into Sunday's reset and past it

CONFIG = """
[routing]
chain = ["antigravity", "copilot", "cline"]

[routing.intake]
default_priority = "normal"

[providers.antigravity]
command_template = ["claude", "-p", "--model", "{{ model }}", "--output-format", "stream-json", "--verbose"]
prompt = "stdin"
output_format = "claude-stream-json"
account_strategy = "{strategy}"
{need}
[providers.antigravity.models."claude-sonnet-4.6"]
context_window = 200000
latency_ms = 854

[providers.antigravity.quota]
tokens = 500000
reset = "0 0 * * 0"
{hard_block}
{accounts}

[providers.copilot]
command_template = ["copilot", "-p", "{{ prompt }}", "--output-format", "json"]
prompt = "arg"
output_format = "claude-stream-json"
[providers.copilot.models."haiku-4.5"]
context_window = 200000
latency_ms = 150

[providers.cline]
command_template = ["cline", "-y", "--json"]
prompt = "stdin"
output_format = "claude-stream-json"
[providers.cline.models.integrated]
context_window = 262000
latency_ms = 150

[run]
dir = "{run_dir}"
keep_runs = 5

[audit]
enabled = false
"""


def world_config(run_dir: str, *, strategy: str = "least_used", need: str = "", hard_block: str = "",
                 accounts: int = 8) -> str:
    names = "".join(f'[[providers.antigravity.accounts]]\nname = "ag-{i:02d}"\n' for i in range(1, accounts + 1))
    text = CONFIG
    for name, value in (("strategy", strategy), ("need", need), ("hard_block", hard_block), ("accounts", names),
                        ("run_dir", run_dir)):
        text = text.replace("{" + name + "}", value)
    return text


@dataclass
class Sent:
    """One attempt as the world saw it."""

    task: str
    provider: str
    account: str
    at: datetime
    tokens: int  # the task's true size
    rejected: bool
    tier1_room: bool  # some tier-1 account had true room for the whole task when this attempt started


@dataclass
class World:
    clock: Callable[[], datetime]
    limit: int = 500_000
    accounts: tuple[str, ...] = tuple(f"ag-{i:02d}" for i in range(1, 9))
    sizes: dict[str, int] = field(default_factory=dict)  # task key -> true tokens
    used: dict[tuple[str, datetime], int] = field(default_factory=dict)  # (account, period start) -> tokens
    log: list[Sent] = field(default_factory=list)
    period: CronPeriod = field(default_factory=lambda: CronPeriod(WEEKLY, UTC))

    def left(self, account: str, now: datetime) -> int:
        return self.limit - self.used.get((account, self.period.start(now)), 0)

    def tier1_used(self, now: datetime) -> int:
        return sum(self.limit - self.left(a, now) for a in self.accounts)

    def runner(self, request: RunRequest) -> RunOutcome:
        env = request.env
        provider, account, task = env["ADWS_PROVIDER"], env["ADWS_ACCOUNT"], env["ADWS_TASK_ID"]
        now = self.clock()
        tokens = self.sizes[task]
        room = any(self.left(a, now) >= tokens for a in self.accounts)
        rejected = False
        if provider == TIER1:
            left = self.left(account, now)
            key = (account, self.period.start(now))
            if left <= 0:
                rejected, spent = True, 0
            elif left < tokens:  # cut off mid-run: the remainder is spent, then the limit refuses
                rejected, spent = True, left
            else:
                spent = tokens
            self.used[key] = self.used.get(key, 0) + spent
        else:
            spent = tokens
        self.log.append(Sent(task, provider, account, now, tokens, rejected, room))
        reset = self.period.next_reset(now)
        stdout = rejection_output(reset, spent) if rejected else success_output(spent)
        return outcome(request, stdout, 1 if rejected else 0)


def outcome(request: RunRequest, stdout: str, exit_code: int) -> RunOutcome:
    """What adws.runner would report for a child that printed `stdout` and exited with `exit_code`."""
    out = Path(request.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stdout.log").write_text(stdout, encoding="utf-8")
    (out / "stderr.log").write_text("", encoding="utf-8")
    return RunOutcome(argv=list(request.argv), exit_code=exit_code, signal=None, timed_out=False, duration_ms=1000,
                      stdout_path=str(out / "stdout.log"), stderr_path=str(out / "stderr.log"), stdout_tail=stdout,
                      stderr_tail="", stdout_bytes=len(stdout), stderr_bytes=0, truncated=False)


def _records(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (OUTPUTS / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def success_output(tokens: int, warning: dict[str, Any] | None = None) -> str:
    """Claude Code's recorded success with `tokens` as its usage; `warning`: a rate_limit_info to send first."""
    lines = [json.dumps({"type": "rate_limit_event", "rate_limit_info": warning})] if warning else []
    for record in _records("claude-stream-success.jsonl"):
        if record.get("type") == "result":
            record["usage"] = {"input_tokens": tokens * 3 // 4, "output_tokens": tokens - tokens * 3 // 4,
                               "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def rejection_output(reset: datetime, spent: int) -> str:
    """Claude Code's recorded usage-limit rejection, announcing `reset`, after spending `spent` tokens."""
    lines = []
    for record in _records("claude-stream-usage-limit.jsonl"):
        if record.get("type") == "rate_limit_event":
            record["rate_limit_info"] |= {"resetsAt": int(reset.timestamp()), "rateLimitType": "seven_day"}
        if record.get("type") == "result":
            record["usage"] = {"input_tokens": spent, "output_tokens": 0, "cache_creation_input_tokens": 0,
                               "cache_read_input_tokens": 0}
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


@dataclass
class Figures:
    tasks: int
    below_tier1_with_room: int
    share_at_first_tier2: float | None  # of tier-1 capacity, when tier 2 took its first task
    max_rejections_per_account_period: int
    after_reset_on_tier1: float | None
    tier1_share_used_in_week: float

    def lines(self) -> list[str]:
        share = "never" if self.share_at_first_tier2 is None else f"{self.share_at_first_tier2:.1%}"
        after = "-" if self.after_reset_on_tier1 is None else f"{self.after_reset_on_tier1:.0%}"
        return [f"tasks: {self.tasks}",
                f"tasks sent below tier 1 while a tier-1 account had room for them: {self.below_tier1_with_room}",
                f"share of tier-1 capacity used before tier 2 took its first task: {share}",
                f"rejected attempts per account per period, at most: {self.max_rejections_per_account_period}",
                f"tasks on tier 1 after the reset: {after}",
                f"tier-1 capacity used in the week: {self.tier1_share_used_in_week:.1%}"]


def run_week(engine_factory: Callable[[World], Any], workdir: str, *, tasks: int = 200, seed: int = 11,
             after_reset: int = 30) -> tuple[World, Figures]:
    """`tasks` tasks of 10K-60K tokens arriving evenly over the week from Monday 00:00, then `after_reset`
    more on the Sunday after the reset. `engine_factory(world)` builds the Engine (the world's clock and runner
    injected)."""
    rng = random.Random(seed)
    now = [START]
    world = World(clock=lambda: now[0])
    engine = engine_factory(world)
    reset = world.period.next_reset(START)
    step = (reset - START) / tasks
    times = [START + step * i + timedelta(minutes=1) for i in range(tasks)]
    times += [reset + timedelta(hours=1) + timedelta(minutes=20) * i for i in range(after_reset)]
    first_tier2: float | None = None
    for i, at in enumerate(times):
        # 10K-60K, most of them small: about 26.7K on average, 5.3M tokens for 200 tasks (the "~5M").
        size = int(rng.triangular(10_000, 60_000, 10_000))
        key = f"T-{i}"
        world.sizes[key] = size
        now[0] = at
        task = {"id": key, "title": f"task {i}", "context_tokens": size}
        before = len(world.log)
        engine.run(task, prompt=f"do task {i}", workdir=workdir)
        for sent in world.log[before:]:
            if sent.provider != TIER1 and first_tier2 is None:
                first_tier2 = world.tier1_used(sent.at) / (world.limit * len(world.accounts))
    week = [s for s in world.log if s.at < reset]
    final = _final_by_task(week)
    below = sum(1 for s in final if s.provider != TIER1 and s.tier1_room)
    rejections: dict[tuple[str, datetime], int] = {}
    for s in world.log:
        if s.rejected:
            k = (s.account, world.period.start(s.at))
            rejections[k] = rejections.get(k, 0) + 1
    after = _final_by_task([s for s in world.log if s.at >= reset])
    on_tier1 = sum(1 for s in after if s.provider == TIER1) / len(after) if after else None
    used_week = world.tier1_used(reset - timedelta(seconds=1)) / (world.limit * len(world.accounts))
    return world, Figures(tasks, below, first_tier2, max(rejections.values(), default=0), on_tier1, used_week)


def _final_by_task(sent: list[Sent]) -> list[Sent]:
    """The first attempt of each task that was not a rejection on tier 1 (where the task went in the end)."""
    out: dict[str, Sent] = {}
    for s in sent:
        if s.task not in out and not (s.provider == TIER1 and s.rejected):
            out[s.task] = s
    return list(out.values())
