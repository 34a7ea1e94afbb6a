"""Moving state between backends (`adws state export` / `import`) and keeping it bounded (`adws state compact`).

Export format: JSON Lines, one object per line, the first a header:
  {"kind": "adws-state", "version": 1, "exported_at": ISO 8601}
  {"kind": "usage", "provider", "account", "at": ISO 8601, "requests", "input_tokens", "output_tokens",
   "cost_usd", "estimated", "model", "task_id"}
  {"kind": "cooldown", "provider", "account", "until": ISO 8601, "reason"}     (only those still running)
  {"kind": "cursor", "key", "value"}
  {"kind": "sticky", "key", "value"}
  {"kind": "breaker", "provider", "state", "failures", "opened_at": ISO 8601 | null}
  {"kind": "observation", "provider", "subject", "at": ISO 8601, "percent", "source", "used", "limit",
   "reset_at": ISO 8601 | null}                                                  (the latest per quota subject)
  {"kind": "run", "provider", "specialization", "at": ISO 8601, "tokens"}      (every run the store keeps)
Observations are what an agent CLI or a usage command said about an account's real quota (e.g. exhausted until
its reset); runs are what `need = { learned_runs = N }` takes its median over. Concurrency slots and their
leases (`max_concurrency`, the reservation lock) and token reservations are not exported: they belong to runs
in flight on the old host (stop its coordinators first) and expire on their own. The format is the same version
1 as before observations and runs were added: an older file imports unchanged, it only carries neither (an
older adws refuses a newer file at its first observation or run line: unknown kind).

Import checks every line first (whole numbers from 0 to MAX_COUNT, text UTF-8 can encode, times with a timezone
that a store can keep and, for when something happened, no later than the export plus FUTURE_TOLERANCE, a cooldown
ending no later than MAX_COOLDOWN after the export, providers
the config has: see `import_lines`) and lists every bad line, so a bad file changes nothing; then usage rows and
runs the store does not hold yet are appended (a row already there, same account, time to the microsecond and
figures, is skipped, and so is a run of the same provider, specialization, time and tokens: importing the same
file twice changes nothing; rows rolled up by `compact` since the export no longer match and would be added
again), cursors only move forward, an observation replaces the store's only if it is not older, the rest is
overwritten. Every store caps runs (the newest RUNS_KEPT per provider and specialization): it keeps only the
newest of the old and imported runs, and the summary counts both the file's runs it did not keep and its own
runs the newer imported ones pushed out.

Retention: usage rows older than the oldest start of any quota period in effect now, minus a margin
(default RETENTION_MARGIN), are rolled up into one row per account and UTC hour (`StateStore.roll_up`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from adws.attempt import Usage
from adws.errors import AdwsError, UsageError, suggest
from adws.state.base import (
    BREAKER_STATES,
    EARLIEST,
    FUTURE_TOLERANCE,
    LATEST,
    MAX_COUNT,
    BreakerState,
    Cooldown,
    Observation,
    RunRecord,
    StateStore,
    UsageRecord,
)

if TYPE_CHECKING:
    from adws.compiled import CompiledConfig
    from adws.engine import Engine

_T = TypeVar("_T")

FORMAT_VERSION = 1
RETENTION_MARGIN = timedelta(days=7)  # kept raw beyond the longest quota period: late reports, audits
# The largest count, token figure, cursor or sum of money one line may hold (adws.state.base.MAX_COUNT): far beyond
# any real attempt (a run of a trillion tokens), and far below what a store reads back of one row (base.MAX_STORED).
# Totals are sums of checked rows and never damage (base.MAX_STORED says how each store sums them). 2**63 - 1, what
# SQLite alone accepted before, let two lines overflow. The config's own request and money quotas stop at 10**12 too.
# The longest cooldown a line may carry, from the file's exported_at (else now): a yearly quota reset plus a month.
# A running cooldown the store learned from an agent CLI ends at its announced reset, within its quota's period; one
# ending later in a file (`until` 2999) would bench an account for centuries, where moving a host meant to carry it.
# Exactly LATEST passes: a store keeps an announced reset beyond it as LATEST, and its export must import again.
MAX_COOLDOWN = timedelta(days=400)
SHOWN_CHARS = 60  # of a bad value in a message: a hostile line may hold a megabyte in one field


class StateImportError(AdwsError):
    """A line of an export file that cannot be imported (its number and what is wrong)."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def export_lines(store: StateStore, now: datetime, counts: dict[str, int] | None = None) -> Iterator[str]:
    """The store's state as JSON Lines (without newlines), header first. `now` picks the running cooldowns. With
    `counts`, each line but the header adds one to its kind's count there, as it is made."""
    def line(obj: dict[str, Any]) -> str:
        if counts is not None and obj["kind"] in counts:
            counts[obj["kind"]] += 1
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    yield line({"kind": "adws-state", "version": FORMAT_VERSION, "exported_at": now.isoformat()})
    for r in store.usage_records():
        u = r.usage
        yield line({"kind": "usage", "provider": r.provider, "account": r.account, "at": r.at.isoformat(),
                    "requests": u.requests, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                    "cost_usd": u.cost_usd, "estimated": u.estimated, "model": r.model, "task_id": r.task_id})
    for (provider, account), c in sorted(store.cooldowns(now).items()):
        yield line({"kind": "cooldown", "provider": provider, "account": account, "until": c.until.isoformat(),
                    "reason": c.reason})
    for key, value in sorted(store.cursors().items()):
        yield line({"kind": "cursor", "key": key, "value": value})
    for key, choice in sorted(store.sticky_choices().items()):
        yield line({"kind": "sticky", "key": key, "value": choice})
    for provider, b in sorted(store.breakers().items()):
        yield line({"kind": "breaker", "provider": provider, "state": b.state, "failures": b.failures,
                    "opened_at": _iso(b.opened_at)})
    for (provider, subject), o in sorted(store.observations().items()):
        yield line({"kind": "observation", "provider": provider, "subject": subject, "at": o.at.isoformat(),
                    "percent": o.percent, "source": o.source, "used": o.used, "limit": o.limit,
                    "reset_at": _iso(o.reset_at)})
    for run in store.recorded_runs():
        yield line({"kind": "run", "provider": run.provider, "specialization": run.specialization,
                    "at": run.at.isoformat(), "tokens": run.tokens})


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


