"""ProviderManager: the executing half of adws. Walks a Decision's plan attempt by attempt.

Each attempt is three steps, each its own method:
1. `_command`: render the provider's command and environment for the account, collect the secrets to redact,
   and refuse what no program could receive (RenderError, recorded as an `error` attempt);
2. `_interpret`: after adws.runner ran it, parse its output (adws.parsers) and classify it (adws.classify);
3. `_record`: write usage, cooldowns and the circuit breaker's transition (adws.breaker) to the store.
Then the walk takes the class's declared action: `next_account`, `next_tier`, `retry` (bounded, with backoff)
or `stop`. The walk only ever moves forward through the plan, so it cannot loop or exceed it.

Per tier, an open circuit breaker admits one probe (adws.breaker) and the account strategy takes a turn
(adws.strategies: round robin's cursor, sticky's memory). A provider with `max_concurrency` runs each attempt
under a slot leased from the shared store, so the limit holds across coordinator processes. When every slot
is taken the attempt is not started: it is recorded as `unavailable` ("busy: ...") and the walk moves to the
next tier, without touching usage, cooldowns or the circuit breaker (a busy provider is healthy).
"""

from __future__ import annotations

import os
import re
import secrets as _secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from adws import breaker, interrupts
from adws.accounts import StatefulAccounts, credential_cooldown
from adws.arguments import checked_callable, checked_prompt, checked_workdir, got
from adws.attempt import Classification, OutcomeClass, RunOutcome, Usage
from adws.classify import booked_usage, classify
from adws.compiled import Account, CompiledConfig, ProviderSpec, key_variables
from adws.dataclass_cache import dataclass, field, replace
from adws.decision import Decision, Step
from adws.errors import AdwsError, ArgumentError, RenderError, RunCancelled
from adws.events import Event, EventKind, EventSink, SafeSink
from adws.files import RunPruner, create_private, make_private_dir, make_run_dir, write_private
from adws.parsers import read_output
from adws.pools import governing
from adws.redact import MIN_SECRET_CHARS, PROMPT_MARK, Scrubber, encodable, encode_text, looks_secret, secret_values
from adws.result import NOTHING_TO_RUN, Attempt, Result
from adws.router import Clock
from adws.runner import RunRequest
from adws.runner import run as run_process
from adws.state.base import MAX_COUNT, Cooldown, Observation, StateStore, StateStoreError, UsageRecord
from adws.strategies import STRATEGIES, Turn
from adws.task import Task
from adws.templates import NO_PREVIOUS, render_argv, render_env, render_one
from adws.verify import declared, verify
from adws.workdir import KeepWorkspace, Workspace

__all__ = ["Attempt", "ProviderManager", "Result", "Runner", "Sleeper"]  # Attempt, Result: old import path

# Linux refuses a single argv element longer than this (MAX_ARG_STRLEN = 32 pages).
MAX_ARG_BYTES = 128 * 1024
# A limit without an announced reset and without a quota schedule cools the account for this long.
DEFAULT_LIMIT_COOLDOWN = timedelta(minutes=15)
# A slot lease outlives the longest an attempt can run (timeout, then kill grace) by this much: a coordinator
# killed mid-run frees its slot at most this long after its attempt would have ended.
SLOT_LEASE_MARGIN = timedelta(seconds=60)
# Choosing an account and reserving on it happen under this per-provider lease, so two coordinators never choose
# from a snapshot that lacks the other's reservation. Held for a few store operations; polled, bounded.
RESERVE_LOCK = "reserve-lock:"
RESERVE_LOCK_LEASE = timedelta(seconds=30)
RESERVE_LOCK_TRIES = 1000
RESERVE_LOCK_POLL = 0.005  # seconds

# A stopped attempt's changes are saved and its tree restored (workdir "reset", "worktree") within this many
# seconds, all git commands together: the stop is waiting for it. Below adws.batch.STOP_JOIN_SECONDS, which a
# stopping run_many gives each worker after its agent's kill_grace to record what it ran.
STOP_TIDY_SECONDS = 4.0
CANCELLED = "cancelled: the run was cancelled and the agent's process group ended"

Runner = Callable[[RunRequest], RunOutcome]
Sleeper = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class Command:
    """An attempt ready to run: step 1's product."""

    argv: list[str]
    env: dict[str, str]
    stdin: bytes | None
    secrets: list[str]  # values to redact from what is recorded
    shown: list[str]  # argv as recorded: rendered with <prompt> for the prompt unless the audit keeps prompts
    variables: dict[str, Any]  # what the templates saw (verify renders with the same)


class Interpretation(NamedTuple):
    """What an attempt's output means: step 2's product."""

    verdict: Classification
    text: str | None  # the agent's final answer, where its output has one
    usage: Usage | None  # None when the process never started
    readings: list[tuple[str, float, datetime | None]]  # real usage the CLI reported in passing (adws.observe)


