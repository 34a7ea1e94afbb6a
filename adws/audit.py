"""The audit log: one JSON line per task with its decision, attempts and outcome.

Several coordinator processes append to the same file. Each record is written with a single `write()` on a
file opened with O_APPEND, under an exclusive `flock`, so lines never interleave. Prompt text is left out
unless the config opts in (`[audit] include_prompt = true`).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def append(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    line = (json.dumps(record, ensure_ascii=False, default=str, sort_keys=False) + "\n").encode("utf-8")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
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
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        return []
    return records
