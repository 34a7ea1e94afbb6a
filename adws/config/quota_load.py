"""Compiling the quota-spending keys: expected need, quota pools, usage commands, scoring (issue 11).

Kept apart from load.py so the loader only calls in; every check reports through the same `_Checker` with its
place, like the rest of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from adws.compiled import PoolSpec, ProviderSpec, QuotaSpec
from adws.config.schema import COOLDOWN_DAYS, NeedConfig, ProviderConfig, ScoringConfig, WeightsConfig
from adws.errors import Loc
from adws.need import NeedSpec
from adws.scoring import ScoringSpec, Weights

if TYPE_CHECKING:
    from adws.config.load import _Checker

# What a usage_command template may read: it runs outside any task.
USAGE_COMMAND_VARIABLES = frozenset({"provider", "account", "home", "config_dir"})


def need_spec(cfg: NeedConfig | None) -> NeedSpec | None:
    if cfg is None:
        return None
    return NeedSpec(cfg.tokens, cfg.context_multiple, cfg.learned_runs, cfg.min_runs, cfg.margin_percent)


def weights(cfg: WeightsConfig) -> Weights:
    return Weights(cfg.quota, cfg.latency, cfg.fit, cfg.cost)


def scoring_spec(cfg: ScoringConfig, providers: Mapping[str, ProviderSpec], check: _Checker) -> ScoringSpec:
    from adws.config.load import _check_provider

    for name in cfg.providers:
        _check_provider(check, ("routing", "scoring", "providers", name), name, providers)
    return ScoringSpec(weights(cfg), {n: weights(w) for n, w in cfg.providers.items()}, cfg.order)


def provider_extras(loc: Loc, p: ProviderConfig, check: _Checker) -> dict[str, Any]:
    """The ProviderSpec fields of this issue: need, usage_command, usage_sync_seconds, wait_for_reset."""
    from adws.config.load import parse_duration

    command = tuple(p.usage_command or ())
    check_usage_command((*loc, "usage_command"), command, check)
    interval = None
    if p.usage_sync_interval is not None:
        interval = check.guard((*loc, "usage_sync_interval"),
                               lambda: parse_duration(p.usage_sync_interval or "", COOLDOWN_DAYS))
        if not command and not any(a.usage_command for a in p.accounts):
            check.add((*loc, "usage_sync_interval"), "there is no usage_command to run (declare one on the "
                      "provider or its accounts)")
    return {"need": need_spec(p.need), "usage_command": command, "usage_sync_seconds": interval,
            "wait_for_reset": p.wait_for_reset}


# What a usage_command is rendered with (adws.usage_sync), for the check that it renders.
_USAGE_SAMPLE = {"provider": "sample-provider", "account": "sample-account", "home": "/home/user",
                 "config_dir": "/config"}


def check_usage_command(loc: Loc, command: tuple[str, ...], check: _Checker) -> None:
    """Each element parses, reads only `USAGE_COMMAND_VARIABLES` and renders; the program is not empty."""
    from adws.errors import RenderError
    from adws.templates import check_template, from_legacy, render_one

    sound = True
    for i, element in enumerate(command):
        error = check_template(from_legacy(element), USAGE_COMMAND_VARIABLES)
        if error is None:
            try:
                render_one(from_legacy(element), _USAGE_SAMPLE)
            except RenderError as exc:
                error = f"template {element!r} cannot be rendered: {str(exc).split(': ', 1)[-1]}"
        if error:
            check.add((*loc, i), error)
            sound = False
    if command and not command[0].strip():
        check.add((*loc, 0), "the program to run is empty")
    elif sound and command and not any(render_one(from_legacy(e), _USAGE_SAMPLE) for e in command):
        check.add(loc, "renders to an empty command")


def pools(loc: Loc, raw_pools: Mapping[str, Any], parent: QuotaSpec,
          compile_quota: Callable[[Any, Loc], QuotaSpec | None]) -> tuple[PoolSpec, ...]:
    """Each `[...quota.pools.P]` as a PoolSpec whose quota inherits the parent's hard block and alerts."""
    out = []
    for name, pool in raw_pools.items():
        spec = compile_quota(pool, (*loc, "pools", name))
        if spec is None:
            continue
        if pool.hard_block_percent is None or pool.alert_percent is None:
            from dataclasses import replace

            spec = replace(spec, hard_block_percent=pool.hard_block_percent or parent.hard_block_percent,
                           alert_percent=spec.alert_percent if pool.alert_percent is not None
                           else parent.alert_percent)
        out.append(PoolSpec(name, tuple(pool.models), spec))
    return tuple(out)


def check_pools(loc: Loc, provider: ProviderSpec, check: _Checker) -> None:
    """Cross-checks of a provider's pooled quotas against its models and accounts."""
    from adws.pools import SEPARATOR, pools_matching

    quotas: list[tuple[Loc, QuotaSpec]] = []
    if provider.quota is not None:
        quotas.append(((*loc, "quota"), provider.quota))
    quotas += [((*loc, "accounts", i, "quota"), a.quota) for i, a in enumerate(provider.accounts)
               if a.quota is not None]
    for where, quota in quotas:
        if not quota.pools:
            continue
        for model in provider.models:
            claimed = pools_matching(quota, model)
            if len(claimed) > 1:
                check.add((*where, "pools"), f'model "{model}" is selected by pools {", ".join(claimed)}: '
                          "a model draws on one pool")
            elif not claimed and not quota.limited:
                check.add((*where, "pools"), f'model "{model}" is selected by no pool and the quota has no limits '
                          "of its own: add it to a pool's models or give the quota tokens, requests or cost_usd")
        pooled = {p.name for p in quota.pools}
        for i, account in enumerate(provider.accounts):
            head, sep, tail = account.name.rpartition(SEPARATOR)
            if sep and tail in pooled:
                check.add((*loc, "accounts", i, "name"), f'account name "{account.name}" reads as account "{head}", '
                          f'pool "{tail}": rename it')
