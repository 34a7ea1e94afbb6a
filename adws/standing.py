"""Where each provider stands now: available, or why not and until when. The one answer every view reads.

A provider is *available* when `route()` could put it in a plan now for some task: the tier's own checks pass
(`ModelRouter.gate`: enabled, installed, API key set, circuit breaker, concurrency slots) and at least one of
its accounts is usable (`AccountPlanner.rank`: enabled, credentials set, not cooling down, under its hard
block). "Some task" is the smallest one: any declared model holds it, and no rule pins a model or an account.
Both checks are the router's own code, so `adws providers` and `adws route` cannot disagree about a moment.

Unlike a decision, which stops at the first reason a tier is out, a standing lists every reason: the tier's
and each account's (a circuit open *and* two accounts cooling down), each a `Skip` with the fields a
decision's `skipped` carries (provider, reason, account, until).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from adws.compiled import ProviderSpec
from adws.decision import Skip
from adws.router import ModelRouter


@dataclass(frozen=True, slots=True)
class Standing:
    """One provider at one moment."""

    provider: str
    available: bool
    reason: str | None  # why the tier is out (the line a decision's `skipped` shows for it); None when available
    skipped: tuple[Skip, ...]  # every reason: the tier's, then each account that is out, in file order
    until: datetime | None  # when the tier comes back, where known; None when available or when nobody knows


def standing(router: ModelRouter, provider: ProviderSpec, now: datetime) -> Standing:
    """Whether `route()` could plan `provider` at `now` for some task, and every reason it could not.

    Reads the router's state snapshot as of `now` (one store read when nothing changed since the last one).
    """
    router.accounts.generation(now)
    gate = router.gate(provider, now)
    ranking = router.accounts.rank(provider, None, now)
    # Declared accounts: each out account has its line, and the tier's "no usable account" line only sums
    # them up. A provider without declared accounts: its implicit account's line is the tier's.
    accounts = [skip for skip in ranking.skipped if skip.account is not None or not provider.accounts]
    if gate is None and ranking.usable:
        return Standing(provider.name, True, None, tuple(accounts), None)
    if gate is None:
        summary = next((skip for skip in ranking.skipped if skip.account is None), None)
        why = summary.reason if summary is not None else "no usable account"
        return Standing(provider.name, False, why, tuple(accounts), ranking.earliest)
    # The tier comes back when its own block ends and, if no account is usable either, when one is back.
    back = gate.until if ranking.usable else _latest(gate.until, ranking.earliest)
    return Standing(provider.name, False, gate.reason, (gate, *accounts), back)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    """Both blocks must end; an unknown end (None) keeps the tier out with no known return."""
    return None if a is None or b is None else max(a, b)
