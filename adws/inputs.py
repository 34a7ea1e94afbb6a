"""The files and streams adws reads, each read within a bound: a name given by mistake (`/dev/zero`, a disk image,
an endless pipe) is refused in one line, not read until memory runs out.

Bounds (bytes): a config file, a task (`--task-json`, `--github-issue`), a prompt template and a workload file
`MAX_CONFIG_BYTES`; a prompt (`--prompt-file`, a tasks line's `prompt_file`) `MAX_PROMPT_BYTES`; a `run-many`
tasks file or an issue list `MAX_TASKS_BYTES`. Files read line by line (the audit log, a state file to import)
have no bound on their size, only on each line (`bounded_lines`: an audit log's `MAX_LINE_BYTES`, a state
export's `MAX_STATE_LINE_BYTES`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import IO, Any

from adws.errors import Loc

__all__ = ["MAX_CONFIG_BYTES", "MAX_DEPTH", "MAX_LINE_BYTES", "MAX_PROMPT_BYTES", "MAX_STATE_LINE_BYTES",
           "MAX_TASKS_BYTES", "TooLarge", "bounded_lines", "deepest_value", "read_bounded", "read_stdin", "read_text",
           "why"]

MiB = 1 << 20
MAX_CONFIG_BYTES = 4 * MiB
MAX_PROMPT_BYTES = 16 * MiB
MAX_TASKS_BYTES = 64 * MiB
MAX_LINE_BYTES = 16 * MiB
MAX_STATE_LINE_BYTES = 1 * MiB


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit % MiB == 0 else f"{limit:,} bytes"


class TooLarge(OSError):
    """An input over its bound: `filename` the file (or "<stdin>"), `strerror` what was exceeded ("more than 4 MiB,
    the most a task may hold"); str() is both. An OSError, so every "cannot read" handler reports it."""

    def __init__(self, name: str, limit: int, what: str, line: int | None = None) -> None:
        where = f"line {line} is " if line is not None else ""
        super().__init__(errno.EFBIG, f"{where}more than {_size(limit)}, the most {what} may hold", name)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def read_bounded(source: str | os.PathLike[str] | IO[bytes], limit: int, what: str, name: str | None = None) -> bytes:
    """At most `limit` bytes of the file `source` (a path) or of the binary stream `source` (standard input's
    buffer; `name` names it, default "<stdin>"). Raises TooLarge when there is more (`what` says what it was: "a
    task"), OSError when the file cannot be read."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fh:
            return read_bounded(fh, limit, what, name or os.fspath(source))
    data = source.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(name or "<stdin>", limit, what)
    return bytes(data)


def read_text(source: str | os.PathLike[str] | IO[bytes], limit: int, what: str, name: str | None = None) -> str:
    """`read_bounded` decoded as UTF-8. Raises TooLarge, OSError, UnicodeDecodeError."""
    return read_bounded(source, limit, what, name).decode("utf-8")


def read_stdin(limit: int, what: str) -> str:
    """Standard input as text, at most `limit` bytes (characters, for a stream of text only: a test's), read as
    bytes so that undecodable input is a UnicodeDecodeError. Raises TooLarge ("<stdin>") when there is more, OSError
    (EBADF, `closed_stdin`) when standard input was closed when adws started."""
    import sys

    if sys.stdin is None:  # Python gives None for a descriptor closed when it started (`<&-`)
        raise closed_stdin()
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        text = str(sys.stdin.read(limit + 1))
        if len(text) > limit:
            raise TooLarge("<stdin>", limit, what)
        return text
    return read_text(stream, limit, what)


def bounded_lines(stream: IO[Any], name: str, what: str, limit: int = MAX_LINE_BYTES) -> Iterator[Any]:
    """The lines of `stream` (text or binary), as iterating it gives them, none longer than `limit` (characters
    of a text stream); raises TooLarge naming the line that is longer (`what`: "a line of an audit log")."""
    number = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit:
            raise TooLarge(name, limit, what, number)
        yield line


def why(exc: OSError) -> str:
    """What a person is told of `exc`, a read that failed: "FILE: reason" (or the reason alone), no errno."""
    if isinstance(exc, TooLarge) or not exc.strerror:
        return str(exc)
    return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror


def closed_stdin() -> OSError:
    """The error of reading `-` when standard input was closed when adws started (`<&-`: Python's sys.stdin is
    None then)."""
    return OSError(errno.EBADF, "standard input is closed")


MAX_DEPTH = 32  # tables and arrays inside each other; adws's own keys need 7, the rest is room for attrs values


def deepest_value(raw: Any) -> tuple[int, Loc] | None:
    """(depth, place) of the first value in `raw` (dicts and lists) nested deeper than MAX_DEPTH, else None.
    Iterative: the point is not to recurse as deep as a hostile file goes (the checks after this one do recurse).
    The workload and issue files of `adws simulate` are held to the same limit."""
    stack: list[tuple[Any, Loc]] = [(raw, ())]
    while stack:
        node, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            depth = len(loc)
            while isinstance(node, (dict, list)) and node:  # count the rest of the way down
                node = next(iter(node.values())) if isinstance(node, dict) else node[0]
                depth += 1
            return depth, loc
        if isinstance(node, dict):
            stack.extend((value, (*loc, key)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, (*loc, i)) for i, value in enumerate(node))
    return None
