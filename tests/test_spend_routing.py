"""Fit-aware choice end to end through Engine: pools, reservations, learned needs, observations, short limits that
wait, tier orders by score and by price, usage commands before a run."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adws.attempt import RunOutcome, Usage
from adws.config.load import compile_config, parse_toml
from adws.engine import Engine
from adws.runner import RunRequest
from adws.state import MemoryStore, UsageRecord
from adws.state.base import Cooldown
from adws.task import Task
from tests.helpers import Clock
from tests.world import outcome, rejection_output, success_output

NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
SUNDAY = datetime(2026, 11, 15, tzinfo=UTC)

BASE = """
[routing]
chain = ["ag", "cheap", "free"]

[providers.ag]
command_template = ["claude", "-p", "--model", "{{ model }}"]
prompt = "stdin"
output_format = "claude-stream-json"
account_strategy = "STRATEGY"
EXTRA
[providers.ag.models."claude-sonnet-4.6"]
context_window = 200000
latency_ms = 854
cost_per_1k_tokens = 0.003
specializations = { general = 80 }
[providers.ag.models."gemini-3-pro"]
context_window = 1000000
latency_ms = 851
cost_per_1k_tokens = 0.003
specializations = { general = 70 }
[providers.ag.quota]
hard_block_percent = 100
[providers.ag.quota.pools.claude]
models = ["claude-*"]
tokens = 100000
reset = "0 0 * * 0"
[providers.ag.quota.pools.gemini]
models = ["gemini-*"]
tokens = 100000
reset = "0 0 * * 0"
[[providers.ag.accounts]]
name = "a1"
[[providers.ag.accounts]]
name = "a2"

[providers.cheap]
command_template = ["cheap"]
prompt = "stdin"
output_format = "claude-stream-json"
[providers.cheap.models.c1]
context_window = 200000
latency_ms = 200
cost_per_1k_tokens = 0.001
specializations = { general = 85 }

[providers.free]
command_template = ["free"]
prompt = "stdin"
output_format = "claude-stream-json"
[providers.free.models.f1]
context_window = 8000
latency_ms = 5000
specializations = { general = 50 }

[run]
dir = "RUNS"
[audit]
enabled = false
"""


class Agents:
    """A runner that answers per (provider, account) with a queue of outputs (default: success of 10K tokens)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.script: dict[tuple[str, str], list[str]] = {}

    def __call__(self, request: RunRequest) -> RunOutcome:
        key = (request.env["ADWS_PROVIDER"], request.env["ADWS_ACCOUNT"])
        self.calls.append((*key, request.env["ADWS_MODEL"]))
        queue = self.script.get(key)
        stdout = queue.pop(0) if queue else success_output(10_000)
        return outcome(request, stdout, 1 if '"status": "rejected"' in stdout else 0)


def engine_for(tmp_path: Path, *, strategy: str = "least_used", extra: str = "need = { tokens = 30000 }",
               routing: str = "", clock: Callable[[], datetime] | None = None,
               sleep: Callable[[float], None] = lambda s: None) -> tuple[Engine, Agents, MemoryStore]:
    text = BASE.replace("STRATEGY", strategy).replace("EXTRA", extra).replace("RUNS", str(tmp_path / "runs"))
    text = text.replace("[routing]\n", "[routing]\n" + routing, 1)
    agents, store = Agents(), MemoryStore()
    engine = Engine(compile_config(parse_toml(text), base_dir=str(tmp_path)), store=store, runner=agents,
                    clock=clock or Clock(NOW), sleep=sleep, environ={"PATH": "/bin"},
                    which=lambda name: "/bin/" + name)
    return engine, agents, store


def use(store: MemoryStore, subject: str, tokens: int, provider: str = "ag") -> None:
    store.record_usage(UsageRecord(provider, subject, NOW - timedelta(hours=1), Usage(1, tokens, 0)))


TASK: dict[str, Any] = {"id": "T-1", "title": "a general task"}


