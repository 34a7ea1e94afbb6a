"""`retry_count` from adws's own record: `[routing.intake] retry_count = "history"`.

When a task gives no `retry_count`, the number of earlier *failed* runs of the same task id within the declared
window (`history_window`, default 7 days) in the audit log stands in for it, so a rule such as "retries use a
cheaper model" works without the coordinator counting. The audit log is append-only and in time order, so it
is read from its end backwards and reading stops at the first record older than the window: the cost is the
log's part since the window's start (for a run given a past `now=`, all that came after it too), not its
whole length.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime

__all__ = ["failed_runs"]

_BLOCK = 64 * 1024


def _lines_backwards(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The file's lines, last first (without their newlines). Nothing when the file does not exist."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below, after the generator ends
    except FileNotFoundError:
        return
    try:
        end = handle.seek(0, os.SEEK_END)
        rest = b""
        while end > 0:
            start = max(0, end - _BLOCK)
            handle.seek(start)
            chunk = handle.read(end - start) + rest
            end = start
            lines = chunk.split(b"\n")
            rest = lines.pop(0)  # may be the tail of a line that began in the previous block
            for line in reversed(lines):
                if line.strip():
                    yield line
        if rest.strip():
            yield rest
    finally:
        handle.close()


def failed_runs(audit_path: str | os.PathLike[str], task_id: str, *, since: datetime,
                until: datetime | None = None) -> int:
    """How many runs of `task_id` the audit log records as failed at or after `since` and, with `until`, not
    after it (both timezone-aware): a run routed as at a past time (`run(now=...)`) counts the failures before
    that time, not the ones the log holds from after it.

    A torn or foreign line is skipped, as `adws.audit.read` does. Interrupted runs count as failures: the
    coordinator will try them again.
    """
    count = 0
    for raw in _lines_backwards(audit_path):
        try:
            record = json.loads(raw)
            at = datetime.fromisoformat(record["at"])
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
        if at.tzinfo is None or at < since:
            if at.tzinfo is not None:
                break  # time order: everything before this is older still
            continue
        if until is not None and at > until:
            continue  # newer than the moment asked about (the log is read newest first)
        task = record.get("task") or {}
        if task.get("id") == task_id and record.get("success") is False:
            count += 1
    return count
