"""Expected need: how many tokens a task is expected to spend on a provider, and whether an account covers it.

A fixed hard block ("95 % used") benches an account with 24K tokens left even for a 12K-token task, and lets a
60K-token task start on an account with 26K left. Fit-aware account choice replaces neither the hard block nor the
period: it asks, per task, whether the account's remaining quota covers the task's expected need plus a declared
margin. The hard block stays as an upper bound.

The need comes from one declared basis per provider (or rule), always shown in words:
- a fixed figure: `tokens = 30000` → "~30,000 expected (fixed figure)";
- a multiple of the task's `context_tokens`: `context_multiple = 1.5` → "~30,000 expected (1.5 × 20,000 context
  tokens)";
- learned from the ledger: `learned_runs = 40` → the median total tokens of the provider's last 40 successful runs
  of the same specialization ("~32,000 expected (median of 40 code runs)"); with fewer than `min_runs` of them the
  fixed figure or the multiple stands in, and says so.

The `best_fit` account strategy (adws.strategies) also asks for the least a coming task is expected to require
(`Need.smallest`): quota left below it after a task is a fragment no later task can use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from adws.attempt import Usage
from adws.dataclass_cache import dataclass
from adws.errors import count
from adws.quota import QuotaLimits


@dataclass(frozen=True, slots=True)
class NeedSpec:
    """The declared basis of a provider's (or rule's) expected need, compiled from `need = { ... }`.

    At least one of `tokens`, `context_multiple`, `learned_runs` is set (load refuses an empty table);
    `tokens` and `context_multiple` exclude each other. `margin_percent` is added on top of the expected need
    before comparing it with what an account has left.
    """

    tokens: int | None = None
    context_multiple: float | None = None
    learned_runs: int | None = None  # how many recent runs the median is taken over
    min_runs: int = 5  # below this many recorded runs, the learned median is not trusted
    margin_percent: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens is None and self.context_multiple is None and self.learned_runs is None:
            raise ValueError("give `tokens`, `context_multiple` or `learned_runs`")
        if self.tokens is not None and self.context_multiple is not None:
            raise ValueError("give `tokens` (a fixed figure) or `context_multiple`, not both")
        if self.tokens is not None and self.tokens <= 0:
            raise ValueError(f"tokens must be > 0, got {self.tokens}")
        if self.context_multiple is not None and self.context_multiple <= 0:
            raise ValueError(f"context_multiple must be > 0, got {self.context_multiple}")
        if self.learned_runs is not None and self.learned_runs < 1:
            raise ValueError(f"learned_runs must be >= 1, got {self.learned_runs}")
        if self.min_runs < 1:
            raise ValueError(f"min_runs must be >= 1, got {self.min_runs}")
        if self.learned_runs is not None and self.min_runs > self.learned_runs:
            raise ValueError(f"min_runs ({self.min_runs}) cannot exceed learned_runs ({self.learned_runs})")
        if not 0 <= self.margin_percent <= 1000:
            raise ValueError(f"margin_percent must be within 0-1000, got {self.margin_percent}")


class NeedHistory(Protocol):
    """Where learned needs come from: total tokens of recent successful runs, newest first."""

    def recent_runs(self, provider: str, specialization: str, limit: int) -> Sequence[int]: ...


@dataclass(frozen=True, slots=True)
class Need:
    """A task's expected spend on one provider, in tokens, with the basis in words."""

    tokens: int
    basis: str  # "median of 40 code runs", "fixed figure", "1.5 × 20,000 context tokens"
    margin_tokens: int = 0
    # The least a coming task of this provider and specialization is expected to require (need plus margin): the
    # smaller of this task's and the smallest recent run's. None unless asked for (estimate_need's `smallest`).
    smallest: int | None = None

    @property
    def required(self) -> int:
        """Tokens an account must have left: the expected need plus the margin."""
        return self.tokens + self.margin_tokens

    def describe(self) -> str:
        """"~32,000 expected (median of 40 code runs)" [+ " + 3,200 margin"]."""
        margin = f" + {self.margin_tokens:,} margin" if self.margin_tokens else ""
        return f"~{self.tokens:,} expected ({self.basis}){margin}"


