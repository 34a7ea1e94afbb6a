"""Issue 11, measured: a week of tasks through the public API in a world with true quotas (tests/world.py).

Tier 1 is 8 accounts × 500K tokens a week, reset Sunday 00:00 UTC; 200 tasks of 10K-60K tokens (5.3M in all)
arrive evenly from Monday, then 30 more after the reset. The agents report their real usage and refuse, with
the true reset, once an account is spent (a run that outgrows what is left is cut off there).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws.config.load import compile_config, parse_toml
from adws.engine import Engine
from adws.runner import RunRequest
from adws.state import MemoryStore, SqliteStore
from adws.state.redis_store import RedisStore
from tests.world import TIER1, Figures, World, run_week, world_config

FIT = "need = { context_multiple = 1.0 }"  # the agents' real usage follows the task's declared size


def week(tmp_path: Path, *, strategy: str = "least_used", need: str = FIT, seed: int = 11) -> Figures:
    hard_block = "hard_block_percent = 100" if need else ""  # with the fit test the hard block is only a bound
    config = compile_config(parse_toml(world_config(str(tmp_path / "runs"), strategy=strategy, need=need,
                                                    hard_block=hard_block)), base_dir=str(tmp_path))
    _, figures = run_week(lambda w: Engine(config, store=MemoryStore(), clock=w.clock, runner=w.runner,
                                           sleep=lambda s: None, environ={"PATH": "/bin"},
                                           which=lambda name: "/bin/" + name), str(tmp_path), seed=seed)
    return figures


def test_without_the_fit_test_tasks_drop_below_tier_1_while_it_has_room(tmp_path: Path) -> None:
    # The starting point: the fixed 95% block benches accounts that still had room for the task.
    figures = week(tmp_path, need="")
    assert figures.below_tier1_with_room == 17


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_week_with_fit_aware_account_choice(tmp_path: Path, seed: int) -> None:
    figures = week(tmp_path, seed=seed)
    assert figures.below_tier1_with_room == 0
    assert figures.max_rejections_per_account_period <= 1
    assert figures.after_reset_on_tier1 == 1.0
    assert figures.tier1_share_used_in_week >= 0.985
    # least_used spreads the load, so the week ends with a little left on every account: the first task too big
    # for all of them goes to tier 2 with 2.5-5% of tier 1 unspent (the later, smaller tasks still use it, see
    # tier1_share_used_in_week). fill_first packs instead (below).
    assert figures.share_at_first_tier2 is not None and figures.share_at_first_tier2 >= 0.945


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_fill_first_packs_tier_1_before_tier_2_takes_a_task(tmp_path: Path, seed: int) -> None:
    figures = week(tmp_path, strategy="fill_first", seed=seed)
    assert figures.below_tier1_with_room == 0
    assert figures.max_rejections_per_account_period == 0
    assert figures.share_at_first_tier2 is not None and figures.share_at_first_tier2 >= 0.985


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_best_fit_packs_tier_1_and_keeps_its_pieces_usable(tmp_path: Path, seed: int) -> None:
    figures = week(tmp_path, strategy="best_fit", seed=seed)
    assert figures.below_tier1_with_room == 0
    assert figures.max_rejections_per_account_period == 0
    assert figures.after_reset_on_tier1 == 1.0
    # The end of a week is luck: seed 11 ends with two ~19K pieces and a 27.7K task, seed 12 with 11K-23K pieces
    # and a 37.5K task. Over many weeks best_fit's mean is above 99 % (tests/test_strategies.py measures the
    # ordering over 300 weeks; bench/bench_quota_week.py the whole engine).
    assert figures.share_at_first_tier2 is not None and figures.share_at_first_tier2 >= 0.985
    # Small tasks keep filling the pieces after the first spill.
    assert figures.tier1_share_used_in_week >= 0.995


class Contended(World):
    """Four coordinators at once: each round, every coordinator starts a task at the same simulated instant and
    all four runs are in flight together. A run is committed to its account when adws reserves it there (the
    store's `reserve`, watched below) and stays committed until it ends. Records every commitment that breaks the
    rule: an account taking a second concurrent run while another tier-1 account has more room (true remaining
    minus the runs committed to it)."""

    def __init__(self, clock: list[datetime]) -> None:
        super().__init__(clock=lambda: clock[0])
        self.lock = threading.Lock()
        self.committed: dict[str, list[int]] = {}
        self.violations: list[str] = []
        self.commitments = 0
        self.all_in_flight = threading.Barrier(4, timeout=30)
        self.first_call: set[str] = set()

    def room(self, account: str) -> int:
        return self.left(account, self.clock()) - sum(self.committed.get(account, []))

    def commit(self, account: str, tokens: int) -> None:
        with self.lock:
            self.commitments += 1
            mine = self.room(account)
            if self.committed.get(account):
                better = [a for a in self.accounts if a != account and self.room(a) > mine]
                if better:
                    self.violations.append(f"{tokens} tokens committed to busy {account} ({mine} room) while "
                                           f"{better[0]} had {self.room(better[0])}")
            self.committed.setdefault(account, []).append(tokens)

    def runner(self, request: RunRequest) -> object:  # type: ignore[override]
        provider, account, task = (request.env[k] for k in ("ADWS_PROVIDER", "ADWS_ACCOUNT", "ADWS_TASK_ID"))
        with self.lock:
            first = task not in self.first_call
            self.first_call.add(task)
        if first:
            self.all_in_flight.wait()  # the four runs overlap
        with self.lock:
            if provider == TIER1:
                self.committed[account].remove(self.sizes[task])
            return super().runner(request)


class WatchedSqlite(SqliteStore):
    """The shared SQLite file, telling the world when adws commits a run to an account."""

    world: Contended

    def reserve(self, provider: str, subject: str, holder: str, tokens: int, now: datetime,
                until: datetime) -> dict[str, int]:
        before = super().reserve(provider, subject, holder, tokens, now, until)
        if provider == TIER1:
            self.world.commit(subject, tokens)
        return before


class WatchedRedis(RedisStore):
    """The shared Redis server (a real redis-server, see tests/redis_server.py), watched the same way."""

    world: Contended

    def reserve(self, provider: str, subject: str, holder: str, tokens: int, now: datetime,
                until: datetime) -> dict[str, int]:
        before = super().reserve(provider, subject, holder, tokens, now, until)
        if provider == TIER1:
            self.world.commit(subject, tokens)
        return before


@pytest.mark.parametrize("strategy", ["least_used", "best_fit"])
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_four_coordinators_spread_over_the_tier_for_a_day(tmp_path: Path, backend: str, strategy: str,
                                                         request: pytest.FixtureRequest) -> None:
    import random

    # Fixtures are resolved here, in the test's thread: pytest is not to be asked from the coordinators' threads.
    redis_at = (request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")) \
        if backend == "redis" else None

    def open_store() -> SqliteStore | RedisStore:
        store: SqliteStore | RedisStore
        if redis_at is not None:
            now_s = lambda: now[0].timestamp()  # noqa: E731 - the world's clock, for the keys' expiry
            store = WatchedRedis(redis_at[0], key_prefix=redis_at[1], clock=now_s)
        else:
            store = WatchedSqlite(str(tmp_path / "state.sqlite3"))
        store.world = world  # type: ignore[union-attr]
        return store

    # best_fit packs, but a run already in flight on an account sends the next one to an idle account first.
    text = world_config(str(tmp_path / "runs"), strategy=strategy, need=FIT, hard_block="hard_block_percent = 100")
    config = compile_config(parse_toml(text), base_dir=str(tmp_path))
    now = [datetime(2026, 11, 16, 0, 0, tzinfo=UTC)]
    world = Contended(now)
    rng = random.Random(7)
    rounds = 40  # every 36 minutes for a day: 160 tasks, about 4.3M tokens, more than tier 1 holds
    sizes = [[int(rng.triangular(10_000, 60_000, 10_000)) for _ in range(4)] for _ in range(rounds)]
    for r, row in enumerate(sizes):
        for c, size in enumerate(row):
            world.sizes[f"R{r}-C{c}"] = size
    start_round = threading.Barrier(4, action=lambda: now.__setitem__(0, now[0] + timedelta(minutes=36)),
                                    timeout=30)
    errors: list[BaseException] = []

    def coordinator(c: int) -> None:
        store = open_store()  # one store per coordinator, one shared file or server
        # The sleeper only paces the short polls for the reservation lock here (no run is retried).
        engine = Engine(config, store=store, clock=world.clock, runner=world.runner,
                        sleep=lambda s: time.sleep(min(s, 0.01)),
                        environ={"PATH": "/bin"}, which=lambda name: "/bin/" + name)
        try:
            for r in range(rounds):
                start_round.wait()  # the four decide in the same instant, from the same state
                engine.run({"id": f"R{r}-C{c}", "title": "t", "context_tokens": sizes[r][c]}, prompt="p",
                           workdir=str(tmp_path))
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)
            start_round.abort()
            world.all_in_flight.abort()
        finally:
            store.close()

    threads = [threading.Thread(target=coordinator, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert world.commitments >= 100  # tier 1 took most of the day's tasks, four at a time
    assert world.violations == []
    assert not any(s.rejected for s in world.log)
