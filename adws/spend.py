"""Judging one account for one task: the quota checks of fit-aware account choice, in one place.

Routing asks, per account of a tier, with the tier's model and the task's expected need:
1. which quota counts the attempt (the pool of the model, else the account's own; adws.pools);
2. how full it is: the ledger's usage in the period, or an observation of real usage where that says more
   (adws.observe) — the hard block (`hard_block_percent`) applies to this figure;
3. whether what is left after in-flight reservations covers the expected need plus its margin (adws.need).
The same figures order the usable accounts: reservations count as used, so coordinators deciding at the same
instant spread over accounts instead of all picking the same least-used one.
"""

from __future__ import annotations

from datetime import datetime

from adws.attempt import Usage
from adws.dataclass_cache import dataclass
from adws.need import Need, remaining, unfit_reason
from adws.observe import merge
from adws.pools import Governing
from adws.quota import QuotaLimits, percent_used
from adws.state.base import ZERO_USAGE, Observation, add_usage


@dataclass(frozen=True, slots=True)
class Judgement:
    """One account's verdict for one task on one model."""

    subject: str  # where its usage, cooldowns and reservations are kept ("ag-03" or "ag-03/claude")
    pool: str | None
    percent: float  # used, the higher of ledger and observation (what the hard block reads); 0 when unmetered
    committed_percent: float  # used plus reserved: what orders the usable accounts
    reason: str | None  # why the account cannot take the task; None when it can
    observed: str | None = None  # "ledger 41.0%, observed 63.0% (...)" when an observation is in force
    left_tokens: int | None = None  # usable: tokens left after usage and reservations; None: tokens not limited

    @property
    def usable(self) -> bool:
        return self.reason is None


def judge_governed(gov: Governing, need: Need | None, *, usage: Usage | None, reserved_tokens: int,
                   observation: Observation | None, period_start: datetime | None, now: datetime,
                   cost_per_1k_tokens: float = 0.0) -> Judgement:
    """`judge` for a caller that has already worked out which quota governs the attempt (adws.pools.governing):
    routing does, once per account and model, and judges again after every change of the account's state."""
    if gov.quota is None:
        return Judgement(gov.subject, gov.pool, 0.0, 0.0, None)
    limits = QuotaLimits(gov.quota.tokens, gov.quota.requests, gov.quota.cost_usd)
    used = usage or ZERO_USAGE
    ledger = percent_used(used, limits)
    merged = merge(ledger, observation, now, period_start)
    if merged.observed_wins and limits.tokens is not None:
        # The observation says more is spent than the ledger knows: count the difference as used tokens.
        observed_tokens = int(merged.percent / 100.0 * limits.tokens)
        used = Usage(used.requests, max(used.input_tokens, observed_tokens - used.output_tokens), used.output_tokens,
                     used.cost_usd, used.estimated)
    held = Usage(requests=0, input_tokens=reserved_tokens)
    committed = percent_used(add_usage(used, held), limits)
    observed = merged.describe(now) if merged.observation is not None else None
    percent = merged.percent  # the higher of the ledger's and an observation in force
    where = f" ({gov.pool} pool)" if gov.pool else ""
    # Where an observation of real usage is what blocks, the reason shows both figures.
    seen = f" [{observed}]" if merged.observed_wins else ""
    if percent >= gov.quota.hard_block_percent:
        reason = f"quota{where} {percent:.0f}% used (hard block at {gov.quota.hard_block_percent:g}%){seen}"
        return Judgement(gov.subject, gov.pool, percent, committed, reason, observed)
    left = remaining(limits, used, held)
    unfit = unfit_reason(left, need, cost_per_1k_tokens)
    if unfit is not None:
        return Judgement(gov.subject, gov.pool, percent, committed, unfit + where + seen, observed)
    return Judgement(gov.subject, gov.pool, percent, committed, None, observed, left.tokens)
