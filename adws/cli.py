"""The `adws` command. Stable for scripts: see README "The `adws` command".

Exit codes: 0 success; 1 a failed check / a spent plan / an empty plan; 2 bad config, bad input or bad usage;
3 the output could not be written (standard output closed or full: see `OutputError`); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, tzinfo
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from adws.arguments import time_problem
from adws.errors import AdwsError, ConfigError, PromptError, TaskError, UsageError, missing_dependency, set_or_unset

if TYPE_CHECKING:
    import argparse  # imported where a parser is built: `adws route` usually needs none (see _route_args)
    from contextlib import AbstractContextManager

    from adws.compiled import CompiledConfig
    from adws.redact import Scrubber

DEFAULT_CONFIG = "config.toml"
EXIT_OUTPUT = 3  # standard output failed: what the command did stands (a run is recorded), its output is lost
# A stop signal that arrives while a result is printed waits for the printing; a reader that takes no more of it
# for this long after the signal gets the output cut short (exit EXIT_OUTPUT), not a process that never ends.
PRINT_GRACE_SECONDS = 10.0
WAIT_HELP = ("when limits, cooldowns, quotas or busy slots spent the plan, wait until capacity returns (at most MAX: "
             "seconds or e.g. 30m, 2h; no MAX: however long) and run again")


def config_path(value: str | None) -> str:
    """The config file to read: `value` (--config or the CONFIG argument), else $ADWS_CONFIG, else
    ./config.toml. Every adws command and the tools/ scripts take it from here.

    Raises UsageError when ADWS_CONFIG is set but empty (as an adws state variable set empty: see
    adws.state): an empty value is a mistake (`ADWS_CONFIG=$UNSET`), not a request for ./config.toml.
    """
    if value:
        return value
    return set_or_unset(os.environ, "ADWS_CONFIG", "a config file", "./config.toml", UsageError) or DEFAULT_CONFIG


def _where_configs_come_from(exc: ConfigError, given: str | None) -> str:
    """For a config file not found at a path the command line did not name: a line saying where adws looked and
    how to name another file (a first run in the wrong directory, or ADWS_CONFIG left over); else ""."""
    if given or not exc.unreadable or [p.message for p in exc.problems] != ["config file not found"]:
        return ""
    origin = "from $ADWS_CONFIG" if os.environ.get("ADWS_CONFIG") else "the default, in the current directory"
    return f"\n  (that path is {origin}: name the config with --config FILE or ADWS_CONFIG)"


def _read_arg(value: str, limit: int, what: str) -> str:
    """JSON given inline, as @FILE, or as - for standard input; a file or standard input is read up to `limit`
    bytes (adws.inputs; `what`: "a task"). Raises OSError (TooLarge over the bound, EBADF for a closed standard
    input) or UnicodeDecodeError."""
    from adws.inputs import read_stdin, read_text

    if value == "-":
        return read_stdin(limit, what)
    if value.startswith("@"):
        return read_text(value[1:], limit, what)
    return value


def _task(args: argparse.Namespace) -> dict[str, Any]:
    if args.task_json is not None and args.github_issue is not None:
        raise UsageError("give the task once: --task-json or --github-issue, not both")
    if "-" in (args.task_json, args.github_issue) and getattr(args, "prompt_file", None) == "-":
        raise UsageError("standard input can carry the task or the prompt, not both")
    source = args.task_json if args.task_json is not None else args.github_issue
    if source is None:
        raise UsageError("no task given: give it with --task-json JSON or --github-issue FILE (- for stdin)")
    if args.github_issue is not None and not args.github_issue.startswith("@") and args.github_issue != "-":
        source = "@" + args.github_issue  # --github-issue takes a file name (gh issue view ... > issue.json)
    try:
        from adws.inputs import MAX_CONFIG_BYTES

        text = _read_arg(source, MAX_CONFIG_BYTES, "a task")
    except OSError as exc:
        from adws.inputs import why

        raise TaskError([f"cannot read task: {why(exc)}"]) from None
    except UnicodeDecodeError as exc:
        raise TaskError([f"task is not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None
    from adws.task import parse_task_json

    return parse_task_json(text)


def parse_at(value: str | None, timezone: str | None = None, option: str = "--at") -> datetime | None:
    """--at (or another time `option`) as an aware datetime; a time without an offset is read in `timezone`
    (the routing timezone). Raises UsageError naming `option`, also for a time outside the years routing takes
    (adws.arguments.time_problem). Public: tools/show-routing.py reads its --at with it."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option}: not an ISO 8601 time: {value!r}") from None
    problem = time_problem(moment)  # (the year 9999 or 1 overflows in routing's own date arithmetic)
    if problem:
        raise UsageError(f"{option}: {problem}")
    if moment.tzinfo is None and timezone is not None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment


class OutputError(Exception):
    """Standard output failed while a command ran: a closed pipe (EPIPE), a full disk (ENOSPC), a file size limit
    (EFBIG), an I/O error, standard output closed before adws started, or a reader that stopped reading while a
    stop signal waited (see `PRINT_GRACE_SECONDS`). `main` says so in one line on stderr and exits EXIT_OUTPUT;
    what the command did before stands. Not an OSError: handlers of a command's own files never catch it."""

    def __init__(self, cause: OSError) -> None:
        self.cause = cause
        why = cause.strerror or str(cause) or type(cause).__name__
        super().__init__(f"cannot write to standard output: {why}")


