"""Engine: the coordinator's entry point. `ModelRouter` decides, `ProviderManager` executes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
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
from adws.result import Result
from adws.router import Clock, Explanation, ModelRouter, utc_now
from adws.state import open_configured
from adws.state.base import StateStore
from adws.task import Task, coerce_task

if TYPE_CHECKING:
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

    def route(self, task: TaskInput, *, now: datetime | None = None, prompt: str | None = None) -> Decision:
        """Where the task would run: pure, no side effects."""
        return self.router.route(coerce_task(task), now=now, prompt=prompt)

    def explain(self, task: TaskInput, *, now: datetime | None = None, prompt: str | None = None) -> Explanation:
        return self.router.explain(coerce_task(task), now=now, prompt=prompt)

    def run(self, task: TaskInput, *, prompt: str, workdir: str | os.PathLike[str] = ".",
            now: datetime | None = None) -> Result:
        """Route, then run the plan with fall-through. Every outcome is in the Result and the audit log.

        Interrupted (KeyboardInterrupt, SystemExit from a signal handler), the audit record of what ran so far
        is still written, then the exception propagates.
        """
        task = coerce_task(task)
        if not prompt.strip():
            raise TaskError(["prompt: empty; an agent given no prompt would only guess"])
        if not Path(workdir).is_dir():
            # Refused before any attempt: a bad path would otherwise fail every tier and trip every breaker.
            raise TaskError([f"workdir: {workdir} is not a directory"])
        decision = self.router.route(task, now=now, prompt=prompt)
        result = Result(False, decision)
        try:
            return self.manager.run(task, decision, prompt=prompt, workdir=workdir, result=result)
        finally:
            # Once the run began (its directory exists), what ran is logged even when it was interrupted.
            if result.run_dir is not None and self.config.audit_enabled:
                self._audit(task, result, prompt)

    def _audit(self, task: Task, result: Result, prompt: str) -> None:
        record: dict[str, Any] = {
            "at": self.clock().isoformat(),
            # The task, so `adws replay` can route it again; title and body only where prompts may be logged.
            "task": {k: v for k, v in {**task.to_dict(), "id": task.key}.items()
                     if self.config.audit_include_prompt or k not in ("title", "body")},
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
