"""Engine: the coordinator's entry point. `ModelRouter` decides, `ProviderManager` executes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adws import audit
from adws.accounts import StatefulAccounts
from adws.availability import Availability
from adws.config import load_config
from adws.decision import Decision
from adws.errors import TaskError
from adws.events import Event, EventKind
from adws.model import CompiledConfig
from adws.result import Result
from adws.router import Clock, Explanation, ModelRouter, utc_now
from adws.state import open_configured
from adws.state.base import StateStore, StateStoreError
from adws.task import Task, coerce_task

if TYPE_CHECKING:
    from adws.batch import BatchItem, TaskOutcome
    from adws.manager import ProviderManager, Runner, Sleeper

TaskInput = Task | Mapping[str, Any]


class Engine:
    """The router and the manager over one state store, held for the engine's whole life.

    `store` None: the store the config names (`[state]`), opened without creating anything; the first write
    (a run) creates it, and a store another process creates later is seen by the next decision.
    """

    def __init__(self, config: CompiledConfig, *, store: StateStore | None = None, clock: Clock = utc_now,
                 sleep: Sleeper = time.sleep, runner: Runner | None = None,
                 environ: Mapping[str, str] | None = None,
                 which: Callable[[str], str | None] | None = None) -> None:
        self.config = config
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.availability = Availability(self.environ, which)
        self._which = which
        self.store: StateStore = store if store is not None else open_configured(
            config.state_backend, config.state_path, config.base_dir, self.environ)
        self.accounts = StatefulAccounts(config.providers, self.availability, self.store,
                                         config.breaker.cooldown_seconds)
        self.router = ModelRouter(config, availability=self.availability, accounts=self.accounts, clock=clock)
        self._manager: ProviderManager | None = None
        self._runner, self._sleep = runner, sleep

    def existing_store(self) -> StateStore:
        """The state store, for read-only views such as `adws quota` (reading it creates nothing)."""
        return self.store

    @property
    def manager(self) -> ProviderManager:
        """Built on first use: routing alone never imports the runner, the parsers or jinja2."""
        if self._manager is None:
            from adws.manager import ProviderManager
            from adws.runner import run as run_process

            self._manager = ProviderManager(self.config, store=self.store, accounts=self.accounts,
                                            runner=self._runner or run_process, sleep=self._sleep,
                                            clock=self.clock, environ=self.environ)
        return self._manager

    @property
    def runner(self) -> Runner:
        """The function attempts run with (adws.runner.run unless one was injected)."""
        from adws.runner import run as run_process

        return self._runner or run_process

    @property
    def sleep(self) -> Sleeper:
        return self._sleep

    def twin(self, *, store: StateStore, runner: Runner | None = None, sleep: Sleeper | None = None) -> Engine:
        """Another engine over the same compiled config, clock, environment and PATH lookup, with its own store
        object (a SQLite connection belongs to one thread): what each worker of `run_many` runs with."""
        return Engine(self.config, store=store, clock=self.clock, sleep=sleep or self.sleep,
                      runner=runner or self.runner, environ=self.environ, which=self._which)

    def run_many(self, items: Iterable[BatchItem | Mapping[str, Any]], *, concurrency: int = 4,
                 on_event: Callable[[Event], None] | None = None, wait: float | None = None) -> list[TaskOutcome]:
        """Run many tasks, at most `concurrency` at once (see adws.batch); outcomes in input order.

        Items are BatchItem objects or dicts `{"task": ..., "prompt" | "prompt_file": ..., "workdir": ...}`.
        Raises BatchInputError listing every bad item before anything runs. `wait` as in `run`: a waiting task
        does not hold up the others.
        """
        from adws.batch import run_many

        return run_many(self, items, concurrency=concurrency, on_event=on_event, wait=wait)

    def route(self, task: TaskInput, *, now: datetime | None = None, prompt: str | None = None) -> Decision:
        """Where the task would run: pure, no side effects."""
        return self.router.route(coerce_task(task), now=now, prompt=prompt)

    def explain(self, task: TaskInput, *, now: datetime | None = None, prompt: str | None = None) -> Explanation:
        return self.router.explain(coerce_task(task), now=now, prompt=prompt)

    def run(self, task: TaskInput, *, prompt: str, workdir: str | os.PathLike[str] = ".",
            now: datetime | None = None, wait: float | None = None,
            on_event: Callable[[Event], None] | None = None) -> Result:
        """Route, then run the plan with fall-through. Every outcome is in the Result and the audit log.

        Interrupted (KeyboardInterrupt, SystemExit from a signal handler), the audit record of what ran so far
        is still written, then the exception propagates.
        A failed result carries `retry_at` and `retryable` (adws.retry). With `wait` (seconds, may be inf), a
        task whose plan was spent by limits, cooldowns, quotas or busy slots is parked until `retry_at` (an
        event `task_waiting` says until when) and run again, as long as that is within `wait` of the start.
        `on_event` hears each attempt start and end (adws.events).
        Raises TaskError (bad task, empty prompt, missing workdir) and WorkdirError (the `[run] workdir` policy
        cannot use the directory) before anything runs.
        """
        given_retry_count = isinstance(task, Mapping) and task.get("retry_count") is not None
        task = coerce_task(task)
        if not prompt.strip():
            raise TaskError(["prompt: empty; an agent given no prompt would only guess"])
        if not Path(workdir).is_dir():
            # Refused before any attempt: a bad path would otherwise fail every tier and trip every breaker.
            raise TaskError([f"workdir: {workdir} is not a directory"])
        if self.config.intake.retry_count_from_history and not given_retry_count and task.retry_count == 0 \
                and task.key is not None:
            from dataclasses import replace

            from adws.history import failed_runs

            since = (now or self.clock()) - timedelta(seconds=self.config.intake.history_window_seconds)
            task = replace(task, retry_count=failed_runs(self.config.audit_path, task.key, since=since))
        deadline = None if wait is None else self.clock() + timedelta(seconds=min(wait, 10 * 365 * 86400))
        while True:
            result = self._run_once(task, prompt, workdir, now, on_event)
            if deadline is None or result.success or not result.retryable or result.retry_at is None:
                return result
            from adws.retry import wait_for_capacity

            moment = self.clock()
            if result.retry_at > deadline:
                return result
            if on_event is not None:
                on_event(Event(EventKind.TASK_WAITING, 0, task.key or "task", moment, until=result.retry_at,
                               reason=result.message))
            wait_for_capacity(result.retry_at, now=moment, deadline=deadline, sleep=self._sleep)
            now = None  # a later try routes at its own time

    def _run_once(self, task: Task, prompt: str, workdir: str | os.PathLike[str], now: datetime | None,
                  on_event: Callable[[Event], None] | None) -> Result:
        decision = self.router.route(task, now=now, prompt=prompt)
        from adws.workdir import open_workspace

        rule = decision.matched
        policy = rule.workdir if rule is not None and rule.workdir is not None else self.config.workdir_policy
        workspace = open_workspace(policy, workdir, environ=self.environ)  # WorkdirError: nothing ran
        result = Result(False, decision)
        try:
            self.manager.run(task, decision, prompt=prompt, workdir=workdir, result=result, workspace=workspace,
                             observer=on_event)
        except BaseException as exc:
            exc.adws_result = result  # type: ignore[attr-defined]  # what ran, for a caller such as run_many
            raise
        finally:
            if not result.success:
                self._retry_window(result)
            # Once the run began (its directory exists), what ran is logged even when it was interrupted.
            if result.run_dir is not None and self.config.audit_enabled:
                self._audit(task, result, prompt)
        return result

    def _retry_window(self, result: Result) -> None:
        from adws.retry import retry_window

        now = self.clock()
        try:
            cooldowns, slots = self.store.cooldowns(now), self.store.active_slots(now)
        except StateStoreError:
            cooldowns, slots = {}, {}  # the window is advice: an unreadable store must not lose the result
        window = retry_window(success=result.success, attempts=result.attempts, skipped=result.decision.skipped,
                              now=now, cooldowns=cooldowns, slots=slots)
        result.retry_at, result.retryable = window.retry_at, window.retryable

    def _audit(self, task: Task, result: Result, prompt: str) -> None:
        record: dict[str, Any] = {
            "at": self.clock().isoformat(),
            "task": {"id": task.key, "number": task.number, "labels": list(task.labels),
                     "retry_count": task.retry_count},
            "success": result.success,
            "message": result.message,
            "decision": result.decision.to_dict(),
            "attempts": [a.to_dict() for a in result.attempts],
        }
        if self.config.audit_include_prompt:
            record["prompt"] = prompt
        try:
            audit.append(self.config.audit_path, record)
        except OSError as exc:
            # The run itself is done (and maybe succeeded): report the log problem, do not lose the result.
            print(f"adws: cannot write the audit log {self.config.audit_path}: {exc.strerror or exc}",
                  file=sys.stderr)

    def close(self) -> None:
        self.store.close()


def load(path: str | os.PathLike[str] = "config.toml", **options: Any) -> Engine:
    """Load and validate a config file (raises ConfigError listing every problem) and build an Engine."""
    return Engine(load_config(path), **options)