class _Guarded:
    """sys.stdout or sys.stderr while `main` runs a command: the first write or flush that fails (OSError) is kept
    in `failure`, and from then on nothing more is written. On stdout (`fatal`) that failure and every later write
    raise OutputError; on stderr (messages, progress) the writes are dropped: a person's view that cannot be shown
    must not end the command. Everything else (isatty, fileno, encoding) is the stream's."""

    def __init__(self, stream: Any, fatal: bool, scrub: Scrubber | None = None) -> None:
        from adws.redact import Scrubber

        self.stream = stream
        self.fatal = fatal
        # Every text written passes through it (see `_learn_secrets`), or was cleaned whole by a scrubber that knows
        # as much (`cleaned`): no secret adws knows leaves on this stream.
        self.scrub = scrub if scrub is not None else Scrubber()
        # Python gives None for a standard stream whose descriptor was closed when it started (`>&-`).
        self.failure: OSError | None = None if stream is not None else OSError(9, "it is closed")

    def write(self, text: str, cleaned_by: Scrubber | None = None) -> int:
        """Write `text`, cleaned by this stream's scrubber unless `cleaned_by` cleaned this very text (`scrub.text`
        on all of it) and redacts every secret this stream does (`cleaned`). Never for a JSON document cleaned value
        by value (`Scrubber.dumps`): JSON's escaping can write a secret that no value held (a key kept with `\\n`
        in its variable, printed with real newlines, is escaped back to the variable's exact text), and only this
        search of the finished text finds it."""
        if self.failure is None:
            try:
                self.stream.write(self.scrub.text(text) if type(text) is str and not self.cleaned(cleaned_by)
                                  else text)
                return len(text)
            except OSError as exc:
                self.failure = exc
        return self._failed(len(text))

    def cleaned(self, scrub: Scrubber | None) -> bool:
        """Whether text `scrub` has cleaned needs no cleaning here: it redacts every secret this stream's does (the
        same scrubber, or the engine's, which knows the same variables: see `_learn_secrets`)."""
        return scrub is not None and (scrub is self.scrub or set(self.scrub.secrets) <= set(scrub.secrets))

    def flush(self) -> None:
        if self.failure is None:
            try:
                self.stream.flush()
                return
            except OSError as exc:
                self.failure = exc
        self._failed(0)

    def write_whole(self, text: str, cleaned_by: Scrubber | None = None) -> None:
        """Write all of `text` and flush it (`cleaned_by` as for `write`). Through the stream's byte buffer, in a
        loop, where there is one: a text stream over an unbuffered file (PYTHONUNBUFFERED) writes once and drops
        what a signal cut off."""
        buffer = getattr(self.stream, "buffer", None)
        encoding = getattr(self.stream, "encoding", None)
        if buffer is None or not isinstance(encoding, str):  # a stream of text only (io.StringIO)
            self.write(text, cleaned_by)
            self.flush()
            return
        self.flush()  # what the text layer holds goes first
        if self.failure is None:
            if not self.cleaned(cleaned_by):
                text = self.scrub.text(text)
            data = memoryview(text.encode(encoding, getattr(self.stream, "errors", None) or "strict"))
            try:
                while data:
                    written = buffer.write(data)
                    if written is None:  # a non-blocking descriptor that takes nothing now: wait until it does
                        import select

                        select.select([], [buffer.fileno()], [])
                        continue
                    data = data[written:]
                buffer.flush()
            except OSError as exc:
                self.failure = exc
        self._failed(0)

    def _failed(self, size: int) -> int:
        if self.fatal and self.failure is not None:
            raise OutputError(self.failure)
        return size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _silence(guarded: _Guarded, fd: int) -> None:
    """After `guarded` failed in adws's own process: its descriptor `fd` now leads to /dev/null, so what stays in the
    stream's buffer goes nowhere when the interpreter flushes it at exit, instead of failing again with a
    traceback of its own (Python's documented handling of a broken pipe)."""
    stream = guarded.stream
    if stream is None:
        return
    try:
        if stream.fileno() != fd:
            return
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's stream), or it cannot be replaced
        pass


def _printing_whole() -> AbstractContextManager[None]:
    """While a result is printed, stop signals (SIGTERM, SIGHUP, SIGINT) wait, so the output is whole: a
    coordinator never reads half a JSON document. The first one that came is raised (KeyboardInterrupt named after
    it) when the printing ends, unless a stop was raised already (adws.interrupts.shielded; `main` installs its
    handler for `run` and `run-many`). Should the printing still be blocked PRINT_GRACE_SECONDS after it (nobody
    reads the pipe), the write is abandoned with OutputError: the output is then cut short, and exit EXIT_OUTPUT
    says so."""
    from adws.interrupts import shielded

    def stalled(name: str) -> OutputError:
        return OutputError(TimeoutError(f"not read within {PRINT_GRACE_SECONDS:g} s of {name}; the output was cut "
                                        "short"))

    return shielded(grace=PRINT_GRACE_SECONDS, stalled=stalled)


def _write_whole(text: str, cleaned_by: Scrubber | None = None) -> None:
    """All of `text` on stdout, then flushed, so a failure is seen here (OutputError), not at exit. `cleaned_by`:
    the scrubber that cleaned all of `text` already (see `_Guarded.write`), if one did."""
    if isinstance(sys.stdout, _Guarded):
        sys.stdout.write_whole(text, cleaned_by)
    else:  # a command function called outside `main`
        sys.stdout.write(text)
        sys.stdout.flush()


# The standard streams `main` guards while a command runs (empty outside it): every text they are given is cleaned
# of every secret adws knows (`_learn_secrets`).
_GUARDS: list[_Guarded] = []


def _output_scrubber(environ: Mapping[str, str] | None = None,
                     config: CompiledConfig | None = None) -> Scrubber:
    """What adws's printed output is cleaned with: the values of the variables whose names look secret, and with
    `config` those of every `api_key_env` it names (adws.redact.secret_values: the set a run redacts)."""
    from adws.redact import Scrubber, secret_values

    named: list[str] = []
    if config is not None:
        from adws.compiled import key_variables

        named = key_variables(config)
    return Scrubber(secret_values(os.environ if environ is None else environ, named))


def _learn_secrets(config: CompiledConfig) -> CompiledConfig:
    """`config`, once the guarded output streams also redact the values of the key variables it names: called
    wherever the CLI loads a config, before anything from it (or from a task) is printed."""
    if _GUARDS:
        more = _output_scrubber(config=config).secrets
        for guard in _GUARDS:
            guard.scrub = guard.scrub.with_secrets(more)
    return config


