"""The audit log: one JSON line per task with its decision, attempts and outcome.

Records are written as given: the engine scrubs them first (adws.redact: secrets, prompt text).
Several coordinator processes append to the same file. Each record is written with a single `write()` on a
file opened with O_APPEND, under an exclusive `flock`, so lines never interleave. Prompt text is left out
unless the config opts in (`[audit] include_prompt = true`).
"""

from __future__ import annotations

import contextlib
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
    no lone surrogate), as one line. Raises OSError as `append` does.

    A line is never joined to a torn one: when the file does not end with a newline (a writer killed mid-line,
    or a failed append of an older adws), the record starts a line of its own, and a write that fails part way
    (a full disk, a file size limit) is cut back to where it began before the error is raised. Readers skip a
    torn line; a torn line with a good record glued to it would lose that record too.
    """
    line = (text + "\n").encode("utf-8")
    # No fsync: once write() returns, the line survives any crash of adws (it is in the kernel's page cache);
    # only a crash of the machine could lose the last lines, the bound the state store keeps too (SQLite
    # `synchronous = NORMAL`). An fsync would cost every run milliseconds on a real disk.
    fd = open_private_append(path, readable=True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            # Under the lock every writer appends: the size cannot move until we are done.
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # the torn tail becomes a line of its own, which readers skip
            view = memoryview(line)
            try:
                while view:  # a regular file takes it in one write; loop only for the pathological case
                    written = os.write(fd, view)
                    view = view[written:]
            except BaseException:  # ENOSPC, EFBIG, EIO ... (or a signal between two writes): no torn tail left
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
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