def median(values: Sequence[int]) -> int:
    """The median, rounded up to a whole token (an even count averages the two middle values)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of no values")
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return math.ceil((ordered[mid - 1] + ordered[mid]) / 2)


SMALLEST_OF = 40  # recent runs `Need.smallest` looks at when the need is not learned (else the learned window)


def estimate_need(spec: NeedSpec | None, provider: str, specialization: str, context_tokens: int,
                  history: NeedHistory | None = None, *, smallest: bool = False) -> Need | None:
    """The expected need of a task on `provider`, or None when nothing is declared (only the hard block
    applies then). With `learned_runs` and too few recorded runs (or no history at all), the fixed figure or
    the context multiple stands in and the basis says how many runs there were.

    `smallest`: also fill in `Need.smallest`, the least a coming task of the same provider and specialization is
    expected to require: the smaller of this need's `required` and the smallest of the recent runs (the last
    `learned_runs`, else the last SMALLEST_OF) with the same margin. Without history, this need's own.
    """
    need = _estimate(spec, provider, specialization, context_tokens, history)
    if need is None or not smallest:
        return need
    assert spec is not None  # a need comes from a declared spec
    runs = history.recent_runs(provider, specialization, spec.learned_runs or SMALLEST_OF) if history else ()
    least = min((tokens for tokens in runs if tokens > 0), default=None)  # a run that spent nothing says nothing
    floor = need.required if least is None else min(need.required, _with_margin(spec, least, "").required)
    return Need(need.tokens, need.basis, need.margin_tokens, floor)


def _estimate(spec: NeedSpec | None, provider: str, specialization: str, context_tokens: int,
              history: NeedHistory | None) -> Need | None:
    if spec is None:
        return None
    fallback_note = ""
    if spec.learned_runs is not None:
        runs = list(history.recent_runs(provider, specialization, spec.learned_runs)) if history else []
        if len(runs) >= spec.min_runs:
            return _with_margin(spec, median(runs), f"median of {len(runs)} {specialization} runs")
        fallback_note = (f"; only {count(len(runs), f'{specialization} run')} recorded, "
                         f"{spec.min_runs} needed to learn")
    if spec.tokens is not None:
        return _with_margin(spec, spec.tokens, "fixed figure" + fallback_note)
    if spec.context_multiple is not None:
        tokens = math.ceil(spec.context_multiple * context_tokens)
        return _with_margin(spec, tokens, f"{spec.context_multiple:g} × {context_tokens:,} context tokens"
                            + fallback_note)
    return None  # learned only, not enough runs yet: no estimate, the hard block alone applies


def _with_margin(spec: NeedSpec, tokens: int, basis: str) -> Need:
    return Need(tokens, basis, math.ceil(tokens * spec.margin_percent / 100))


# -- the fit test ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Remaining:
    """What an account (or pool) has left in its period. None: that dimension is not limited."""

    tokens: int | None
    requests: int | None
    cost_usd: float | None


def remaining(limits: QuotaLimits, used: Usage, reserved: Usage | None = None) -> Remaining:
    """Limits minus usage minus in-flight reservations, per dimension (negative when overspent)."""
    held = reserved or Usage(requests=0)
    return Remaining(
        None if limits.tokens is None else limits.tokens - used.total_tokens - held.total_tokens,
        None if limits.requests is None else limits.requests - used.requests - held.requests,
        None if limits.cost_usd is None else limits.cost_usd - used.cost_usd - held.cost_usd,
    )


def unfit_reason(left: Remaining, need: Need | None, cost_per_1k_tokens: float = 0.0) -> str | None:
    """Why an account cannot take this task, or None when it can.

    A task always needs one request; tokens need the expected need plus its margin; money needs what those
    tokens cost at the model's price (where it has one). Reads like
    "18,000 tokens left < ~32,000 expected (median of 40 code runs)".
    """
    if left.requests is not None and left.requests < 1:
        return f"{max(left.requests, 0)} requests left"
    if need is None:
        if left.tokens is not None and left.tokens <= 0:
            return "no tokens left"
        if left.cost_usd is not None and left.cost_usd <= 0:
            return "no budget left"
        return None
    if left.tokens is not None and left.tokens < need.required:
        return f"{max(left.tokens, 0):,} tokens left < {need.describe()}"
    if left.cost_usd is not None:
        cost = need.required / 1000 * cost_per_1k_tokens
        if left.cost_usd <= 0 or left.cost_usd < cost:
            return f"${max(left.cost_usd, 0.0):,.2f} left < ~${cost:,.2f} for {need.describe()}"
    return None
