"""Moving state between backends (`adws state export` / `import`) and keeping it bounded (`adws state compact`).

Export format: JSON Lines, one object per line, the first a header:
  {"kind": "adws-state", "version": 1, "exported_at": ISO 8601}
  {"kind": "usage", "provider", "account", "at": ISO 8601, "requests", "input_tokens", "output_tokens",
   "cost_usd", "estimated", "model", "task_id"}
  {"kind": "cooldown", "provider", "account", "until": ISO 8601, "reason"}     (only those still running)
  {"kind": "cursor", "key", "value"}
  {"kind": "sticky", "key", "value"}
  {"kind": "breaker", "provider", "state", "failures", "opened_at": ISO 8601 | null}
Concurrency leases are not exported: they belong to runs in flight on the old host (stop its coordinators
first) and expire on their own.

Import applies the lines in one pass; usage rows are appended (importing the same file twice counts its usage
twice, so import into an empty store), cursors only move forward, the rest is overwritten.

Retention: usage rows older than the oldest start of any quota period in effect now, minus a margin
(default RETENTION_MARGIN), are rolled up into one row per account and UTC hour (`StateStore.roll_up`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from adws.attempt import Usage
from adws.errors import AdwsError, UsageError
from adws.state.base import BreakerState, Cooldown, StateStore, UsageRecord

if TYPE_CHECKING:
    from adws.engine import Engine
    from adws.model import CompiledConfig

FORMAT_VERSION = 1
RETENTION_MARGIN = timedelta(days=7)  # kept raw beyond the longest quota period: late reports, audits


class StateImportError(AdwsError):
    """A line of an export file that cannot be imported (its number and what is wrong)."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def export_lines(store: StateStore, now: datetime) -> Iterator[str]:
    """The store's state as JSON Lines (without newlines), header first. `now` picks the running cooldowns."""
    def line(obj: dict[str, Any]) -> str:
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


def _when(obj: dict[str, Any], name: str) -> datetime:
    value = datetime.fromisoformat(obj[name])
    if value.tzinfo is None:
        raise ValueError(f"{name} {obj[name]!r} has no timezone")
    return value


def _usage(obj: dict[str, Any]) -> UsageRecord:
    usage = Usage(requests=int(obj["requests"]), input_tokens=int(obj["input_tokens"]),
                  output_tokens=int(obj["output_tokens"]), cost_usd=float(obj["cost_usd"]),
                  estimated=bool(obj["estimated"]))
    return UsageRecord(str(obj["provider"]), str(obj["account"]), _when(obj, "at"), usage,
                       obj.get("model"), obj.get("task_id"))


def _breaker(obj: dict[str, Any]) -> BreakerState:
    opened = obj.get("opened_at")
    return BreakerState(state=obj["state"], failures=int(obj["failures"]),
                        opened_at=None if opened is None else _when(obj, "opened_at"))


def _cooldown(obj: dict[str, Any]) -> Callable[[StateStore], None]:
    cooldown = Cooldown(_when(obj, "until"), str(obj["reason"]))
    provider, account = str(obj["provider"]), str(obj["account"])
    return lambda store: store.set_cooldown(provider, account, cooldown)


def _cursor(obj: dict[str, Any]) -> Callable[[StateStore], None]:
    key, value = str(obj["key"]), int(obj["value"])
    return lambda store: store.advance_cursor(key, value)


def _sticky(obj: dict[str, Any]) -> Callable[[StateStore], None]:
    key, value = str(obj["key"]), str(obj["value"])
    return lambda store: store.set_sticky(key, value)


def _breaker_update(obj: dict[str, Any]) -> Callable[[StateStore], None]:
    provider, new = str(obj["provider"]), _breaker(obj)

    def apply(store: StateStore) -> None:
        store.update_breaker(provider, lambda _: new)

    return apply


# Each kind but usage (appended in one bulk write): read and check a line, return what it does to a store.
_KINDS: dict[str, Callable[[dict[str, Any]], Callable[[StateStore], None]]] = {
    "cooldown": _cooldown, "cursor": _cursor, "sticky": _sticky, "breaker": _breaker_update,
}
KINDS = ("usage", *_KINDS)


