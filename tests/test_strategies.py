"""Account strategies as objects: the registry, their orderings, and the turns they take at execution."""

from __future__ import annotations

import pytest

from adws.attempt import Usage
from adws.compiled import ProviderSpec
from adws.config.load import compile_config, parse_toml
from adws.state import MemoryStore
from adws.strategies import STRATEGIES, Candidate, OrderContext, Strategy, Turn, cursor_key, sticky_key

CONFIG = """
[routing]
chain = ["p"]
[providers.p]
command_template = ["agent", "{{ prompt }}"]
prompt = "arg"
account_strategy = "STRATEGY"
[[providers.p.accounts]]
name = "a"
[[providers.p.accounts]]
name = "b"
[[providers.p.accounts]]
name = "c"
"""


def provider(strategy: str) -> ProviderSpec:
    return compile_config(parse_toml(CONFIG.replace("STRATEGY", strategy)), "t", base_dir="/tmp").providers["p"]


def candidates(*percents: float) -> list[Candidate]:
    pairs = zip("abc", percents, strict=True)
    return [Candidate(name, i, pct, Usage(requests=0)) for i, (name, pct) in enumerate(pairs)]


def names(cands: list[Candidate]) -> list[str]:
    return [c.name for c in cands]


def test_the_registry_is_keyed_by_each_strategys_own_name() -> None:
    assert list(STRATEGIES) == ["least_used", "round_robin", "fill_first", "sticky"]
    assert all(isinstance(s, Strategy) and s.name == key for key, s in STRATEGIES.items())
    # Only sticky's order depends on the task: only then is the task id part of the cached inputs.
    assert [key for key, s in STRATEGIES.items() if s.depends_on_task] == ["sticky"]


@pytest.mark.parametrize(("strategy", "expected"), [
    ("least_used", ["b", "c", "a"]),
    ("fill_first", ["a", "b", "c"]),
    ("round_robin", ["a", "b", "c"]),  # cursor at 0
    ("sticky", ["b", "c", "a"]),  # nothing held: least used
])
def test_orderings(strategy: str, expected: list[str]) -> None:
    ctx = OrderContext(provider(strategy), "#1", MemoryStore())
    assert names(STRATEGIES[strategy].order(candidates(50, 10, 10), ctx)) == expected


def test_stateless_strategies_take_a_turn_that_records_nothing() -> None:
    store = MemoryStore()
    for key in ("least_used", "fill_first"):
        with STRATEGIES[key].take_turn(provider(key), ("b", "a"), store, "#1") as turn:
            assert turn.accounts == ("b", "a")
            turn.used("b", ran=True)
    assert store.version() == 0


def test_round_robin_takes_its_turn_and_moves_past_the_account_really_used() -> None:
    store = MemoryStore()
    spec = provider("round_robin")
    strategy = STRATEGIES["round_robin"]
    with strategy.take_turn(spec, ("a", "b", "c"), store, None) as first:
        assert first.accounts == ("a", "b", "c")
        assert store.peek_cursor(cursor_key("p")) == 1  # taken at once: a coordinator starting now gets b
        first.used("a", ran=False)
        first.used("b", ran=True)  # a failed, b ran
    assert store.peek_cursor(cursor_key("p")) == 2  # the next task starts after b
    with strategy.take_turn(spec, ("a", "c"), store, None) as second:  # b blocked at decision time
        assert second.accounts == ("c", "a")
        second.used("c", ran=True)
    ordered = strategy.order(candidates(0, 0, 0), OrderContext(spec, None, store))
    assert names(ordered) == ["a", "b", "c"]  # past c: a is next


def test_round_robin_over_a_provider_without_accounts_takes_no_turn() -> None:
    store = MemoryStore()
    spec = compile_config(parse_toml(CONFIG.replace("STRATEGY", "round_robin").split("[[providers")[0]), "t",
                          base_dir="/tmp").providers["p"]
    turn = STRATEGIES["round_robin"].take_turn(spec, (), store, None)
    assert type(turn) is Turn and turn.accounts == ()
    assert store.peek_cursor(cursor_key("p")) == 0


def test_sticky_remembers_the_account_that_ran_only() -> None:
    store = MemoryStore()
    spec = provider("sticky")
    with STRATEGIES["sticky"].take_turn(spec, ("a", "b"), store, "#7") as turn:
        turn.used("a", ran=False)  # its command never rendered: not the task's account
        assert store.get_sticky(sticky_key("p", "#7")) is None
        turn.used("b", ran=True)
    assert store.get_sticky(sticky_key("p", "#7")) == "b"
    ordered = STRATEGIES["sticky"].order(candidates(0, 90, 0), OrderContext(spec, "#7", store))
    assert names(ordered) == ["b", "a", "c"]  # the held account first although it is the fullest
    with STRATEGIES["sticky"].take_turn(spec, ("a",), store, None) as anonymous:  # a task without an id
        anonymous.used("a", ran=True)
    assert store.get_sticky(sticky_key("p", "#7")) == "b"
