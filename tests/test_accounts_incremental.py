"""Rankings kept account by account across state changes (adws.accounts._Ranked): after a change of some quota
subjects, only their accounts are judged again, and every answer is the one a snapshot read from scratch gives."""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import adws.accounts
from adws.accounts import StatefulAccounts
from adws.attempt import Usage
from adws.availability import Availability
from adws.compiled import CompiledConfig
from adws.config.load import compile_config, parse_toml
from adws.need import Need
from adws.state import MemoryStore, SqliteStore, StateStore, UsageRecord
from adws.state.base import Cooldown, Observation, StateStoreError
from adws.strategies import STRATEGIES, Candidate, OrderContext

NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
MODELS = ("claude-sonnet", "gemini-pro")

CONFIG = """
[routing]
chain = ["ag"]

[providers.ag]
command_template = ["claude", "-p", "--model", "{{ model }}"]
prompt = "stdin"
output_format = "claude-stream-json"
account_strategy = "STRATEGY"
[providers.ag.models.claude-sonnet]
context_window = 200000
[providers.ag.models.gemini-pro]
context_window = 1000000
[providers.ag.quota]
tokens = 300000
reset = "0 0 * * 0"
hard_block_percent = 90
[providers.ag.quota.pools.claude]
models = ["claude-*"]
tokens = 100000
reset = "0 0 * * 0"
ACCOUNTS
"""


def config(strategy: str = "least_used", accounts: int = 6) -> CompiledConfig:
    names = "".join(f'[[providers.ag.accounts]]\nname = "a{i}"\n' for i in range(accounts))
    text = CONFIG.replace("STRATEGY", strategy).replace("ACCOUNTS", names)
    return compile_config(parse_toml(text), "test-config")


def accounts_on(cfg: CompiledConfig, store: StateStore, tier_scores: bool = True) -> StatefulAccounts:
    return StatefulAccounts(dict(cfg.providers), Availability({}, lambda name: f"/bin/{name}"), store,
                            tier_scores=tier_scores)


def rank(accounts: StatefulAccounts, cfg: CompiledConfig, model: str | None, need: Need | None,
         task_key: str | None = None, now: datetime = NOW) -> adws.accounts.Ranking:
    accounts.generation(now)
    return accounts.rank(cfg.providers["ag"], task_key, now, model=model, need=need)


