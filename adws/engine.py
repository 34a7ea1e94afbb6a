"""Engine: the coordinator's entry point. `ModelRouter` decides, `ProviderManager` executes.

What only a run needs (the result, events, interrupt handling, logging, the manager) is imported where it is
used: `adws route` imports this module and should not pay for them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from adws.accounts import StatefulAccounts, reads_tier_scores
from adws.arguments import (
    checked_callable,
    checked_flag,
    checked_mapping,
    checked_now,
    checked_path,
    checked_prompt,
    checked_seconds,
    checked_workdir,
    got,
)
from adws.availability import Availability
from adws.compiled import CompiledConfig, key_variables
from adws.config import load_config
from adws.dataclass_cache import replace
from adws.decision import Decision
from adws.errors import (
    AdwsError,
    ArgumentError,
    ConfigError,
    Interrupted,
    MissingWorkdirError,
    Problem,
    PromptError,
    RunCancelled,
    suggest,
)
from adws.redact import Scrubber, encodable, secret_values
from adws.reload import DEGRADED, OK, ConfigStatus, ConfigWatcher
from adws.router import CLOCK_CALL, Clock, Explanation, ModelRouter, utc_now
from adws.state import open_configured
from adws.state.base import StateStore, StateStoreError
from adws.task import Task

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from adws.batch import BatchItem, TaskOutcome
    from adws.events import Event, SafeSink
    from adws.manager import ProviderManager, Runner, Sleeper
    from adws.result import Result

TaskInput = Task | Mapping[str, Any]


def _warn(message: str, *args: Any) -> None:
    """A warning on the "adws" logger (logging is imported only when there is something to say)."""
    import logging

    logging.getLogger("adws").warning(message, *args)


DEFAULT_RELOAD_INTERVAL = 1.0  # seconds: load()'s default, and Engine(path)'s
# What each callable that Engine takes is called with, for ArgumentError's message.
_CALLS = {"clock": CLOCK_CALL, "sleep": "seconds, as time.sleep",
          "runner": "an adws.runner.RunRequest", "which": "a program's name, as shutil.which"}
# A few of StateStore's methods, to tell a store from something else passed as `store=` (stores are duck-typed).
_STORE_METHODS = ("record_usage", "usage_totals", "cooldowns", "version", "close")


class Engine:
    """The router and the manager over one state store, held for the engine's whole life.

    `store` None: the store the config names (`[state]`), opened without creating anything; the first write
    (a run) creates it, and a store another process creates later is seen by the next decision.

    Hot reload (`watcher`, made by `load(path, reload=True)`): before each route/explain/run, at most one
    `stat` per interval; an edited file is validated and swapped in between tasks (a run in flight keeps the
    config it started with). A broken edit keeps the last valid config and sets `config_status` to degraded
    with its problems (logged once on the "adws" logger); `strict` then refuses new runs until it is fixed.

    Threads: one Engine may be shared by threads (e.g. a ThreadPoolExecutor running tasks): routing and
    reloading take the engine's lock (decisions are microseconds), runs proceed in parallel, and every
    backend's store serializes its own statements. asyncio: `aroute` and `arun` run in worker threads, so
    the event loop never blocks; cancelling an `arun` ends the agent's process group (see adws.aio).
    """

    def __init__(self, config: CompiledConfig | str | os.PathLike[str], *, store: StateStore | None = None,
                 clock: Clock = utc_now, sleep: Sleeper = time.sleep, runner: Runner | None = None,
                 environ: Mapping[str, str] | None = None,
                 which: Callable[[str], str | None] | None = None,
                 watcher: ConfigWatcher | None = None, auto_reload: bool = False, strict: bool = False) -> None:
        """`config`: a CompiledConfig (adws.config.load_config), or a config file's path (str or pathlib.Path),
        loaded as `adws.load(path)` loads it (ConfigError listing every problem; `reload()` then reads the file
        again). Raises ArgumentError (a TypeError) for an argument of the wrong type."""
        if isinstance(config, (str, os.PathLike)):
            path = checked_path("config", config)
            watcher = watcher or ConfigWatcher(path, DEFAULT_RELOAD_INTERVAL)
            config = load_config(path)
        elif not isinstance(config, CompiledConfig):
            raise ArgumentError(f"config: expected a config file's path or a CompiledConfig (from "
                                f"adws.config.load_config), got {got(config)}")
        for name, value in (("clock", clock), ("sleep", sleep), ("runner", runner), ("which", which)):
            checked_callable(name, value, what=_CALLS[name], optional=name in ("runner", "which"))
        if store is not None and not all(callable(getattr(store, method, None)) for method in _STORE_METHODS):
            raise ArgumentError(f"store: expected a state store (adws.state.MemoryStore, SqliteStore, RedisStore, "
                                f"or one that keeps the StateStore contract) or None, got {got(store)}")
        checked_mapping("environ", environ)
        checked_flag("auto_reload", auto_reload)
        checked_flag("strict", strict)
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.availability = Availability(self.environ, which)
        self._which = which
        self.store: StateStore = store if store is not None else open_configured(
            config.state_backend, config.state_path, config.base_dir, self.environ, config.state_options)
        self._runner, self._sleep = runner, sleep
        self._watcher, self._auto_reload, self.strict = watcher, auto_reload and watcher is not None, strict
        self.config_status = ConfigStatus(OK, config.source)
        self._refused: ConfigError | None = None  # the failed edit, while degraded
        self._lock = threading.RLock()  # routing, reloading and building the manager: one thread at a time
        self._workers: ThreadPoolExecutor | None = None  # for aroute/arun, made on first use
        self._use(config)

    def _use(self, config: CompiledConfig) -> None:
        """Build the router and accounts of `config` over the engine's one store (the manager on first use)."""
        self.config = config
        self.accounts = StatefulAccounts(config.providers, self.availability, self.store,
                                         config.breaker.cooldown_seconds, tier_scores=reads_tier_scores(config))
        self.router = ModelRouter(config, availability=self.availability, accounts=self.accounts, clock=self.clock)
        self._manager: ProviderManager | None = None

    # -- hot reload --------------------------------------------------------------------------------------------

    def reload(self) -> ConfigStatus:
        """Look at the config file now; when it changed, load it (see the class docstring). Returns the status.

        Raises AdwsError for an engine not built from a file (`load(path)` builds one)."""
        if self._watcher is None:
            raise AdwsError("this engine was built from a compiled config, not a file: nothing to reload "
                            "(use adws.load(path))")
        with self._lock:
            if self._watcher.changed(force=True):
                self._load_edit(self._watcher.path)
            return self.config_status

    def _between_tasks(self) -> None:
        if self._auto_reload and self._watcher is not None:
            with self._lock:
                if self._watcher.changed():
                    self._load_edit(self._watcher.path)

    def _load_edit(self, path: str) -> None:
        old = self.config
        try:
            new = load_config(path)
            if (new.state_backend, new.state_path, new.base_dir, dict(new.state_options)) != (
                    old.state_backend, old.state_path, old.base_dir, dict(old.state_options)):
                # An engine keeps one store for its life: a run in flight and the snapshot must agree on it.
                raise ConfigError([Problem("state", "the state store cannot change while the engine runs; "
                                                    "restart the coordinator to use the new [state]")], path)
        except ConfigError as exc:
            problems = tuple(str(p) for p in exc.problems)
            if problems != self.config_status.problems:  # once per distinct failure, not once per task
                _warn("keeping the last valid config; %s", exc.render())
            self.config_status, self._refused = ConfigStatus(DEGRADED, path, problems), exc
            return
        if not self.config_status.ok:
            _warn("%s: loads again; the edit is in use", path)
        self.config_status, self._refused = ConfigStatus(OK, path), None
        self._use(new)

    def existing_store(self) -> StateStore:
        """The state store, for read-only views such as `adws quota` (reading it creates nothing)."""
        return self.store

    @property
    def manager(self) -> ProviderManager:
        """Built on first use: routing alone never imports the runner, the parsers or jinja2."""
        with self._lock:
            if self._manager is None:
                from adws.aio import cancellable, cancellable_sleep
                from adws.manager import ProviderManager
                from adws.runner import run as run_process

                # A cancelled arun or run_many ends the agent (and a verify command), and cuts a backoff short.
                self._manager = ProviderManager(self.config, store=self.store, accounts=self.accounts,
                                                runner=cancellable(self._runner or run_process),
                                                sleep=cancellable_sleep(self._sleep), clock=self.clock,
                                                environ=self.environ)
            return self._manager

    def run_many(self, items: Iterable[BatchItem | Mapping[str, Any]], *, concurrency: int = 4,
                 on_event: Callable[[Event], None] | None = None, wait: float | None = None) -> list[TaskOutcome]:
        """Run many tasks, at most `concurrency` at once (see adws.batch); outcomes in input order.

        Items are BatchItem objects or dicts `{"task": ..., "prompt" | "prompt_file": ..., "workdir": ...}`.
        Raises BatchInputError listing every bad item before anything runs, ArgumentError for an argument of the
        wrong type or `concurrency` < 1. `wait` as in `run`: a waiting task does not hold up the others. Each
        task's events are run()'s, with `index` its place in `items`.
        """
        from adws.batch import run_many

        return run_many(self, items, concurrency=concurrency, on_event=on_event, wait=wait)

    def route(self, task: TaskInput, *, now: datetime | None = None, prompt: str | None = None) -> Decision:
        """Where the task would run: pure, no side effects. Arguments and errors: ModelRouter.route."""
        if self._auto_reload:  # _between_tasks' own test, here: one call less per decision without a watcher
            self._between_tasks()
        # The router coerces: it lists the config-dependent problems of a malformed task too. Not `with`: this
        # runs once per decision, and acquire/release cost less than `with`'s __enter__/__exit__ (as in
        # StatefulAccounts.generation).
        lock = self._lock
        lock.acquire()
        try:
            return self.router.route(task, now=now, prompt=prompt)
        finally:
            lock.release()

    def explain(self, task: TaskInput, *, now: datetime | None = None, prompt: str | None = None) -> Explanation:
        self._between_tasks()
        with self._lock:
            return self.router.explain(task, now=now, prompt=prompt)

    # -- asyncio ---------------------------------------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        from concurrent.futures import ThreadPoolExecutor  # asyncio users only: `adws route` never pays for it

        with self._lock:
            if self._workers is None:
                # Runs mostly wait on their agent: size for concurrent runs, not for cores.
                self._workers = ThreadPoolExecutor(max_workers=64, thread_name_prefix="adws")
            return self._workers

    async def aroute(self, task: TaskInput, *, now: datetime | None = None, prompt: str | None = None) -> Decision:
        """`route()` in a worker thread: a store round trip never blocks the event loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), lambda: self.route(task, now=now, prompt=prompt))

    async def arun(self, task: TaskInput, *, prompt: str, workdir: str | os.PathLike[str] = ".",
                   now: datetime | None = None) -> Result:
        """`run()` in a worker thread. Cancelled, it ends the running agent's process group (SIGTERM, SIGKILL
        after the provider's kill_grace), records that attempt (outcome "error", reason "cancelled: ...") in
        the Result and the audit log, and re-raises CancelledError once the walk has stopped."""
        import asyncio

        from adws.aio import CancelToken, running

        token = CancelToken()

        def work() -> Result:
            with running(token):
                return self.run(task, prompt=prompt, workdir=workdir, now=now)

        future = asyncio.get_running_loop().run_in_executor(self._pool(), work)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            token.cancel()
            while not future.done():
                token.end_marked()
                await asyncio.wait([future], timeout=0.05)
            if not future.cancelled():
                future.exception()  # retrieved: RunCancelled, as expected; the Result is in the audit log
            raise

    def run(self, task: TaskInput, *, prompt: str, workdir: str | os.PathLike[str] = ".",
            now: datetime | None = None, wait: float | None = None,
            on_event: Callable[[Event], None] | None = None) -> Result:
        """Route, then run the plan with fall-through. Every outcome is in the Result and the audit log.

        `task`: a Task or a dict (see Task); `prompt`: the prompt's text (str); `workdir`: a directory (str or
        pathlib.Path); `now`: a datetime (naive: read in the routing timezone) or None for the clock: the time of
        the decision and of `retry_count` from history; the walk, its records, `retry_at` and `wait` stay on the
        engine's clock; `wait`:
        seconds (may be inf) or None; `on_event`: a callable taking an adws.events.Event, or None.
        Once an attempt has started, its record is kept whatever happens next: a state store or file that
        cannot be written adds a line to `result.warnings` saying what was lost; an AdwsError (e.g. the
        store failing before the next attempt) ends the walk with the result returned, its message naming it.
        Interrupted (KeyboardInterrupt, or a stop signal under `adws.interrupts`), the attempt that was running
        is recorded (also when the stop lands while its verify command runs), the audit record written, then
        `Interrupted` (a KeyboardInterrupt carrying the result) is raised; parked by `wait`, the result is the
        last try's. Interrupted before any agent started (a `usage_command`, the routing), the KeyboardInterrupt
        propagates as it is. In strict mode a degraded config raises ConfigError.
        A failed result carries `retry_at` and `retryable` (adws.retry). With `wait`, a task whose plan was spent
        by limits, cooldowns, quotas or busy slots is parked until `retry_at` (an event `task_waiting` says
        until when) and run again, as long as that is within `wait` of the start.
        `on_event` hears `task_started`, each attempt's `attempt_started` and `attempt_finished`, `task_waiting`
        and, last, `task_finished` (outcome "success", "failed" or "interrupted"; also when run() raises once the
        task started) (adws.events); every event is logged on the "adws.events" logger too. An attempt's events
        come once it is recorded; an Exception from `on_event` never loses it nor stops the run: the first is
        logged and named in the result's warnings (adws.events.SafeSink); later events still go to `on_event`.
        Raises, before anything runs: ArgumentError (a TypeError and ValueError: an argument of the wrong type)
        and TaskError (a task field of the wrong type), both before any event; then, once `task_started` was
        emitted (a `task_finished` "failed" follows, so that run_many's progress sees every task end):
        ConfigError (strict mode, the edited config refused), TaskError (a value the config refuses: priority,
        specialization, override), PromptError (an empty prompt) and MissingWorkdirError (`workdir` is not a
        directory; a WorkdirError), both TaskErrors too, and WorkdirError (the `[run] workdir` policy cannot use
        the directory).
        """
        return self.run_indexed(task, prompt, workdir, now, wait, on_event)

    def run_indexed(self, task: TaskInput, prompt: str, workdir: str | os.PathLike[str], now: datetime | None,
                    wait: float | None, on_event: Callable[[Event], None] | None, *, index: int = 0,
                    label: str | None = None, stopping: Callable[[], bool] | None = None) -> Result:
        """Internal, for run() and adws.batch (not part of the API): `run()` with the arguments positional and
        `index` and `label` naming the task in every event (run_many's place in the input and label; run() gives
        0 and the task's key); `stopping` tells whether the caller is stopping (run_many after Ctrl-C), so that a
        task that failed meanwhile is reported interrupted. That decision is made once, here, and announced as
        the `task_finished` event's outcome; a caller that reports the outcome too reads it from that event."""
        prompt = checked_prompt(prompt)  # type: ignore[assignment]  # a str: optional is False
        workdir = checked_workdir(workdir)
        now = checked_now(now)
        wait = checked_seconds("wait", wait)
        checked_callable("on_event", on_event, what="an adws.events.Event")
        given_retry_count = isinstance(task, Mapping) and task.get("retry_count") is not None
        self._between_tasks()
        task = self.router.coerce(task)
        label = label or task.key or "task"
        from adws.events import Event, EventKind, SafeSink, announce, failure_of, task_finished

        sink = SafeSink(on_event)  # a callback that raises never loses a run: see SafeSink

        def emit(event: Event) -> None:
            if event.index != index or event.task != label:  # the manager names the task by its key
                event = replace(event, index=index, task=label)
            announce(event, sink)

        started = time.monotonic()
        emit(Event(EventKind.TASK_STARTED, index, label, self.clock()))
        result: Result | None = None
        failure: tuple[str, bool] | None = None
        try:
            result = self._run_task(task, prompt, workdir, now, wait, given_retry_count, emit, sink)
            return result
        except BaseException as exc:
            failure = failure_of(exc)
            result = getattr(exc, "adws_result", None)
            raise
        finally:
            emit(task_finished(index, label, self.clock(), result, failure,
                               stopping=stopping is not None and stopping(),
                               duration_ms=round((time.monotonic() - started) * 1000)))

    def _run_task(self, task: Task, prompt: str, workdir: str | os.PathLike[str], now: datetime | None,
                  wait: float | None, given_retry_count: bool, emit: Callable[[Event], None],
                  sink: SafeSink) -> Result:
        """The checks that need the task's config, then the run (again, with `wait`, until capacity returns).

        A stop while the task is parked (or before its next try has started an agent) raises with the last try's
        result, its message saying so: Interrupted for a signal, RunCancelled (its `adws_result`) for a
        cancellation."""
        if self.strict and self._refused is not None:
            raise ConfigError([Problem("", "refusing new runs (strict mode): the edited config does not load; "
                                           "the problems follow"), *self._refused.problems], self._refused.source)
        if not prompt.strip():
            raise PromptError(["prompt: empty; an agent given no prompt would only guess"])
        if not os.path.isdir(workdir):
            # Refused before any attempt: a bad path would otherwise fail every tier and trip every breaker.
            raise MissingWorkdirError([f"workdir: {os.fspath(workdir)} is not a directory"])
        if self.config.intake.retry_count_from_history and not given_retry_count and task.retry_count == 0 \
                and task.key is not None:
            from adws.history import failed_runs
            from adws.intake import local_time

            # The decision's time (a naive `now` read in the routing timezone, as route() reads it: the log's
            # times are aware).
            decided_at = self.clock() if now is None else local_time(now, self.router.tz)
            since = decided_at - timedelta(seconds=self.config.intake.history_window_seconds)
            task = replace(task, retry_count=failed_runs(self.config.audit_path, task.key, since=since,
                                                          until=None if now is None else decided_at))
        deadline = None if wait is None else self.clock() + timedelta(seconds=min(wait, 10 * 365 * 86400))
        from adws.events import Event, EventKind

        last: Result | None = None  # the previous try's result, audited already: what a stop while parked returns
        try:
            while True:
                result = self._run_once(task, prompt, workdir, now, emit, sink)
                last = result
                if deadline is None or result.success or not result.retryable or result.retry_at is None:
                    return result
                from adws.aio import cancellable_sleep
                from adws.retry import wait_for_capacity

                moment = self.clock()
                if result.retry_at > deadline:
                    return result
                # Index 0 and the key are placeholders: `emit` (run_indexed's) names the task by its index and
                # label.
                emit(Event(EventKind.TASK_WAITING, 0, task.key or "task", moment, until=result.retry_at,
                           reason=result.message))
                # A cancelled run_many (or arun) cuts the wait short, as a signal does in the main thread.
                wait_for_capacity(result.retry_at, now=moment, deadline=deadline, sleep=cancellable_sleep(self._sleep))
                now = None  # a later try routes at its own time
                self._between_tasks()  # a config edited while the task waited is used for the next try
        except (KeyboardInterrupt, RunCancelled) as exc:
            carried = getattr(exc, "adws_result", None)
            if last is None or (carried is not None and carried.attempts):
                raise  # nothing ran yet, or the stop is the next try's, with its own attempts
            if isinstance(exc, RunCancelled):
                last.message = f"cancelled while waiting for capacity; the last try: {last.message}"
                exc.adws_result = last  # type: ignore[attr-defined]  # as for any other stop (run_many reads it)
                raise
            name = str(exc) or "SIGINT"
            last.message = f"interrupted by {name} while waiting for capacity; the last try: {last.message}"
            raise Interrupted(name, last) from None

    def _run_once(self, task: Task, prompt: str, workdir: str | os.PathLike[str], now: datetime | None,
                  on_event: Callable[[Event], None] | None, sink: SafeSink) -> Result:
        """One try: usage commands that are due, the decision, the walk, the retry window and the audit record.
        From the walk's start to the audit record written, a stop signal is held except where the walk lets it
        through (its agents, verify commands and sleeps; adws.interrupts): one that lands after an attempt began
        raises Interrupted carrying the result, recorded in the audit log. `sink`: run_indexed's guarded
        `on_event`, whose failure (SafeSink) the result's warnings name."""
        # The run keeps this config, router and manager to its end, whatever a reload swaps in meanwhile.
        with self._lock:
            config, router, manager = self.config, self.router, self.manager
        self._sync_usage(config)  # usage commands that are due, before the decision (never in route())
        with self._lock:
            decision = router.route(task, now=now, prompt=prompt)
        from adws import interrupts
        from adws.result import Result
        from adws.workdir import open_workspace

        rule = decision.matched
        policy = rule.workdir if rule is not None and rule.workdir is not None else config.workdir_policy
        workspace = open_workspace(policy, workdir, environ=self.environ)  # WorkdirError: nothing ran
        result = Result(False, decision)
        from adws.manager import scrubber_for

        scrub = scrubber_for(config, self.environ, prompt)  # the run's records and its audit line alike

        def interrupted(exc: KeyboardInterrupt) -> Interrupted:
            return Interrupted(str(exc) or "SIGINT", result)  # its adws_result too, as any other stop (run_many)

        try:
            # Held from here to the audit record (the retry window's store reads included): a stop that lands
            # between the walk's end and the record waits for it. The walk itself lets one through (below).
            with interrupts.shielded():
                try:
                    with interrupts.interruptible():
                        manager.run(task, decision, prompt=prompt, workdir=workdir, result=result,
                                    workspace=workspace, observer=on_event, scrub=scrub)
                except KeyboardInterrupt as exc:
                    if result.run_dir is None:
                        raise
                    raise interrupted(exc) from None
                except AdwsError as exc:
                    if not result.attempts:
                        exc.adws_result = result  # type: ignore[attr-defined]
                        raise  # nothing ran: the error alone says it all
                    result.success = False
                    result.message = f"stopped after {len(result.attempts)} attempt(s): {exc}"
                except BaseException as exc:
                    exc.adws_result = result  # type: ignore[attr-defined]  # what ran, for a caller such as run_many
                    raise
                finally:
                    failure = sink.take()
                    if failure is not None:  # named once, in the result of the try it happened in (or the next)
                        result.warnings.append(failure)
                    if not result.success:
                        self._retry_window(result)
                    # Once the run began (its directory exists), what ran is logged even when it was interrupted.
                    if result.run_dir is not None and config.audit_enabled:
                        self._audit(task, result, prompt, config, scrub)
        except KeyboardInterrupt as exc:  # held by the shield until the record was written
            if isinstance(exc, Interrupted) or result.run_dir is None:
                raise
            raise interrupted(exc) from None
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

    def _sync_usage(self, config: CompiledConfig) -> None:
        """Run the usage commands that are due (`usage_sync_interval`) before routing a run; route() never does.
        A failing command is reported on stderr and routing goes on with what the store knows."""
        if not any(p.usage_sync_seconds is not None for p in config.providers.values()):
            return
        from adws.aio import cancellable
        from adws.runner import run as run_process
        from adws.usage_sync import sync_usage

        # Through the cancellable runner: a cancelled run_many or arun ends a usage command too. A stop signal
        # while one runs propagates (KeyboardInterrupt): nothing was routed, nothing ran.
        for synced in sync_usage(config.providers, self.store, config_dir=config.base_dir,
                                 now=self.clock(), environ=self.environ, due_only=True,
                                 runner=cancellable(run_process)):
            if synced.error:
                print(f"adws: {synced.provider}/{synced.account}: {synced.error}", file=sys.stderr)

    def _audit(self, task: Task, result: Result, prompt: str, config: CompiledConfig, scrub: Scrubber) -> None:
        include = config.audit_include_prompt  # the run's config, as below (a reload may land meanwhile)
        record: dict[str, Any] = {
            "at": self.clock().isoformat(),
            # The task, so `adws replay` can route it again; title and body only where prompts may be logged.
            "task": {k: v for k, v in {**task.to_dict(), "id": task.key}.items()
                     if include or k not in ("title", "body")},
            "success": result.success,
            "message": result.message,
            "decision": result.decision.to_dict(),
            "attempts": [a.to_dict() for a in result.attempts],
            "warnings": list(result.warnings),
        }
        if include:
            record["prompt"] = prompt  # kept as asked, but without secrets (the scrubber has no prompt to take out)
        from adws import audit  # a run writes the audit log; routing never does

        try:
            audit.append_line(config.audit_path, scrub.dumps(record))
        except OSError as exc:
            # The run itself is done (and maybe succeeded): say what is lost, do not lose the result.
            ran = sum(a.duration_ms > 0 or a.exit_code is not None for a in result.attempts)
            lost = (f"cannot write the audit log {config.audit_path}: {exc.strerror or exc}; this task's "
                    f"record ({len(result.attempts)} attempt(s), {ran} started, "
                    f"{'succeeded' if result.success else 'failed'}) is not in the audit log")
            result.warnings.append(lost)
            print(f"adws: {encodable(lost)}", file=sys.stderr)

    def redactor(self) -> Scrubber:
        """What adws's printed output is cleaned with: every secret value it knows (see adws.redact)."""
        return Scrubber(secret_values(self.environ, key_variables(self.config)))

    def close(self) -> None:
        if self._workers is not None:
            self._workers.shutdown(wait=True)
        self.store.close()


# Engine's keywords that load() passes on (the others, watcher and auto_reload, load sets from its own arguments;
# tests/test_api_arguments.py checks this against Engine's signature), and load's own, for a "did you mean".
LOAD_OPTIONS = ("store", "clock", "sleep", "runner", "environ", "which")
_LOAD_OWN = ("path", "reload", "reload_interval", "strict")


def load(path: str | os.PathLike[str] = "config.toml", *, reload: bool = False,
         reload_interval: float = DEFAULT_RELOAD_INTERVAL, strict: bool = False, **options: Any) -> Engine:
    """Load and validate a config file (raises ConfigError listing every problem) and build an Engine.

    `path`: str or pathlib.Path. `reload`: notice edits of the file by itself, with at most one `stat` per
    `reload_interval` seconds (>= 0) (`engine.reload()` looks at once either way); `strict`: refuse new runs while
    an edit does not load. `options` go to Engine: `store`, `clock`, `sleep`, `runner`, `environ`, `which`
    (LOAD_OPTIONS). Raises ArgumentError (a TypeError) for an argument of the wrong type or an option that is
    none of these (with a "did you mean" for a near miss), before the file is read.
    """
    for option in options:
        if option not in LOAD_OPTIONS:
            raise ArgumentError(f"{option}: not an option of load{suggest(option, (*_LOAD_OWN, *LOAD_OPTIONS))}; "
                                f"it takes {', '.join(_LOAD_OWN)} and Engine's {', '.join(LOAD_OPTIONS)}")
    name = checked_path("path", path)
    checked_flag("reload", reload)
    interval = checked_seconds("reload_interval", reload_interval, optional=False)
    watcher = ConfigWatcher(name, interval)  # type: ignore[arg-type]  # a float: optional is False
    return Engine(name, watcher=watcher, auto_reload=reload, strict=strict, **options)
