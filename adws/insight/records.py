"""Streaming the audit log: one record at a time, with the fields the insight commands read.

The log is JSON Lines written by `adws.engine` (see `adws.audit`). A torn or foreign line is skipped, as
`audit.read` does, but counted, so a command can say how much it could not read.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from adws.dataclass_cache import dataclass
from adws.durations import UNIT_SECONDS
from adws.errors import UsageError

LIMIT_OUTCOMES = frozenset({"rate_limited", "quota_exhausted"})
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")


@dataclass(slots=True)
class Reading:
    """Counts of what a pass over the log saw."""

    lines: int = 0
    skipped: int = 0


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (a trailing Z allowed); naive times are read as UTC. Raises ValueError."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """`--since`: a span back from `now` (`90m`, `12h`, `7d`, `2w`) or an ISO 8601 time. Raises UsageError."""
    if value is None:
        return None
    match = _RELATIVE.match(value.strip().lower())
    if match:
        from adws.quota import MAX_WINDOW

        seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)] if len(match.group(1)) <= 12 else 10**30
        if seconds > MAX_WINDOW.total_seconds():  # `now - 9999999d` is before the year 1: no date
            raise UsageError(f"--since: a span of at most {MAX_WINDOW.days}d (ten years), or an ISO 8601 time; "
                             f"got {value!r}")
        return now - timedelta(seconds=seconds)
    try:
        return parse_time(value.strip())
    except ValueError:
        raise UsageError(f"--since: expected a span such as 7d or 12h, or an ISO 8601 time; got {value!r}") from None


def iter_records(path: str | os.PathLike[str], reading: Reading | None = None) -> Iterator[dict[str, Any]]:
    """Each task record of the audit log, in file order, read line by line (constant memory).

    Raises UsageError when the file cannot be opened (a missing log is the user's mistake here: these
    commands exist to read it).
    """
    seen = reading if reading is not None else Reading()
    try:
        fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed in the finally below)
    except OSError as exc:
        raise UsageError(f"cannot read the audit log {os.fspath(path)}: {exc.strerror or exc}") from None
    from adws.inputs import TooLarge, bounded_lines

    try:
        for line in bounded_lines(fh, os.fspath(path), "a line of an audit log"):
            seen.lines += 1
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # torn, foreign or hostile line (huge integer, deep nesting)
                seen.skipped += 1
                continue
            if not isinstance(record, dict) or not isinstance(record.get("at"), str):
                seen.skipped += 1
                continue
            yield record
    except TooLarge as exc:  # not an audit log (`/dev/zero`): refused, not read until memory runs out
        raise UsageError(f"cannot read the audit log {exc}") from None
    finally:
        fh.close()


def record_time(record: Mapping[str, Any]) -> datetime | None:
    """When the task's record was written (its end), or None when the field does not parse."""
    try:
        return parse_time(str(record["at"]))
    except (KeyError, ValueError):
        return None


def routed_at(record: Mapping[str, Any]) -> datetime | None:
    """The time the task was routed at (the decision's `at`), else the record's own time."""
    decision = record.get("decision")
    if isinstance(decision, Mapping) and isinstance(decision.get("at"), str):
        try:
            return parse_time(decision["at"])
        except ValueError:
            pass
    return record_time(record)


def attempts_of(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    attempts = record.get("attempts")
    return [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []


def tokens_of(attempt: Mapping[str, Any]) -> tuple[int, int, float]:
    """(input tokens, output tokens, cost in USD) of one attempt; zeros where it recorded no usage."""
    usage = attempt.get("usage")
    if not isinstance(usage, Mapping):
        return 0, 0, 0.0
    return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0), float(usage.get("cost_usd") or 0)


def task_of(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The task as `route()` accepts it, rebuilt from a record; None when the record holds none.

    Title and body are recorded only with `[audit] include_prompt = true` (they are prompt text); without
    them, a specialization that keywords in them decided is taken from the recorded decision. Records written
    before the log carried more than id, number, labels and retry_count route on those alone. When the task
    gave no `context_tokens`, the decision's recorded figure is used (estimated from the prompt).
    """
    raw = record.get("task")
    if not isinstance(raw, Mapping):
        return None
    task = {k: v for k, v in raw.items() if v is not None and k != "id"}
    number = raw.get("number")
    ident = raw.get("id")
    if ident is not None and not (isinstance(number, int) and ident == f"#{number}"):
        task["id"] = ident  # "#12" is the key adws derives from number 12: not an id of its own
    decision = record.get("decision")
    recorded = decision.get("task") if isinstance(decision, Mapping) else None
    if isinstance(recorded, Mapping):
        if "context_tokens" not in task and isinstance(recorded.get("context_tokens"), int):
            task["context_tokens"] = recorded["context_tokens"]
        reasons = decision.get("reasons") if isinstance(decision, Mapping) else None
        from_keywords = isinstance(reasons, list) and any(
            isinstance(r, str) and r.startswith("specialization") and "(keywords" in r for r in reasons)
        if "title" not in raw and "specialization" not in task and from_keywords \
                and isinstance(recorded.get("specialization"), str):
            # Keywords were read in the title and body, which a prompt-free log leaves out: keep their verdict.
            task["specialization"] = recorded["specialization"]
    return task