class _Latest(NamedTuple):
    """The latest time a line may say something happened (a usage row, an observation, a run, a breaker opening),
    plus FUTURE_TOLERANCE: the file's exported_at, else the import's own time. `what` names it."""

    at: datetime
    what: str


def _when(obj: dict[str, Any], name: str, latest: _Latest | None = None) -> datetime:
    """An ISO 8601 time with a timezone, from EARLIEST to LATEST (what a store keeps: the year 9999 in one zone
    is the year 10000 in UTC, which a store could not read back), and with `latest` no later than it plus
    FUTURE_TOLERANCE (a reading from the future would keep the store from taking newer ones until then)."""
    raw = obj[name]
    try:
        value = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if value is None:
        raise ValueError(f"{name}: expected an ISO 8601 time, got {_shown(raw)}")
    if value.tzinfo is None:
        raise ValueError(f"{name} {raw!r} has no timezone")
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"{name}: {_shown(raw)} is outside the times a store keeps ({EARLIEST.isoformat()} to "
                         f"{LATEST.isoformat()})")
    if latest is not None and value > latest.at + FUTURE_TOLERANCE:
        raise ValueError(f"{name}: {_shown(raw)} is later than {latest.what} ({latest.at.isoformat()}) by more than "
                         f"{FUTURE_TOLERANCE.total_seconds() / 60:g} minutes: written by a host whose clock was "
                         "ahead? (correct or drop the line)")
    return value


