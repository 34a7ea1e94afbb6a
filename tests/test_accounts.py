"""Account selection within a tier: strategies, hard blocks, quota periods, cooldowns and skip reasons.

Runs go through `Engine.run` with the fake agent CLIs (tests/fakes) so that the cursor, sticky choices,
usage and cooldowns are written by the real ProviderManager. Quota fill levels are set by writing usage
records straight into the state store, which is what a run would have written, only exact.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adws.accounts import cursor_key, sticky_key
from adws.attempt import Usage
from adws.config.load import compile_config, parse_toml
from adws.engine import Engine
from adws.state import PENDING_POLL_S, SQLITE_POLL_S, Cooldown, MemoryStore, StateStore, UsageRecord
from adws.task import Task
from tests.helpers import FAKES_BIN, Clock

WEDNESDAY = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
SUNDAY = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)  # the weekly reset ("0 0 * * 0", UTC) after WEDNESDAY
DECEMBER = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # the monthly reset ("0 0 1 * *") after WEDNESDAY

CONFIG = """
[routing]
chain = ["claude", "copilot"]

[providers.claude]
command_template = ["claude", "-p", "--output-format", "stream-json", "--verbose", "--model", "{{ model }}"]
prompt = "stdin"
output_format = "claude-stream-json"
account_strategy = "STRATEGY"
[providers.claude.models.sonnet]
context_window = 200000
[providers.claude.quota]
tokens = 100000
reset = "0 0 * * 0"
timezone = "UTC"
QUOTA_EXTRA
[[providers.claude.accounts]]
name = "a"
[[providers.claude.accounts]]
name = "b"
[[providers.claude.accounts]]
name = "c"

