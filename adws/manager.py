"""ProviderManager: the executing half of adws. Walks a Decision's plan attempt by attempt.

For each attempt: render the provider's command and environment, run it (adws.runner), parse its output
(adws.parsers), classify it (adws.classify), record usage, cooldowns and breaker state (adws.state), then take
the class's declared action: `next_account`, `next_tier`, `retry` (bounded, with backoff) or `stop`.
The walk only ever moves forward through the plan, so it cannot loop or exceed it.

A provider with `max_concurrency` runs each attempt under a slot leased from the shared store, so the limit
holds across coordinator processes. When every slot is taken the attempt is not started: it is recorded as
`unavailable` ("busy: ...") and the walk moves to the next tier, without touching usage, cooldowns or the
circuit breaker (a busy provider is healthy).
"""

from __future__ import annotations

import os
import re
import secrets as _secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from adws.accounts import DEFAULT_ACCOUNT, StatefulAccounts, cursor_key, sticky_key
from adws.attempt import Classification, OutcomeClass, RunOutcome, Usage
from adws.classify import classify
from adws.decision import Decision, Step
from adws.errors import AdwsError, RenderError
from adws.model import CompiledConfig, ProviderSpec
from adws.parsers import parse_output
from adws.router import Clock
from adws.runner import RunRequest
from adws.runner import run as run_process
from adws.state.base import BreakerState, Cooldown, StateStore, UsageRecord
from adws.task import Task
from adws.templates import render_argv, render_env

# Linux refuses a single argv element longer than this (MAX_ARG_STRLEN = 32 pages).
MAX_ARG_BYTES = 128 * 1024
# A limit without an announced reset and without a quota schedule cools the account for this long.
DEFAULT_LIMIT_COOLDOWN = timedelta(minutes=15)
# A slot lease outlives the longest an attempt can run (timeout, then kill grace) by this much: a coordinator
# killed mid-run frees its slot at most this long after its attempt would have ended.
SLOT_LEASE_MARGIN = timedelta(seconds=60)
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)

Runner = Callable[[RunRequest], RunOutcome]
Sleeper = Callable[[float], None]


@dataclass(slots=True)
class Attempt:
    provider: str
    model: str | None
    account: str | None
    outcome: str
    reason: str
    exit_code: int | None
    signal: int | None
    duration_ms: int
    usage: Usage | None
    command: list[str]
    started_at: datetime
    action: str
    reset_at: datetime | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        usage = None
        if self.usage is not None:
            u = self.usage
            usage = {"requests": u.requests, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                     "cost_usd": round(u.cost_usd, 6), "estimated": u.estimated}
        return {
            "provider": self.provider, "model": self.model, "account": self.account, "outcome": self.outcome,
            "reason": self.reason, "exit_code": self.exit_code, "signal": self.signal,
            "duration_ms": self.duration_ms, "usage": usage, "command": self.command,
            "started_at": self.started_at.isoformat(), "action": self.action,
            "reset_at": self.reset_at.isoformat() if self.reset_at else None,
            "stdout_path": self.stdout_path, "stderr_path": self.stderr_path,
        }


@dataclass(slots=True)
class Result:
    success: bool
    decision: Decision
    attempts: list[Attempt] = field(default_factory=list)
    final_text: str | None = None
    output_file: str | None = None
    run_dir: str | None = None
    message: str = ""

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def provider(self) -> str | None:
        return self.last.provider if self.last else self.decision.provider

    @property
    def model(self) -> str | None:
        return self.last.model if self.last else self.decision.model

    @property
    def account(self) -> str | None:
        return self.last.account if self.last else self.decision.account

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success, "provider": self.provider, "model": self.model, "account": self.account,
            "rule": self.decision.rule, "message": self.message, "final_text": self.final_text,
            "output_file": self.output_file, "run_dir": self.run_dir,
            "attempts": [a.to_dict() for a in self.attempts],
            "decision": self.decision.to_dict(),
        }


