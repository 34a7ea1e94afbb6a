"""Account strategies: how a provider's usable accounts are ordered, and what a strategy keeps in the store.

A strategy is one object in `STRATEGIES` (config validation takes the allowed names from it). It declares
everything the rest of adws needs from it, so nothing outside this module branches on a strategy's name:

- `sort_key(ctx)`: the key the usable accounts are tried in (ascending), distinct for every account (routing; reads
  state, never writes): a ranking kept across state changes (adws.accounts._Ranked) sorts its accounts by it once
  and then moves a re-judged account to its place by binary search on the key instead of sorting them all again;
- `reads_store`: whether that key reads the store (a cursor, a sticky choice), so it is asked again after a
  strategy write;
- `depends_on_task`: whether that order depends on the task's identity (then the task id is part of the cached
  inputs; its expected need, which best_fit reads, always is);
- `reads_smallest_need`: whether that order reads `Need.smallest` (routing then estimates it);
- `take_turn(provider, accounts, store, task_key)`: at execution, a `Turn` over the plan step's accounts; the
  strategy may reorder them and claim state (round robin takes its cursor position atomically);
- `Turn.used(account, ran=...)`: the account really used (round robin moves past it, sticky remembers it);
- `Turn.close()`: release what the turn holds, whatever happened (a turn is a context manager).

A new stateful strategy is one subclass here and one registry entry; in-flight reservations (counted by the
ordering and released by `close()`) fit the same hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from types import TracebackType
from typing import Any, ClassVar, NamedTuple

from adws.attempt import Usage
from adws.compiled import ProviderSpec
from adws.dataclass_cache import dataclass, field
from adws.need import Need
from adws.redact import encodable
from adws.state.base import StateStore


@dataclass(frozen=True, slots=True)
class Candidate:
    """An account that passed every check, with what strategies need to order it."""

    name: str
    position: int  # in the file
    percent: float  # of the fullest limited quota dimension, 0-100+
    usage: Usage  # in the current quota period
    left_tokens: int | None = None  # tokens left after usage and reservations; None: tokens not limited
    in_flight: bool = False  # a run holds a live reservation on the account's quota
    # least_used's sort key, computed once: a provider with hundreds of accounts is re-sorted after every
    # write by another process, and a C-level key (attrgetter) sorts several times faster than a lambda.
    least_used_key: tuple[float, int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "least_used_key", (self.percent, self.usage.total_tokens, self.position))


_LEAST_USED_KEY = attrgetter("least_used_key")
_POSITION = attrgetter("position")
SortKey = Callable[[Candidate], Any]  # a candidate's place in a strategy's order: keys compare, never tie


class OrderContext(NamedTuple):
    """What `Strategy.sort_key` may read to make its key (the candidates are what the key is applied to)."""

    provider: ProviderSpec
    task_key: str | None  # None unless the strategy `depends_on_task`
    store: StateStore
    need: Need | None = None  # the task's expected need on the provider (adws.need); None: none declared


class Turn:
    """One walk through a plan step's accounts; the base turn keeps the order and records nothing."""

    def __init__(self, accounts: Sequence[str]) -> None:
        self.accounts: tuple[str, ...] = tuple(accounts)

    def used(self, account: str, *, ran: bool) -> None:
        """An attempt was made on `account`; `ran` is False when it never started (its command failed to
        render)."""

    def close(self) -> None:
        """Release whatever the turn holds. Called once, also when the walk is interrupted."""

    def __enter__(self) -> Turn:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Strategy:
    """Orders a provider's usable accounts; subclasses with state override `take_turn` too."""

    name: ClassVar[str]
    depends_on_task: ClassVar[bool] = False
    # Whether `sort_key` reads `ctx.need.smallest` (the least a coming task is expected to require: one more read of
    # the ledger's recent runs per state snapshot, so it is estimated only for the strategies that read it).
    reads_smallest_need: ClassVar[bool] = False

    # Whether `sort_key` reads the store (a cursor, a sticky choice): a ranking asks for the key again when the
    # store's strategy state moved, and keeps the key it has otherwise.
    reads_store: ClassVar[bool] = False

    def sort_key(self, ctx: OrderContext) -> SortKey:
        """The key the usable accounts are tried in (ascending). Reads the store (never writes it) only where
        `reads_store` says so: routing asks once per ranking and keeps the key until the strategy state moves.

        Keys of two different accounts never compare equal (ties are broken by `position`), so the order does not
        depend on the order candidates come in, and a ranking kept across changes can take an account out and put
        it back in its place by binary search over the kept keys, which is the same as sorting all of them again
        (tests/test_accounts_incremental.py checks every registered strategy)."""
        raise NotImplementedError

    def take_turn(self, provider: ProviderSpec, accounts: Sequence[str], store: StateStore,
                  task_key: str | None) -> Turn:
        """The turn an execution takes over `accounts` (the plan step's, in routing order; empty for a
        provider without declared accounts)."""
        return Turn(accounts)


class LeastUsed(Strategy):
    """Most quota left first (lowest percent of the fullest limited dimension), then fewest tokens in the
    period, then file order. Accounts without any quota have no period and no usage in the snapshot: all of
    them tie at 0% and keep file order (use round_robin to spread unlimited accounts)."""

    name = "least_used"

    def sort_key(self, ctx: OrderContext) -> SortKey:
        return _LEAST_USED_KEY