[providers.copilot]
command_template = ["copilot", "-p", "{{ prompt }}", "--output-format", "json"]
prompt = "arg"
output_format = "copilot-json"
[providers.copilot.quota]
requests = 50
reset = "0 0 1 * *"
timezone = "UTC"
"""




def config_text(strategy: str = "least_used", quota_extra: str = "") -> str:
    return CONFIG.replace("STRATEGY", strategy).replace("QUOTA_EXTRA", quota_extra)


def fake_env(tmp_path: Path, now: datetime = WEDNESDAY, **scenarios: str) -> dict[str, str]:
    env = {
        "PATH": f"{FAKES_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path / "home"),
        "ADWS_STATE_PATH": str(tmp_path / "state.sqlite3"),
        "FAKE_NOW": str(int(now.timestamp())),  # announced reset times are computed from this
    }
    env.update({f"FAKE_SCENARIO_{k.upper()}": v for k, v in scenarios.items()})
    return env


MakeEngine = Callable[..., Engine]


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[MakeEngine]:
    engines: list[Engine] = []

    def make(text: str | None = None, env: dict[str, str] | None = None, clock: Clock | None = None,
             store: StateStore | None = None) -> Engine:
        config = compile_config(parse_toml(text or config_text()), "test-config", base_dir=str(tmp_path))
        engine = Engine(config, store=store, environ=env if env is not None else fake_env(tmp_path),
                        clock=clock or Clock(), sleep=lambda seconds: None)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def use(store: StateStore, account: str, tokens: int = 0, *, at: datetime = WEDNESDAY,
        provider: str = "claude", requests: int = 1) -> None:
    """Record usage as a finished attempt would have."""
    store.record_usage(UsageRecord(provider, account, at, Usage(requests, tokens, 0)))


def skips(engine: Engine, now: datetime, task: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [s.to_dict() for s in engine.route(task or {"title": "t"}, now=now).skipped]


def run(engine: Engine, tmp_path: Path, number: int = 1) -> Any:
    result = engine.run({"number": number, "title": "t"}, prompt="p", workdir=tmp_path)
    assert result.success, result.message
    return result


# -- strategies ---------------------------------------------------------------------------------------------


def test_least_used_orders_by_quota_left_and_keeps_file_order_on_ties(make_engine: MakeEngine) -> None:
    engine = make_engine()
    assert engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("a", "b", "c")  # all fresh
    use(engine.store, "a", 50_000)
    use(engine.store, "b", 10_000)
    use(engine.store, "c", 10_000)
    decision = engine.route({"title": "t"}, now=WEDNESDAY)
    assert decision.account == "b"
    assert decision.plan[0].accounts == ("b", "c", "a")  # b and c tie: file order


def test_least_used_moves_on_after_a_run_uses_quota(make_engine: MakeEngine, tmp_path: Path) -> None:
    engine = make_engine()
    use(engine.store, "a", 50_000)
    result = run(engine, tmp_path)
    assert result.account == "b"
    assert engine.route({"title": "t"}, now=WEDNESDAY).account == "c"  # b now carries the run's 4,368 tokens


def test_round_robin_rotates_across_runs_with_the_cursor_in_the_store(
        make_engine: MakeEngine, tmp_path: Path) -> None:
    engine = make_engine(config_text("round_robin"))
    # Routing is pure: asking twice does not move the cursor.
    assert engine.route({"title": "t"}, now=WEDNESDAY).account == "a"
    assert engine.route({"title": "t"}, now=WEDNESDAY).account == "a"
    assert [run(engine, tmp_path, n).account for n in range(4)] == ["a", "b", "c", "a"]
    # The cursor counts turns (account = cursor mod 3): 4 is the position after "a", the last account used.
    assert engine.store.peek_cursor(cursor_key("claude")) == 4
    assert engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("b", "c", "a")


def test_round_robin_is_shared_by_two_engines_on_one_sqlite_file(
        make_engine: MakeEngine, tmp_path: Path) -> None:
    text = config_text("round_robin")
    first, second = make_engine(text), make_engine(text)
    got = [run(engine, tmp_path, n).account for n, engine in enumerate([first, second, first, second, second])]
    assert got == ["a", "b", "c", "a", "b"]


def test_round_robin_turns_are_taken_atomically_by_coordinators_running_at_once(
        make_engine: MakeEngine, tmp_path: Path) -> None:
    text = config_text("round_robin")
    first, second = make_engine(text), make_engine(text)
    task = Task(number=1, title="t")
    # Both decide at the same moment (both would start on "a")...
    early = first.route(task, now=WEDNESDAY)
    assert early.account == second.route(task, now=WEDNESDAY).account == "a"
    # ...then the second runs first; the first, running on its earlier decision, takes the next turn.
    assert run(second, tmp_path).account == "a"
    _ = first.store  # Engine.run attaches the store before it routes; calling the manager directly, we do
    late = first.manager.run(task, early, prompt="p", workdir=tmp_path)
    assert late.account == "b"


def test_round_robin_skips_a_blocked_account_without_losing_its_turn_order(
        make_engine: MakeEngine, tmp_path: Path) -> None:
    engine = make_engine(config_text("round_robin"))
    run(engine, tmp_path)  # a; the cursor now points at b
    engine.store.set_cooldown("claude", "b", Cooldown(WEDNESDAY + timedelta(hours=1), "rate_limited"))
    assert engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("c", "a")
    assert run(engine, tmp_path).account == "c"
    # The cursor moves past the account really used: "a" is next, "c" does not get two tasks in a row.
    assert engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("a", "c")


def test_fill_first_keeps_the_first_account_until_it_is_blocked(
        make_engine: MakeEngine, tmp_path: Path) -> None:
    engine = make_engine(config_text("fill_first"))
    use(engine.store, "b", 0)  # b is emptier than a, and fill_first does not care
    assert [run(engine, tmp_path, n).account for n in range(3)] == ["a", "a", "a"]
    use(engine.store, "a", 95_000)
    assert run(engine, tmp_path).account == "b"
    assert engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("b", "c")


def test_sticky_keeps_the_issue_on_its_account_and_moves_when_it_is_blocked(
        make_engine: MakeEngine, tmp_path: Path) -> None:
    clock = Clock()
    engine = make_engine(config_text("sticky"), clock=clock)
    assert run(engine, tmp_path, 7).account == "a"  # first time: least used, file order
    assert engine.store.get_sticky(sticky_key("claude", "#7")) == "a"
    use(engine.store, "a", 30_000)
    # Issue 7 stays on a although it is now the fullest; another issue goes to the least used.
    assert run(engine, tmp_path, 7).account == "a"
    assert run(engine, tmp_path, 8).account == "b"
    assert run(engine, tmp_path, 7).account == "a"
    until = WEDNESDAY + timedelta(hours=2)
    engine.store.set_cooldown("claude", "a", Cooldown(until, "rate_limited"))
    assert run(engine, tmp_path, 7).account == "c"  # a blocked: least used of b (has #8's run) and c
    assert engine.store.get_sticky(sticky_key("claude", "#7")) == "c"
    clock.now = until  # a is back, but issue 7 now lives on c
    assert run(engine, tmp_path, 7).account == "c"


def test_sticky_moves_when_the_held_account_hits_its_hard_block(
        make_engine: MakeEngine, tmp_path: Path) -> None:
    engine = make_engine(config_text("sticky"))
    assert run(engine, tmp_path, 7).account == "a"
    use(engine.store, "a", 94_000)  # with the run's 4,368 tokens: 98.4%
    assert run(engine, tmp_path, 7).account == "b"
    assert engine.store.get_sticky(sticky_key("claude", "#7")) == "b"


def test_usage_recorded_by_one_engine_blocks_the_account_for_another(make_engine: MakeEngine) -> None:
    first = make_engine()
    first.store.set_sticky("unrelated", "x")  # the state file exists before the second coordinator starts
    second = make_engine()  # two coordinators on one SQLite file
    assert second.route({"title": "t"}, now=WEDNESDAY).account == "a"
    use(first.store, "a", 95_000)
    time.sleep(SQLITE_POLL_S)  # the documented bound: another process's commit is looked for this often
    assert second.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("b", "c")


def test_an_engine_started_before_the_state_file_existed_sees_it_in_route(make_engine: MakeEngine) -> None:
    first, second = make_engine(), make_engine()
    assert second.route({"title": "t"}, now=WEDNESDAY).account == "a"
    use(first.store, "a", 95_000)  # creates the file
    time.sleep(PENDING_POLL_S)  # the documented bound: a file created elsewhere is looked for this often
    assert second.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("b", "c")


# -- hard blocks and quota overrides -----------------------------------------------------------------------


def test_hard_block_at_the_default_95_percent(make_engine: MakeEngine) -> None:
    engine = make_engine()
    use(engine.store, "a", 94_999)
    assert engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("b", "c", "a")  # 94.999%: usable
    use(engine.store, "a", 1)
    assert engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("b", "c")
    assert skips(engine, WEDNESDAY) == [{"provider": "claude", "reason": "quota 95% used (hard block at 95%)",
                                         "account": "a", "until": SUNDAY.isoformat()}]


def test_hard_block_at_a_per_provider_percent(make_engine: MakeEngine) -> None:
    engine = make_engine(config_text(quota_extra="hard_block_percent = 80"))
    use(engine.store, "a", 79_999)
    assert "a" in engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts
    use(engine.store, "a", 1)
    assert skips(engine, WEDNESDAY) == [{"provider": "claude", "reason": "quota 80% used (hard block at 80%)",
                                         "account": "a", "until": SUNDAY.isoformat()}]


def test_an_account_quota_overrides_the_providers(make_engine: MakeEngine) -> None:
    text = config_text().replace('name = "c"', 'name = "c"\n[providers.claude.accounts.quota]\n'
                                 'tokens = 10000\nreset = "0 0 * * *"\ntimezone = "UTC"')
    engine = make_engine(text)
    for account in ("a", "b", "c"):
        use(engine.store, account, 9_500)
    # 9,500 tokens is 9.5% of a's and b's weekly 100K, but 95% of c's daily 10K, which resets at midnight.
    assert engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("a", "b")
    assert skips(engine, WEDNESDAY) == [{"provider": "claude", "reason": "quota 95% used (hard block at 95%)",
                                         "account": "c", "until": "2026-11-19T00:00:00+00:00"}]
    thursday = datetime(2026, 11, 19, 0, 0, tzinfo=UTC)
    assert engine.route({"title": "t"}, now=thursday).plan[0].accounts == ("c", "a", "b")  # c's day is fresh


# -- periods ------------------------------------------------------------------------------------------------


def test_usage_from_saturday_blocks_until_the_sunday_reset(make_engine: MakeEngine) -> None:
    engine = make_engine()
    saturday_noon = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    for account in ("a", "b", "c"):
        use(engine.store, account, 100_000, at=saturday_noon)
    saturday_night = datetime(2026, 11, 21, 23, 59, tzinfo=UTC)
    decision = engine.route({"title": "t"}, now=saturday_night)
    assert decision.provider == "copilot"
    assert [s.to_dict() for s in decision.skipped] == [
        *({"provider": "claude", "reason": "quota 100% used (hard block at 95%)", "account": name,
           "until": SUNDAY.isoformat()} for name in ("a", "b", "c")),
        {"provider": "claude", "reason": f"no usable account; the first is back at {SUNDAY.isoformat()}",
         "until": SUNDAY.isoformat()},
    ]
    # The same engine, the same question a couple of minutes later: a new week, every account fresh.
    decision = engine.route({"title": "t"}, now=SUNDAY + timedelta(minutes=1))
    assert (decision.provider, decision.plan[0].accounts, decision.skipped) == ("claude", ("a", "b", "c"), [])
    assert engine.route({"title": "t"}, now=SUNDAY).skipped == []  # the reset instant belongs to the new week


def test_rolling_window_frees_usage_as_it_ages_out(make_engine: MakeEngine) -> None:
    engine = make_engine(config_text().replace('reset = "0 0 * * 0"', 'window = "5h"'))
    ten = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
    use(engine.store, "a", 60_000, at=ten)
    use(engine.store, "a", 40_000, at=ten + timedelta(hours=1))
    assert skips(engine, ten + timedelta(hours=2)) == [{
        "provider": "claude", "reason": "quota 100% used (hard block at 95%)", "account": "a",
        "until": (ten + timedelta(hours=5)).isoformat()}]  # when the oldest record leaves the window
    # At 15:00:01 the 10:00 record is out; the 11:00 one still counts (40%).
    decision = engine.route({"title": "t"}, now=ten + timedelta(hours=5, seconds=1))
    assert decision.skipped == [] and decision.plan[0].accounts == ("b", "c", "a")
    decision = engine.route({"title": "t"}, now=ten + timedelta(hours=6, seconds=1))
    assert decision.plan[0].accounts == ("a", "b", "c")  # both out: a is fresh again


def test_moving_now_backwards_never_uses_a_later_snapshot(make_engine: MakeEngine) -> None:
    """Coordinators and tools pass `now` explicitly; an earlier `now` must see what was true then."""
    engine = make_engine(config_text().replace('reset = "0 0 * * 0"', 'window = "5h"'))
    use(engine.store, "a", 99_000, at=WEDNESDAY)
    assert engine.route({"title": "t"}, now=WEDNESDAY + timedelta(hours=6)).account == "a"  # aged out
    assert engine.route({"title": "t"}, now=WEDNESDAY + timedelta(hours=1)).account == "b"  # still in
    until = WEDNESDAY + timedelta(hours=2)
    engine.store.set_cooldown("claude", "b", Cooldown(until, "rate_limited"))
    assert engine.route({"title": "t"}, now=until + timedelta(hours=5)).account == "a"
    assert engine.route({"title": "t"}, now=until - timedelta(minutes=1)).account == "c"  # a full, b cooling


# -- cooldowns ----------------------------------------------------------------------------------------------


def test_a_cooled_account_comes_back_exactly_when_until_passes(
        make_engine: MakeEngine, tmp_path: Path) -> None:
    clock = Clock()
    engine = make_engine(env=fake_env(tmp_path, claude_a="limit_reset"), clock=clock)
    result = run(engine, tmp_path)
    assert [(a.account, a.outcome) for a in result.attempts] == [("a", "rate_limited"), ("b", "success")]
    until = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)  # the reset the fake announced
    assert result.attempts[0].reset_at == until
    assert engine.store.cooldowns(WEDNESDAY)[("claude", "a")] == Cooldown(until, "rate_limited")
    before = skips(engine, until - timedelta(seconds=1))
    assert before[0] == {"provider": "claude", "reason": "cooling down: rate_limited", "account": "a",
                         "until": until.isoformat()}
    assert engine.route({"title": "t"}, now=until - timedelta(seconds=1)).plan[0].accounts == ("c", "b")
    # The same engine (its snapshot is cached), at the instant the cooldown ends: a is back, first.
    decision = engine.route({"title": "t"}, now=until)
    assert decision.skipped == [] and decision.plan[0].accounts == ("a", "c", "b")


def test_a_cooldown_never_outlives_the_quota_reset(make_engine: MakeEngine, tmp_path: Path) -> None:
    friday = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)
    engine = make_engine(env=fake_env(tmp_path, now=friday, claude_a="quota_exhausted"), clock=Clock(friday))
    result = run(engine, tmp_path)
    first = result.attempts[0]
    assert (first.account, first.outcome) == ("a", "quota_exhausted")
    assert first.reset_at == friday + timedelta(days=3)  # the CLI announced Monday 13:00 ...
    assert engine.store.cooldowns(friday)[("claude", "a")].until == SUNDAY  # ... the week ends before that
    assert skips(engine, SUNDAY - timedelta(seconds=1))[0]["until"] == SUNDAY.isoformat()
    assert engine.route({"title": "t"}, now=SUNDAY).account == "a"


def test_a_cooldown_in_a_rolling_window_ends_when_the_oldest_usage_ages_out(
        make_engine: MakeEngine, tmp_path: Path) -> None:
    engine = make_engine(config_text("fill_first").replace('reset = "0 0 * * 0"', 'window = "5h"'),
                         env=fake_env(tmp_path, claude_a="quota_exhausted"))
    use(engine.store, "a", 1_000, at=WEDNESDAY - timedelta(hours=4))
    assert run(engine, tmp_path).attempts[0].reset_at == WEDNESDAY + timedelta(days=3)
    # The announced reset is days away, but a's oldest usage leaves the five-hour window in one hour.
    assert engine.store.cooldowns(WEDNESDAY)[("claude", "a")].until == WEDNESDAY + timedelta(hours=1)


# -- skip reasons -------------------------------------------------------------------------------------------


SKIPS_CONFIG = config_text().replace(
    '[[providers.claude.accounts]]\nname = "a"',
    '[[providers.claude.accounts]]\nname = "a"\nenabled = false',
).replace(
    '[[providers.claude.accounts]]\nname = "b"',
    '[[providers.claude.accounts]]\nname = "b"\napi_key_env = "KEY_B"',
) + '[[providers.claude.accounts]]\nname = "d"\n'


def test_skipped_names_each_accounts_reason_and_when_the_tier_is_back(make_engine: MakeEngine) -> None:
    engine = make_engine(SKIPS_CONFIG)
    cooling = WEDNESDAY + timedelta(hours=3)
    engine.store.set_cooldown("claude", "c", Cooldown(cooling, "rate_limited"))
    use(engine.store, "d", 100_000)
    decision = engine.route({"title": "t"}, now=WEDNESDAY)
    assert decision.provider == "copilot"
    assert [s.to_dict() for s in decision.skipped] == [
        {"provider": "claude", "reason": "account disabled", "account": "a"},
        {"provider": "claude", "reason": "credentials missing: KEY_B is not set", "account": "b"},
        {"provider": "claude", "reason": "cooling down: rate_limited", "account": "c",
         "until": cooling.isoformat()},
        {"provider": "claude", "reason": "quota 100% used (hard block at 95%)", "account": "d",
         "until": SUNDAY.isoformat()},
        {"provider": "claude", "reason": f"no usable account; the first is back at {cooling.isoformat()}",
         "until": cooling.isoformat()},
    ]


def test_no_usable_account_without_any_time_when_none_will_come_back(make_engine: MakeEngine) -> None:
    engine = make_engine(SKIPS_CONFIG.replace('name = "c"', 'name = "c"\nenabled = false')
                         .replace('name = "d"', 'name = "d"\napi_key_env = "KEY_B"'))
    assert skips(engine, WEDNESDAY)[-1] == {"provider": "claude", "reason": "no usable account"}


def test_an_account_both_cooling_and_over_quota_is_back_only_after_both(make_engine: MakeEngine) -> None:
    engine = make_engine(config_text().replace('[[providers.claude.accounts]]\nname = "b"\n', "")
                         .replace('[[providers.claude.accounts]]\nname = "c"\n', ""))
    use(engine.store, "a", 99_000)
    cooling = WEDNESDAY + timedelta(hours=2)  # a five-hour limit, while the weekly quota is also spent
    engine.store.set_cooldown("claude", "a", Cooldown(cooling, "rate_limited"))
    assert skips(engine, WEDNESDAY) == [
        {"provider": "claude", "reason": "cooling down: rate_limited; quota 99% used (hard block at 95%)",
         "account": "a", "until": SUNDAY.isoformat()},
        {"provider": "claude", "reason": f"no usable account; the first is back at {SUNDAY.isoformat()}",
         "until": SUNDAY.isoformat()},
    ]
    assert engine.route({"title": "t"}, now=cooling).provider == "copilot"  # the cooldown alone is not enough


def test_credentials_missing_then_set_between_decisions(make_engine: MakeEngine, tmp_path: Path) -> None:
    env = fake_env(tmp_path)
    engine = make_engine(SKIPS_CONFIG.replace("enabled = false", ""), env=env)
    use(engine.store, "a", 20_000)
    use(engine.store, "c", 20_000)
    use(engine.store, "d", 20_000)
    assert engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("a", "c", "d")
    env["KEY_B"] = "sk-b-0123456789"
    assert engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("b", "a", "c", "d")
    env["KEY_B"] = ""  # set but empty counts as missing
    assert "b" not in engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts


# -- a tier without accounts, with a quota (Copilot: 50 messages a month) -----------------------------------


def copilot_only(text: str) -> str:
    return text.replace('chain = ["claude", "copilot"]', 'chain = ["copilot", "claude"]')


def test_provider_without_accounts_is_skipped_when_its_monthly_requests_are_spent(
        make_engine: MakeEngine) -> None:
    engine = make_engine(copilot_only(config_text()), store=MemoryStore(None))
    use(engine.store, "default", provider="copilot", requests=47)
    decision = engine.route({"title": "t"}, now=WEDNESDAY)
    assert (decision.provider, decision.account, decision.plan[0].accounts) == ("copilot", None, ())
    use(engine.store, "default", provider="copilot", requests=1)  # 48/50 = 96% is over the 95% hard block
    decision = engine.route({"title": "t"}, now=WEDNESDAY)
    assert decision.provider == "claude"
    assert [s.to_dict() for s in decision.skipped] == [
        {"provider": "copilot", "reason": "quota 96% used (hard block at 95%)", "until": DECEMBER.isoformat()}]
    use(engine.store, "default", provider="copilot", requests=2)
    assert skips(engine, WEDNESDAY)[0]["reason"] == "quota 100% used (hard block at 95%)"
    assert engine.route({"title": "t"}, now=DECEMBER).provider == "copilot"  # a new month


def test_provider_without_accounts_cools_down_as_a_whole(make_engine: MakeEngine, tmp_path: Path) -> None:
    engine = make_engine(copilot_only(config_text()), env=fake_env(tmp_path, copilot="limit_reset"))
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert [(a.provider, a.account, a.outcome) for a in result.attempts][:1] == [
        ("copilot", None, "rate_limited")]
    until = engine.store.cooldowns(WEDNESDAY)[("copilot", "default")].until
    assert skips(engine, WEDNESDAY)[0] == {"provider": "copilot", "reason": "cooling down: rate_limited",
                                           "until": until.isoformat()}
    assert engine.route({"title": "t"}, now=until).provider == "copilot"


def test_least_used_without_a_quota_keeps_file_order(make_engine: MakeEngine) -> None:
    engine = make_engine(config_text().replace(
        '[providers.claude.quota]\ntokens = 100000\nreset = "0 0 * * 0"\ntimezone = "UTC"\n', ""))
    use(engine.store, "a", 1_000_000)  # nothing to be a share of: every account has all of "no limit" left
    assert engine.route({"title": "t"}, now=WEDNESDAY).plan[0].accounts == ("a", "b", "c")


# -- accounts resolved at load ---------------------------------------------------------------------------

RESOLVED = """
[routing]
chain = ["keyed", "plain"]
[providers.keyed]
command_template = ["agent", "{{ prompt }}"]
prompt = "arg"
api_key_env = "PROVIDER_KEY"
requires_api_key = true
env = { MODE = "fast", SHARED = "provider" }
[providers.keyed.quota]
requests = 10
window = "5h"
[[providers.keyed.accounts]]
name = "own"
api_key_env = "OWN_KEY"
env = { SHARED = "account" }
[providers.keyed.accounts.quota]
requests = 3
window = "1h"
[[providers.keyed.accounts]]
name = "borrowed"
[providers.plain]
command_template = ["agent", "{{ prompt }}"]
prompt = "arg"
api_key_env = "PLAIN_KEY"
"""


def test_every_provider_runs_as_resolved_accounts_the_implicit_one_included() -> None:
    config = compile_config(parse_toml(RESOLVED), "t", base_dir="/tmp")
    keyed, plain = config.providers["keyed"], config.providers["plain"]
    own, borrowed = keyed.runs_as
    assert (own.name, own.implicit, own.shown, own.position) == ("own", False, "own", 0)
    # Its own key is what must be set, and it is copied to where the CLI looks for the provider's key.
    assert (own.key_env, own.key_target, own.secret_vars) == ("OWN_KEY", "PROVIDER_KEY", ("PROVIDER_KEY", "OWN_KEY"))
    assert own.env == {"MODE": "fast", "SHARED": "account"}  # the account's env over the provider's
    assert own.quota is not None and own.quota.requests == 3
    # Without a key of its own, an account needs the provider's (required here) and shares its quota.
    assert (borrowed.key_env, borrowed.key_target, borrowed.secret_vars) == ("PROVIDER_KEY", None, ("PROVIDER_KEY",))
    assert borrowed.quota is keyed.quota
    assert keyed.key_vars == ("OWN_KEY", "PROVIDER_KEY")
    # A provider without accounts runs as the implicit "default": not shown, its key not required unless
    # the provider says so, still redacted.
    (implicit,) = plain.runs_as
    assert (implicit.name, implicit.implicit, implicit.shown, implicit.key_env) == ("default", True, None, None)
    assert implicit.secret_vars == ("PLAIN_KEY",) and plain.key_vars == ()
    assert plain.run_account(None) is implicit and keyed.run_account("borrowed") is borrowed
    assert plain.accounts == () and len(keyed.accounts) == 2  # the declared ones, as written
