"""Where each provider stands now: available, or why not and until when. The one answer every view reads.

A provider is *available* when `route()` could put it in a plan now for some task: the tier's own checks pass
(`ModelRouter.gate`: enabled, installed, API key set, circuit breaker, concurrency slots) and at least one of
its accounts is usable (`AccountPlanner.rank`: enabled, credentials set, not cooling down, under its hard
block, and where a need is declared, has room for the least a task can need: adws.spend). "Some task" is the
smallest one (any declared model holds it), on any model (which picks the quota pool).
Both checks are the router's own code, so `adws providers` and `adws route` cannot disagree about a moment.

Unlike a decision, which stops at the first reason a tier is out, a standing lists every reason: the tier's
and each account's (a circuit open *and* two accounts cooling down), each a `Skip` with the fields a
decision's `skipped` carries (provider, reason, account, until).
"""

from __future__ import annotations

from datetime import datetime

from adws.accounts import latest_end
from adws.compiled import ProviderSpec
from adws.dataclass_cache import dataclass
from adws.decision import Skip
from adws.need import Need, estimate_need
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
    # Quota pools (adws.pools) are chosen by the tier's model: some task can use the provider when some model's
    # pool has a usable account. Without pools the model changes nothing.
    models: list[str | None] = [*provider.models] if provider.pooled and provider.models else [None]
    need = smallest_need(router, provider)
    rankings = [router.accounts.rank(provider, None, now, model=model, need=need) for model in models]
    ranking = next((r for r in rankings if r.usable), rankings[0])
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
    back = gate.until if ranking.usable else latest_end([gate.until, ranking.earliest])
    return Standing(provider.name, False, gate.reason, (gate, *accounts), back)


def smallest_need(router: ModelRouter, provider: ProviderSpec) -> Need | None:
    """The least expected need route() could give a task on `provider` (adws.need): None when some decision has
    no need to estimate (the provider and a rule declare none), else the smallest estimate over the declared
    needs and every known specialization, for a task of no context."""
    specs = [provider.need, *(rule.need for rule in router.config.rules if rule.need is not None)]
    needs = [estimate_need(spec, provider.name, specialization, 0, router.accounts)
             for spec in specs for specialization in sorted(router.config.intake.known_specializations)]
    if not needs or any(need is None for need in needs):
        return None
    return min((need for need in needs if need is not None), key=lambda need: need.required)