def test_a_claude_limit_does_not_bench_gemini_on_the_same_account(tmp_path: Path) -> None:
    engine, _, store = engine_for(tmp_path)
    store.set_cooldown("ag", "a1/claude", Cooldown(NOW + timedelta(days=1), "quota_exhausted"))
    use(store, "a2/claude", 90_000)  # 10,000 left: less than the 30,000 expected
    claude = engine.route(TASK, now=NOW)
    assert claude.plan[0].provider == "cheap"
    reasons = {(s.account, s.reason) for s in claude.skipped if s.account}
    assert ("a1", "cooling down (claude pool): quota_exhausted") in reasons
    assert ("a2", "10,000 tokens left < ~30,000 expected (fixed figure) (claude pool)") in reasons
    gemini = engine.route({**TASK, "labels": ["route:ag/gemini-3-pro"]}, now=NOW)
    assert (gemini.provider, gemini.model, gemini.account) == ("ag", "gemini-3-pro", "a1")


def test_usage_and_cooldowns_of_a_run_go_to_its_pool(tmp_path: Path) -> None:
    engine, agents, store = engine_for(tmp_path)
    agents.script[("ag", "a1")] = [rejection_output(NOW + timedelta(days=2), 5_000)]
    result = engine.run(TASK, prompt="do it", workdir=str(tmp_path))
    assert [(a.account, a.outcome) for a in result.attempts] == [("a1", "quota_exhausted"), ("a2", "success")]
    totals = store.usage_totals({"ag": SUNDAY})
    assert totals[("ag", "a1/claude")].total_tokens == 5_000
    assert totals[("ag", "a2/claude")].total_tokens == 10_000
    assert set(store.cooldowns(NOW)) == {("ag", "a1/claude")}
    assert store.reservations(NOW) == {}  # released: the real usage replaced them


def test_a_reservation_counts_for_least_used_and_for_the_fit_test(tmp_path: Path) -> None:
    engine, _, store = engine_for(tmp_path)
    use(store, "a1/claude", 20_000)
    use(store, "a2/claude", 30_000)
    assert engine.route(TASK, now=NOW).account == "a1"
    # Another coordinator's run in flight on a1 (reserved 30,000): a2 now has more left.
    store.reserve("ag", "a1/claude", "other", 30_000, NOW, NOW + timedelta(minutes=30))
    assert engine.route(TASK, now=NOW).plan[0].accounts == ("a2", "a1")
    # A bigger one leaves a1 too little for this task (100,000 - 20,000 - 60,000 = 20,000 < 30,000).
    store.reserve("ag", "a1/claude", "other", 60_000, NOW, NOW + timedelta(minutes=30))
    decision = engine.route(TASK, now=NOW)
    assert decision.plan[0].accounts == ("a2",)
    assert any(s.reason.startswith("20,000 tokens left < ~30,000") for s in decision.skipped)
    # The coordinator died: its reservation runs out like a lease.
    assert engine.route(TASK, now=NOW + timedelta(minutes=31)).plan[0].accounts == ("a1", "a2")


def test_fill_first_counts_reservations(tmp_path: Path) -> None:
    engine, _, store = engine_for(tmp_path, strategy="fill_first")
    use(store, "a1/claude", 50_000)
    assert engine.route(TASK, now=NOW).account == "a1"
    store.reserve("ag", "a1/claude", "other", 30_000, NOW, NOW + timedelta(minutes=30))
    assert engine.route(TASK, now=NOW).plan[0].accounts == ("a2",)  # 20,000 left on a1 after the reservation


def test_a_coordinator_that_reserved_second_moves_to_the_next_account(tmp_path: Path) -> None:
    engine, agents, store = engine_for(tmp_path)
    decision = engine.route(TASK, now=NOW)
    assert decision.account == "a1"
    # Between this coordinator's decision and its run, another one (same snapshot, same choice) reserved a1.
    store.reserve("ag", "a1/claude", "other", 30_000, NOW, NOW + timedelta(minutes=30))
    result = engine.manager.run(Task.from_dict(TASK), decision, prompt="p", workdir=str(tmp_path))
    assert [a.account for a in result.attempts] == ["a2"]
    assert agents.calls == [("ag", "a2", "claude-sonnet-4.6")]