class FillFirst(Strategy):
    """File order: the first account until it is blocked."""

    name = "fill_first"

    def sort_key(self, ctx: OrderContext) -> SortKey:
        return _POSITION


def cursor_key(provider: str) -> str:
    """Round robin's cursor in the store (a count of turns taken; the position is it modulo the accounts)."""
    return f"round_robin:{provider}"


class _RoundRobinTurn(Turn):
    def __init__(self, accounts: Sequence[str], store: StateStore, key: str, start: int,
                 names: Sequence[str]) -> None:
        super().__init__(accounts)
        self.store, self.key, self.start, self.names = store, key, start, list(names)

    def used(self, account: str, *, ran: bool) -> None:
        # The next task starts after the account this one really used, not merely one further on.
        skipped_over = (self.names.index(account) - self.start) % len(self.names)
        self.store.advance_cursor(self.key, self.start + skipped_over + 1)


class RoundRobin(Strategy):
    """Each task starts one account further on; coordinators share the cursor through the store."""

    name = "round_robin"
    reads_store = True

    def sort_key(self, ctx: OrderContext) -> SortKey:
        total = len(ctx.provider.runs_as)  # never 0: a provider without declared accounts has its implicit one
        start = ctx.store.peek_cursor(cursor_key(ctx.provider.name)) % total
        return lambda c: (c.position - start) % total

    def take_turn(self, provider: ProviderSpec, accounts: Sequence[str], store: StateStore,
                  task_key: str | None) -> Turn:
        if not accounts:
            return Turn(accounts)
        # Take the turn atomically, so coordinators running at once start on different accounts.
        key = cursor_key(provider.name)
        start = store.next_cursor(key)
        names = [a.name for a in provider.runs_as]
        in_turn = sorted(accounts, key=lambda name: (names.index(name) - start) % len(names))
        return _RoundRobinTurn(in_turn, store, key, start, names)


def sticky_key(provider: str, task_key: str) -> str:
    """The account a task last ran on, in the store."""
    return f"sticky:{provider}:{encodable(task_key)}"  # a task id is outside data: any string must be storable


class _StickyTurn(Turn):
    def __init__(self, accounts: Sequence[str], store: StateStore, provider: str, task_key: str) -> None:
        super().__init__(accounts)
        self.store, self.key = store, sticky_key(provider, task_key)

    def used(self, account: str, *, ran: bool) -> None:
        if ran:
            self.store.set_sticky(self.key, account)


class Sticky(LeastUsed):
    """A task stays on the account it last ran on while that account is usable; otherwise least used."""

    name = "sticky"
    depends_on_task = True
    reads_store = True

    def sort_key(self, ctx: OrderContext) -> SortKey:
        if ctx.task_key is None:
            return _LEAST_USED_KEY
        held = ctx.store.get_sticky(sticky_key(ctx.provider.name, ctx.task_key))
        return lambda c: (c.name != held, c.least_used_key)  # the held account first, the rest least used

    def take_turn(self, provider: ProviderSpec, accounts: Sequence[str], store: StateStore,
                  task_key: str | None) -> Turn:
        if not accounts or task_key is None:
            return Turn(accounts)
        return _StickyTurn(accounts, store, provider.name, task_key)


CLEAN_FIT = 5  # best_fit: a leftover under 1/CLEAN_FIT of the smallest coming need counts as a clean fit


class BestFit(Strategy):
    """Best-fit bin packing (the rule of the classic online bin-packing heuristic: put each item in the
    fullest bin it fits; Johnson, "Near-optimal bin packing algorithms", 1973) on what each account has left for
    this task, so a quota period ends with accounts spent instead of every account holding a piece too small for
    the next task: the first task too big for every piece then goes to the next tier with least left behind.

    Order, for a task with an expected need (`need`, adws.need):
    1. accounts with no run in flight (no live reservation) first, so coordinators deciding at once still spread;
       accounts with a run in flight after them, most room first (least_used order), since a second concurrent
       run belongs where the most room is;
    2. among the idle accounts with a token quota, the smallest leftover first: tokens left after usage and
       reservations minus the task's expected tokens. Except a dead fragment: a leftover below the least a
       coming task is expected to require (`Need.smallest`: the smaller of this task's need and the smallest of
       the provider's recent runs of the specialization, from the ledger) is one no later task can use, so it
       goes after every other leftover (smallest first), unless it is under 1/CLEAN_FIT of that least need (a
       clean fit: next to nothing is left);
    3. idle accounts without a token quota after those, in least_used order.
    Ties keep file order. Without an expected need (none declared, or only a learned one without enough runs)
    there is nothing to fit, and the order is least_used's. The need is part of the ranking's cached inputs
    already, so this order does not depend on the task's identity (`depends_on_task` stays False).
    """

    name = "best_fit"
    reads_smallest_need = True

    def sort_key(self, ctx: OrderContext) -> SortKey:
        need = ctx.need
        if need is None:
            return _LEAST_USED_KEY
        floor = need.smallest if need.smallest is not None else need.required
        clean = floor / CLEAN_FIT

        def key(c: Candidate) -> tuple[float, ...]:
            if c.in_flight:
                return (2, *c.least_used_key)
            if c.left_tokens is None:
                return (1, *c.least_used_key)
            leftover = c.left_tokens - need.tokens
            dead = clean <= leftover < floor
            return (0, dead, leftover, c.position)

        return key


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (LeastUsed(), RoundRobin(), FillFirst(), Sticky(), BestFit())}