def _count(obj: dict[str, Any], name: str) -> int:
    """A whole number from 0 to MAX_COUNT (tokens, requests, failures, a cursor): a negative one would lower
    quota totals, a huge one overflow them."""
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a whole number >= 0, got {_shown(value)}")
    if value > MAX_COUNT:
        raise ValueError(f"{name}: {_shown(value)} is too large (at most {MAX_COUNT:,})")
    return value


def _amount(obj: dict[str, Any], name: str, *, above_zero: bool = False, at_most: float = math.inf) -> float:
    """A finite number >= 0 (> 0 with `above_zero`), at most `at_most`: money, a percent used, an observed quota."""
    value = obj[name]
    try:  # a bool is not a number here; an int beyond any float (1e400 written out) raises OverflowError
        number = float(value) if isinstance(value, float) or type(value) is int else math.nan
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number < 0 or (above_zero and number == 0):
        raise ValueError(f"{name}: expected a number {'> 0' if above_zero else '>= 0'}, got {_shown(value)}")
    if number > at_most:
        raise ValueError(f"{name}: {_shown(value)} is too large (at most {at_most:,.0f})")
    return number


def _optional(read: Callable[[dict[str, Any], str], _T], obj: dict[str, Any], name: str) -> _T | None:
    """`read(obj, name)`, or None where the field is null or absent."""
    return None if obj.get(name) is None else read(obj, name)


