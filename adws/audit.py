"""The audit log: one JSON line per task with its decision, attempts and outcome.

Records are written as given: the engine scrubs them first (adws.redact: secrets, prompt text).
Several coordinator processes append to the same file. Each record is written with a single `write()` on a
file opened with O_APPEND, under an exclusive `flock`, so lines never interleave. Prompt text is left out
unless the config opts in (`[audit] include_prompt = true`).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from typing import Any

from adws.files import open_private_append
from adws.redact import dumps


def append(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append `record` as one JSON line (lone surrogates as JSON escapes, so any record can be written).

    The file is created 0600 (its directory 0700). Raises OSError when it cannot be written, including for a
    symbolic link, a non-regular file or a file owned by another user at `path` (see adws.files).
    """
    append_line(path, dumps(record))


def append_line(path: str | os.PathLike[str], text: str) -> None:
    """Append `text`, one record's JSON as `adws.redact.dumps` or `Scrubber.dumps` writes it (no newline in it,
    no lone surrogate), as one line. Raises OSError as `append` does."""
    line = (text + "\n").encode("utf-8")
    # No fsync: once write() returns, the line survives any crash of adws (it is in the kernel's page cache);
    # only a crash of the machine could lose the last lines, the bound the state store keeps too (SQLite
    # `synchronous = NORMAL`). An fsync would cost every run milliseconds on a real disk.
    fd = open_private_append(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            view = memoryview(line)
            while view:  # a regular file takes it in one write; loop only for the pathological case
                written = os.write(fd, view)
                view = view[written:]
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records (for tests and tools). A torn last line (a crash mid-write) is skipped, not fatal."""
    records = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    records.append(json.loads(line))
                except (ValueError, RecursionError):  # torn, foreign or hostile line (huge integer, deep nesting)
                    continue
    except FileNotFoundError:
        return []
    return records
