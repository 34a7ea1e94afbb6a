"""Engine: the coordinator's entry point. `ModelRouter` decides, `ProviderManager` executes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adws import audit
from adws.accounts import StatefulAccounts
from adws.availability import Availability
from adws.config import load_config
from adws.decision import Decision
from adws.errors import TaskError
from adws.model import CompiledConfig
from adws.router import Clock, Explanation, ModelRouter, utc_now
from adws.state import open_store, resolve_path
from adws.state.base import StateStore, StateStoreError
from adws.task import Task, coerce_task

if TYPE_CHECKING:
    from adws.batch import BatchItem, Event, TaskOutcome
    from adws.manager import ProviderManager, Result, Runner, Sleeper

TaskInput = Task | Mapping[str, Any]


class Engine:
    def __init__(self, config: CompiledConfig, *, store: StateStore | None = None, clock: Clock = utc_now,
                 sleep: Sleeper = time.sleep, runner: Runner | None = None,
                 environ: Mapping[str, str] | None = None,
                 which: Callable[[str], str | None] | None = None) -> None:
        self.config = config
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.availability = Availability(self.environ, which)
        self._which = which
        self._store = store
        self._state_file = resolve_path(config.state_path, self.environ)
        if store is None and config.state_backend != "sqlite":
            self._store = open_store(config.state_backend, config.state_path, env=self.environ)
        self.accounts = StatefulAccounts(dict(config.providers), self.availability, self._store,
                                         config.breaker.cooldown_seconds)
        self.router = ModelRouter(config, availability=self.availability, accounts=self.accounts, clock=clock)
        self._manager: ProviderManager | None = None
        self._manager_options: dict[str, Any] = {"runner": runner, "sleep": sleep}
        if self._store is None:
            self._attach(create=False)

    @property
    def state_path(self) -> str:
        return self._state_file

    @property
    def store(self) -> StateStore:
        """The state store, created on first use."""
        return self._attach(create=True)  # type: ignore[return-value]

    def _attach(self, *, create: bool) -> StateStore | None:
        # route() is free of side effects: it reads an existing store but never creates one.
        if self._store is None and (create or Path(self.state_path).exists()):
            if create:
                try:
                    Path(self.state_path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StateStoreError(f"cannot create the state store's directory for {self.state_path}: "
                                          f"{exc.strerror or exc}") from None
            self._store = open_store(self.config.state_backend, self.state_path, env=self.environ)
            self.accounts.store = self._store
            if self._manager is not None:
                self._manager.store = self._store
        return self._store

    def existing_store(self) -> StateStore | None:
        """The state store if one exists, without creating it (for read-only views such as `adws quota`)."""
        return self._store if self._store is not None else self._attach(create=False)

    def _look_for_store(self) -> None:
        """Attach a store another process created since this engine started (one stat call)."""
        if os.path.exists(self._state_file):
            self._attach(create=False)

    @property
    def manager(self) -> ProviderManager:
        """Built on first use: routing alone never imports the runner, the parsers or jinja2."""
        if self._manager is None:
            from adws.manager import ProviderManager
            from adws.runner import run as run_process

            runner = self._manager_options["runner"] or run_process
            self._manager = ProviderManager(self.config, store=self._store, accounts=self.accounts, runner=runner,
                                            sleep=self._manager_options["sleep"], clock=self.clock,
                                            environ=self.environ)
        return self._manager

    @property
    def runner(self) -> Runner:
        """The function attempts run with (adws.runner.run unless one was injected)."""
        from adws.runner import run as run_process

        return self._manager_options["runner"] or run_process

    @property
    def sleep(self) -> Sleeper:
        return self._manager_options["sleep"]  # type: ignore[no-any-return]

    def twin(self, *, store: StateStore, runner: Runner | None = None, sleep: Sleeper | None = None) -> Engine:
        """Another engine over the same compiled config, clock, environment and PATH lookup, with its own store
        object (a SQLite connection belongs to one thread): what each worker of `run_many` runs with."""
        return Engine(self.config, store=store, clock=self.clock, sleep=sleep or self.sleep,
                      runner=runner or self.runner, environ=self.environ, which=self._which)

    def run_many(self, items: Iterable[BatchItem | Mapping[str, Any]], *, concurrency: int = 4,
                 on_event: Callable[[Event], None] | None = None) -> list[TaskOutcome]:
        """Run many tasks, at most `concurrency` at once (see adws.batch); outcomes in input order.

        Items are BatchItem objects or dicts `{"task": ..., "prompt" | "prompt_file": ..., "workdir": ...}`.
        Raises BatchInputError listing every bad item before anything runs.
        """
        from adws.batch import run_many

        return run_many(self, items, concurrency=concurrency, on_event=on_event)

    def route(self, task: TaskInput, *, now: datetime | None = None, prompt: str | None = None) -> Decision:
        """Where the task would run: pure, no side effects."""
        if self._store is None:
            self._look_for_store()
        return self.router.route(coerce_task(task), now=now, prompt=prompt)

    def explain(self, task: TaskInput, *, now: datetime | None = None, prompt: str | None = None) -> Explanation:
        if self._store is None:
            self._look_for_store()
        return self.router.explain(coerce_task(task), now=now, prompt=prompt)

    def run(self, task: TaskInput, *, prompt: str, workdir: str | os.PathLike[str] = ".",
            now: datetime | None = None) -> Result:
        """Route, then run the plan with fall-through. Every outcome is in the Result and the audit log."""
        task = coerce_task(task)
        if not prompt.strip():
            raise TaskError(["prompt: empty; an agent given no prompt would only guess"])
        if not Path(workdir).is_dir():
            # Refused before any attempt: a bad path would otherwise fail every tier and trip every breaker.
            raise TaskError([f"workdir: {workdir} is not a directory"])
        self._attach(create=True)
        decision = self.router.route(task, now=now, prompt=prompt)
        try:
            result = self.manager.run(task, decision, prompt=prompt, workdir=workdir)
        except BaseException as exc:
            partial = getattr(exc, "adws_result", None)
            if partial is not None and self.config.audit_enabled:
                self._audit(task, partial, prompt)  # what ran before the interruption is not lost
            raise
        if self.config.audit_enabled:
            self._audit(task, result, prompt)
        return result

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
        if self._store is not None:
            self._store.close()


def load(path: str | os.PathLike[str] = "config.toml", **options: Any) -> Engine:
    """Load and validate a config file (raises ConfigError listing every problem) and build an Engine."""
    return Engine(load_config(path), **options)