class ProviderManager:
    def __init__(self, config: CompiledConfig, *, store: StateStore | None, accounts: StatefulAccounts,
                 runner: Runner = run_process, sleep: Sleeper = time.sleep, clock: Clock,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.store = store
        self.accounts = accounts
        self.runner = runner
        self.sleep = sleep
        self.clock = clock
        self.environ = os.environ if environ is None else environ

    # -- the walk -----------------------------------------------------------------------------------------

    def run(self, task: Task, decision: Decision, *, prompt: str, workdir: str | os.PathLike[str]) -> Result:
        run_dir = self._run_dir(task)
        result = Result(False, decision, run_dir=str(run_dir))
        try:
            return self._walk(task, decision, result, run_dir, prompt, workdir)
        except BaseException as exc:
            # Interrupted (SIGTERM, Ctrl-C) or failed: the runner has already ended the child's process group and
            # released its slot; the attempts so far travel with the exception so the caller can still log them.
            result.message = f"interrupted: {type(exc).__name__}"
            exc.adws_result = result  # type: ignore[attr-defined]
            raise

    def _walk(self, task: Task, decision: Decision, result: Result, run_dir: Path, prompt: str,
              workdir: str | os.PathLike[str]) -> Result:
        if not decision.plan:
            result.message = "nothing to run: every tier was skipped (see decision.skipped)"
            return result
        retry = self.config.retry
        for tier_index, step in enumerate(decision.plan):
            provider = self.config.providers[step.provider]
            accounts: list[str | None] = list(step.accounts) or [None]
            names = [a.name for a in provider.accounts]
            reserved = None
            if provider.account_strategy == "round_robin" and self.store is not None and step.accounts:
                # Take the turn atomically, so coordinators running at once start on different accounts.
                start = reserved = self.store.next_cursor(cursor_key(provider.name))
                in_turn: list[str] = sorted(step.accounts, key=lambda name: (names.index(name) - start) % len(names))
                accounts = list(in_turn)
            index, retries = 0, 0
            while index < len(accounts):
                account = accounts[index]
                with self._slot(provider) as free:
                    if not free:
                        result.attempts.append(self._busy(step, provider, account))
                        break  # next_tier whatever the actions say: nothing ran, nothing failed
                    attempt, parsed_text, output_file = self._attempt(
                        task, decision, step, provider, account, prompt, workdir, run_dir,
                        f"{len(result.attempts) + 1:02d}-{tier_index + 1}-{provider.name}-{account or 'default'}")
                result.attempts.append(attempt)
                if reserved is not None and account is not None and self.store is not None:
                    # The next task starts after the account this one really used, not merely one further on.
                    skipped_over = (names.index(account) - reserved) % len(names)
                    self.store.advance_cursor(cursor_key(provider.name), reserved + skipped_over + 1)
                if attempt.outcome == OutcomeClass.SUCCESS:
                    result.success, result.final_text, result.output_file = True, parsed_text, output_file
                    result.message = f"succeeded on {step.provider}" + (f"/{account}" if account else "")
                    attempt.action = "stop"
                    return result
                action = provider.actions[OutcomeClass(attempt.outcome)]  # merged with the defaults at load
                if action == "retry" and retries >= retry.max_retries:
                    action = "next_tier"  # retries spent: the failure is not this account's alone
                if action == "next_account" and index + 1 >= len(accounts):
                    action = "next_tier"  # record the move the walk really makes
                attempt.action = action
                if action == "stop":
                    result.message = f"stopped after {attempt.outcome} on {step.provider} ({attempt.reason})"
                    return result
                if action == "retry":
                    delay = min(retry.backoff_seconds * retry.backoff_factor ** retries, retry.max_backoff_seconds)
                    retries += 1
                    self.sleep(delay)
                    continue
                if action == "next_account":
                    index, retries = index + 1, 0
                    continue
                break  # next_tier
        result.message = f"plan spent after {len(result.attempts)} attempt(s); last: {result.attempts[-1].reason}"
        return result

    # -- concurrency slots ----------------------------------------------------------------------------------

    @contextmanager
    def _slot(self, provider: ProviderSpec) -> Iterator[bool]:
        """Hold one of the provider's max_concurrency slots for the block; yields False when all are taken.

        The slot is released on the way out, whatever the block raised.
        """
        limit = provider.max_concurrency
        if limit is None or self.store is None:
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
            self.store.release_slot(provider.name, holder)

    def _busy(self, step: Step, provider: ProviderSpec, account: str | None) -> Attempt:
        reason = f"busy: max_concurrency {provider.max_concurrency} reached on {provider.name}"
        return Attempt(provider.name, step.model, account, OutcomeClass.UNAVAILABLE.value, reason, None, None, 0,
                       None, [], self.clock(), "next_tier")

    # -- one attempt --------------------------------------------------------------------------------------

    def _attempt(self, task: Task, decision: Decision, step: Step, provider: ProviderSpec, account: str | None,
                 prompt: str, workdir: str | os.PathLike[str], run_dir: Path,
                 label: str) -> tuple[Attempt, str | None, str | None]:
        started = self.clock()
        out_dir = run_dir / _safe(label)
        out_dir.mkdir(parents=True, exist_ok=True)
        prompt_file = out_dir / "prompt.txt"
        output_file = out_dir / "output.txt"
        variables: dict[str, Any] = {
            **step.vars, "prompt": prompt, "prompt_file": str(prompt_file), "output_file": str(output_file),
            "model": step.model or "", "provider": provider.name, "account": account or "",
            "task": task.to_dict(), "workdir": str(workdir), "run_dir": str(out_dir),
            "home": str(Path.home()), "config_dir": self.config.base_dir,
        }
        acc_spec = provider.account(account) if account else None
        secret_values = self._secrets(provider, acc_spec.api_key_env if acc_spec else None)
        try:
            if not step.model and provider.uses_model:
                raise RenderError(f"provider {provider.name} declares no models and nothing chose one, but its "
                                  "command uses {{ model }}: declare [providers." + provider.name + ".models.ID] "
                                  "or set the model in the rule or routing.default_model")
            argv = render_argv(provider.command, variables)
            env = {**self.environ, **render_env(provider.env, variables)}
            if acc_spec is not None:
                env.update(render_env(acc_spec.env, variables))
                if acc_spec.api_key_env and provider.api_key_env and acc_spec.api_key_env in self.environ:
                    # The account's key goes where the CLI looks for it; the value never enters argv.
                    env[provider.api_key_env] = self.environ[acc_spec.api_key_env]
            env.update({"ADWS_PROVIDER": provider.name, "ADWS_ACCOUNT": account or "",
                        "ADWS_MODEL": step.model or "", "ADWS_TASK_ID": task.key or ""})
            secret_values += [v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 8
                              and (k in provider.env or (acc_spec is not None and k in acc_spec.env))]
            for element in (*argv, *env.values()):
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
                if len(element.encode("utf-8", "surrogateescape")) > MAX_ARG_BYTES:
                    raise RenderError(
                        f"an argument of {len(element.encode('utf-8', 'surrogateescape'))} bytes is over Linux's "
                        f"128 KiB limit for one argument; set prompt = \"stdin\" or \"file\" for provider "
                        f"{provider.name} (and use {{{{ prompt_file }}}} instead of {{{{ prompt }}}})")
        except RenderError as exc:
            attempt = Attempt(provider.name, step.model, account, OutcomeClass.ERROR.value, str(exc), None, None,
                              0, None, [], started, "")
            return attempt, None, None
        stdin: bytes | None = None
        if provider.prompt == "stdin":
            stdin = prompt.encode("utf-8", "surrogateescape")
        if provider.uses_prompt_file:
            # Only when a template names it: prompt text is not left on disk without a reason.
            prompt_file.write_text(prompt, encoding="utf-8", errors="surrogateescape")
        outcome = self.runner(RunRequest(
            argv=argv, env=env, cwd=workdir, out_dir=out_dir, timeout=provider.timeout, stdin=stdin,
            grace=provider.kill_grace, output_cap=self.config.output_cap_bytes, secrets=secret_values,
        ))
        now = self.clock()
        parsed = parse_output(provider.output_format, outcome.stdout_tail, now)
        if parsed.final_text is None and not parsed.is_error and outcome.stderr_tail.strip():
            # Some CLIs (Gemini's JSON mode) print their structured error on stderr instead.
            on_stderr = parse_output(provider.output_format, outcome.stderr_tail, now)
            if on_stderr.is_error or on_stderr.rate_limited or on_stderr.reset_at is not None:
                parsed = on_stderr
        verdict = classify(outcome, parsed, provider.failure_patterns, now=now)
        usage = None
        if outcome.spawn_error is None:
            usage = parsed.usage or self._estimate(decision, step, provider, prompt, outcome)
        self._record(provider, account, step, task, verdict, usage, now)
        text = parsed.final_text
        if verdict.outcome == OutcomeClass.SUCCESS and text is not None and not output_file.exists():
            output_file.write_text(text, encoding="utf-8", errors="surrogateescape")
        command = outcome.argv if self.config.audit_include_prompt else _without_prompt(outcome.argv, prompt)
        attempt = Attempt(provider.name, step.model, account, verdict.outcome.value, verdict.reason,
                          outcome.exit_code, outcome.signal, outcome.duration_ms, usage, command, started, "",
                          verdict.reset_at, outcome.stdout_path, outcome.stderr_path)
        return attempt, text, str(output_file) if output_file.exists() else None

    def _secrets(self, provider: ProviderSpec, account_key_env: str | None) -> list[str]:
        names = {provider.api_key_env, account_key_env} - {None}
        return [self.environ[n] for n in names if n and self.environ.get(n)]

    def _estimate(self, decision: Decision, step: Step, provider: ProviderSpec, prompt: str,
                  outcome: RunOutcome) -> Usage:
        chars = self.config.intake.chars_per_token
        tokens_in = int(len(prompt) / chars)
        tokens_out = int(outcome.stdout_bytes / chars)
        model = provider.models.get(step.model or "")
        cost = (tokens_in + tokens_out) / 1000 * model.cost_per_1k_tokens if model else 0.0
        return Usage(1, tokens_in, tokens_out, cost, estimated=True)

    def _record(self, provider: ProviderSpec, account: str | None, step: Step, task: Task,
                verdict: Classification, usage: Usage | None, now: datetime) -> None:
        if self.store is None:
            return
        name = account or DEFAULT_ACCOUNT
        if usage is not None:
            self.store.record_usage(UsageRecord(provider.name, name, now, usage, step.model, task.key))
        if verdict.outcome in (OutcomeClass.RATE_LIMITED, OutcomeClass.QUOTA_EXHAUSTED):
            acc_spec = provider.account(account) if account else None
            reset = self.accounts.next_reset(provider, acc_spec, now)
            until = verdict.reset_at or reset or now + DEFAULT_LIMIT_COOLDOWN
            if reset is not None:
                until = min(until, reset)  # never outlive the period reset that ends the limit
            if until > now:
                self.store.set_cooldown(provider.name, name, Cooldown(until, verdict.outcome.value))
        if provider.account_strategy == "sticky" and account and task.key:
            self.store.set_sticky(sticky_key(provider.name, task.key), account)
        breaker = self.config.breaker
        if verdict.outcome in breaker.counts:
            def fail(state: BreakerState) -> BreakerState:
                failures = state.failures + 1
                if state.state == "open" or failures >= breaker.failure_threshold:
                    return BreakerState("open", failures, now)  # a failed probe re-opens it
                return BreakerState("closed", failures, None)
            self.store.update_breaker(provider.name, fail)
        elif self.store.get_breaker(provider.name) != BreakerState():
            # Any answer from the provider itself shows the infrastructure works: close and reset.
            self.store.update_breaker(provider.name, lambda _: BreakerState())

    def _run_dir(self, task: Task) -> Path:
        stamp = self.clock().strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{_safe(task.key or 'task')}-{_secrets.token_hex(3)}"
        path = Path(self.config.run_dir) / name
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AdwsError(f"cannot create the run directory {path} ([run] dir): {exc.strerror or exc}") from None
        longest = max((p.timeout + p.kill_grace for p in self.config.providers.values()), default=0.0)
        _prune(Path(self.config.run_dir), self.config.keep_runs, busy_for=longest + 60)
        return path


def _without_prompt(argv: list[str], prompt: str) -> list[str]:
    """The recorded command with the prompt's text replaced: prompts do not go into logs by default."""
    if len(prompt) < 8:  # too short to replace safely inside other text: only whole elements
        return ["<prompt>" if element == prompt else element for element in argv]
    return [element.replace(prompt, "<prompt>") for element in argv]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80] or "_"


def _prune(root: Path, keep: int, busy_for: float) -> None:
    """Keep the newest `keep` run directories (names start with a timestamp, so names sort by age).

    A directory changed within the last `busy_for` seconds may belong to a run still going in another
    process, so it is never removed. Called once per task: scandir and string sorting keep it cheap.
    """
    import shutil
    import time as _time

    if keep <= 0:
        return
    try:
        with os.scandir(root) as entries:
            found = [(e.name, e) for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    if len(found) <= keep:
        return
    found.sort(key=lambda item: item[0])
    cutoff = _time.time() - busy_for
    for name, entry in found[:-keep]:
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                break  # names sort by start time: the ones after this are at least as recent
        except OSError:
            continue
        shutil.rmtree(root / name, ignore_errors=True)