def test_when_runs_started_since_the_decision_took_every_account_the_tier_is_passed(tmp_path: Path) -> None:
    # The four-coordinator day found it: a coordinator whose planned account lost its room to runs started since
    # its decision, with no other account of the tier left, started the run anyway and the limit cut it off.
    engine, agents, store = engine_for(tmp_path)
    decision = engine.route(TASK, now=NOW)
    assert decision.plan[0].accounts == ("a1", "a2")
    for account in ("a1", "a2"):  # other coordinators' runs now hold all but 20,000 of each account
        store.reserve("ag", f"{account}/claude", f"other-{account}", 80_000, NOW, NOW + timedelta(minutes=30))
    result = engine.manager.run(Task.from_dict(TASK), decision, prompt="p", workdir=str(tmp_path))
    first = result.attempts[0]
    assert (first.provider, first.outcome, first.action) == ("ag", "unavailable", "next_tier")
    assert first.reason.startswith("no ag account can take ~30,000 tokens any more")
    assert "20,000 tokens left < ~30,000" in first.reason
    assert [call for call in agents.calls if call[0] == "ag"] == []
    assert result.success and result.attempts[-1].provider == "cheap"
    assert store.reservations(NOW)[("ag", "a1/claude")] == ((80_000, NOW + timedelta(minutes=30)),)  # none of ours


def test_learned_need_is_the_median_of_recent_successful_runs(tmp_path: Path) -> None:
    engine, agents, store = engine_for(tmp_path, extra="need = { tokens = 30000, learned_runs = 5, min_runs = 3 }")
    assert engine.route(TASK, now=NOW).plan[0].need.describe() == (  # type: ignore[union-attr]
        "~30,000 expected (fixed figure; only 0 general runs recorded, 3 needed to learn)")
    for i, tokens in enumerate((12_000, 18_000, 40_000)):
        agents.script[("ag", "a1")] = [success_output(tokens)]
        agents.script[("ag", "a2")] = [success_output(tokens)]
        engine.run({**TASK, "id": f"T-{i}"}, prompt="p", workdir=str(tmp_path))
    assert store.recent_runs("ag", "general", 5) == [40_000, 18_000, 12_000]
    need = engine.route(TASK, now=NOW).plan[0].need
    assert need is not None and need.describe() == "~18,000 expected (median of 3 general runs)"


def test_claude_allowed_warning_becomes_an_observation_that_routing_heeds(tmp_path: Path) -> None:
    engine, agents, store = engine_for(tmp_path)
    reset = int((NOW + timedelta(days=2)).timestamp())
    agents.script[("ag", "a1")] = [success_output(1_000, {"status": "allowed_warning", "utilization": 0.95,
                                                          "resetsAt": reset, "rateLimitType": "seven_day"})]
    engine.run(TASK, prompt="p", workdir=str(tmp_path))
    [(key, seen)] = store.observations().items()
    assert (key, seen.percent, seen.source) == (("ag", "a1/claude"), pytest.approx(95.0), "ag output (seven_day)")
    # The ledger says 1% used; the account says 95%: 5,000 left, too little for 30,000.
    decision = engine.route(TASK, now=NOW)
    assert decision.account == "a2"
    assert any(s.account == "a1" and s.reason.startswith("5,000 tokens left < ~30,000") for s in decision.skipped)


def test_a_short_limit_waits_and_retries_the_same_account(tmp_path: Path) -> None:
    clock = Clock(NOW)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += timedelta(seconds=seconds)

    engine, agents, _ = engine_for(tmp_path, extra="wait_for_reset = 90", clock=clock, sleep=sleep)
    agents.script[("ag", "a1")] = [rejection_output(NOW + timedelta(seconds=40), 0)]
    result = engine.run(TASK, prompt="p", workdir=str(tmp_path))
    assert [(a.account, a.outcome, a.action, a.waited_seconds) for a in result.attempts] == [
        ("a1", "rate_limited", "wait_for_reset", 40.0), ("a1", "success", "stop", 0.0)]
    assert slept == [40.0]
    assert result.to_dict()["attempts"][0]["waited_seconds"] == 40.0