def count_judgements(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = adws.accounts.judge_governed

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(adws.accounts, "judge_governed", counted)
    return calls


def test_one_new_usage_row_judges_one_account_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(accounts=40)
    path = str(tmp_path / "state.sqlite3")
    with SqliteStore(path) as reader, SqliteStore(path) as writer:
        for i in range(40):
            writer.record_usage(UsageRecord("ag", f"a{i}", NOW - timedelta(hours=1), Usage(1, 100 * i, 0)))
        accounts = accounts_on(cfg, reader)
        judged = count_judgements(monkeypatch)
        first = rank(accounts, cfg, None, None)
        assert judged[0] == 40
        assert first.eligible[:3] == ["a0", "a1", "a2"]
        writer.record_usage(UsageRecord("ag", "a0", NOW, Usage(1, 10_000, 0)))  # another process writes
        second = rank(accounts, cfg, None, None)
        assert judged[0] == 41  # only a0 was judged again
        assert second.eligible[:2] == ["a1", "a2"] and second.eligible[-1] == "a0"
        assert first.eligible[0] == "a0"  # what was handed out before is left as it was
        assert second == rank(accounts_on(cfg, reader), cfg, None, None)
        rank(accounts, cfg, None, None)
        assert judged[0] == 41 + 40  # the fresh snapshot above judged everything; this one nothing more


def test_a_usage_row_of_one_pool_judges_only_the_accounts_ranked_on_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config()
    store = MemoryStore()
    accounts = accounts_on(cfg, store)
    judged = count_judgements(monkeypatch)
    rank(accounts, cfg, "claude-sonnet", None)
    rank(accounts, cfg, "gemini-pro", None)
    assert judged[0] == 12
    store.record_usage(UsageRecord("ag", "a3/claude", NOW, Usage(1, 5_000, 0)))
    claude = rank(accounts, cfg, "claude-sonnet", None)
    gemini = rank(accounts, cfg, "gemini-pro", None)
    assert judged[0] == 13  # a3 on the claude pool; the gemini ranking reads a3's own quota, untouched
    assert claude.eligible[-1] == "a3" and gemini.eligible[-1] == "a5"


def test_after_another_process_writes_only_the_kinds_it_wrote_are_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config()
    path = str(tmp_path / "state.sqlite3")
    with SqliteStore(path) as reader, SqliteStore(path) as writer:
        accounts = accounts_on(cfg, reader)
        rank(accounts, cfg, None, None)
        reads: list[str] = []
        for name in ("cooldowns", "reservations", "observations", "breakers", "active_slots", "usage_totals"):
            real = getattr(reader, name)
            monkeypatch.setattr(reader, name,
                                lambda *a, _real=real, _name=name, **k: reads.append(_name) or _real(*a, **k))
        writer.record_usage(UsageRecord("ag", "a1", NOW, Usage(1, 500, 0)))
        rank(accounts, cfg, None, None)
        assert reads == []  # the new row came from usage_since; no other kind moved
        writer.set_cooldown("ag", "a2", Cooldown(NOW + timedelta(hours=2), "rate limited"))
        assert "a2" not in rank(accounts, cfg, None, None).eligible
        assert reads == ["cooldowns"]


_AGE = re.compile(r"\(usage_command \d+m ago\)")


def _aged(ranking: adws.accounts.Ranking) -> adws.accounts.Ranking:
    """`ranking` with the age of an observation in its skip reasons left out: a skip judged a minute ago says
    "0m ago" until something changes (the one part of a kept answer that moves with the clock alone)."""
    return dataclasses.replace(ranking, skipped=[dataclasses.replace(skip, reason=_AGE.sub("(usage_command)",
                                                                                           skip.reason))
                                                 for skip in ranking.skipped])


class _UncountedStore(MemoryStore):
    """A store that keeps no change counters (as Redis's): every change re-reads each kind and diffs it."""

    def change_counts(self) -> None:  # type: ignore[override]
        return None


@pytest.mark.parametrize("tier_scores", [True, False])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("backend", ["memory", "sqlite", "uncounted"])
def test_incremental_rankings_answer_what_a_fresh_read_answers(strategy: str, backend: str, tier_scores: bool,
                                                               tmp_path: Path) -> None:
    """Random writes of every kind that ranking reads; after each, every cached input's ranking is compared
    with a snapshot read from scratch, and when the generation (the plan cache's key) did not move, with what it
    answered before: a change may keep the generation only when no answer moved (but the first account's
    percent, where no tier scores read it)."""
    cfg = config(strategy)
    rng = random.Random(f"{strategy}-{backend}")
    if backend == "sqlite":
        path = str(tmp_path / "state.sqlite3")
        store: StateStore = SqliteStore(path)
        writer: StateStore = SqliteStore(path)  # another process's connection
    else:
        store = writer = MemoryStore() if backend == "memory" else _UncountedStore()
    accounts = accounts_on(cfg, store, tier_scores)
    needs = [None, Need(20_000, "declared"), Need(20_000, "median of 9 code runs"), Need(60_000, "declared")]
    before: dict[tuple[str | None, Need | None], adws.accounts.Ranking] = {}
    generation = accounts.generation(now := NOW)
    kept = 0
    subjects = [f"a{i}{pool}" for i in range(6) for pool in ("", "/claude")]
    for step in range(60):
        now += timedelta(seconds=rng.choice([0, 1, 30]))
        kind = rng.randrange(8)
        subject = rng.choice(subjects)
        if kind <= 2:
            writer.record_usage(UsageRecord("ag", subject, now - timedelta(minutes=rng.randrange(5)),
                                            Usage(1, rng.randrange(1, 30_000), 0)))
        elif kind == 3:
            writer.set_cooldown("ag", subject, Cooldown(now + timedelta(seconds=rng.choice([20, 600])), "rate limited"))
        elif kind == 4:
            writer.clear_cooldown("ag", subject)
        elif kind == 5:
            writer.reserve("ag", subject, f"h{rng.randrange(3)}", rng.randrange(1, 40_000), now,
                           now + timedelta(seconds=rng.choice([15, 900])))
        elif kind == 6:
            writer.record_observation(Observation("ag", subject, now, float(rng.randrange(0, 100)), "usage_command",
                                                  reset_at=now + timedelta(seconds=rng.choice([40, 3600]))))
        else:
            writer.next_cursor("round_robin:ag")
            writer.set_sticky("sticky:ag:7", f"a{rng.randrange(6)}")
        fresh = accounts_on(cfg, store)
        moved = accounts.generation(now) != generation
        generation = accounts.generation(now)
        kept += not moved
        for model in (None, *MODELS):
            for need in needs:
                task_key = "7" if STRATEGIES[strategy].depends_on_task else None
                got = rank(accounts, cfg, model, need, task_key, now)
                assert _aged(got) == _aged(rank(fresh, cfg, model, need, task_key, now)), (step, model, need)
                old = before.get((model, need))
                if not moved and old is not None:
                    if not tier_scores:
                        old = dataclasses.replace(old, first_percent=got.first_percent)
                    assert got == old, (step, model, need)
                before[model, need] = got
        assert accounts.generation(now) == generation  # ranking asks nothing more of the store
    if writer is not store:
        writer.close()
    store.close()
    assert kept > 0  # some changes left every answer as it was, and kept the generation


def test_an_observation_stops_blocking_at_its_reset_without_any_write() -> None:
    cfg = config()
    store = MemoryStore()
    store.record_observation(Observation("ag", "a0", NOW, 95.0, "usage_command", reset_at=NOW + timedelta(hours=1)))
    accounts = accounts_on(cfg, store)
    assert "a0" not in rank(accounts, cfg, None, None).eligible
    assert "a0" not in rank(accounts, cfg, None, None, now=NOW + timedelta(minutes=59)).eligible
    assert "a0" in rank(accounts, cfg, None, None, now=NOW + timedelta(hours=1)).eligible


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_strategy_order_does_not_depend_on_the_order_candidates_come_in(strategy: str) -> None:
    """The ranking cache hands a strategy the candidates in its previous order, not file order."""
    cfg = config(strategy, accounts=30)
    provider = cfg.providers["ag"]
    store = MemoryStore()
    store.next_cursor("round_robin:ag")
    store.set_sticky("sticky:ag:7", "a11")
    rng = random.Random(strategy)
    candidates = [Candidate(a.name, a.position, float(rng.randrange(4)), Usage(1, rng.randrange(3) * 100, 0))
                  for a in provider.runs_as]
    key = STRATEGIES[strategy].sort_key(OrderContext(provider, "7", store))
    assert len({key(c) for c in candidates}) == len(candidates)  # keys never tie
    expected = [c.name for c in sorted(candidates, key=key)]
    for _ in range(10):
        rng.shuffle(candidates)
        assert [c.name for c in sorted(candidates, key=key)] == expected


@pytest.mark.parametrize("order", ["chain", "by_score"])
def test_after_a_write_on_one_provider_only_its_plan_steps_are_built_again(
        order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from adws.engine import Engine
    from tests.test_accounts import WEDNESDAY, config_text, use

    text = config_text().replace("[routing]\n", f'[routing]\nscoring = {{ order = "{order}" }}\n', 1)
    cfg = compile_config(parse_toml(text), "test-config")
    store = MemoryStore()
    engine = Engine(cfg, store=store, environ={}, which=lambda name: f"/bin/{name}")
    router = engine.router
    built: list[str] = []
    real = router._new_step

    def counted(provider: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(provider.name)
        return real(provider, *args, **kwargs)

    monkeypatch.setattr(router, "_new_step", counted)
    task = {"title": "t"}
    first = engine.route(task, now=WEDNESDAY)
    assert built == ["claude", "copilot"]
    use(store, "a", 40_000)  # claude's account a
    second = engine.route(task, now=WEDNESDAY)
    assert built == ["claude", "copilot", "claude"]  # copilot's step was kept
    assert first.plan[0].accounts == ("a", "b", "c") and second.plan[0].accounts == ("b", "c", "a")
    fresh = Engine(cfg, store=store, environ={}, which=lambda name: f"/bin/{name}").route(task, now=WEDNESDAY)
    assert [s.to_dict() for s in second.plan] == [s.to_dict() for s in fresh.plan]
    assert [s.to_dict() for s in second.skipped] == [s.to_dict() for s in fresh.skipped]
    use(store, "default", 1, provider="copilot")  # the implicit account's usage moves only its percent, which only
    third = engine.route(task, now=WEDNESDAY)   # tier scores read: copilot's step again where the plan scores tiers
    assert built == ["claude", "copilot", "claude"] + (["copilot"] if order == "by_score" else [])
    fresh = Engine(cfg, store=store, environ={}, which=lambda name: f"/bin/{name}").route(task, now=WEDNESDAY)
    assert third.to_dict() == fresh.to_dict()


class AppendsDuringTheFirstRead(MemoryStore):
    """A store another coordinator writes to while this one reads its period totals (once)."""

    def __init__(self) -> None:
        super().__init__()
        self.totals_read = 0

    def usage_totals(self, since: Any, until: Any = None) -> Any:
        self.totals_read += 1
        totals = super().usage_totals(since, until)
        if self.totals_read == 1:  # lands after the totals were read, before the cursor is compared
            self.record_usage(UsageRecord("ag", "a0", NOW, Usage(1, 250_000, 0)))
        return totals


def test_a_row_appended_while_the_totals_are_read_is_counted_once() -> None:
    cfg = config(accounts=2)
    store = AppendsDuringTheFirstRead()
    accounts = accounts_on(cfg, store)
    ranking = rank(accounts, cfg, None, None)
    assert store.totals_read == 2 * 2  # two quota groups (the account's, the claude pool's), read twice: the
    # cursor moved during the first read
    assert ranking.eligible == ["a1", "a0"]  # a0's 250,000 of 300,000 counted
    again = rank(accounts, cfg, None, None)
    assert again == rank(accounts_on(cfg, store), cfg, None, None)  # not counted a second time
    assert again.first_percent == 0.0


def test_a_usage_row_that_moves_no_account_keeps_every_cached_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    from adws.engine import Engine
    from tests.test_accounts import WEDNESDAY, config_text, use

    cfg = compile_config(parse_toml(config_text("fill_first")), "test-config")
    store = MemoryStore()
    engine = Engine(cfg, store=store, environ={}, which=lambda name: f"/bin/{name}")
    planned: list[object] = []
    real = engine.router._plan
    monkeypatch.setattr(engine.router, "_plan", lambda *args: planned.append(args) or real(*args))
    task = {"title": "t"}
    first = engine.route(task, now=WEDNESDAY)
    use(store, "b", 40_000)  # fill_first: b stays second, a is still first with the same percent
    second = engine.route(task, now=WEDNESDAY)
    assert len(planned) == 1  # the plan built before the row still stands
    fresh = Engine(cfg, store=store, environ={}, which=lambda name: f"/bin/{name}").route(task, now=WEDNESDAY)
    assert second.to_dict() == first.to_dict() == fresh.to_dict()
    use(store, "a", 96_000)  # past the hard block: a drops out, and the plan is built again
    third = engine.route(task, now=WEDNESDAY)
    assert len(planned) == 2 and third.plan[0].accounts == ("b", "c")


def test_one_new_usage_row_asks_the_strategy_key_of_one_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """Among many accounts, the re-judged one is moved to its place by binary search over the kept keys: the
    strategy's key is computed for it alone, not for every account."""
    cfg = config("best_fit", accounts=200)
    store = MemoryStore()
    for i in range(200):
        store.record_usage(UsageRecord("ag", f"a{i}", NOW - timedelta(hours=1), Usage(1, 1_000 * (i % 50), 0)))
    keys = [0]
    real = STRATEGIES["best_fit"].sort_key

    def counting(ctx: OrderContext) -> Any:
        key = real(ctx)
        return lambda candidate: keys.__setitem__(0, keys[0] + 1) or key(candidate)

    monkeypatch.setattr(STRATEGIES["best_fit"], "sort_key", counting)
    accounts = accounts_on(cfg, store)
    need = Need(20_000, "declared")
    rank(accounts, cfg, None, need)
    keys[0] = 0
    store.record_usage(UsageRecord("ag", "a7", NOW, Usage(1, 150_000, 0)))
    moved = rank(accounts, cfg, None, need)
    assert keys[0] == 1
    assert moved == rank(accounts_on(cfg, store), cfg, None, need)
    assert moved.eligible[0] == "a7"  # the smallest leftover that still fits goes first


def test_beyond_the_rankings_kept_the_least_recently_used_one_is_dropped_at_a_change(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A change keeps the most recently used KEPT_RANKINGS rankings current (one judgement each for a usage row)
    and drops the rest, instead of starting every ranking over."""
    monkeypatch.setattr(adws.accounts, "KEPT_RANKINGS", 2)
    cfg = config()
    store = MemoryStore()
    accounts = accounts_on(cfg, store)
    old, used, new = None, Need(20_000, "declared"), Need(60_000, "declared")
    for need in (old, used, new, used):  # `old` is now the least recently used
        rank(accounts, cfg, None, need)
    judged = count_judgements(monkeypatch)
    generation = accounts.generation(NOW)
    store.record_usage(UsageRecord("ag", "a5", NOW, Usage(1, 10, 0)))  # a5 keeps its place: no kept answer moves
    assert accounts.generation(NOW) != generation  # but the dropped ranking read a5: its cached plans must go
    assert [r.inp.need for r in accounts._rankings.values()] == [new, used]  # least recently used first
    assert judged[0] == 2  # a5 in each kept ranking, nothing else
    for need in (old, used, new):
        assert rank(accounts, cfg, None, need) == rank(accounts_on(cfg, store), cfg, None, need)
    assert judged[0] == 2 + 6 + 3 * 6  # `old` built again from the snapshot, and the three fresh reads


def test_a_dropped_rankings_provider_gets_a_new_stamp(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan step cached for a dropped ranking holds its answer; no later change could move it once the ranking
    is gone, so dropping it moves its provider's stamp (and the generation), and the next step ranks afresh."""
    monkeypatch.setattr(adws.accounts, "KEPT_RANKINGS", 1)
    cfg = config()
    store = MemoryStore()
    accounts = accounts_on(cfg, store)
    rank(accounts, cfg, "gemini-pro", None)  # the answer a cached plan step for gemini holds
    rank(accounts, cfg, "claude-sonnet", None)
    generation, stamp = accounts.generation(NOW), accounts.stamp("ag")
    store.record_usage(UsageRecord("ag", "a5/claude", NOW, Usage(1, 10, 0)))  # the gemini ranking reads a5 only
    assert accounts.generation(NOW) > generation and accounts.stamp("ag") > stamp
    assert [r.inp.model for r in accounts._rankings.values()] == ["claude-sonnet"]
    store.record_usage(UsageRecord("ag", "a0", NOW, Usage(1, 290_000, 0)))  # a0's gemini pool is spent
    assert rank(accounts, cfg, "gemini-pro", None) == rank(accounts_on(cfg, store), cfg, "gemini-pro", None)
    assert rank(accounts, cfg, "gemini-pro", None).eligible[0] != "a0"


class FailsOnce(MemoryStore):
    """A store whose cooldowns cannot be read once (a lock held past the busy timeout, a network blip)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def cooldowns(self, now: datetime) -> Any:
        if self.fail:
            self.fail = False
            raise StateStoreError("state store memory: database is locked")
        return super().cooldowns(now)


def test_a_refresh_that_fails_midway_is_read_again_in_full() -> None:
    """The usage rows a failed refresh had already added were never judged: the next refresh must not take them as
    seen (the cursor, version and counters are kept only once a refresh is through)."""
    cfg = config()
    store = FailsOnce()
    accounts = accounts_on(cfg, store)
    assert rank(accounts, cfg, None, None).eligible[0] == "a0"
    store.record_usage(UsageRecord("ag", "a0", NOW, Usage(1, 200_000, 0)))
    store.set_cooldown("ag", "a5", Cooldown(NOW + timedelta(hours=1), "rate limited"))
    store.fail = True
    with pytest.raises(StateStoreError):
        accounts.generation(NOW)
    again = rank(accounts, cfg, None, None)
    assert again == rank(accounts_on(cfg, store), cfg, None, None)
    assert again.eligible[-1] == "a0" and "a5" not in again.eligible
    # A refresh that fails in a period rollover with no write since (the same version): the starts it had already
    # computed are not taken as the snapshot's, and the next refresh reads the new week in full.
    store.record_usage(UsageRecord("ag", "a1", NOW, Usage(1, 290_000, 0)))
    store.clear_cooldown("ag", "a5")  # no end left to watch: nothing but the rollover makes the snapshot stale
    assert "a1" not in rank(accounts, cfg, None, None).eligible
    sunday = datetime(2026, 11, 22, 0, 5, tzinfo=UTC)  # past the weekly reset
    store.fail = True
    with pytest.raises(StateStoreError):
        accounts.generation(sunday)
    after = rank(accounts, cfg, None, None, now=sunday)
    assert after == rank(accounts_on(cfg, store), cfg, None, None, now=sunday)
    assert after.eligible == [f"a{i}" for i in range(6)]  # a new week: every account is back


def test_needs_of_the_same_figures_share_one_ranking_and_each_skip_quotes_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(accounts=3)
    store = MemoryStore()
    store.record_usage(UsageRecord("ag", "a1", NOW, Usage(1, 250_000, 0)))  # 50,000 left: too little for 60,000
    accounts = accounts_on(cfg, store)
    judged = count_judgements(monkeypatch)
    code, docs = Need(60_000, "median of 9 code runs"), Need(60_000, "median of 7 docs runs")
    first, second = rank(accounts, cfg, None, code), rank(accounts, cfg, None, docs)
    assert len(accounts._rankings) == 1
    assert judged[0] == 3 + 1  # every account once, and the one that does not fit again in the other wording
    assert [s.reason for s in first.skipped] == ["50,000 tokens left < ~60,000 expected (median of 9 code runs)"]
    assert [s.reason for s in second.skipped] == ["50,000 tokens left < ~60,000 expected (median of 7 docs runs)"]
    assert first.eligible == second.eligible == ["a0", "a2"]
    store.record_usage(UsageRecord("ag", "a2", NOW, Usage(1, 5_000, 0)))
    for need in (code, docs):
        assert rank(accounts, cfg, None, need) == rank(accounts_on(cfg, store), cfg, None, need)


PRICED = """
[routing]
chain = ["ag"]
[providers.ag]
command_template = ["x", "{{ model }}"]
prompt = "stdin"
[providers.ag.models.cheap]
cost_per_1k_tokens = 0.001
context_window = 100000
[providers.ag.models.also-cheap]
cost_per_1k_tokens = 0.001
context_window = 100000
[providers.ag.models.dear]
cost_per_1k_tokens = 1.0
context_window = 100000
[providers.ag.quota]
LIMIT
reset = "0 0 * * 0"
[[providers.ag.accounts]]
name = "a0"
"""


@pytest.mark.parametrize("order", [("dear", "cheap"), ("cheap", "dear")])
def test_models_of_different_prices_do_not_share_a_ranking_where_a_quota_counts_cost(order: tuple[str, str]) -> None:
    """A budget check reads the model's price: with $5 of budget, 10,000 tokens fit on `cheap` ($0.01), not on
    `dear` ($10), whichever is asked first. Models of one price, or any models where no quota counts cost, share."""
    cfg = compile_config(parse_toml(PRICED.replace("LIMIT", "cost_usd = 5.0")), "test-config")
    accounts = accounts_on(cfg, MemoryStore())
    need = Need(10_000, "declared")
    usable = {model: rank(accounts, cfg, model, need).usable for model in order}
    assert usable == {"dear": False, "cheap": True}
    assert "$5.00 left < ~$10.00" in rank(accounts, cfg, "dear", need).skipped[0].reason
    assert rank(accounts, cfg, "also-cheap", need).usable
    assert len(accounts._rankings) == 2  # cheap and also-cheap share theirs
    assert rank(accounts, cfg, "dear", None).usable  # without a need, no price is read: one ranking for all
    assert rank(accounts, cfg, "cheap", None).usable and len(accounts._rankings) == 3
    tokens = compile_config(parse_toml(PRICED.replace("LIMIT", "tokens = 100000")), "test-config")
    accounts = accounts_on(tokens, MemoryStore())
    assert all(rank(accounts, tokens, model, need).usable for model in order)
    assert len(accounts._rankings) == 1


def test_rankings_stay_consistent_when_threads_rank_and_refresh_at_once() -> None:
    """The router ranks under the engine's lock, a run checks its reservation from its own thread, and a third
    records usage: the accounts object serializes them (a dict changed during iteration, or a ranking whose parallel
    lists fell out of step, otherwise). Switching threads every microsecond makes the interleavings likely."""
    import sys
    import threading

    interval = sys.getswitchinterval()
    cfg = config(accounts=40)
    store = MemoryStore()
    accounts = accounts_on(cfg, store)
    provider = cfg.providers["ag"]
    errors: list[BaseException] = []

    def reader(offset: int) -> None:
        try:
            for i in range(400):
                now = NOW + timedelta(seconds=i % 50)
                accounts.generation(now)
                accounts.rank(provider, None, now, model=None, need=Need(1_000 + (i % 40) * 7 + offset, "declared"))
        except BaseException as exc:  # kept, and asserted empty below
            errors.append(exc)

    def writer() -> None:
        try:
            for i in range(400):
                store.record_usage(UsageRecord("ag", f"a{i % 40}", NOW, Usage(1, 100 + i % 997, 0)))
                accounts.generation(NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(2)] + [threading.Thread(target=writer)]
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    for ranked in accounts._rankings.values():
        assert [c.name for c in ranked.candidates] == ranked.names
        assert ranked.keys == sorted(ranked.keys) and len(ranked.keys) == len(ranked.candidates)
    for need in (None, Need(1_000, "declared"), Need(1_280, "declared")):
        assert rank(accounts, cfg, None, need) == rank(accounts_on(cfg, store), cfg, None, need)
