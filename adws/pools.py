"""Quota pools: one account's quota split by model, each share with its own limits and reset.

Antigravity counts Claude models and Gemini models separately, each with its own weekly reset; a Claude limit
must not bench Gemini on the same account. A pool is declared as `[providers.NAME.quota.pools.P]` with
`models = [globs]` and its own `tokens` / `requests` / `cost_usd` and `reset` or `window`.

Usage, limits, hard blocks, cooldowns and reservations apply to the pool of the attempt's model. In the state
store they are kept under the pool's *quota subject*, `ACCOUNT/POOL` (the account itself when the quota has no
pools, or for models no pool selects), so every backend counts a pool exactly as it counts an account, and the
ledger still says which account and model each record belongs to.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from adws.compiled import PoolSpec, QuotaSpec
from adws.dataclass_cache import dataclass

SEPARATOR = "/"


def pool_for(quota: QuotaSpec | None, model: str | None) -> PoolSpec | None:
    """The first declared pool whose globs match `model` (case-insensitively), or None.

    A model no pool selects draws on the quota's own limits. Load refuses a declared model that two pools
    select, so declaration order only decides for models the config does not declare (chosen by an override).
    """
    if quota is None or not quota.pools or model is None:
        return None
    lowered = model.lower()
    for pool in quota.pools:
        if any(fnmatchcase(lowered, glob.lower()) for glob in pool.models):
            return pool
    return None


def pools_matching(quota: QuotaSpec, model: str) -> list[str]:
    """Every pool whose globs select `model`: load uses it to refuse a model claimed twice."""
    lowered = model.lower()
    return [p.name for p in quota.pools if any(fnmatchcase(lowered, g.lower()) for g in p.models)]


@dataclass(frozen=True, slots=True)
class Governing:
    """Which quota counts an attempt: the subject it is kept under in the store, and its limits and period."""

    subject: str  # "acc-03" or "acc-03/claude"
    pool: str | None
    quota: QuotaSpec | None  # None: not metered (a pooled quota without limits of its own, for an unpooled model)


def governing(quota: QuotaSpec | None, account: str, model: str | None) -> Governing:
    """The quota that an attempt of `model` on `account` draws on."""
    pool = pool_for(quota, model)
    if pool is not None:
        return Governing(subject(account, pool.name), pool.name, pool.quota)
    if quota is not None and (quota.limited or not quota.pools):
        return Governing(account, None, quota)
    return Governing(account, None, None)


def subjects(quota: QuotaSpec | None, account: str) -> list[tuple[str, str | None, QuotaSpec | None]]:
    """Every subject an account's usage is kept under: its own (when metered) and one per pool."""
    out: list[tuple[str, str | None, QuotaSpec | None]] = []
    if quota is None:
        return out
    if quota.limited or not quota.pools:
        out.append((account, None, quota))
    out.extend((subject(account, p.name), p.name, p.quota) for p in quota.pools)
    return out


def subject(account: str, pool: str | None) -> str:
    return account if pool is None else f"{account}{SEPARATOR}{pool}"

