"""Line numbers for places in a TOML file, so that a config error reads `config.toml:42: routing.rules[3] → …`.

tomllib (like tomli and tomlkit) gives values without positions, so this is a light scan of the text, not a
parser: it follows table headers (`[a.b]`, `[[a.b]]`, counting array-of-tables entries) and the key at the
start of each `key = value` line. A place inside an inline table or a multi-line array gets the line of the
key that opens it; a place the scan does not know gets no line (never a wrong one from a guess about values).
"""

from __future__ import annotations

import json
import re

from adws.errors import Loc

_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*(\]\]?)\s*(?:#.*)?$")
_ATOM = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""  # a bare, "basic" or 'literal' key
_KEY = re.compile(rf"^\s*({_ATOM}(?:\s*\.\s*{_ATOM})*)\s*=")
_PART = re.compile(r"""\s*([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')\s*(?:\.|$)""")


def _parts(dotted: str) -> tuple[str, ...] | None:
    parts: list[str] = []
    pos = 0
    while pos < len(dotted):
        match = _PART.match(dotted, pos)
        if match is None or match.end() == pos:
            return None
        token = match.group(1)
        if token.startswith('"'):
            try:
                token = json.loads(token)
            except ValueError:
                return None
        elif token.startswith("'"):
            token = token[1:-1]
        parts.append(token)
        pos = match.end()
    return tuple(parts)


def key_lines(text: str) -> dict[Loc, int]:
    """Each table and key the scan finds -> its 1-based line number."""
    lines: dict[Loc, int] = {}
    arrays: dict[tuple[str, ...], int] = {}  # array-of-tables path -> index of its current entry
    table: Loc = ()
    in_string: str | None = None  # the delimiter of a multi-line string being skipped
    for number, line in enumerate(text.splitlines(), 1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        header = _HEADER.match(line)
        if header and header.group(1) == header.group(3)[::-1].replace("]", "["):
            path = _parts(header.group(2))
            if path is None:
                continue
            if header.group(1) == "[[":
                arrays[path] = arrays.get(path, -1) + 1
            table = _resolve(path, arrays)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            path = _parts(key.group(1))
            if path is not None:
                lines.setdefault((*table, *path), number)
            rest = line[key.end():]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_string = quote
    return lines


def _resolve(path: tuple[str, ...], arrays: dict[tuple[str, ...], int]) -> Loc:
    """A header path with the current index of every array of tables along it: routing.rules -> routing.rules[3]."""
    out: list[str | int] = []
    for i in range(len(path)):
        out.append(path[i])
        index = arrays.get(path[: i + 1])
        if index is not None:
            out.append(index)
    return tuple(out)


def line_of(loc: Loc, lines: dict[Loc, int]) -> int | None:
    """The line of the longest leading part of loc the scan knows."""
    for end in range(len(loc), 0, -1):
        found = lines.get(loc[:end])
        if found is not None:
            return found
    return None