def _load_config(path: str) -> CompiledConfig:
    """adws.config.load_config(path), its key variables' values redacted from the output (`_learn_secrets`)."""
    from adws.config import load_config

    return _learn_secrets(load_config(path))


def _print_json(data: Any, scrub: Scrubber | None = None) -> None:
    """One JSON document on stdout: secrets redacted (`scrub`; default: the output's, see `_learn_secrets`), once,
    always encodable."""
    if scrub is None:
        scrub = _GUARDS[0].scrub if _GUARDS else _output_scrubber()
    text = scrub.dumps(data, indent=2)
    if isinstance(sys.stdout, _Guarded):
        # Written as print writes it, the document then its newline: a short write (a file size limit) is seen.
        # Searched again as text on the way out (see _Guarded.write).
        sys.stdout.write(text)
        sys.stdout.write("\n")
    else:  # a command function called outside `main`
        print(text)


def cmd_check(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    try:
        config = _load_config(path)
    except ConfigError as exc:
        print(exc.render() + _where_configs_come_from(exc, args.config), file=sys.stderr)
        return 2 if exc.unreadable else 1  # a file that cannot be read is a usage error, as for every command
    from adws.errors import count as _count

    enabled = sum(r.enabled for r in config.rules)
    counts = (f"{_count(len(config.providers), 'provider')}, {_count(len(config.rules), 'rule')} ({enabled} "
              f"enabled), {_count(len(config.scenarios), 'scenario')}")
    failing: list[tuple[bool, dict[str, Any]]] = []  # (without its own `at`, verdict)
    at = parse_at(args.at, config.timezone)
    if config.scenarios:
        from datetime import UTC

        from adws.scenarios import routing_report, scenario_lines

        at = at or datetime.now(UTC)
        # The config's own [[scenarios]] are part of what it declares: one that fails is a problem of the config.
        judged = zip(config.scenarios, routing_report(config, at)["scenarios"], strict=True)
        failing = [(not s.at, verdict) for s, verdict in judged if not verdict["ok"]]
    if failing:
        print(f"{path}: valid, but {len(failing)} of {_count(len(config.scenarios), 'scenario')} not as expected "
              f"({counts})", file=sys.stderr)
        if at is not None and any(untimed for untimed, _ in failing):  # at is set wherever failing is (typing)
            from zoneinfo import ZoneInfo

            from adws.views import minute

            # What a scenario without `at` routes by may change with the hour: say which time was used.
            print(f"  scenarios without `at` judged at {minute(at, ZoneInfo(config.timezone))} (to choose the time: "
                  "adws check --at ISO8601)", file=sys.stderr)
        print("\n".join(scenario_lines([verdict for _, verdict in failing])), file=sys.stderr)
        return 1
    print(f"{path}: OK — {counts}")
    _note_missing_backend(config.state_backend)
    return 0


def _note_missing_backend(backend: str) -> None:
    """A note on stderr when the config's state backend needs a package this Python lacks: the file is valid, but
    every command that reads state on this host would fail at its first route (the check still exits 0: another
    host, the one that runs adws, may have it)."""
    if backend == "redis":
        from importlib.util import find_spec

        if find_spec("redis") is None:
            print("  note: the redis backend needs the redis package, which this Python lacks "
                  "(pip install 'adws[redis]')", file=sys.stderr)


# Set once `main` has run as the process's entry point (its arguments from sys.argv; never reset: the process
# is adws's own from then on): see `_engine`.
_OWN_PROCESS = False


def _engine(args: argparse.Namespace) -> Any:
    from adws.engine import load

    engine = load(config_path(args.config))
    _learn_secrets(engine.config)
    if _OWN_PROCESS:
        # What is alive now (modules, classes, pydantic's validator, the compiled config, the engine) lives until
        # the process ends: moved out of the cyclic collector's sight, no collection walks it again, while the
        # command runs or at exit. ~20 M instructions of a warm `adws route`, ~37 M of the first after a config
        # edit. Frozen objects are not finalized by the collection at exit, and the state store is in a cycle
        # (its change poller holds a bound method of it), so the engine is closed at exit explicitly: SQLite
        # checkpoints and removes its -wal and -shm files as when the collector closed it. Not when a program
        # calls `main` itself: its collector stays as it was.
        import atexit
        import gc

        atexit.register(engine.close)
        gc.freeze()
    return engine


def cmd_route(args: argparse.Namespace) -> int:
    task = _task(args)
    now = parse_at(args.at)
    prompt = _read_prompt(args) if args.prompt_file else None
    if args.assume_available:
        from adws.scenarios import scenario_router

        router = scenario_router(_load_config(config_path(args.config)))
    else:
        router = _engine(args).router
    if args.json:
        if args.explain:
            explanation = router.explain(task, now=now, prompt=prompt)
            _print_json(explanation.to_dict())
            return 0 if explanation.decision.plan else 1
        decision = router.route(task, now=now, prompt=prompt)
        _print_json(decision.to_dict())
        return 0 if decision.plan else 1
    from adws.views import fit, render_decision, render_rules, terminal_width

    # The answer first; the rule table only when asked for.
    if args.explain:
        explanation = router.explain(task, now=now, prompt=prompt)
        decision = explanation.decision
        lines = [*render_decision(decision, router.config.providers), *render_rules(explanation)]
    else:
        decision = router.route(task, now=now, prompt=prompt)
        lines = [*render_decision(decision, router.config.providers), "(every rule and why: adws route --explain)"]
    print(fit(lines, terminal_width(sys.stdout)))
    return 0 if decision.plan else 1


def _read_prompt(args: argparse.Namespace) -> str:
    from adws.inputs import MAX_PROMPT_BYTES

    try:
        return _read_arg("@" + args.prompt_file if args.prompt_file != "-" else "-", MAX_PROMPT_BYTES, "a prompt")
    except OSError as exc:
        from adws.inputs import why

        raise PromptError([f"cannot read prompt: {why(exc)}"]) from None
    except UnicodeDecodeError as exc:
        raise PromptError([f"prompt is not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None


def cmd_run(args: argparse.Namespace) -> int:
    task = _task(args)
    if not args.prompt_file:
        raise UsageError("give the prompt with --prompt-file FILE (- for stdin)")
    prompt = _read_prompt(args)
    wait = _wait(args.wait)
    engine = _engine(args)
    on_event: Callable[[Any], None] | None = None
    # Each attempt as it starts and ends, on stderr (stdout keeps the result). A script reading --json from a
    # pipe gets a clean stderr unless it asks; on a terminal a person is watching.
    if not args.quiet and (not args.json or sys.stderr.isatty()):
        from adws.events import EventKind
        from adws.progress import PlainProgress

        progress = PlainProgress(sys.stderr, zone=engine.router.tz)

        def show(event: Any) -> None:  # the attempts (and a wait): the task's start and end are the result below
            if event.kind is not EventKind.TASK_STARTED and event.kind is not EventKind.TASK_FINISHED:
                progress(event)

        on_event = show
    try:
        result = engine.run(task, prompt=prompt, workdir=args.workdir, now=parse_at(args.at, engine.config.timezone),
                            wait=wait, on_event=on_event)
    except KeyboardInterrupt as exc:
        # Interrupted carries the attempts made, recorded already; a coordinator reading --json still gets them.
        # (A stop before anything ran, or one a caller's code raised, carries none: main says it was interrupted.)
        stopped = getattr(exc, "adws_result", None)
        if stopped is None:
            raise
        with _printing_whole():  # interrupted already: a second stop changes nothing
            _print_result(args, stopped, engine)
        if not stopped.success:
            raise
        # The stop came after the task had ended (while its record was written): the task's result stands.
        print(f"adws: {str(exc) or 'SIGINT'} arrived after the task had ended; its result stands", file=sys.stderr)
        return 0
    # The result exists: from here a stop signal waits until it is printed whole, and the exit code is the task's.
    try:
        with _printing_whole():
            _print_result(args, result, engine)
    except KeyboardInterrupt as exc:  # the stop that waited for the printing: raised once it was whole
        print(f"adws: {exc} arrived after the task had ended; its result stands", file=sys.stderr)
    return 0 if result.success else 1


def _print_result(args: argparse.Namespace, result: Any, engine: Any) -> None:
    """`adws run`'s result on stdout, written whole (`_result_text`)."""
    # Searched again as text on the way out: JSON's escaping can write a secret no value held (_Guarded.write),
    # and a person's lines carry paths (the run directory) not cleaned before.
    _write_whole(_result_text(args, result, engine.redactor(), engine.router.tz, engine.clock()))


def _result_text(args: argparse.Namespace, result: Any, scrub: Scrubber, zone: tzinfo, ended: datetime) -> str:
    """The run's result as printed on stdout (ending with a newline): one JSON object with --json (exact ISO 8601
    times), else lines for a person with times to the minute in `zone`, the routing timezone (adws.views.minute,
    as `adws route` shows them); secrets redacted. The skipped tiers are the decision's, shown as of its time;
    what the run found (attempts, warnings, `retry_at`) as of `ended`, the engine's clock when it ended: a run
    given --at decides as at that time but runs now."""
    if args.json:
        return scrub.dumps(result.to_dict(), indent=2) + "\n"
    from adws.result import for_a_person
    from adws.views import minute, skip_line, times_in

    decided = result.decision.now
    lines: list[str] = []

    def show(line: str, now: datetime = ended) -> None:
        lines.append(times_in(scrub.text(line), zone, now))

    for i, a in enumerate(result.attempts, 1):
        who = a.provider + (f"/{a.account}" if a.account else "")
        show(f"{i}. {who} {a.model or ''}: {a.outcome} ({a.reason}) → {a.action}")
    if not result.attempts:  # nothing ran: say why each tier was left out, and when each is back
        for skip in result.decision.skipped:
            show(f"skipped {skip_line(skip, zone, decided)}", decided)
    for warning in result.warnings:
        show(f"warning: {warning}")
    show(("OK: " if result.success else "FAILED: ") + for_a_person(result.message, "the skipped lines above"))
    if result.output_file:
        lines.append(f"final text: {result.output_file}")
    if result.handoff and result.handoff.get("branch"):
        lines.append(f"work: worktree {result.handoff['worktree']} on branch {result.handoff['branch']}")
    if not result.success and result.retry_at is not None:
        lines.append(f"can run again from {minute(result.retry_at, zone, ended)} (adws run --wait)")
    lines.append(f"run directory: {result.run_dir}")
    return "\n".join(lines) + "\n"


def _wait(value: str | None) -> float | None:
    """--wait: absent None; bare (no MAX) unbounded; MAX as seconds or a duration such as "30m" or "2h"."""
    if value is None:
        return None
    if value == "":
        return float("inf")
    try:
        seconds = float(value)
    except ValueError:
        from adws.quota import parse_window

        try:
            seconds = parse_window(value, what="duration").total_seconds()
        except ValueError as exc:  # its own words: another form, zero, or too long (as --margin says it)
            raise UsageError(f"--wait: {exc}; or seconds (e.g. 600)") from None
    if not seconds >= 0:  # NaN too
        raise UsageError(f"--wait: expected a duration of 0 or more, got {value!r} (e.g. 600, 30m, 2h)")
    return seconds


def cmd_run_many(args: argparse.Namespace) -> int:
    from adws.batch import BatchInputError, load_items, run_many
    from adws.progress import progress_for
    from adws.result import for_a_person

    skipped = "adws route with this task, or run-many --json"  # where a person sees why nothing ran

    if args.concurrency < 1:
        raise UsageError(f"--concurrency: must be at least 1, got {args.concurrency}")
    wait = _wait(args.wait)
    try:
        # Read and validated before the engine (the config, the state store) is loaded: a bad one fails fast.
        items = load_items(args.tasks, prompt_template=args.prompt_template, workdir=args.workdir)
    except BatchInputError:
        # What its problems print must be cleaned of the config's key variables' values, which only the config
        # names: so it is read now, and one that cannot be read is reported instead (as it was before the tasks
        # file was read first), never the tasks' text with those values unknown.
        _load_config(config_path(args.config))
        raise
    engine = _engine(args)
    scrub = engine.redactor()

    def print_result(outcome: Any) -> None:
        # Each line made and written whole (a stop signal waits for it), then the stop as it would have come: the
        # batch stops, and the tasks it ends are printed after this one.
        with _printing_whole():
            if args.json:  # secrets redacted, lone surrogates escaped, as `adws run --json`
                line = scrub.dumps(outcome.to_dict())
            else:
                from adws.views import times_in

                result = outcome.result
                text = outcome.error or (for_a_person(result.message, skipped) if result is not None else "")
                line = scrub.text(f"{'OK' if outcome.success else 'FAILED'} {outcome.item.label}: {text}")
                line = times_in(line, engine.router.tz, result.decision.now if result is not None else None)
            # A person's line was cleaned whole as text; a JSON line is searched again (see _Guarded.write).
            _write_whole(line + "\n", None if args.json else scrub)

    progress = None if args.quiet else progress_for(sys.stderr, len(items), zone=engine.router.tz, skipped=skipped)
    if progress is None:
        outcomes = run_many(engine, items, concurrency=args.concurrency, on_result=print_result, wait=wait)
    else:
        with progress:
            outcomes = run_many(engine, items, concurrency=args.concurrency, on_event=progress,
                                on_result=print_result, wait=wait)
    return 0 if all(o.success for o in outcomes) else 1


def cmd_providers(args: argparse.Namespace) -> int:
    from adws.reports import providers_report, render_providers
    from adws.views import fit, terminal_width

    engine = _engine(args)
    now = parse_at(args.at, engine.config.timezone) or engine.clock()
    rows = providers_report(engine, now)
    if args.json:
        _print_json(rows)
    else:
        print(fit(render_providers(rows, engine.router.tz, now).splitlines(), terminal_width(sys.stdout)))
    return 0


def cmd_quota(args: argparse.Namespace) -> int:
    from adws.reports import quota_report, render_quota, tier_burn
    from adws.views import fit, terminal_width

    engine = _engine(args)
    now = parse_at(args.at, engine.config.timezone) or engine.clock()
    if args.sync:
        from adws.usage_sync import sync_usage

        # Writes observations, so it creates the store; without --sync `adws quota` stays read-only.
        for synced in sync_usage(engine.config.providers, engine.store, config_dir=engine.config.base_dir,
                                 now=now, environ=engine.environ):
            if synced.error:
                print(f"adws: {synced.provider}/{synced.account}: {synced.error}", file=sys.stderr)
    rows = quota_report(engine, now)
    if args.json:
        _print_json(rows)
    else:
        columns = terminal_width(sys.stdout)
        print(fit(render_quota(rows, tier_burn(rows, now), engine.router.tz, now, columns).splitlines(), columns))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from adws.config.schema import Config

    schema = Config.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "adws config.toml"
    _print_json(schema)
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    from adws.state.maintenance import state_command

    # One parser serves the three actions: what an action does not read is refused, not ignored.
    if args.action == "compact" and args.file is not None:
        raise UsageError(f"state compact takes no FILE (got {args.file!r}): it rolls up the configured store")
    if args.margin is not None and args.action != "compact":
        raise UsageError(f"--margin: only `adws state compact` takes it, not {args.action}")
    if args.at is not None and args.action == "import":
        raise UsageError("--at: `adws state import` takes no time (it copies the file's rows as they are)")
    engine = _engine(args)
    return state_command(engine, args.action, file=args.file, margin=args.margin,
                         now=parse_at(args.at, engine.config.timezone) or engine.clock())


def _audit_path(args: argparse.Namespace, configured: str | None = None) -> str:
    """--audit, else the audit log the config names (`configured` when the caller loaded the config).

    A fresh deployment has no audit log yet: the configured log missing reads as zero tasks (an empty file),
    with a note on stderr. A missing --audit file stays an error (UsageError from the reader): the user named it.
    """
    if args.audit:
        return str(args.audit)
    if configured is None:
        configured = _load_config(config_path(args.config)).audit_path
    if not os.path.exists(configured):
        print(f"adws: no audit log at {configured} yet (nothing has run): 0 tasks", file=sys.stderr)
        return os.devnull
    return configured


def cmd_stats(args: argparse.Namespace) -> int:
    from datetime import UTC

    from adws.insight import stats
    from adws.insight.records import parse_since

    by = stats.parse_by(args.by)
    now = datetime.now(UTC)
    since = parse_since(args.since, now)
    result = stats.compute(_audit_path(args), by=by, since=since)
    if args.audit is None or args.config is not None:  # the ledger of the config the log belongs to
        engine = _engine(args)
        store = engine.existing_store()
        if store is not None:
            result.ledger = stats.ledger_rows(store, engine.config.providers, since, now)
    if args.format == "prometheus":
        sys.stdout.write(stats.render_prometheus(result))
    elif args.json:
        _print_json(result.to_dict())
    else:
        print(stats.render(result))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from adws.insight import replay

    baseline = _load_config(args.baseline) if args.baseline else None
    result = replay.replay(args.audit, _load_config(args.config), baseline)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(replay.render(result))
    return 1 if args.fail_on_change and result.changes else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import random

    from adws.insight import simulate, workload

    config = _load_config(config_path(args.config))
    if not 1 <= args.days <= simulate.MAX_DAYS:
        raise UsageError(f"--days: expected 1 to {simulate.MAX_DAYS} (a year), got {args.days}")
    if sum(x is not None for x in (args.tasks_from_audit, args.issues)) > 1:
        raise UsageError("give one task source: --tasks-from-audit or --issues")
    tasks_from = "--tasks-from-audit" if args.tasks_from_audit else "--issues" if args.issues else None
    spec = workload.load_workload(args.workload, tasks_from=tasks_from) if args.workload else workload.Workload()
    given = parse_at(args.start, "UTC", "--start")
    start = given or simulate.default_start()
    rng = random.Random(args.seed)
    if args.tasks_from_audit:
        tasks = workload.from_audit(args.tasks_from_audit, spec, rng, given, args.days)
        start = tasks[0].at if tasks else start
    elif args.issues:
        tasks = workload.from_issues(args.issues, spec, rng, start)
    else:
        expected = spec.tasks_per_day * args.days  # checked before generating: generating is the slow part too
        if expected > simulate.MAX_TASKS:
            raise UsageError(f"the workload gives about {expected:,.0f} tasks (tasks_per_day {spec.tasks_per_day:g} x "
                             f"{args.days} days); one run simulates at most {simulate.MAX_TASKS:,}: lower --days or "
                             "tasks_per_day")
        tasks = workload.generate(spec, start, args.days, rng)
    if len(tasks) > simulate.MAX_TASKS:
        raise UsageError(f"{len(tasks):,} tasks to simulate; one run simulates at most {simulate.MAX_TASKS:,}: "
                         "lower --days or use a shorter task source")
    result = simulate.simulate(config, tasks, workload=spec, start=start, days=args.days, seed=args.seed,
                               audit_path=args.audit_out)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(simulate.render(result))
    return 0


def cmd_lint(args: argparse.Namespace) -> int:
    from adws.insight import lint

    if args.typical_tokens <= 0:
        raise UsageError(f"--typical-tokens: expected a positive number of tokens, got {args.typical_tokens}")
    config = _load_config(config_path(args.config))
    findings = lint.lint(config, typical_tokens=args.typical_tokens)
    if args.json:
        _print_json(lint.to_dict(config, findings))
    else:
        print(lint.render(config, findings))
    return 1 if any(f.level == "error" for f in findings) else 0


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import UTC

    from adws.insight import report
    from adws.insight.records import parse_since

    config = None
    if args.audit is None or args.config is not None or os.environ.get("ADWS_CONFIG") is not None \
            or os.path.exists(DEFAULT_CONFIG):
        config = _load_config(config_path(args.config))  # a config named, needed, or there: it is read
    else:  # as `adws stats --audit FILE`: the log alone gives every plot but the quotas
        print(f"adws: no {DEFAULT_CONFIG} here and no --config: the page has no quota plots (quotas are declared "
              "in the config)", file=sys.stderr)
    audit = _audit_path(args, config.audit_path if config is not None else None)
    page = report.build_html(config, audit, since=parse_since(args.since, datetime.now(UTC)))
    try:
        report.write(args.html, page)
    except OSError as exc:
        raise UsageError(f"cannot write {args.html}: {exc.strerror or exc}") from None
    info = report.summary(page)
    from adws.errors import count

    print(f"{args.html}: {count(info['plots'], 'plot')}, {info['bytes']:,} bytes")
    return 0


CONFIG_HELP = "config file (default: $ADWS_CONFIG or ./config.toml)"


def _add_config_argument(p: argparse.ArgumentParser) -> None:
    """CONFIG as an argument or as --config (`check`, `lint`): both listed by --help."""
    p.add_argument("config", nargs="?", help=CONFIG_HELP)
    p.add_argument("--config", dest="config_opt", metavar="CONFIG", help="the same as the CONFIG argument")


def _add_check(p: argparse.ArgumentParser) -> None:
    _add_config_argument(p)
    p.add_argument("--at", help="time of the config's scenarios that give no `at`, ISO 8601 (default: now)")
    p.set_defaults(func=cmd_check)


def _add_route_or_run(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--task-json", help="the task as JSON, @FILE, or - for stdin")
    p.add_argument("--github-issue", help="a file with `gh issue view N --json number,title,body,labels`")
    p.add_argument("--at", help="routing time, ISO 8601 (default: now)" if name == "route" else
                   "decide as at this time, ISO 8601; the run and what it records use the real clock (default: now)")
    p.add_argument("--prompt-file", help="the prompt (- for stdin)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_route if name == "route" else cmd_run)
    if name == "route":
        p.add_argument("--explain", action="store_true", help="show every rule and why it did or did not match")
        p.add_argument("--assume-available", action="store_true",
                       help="judge the rules only: every provider installed, every quota fresh")
    else:
        p.add_argument("--workdir", default=".", help="the agent's working directory (default: .)")
        p.add_argument("--quiet", action="store_true", help="do not print each attempt as it starts and ends")
        p.add_argument("--wait", nargs="?", const="", metavar="MAX", help=WAIT_HELP)


def _add_run_many(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--tasks", required=True,
                   help='JSON Lines of {"task", "prompt" | "prompt_file", "workdir"}, or a JSON array of tasks '
                        "(gh issue list --json ...) with --prompt-template; - for stdin")
    p.add_argument("--prompt-template", help="a Jinja template over `task` giving each task's prompt")
    p.add_argument("--concurrency", type=int, default=4, help="tasks running at once (default: 4)")
    p.add_argument("--workdir", default=".", help="working directory of items that name none (default: .)")
    p.add_argument("--json", action="store_true", help="one JSON line per task, as it finishes")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--wait", nargs="?", const="", metavar="MAX", help=WAIT_HELP)
    p.set_defaults(func=cmd_run_many)


def _add_providers_or_quota(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_providers if name == "providers" else cmd_quota)
    p.add_argument("--at", help="as of this time, ISO 8601 (default: now)")
    if name == "quota":
        p.add_argument("--sync", action="store_true",
                       help="run each declared usage_command first and record what it observed")


def _add_state(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("export", "import", "compact"))
    p.add_argument("file", nargs="?", help="export: write here, import: read this (default or -: stdout/stdin); "
                                           "compact takes none")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--margin", help='compact: keep raw rows this long beyond the longest quota period (default "7d")')
    p.add_argument("--at", help="export, compact: as of this time, ISO 8601 (default: now)")
    p.set_defaults(func=cmd_state)


def _add_stats(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--audit", help="audit log (default: the config's [audit] path)")
    p.add_argument("--since", help="a span back from now (7d, 12h) or an ISO 8601 time")
    p.add_argument("--by", help="group by provider,account,rule,model,day (default: provider)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--format", choices=("table", "prometheus"), default="table",
                   help="prometheus: text exposition for node_exporter's textfile collector")
    p.set_defaults(func=cmd_stats)


def _add_replay(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audit", required=True, help="audit log to replay")
    p.add_argument("--config", required=True, help="the candidate config")
    p.add_argument("--baseline", help="compare against this config judged the same way (default: what was recorded)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--fail-on-change", action="store_true", help="exit 1 when any task would move")
    p.set_defaults(func=cmd_replay)


def _add_simulate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workload", help="workload file (TOML; see README)")
    p.add_argument("--tasks-from-audit", help="use the tasks of this audit log, at their recorded times")
    p.add_argument("--issues", help="an open-issue queue: `gh issue list --json number,title,body,labels` output")
    p.add_argument("--start", help="simulated start, ISO 8601 (default: this week's Monday 00:00 UTC)")
    p.add_argument("--audit-out", help="write the simulated audit log here (for stats and report)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_simulate)


def _add_lint(p: argparse.ArgumentParser) -> None:
    _add_config_argument(p)
    p.add_argument("--typical-tokens", type=int, default=20000, help="tokens of a typical task (default 20000)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lint)


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--html", required=True, help="output file")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--audit", help="audit log (default: the config's [audit] path)")
    p.add_argument("--since", help="a span back from now (7d) or an ISO 8601 time")
    p.set_defaults(func=cmd_report)


def _add_schema(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=cmd_schema)


# Every subcommand in the order `adws --help` lists them: name -> (help, adds its arguments). One registry, so
# `_parser` can build just the parser of the command being run.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "check": ("Validate a config file; list every problem with its place.", _add_check),
    "route": ("Decide where a task would run (no side effects).", lambda p: _add_route_or_run(p, "route")),
    "run": ("Run a task with fall-through down the chain.", lambda p: _add_route_or_run(p, "run")),
    "run-many": ("Run many tasks at once, each with fall-through; one result per task.", _add_run_many),
    "providers": ("Each provider's status and why.", lambda p: _add_providers_or_quota(p, "providers")),
    "quota": ("Usage per provider and account, and time to reset.", lambda p: _add_providers_or_quota(p, "quota")),
    "state": ("Move state between stores (JSON Lines) or roll old usage up into hourly totals.", _add_state),
    "stats": ("Dispatch statistics from the audit log.", _add_stats),
    "replay": ("Route an audit log's tasks again under a candidate config; show what moves.", _add_replay),
    "simulate": ("Run the real engine with simulated agents over days of work.", _add_simulate),
    "lint": ("Find rules that never fire, overlaps, unreachable tiers and tight quotas.", _add_lint),
    "report": ("Write a self-contained HTML page of plots from the audit log.", _add_report),
    "schema": ("Print a JSON Schema of config.toml (for editors).", _add_schema),
}


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser. When `argv` starts with a subcommand's name, only that subcommand's parser is
    built (about a dozen parsers and a hundred arguments less at every start-up); what is parsed and printed
    is the same, because every other path (top-level options, no command, an unknown one) builds them all."""
    import argparse

    parser = argparse.ArgumentParser(prog="adws", description="Route coding-agent tasks and run them.")
    from adws import __version__

    parser.add_argument("--version", action="version", version=f"adws {__version__}")
    only = argv[0] if argv and argv[0] in COMMANDS else None
    if only is None:
        sub = parser.add_subparsers(dest="command", required=True)
    else:
        # The usage line names every command, as argparse would write them: an error after the command
        # (`adws route --bogus`) prints the top-level usage.
        sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (help_text, add_arguments) in COMMANDS.items():
        if only is None or name == only:
            add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


# `adws route`'s options: flag -> (attribute, takes a value). What _add_route_or_run declares for "route".
_ROUTE_OPTIONS = {"--config": ("config", True), "--task-json": ("task_json", True),
                  "--github-issue": ("github_issue", True), "--at": ("at", True),
                  "--prompt-file": ("prompt_file", True), "--json": ("json", False), "--explain": ("explain", False),
                  "--assume-available": ("assume_available", False)}


def _route_args(argv: Sequence[str]) -> argparse.Namespace | None:
    """`adws route ...` parsed without argparse (building its parsers is a tenth of a routing process), for the
    plain forms only: every option spelled in full, once, as `--opt VALUE` or `--opt=VALUE`, no value starting
    with "-" but "-" itself. Anything else (help, abbreviations, mistakes) gives None: argparse parses it, and
    says what is wrong. What is parsed is what argparse gives (tests/test_cli.py compares them)."""
    if not argv or argv[0] != "route":
        return None
    values: dict[str, Any] = {"command": "route", "func": cmd_route}
    values.update((dest, None if takes else False) for dest, takes in _ROUTE_OPTIONS.values())
    seen = set()
    tokens = iter(argv[1:])
    for token in tokens:
        flag, equals, inline = token.partition("=")
        option = _ROUTE_OPTIONS.get(flag)
        if option is None or flag in seen:
            return None
        seen.add(flag)
        dest, takes = option
        if not takes:
            if equals:
                return None
            values[dest] = True
            continue
        value = inline if equals else next(tokens, None)
        if value is None or (value.startswith("-") and value != "-"):
            return None
        values[dest] = value
    return cast("argparse.Namespace", SimpleNamespace(**values))


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    """`argv` parsed by argparse (SystemExit for --help and bad usage, as argparse does). `adws state`'s FILE may
    come after its options (`state export --config c.toml FILE`), as the README's table writes every command:
    argparse fills an optional positional at its first chance, before the options, and would refuse it later."""
    parser = _parser(argv)
    if not argv or argv[0] != "state":
        return parser.parse_args(argv)
    args, extra = parser.parse_known_args(argv)
    if len(extra) == 1 and args.file is None and (extra[0] == "-" or not extra[0].startswith("-")):
        args.file = extra[0]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _one_config(args: argparse.Namespace) -> None:
    """`--config` into `args.config` for the commands that take CONFIG as an argument too (`check`, `lint`).
    Raises UsageError when both are given: which one was meant is not for adws to guess."""
    given = getattr(args, "config_opt", None)
    if given is None:
        return
    if args.config is not None:
        raise UsageError(f"give the config once: as the CONFIG argument ({args.config}) or as --config ({given}), "
                         "not both")
    args.config = given


# Set in the environment of a maintainer tool run again under the checkout's virtualenv: it is not run a third time.
TOOL_VENV_ENV = "ADWS_TOOL_VENV"


def tool_main(body: Callable[[], int]) -> int:
    """Run a maintainer tool's `body` (tools/show-routing.py, tools/show-providers.py) and return its exit code. One
    of adws's dependencies not installed for this Python (`tools/show-routing.py` run by its `python3` shebang, the
    virtualenv not activated): the tool runs again under the checkout's virtualenv, `.venv` beside `adws/`, as the
    README's set-up makes it, when there is one and this is not it; else one line and exit 2, as in `adws`
    itself. (The tools fail on importing a dependency before they print anything, so running again repeats
    nothing.)"""
    try:
        return body()
    except ImportError as exc:
        line = missing_dependency(exc)
        if line is None:
            raise
        venv = checkout_venv()
        if venv is not None:
            os.environ[TOOL_VENV_ENV] = "1"
            os.execv(venv, [venv, sys.argv[0], *sys.argv[1:]])
        print(f"{os.path.basename(sys.argv[0])}: {line}", file=sys.stderr)
        return 2


def checkout_venv(root: str | None = None) -> str | None:
    """The Python of the virtualenv `.venv` in the checkout adws runs from (`root`; default: the directory above
    the adws package), when it exists, this process is not running in it and is not itself such a second run."""
    from pathlib import Path

    python = Path(root if root is not None else Path(__file__).resolve().parent.parent) / ".venv" / "bin" / "python"
    if os.environ.get(TOOL_VENV_ENV) or not os.access(python, os.X_OK):
        return None
    if Path(sys.prefix).resolve() == python.parent.parent.resolve():  # its own Python (a symlink to the base one)
        return None
    return str(python)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `adws` command `argv` (None: the process's own arguments, and the process is adws's from then on);
    returns the exit code (see the module doc). Standard output that fails (a closed pipe, a full disk, a file
    size limit) ends the command with EXIT_OUTPUT and one line on stderr (none when the reader of a pipe left and
    no run's result was lost), whatever it had done (a run stays recorded); standard error that fails is given
    up silently. SystemExit from argparse (--help, bad usage) goes
    through after its output is flushed."""
    if argv is None:
        global _OWN_PROCESS
        _OWN_PROCESS = True
        argv = sys.argv[1:]
    # Text adws did not make (task ids, agents' errors) may hold what the terminal's encoding cannot show.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    streams = sys.stdout, sys.stderr
    # Everything printed, on either stream and by every command, is cleaned of the secrets adws knows: those of
    # the environment now, those of a config's key variables once it is loaded (`_learn_secrets`).
    scrub = _output_scrubber()
    out, err = _Guarded(sys.stdout, fatal=True, scrub=scrub), _Guarded(sys.stderr, fatal=False, scrub=scrub)
    sys.stdout, sys.stderr = cast("Any", out), cast("Any", err)
    _GUARDS[:] = [out, err]
    leaving: SystemExit | None = None
    try:
        try:
            code = _command(argv)
        except SystemExit as exc:  # --help, --version, a usage error: argparse has printed what it had to say
            leaving, code = exc, 0
        out.flush()  # here, not at the interpreter's exit: a failure is still ours to report
    except OutputError as exc:
        out.failure = out.failure or exc.cause
        ran = argv[0] in ("run", "run-many") if argv else False
        # A reader that left (`adws route --json | head -1`) chose to; a run's result it never got is worth a line.
        if ran or not isinstance(exc.cause, BrokenPipeError):
            print(f"adws: {exc}{'; what ran is recorded (audit log, run directory)' if ran else ''}",
                  file=sys.stderr)
        return EXIT_OUTPUT
    finally:
        sys.stdout, sys.stderr = streams
        _GUARDS.clear()
        if _OWN_PROCESS:
            for guarded, fd in ((out, 1), (err, 2)):
                if guarded.failure is not None:
                    _silence(guarded, fd)
    if leaving is not None:
        raise leaving
    return code


def _command(argv: Sequence[str]) -> int:
    """`main` once its standard streams are guarded: parse `argv`, run the command, turn adws's errors into one
    line on stderr and an exit code."""
    args = _route_args(argv) or _parse(argv)
    from adws.config import skip_pydantic_plugin_scan

    skip_pydantic_plugin_scan()  # the config is validated (if at all) before any thread or agent starts
    restore = None
    if args.command in ("run", "run-many") or (args.command == "quota" and args.sync):  # quota: usage commands
        # SIGTERM/SIGHUP/Ctrl-C unwind once, never mid-record: the runner ends the agent's processes, the
        # attempt is recorded, slots are released and the audit log written (see adws.interrupts).
        from adws import interrupts

        restore = interrupts.install()
    try:
        _one_config(args)
        return int(args.func(args))
    except ConfigError as exc:
        print(exc.render() + _where_configs_come_from(exc, getattr(args, "config", None)), file=sys.stderr)
        return 2
    except AdwsError as exc:  # TaskError, UsageError, StateStoreError, ...: one line, no traceback
        print(f"adws: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"adws: interrupted{f' by {exc}' if str(exc) else ''}; the agent's processes were stopped",
              file=sys.stderr)
        return 130
    except ImportError as exc:  # one of adws's own dependencies is not installed for this Python: one line
        line = missing_dependency(exc)
        if line is None:
            raise
        print(f"adws: {line}", file=sys.stderr)
        return 2
    finally:
        if restore is not None:
            restore()


if __name__ == "__main__":
    sys.exit(main())