def _text(value: str, name: str) -> str:
    """`value` unless it holds what UTF-8 cannot encode (a lone surrogate: JSON's "\\ud800"), which neither SQLite
    nor Redis can store: found here, not halfway through the import."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name}: {_shown(value)} is not valid text (it holds a lone surrogate)") from None
    return value


def _optional_text(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name}: expected a string or null, got {_shown(value)}")
    return None if value is None else _text(value, name)


def _name(obj: dict[str, Any], name: str) -> str:
    value = obj[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: expected a non-empty string, got {_shown(value)}")
    return _text(value, name)


def _flag(obj: dict[str, Any], name: str) -> bool:
    value = obj[name]
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {_shown(value)}")
    return value


def _usage(obj: dict[str, Any], latest: _Latest | None) -> UsageRecord:
    usage = Usage(requests=_count(obj, "requests"), input_tokens=_count(obj, "input_tokens"),
                  output_tokens=_count(obj, "output_tokens"), cost_usd=_amount(obj, "cost_usd", at_most=MAX_COUNT),
                  estimated=_flag(obj, "estimated"))
    return UsageRecord(_name(obj, "provider"), _name(obj, "account"), _when(obj, "at", latest), usage,
                       _optional_text(obj, "model"), _optional_text(obj, "task_id"))


def _run(obj: dict[str, Any], latest: _Latest | None) -> RunRecord:
    return RunRecord(_name(obj, "provider"), _name(obj, "specialization"), _when(obj, "at", latest),
                     _count(obj, "tokens"))


def _breaker(obj: dict[str, Any], latest: _Latest | None) -> BreakerState:
    state = obj["state"]
    if state not in BREAKER_STATES:
        raise ValueError(f"state: expected one of {', '.join(BREAKER_STATES)}, got {_shown(state)}")
    return BreakerState(state=state, failures=_count(obj, "failures"),
                        opened_at=_optional(lambda o, n: _when(o, n, latest), obj, "opened_at"))


# What a checked line of each kind but usage and runs (appended in bulk) does to a store: True where it was kept.
Action = Callable[[StateStore], bool]


def _applied(effect: Callable[[StateStore], object]) -> Action:
    """The action of a line that always takes effect (overwrites, or moves a cursor forward if it is behind)."""
    def apply(store: StateStore) -> bool:
        effect(store)
        return True

    return apply


def _cooldown(obj: dict[str, Any], latest: _Latest | None) -> Action:
    cooldown = Cooldown(_when(obj, "until"), _name(obj, "reason"))  # an end: later than the export, of course
    # A tier benched for centuries; LATEST itself is what a store keeps for a reset announced beyond it (`never`):
    # what an export of such a store wrote imports again.
    if latest is not None and latest.at + MAX_COOLDOWN < cooldown.until < LATEST:
        raise ValueError(f"until: {_shown(obj['until'])} is more than {MAX_COOLDOWN.days} days after {latest.what} "
                         f"({latest.at.isoformat()}): no limit adws learns runs that long (correct or drop the line)")
    provider, account = _name(obj, "provider"), _name(obj, "account")
    return _applied(lambda store: store.set_cooldown(provider, account, cooldown))


def _cursor(obj: dict[str, Any], latest: _Latest | None) -> Action:
    key, value = _name(obj, "key"), _count(obj, "value")
    return _applied(lambda store: store.advance_cursor(key, value))


def _sticky(obj: dict[str, Any], latest: _Latest | None) -> Action:
    key, value = _name(obj, "key"), _name(obj, "value")
    return _applied(lambda store: store.set_sticky(key, value))


def _breaker_update(obj: dict[str, Any], latest: _Latest | None) -> Action:
    provider, new = _name(obj, "provider"), _breaker(obj, latest)
    return _applied(lambda store: store.update_breaker(provider, lambda _: new))


def _observation(obj: dict[str, Any], latest: _Latest | None) -> Action:
    observation = Observation(
        _name(obj, "provider"), _name(obj, "subject"), _when(obj, "at", latest), _amount(obj, "percent"),
        _name(obj, "source"), _optional(_amount, obj, "used"),
        _optional(lambda o, n: _amount(o, n, above_zero=True), obj, "limit"),  # a usage command's limit is > 0 too
        _optional(_when, obj, "reset_at"))
    return lambda store: store.record_observation(observation)  # False: the store's own reading is newer


# Each kind but usage and runs: read and check a line (against the latest time a line may be), return its action.
_KINDS: dict[str, Callable[[dict[str, Any], _Latest | None], Action]] = {
    "cooldown": _cooldown, "cursor": _cursor, "sticky": _sticky, "breaker": _breaker_update,
    "observation": _observation,
}
KINDS = ("usage", *_KINDS, "run")
# The kinds whose lines name a provider that must be the config's (cursor and sticky keys name none).
PROVIDER_KINDS = ("usage", "cooldown", "breaker", "observation", "run")
MAX_LISTED = 50  # bad lines named one by one; past that, how many more


def _fingerprint(r: UsageRecord) -> tuple[Any, ...]:
    """What makes two usage rows the same row: everything, the time to the microsecond (stores keep epoch
    seconds as a float, which rounds back to the same microsecond)."""
    u = r.usage
    return (r.provider, r.account, round(r.at.timestamp() * 1_000_000), u.requests, u.input_tokens,
            u.output_tokens, round(u.cost_usd, 9), u.estimated, r.model, r.task_id)


def _run_fingerprint(r: RunRecord) -> tuple[Any, ...]:
    """What makes two runs the same run: everything, the time to the microsecond (as `_fingerprint`)."""
    return (r.provider, r.specialization, round(r.at.timestamp() * 1_000_000), r.tokens)


def _not_held(rows: list[_T], held: Iterable[_T], fingerprint: Callable[[_T], Hashable]) -> list[_T]:
    """The rows of `rows` not among `held`, counted as a multiset of fingerprints: importing a file twice adds
    nothing the second time, while two identical rows in one file (two attempts in one microsecond) stay two."""
    present = Counter(fingerprint(r) for r in held)
    fresh = []
    for r in rows:
        key = fingerprint(r)
        if present[key] > 0:
            present[key] -= 1
        else:
            fresh.append(r)
    return fresh


def _new_usage(store: StateStore, usage: list[UsageRecord]) -> list[UsageRecord]:
    """The rows of `usage` the store does not hold yet (`_not_held`). Reads the store's rows of the file's
    accounts and time span once."""
    if not usage:
        return []
    accounts = {(r.provider, r.account) for r in usage}
    slack = timedelta(milliseconds=1)  # a store's float epoch may round a time by a microsecond
    first, last = min(r.at for r in usage) - slack, max(r.at for r in usage) + slack
    held = (r for r in store.usage_records() if (r.provider, r.account) in accounts and first <= r.at <= last)
    return _not_held(usage, held, _fingerprint)


def _new_runs(store: StateStore, runs: list[RunRecord]) -> list[RunRecord]:
    """The runs of `runs` the store does not hold yet (`_not_held`). Reads the store's runs once."""
    if not runs:
        return []
    groups = {(r.provider, r.specialization) for r in runs}
    held = (r for r in store.recorded_runs() if (r.provider, r.specialization) in groups)
    return _not_held(runs, held, _run_fingerprint)