class Tried(NamedTuple):
    """One attempt made: its record, the final text and output file on success, and whether it started."""

    attempt: Attempt
    text: str | None
    output_file: str | None
    ran: bool  # False when the command never started (it did not render)
    cwd: Path  # where it ran (the workspace's directory for it)
    out_dir: Path  # its attempt directory
    warnings: tuple[str, ...] = ()  # what of the attempt could not be recorded (state store, output file)
    interrupted: str | None = None  # the stop signal that ended the attempt: the walk ends after recording it
    cancel: RunCancelled | None = None  # the cancellation that ended it (arun, run_many): raised once recorded
    finished: Event | None = None  # its attempt_finished event, sent once it is in the result


def scrubber_for(config: CompiledConfig, environ: Mapping[str, str], prompt: str) -> Scrubber:
    """What one run's records are cleaned with: every secret adws knows, and the prompt's text unless
    `[audit] include_prompt` keeps it."""
    return Scrubber(secret_values(environ, key_variables(config)),
                    None if config.audit_include_prompt else prompt)


@dataclass(slots=True)
class RunContext:
    """What every attempt of one run shares: where attempts run (the workspace), who hears of them, what
    its records are cleaned with (per run, not per manager: threads may share one manager), and the task's key
    as the state store keeps it (`ProviderManager._key_shown`, made once per run)."""

    workspace: Workspace
    observer: SafeSink = field(default_factory=lambda: SafeSink(None))  # never raises (adws.events.SafeSink)
    scrub: Scrubber = field(default_factory=Scrubber)
    key: str | None = None

    def emit(self, event: Event) -> None:
        self.observer(event)


