"""Many tasks at once: `adws run-many` and `Engine.run_many`.

Input (all of it validated before anything runs; every problem is reported at once, `BatchInputError`):

- JSON Lines, one item per line: `{"task": {...}, "prompt": "..." | "prompt_file": "...", "workdir": "..."}`.
  `task` is a task object or a GitHub issue as `gh issue view --json` prints it. `prompt_file` and `workdir`
  are read relative to the tasks file's directory (the current directory for standard input).
- A JSON array, as `gh issue list --json number,title,body,labels` prints it: each element is a task, and the
  prompt comes from a prompt template (a sandboxed Jinja template over `task`). Elements that have the item
  shape above (a `task` key) are items.

Execution: at most `concurrency` tasks run at once, on worker threads sharing the caller's Engine (it is
thread-safe, and a hot reload reaches the tasks that start after it). Each provider's `max_concurrency` still
holds across processes: it is leased from the shared store.
Events (`Event`) go to an `on_event` callback (called under a lock, one at a time) and to the `adws.events`
logger; each task's outcome is handed to `on_result` as it finishes. Ctrl-C (KeyboardInterrupt in the thread
that called `run_many`) ends every running agent's process group through the batch's `adws.aio.CancelToken`
(the mechanism of a cancelled `arun`), lets each worker record its attempts (the audit log gets them) and
re-raises; so does any other exception that ends the batch early (one `on_result` raised).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adws.arguments import checked_callable, checked_count, checked_prompt, checked_seconds, checked_workdir, got
from adws.dataclass_cache import dataclass, replace
from adws.errors import AdwsError, ArgumentError, RunCancelled, TaskError, count, json_kind, suggest
from adws.events import Event, EventKind, EventSink, failure_of
from adws.task import Task, coerce_task, without_bom

if TYPE_CHECKING:
    from adws.engine import Engine
    from adws.manager import Result

__all__ = [
    "BatchInputError",
    "BatchItem",
    "Event",
    "EventKind",
    "TaskOutcome",
    "items_from_text",
    "load_items",
    "run_many",
]

logger = logging.getLogger("adws.batch")

ITEM_KEYS = ("task", "prompt", "prompt_file", "workdir")
# After Ctrl-C the agents get SIGTERM; those still running the longest `kill_grace` of any provider later get
# SIGKILL; a worker still not done this much later is left behind (its thread is a daemon).
STOP_JOIN_SECONDS = 5.0
STOP_POLL_SECONDS = 0.05  # how often the marked processes are looked for while stopping


class BatchInputError(AdwsError):
    """The batch input cannot be run. Holds every problem, each starting with its place (`tasks.jsonl line 3`)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        head = f"{count(len(self.problems), 'problem')} in the tasks; nothing was run"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One task of a batch: what to run, with which prompt, where. `where` names it in messages."""

    task: Task
    prompt: str
    workdir: str = "."
    where: str = ""

    @property
    def label(self) -> str:
        return self.task.key or self.where or "task"


# -- input ----------------------------------------------------------------------------------------------------


def load_items(source: str, *, prompt_template: str | None = None, workdir: str = ".") -> list[BatchItem]:
    """Items from a file name or `-` (standard input). `prompt_template` is a template file's name.

    Raises BatchInputError listing every problem (unreadable file, bad JSON, bad task, missing prompt ...).
    """
    from adws.inputs import MAX_CONFIG_BYTES, MAX_TASKS_BYTES, read_stdin, read_text

    name = "<stdin>" if source == "-" else source
    what = "a tasks file"
    try:
        if source == "-":
            text = read_stdin(MAX_TASKS_BYTES, what)
            base = Path.cwd()
        else:
            text = read_text(source, MAX_TASKS_BYTES, what)
            base = Path(source).resolve().parent
    except OSError as exc:
        raise BatchInputError([f"{name}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise BatchInputError([f"{name}: not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None
    template = None
    if prompt_template is not None:
        try:
            template = read_text(prompt_template, MAX_CONFIG_BYTES, "a prompt template")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise BatchInputError([f"--prompt-template {prompt_template}: cannot read: {why}"]) from None
    return items_from_text(text, source=name, base_dir=base, prompt_template=template, workdir=workdir)


def items_from_text(text: str, *, source: str = "<tasks>", base_dir: Path | None = None,
                    prompt_template: str | None = None, workdir: str = ".") -> list[BatchItem]:
    """Parse and validate JSON Lines or a JSON array (see the module doc). Raises BatchInputError."""
    base = base_dir or Path.cwd()
    problems: list[str] = []
    if prompt_template is not None:
        from adws.templates import check_template

        why = check_template(prompt_template, {"task"})
        if why:
            problems.append(f"--prompt-template: {why}")
            prompt_template = None
    text = without_bom(text)
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # ValueError: also a too-long integer
            raise BatchInputError([f"{source}: not valid JSON: {exc}"]) from None
        entries: list[tuple[str, Any]] = [(f"{source} [{i}]", element if _is_item(element) else {"task": element})
                                          for i, element in enumerate(data)]
    else:
        entries = [(f"{source} line {number}", line) for number, line in enumerate(text.splitlines(), 1)
                   if line.strip()]
    items: list[BatchItem] = []
    seen: dict[str, str] = {}
    for where, entry in entries:
        # One pass in input order: a line's JSON error is listed where the line is, among the other problems.
        if isinstance(entry, str):  # a JSON Lines line, parsed here
            try:
                entry = json.loads(entry)
            except (ValueError, RecursionError) as exc:  # ValueError: also a too-long integer
                problems.append(f"{where}: not valid JSON: {exc}")
                continue
        item = _item(entry, where, base, prompt_template, workdir, problems)
        if item is None:
            continue
        key = item.task.key
        if key is not None and key in seen:
            problems.append(f"{where}: task {key} is also {seen[key]}; give each task once")
            continue
        if key is not None:
            seen[key] = where
        items.append(item)
    if not entries and not problems:
        problems.append(f"{source}: no tasks")
    if problems:
        raise BatchInputError(problems)
    return items


def _is_item(value: Any) -> bool:
    return isinstance(value, Mapping) and "task" in value


def _item(entry: Any, where: str, base: Path, template: str | None, default_workdir: str,
          problems: list[str], *, api: bool = False) -> BatchItem | None:
    """One item, or None with its problems added to `problems`. `api`: given to Engine.run_many, whose caller has
    no prompt template to fall back on (the messages do not name the command's --prompt-template)."""
    before = len(problems)
    if not isinstance(entry, Mapping):
        hint = (" (give a Task as BatchItem(task, prompt, workdir) or {\"task\": task, \"prompt\": text})"
                if isinstance(entry, Task) else "")
        problems.append(f"{where}: expected an object with a task, got {json_kind(entry)}{hint}")
        return None
    for key in entry:
        if key not in ITEM_KEYS:
            problems.append(f'{where}: unknown key "{key}"{suggest(str(key), ITEM_KEYS)}; an item has '
                            + ", ".join(ITEM_KEYS))
    task: Task | None = None
    raw_task = entry.get("task")
    if raw_task is None:
        problems.append(f"{where}: no task")
    else:
        try:
            task = coerce_task(raw_task)
        except TaskError as exc:
            problems.extend(f"{where}: task: {p}" for p in exc.problems)
    prompt = _prompt(entry, where, base, template, task, problems, api=api)
    workdir = _path_of(entry.get("workdir", default_workdir))
    if workdir is None:
        problems.append(f"{where}: workdir: expected a directory name")
    else:
        resolved = workdir if os.path.isabs(workdir) or "workdir" not in entry else str(base / workdir)
        if not Path(resolved).is_dir():
            problems.append(f"{where}: workdir: {workdir} is not a directory")
        workdir = resolved
    if len(problems) > before or task is None or prompt is None or workdir is None:
        return None
    return BatchItem(task, prompt, workdir, where)


def _path_of(value: object) -> str | None:
    """A path given in the tasks (a str, or a pathlib.Path from a Python caller) as a non-empty str, else None:
    the caller words the problem for the tasks file (adws.arguments words it for an API argument)."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    return text if isinstance(text, str) and text else None


def _prompt(entry: Mapping[str, Any], where: str, base: Path, template: str | None, task: Task | None,
            problems: list[str], *, api: bool = False) -> str | None:
    if "prompt" in entry and "prompt_file" in entry:
        problems.append(f"{where}: give prompt or prompt_file, not both")
        return None
    prompt: str | None = None
    if "prompt" in entry:
        prompt = entry["prompt"]
        if not isinstance(prompt, str):
            problems.append(f"{where}: prompt: expected a string, got {json_kind(prompt)}")
            return None
    elif "prompt_file" in entry:
        name = _path_of(entry["prompt_file"])
        if name is None:
            problems.append(f"{where}: prompt_file: expected a file name")
            return None
        try:
            from adws.inputs import MAX_PROMPT_BYTES, read_text

            prompt = read_text(base / name, MAX_PROMPT_BYTES, "a prompt")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{where}: prompt_file {name}: cannot read: {getattr(exc, 'strerror', None) or exc}")
            return None
    elif template is not None:
        if task is None:
            return None
        from adws.templates import render_one

        try:
            prompt = render_one(template, {"task": task.to_dict()})
        except AdwsError as exc:
            problems.append(f"{where}: --prompt-template: {exc}")
            return None
    else:
        problems.append(f"{where}: no prompt: give prompt or prompt_file"
                        + ("" if api else ", or run with --prompt-template"))
        return None
    if not prompt.strip():
        problems.append(f"{where}: the prompt is empty; an agent given no prompt would only guess")
        return None
    return prompt


def coerce_items(items: Iterable[BatchItem | Mapping[str, Any]]) -> list[BatchItem]:
    """Python API input: BatchItem objects or dicts of the JSON Lines shape (paths relative to the current dir).
    Raises ArgumentError when `items` is not an iterable of items (a dict or a string), BatchInputError listing
    every bad item."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise ArgumentError(f"items: expected an iterable of items (BatchItem objects or dicts), got {got(items)}")
    problems: list[str] = []
    out: list[BatchItem] = []
    for i, item in enumerate(items):
        if isinstance(item, BatchItem):
            # Its types only: that the workdir exists and the prompt is not empty is checked as each task starts.
            wrong = _wrong_types(item)
            if wrong:
                problems.extend(f"item {i}: {p}" for p in wrong)
            else:
                out.append(item if item.where else replace(item, where=f"item {i}"))
            continue
        made = _item(item, f"item {i}", Path.cwd(), None, ".", problems, api=True)
        if made is not None:
            out.append(made)
    if problems:
        raise BatchInputError(problems)
    return out


def _wrong_types(item: BatchItem) -> list[str]:
    """What in a BatchItem built in Python has the wrong type (the dataclass itself checks nothing), one line
    each. The prompt and workdir go through the checks run() makes, so what passes here is not refused later."""
    problems = []
    if not isinstance(item.task, Task):
        problems.append(f"task: expected an adws.Task (a dict goes in {{\"task\": ...}} items), got {got(item.task)}")
    for check, value in ((checked_prompt, item.prompt), (checked_workdir, item.workdir)):
        try:
            check(value)
        except ArgumentError as e:
            problems.append(str(e))
    return problems


# -- events ---------------------------------------------------------------------------------------------------




@dataclass(slots=True)
class TaskOutcome:
    """One task's end: its Result, or the error that kept it from running. `interrupted` after Ctrl-C."""

    index: int
    item: BatchItem
    result: Result | None = None
    error: str | None = None
    interrupted: bool = False

    @property
    def success(self) -> bool:
        return self.result is not None and self.result.success and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        """The `adws run --json` object, plus `task` (id, number) and `index`; on an error, `error` and nulls."""
        task = {"id": self.item.task.id, "number": self.item.task.number, "label": self.item.label}
        if self.result is not None:
            data = self.result.to_dict()
            if self.error:
                data["error"] = self.error
        else:
            data = {"success": False, "provider": None, "model": None, "account": None, "rule": None,
                    "message": self.error, "error": self.error, "attempts": []}
        data["success"] = self.success
        data["interrupted"] = self.interrupted
        return {"index": self.index, "task": task, **data}


# -- execution ------------------------------------------------------------------------------------------------


class _Batch:
    def __init__(self, engine: Engine, items: Sequence[BatchItem], *, concurrency: int,
                 on_event: EventSink | None, on_result: Callable[[TaskOutcome], None] | None,
                 wait: float | None = None) -> None:
        from adws.aio import CancelToken

        self.engine = engine
        self.wait = wait
        self.items = items
        self.concurrency = max(1, min(concurrency, len(items)))
        self.on_event = on_event
        self.on_result = on_result
        # Every agent the batch starts carries this token's marker: Ctrl-C ends them all, as a cancelled arun.
        self.token = CancelToken()
        self._emit_lock = threading.Lock()
        self._todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[TaskOutcome] = queue.SimpleQueue()
        for index in range(len(items)):
            self._todo.put(index)

    # -- events --

    def _hand_on(self, event: Event) -> None:
        """To the caller's callback, one event at a time (the engine has logged each event already)."""
        if self.on_event is not None:
            with self._emit_lock:
                self.on_event(event)

    # -- run --

    def run(self) -> list[TaskOutcome]:
        workers = [threading.Thread(target=self._worker, name=f"adws-batch-{n}", daemon=True)
                   for n in range(self.concurrency)]
        for worker in workers:
            worker.start()
        outcomes: list[TaskOutcome] = []
        deliver = self.on_result
        try:
            while len(outcomes) < len(self.items):
                outcome = self._done.get()
                outcomes.append(outcome)
                if deliver is not None:
                    try:
                        deliver(outcome)
                    except BaseException as exc:
                        if not isinstance(exc, KeyboardInterrupt):  # a stop landing in it is no failure of it
                            deliver = None  # it failed (its stdout gone): it is not asked again
                        raise
        except BaseException:
            # Ctrl-C, or anything else that ends the batch early (an on_result that raised: the coordinator's
            # pipe closed, its disk full): no task is abandoned running. Every agent is ended as on Ctrl-C, and
            # each worker records what ran before the exception goes on.
            self._stop(workers)
            while True:  # what the workers recorded on the way out still reaches the caller
                try:
                    outcome = self._done.get_nowait()
                except queue.Empty:
                    break
                outcomes.append(outcome)
                if deliver is not None:
                    try:
                        deliver(outcome)
                    except Exception:
                        deliver = None  # the first exception is the one that goes on
            raise
        for worker in workers:
            worker.join()
        return sorted(outcomes, key=lambda o: o.index)

    def _stop(self, workers: list[threading.Thread]) -> None:
        """End every running agent's process group (SIGTERM, SIGKILL after its kill_grace) and let each worker
        record what ran. A worker still busy after that (a task parked in --wait) is left behind: it is a
        daemon thread, and what it ran is in the audit log already."""
        self.token.cancel()
        grace = max((p.kill_grace for p in self.engine.config.providers.values()), default=5.0)
        deadline = time.monotonic() + grace + STOP_JOIN_SECONDS
        while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
            self.token.end_marked()
            for worker in workers:
                worker.join(STOP_POLL_SECONDS / len(workers))

    def _worker(self) -> None:
        from adws.aio import running

        while not self.token.cancelled.is_set():
            try:
                index = self._todo.get_nowait()
            except queue.Empty:
                return
            with running(self.token):
                self._done.put(self._run_one(index))

    def _run_one(self, index: int) -> TaskOutcome:
        item = self.items[index]
        outcome = TaskOutcome(index, item)
        announced: list[str | None] = []

        def hand_on(event: Event) -> None:
            if event.kind is EventKind.TASK_FINISHED and event.index == index:
                announced.append(event.outcome)  # first: a callback that raises must not lose it
            self._hand_on(event)

        # The engine emits the task's events (task_started ... task_finished), named by its place and label.
        try:
            outcome.result = self.engine.run_indexed(item.task, item.prompt, item.workdir, None, self.wait, hand_on,
                                                     index=index, label=item.label,
                                                     stopping=self.token.cancelled.is_set)
        except (KeyboardInterrupt, RunCancelled) as exc:  # the batch is stopping
            outcome.result = getattr(exc, "adws_result", None)
            outcome.error, outcome.interrupted = failure_of(exc)
        except Exception as exc:  # this task's own problem (its workdir, its template): not the others'
            if not isinstance(exc, AdwsError):  # a bug must not take the other tasks down; the log has the trace
                logger.exception("task %s failed inside adws", item.label)
            outcome.error = failure_of(exc)[0]
        if announced:
            # What task_finished said, decided once by the engine: a Ctrl-C after that event must not make a
            # task the event called "failed" an interrupted one here.
            outcome.interrupted = announced[-1] == "interrupted"
        elif self.token.cancelled.is_set() and not outcome.success:
            outcome.interrupted = True  # it ended before it started (no event): stopping decides alone
        return outcome


def run_many(engine: Engine, items: Iterable[BatchItem | Mapping[str, Any]], *, concurrency: int = 4,
             on_event: EventSink | None = None, on_result: Callable[[TaskOutcome], None] | None = None,
             wait: float | None = None) -> list[TaskOutcome]:
    """Run every item, at most `concurrency` at once; outcomes in input order.

    Raises BatchInputError (before anything runs) for bad items, ArgumentError (a TypeError and ValueError) for
    an argument of the wrong type or concurrency < 1, and KeyboardInterrupt after stopping every agent when
    interrupted (`on_result` has seen what finished). An exception `on_result` raises ends the batch the same way:
    every running agent is stopped and its attempts recorded, then the exception is raised (`on_result` is not
    called again, unless what it raised was a KeyboardInterrupt: a stop, not a failure of its own).
    """
    checked_count("concurrency", concurrency, minimum=1)
    checked_callable("on_event", on_event, what="an adws.events.Event")
    checked_callable("on_result", on_result, what="a TaskOutcome")
    checked_seconds("wait", wait)
    checked = coerce_items(items)
    if not checked:
        return []
    return _Batch(engine, checked, concurrency=concurrency, on_event=on_event, on_result=on_result,
                  wait=wait).run()

