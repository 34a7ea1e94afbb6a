"""Every occurrence of many literal strings in a text, found in one pass: what adws.redact replaces with.

The search is the Aho-Corasick automaton of `ahocorasick-rs` (as in adws.keywords) over the text's bytes, in
two steps:

1. A leftmost-longest search for the needles' first `_PREFIX` bytes, found with the crate's SIMD prefilter
   (Teddy), about 0.1 ns per byte of text without a match. It skips an occurrence that starts inside one it
   reported, but it reports the leftmost start after each one it reported, so every occurrence of a needle (which
   begins with an occurrence of its prefix) starts inside a reported one.
2. Around each reported occurrence only, an overlapping search for the whole needles (every occurrence of
   every one), so that overlapping or touching occurrences are replaced as one: no character of any needle is
   left behind. That automaton is made on the first text with a candidate.

Prefixes, because the automaton of step 1 is made for every new set of needles and its cost grows with their
bytes (a hundred encoded forms of ten keys, 10 KB: 0.28 ms whole, 0.07 ms as 20-byte prefixes, which also
coincide for forms that begin alike). Teddy takes at most 64 patterns; with more the crate searches without a
prefilter, about 15 times slower (measured on 200 KB of agent output, 2-core EPYC VM: 64 needles 17 µs, 100
needles 270 µs). So larger sets are searched as several automata of 64, up to `_MAX_GROUPS` of
them; past that, one automaton (about 4 ns per byte, 0.9 ms for 200 KB, whatever its size) reads a long text in
about the time of 16 to 32 passes of 64, and a short one in one call instead of dozens.

Both steps go through a long text in pieces (step 1 a `_CHUNK` at a time, step 2 a `_WINDOW` of starts at a
time, each reaching far enough into the next for an occurrence that starts in it), and the spans are merged as
they come: the crate lists its matches, and a periodic needle (`aaaaaaaa` in a run of `a`) occurs at every byte.

The byte search is exact for text: a needle's UTF-8 starts with a lead byte and ends with a whole character, so
in UTF-8 text it can only match at character boundaries (see `adws.redact.replace_in`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["Needles"]

_GROUP = 64
_MAX_GROUPS = 16
# Bytes of each needle that step 1 looks for: 15 bytes of a key in base64, 10 in hex. A prefix that occurs
# without its needle (base64 of another key of the same vendor) only costs step 2's search of its stretch.
_PREFIX = 20
# Bytes of text per call of step 1's search and starts per call of step 2's: what bounds the lists of matches
# the crate returns (step 2 lists every overlapping occurrence).
_CHUNK = 1 << 20
_WINDOW = 1 << 14


class Needles:
    """A fixed set of byte strings (the needles), and where they occur in a text.

    `needles`: any iterable of bytes; empty ones and repeats are dropped. The automata of step 1 are made here
    (about 0.07 ms for 100 needles), the one of step 2 on the first text that has a candidate (0.3 ms for 100
    needles of 100 bytes). A `Needles` may be searched from several threads at once.
    """

    __slots__ = ("_exact", "_groups", "longest", "needles")

    def __init__(self, needles: Iterable[bytes]) -> None:
        self.needles: tuple[bytes, ...] = tuple(dict.fromkeys(n for n in needles if n))
        self.longest = max(map(len, self.needles), default=0)  # bytes
        self._exact: Any = None
        self._groups: list[Any] = []
        if self.needles:
            # Imported when there is something to look for: start-up and routing do not pay for it.
            import ahocorasick_rs

            prefixes = list(dict.fromkeys(n[:_PREFIX] for n in self.needles))
            size = _GROUP if len(prefixes) <= _GROUP * _MAX_GROUPS else len(prefixes)
            self._groups = [
                ahocorasick_rs.BytesAhoCorasick(prefixes[i:i + size],
                                                matchkind=ahocorasick_rs.MatchKind.LeftmostLongest,
                                                implementation=ahocorasick_rs.Implementation.NoncontiguousNFA)
                for i in range(0, len(prefixes), size)]

    def __bool__(self) -> bool:
        return bool(self.needles)

    def found_in(self, data: bytes) -> bool:
        """Whether any needle occurs in `data`."""
        return next(self.iter_spans(data), None) is not None

    def spans(self, data: bytes) -> list[tuple[int, int]]:
        """Where the needles occur in `data`: sorted (start, end) byte offsets, end exclusive, one span for each
        run of occurrences that overlap or touch."""
        return list(self.iter_spans(data))

    def iter_spans(self, data: bytes) -> Iterator[tuple[int, int]]:
        """`spans`, one at a time: memory stays bounded by `_CHUNK` and `_WINDOW` whatever `data` holds (5 MB of
        `a` holds 5 million overlapping occurrences of `aaaaaaaa`, each a tuple if listed at once)."""
        return self._find(data) or iter(())

    def _find(self, data: bytes) -> Iterator[tuple[int, int]] | None:
        """`iter_spans`, or None when no prefix occurs in `data` shorter than `_CHUNK` (the common case, answered
        without making generators)."""
        if not self._groups:
            return None
        if len(data) <= _CHUNK:
            hits = self._chunk_hits(data, 0)
            return self._spans(data, iter(hits)) if hits else None
        return self._spans(data, (hit for low in range(0, len(data), _CHUNK) for hit in self._chunk_hits(data, low)))

    def _spans(self, data: bytes, hits: Iterator[tuple[int, int]]) -> Iterator[tuple[int, int]]:
        # Every occurrence starts inside a reported prefix (see the module's docstring), so it ends before the
        # reported prefix's end plus the longest needle. (A stretch found to hold nothing adds nothing: a
        # prefix without its needle.)
        stretches = _merged((start, end + self.longest - 1) for start, end in hits)
        yield from _merged(found for low, high in stretches for found in self._occurrences(data, low, high))

    def _chunk_hits(self, data: bytes, low: int) -> list[tuple[int, int]]:
        """Step 1 on the chunk of `data` at `low`: the reported prefixes, sorted by start. A chunk reaches
        `_PREFIX - 1` bytes into the next so that every prefix starting in it is whole there; hits starting in
        the next chunk are left to it, where its leftmost-longest search starts afresh."""
        piece = data[low:low + _CHUNK + _PREFIX - 1] if low or len(data) > _CHUNK else data
        return sorted((low + start, low + end) for group in self._groups
                      for _, start, end in group.find_matches_as_indexes(piece) if start < _CHUNK)

    def _occurrences(self, data: bytes, low: int, high: int) -> Iterator[tuple[int, int]]:
        """Step 2: every occurrence of every needle that starts in data[low:high] (and ends by `high`), sorted by
        start, found `_WINDOW` starts at a time (the crate lists overlapping matches: one tuple each)."""
        exact = self._exact
        if exact is None:
            import ahocorasick_rs

            exact = self._exact = ahocorasick_rs.BytesAhoCorasick(
                list(self.needles), implementation=ahocorasick_rs.Implementation.NoncontiguousNFA)
        for start in range(low, high, _WINDOW):
            # Occurrences starting in this window end within `longest - 1` bytes after it.
            piece = data[start:min(start + _WINDOW + self.longest - 1, high)]
            yield from sorted((start + begin, start + end)
                              for _, begin, end in exact.find_matches_as_indexes(piece, overlapping=True)
                              if begin < _WINDOW)

    def replace(self, data: bytes, mark: bytes) -> bytes:
        """`data` with each span of `spans` replaced by `mark`; `data` itself when nothing occurs in it."""
        spans = self._find(data)
        if spans is None:
            return data
        out = bytearray()  # (not a list of parts: two objects per span, for a text made of occurrences)
        pos = 0
        for start, end in spans:
            out += data[pos:start]
            out += mark
            pos = end
        if not pos:
            return data
        out += data[pos:]
        return bytes(out)


def _merged(spans: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Sorted spans with each run that overlaps or touches as one."""
    run: tuple[int, int] | None = None
    for start, end in spans:
        if run is not None and start <= run[1]:
            run = (run[0], max(run[1], end))
            continue
        if run is not None:
            yield run
        run = (start, end)
    if run is not None:
        yield run