class ProviderManager:
    def __init__(self, config: CompiledConfig, *, store: StateStore, accounts: StatefulAccounts,
                 runner: Runner = run_process, sleep: Sleeper = time.sleep, clock: Clock,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.store = store
        self.accounts = accounts
        self.runner = runner
        self.sleep = sleep
        self.clock = clock
        self.environ = os.environ if environ is None else environ
        self._breaker_cooldown = timedelta(seconds=config.breaker.cooldown_seconds)
        self._key_vars = frozenset(key_variables(config))
        # A run directory younger than the longest attempt (plus a margin) may be another process's run.
        longest = max((p.timeout + p.kill_grace for p in config.providers.values()), default=0.0)
        self._pruner = RunPruner(Path(config.run_dir), config.keep_runs, busy_for=longest + 60)
        self._last_run: Path | None = None  # the run directory made last, whose marker the next one links

    # -- the walk -----------------------------------------------------------------------------------------

    def run(self, task: Task, decision: Decision, *, prompt: str, workdir: str | os.PathLike[str],
            result: Result | None = None, workspace: Workspace | None = None,
            observer: EventSink | None = None, scrub: Scrubber | None = None) -> Result:
        """Walk the plan; every attempt lands in `result` (a new one unless given) as it is made.

        Interrupted (SIGTERM, Ctrl-C: KeyboardInterrupt; a cancelled arun or run_many: RunCancelled) or failed,
        the exception propagates and `result` holds the attempts so far, with `run_dir` set once the run began:
        the caller passes its own `result` to still log them. An attempt whose agent had started is in it
        whenever the stop landed (the agent, its verify command, the recording): the runner has ended the
        processes, usage is booked, the slot released, its changes saved and its tree tidied like a failed one's.
        Raises AdwsError when the run directory cannot be created (nothing ran).
        `workspace` (adws.workdir) says where each attempt runs and what a failed one leaves behind (default:
        `keep`, every attempt in `workdir`); `observer` hears each attempt start and end (adws.events), once the
        attempt is in `result`; an Exception it raises is caught (adws.events.SafeSink): the first is named in
        `result.warnings`, and the run goes on. `scrub`: what the run's records are cleaned with, when the caller
        has made it already (`scrubber_for` the run).
        """
        if not isinstance(task, Task) or not isinstance(decision, Decision):
            wrong = ("task", task, "an adws.Task") if not isinstance(task, Task) else \
                ("decision", decision, "an adws.Decision (from engine.route)")
            raise ArgumentError(f"{wrong[0]}: expected {wrong[2]}, got {got(wrong[1])}")
        checked_prompt(prompt)
        checked_workdir(workdir)
        checked_callable("observer", observer, what="an adws.events.Event")
        result = result if result is not None else Result(False, decision)
        key = self._key_shown(task)
        run_dir = self._run_dir(key)
        result.run_dir = str(run_dir)
        sink = SafeSink(observer)
        ctx = RunContext(workspace if workspace is not None else KeepWorkspace(Path(workdir).resolve()), sink,
                         scrub if scrub is not None else scrubber_for(self.config, self.environ, prompt), key)
        try:
            return self._walk(task, decision, result, run_dir, prompt, ctx)
        except KeyboardInterrupt as exc:
            result.message = (f"interrupted by {str(exc) or 'SIGINT'} after {len(result.attempts)} attempt(s); "
                              "the agent's processes were stopped")
            raise
        except BaseException as exc:
            result.message = ("cancelled; the agent's process group was ended" if isinstance(exc, RunCancelled)
                              else f"stopped after {len(result.attempts)} attempt(s) by {type(exc).__name__}: {exc}")
            raise
        finally:
            failure = sink.take()
            if failure is not None:
                result.warnings.append(failure)

    def _walk(self, task: Task, decision: Decision, result: Result, run_dir: Path, prompt: str,
              ctx: RunContext) -> Result:
        if not decision.plan:
            result.message = NOTHING_TO_RUN
            return result
        for tier_index, step in enumerate(decision.plan):
            provider = self.config.providers[step.provider]
            strategy = STRATEGIES[provider.account_strategy]
            with breaker.admission(self.store, provider, self.clock(), self._breaker_cooldown,
                                   self.accounts.sightings) as admitted:
                if not admitted:
                    result.attempts.append(self._unavailable(
                        step, provider, step.account, "circuit half-open: another attempt is probing"))
                    continue
                with strategy.take_turn(provider, step.accounts, self.store, task.key) as turn:
                    if self._tier(task, decision, step, tier_index, provider, turn, result, run_dir, prompt, ctx):
                        return result
        result.message = f"plan spent after {len(result.attempts)} attempt(s); last: {result.attempts[-1].reason}"
        return result

    def _tier(self, task: Task, decision: Decision, step: Step, tier_index: int, provider: ProviderSpec,
              turn: Turn, result: Result, run_dir: Path, prompt: str, ctx: RunContext) -> bool:
        """Try the tier's accounts in turn order; True when the walk ends here (success or `stop`)."""
        retry = self.config.retry
        accounts = [provider.run_account(name) for name in turn.accounts] or [provider.run_account(None)]
        index, retries = 0, 0
        waited: set[str] = set()
        while index < len(accounts):
            first_try = index == 0 and retries == 0 and not waited
            holder, no_room = self._reserve(task, step, provider, accounts, index, first_try)
            if no_room is not None:  # runs committed since the decision took the room: nothing fits here now
                result.attempts.append(self._unavailable(step, provider, accounts[index].shown, no_room))
                return False
            account = accounts[index]
            # From the start of the process to its place in `result` and its workspace tidied, a stop signal waits
            # (adws.interrupts; the runner takes it while the agent or its verify command runs): an attempt that
            # ran is always recorded, and its slot and reservation released, before the run unwinds.
            with interrupts.shielded():
                try:
                    with self._slot(provider, result.warnings) as free:
                        if not free:
                            reason = f"busy: max_concurrency {provider.max_concurrency} reached on {provider.name}"
                            result.attempts.append(self._unavailable(step, provider, account.shown, reason))
                            return False  # next_tier whatever the actions say: nothing ran, nothing failed
                        tried = self._attempt(
                            task, decision, step, tier_index, provider, account, prompt, run_dir,
                            f"{len(result.attempts) + 1:02d}-{tier_index + 1}-{provider.name}-{account.name}",
                            result, ctx)
                finally:
                    if holder is not None:  # the real usage is recorded: it replaces the reservation
                        self._release_reservation(provider, holder, result.warnings)
                attempt = tried.attempt
                result.attempts.append(attempt)
                result.warnings.extend(tried.warnings)
                turn.used(account.name, ran=tried.ran)
                if tried.finished is not None:  # heard once recorded: an observer that raises loses nothing
                    ctx.emit(tried.finished)
                if tried.interrupted is not None or tried.cancel is not None:
                    # Stopped: what it changed is saved and the tree tidied as after a failure, within a bound.
                    attempt.action = "stop"
                    attempt.patch = self._tidy(ctx, tried.cwd, tried.out_dir, result.warnings)
                    if tried.cancel is not None:
                        tried.cancel.attempt = attempt
                        raise tried.cancel
                    raise KeyboardInterrupt(tried.interrupted)
                if attempt.outcome == OutcomeClass.SUCCESS:
                    result.success, result.final_text, result.output_file = True, tried.text, tried.output_file
                    result.message = f"succeeded on {step.provider}" + (f"/{account.shown}" if account.shown else "")
                    attempt.action = "stop"
                    if attempt.usage is not None and not attempt.usage.estimated:
                        try:  # what the learned need reads; losing one sample never loses the success
                            self.store.record_run(provider.name, result.decision.view.specialization,
                                                  attempt.started_at, attempt.usage.total_tokens)
                        except StateStoreError as exc:
                            result.warnings.append(f"{provider.name}: run size not recorded in the state store: "
                                                   f"{exc}")
                    result.handoff = ctx.workspace.succeeded(tried.cwd).to_dict()
                    return True
                # What the failed attempt left is saved (a patch) and, by the policy, cleared for the next one.
                attempt.patch = ctx.workspace.failed(tried.cwd, tried.out_dir)
            action = provider.actions[OutcomeClass(attempt.outcome)]  # merged with the defaults at load
            wait = self._short_limit(provider, attempt)
            if wait is not None and action in ("next_account", "next_tier") and account.name not in waited:
                # A limit that lifts within wait_for_reset: waiting keeps the account (and the agent's prompt
                # cache) where the action would rotate and spend another account's quota. Once per account, so
                # it stays bounded; a declared `stop` or `retry` is left as it is.
                waited.add(account.name)
                attempt.action, attempt.waited_seconds = "wait_for_reset", wait
                self.sleep(wait)
                continue
            if action == "retry" and retries >= retry.max_retries:
                action = "next_tier"  # retries spent: the failure is not this account's alone
            if action in ("retry", "next_account") and self._breaker_opened(provider, attempt):
                action = "next_tier"  # this attempt opened the circuit: the provider is down, not the account
            if action == "next_account" and index + 1 >= len(accounts):
                action = "next_tier"  # record the move the walk really makes
            attempt.action = action
            if action == "stop":
                result.message = f"stopped after {attempt.outcome} on {step.provider} ({attempt.reason})"
                return True
            if action == "retry":
                delay = min(retry.backoff_seconds * retry.backoff_factor ** retries, retry.max_backoff_seconds)
                retries += 1
                self.sleep(delay)
                continue
            if action == "next_account":
                index, retries = index + 1, 0
                continue
            return False  # next_tier
        return False

    # -- reservations and short limits ------------------------------------------------------------------------

    def _reserve(self, task: Task, step: Step, provider: ProviderSpec, accounts: list[Account],
                 index: int, first_try: bool) -> tuple[str | None, str | None]:
        """Reserve the step's expected need on `accounts[index]`'s quota subject for the attempt. Returns
        (holder, no_room): the reservation's holder, or None when there is nothing to reserve (no need declared,
        or the account is not metered); `no_room`, on the tier's first try only, is why no account of the step
        can take the task any more (then nothing is reserved and the walk goes on to the next tier).

        At index 0 the choice is checked again under a short per-provider lock in the store, with a fresh
        snapshot that counts every reservation made so far: when another coordinator has committed a run to the
        planned account since (or it is no longer usable), the strategy's first usable account of the step moves
        to the front (in place). So coordinators that routed in the same instant, from the same snapshot, still
        start on different accounts: each one chooses only after the previous one's reservation is in the store.
        When none of the step's accounts is usable any more (their room went to those runs), the tier's first try
        starts nothing: a run that cannot fit would only be cut off by the provider's limit.
        """
        need = step.need
        if need is None:
            return None, None
        holder = f"{os.getpid()}-{_secrets.token_hex(6)}"
        lock = RESERVE_LOCK + provider.name
        locked = index == 0 and self._lock(lock, holder)
        try:
            if index == 0:
                now = self.clock()
                self.accounts.generation(now)  # re-read: other coordinators' reservations are counted
                strategy = STRATEGIES[provider.account_strategy]
                ranking = self.accounts.rank(provider, task.key if strategy.depends_on_task else None, now,
                                             model=step.model, need=need)
                names = [a.name for a in accounts]
                planned = accounts[0]
                subject = governing(planned.quota, planned.name, step.model).subject
                # The plan's first account (the strategy's choice, or the rule's) stands while nobody else has
                # committed a run to it since; otherwise the strategy's first usable account of the step goes first.
                taken = self.accounts.reserved_tokens(provider.name, subject, now) > 0
                best = next((n for n in ranking.eligible if n in names), None)
                if best is not None and best != planned.name and (taken or planned.name not in ranking.eligible):
                    accounts.insert(0, accounts.pop(names.index(best)))
                elif best is None and first_try and planned.name not in ranking.eligible:
                    why = next((s.reason for s in ranking.skipped if s.account in (planned.name, planned.shown)), None)
                    return None, (f"no {provider.name} account can take ~{need.required:,} tokens any more: runs "
                                  f"started since the decision took the room" + (f" ({why})" if why else ""))
            account = accounts[index]
            gov = governing(account.quota, account.name, step.model)
            if gov.quota is None:
                return None, None
            now = self.clock()
            until = now + timedelta(seconds=provider.timeout + provider.kill_grace) + SLOT_LEASE_MARGIN
            self.store.reserve(provider.name, gov.subject, holder, need.required, now, until)
            return holder, None
        finally:
            if locked:
                self.store.release_slot(lock, holder)

    def _release_reservation(self, provider: ProviderSpec, holder: str, warnings: list[str]) -> None:
        """Give the attempt's reservation back; a store that refuses only costs a warning (the reservation then
        expires like a lease)."""
        try:
            self.store.release_reservation(provider.name, holder)
        except StateStoreError as exc:
            warnings.append(f"{provider.name}: reservation not released ({exc}); it expires by itself")

    def _lock(self, key: str, holder: str) -> bool:
        """Take a one-holder lease in the store, polling a bounded number of times; False when it stayed taken
        (the choice is then made without it: a stuck lock delays a run, it never stops one)."""
        for _ in range(RESERVE_LOCK_TRIES):
            now = self.clock()
            if self.store.acquire_slot(key, holder, 1, now, now + RESERVE_LOCK_LEASE):
                return True
            self.sleep(RESERVE_LOCK_POLL)
        return False

    def _short_limit(self, provider: ProviderSpec, attempt: Attempt) -> float | None:
        """Seconds to wait when the attempt hit a limit whose announced reset is within wait_for_reset."""
        if provider.wait_for_reset <= 0 or attempt.reset_at is None:
            return None
        if attempt.outcome not in (OutcomeClass.RATE_LIMITED, OutcomeClass.QUOTA_EXHAUSTED):
            return None
        wait = (attempt.reset_at - self.clock()).total_seconds()
        return max(wait, 0.0) if wait <= provider.wait_for_reset else None

    # -- concurrency slots ----------------------------------------------------------------------------------

    def _breaker_opened(self, provider: ProviderSpec, attempt: Attempt) -> bool:
        """Whether the provider's circuit is open now (this attempt's failure may just have opened it)."""
        if OutcomeClass(attempt.outcome) not in self.config.breaker.counts:
            return False
        try:
            return self.store.get_breaker(provider.name).state == "open"
        except StateStoreError:
            return False  # cannot tell: the declared action stands

    @contextmanager
    def _slot(self, provider: ProviderSpec, warnings: list[str]) -> Iterator[bool]:
        """Hold one of the provider's max_concurrency slots for the block; yields False when all are taken.

        The slot is released on the way out, whatever the block raised; a release the store refuses is
        added to `warnings` (the lease then ends by itself when it expires).
        """
        limit = provider.max_concurrency
        if limit is None:
            yield True
            return
        holder = f"{os.getpid()}-{_secrets.token_hex(6)}"  # unique per attempt, readable in the store
        now = self.clock()
        until = now + timedelta(seconds=provider.timeout + provider.kill_grace) + SLOT_LEASE_MARGIN
        if not self.store.acquire_slot(provider.name, holder, limit, now, until):
            yield False
            return
        try:
            yield True
        finally:
            try:
                self.store.release_slot(provider.name, holder)
            except StateStoreError as exc:
                warnings.append(f"concurrency slot on {provider.name} not released ({exc}); it frees itself at "
                                f"{until.isoformat()}")

    def _unavailable(self, step: Step, provider: ProviderSpec, account: str | None, reason: str) -> Attempt:
        """An attempt that was not started because the provider could not be reached right now."""
        return Attempt(provider.name, step.model, account, OutcomeClass.UNAVAILABLE.value, reason, None, None, 0,
                       None, [], self.clock(), "next_tier")

    # -- one attempt --------------------------------------------------------------------------------------

    def _attempt(self, task: Task, decision: Decision, step: Step, tier_index: int, provider: ProviderSpec,
                 account: Account, prompt: str, run_dir: Path, label: str, result: Result,
                 ctx: RunContext) -> Tried:
        started = self.clock()
        out_dir = run_dir / _safe(label)
        prompt_file, output_file = out_dir / "prompt.txt", out_dir / "output.txt"
        cwd = ctx.workspace.begin(f"{run_dir.name}-{_safe(label)}")
        rule = decision.matched
        event = Event(EventKind.ATTEMPT_STARTED, 0, task.key or "task", started, provider=provider.name,
                      account=account.shown, model=step.model, attempt=len(result.attempts) + 1,
                      tier=tier_index + 1)
        try:
            make_private_dir(out_dir)
            previous = _previous(result)
            suffix = (rule.prompt_suffix if rule is not None and rule.prompt_suffix is not None
                      else provider.prompt_suffix)
            if suffix is not None and previous["outcome"] is not None:
                # The next tier is told what was tried and why it failed (the hand-off).
                prompt = prompt.rstrip("\n") + "\n\n" + render_one(suffix, {
                    **step.vars, "previous": previous, "task": task.to_dict(), "provider": provider.name,
                    "model": step.model or "", "workdir": str(cwd)})
            command = self._command(task, step, provider, account, prompt, cwd, out_dir, previous)
            if provider.uses_prompt_file:
                # Only when a template names it: prompt text is not left on disk without a reason.
                write_private(prompt_file, prompt)
        except (RenderError, OSError) as exc:
            # Nothing ran: nothing billed, nothing for the breaker. The reason is what stopped it.
            reason = str(exc) if isinstance(exc, RenderError) else \
                f"cannot write the attempt's files in {out_dir}: {exc.strerror or exc}; nothing ran"
            attempt = Attempt(provider.name, step.model, account.shown, OutcomeClass.ERROR.value,
                              ctx.scrub.text(reason), None, None, 0, None, [], started, "", workdir=str(cwd))
            return Tried(attempt, None, None, False, cwd, out_dir)
        ctx.emit(event)
        scrub = ctx.scrub.with_secrets(command.secrets)  # the run's secrets and prompt, and this account's secrets
        cancel: RunCancelled | None = None
        try:
            outcome = self.runner(RunRequest(
                argv=command.argv, env=command.env, cwd=cwd, out_dir=out_dir, timeout=provider.timeout,
                stdin=command.stdin, grace=provider.kill_grace, output_cap=self.config.output_cap_bytes,
                secrets=list(scrub.secrets),  # the logs adws writes are redacted too
                idle_timeout=provider.idle_timeout,
            ))
        except RunCancelled as stop:
            if not isinstance(stop.outcome, RunOutcome):  # cancelled before this attempt began: nothing ran
                self._tidy(ctx, cwd, out_dir, result.warnings)  # its worktree, made for nothing, goes
                raise
            outcome, cancel = stop.outcome, stop
        # The process ran (and may have been billed): from here nothing may lose the attempt. A stop (a signal,
        # a cancellation) while its verify command runs ends the walk once the attempt is recorded, as one while
        # the agent runs does.
        now = self.clock()
        warnings: list[str] = []
        interrupted = outcome.interrupted
        verdict, text, usage, readings = self._verdict(step, provider, prompt, outcome, now,
                                                       cancelled=cancel is not None)
        checked = None
        templates = declared(decision, provider)
        if verdict.outcome == OutcomeClass.SUCCESS and templates:
            unverified = "the agent had finished; its work is unverified"
            try:
                checked = verify(templates, command.variables, cwd=cwd, attempt_dir=out_dir, env=command.env,
                                 timeout=provider.verify_timeout, runner=self.runner,
                                 secrets=list(scrub.secrets), grace=provider.kill_grace)
            except RenderError as exc:
                verdict = Classification(OutcomeClass.ERROR, str(exc))
            except KeyboardInterrupt as exc:  # adws stopped while verify ran (the runner ended its processes)
                interrupted = str(exc) or "SIGINT"
                verdict = Classification(OutcomeClass.ERROR, f"interrupted by {interrupted} while its verify "
                                         f"command ran: adws was stopped; {unverified}")
            except RunCancelled as stop:
                cancel = stop
                verdict = Classification(OutcomeClass.ERROR, f"{CANCELLED} while its verify command ran; "
                                         f"{unverified}")
            else:
                if not checked.passed:
                    verdict = Classification(OutcomeClass.VERIFY_FAILED, checked.reason)
            now = self.clock()
        stopped = interrupted is not None or cancel is not None
        try:
            # What the stopped attempt is known to have used is booked; being stopped is not the provider failing.
            self._record(provider, account, step, ctx.key, verdict, usage, now, readings, counts=not stopped)
        except StateStoreError as exc:
            warnings.append(f"{provider.name}/{account.name}: usage, cooldown and breaker not recorded in the "
                            f"state store: {exc}")
        if text is not None:
            # The answer keeps any prompt text it quotes (it is not the audit log), but never a secret.
            text = Scrubber(scrub.secrets).text(text)
        written = None
        if verdict.outcome == OutcomeClass.SUCCESS and text is not None:
            written = _write_output(output_file, text, warnings)
        attempt = Attempt(provider.name, step.model, account.shown, verdict.outcome.value, scrub.text(verdict.reason),
                          outcome.exit_code, outcome.signal, outcome.duration_ms, usage,
                          [scrub.text(arg) for arg in command.shown], started, "", verdict.reset_at,
                          outcome.stdout_path, outcome.stderr_path,
                          verify=checked.to_dict() if checked is not None else None, workdir=str(cwd))
        finished = replace(event, kind=EventKind.ATTEMPT_FINISHED, at=now, outcome=attempt.outcome,
                           reason=attempt.reason, duration_ms=outcome.duration_ms)
        return Tried(attempt, text, written, True, cwd, out_dir, warnings=tuple(scrub.text(w) for w in warnings),
                     interrupted=interrupted, cancel=cancel, finished=finished)

    def _tidy(self, ctx: RunContext, cwd: Path, out_dir: Path, warnings: list[str]) -> str | None:
        """What a stopped attempt changed, saved as a patch, and its tree restored or its worktree removed, as after
        a failure (adws.workdir), within STOP_TIDY_SECONDS. The patch's path, or None; never raises: what could
        not be done is a line in `warnings` (the changes are then still where the attempt ran)."""
        try:
            return ctx.workspace.failed(cwd, out_dir, within=STOP_TIDY_SECONDS)
        except AdwsError as exc:
            warnings.append(f"the stopped attempt's changes were not saved and its tree not restored ({exc}); "
                            f"they are still in {cwd}")
            return None

    # step 1 ---------------------------------------------------------------------------------------------------

    def _command(self, task: Task, step: Step, provider: ProviderSpec, account: Account, prompt: str,
                 workdir: str | os.PathLike[str], out_dir: Path, previous: Mapping[str, Any]) -> Command:
        """Render argv and environment for `account`. Raises RenderError for what no program could receive."""
        if not step.model and provider.uses_model:
            raise RenderError(f"provider {provider.name} declares no models and nothing chose one, but its "
                              "command uses {{ model }}: declare [providers." + provider.name + ".models.ID] "
                              "or set the model in the rule or routing.default_model")
        variables: dict[str, Any] = {
            **step.vars, "prompt": prompt, "prompt_file": f"{out_dir}/prompt.txt",
            "output_file": f"{out_dir}/output.txt", "model": step.model or "", "provider": provider.name,
            "account": account.shown or "", "task": task.to_dict(), "workdir": str(workdir),
            "run_dir": str(out_dir), "home": _home(), "config_dir": self.config.base_dir,
            "previous": previous,
        }
        argv = render_argv(provider.command, variables)
        shown = argv
        if not self.config.audit_include_prompt:
            # Rendered again with a mark for the prompt: whatever filters the template applies to the prompt
            # ({{ prompt | trim }}, a slice, upper), no part of it reaches the record.
            shown = render_argv(provider.command, {**variables, "prompt": PROMPT_MARK})
        # Credentials are per account: the keys the config names for other accounts and providers stay out of
        # this child's environment (its own account's, and what its `env` tables set, go in).
        foreign = self._key_vars.difference(account.secret_vars)
        env = {k: v for k, v in self.environ.items() if k not in foreign}
        env.update(render_env(account.env, variables))
        if account.key_target and account.key_env and account.key_env in self.environ:
            # The account's key goes where the CLI looks for it; the value never enters argv.
            env[account.key_target] = self.environ[account.key_env]
        # The task's id is data from outside: a lone surrogate in it must not make every attempt unrunnable.
        env.update({"ADWS_PROVIDER": provider.name, "ADWS_ACCOUNT": account.name,
                    "ADWS_MODEL": step.model or "", "ADWS_TASK_ID": encodable(task.key or "")})
        # A key variable's value too short to recognise is a placeholder (OPENAI_API_KEY=ollama for a local
        # server), left alone as secret_values leaves it: replacing it would blank every such word the agent
        # prints. It reaches the child through its environment only, never its command line.
        secrets = [value for n in account.secret_vars if len(value := self.environ.get(n) or "") >= MIN_SECRET_CHARS]
        secrets += [v for k, v in env.items()
                    if k in account.env and looks_secret(k) and len(v) >= MIN_SECRET_CHARS]
        _check_receivable(provider, argv, env)
        stdin = encode_text(prompt) if provider.prompt == "stdin" else None
        return Command(argv, env, stdin, secrets, shown, variables)

    # step 2 ---------------------------------------------------------------------------------------------------

    def _verdict(self, step: Step, provider: ProviderSpec, prompt: str, outcome: RunOutcome,
                 now: datetime, *, cancelled: bool = False) -> Interpretation:
        """`_interpret`, or what an interrupted or cancelled attempt or an output adws fails to read means: never
        raises. A stopped attempt is an `error` with usage estimated from what it was sent and printed."""
        if cancelled:
            return Interpretation(Classification(OutcomeClass.ERROR, CANCELLED), None,
                                  self._estimate(step, provider, prompt, outcome), [])
        if outcome.interrupted is not None:
            verdict = Classification(OutcomeClass.ERROR, f"interrupted by {outcome.interrupted}: adws was stopped "
                                     "while the agent ran; its processes were ended")
            return Interpretation(verdict, None, self._estimate(step, provider, prompt, outcome), [])
        try:
            return self._interpret(step, provider, prompt, outcome, now)
        except Exception as exc:  # a parser's bug must not lose an attempt that ran
            verdict = Classification(OutcomeClass.BAD_OUTPUT, f"adws could not read this output "
                                     f"({type(exc).__name__}: {exc}); see {outcome.stdout_path}")
            return Interpretation(verdict, None, self._estimate(step, provider, prompt, outcome), [])

    def _interpret(self, step: Step, provider: ProviderSpec, prompt: str, outcome: RunOutcome,
                   now: datetime) -> Interpretation:
        parsed = read_output(provider.output_format, outcome, now)
        verdict = classify(outcome, parsed, provider.failure_patterns, now=now)
        usage = None
        if outcome.spawn_error is None:
            usage = booked_usage(verdict, parsed, lambda: self._estimate(step, provider, prompt, outcome))
        return Interpretation(verdict, parsed.final_text, usage, parsed.usage_readings)

    def _estimate(self, step: Step, provider: ProviderSpec, prompt: str, outcome: RunOutcome) -> Usage:
        """Tokens guessed from characters (`chars_per_token`) when the output reported none. Each figure at most
        `MAX_COUNT` (10^12), what every store takes (`check_usage`): settings at the top of their ranges (a tenth
        of a character a token, a cost per 1k tokens of a million) could otherwise guess a figure the store
        refuses, and the attempt that ran would go unrecorded."""
        chars = self.config.intake.chars_per_token
        tokens_in = min(int(len(prompt) / chars), MAX_COUNT)
        tokens_out = min(int(outcome.stdout_bytes / chars), MAX_COUNT)
        model = provider.models.get(step.model or "")
        cost = min((tokens_in + tokens_out) / 1000 * model.cost_per_1k_tokens, MAX_COUNT) if model else 0.0
        return Usage(1, tokens_in, tokens_out, cost, estimated=True)

    # step 3 ---------------------------------------------------------------------------------------------------

    def _record(self, provider: ProviderSpec, account: Account, step: Step, task_id: str | None,
                verdict: Classification, usage: Usage | None, now: datetime,
                readings: Sequence[tuple[str, float, datetime | None]] = (), *, counts: bool = True) -> None:
        """Usage, the cooldown after a limit or rejected credentials, observed usage, and (`counts`) the breaker
        transition. Usage and limit cooldowns go to the quota subject of the attempt's model: its pool, else the
        account (adws.pools); rejected credentials cool the whole account. `task_id`: the task's key as shown
        (`_key_shown`), for the usage row.

        Raises StateStoreError when the store refuses a write (full disk, damaged file).
        """
        subject = governing(account.quota, account.name, step.model).subject
        if usage is not None:
            self.store.record_usage(UsageRecord(provider.name, subject, now, usage.for_ledger(), step.model,
                                                task_id))
        if verdict.outcome in (OutcomeClass.RATE_LIMITED, OutcomeClass.QUOTA_EXHAUSTED):
            reset = self.accounts.next_reset(provider, account, now, step.model)
            until = verdict.reset_at or reset or now + DEFAULT_LIMIT_COOLDOWN
            if reset is not None:
                until = min(until, reset)  # never outlive the period reset that ends the limit
            if until > now:
                self.store.set_cooldown(provider.name, subject, Cooldown(until, verdict.outcome.value))
        elif verdict.outcome is OutcomeClass.AUTH:  # not chosen first again while its key stays the rejected one
            self.store.set_cooldown(provider.name, account.name, credential_cooldown(account, self.environ, now))
        for window, percent, reset_at in readings:
            self.store.record_observation(Observation(provider.name, subject, now, percent,
                                                      f"{provider.name} output ({window})", reset_at=reset_at))
        if counts:
            breaker.record(self.store, provider.name, verdict.outcome in self.config.breaker.counts, now,
                           self.config.breaker)

    def _key_shown(self, task: Task) -> str | None:
        """The task's key as the state store and the run directory's name keep it: every secret adws knows (the
        config's key variables, secret-looking names) as ***, lone surrogates escaped. None when it has none.
        Made once per run (`RunContext.key`): storable whatever the task said, and no secret."""
        if task.key is None:
            return None
        return Scrubber(secret_values(self.environ, key_variables(self.config))).text(task.key)

    def _run_dir(self, key: str | None) -> Path:
        """A new run directory, named after the time and `key`, the task's key as shown (`_key_shown`)."""
        stamp = self.clock().strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{_safe(key or 'task')}-{_secrets.token_hex(3)}"
        root = Path(self.config.run_dir)
        try:
            path = make_run_dir(root, name, like=self._last_run)
        except OSError as exc:
            raise AdwsError(f"cannot create the run directory {root / name} ([run] dir): "
                            f"{exc.strerror or exc}") from None
        self._last_run = path  # the next run links its marker from here (threads: any recent one will do)
        self._pruner.prune()
        return path


def _previous(result: Result) -> dict[str, Any]:
    """`previous` in templates: the last attempt's provider, outcome, reason and patch (all None before it)."""
    last = result.last
    if last is None:
        return dict(NO_PREVIOUS)
    return {key: getattr(last, key) for key in NO_PREVIOUS}  # the same keys before and after the first attempt


def _check_receivable(provider: ProviderSpec, argv: list[str], env: Mapping[str, str]) -> None:
    """Raise RenderError for text no program can receive: unencodable, a NUL byte, an argument over 128 KiB."""
    # Every element at once (one encode, one search: the environment holds dozens); the loop below, only when
    # something is wrong, says which problem comes first as it always did.
    joined = "\n".join((*argv, *env.values()))
    try:
        os.fsencode(joined)
        fine = "\x00" not in joined
    except UnicodeEncodeError:
        fine = False
    for element in () if fine else (*argv, *env.values()):
        try:
            os.fsencode(element)
        except UnicodeEncodeError:
            raise RenderError("the command or its environment holds text that cannot be encoded "
                              "(a lone surrogate): clean the task text or the prompt") from None
        if "\x00" in element:
            raise RenderError("the command or its environment holds a NUL byte, which no program can "
                              "receive in an argument: remove it from the task text or the prompt, or "
                              "send the prompt by stdin or file") from None
    for element in argv:
        if len(element) <= MAX_ARG_BYTES // 4:
            continue  # four bytes at most per character: within the limit whatever it holds
        size = len(element.encode("utf-8", "surrogateescape"))
        if size > MAX_ARG_BYTES:
            raise RenderError(
                f"an argument of {size} bytes is over Linux's 128 KiB limit for one argument; set prompt = "
                f"\"stdin\" or \"file\" for provider {provider.name} (and use {{{{ prompt_file }}}} instead of "
                f"{{{{ prompt }}}})")


def _write_output(path: Path, text: str, warnings: list[str]) -> str | None:
    """The final text in `path` (unless the agent wrote it itself, via {{ output_file }}); where it is, or None
    with a line in `warnings` when the disk refused it (the text is still in the result)."""
    try:
        # One system call in the usual case: created only if the agent did not write it. Something already there
        # is the agent's answer, unless it is a dangling link: that is refused as before (never followed).
        if not create_private(path, text) and not path.exists():
            write_private(path, text)
    except OSError as exc:
        warnings.append(f"{path} not written ({exc.strerror or exc}); the final text is in the result")
        return None
    return str(path)


_HOMES: dict[str | None, str] = {}


def _home() -> str:
    """`str(Path.home())`, worked out once per value of HOME (it is asked for on every attempt)."""
    key = os.environ.get("HOME")
    home = _HOMES.get(key)
    if home is None:
        home = _HOMES[key] = str(Path.home())
    return home


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80] or "_"
