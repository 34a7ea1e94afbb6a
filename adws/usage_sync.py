"""Running a declared `usage_command` and turning its JSON into observations (see adws.observe).

The command is a list of Jinja templates, one per argv element, rendered like `command_template` (sandboxed,
strict, no shell) with `provider`, `account`, `home` and `config_dir`; it runs through adws.runner with the
account's environment (its own `XDG_DATA_HOME`, its key copied into the provider's variable), so it sees the
account the way its agent does. It is run by `adws quota --sync` and, at most every `usage_sync_interval`, by
a run before it routes; never by `route()`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from adws import interrupts
from adws.attempt import RunOutcome
from adws.compiled import AccountSpec, ProviderSpec, QuotaSpec
from adws.dataclass_cache import dataclass
from adws.errors import suggest
from adws.observe import UNMETERED, UsageCommandError, WindowReading, parse_usage_output
from adws.pools import subject
from adws.state.base import Observation, StateStore

USAGE_COMMAND_TIMEOUT = 60.0  # seconds: a usage query answers quickly or is broken

Runner = Callable[..., RunOutcome]


@dataclass(frozen=True, slots=True)
class SyncResult:
    """One account's sync: its observations, or the one-line error that kept them from being read."""

    provider: str
    account: str
    observations: tuple[Observation, ...] = ()
    error: str | None = None


def readings_to_observations(provider: str, account: str, quota: QuotaSpec | None,
                             readings: list[WindowReading], now: datetime,
                             source: str = "usage_command") -> list[Observation]:
    """Map each window to its quota subject; UsageCommandError for a window that names no pool.

    A window without a `limit` is read against the declared quota's first limited dimension (tokens, then
    requests, then cost_usd); without either there is nothing to compare it with, which is an error too.
    """
    pools = {p.name: p for p in (quota.pools if quota else ())}
    out = []
    for r in readings:
        if r.window == UNMETERED:
            pool_name, governed = None, quota
        elif r.window in pools:
            pool_name, governed = r.window, pools[r.window].quota
        else:
            names = [UNMETERED, *pools]
            raise UsageCommandError(f'window "{r.window}" is not a pool of this quota{suggest(r.window, names)}; '
                                    f"windows: {', '.join(names)}")
        limit = r.limit
        if limit is None and governed is not None:
            limit = next((float(v) for v in (governed.tokens, governed.requests, governed.cost_usd)
                          if v is not None), None)
        if limit is None:
            raise UsageCommandError(f'window "{r.window}": no limit given and none declared to compare with')
        out.append(Observation(provider, subject(account, pool_name), now, r.used / limit * 100.0, source,
                               r.used, limit, r.reset_at))
    return out


def usage_command_of(provider: ProviderSpec, account: AccountSpec | None) -> tuple[str, ...]:
    """The account's own usage_command, else the provider's (empty: none declared)."""
    return (account.usage_command if account is not None and account.usage_command else ()) or \
        provider.usage_command