def _check_header(obj: dict[str, Any]) -> None:
    """ValueError unless `obj` is an export's header of FORMAT_VERSION (`"version": true` is not 1)."""
    found = obj.get("kind"), obj.get("version")
    if found != ("adws-state", FORMAT_VERSION) or type(found[1]) is not int:
        raise ValueError(f'expected the header {{"kind": "adws-state", "version": {FORMAT_VERSION}}} '
                         "(a file written by adws state export)")


def _latest(header: dict[str, Any], now: datetime | None) -> _Latest | None:
    """The latest time the lines after `header` may hold (`_Latest`): the file's exported_at (itself no later than
    `now`), else `now`, else none (a file without exported_at, imported from Python without a time)."""
    latest = None if now is None else _Latest(now, "now")
    if header.get("exported_at") is None:
        return latest
    return _Latest(_when(header, "exported_at", latest), "the file's exported_at")


def import_lines(store: StateStore, lines: Iterable[str], source: str,
                 providers: Collection[str] | None = None, now: datetime | None = None) -> dict[str, int]:
    """Apply an export to `store`; returns per kind of KINDS how many lines were applied (usage and run: how
    many were added; observation: how many the store kept, under "older observation" how many it did not, its own
    reading being newer), under "skipped usage" and "skipped run" how many the store already held (not appended
    again: importing the same file twice changes nothing), under "dropped run" how many runs the store did not
    keep and under "displaced run" how many of its own runs the import pushed out (a backend that caps them keeps
    only the newest).

    Every line is read and checked before anything is written, so a bad file changes nothing: counts and
    tokens must be whole numbers from 0 to MAX_COUNT, money from 0 to MAX_COUNT, percents and observed figures
    numbers >= 0 (an observed limit > 0), names non-empty strings that UTF-8 can encode, times ISO 8601 with a
    timezone from EARLIEST to LATEST, a cooldown's end no later than MAX_COOLDOWN after the header's exported_at
    (else `now`; exactly LATEST, a reset beyond what a store keeps, passes), and the times something happened
    (usage, observation and run `at`, a breaker's `opened_at`) no later than the header's exported_at (else `now`)
    plus FUTURE_TOLERANCE; the header's exported_at no later than `now` plus FUTURE_TOLERANCE. With `providers`
    (the config's) a line of PROVIDER_KINDS naming any other provider is an error too (it would apply to nothing:
    add the provider to the config or drop those lines). Raises StateImportError listing every bad line as
    `source:LINE: what` (the first MAX_LISTED, then how many more).
    """
    usage: list[UsageRecord] = []
    runs: list[RunRecord] = []
    actions: list[tuple[str, Action]] = []
    counts = dict.fromkeys(KINDS, 0)
    problems: list[str] = []
    header = False
    latest = None if now is None else _Latest(now, "now")
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
            kind = obj.get("kind")
            if not header:
                _check_header(obj)
                header = True  # a bad exported_at is one more bad line: the rest is checked against `now`
                latest = _latest(obj, now)
                continue
            if kind == "usage":
                record = _usage(obj, latest)
            elif kind == "run":
                run = _run(obj, latest)
            elif isinstance(kind, str) and kind in _KINDS:  # a list as kind: unknown, not "unhashable type"
                action = _KINDS[kind](obj, latest)
            else:
                raise ValueError(f"unknown kind {_shown(kind)}; known: {', '.join(KINDS)}")
            provider = obj.get("provider")
            if providers is not None and kind in PROVIDER_KINDS and provider not in providers:
                raise ValueError(f'unknown provider "{provider}"{suggest(str(provider), providers)}; the config\'s '
                                 f"providers: {', '.join(providers)} (add it to the config, or drop its lines)")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            if isinstance(exc, json.JSONDecodeError):
                what = f"not JSON ({exc.msg} at column {exc.colno})"
            elif isinstance(exc, RecursionError):  # as route, run-many, stats, replay and report say of such input
                what = "nested too deeply"
            else:
                what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            problems.append(f"{source}:{number}: {what}")
            if not header:  # not an export at all: the other lines say nothing more
                break
            continue
        if kind == "usage":
            usage.append(record)
        elif kind == "run":
            runs.append(run)
        else:
            actions.append((kind, action))
    if problems:
        listed = problems[:MAX_LISTED]
        if len(problems) > MAX_LISTED:
            listed.append(f"... and {len(problems) - MAX_LISTED} more bad lines")
        if len(problems) > 1:
            listed.insert(0, f"{source}: {len(problems)} bad lines, nothing imported:")
        raise StateImportError("\n".join(listed))
    if not header:
        raise StateImportError(f"{source}: empty, not a file written by adws state export")
    fresh = _new_usage(store, usage)
    store.import_usage(fresh)
    new_runs = _new_runs(store, runs)
    kept = store.import_runs(new_runs)
    older = 0
    for kind, action in actions:
        if action(store):
            counts[kind] += 1
        else:
            older += 1
    counts["older observation"] = older
    counts["usage"], counts["skipped usage"] = len(fresh), len(usage) - len(fresh)
    counts["run"], counts["skipped run"] = kept.kept, len(runs) - len(new_runs)
    counts["dropped run"], counts["displaced run"] = len(new_runs) - kept.kept, kept.displaced
    return counts


