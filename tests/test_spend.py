"""One account judged for one task: pools, hard block, observations, reservations and the fit test together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from adws.attempt import Usage
from adws.config.load import compile_config, parse_toml
from adws.need import Need
from adws.pools import governing
from adws.spend import Judgement, judge_governed
from adws.state.base import Observation

NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
SUNDAY = datetime(2026, 11, 15, tzinfo=UTC)
NEED = Need(32000, "median of 40 code runs")


def judge(quota: Any, account: str, model: str | None, need: Need | None, **figures: Any) -> Judgement:
    """The verdict for `account` taking a task of `need` tokens on `model`, under `quota` (None: no quota)."""
    return judge_governed(governing(quota, account, model), need, **figures)

CONFIG = """
[providers.ag]
command_template = ["ag", "{{ model }}"]
prompt = "stdin"
[providers.ag.models."claude-sonnet-4.6"]
context_window = 200000
[providers.ag.models."gemini-3-pro"]
context_window = 1000000
[providers.ag.quota]
tokens = 500000
reset = "0 0 * * 0"
hard_block_percent = 99  # with fit-aware choice the hard block can sit higher: it is only the upper bound
[providers.ag.quota.pools.claude]
models = ["claude-*"]
tokens = 300000
reset = "0 0 * * 0"
"""
QUOTA = compile_config(parse_toml(CONFIG)).providers["ag"].quota


def used(tokens: int) -> Usage:
    return Usage(requests=3, input_tokens=tokens)


def test_the_issue_example() -> None:
    verdict = judge(QUOTA, "ag-03", "gemini-3-pro", NEED, usage=used(482000), reserved_tokens=0, observation=None,
                    period_start=SUNDAY, now=NOW)
    assert (verdict.subject, verdict.usable) == ("ag-03", False)
    assert verdict.reason == "18,000 tokens left < ~32,000 expected (median of 40 code runs)"


def test_a_small_task_still_fits_where_the_fixed_block_would_have_benched_the_account() -> None:
    # 90.4% used: over the 90% the old fixed block could have been set to; 48,000 left covers 32,000.
    verdict = judge(QUOTA, "ag-03", "gemini-3-pro", NEED, usage=used(452000), reserved_tokens=0, observation=None,
                    period_start=SUNDAY, now=NOW)
    assert verdict.usable and round(verdict.percent, 1) == 90.4


def test_the_hard_block_stays_an_upper_bound() -> None:
    verdict = judge(QUOTA, "ag-03", "gemini-3-pro", Need(1, "fixed figure"), usage=used(496000), reserved_tokens=0,
                    observation=None, period_start=SUNDAY, now=NOW)
    assert verdict.reason == "quota 99% used (hard block at 99%)"


def test_the_model_picks_the_pool() -> None:
    verdict = judge(QUOTA, "ag-03", "claude-sonnet-4.6", NEED, usage=used(280000), reserved_tokens=0,
                    observation=None, period_start=SUNDAY, now=NOW)
    assert (verdict.subject, verdict.pool) == ("ag-03/claude", "claude")
    assert verdict.reason == "20,000 tokens left < ~32,000 expected (median of 40 code runs) (claude pool)"


def test_reservations_count_for_fit_and_order() -> None:
    verdict = judge(QUOTA, "ag-03", "gemini-3-pro", NEED, usage=used(400000), reserved_tokens=70000,
                    observation=None, period_start=SUNDAY, now=NOW)
    assert verdict.reason == "30,000 tokens left < ~32,000 expected (median of 40 code runs)"
    assert (verdict.percent, verdict.committed_percent) == (80.0, 94.0)


def test_an_observation_higher_than_the_ledger_wins() -> None:
    seen = Observation("ag", "ag-03", NOW - timedelta(minutes=12), 99.5, "usage_command",
                       reset_at=NOW + timedelta(days=3))
    verdict = judge(QUOTA, "ag-03", "gemini-3-pro", NEED, usage=used(100000), reserved_tokens=0, observation=seen,
                    period_start=SUNDAY, now=NOW)
    assert verdict.reason == ("quota 100% used (hard block at 99%) "
                              "[ledger 20.0%, observed 99.5% (usage_command 12m ago): observed counts]")
    assert verdict.observed == "ledger 20.0%, observed 99.5% (usage_command 12m ago): observed counts"
    lower = Observation("ag", "ag-03", NOW, 85.0, "usage_command")
    fit = judge(QUOTA, "ag-03", "gemini-3-pro", NEED, usage=used(100000), reserved_tokens=0, observation=lower,
                period_start=SUNDAY, now=NOW)
    assert fit.usable and fit.percent == 85.0  # 75,000 left by the observation still covers 32,000
    tight = judge(QUOTA, "ag-03", "gemini-3-pro", Need(80000, "fixed figure"), usage=used(100000),
                  reserved_tokens=0, observation=lower, period_start=SUNDAY, now=NOW)
    assert tight.reason == ("75,000 tokens left < ~80,000 expected (fixed figure) "
                            "[ledger 20.0%, observed 85.0% (usage_command 0m ago): observed counts]")


def test_an_unmetered_account_is_always_usable() -> None:
    verdict = judge(None, "x", "m", NEED, usage=None, reserved_tokens=10**9, observation=None, period_start=None,
                    now=NOW)
    assert verdict.usable and verdict.subject == "x" and verdict.percent == 0.0