def test_a_long_limit_rotates(tmp_path: Path) -> None:
    engine, agents, _ = engine_for(tmp_path, extra="wait_for_reset = 90")
    agents.script[("ag", "a1")] = [rejection_output(NOW + timedelta(hours=2), 0)]
    result = engine.run(TASK, prompt="p", workdir=str(tmp_path))
    assert [(a.account, a.action) for a in result.attempts] == [("a1", "next_account"), ("a2", "stop")]


def test_tiers_by_score_with_every_component_in_explain(tmp_path: Path) -> None:
    engine, _, store = engine_for(tmp_path, routing='scoring = { order = "by_score", providers = { ag = '
                                  '{ quota = 0.5, latency = 0.3, fit = 0.2 } } }\n')
    use(store, "a1/claude", 80_000)
    use(store, "a2/claude", 60_000)
    decision = engine.route(TASK, now=NOW)
    # ag: 0.5×40 (a2 is 60% used) + 0.3×92.1 + 0.2×80 = 63.6; cheap: 0.4×100 + 0.3×100 + 0.3×85 = 95.5;
    # free: 0.4×100 + 0 + 0.3×50 = 55.
    assert [s.provider for s in decision.plan] == ["cheap", "ag", "free"]
    assert [round(s.total, 1) for s in decision.scores] == [95.5, 63.6, 55.0]
    text = engine.explain(TASK, now=NOW).render()
    assert "tier scores (plan ordered by score):" in text
    assert "  ag 63.6 = 0.5×quota 40.0 + 0.3×latency 92.1 + 0.2×fit 80.0" in text
    assert "    quota: 60.0% used; latency: 854 ms; fit: general score 80; cost: $0.003 per 1K tokens" in text
    as_json = decision.to_dict()
    assert as_json["order"] == "by_score" and as_json["scores"][0]["components"] == {
        "quota": 100.0, "latency": 100.0, "fit": 85.0, "cost": 66.67}


def test_cheapest_tier_that_fits(tmp_path: Path) -> None:
    engine, _, _ = engine_for(tmp_path, routing='scoring = { order = "cheapest" }\n')
    assert [s.provider for s in engine.route(TASK, now=NOW).plan] == ["free", "cheap", "ag"]
    too_big = engine.route({**TASK, "context_tokens": 100_000}, now=NOW)  # free's 8K window cannot hold it
    assert [s.provider for s in too_big.plan] == ["cheap", "ag"]


def test_usage_command_runs_before_a_run_when_due_never_on_route(tmp_path: Path) -> None:
    script = tmp_path / "usage.py"
    log = tmp_path / "calls.log"
    script.write_text(f"#!{sys.executable}\nimport json, sys\nopen({str(log)!r}, 'a').write(sys.argv[1] + '\\n')\n"
                      'print(json.dumps({"claude": {"used": 99000}}))\n', encoding="utf-8")
    script.chmod(0o755)
    clock = Clock(NOW)
    extra = (f'usage_command = ["{script}", "{{{{ account }}}}"]\nusage_sync_interval = "10m"\n'
             "need = { tokens = 30000 }")
    engine, _, store = engine_for(tmp_path, extra=extra, clock=clock)
    engine.route(TASK, now=NOW)
    assert not log.exists()  # route() never runs a usage command
    result = engine.run(TASK, prompt="p", workdir=str(tmp_path))
    assert log.read_text().split() == ["a1", "a2"]
    # Both accounts are observed at 99% of the claude pool: the run went below tier 1.
    assert result.provider == "cheap"
    assert {k: round(v.percent) for k, v in store.observations().items()} == {
        ("ag", "a1/claude"): 99, ("ag", "a2/claude"): 99}
    clock.now += timedelta(minutes=5)
    engine.run(TASK, prompt="p", workdir=str(tmp_path))
    assert log.read_text().split() == ["a1", "a2"]  # not due yet
    clock.now += timedelta(minutes=6)
    engine.run(TASK, prompt="p", workdir=str(tmp_path))
    assert log.read_text().split() == ["a1", "a2", "a1", "a2"]
    assert json.loads(json.dumps(result.to_dict()))["decision"]["plan"][0]["provider"] == "cheap"