def retention_cutoff(period_starts: Iterable[datetime], now: datetime,
                     margin: timedelta = RETENTION_MARGIN) -> datetime:
    """Usage before this time may be rolled up: the oldest quota period start in effect at `now` (`now`
    itself without quotas) minus `margin`."""
    return min([now, *period_starts]) - margin


def quota_period_starts(config: CompiledConfig, now: datetime) -> list[datetime]:
    """Where every quota period declared in `config` (providers', accounts' and their pools') starts at `now`."""
    from adws.accounts import build_period

    quotas = [p.quota for p in config.providers.values()]
    quotas += [a.quota for p in config.providers.values() for a in p.accounts]
    quotas += [pool.quota for q in quotas if q is not None for pool in q.pools]  # each pool has its own period
    return [build_period(q).start(now) for q in quotas if q is not None]


def compact(store: StateStore, config: CompiledConfig, now: datetime,
            margin: timedelta = RETENTION_MARGIN) -> tuple[datetime, int]:
    """Retention: roll up the usage rows no quota period of `config` reaches at `now` (see the module
    docstring); returns the cutoff and how many rows went away. Safe while coordinators run."""
    cutoff = retention_cutoff(quota_period_starts(config, now), now, margin)
    return cutoff, store.roll_up(cutoff)


