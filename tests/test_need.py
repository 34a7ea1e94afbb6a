"""Expected need per task, and the fit test that compares it with what an account has left."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from adws.attempt import Usage
from adws.need import SMALLEST_OF, Need, NeedSpec, Remaining, estimate_need, median, remaining, unfit_reason
from adws.quota import QuotaLimits


class History:
    def __init__(self, runs: dict[tuple[str, str], list[int]]) -> None:
        self.runs = runs
        self.asked: list[tuple[str, str, int]] = []

    def recent_runs(self, provider: str, specialization: str, limit: int) -> Sequence[int]:
        self.asked.append((provider, specialization, limit))
        return self.runs.get((provider, specialization), [])[:limit]


def test_fixed_figure() -> None:
    need = estimate_need(NeedSpec(tokens=30000), "antigravity", "code", 5000)
    assert need == Need(30000, "fixed figure")
    assert need.describe() == "~30,000 expected (fixed figure)"


def test_multiple_of_context_tokens_rounds_up() -> None:
    need = estimate_need(NeedSpec(context_multiple=1.5), "antigravity", "code", 20001)
    assert need is not None
    assert (need.tokens, need.basis) == (30002, "1.5 × 20,001 context tokens")


def test_learned_median_of_the_same_provider_and_specialization() -> None:
    runs = [20000 + 1000 * i for i in range(40)]  # median of 40 values: mean of the 20th and 21st
    history = History({("antigravity", "code"): runs, ("antigravity", "docs"): [1, 2, 3, 4, 5]})
    need = estimate_need(NeedSpec(tokens=10000, learned_runs=40), "antigravity", "code", 0, history)
    assert need is not None
    assert need.describe() == "~39,500 expected (median of 40 code runs)"
    assert history.asked == [("antigravity", "code", 40)]


def test_learned_with_too_few_runs_falls_back_and_says_so() -> None:
    history = History({("antigravity", "code"): [50000, 60000]})
    need = estimate_need(NeedSpec(tokens=30000, learned_runs=40, min_runs=5), "antigravity", "code", 0, history)
    assert need is not None
    assert need.describe() == ("~30,000 expected (fixed figure; only 2 code runs recorded, 5 needed to learn)")
    # Learned only and nothing to fall back on: no estimate, the hard block alone applies.
    assert estimate_need(NeedSpec(learned_runs=10, min_runs=3), "antigravity", "code", 0, history) is None
    assert estimate_need(None, "antigravity", "code", 0, history) is None


def test_smallest_coming_need_is_the_smallest_recent_run_with_the_margin() -> None:
    history = History({("antigravity", "code"): [0, 14000, 12000, 50000]})  # newest first
    spec = NeedSpec(context_multiple=1.0, margin_percent=10)
    need = estimate_need(spec, "antigravity", "code", 30000, history, smallest=True)
    assert need is not None
    # 12,000 + 10 %: the least a coming task is expected to require; a run that spent nothing says nothing.
    assert (need.required, need.smallest) == (33000, 13200)
    assert history.asked == [("antigravity", "code", SMALLEST_OF)]
    # This task is the smallest yet: its own need is the least.
    small = estimate_need(spec, "antigravity", "code", 10000, history, smallest=True)
    assert small is not None and small.smallest == small.required == 11000
    # Nothing recorded (or no history at all): the task's own need.
    own = Need(20000, "1 × 20,000 context tokens", 2000, 22000)
    assert estimate_need(spec, "antigravity", "docs", 20000, history, smallest=True) == own
    assert estimate_need(spec, "antigravity", "code", 20000, None, smallest=True) == own
    # Not asked for (only best_fit reads it): not estimated, and the ledger is not read for it.
    history.asked.clear()
    need = estimate_need(spec, "antigravity", "code", 30000, history)
    assert need is not None and need.smallest is None and history.asked == []


def test_smallest_coming_need_reads_the_same_runs_as_the_learned_median() -> None:
    history = History({("antigravity", "code"): [30000, 20000, 40000, 35000, 38000, 9000]})
    need = estimate_need(NeedSpec(tokens=30000, learned_runs=5), "antigravity", "code", 0, history, smallest=True)
    assert need is not None and (need.tokens, need.smallest) == (35000, 20000)  # the 6th run is past the window
    assert set(history.asked) == {("antigravity", "code", 5)}  # one window: one cached read in routing
    # Without a need there is nothing to be smallest.
    assert estimate_need(None, "antigravity", "code", 0, history, smallest=True) is None


def test_margin_is_added_and_shown() -> None:
    need = estimate_need(NeedSpec(tokens=32000, margin_percent=10), "a", "code", 0)
    assert need is not None
    assert (need.required, need.describe()) == (35200, "~32,000 expected (fixed figure) + 3,200 margin")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "give `tokens`, `context_multiple` or `learned_runs`"),
    ({"tokens": 1, "context_multiple": 2.0}, "give `tokens` (a fixed figure) or `context_multiple`, not both"),
    ({"learned_runs": 3, "min_runs": 5}, "min_runs (5) cannot exceed learned_runs (3)"),
    ({"tokens": 0}, "tokens must be > 0, got 0"),
])
def test_need_spec_refuses_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        NeedSpec(**kwargs)  # type: ignore[arg-type]
    assert str(exc.value) == message


def test_median() -> None:
    assert median([5, 1, 3]) == 3
    assert median([1, 2]) == 2  # rounded up: a need is never under-estimated by rounding
    with pytest.raises(ValueError):
        median([])


def test_the_issue_example_reads_as_written() -> None:
    history = History({("antigravity", "code"): [32000] * 40})
    need = estimate_need(NeedSpec(learned_runs=40), "antigravity", "code", 0, history)
    left = remaining(QuotaLimits(tokens=500000), Usage(input_tokens=400000, output_tokens=82000))
    assert unfit_reason(left, need) == "18,000 tokens left < ~32,000 expected (median of 40 code runs)"


def test_fit_counts_reservations_and_requests() -> None:
    limits = QuotaLimits(tokens=100000, requests=10)
    used = Usage(requests=5, input_tokens=50000)
    need = Need(30000, "fixed figure")
    assert unfit_reason(remaining(limits, used), need) is None
    held = Usage(requests=1, input_tokens=30000)
    assert unfit_reason(remaining(limits, used, held), need) == \
        "20,000 tokens left < ~30,000 expected (fixed figure)"
    assert unfit_reason(remaining(limits, Usage(requests=10)), need) == "0 requests left"


def test_fit_without_a_need_only_refuses_a_spent_quota() -> None:
    assert unfit_reason(Remaining(1, None, None), None) is None
    assert unfit_reason(Remaining(0, None, None), None) == "no tokens left"
    assert unfit_reason(Remaining(None, None, 0.0), None) == "no budget left"
    assert unfit_reason(Remaining(None, None, None), Need(10**9, "fixed figure")) is None  # unlimited


def test_fit_on_money_uses_the_model_price() -> None:
    left = remaining(QuotaLimits(cost_usd=10.0), Usage(cost_usd=9.0))
    need = Need(50000, "fixed figure")
    assert unfit_reason(left, need, cost_per_1k_tokens=0.01) is None  # $0.50 of $1.00 left
    assert unfit_reason(left, need, cost_per_1k_tokens=0.03) == \
        "$1.00 left < ~$1.50 for ~50,000 expected (fixed figure)"