def sync_account(provider: ProviderSpec, account: AccountSpec | None, *, config_dir: str, now: datetime,
                 environ: Mapping[str, str], runner: Runner | None = None) -> SyncResult:
    """Run one account's usage command and read its output. Every failure is a SyncResult with `error` set
    (the command did not start, exited non-zero, printed something unreadable): a sync never raises for it.

    A stop is not a failure: adws stopped while the command ran (a signal under adws.interrupts, or Ctrl-C) raises
    KeyboardInterrupt named after the signal, once the runner has ended the command's processes; a cancellable
    runner's RunCancelled (adws.aio) propagates as it is. Nothing after it runs (no next account, no routing)."""
    from adws.errors import RenderError
    from adws.runner import RunRequest
    from adws.runner import run as run_process
    from adws.templates import render_argv, render_env

    resolved = provider.run_account(account.name if account is not None else None)
    name = resolved.name
    command = usage_command_of(provider, account)
    if not command:
        return SyncResult(provider.name, name, error="no usage_command declared")
    variables = {"provider": provider.name, "account": resolved.shown or "", "home": str(Path.home()),
                 "config_dir": config_dir}
    try:
        argv = render_argv(command, variables)
        # The account's environment as its agent gets it (adws.compiled.Account: resolved once, at load).
        env = {**environ, **render_env(resolved.env, variables)}
        if resolved.key_target and resolved.key_env and resolved.key_env in environ:
            env[resolved.key_target] = environ[resolved.key_env]
    except RenderError as exc:
        return SyncResult(provider.name, name, error=f"usage_command: {exc}")
    env.update({"ADWS_PROVIDER": provider.name, "ADWS_ACCOUNT": name})
    secrets = [environ[v] for v in resolved.secret_vars if environ.get(v)]
    quota = resolved.quota
    # Shielded (adws.interrupts): a stop signal that lands while the command is being started waits for the
    # runner's wait, which ends the command's processes, instead of leaving them running.
    with tempfile.TemporaryDirectory(prefix="adws-usage-") as out_dir, interrupts.shielded():
        outcome = (runner or run_process)(RunRequest(argv=argv, env=env, cwd=config_dir, out_dir=out_dir,
                                                     timeout=USAGE_COMMAND_TIMEOUT, grace=2.0, secrets=secrets))
    if outcome.interrupted is not None:
        raise KeyboardInterrupt(outcome.interrupted)
    where = f"usage_command {' '.join(outcome.argv)}"
    if outcome.spawn_error:
        return SyncResult(provider.name, name, error=f"{where}: {outcome.spawn_error}")
    if outcome.timed_out:
        return SyncResult(provider.name, name, error=f"{where}: no answer within {USAGE_COMMAND_TIMEOUT:g} s")
    if outcome.exit_code != 0:
        last = (outcome.stderr_tail.strip().splitlines() or [""])[-1][:200]
        return SyncResult(provider.name, name, error=f"{where}: exit {outcome.exit_code}" + (f": {last}" if last
                                                                                            else ""))
    try:
        readings = parse_usage_output(outcome.stdout_tail)
        observations = readings_to_observations(provider.name, name, quota, readings, now)
    except UsageCommandError as exc:
        return SyncResult(provider.name, name, error=f"{where}: {exc}")
    return SyncResult(provider.name, name, tuple(observations))



def sync_usage(providers: Mapping[str, ProviderSpec], store: StateStore, *, config_dir: str, now: datetime,
               environ: Mapping[str, str], runner: Runner | None = None,
               due_only: bool = False) -> list[SyncResult]:
    """Run every declared usage command and record what they observed in the store.

    `due_only` (what a run does before routing): only providers with a `usage_sync_interval` whose latest
    usage_command observation is older than it, or later than `now` (a clock out of step wrote it). `adws quota
    --sync` runs them all. A stop while a command runs propagates (see sync_account); what was observed before it
    is recorded.
    """
    latest: dict[str, datetime] = {}
    if due_only:
        for (owner, _), obs in store.observations().items():
            if obs.source == "usage_command" and (owner not in latest or obs.at > latest[owner]):
                latest[owner] = obs.at
    results = []
    for provider in providers.values():
        if not provider.enabled:
            continue
        if due_only:
            if provider.usage_sync_seconds is None:
                continue
            last = latest.get(provider.name)
            # A reading later than now (a host whose clock is ahead wrote it) says nothing about when the last sync
            # ran: counted as recent, it would keep every host from syncing until its time came.
            if last is not None and 0 <= (now - last).total_seconds() < provider.usage_sync_seconds:
                continue
        for account in provider.accounts or (None,):
            if account is not None and not account.enabled:
                continue
            if not usage_command_of(provider, account):
                continue
            result = sync_account(provider, account, config_dir=config_dir, now=now, environ=environ, runner=runner)
            for observation in result.observations:
                store.record_observation(observation)
            results.append(result)
    return results