def import_lines(store: StateStore, lines: Iterable[str], source: str) -> dict[str, int]:
    """Apply an export to `store`; returns how many lines of each kind. Every line is read and checked before
    anything is written, so a bad file changes nothing. Raises StateImportError naming `source` and the line."""
    usage: list[UsageRecord] = []
    actions: list[Callable[[StateStore], None]] = []
    counts = dict.fromkeys(KINDS, 0)
    header = False
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
            kind = obj.get("kind")
            if not header:
                if kind != "adws-state" or obj.get("version") != FORMAT_VERSION:
                    raise ValueError(f'expected the header {{"kind": "adws-state", "version": {FORMAT_VERSION}}} '
                                     "(a file written by adws state export)")
                header = True
                continue
            if kind == "usage":
                usage.append(_usage(obj))
            elif kind in _KINDS:
                actions.append(_KINDS[kind](obj))
            else:
                raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
        except (ValueError, KeyError, TypeError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise StateImportError(f"{source}:{number}: {what}") from None
        counts[kind] += 1
    if not header:
        raise StateImportError(f"{source}: empty, not a file written by adws state export")
    store.import_usage(usage)
    for action in actions:
        action(store)
    return counts


def retention_cutoff(period_starts: Iterable[datetime], now: datetime,
                     margin: timedelta = RETENTION_MARGIN) -> datetime:
    """Usage before this time may be rolled up: the oldest quota period start in effect at `now` (`now`
    itself without quotas) minus `margin`."""
    return min([now, *period_starts]) - margin


def quota_period_starts(config: CompiledConfig, now: datetime) -> list[datetime]:
    """Where every quota period declared in `config` (providers' and accounts') starts at `now`."""
    from adws.accounts import build_period

    quotas = [p.quota for p in config.providers.values()]
    quotas += [a.quota for p in config.providers.values() for a in p.accounts]
    return [build_period(q).start(now) for q in quotas if q is not None]


def compact(store: StateStore, config: CompiledConfig, now: datetime,
            margin: timedelta = RETENTION_MARGIN) -> tuple[datetime, int]:
    """Retention: roll up the usage rows no quota period of `config` reaches at `now` (see the module
    docstring); returns the cutoff and how many rows went away. Safe while coordinators run."""
    cutoff = retention_cutoff(quota_period_starts(config, now), now, margin)
    return cutoff, store.roll_up(cutoff)


def state_command(engine: Engine, action: str, *, file: str | None, margin: str | None, now: datetime) -> int:
    """`adws state export|import|compact` (see the module docstring). Export writes to `file` (stdout for
    None or "-"); what was done goes to stderr, so an export on stdout stays a clean file. Raises
    StateImportError / UsageError / StateStoreError, one line each."""
    import sys

    from adws.quota import parse_window
    from adws.state import PendingStore

    stdio = file in (None, "-")
    if action == "import":
        store = engine.store
        try:
            with nullcontext(sys.stdin) if stdio else open(str(file), encoding="utf-8") as stream:
                counts = import_lines(store, stream, "<stdin>" if stdio else str(file))
        except (OSError, UnicodeDecodeError) as exc:
            raise StateImportError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
        print("imported " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + f" into {store.location}",
              file=sys.stderr)
        return 0
    existing = engine.existing_store()
    if isinstance(existing, PendingStore) and existing.pending:
        if action == "compact":  # a fresh deployment: nothing has been booked, so there is nothing to roll up
            print(f"adws: no state store at {existing.location} yet: nothing to compact", file=sys.stderr)
            return 0
        raise UsageError(f"no state store at {existing.location} yet: nothing to {action}")  # likely a wrong path
    if action == "export":
        try:
            with nullcontext(sys.stdout) if stdio else open(str(file), "w", encoding="utf-8") as out:
                for line in export_lines(existing, now):
                    out.write(line + "\n")
        except BrokenPipeError:
            raise  # `adws state export | head -1`: the reader left; main() ends quietly like other commands
        except OSError as exc:
            raise UsageError(f"cannot write {'<stdout>' if stdio else file}: {exc.strerror or exc}") from None
        return 0
    try:
        keep = RETENTION_MARGIN if margin is None else parse_window(margin)
    except ValueError as exc:
        raise UsageError(f"--margin: {exc}") from None
    cutoff, removed = compact(existing, engine.config, now, keep)
    print(f"rolled up {removed} usage rows older than {cutoff.isoformat()} in {existing.location}", file=sys.stderr)
    return 0