def _imported(counts: dict[str, int], location: str) -> str:
    """The one line `adws state import` prints: what `import_lines` did (its `counts`), into `location` (`adws state
    export` prints its counts in the same words: "exported 3 usage, 0 cooldown, ... from LOCATION to FILE")."""
    text = "imported " + ", ".join(f"{counts[kind]} {kind}" for kind in KINDS) + f" into {location}"
    there = [f"{n} {what}" for n, what in ((counts["skipped usage"], "usage rows"), (counts["skipped run"], "runs"))
             if n]
    if there:
        text += f"; {' and '.join(there)} were already there (not added again)"
    if counts["older observation"]:
        text += f"; {counts['older observation']} observations were older than the store's own (not kept)"
    dropped, displaced = counts["dropped run"], counts["displaced run"]
    if dropped or displaced:
        whose = ", ".join(part for n, part in ((dropped, f"{dropped} of the file's"),
                                               (displaced, f"{displaced} the store held")) if n)
        text += (f"; {dropped + displaced} runs were not kept ({whose}: the store keeps only the newest runs of each "
                 "provider and specialization)")
    return text


def state_command(engine: Engine, action: str, *, file: str | None, margin: str | None, now: datetime) -> int:
    """`adws state export|import|compact` (see the module docstring). Export writes to `file` (stdout for
    None or "-"), whole or not at all (a new private file renamed into place: adws.files.replace_private); what
    was done goes to stderr, so an export on stdout stays a clean file. Raises
    StateImportError / UsageError / StateStoreError, one line each."""
    import sys

    from adws.quota import parse_window
    from adws.state import PendingStore

    stdio = file in (None, "-")
    if action == "import":
        store = engine.store
        from adws.inputs import MAX_STATE_LINE_BYTES, bounded_lines

        name = "<stdin>" if stdio else str(file)
        try:
            if stdio and sys.stdin is None:  # closed when the process started (`<&-`)
                from adws.inputs import closed_stdin

                raise closed_stdin()
            with nullcontext(sys.stdin) if stdio else open(str(file), encoding="utf-8") as stream:
                lines = bounded_lines(stream, name, "a line of a state export", MAX_STATE_LINE_BYTES)
                counts = import_lines(store, lines, name, engine.config.providers, now)
        except (OSError, UnicodeDecodeError) as exc:
            raise StateImportError(f"cannot read {file or '-'}: {getattr(exc, 'strerror', None) or exc}") from None
        print(_imported(counts, store.location), file=sys.stderr)
        return 0
    existing = engine.existing_store()
    if isinstance(existing, PendingStore) and existing.pending:
        if action == "compact":  # a fresh deployment: nothing has been booked, so there is nothing to roll up
            print(f"adws: no state store at {existing.location} yet: nothing to compact", file=sys.stderr)
            return 0
        raise UsageError(f"no state store at {existing.location} yet: nothing to {action}")  # likely a wrong path
    if action == "export":
        counts = dict.fromkeys(KINDS, 0)
        lines = (line + "\n" for line in export_lines(existing, now, counts))
        try:
            if stdio:
                for line in lines:
                    sys.stdout.write(line)
            else:
                from adws.files import replace_private

                replace_private(str(file), lines)  # whole or not at all: a full disk leaves no short file behind
        except BrokenPipeError:
            raise  # `adws state export | head -1`: the reader left; main() ends quietly like other commands
        except OSError as exc:
            raise UsageError(f"cannot write {'<stdout>' if stdio else file}: {exc.strerror or exc}") from None
        print("exported " + ", ".join(f"{counts[kind]} {kind}" for kind in KINDS) +
              f" from {existing.location} to {'<stdout>' if stdio else file}", file=sys.stderr)
        return 0
    try:
        keep = RETENTION_MARGIN if margin is None else parse_window(margin)
    except ValueError as exc:
        raise UsageError(f"--margin: {exc}") from None
    cutoff, removed = compact(existing, engine.config, now, keep)
    from adws.views import minute

    print(f"rolled up {removed} usage rows older than {minute(cutoff, engine.router.tz)} in {existing.location}",
          file=sys.stderr)
    return 0
