"""Scoring tiers, as the product owner's dispatcher design describes it, and the tier orders a rule can ask for.

A tier's score is a weighted sum of four components, each 0-100:
- quota: 100 - percent used of the account the tier would use first (100 when the tier is not metered);
- latency: 100 up to 500 ms, falling linearly to 0 at 5 s (50 when the model declares no latency);
- fit: the model's specialization score for the task, adjusted for context sufficiency (a task filling more than
  half of the model's context window scores less: x1 at half the window or less, falling linearly to x0.5 when
  it fills the window);
- cost: 100 for the cheapest model among the tiers compared, 0 for the dearest, linear between (100 for all
  when they cost the same).

Weights come from `[routing.scoring]` (quota, latency, fit, cost; default 0.4 / 0.3 / 0.3 / 0) with per-provider
overrides in `[routing.scoring.providers.NAME]` (the design gives Antigravity 0.5 / 0.3 / 0.2). A rule's
`order` (or `routing.scoring.order` for decisions without one) picks the tier order:
- `chain` (default): the rule's target, then down the chain, as always;
- `by_score`: the same tiers by score, highest first; ties keep chain order;
- `cheapest`: the same tiers by model price per 1K tokens, cheapest first; ties keep chain order. Only tiers
  that can take the task are in a plan, so the first is the cheapest tier that fits.
Every component of every tier's score is kept, so `--explain` shows exactly what decided.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from adws.dataclass_cache import dataclass, field

ORDERS = ("chain", "by_score", "cheapest")
LATENCY_BEST_MS = 500
LATENCY_WORST_MS = 5000
UNKNOWN_LATENCY_SCORE = 50.0
CONTEXT_COMFORT = 0.5  # a task using at most this share of the context window keeps its full fit


def _or_zero(score: float) -> float:
    """`score`, or 0 when it is not a finite number: nothing known, so nothing to recommend the tier (and no NaN
    in `route --json`, which would print the invalid JSON `NaN`)."""
    return score if math.isfinite(score) else 0.0


# The largest weight: four of them times a component's 100 stay far from overflowing a float (1e308 each made
# every score NaN, and `route --json` print the invalid JSON `NaN`).
MAX_WEIGHT = 1000.0


@dataclass(frozen=True, slots=True)
class Weights:
    """Relative weights of the four components; they need not sum to 1 (the total is divided by their sum)."""

    quota: float = 0.4
    latency: float = 0.3
    fit: float = 0.3
    cost: float = 0.0

    def __post_init__(self) -> None:
        values = (self.quota, self.latency, self.fit, self.cost)
        if not all(0 <= v <= MAX_WEIGHT for v in values):  # NaN too
            raise ValueError(f"scoring weights must be within 0-{MAX_WEIGHT:g}, got {values}")
        if not any(values):
            raise ValueError("at least one scoring weight must be > 0")

    @property
    def total(self) -> float:
        return self.quota + self.latency + self.fit + self.cost


@dataclass(frozen=True, slots=True)
class ScoringSpec:
    """`[routing.scoring]`, compiled."""

    weights: Weights = field(default_factory=Weights)
    providers: Mapping[str, Weights] = field(default_factory=dict)
    order: str = "chain"

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f'order must be one of {", ".join(ORDERS)}, got "{self.order}"')

    def weights_for(self, provider: str) -> Weights:
        return self.providers.get(provider, self.weights)


@dataclass(frozen=True, slots=True)
class TierFacts:
    """What a decision knows about one tier of its plan, in chain order."""

    provider: str
    model: str | None
    percent_used: float | None  # of the account tried first, reservations included; None: not metered
    latency_ms: int | None
    specialization: str
    specialization_score: int  # 0-100
    context_tokens: int
    context_window: int | None
    cost_per_1k_tokens: float


@dataclass(frozen=True, slots=True)
class TierScore:
    provider: str
    model: str | None
    weights: Weights
    quota: float
    latency: float
    fit: float
    cost: float
    notes: tuple[str, ...]  # how each component was reached, in words

    @property
    def total(self) -> float:
        """The weighted mean of the components, 0-100 (0 for a component that is not a number: never NaN)."""
        w = self.weights
        return _or_zero((w.quota * self.quota + w.latency * self.latency + w.fit * self.fit + w.cost * self.cost)
                        / w.total)

    def describe(self) -> str:
        """"antigravity 83.1 = 0.5×quota 90.0 + 0.3×latency 76.7 + 0.2×fit 80.0 (weights sum 1)"."""
        w = self.weights
        parts = [f"{getattr(w, name):g}×{name} {getattr(self, name):.1f}"
                 for name in ("quota", "latency", "fit", "cost") if getattr(w, name)]
        scale = "" if abs(w.total - 1) < 1e-9 else f", divided by the weights' sum {w.total:g}"
        return f"{self.provider} {self.total:.1f} = {' + '.join(parts)}{scale}"

    def to_dict(self) -> dict[str, Any]:
        w = self.weights
        return {"provider": self.provider, "model": self.model, "score": round(self.total, 2),
                "components": {"quota": round(self.quota, 2), "latency": round(self.latency, 2),
                               "fit": round(self.fit, 2), "cost": round(self.cost, 2)},
                "weights": {"quota": w.quota, "latency": w.latency, "fit": w.fit, "cost": w.cost},
                "notes": list(self.notes)}


def quota_score(percent_used: float | None) -> float:
    """100 - percent used, within 0-100; 100 for a tier that is not metered."""
    if percent_used is None:
        return 100.0
    return _or_zero(min(max(100.0 - percent_used, 0.0), 100.0))  # NaN percent used: the clamp keeps the NaN


def latency_score(latency_ms: int | None) -> float:
    """100 at or under 500 ms, 0 at or past 5 s, linear between; 50 when the latency is not declared."""
    if latency_ms is None:
        return UNKNOWN_LATENCY_SCORE
    if latency_ms <= LATENCY_BEST_MS:
        return 100.0
    if latency_ms >= LATENCY_WORST_MS:
        return 0.0
    return 100.0 * (LATENCY_WORST_MS - latency_ms) / (LATENCY_WORST_MS - LATENCY_BEST_MS)


def context_factor(context_tokens: int, context_window: int | None) -> float:
    """x1 while the task fills at most half the window, falling linearly to x0.5 when it fills it; x0 past it."""
    if context_window is None or context_window <= 0:
        return 1.0
    share = context_tokens / context_window
    if share > 1:
        return 0.0
    if share <= CONTEXT_COMFORT:
        return 1.0
    return 1.0 - 0.5 * (share - CONTEXT_COMFORT) / (1 - CONTEXT_COMFORT)


def score_tiers(facts: Sequence[TierFacts], spec: ScoringSpec) -> list[TierScore]:
    """One TierScore per tier, in the order given."""
    prices = [f.cost_per_1k_tokens for f in facts]
    cheapest, dearest = (min(prices), max(prices)) if prices else (0.0, 0.0)
    out = []
    for f in facts:
        factor = context_factor(f.context_tokens, f.context_window)
        fit = f.specialization_score * factor
        cost = 100.0 * (dearest - f.cost_per_1k_tokens) / (dearest - cheapest) if dearest > cheapest else 100.0
        notes = [
            "quota: not metered" if f.percent_used is None else f"quota: {f.percent_used:.1f}% used",
            "latency: not declared" if f.latency_ms is None else f"latency: {f.latency_ms} ms",
            f"fit: {f.specialization} score {f.specialization_score}"
            + (f" × {factor:.2f} (task fills {f.context_tokens / f.context_window:.0%} of the context window)"
               if factor != 1.0 and f.context_window else ""),
            f"cost: ${f.cost_per_1k_tokens:g} per 1K tokens",
        ]
        out.append(TierScore(f.provider, f.model, spec.weights_for(f.provider), quota_score(f.percent_used),
                             latency_score(f.latency_ms), fit, cost, tuple(notes)))
    return out


def order_tiers(facts: Sequence[TierFacts], order: str, spec: ScoringSpec) -> tuple[list[int], list[TierScore]]:
    """Positions of `facts` (given in chain order) in the order asked for, and every tier's score.

    Sorting is stable, so equal scores (or prices) keep chain order.
    """
    scores = score_tiers(facts, spec)
    positions = list(range(len(facts)))
    if order == "by_score":
        positions.sort(key=lambda i: -round(scores[i].total, 9))
    elif order == "cheapest":
        positions.sort(key=lambda i: facts[i].cost_per_1k_tokens)
    elif order != "chain":
        raise ValueError(f'unknown tier order "{order}": expected one of {", ".join(ORDERS)}')
    return positions, scores
