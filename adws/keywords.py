"""The keyword classifier of intake: which specialization's keywords an issue's title and body name most often.

What counts as a hit (the rule since keywords were introduced, kept exactly):

- Case does not matter, as Python's `re.IGNORECASE` sees it (`FIX`, `Fix` and `fix` are the same word; so are
  `K` and the Kelvin sign, `s` and the long s `ſ`).
- A keyword must begin at a word start (`\\b`): "fix" counts in "fix it" and "fixes" but not in "prefix".
  It need not end at a word end: "design" also counts in "designs".
- Hits do not overlap. The text is read left to right; at each place the first keyword that fits, in
  declaration order (specializations in file order, then their keywords in list order), is the hit, and reading
  goes on after it. So with `architecture = ["system design"]` before `docs = ["design doc"]`,
  "system design doc" is one architecture hit.

Reading is one pass over the text with an Aho-Corasick automaton (the `ahocorasick-rs` package: a Rust
multi-pattern matcher with SIMD prefilters), about 0.25 ns per character of ASCII text, 0.5-0.8 ns of other text:
the text is encoded as UTF-8 (a copy for ASCII, 0.3-0.45 ns a character otherwise), the four non-ASCII letters
that `re.IGNORECASE` equates with ASCII ones are folded to them, its ASCII letters are lowercased through a
256-byte table (StringZilla's SIMD `translate`, ~0.01 ns a byte where `bytes.lower` takes 0.23), and the
automaton finds the keywords, leftmost first, in declaration order on a tie, as the regex
alternation does. Each hit is then checked for the word start. A task's title and body are read as if joined
by a newline: joined when short, and one after the other when long (8 KB or more) and no keyword holds a
newline, so that a 20 KB body is not copied. Where that cannot decide exactly (a place
where a keyword with a word boundary inside it, such as "root cause", matched but not at a word start, so that
another keyword might start inside it), and for configs with keywords outside that alphabet (non-ASCII
letters), the text is read with the equivalent regular expression instead: same answers, about 0.2 µs per
character. So is every text when the two packages cannot be imported (adws's code run from a checkout on a Python
without its dependencies).
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

from adws.dataclass_cache import dataclass, field

# The non-ASCII characters that `re.IGNORECASE` matches with an ASCII letter (CPython's simple case folding
# plus its extra equivalences), each with the ASCII lowercase letter it stands for. tests/test_keywords.py
# derives this table from `re` over every code point, so a Python whose tables differ fails the suite.
TWINS: dict[str, str] = {"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"}


def is_word(char: str) -> bool:
    """`re`'s `\\w` for one character (Unicode): a letter, digit or numeric character, or `_`."""
    return char.isalnum() or char == "_"


def reference_pattern(lists: tuple[tuple[str, tuple[str, ...]], ...]) -> re.Pattern[str]:
    """The classifier as one regex, group N for the N-th specialization: the definition of a hit."""
    return re.compile("|".join("(" + r"\b(?:" + "|".join(re.escape(w) for w in words) + "))"
                               for _, words in lists), re.IGNORECASE)


def _fold(word: str) -> bytes | None:
    """The keyword as the automaton reads it (ASCII lowercase), or None when it is outside that alphabet."""
    out = []
    for char in word:
        if char in TWINS:
            out.append(TWINS[char])
        elif char.isascii():
            out.append(char.lower())
        else:
            return None
    return "".join(out).encode("ascii")


def _inner_boundary(word: str) -> bool:
    """Does a word start or end fall inside the keyword (as in "root cause")? Then another keyword could start
    within a place where this one matched but was not a hit."""
    return any(is_word(a) != is_word(b) for a, b in pairwise(word))


@dataclass(frozen=True, slots=True)
class _Automaton:
    matcher: Any  # ahocorasick_rs.BytesAhoCorasick over the folded keywords, leftmost-first
    group: tuple[int, ...]  # pattern index -> specialization index
    first_word: tuple[bool, ...]  # pattern index -> does the keyword begin with a word character
    inner: tuple[bool, ...]  # pattern index -> _inner_boundary
    split: bool  # no keyword holds a newline: the parts of a text can be read one by one (see `counts`)
    translate: Any  # stringzilla.translate(data: bytes, table: bytes) -> bytes; with ASCII_LOWER, bytes.lower


# `bytes.lower` as a byte table: ASCII capitals to small letters, every other byte (all of UTF-8's non-ASCII
# bytes among them) as it is. tests/test_keywords.py checks StringZilla's translate with it against bytes.lower
# on every byte, with SIMD and without.
ASCII_LOWER = bytes(range(256)).lower()


# Texts shorter than this (in characters) are read joined: a copy of a few KB costs less than a second pass's
# calls (measured by instruction counts on the issue corpus: 2 KB bodies read apart took 7 % more).
_JOIN_BELOW = 8192

# The twins in UTF-8, each with its ASCII letter and the offset in it of the byte `_fold_twins` finds it by
# (memchr): the rarest byte of the sequence in ordinary text. Each sequence is one whole character wherever it
# occurs, UTF-8 being self-synchronizing, so replacing it in the bytes is replacing the character in the str.
_TWINS_UTF8 = tuple((twin.encode("utf-8"), letter.encode("ascii"), 0 if twin.encode("utf-8")[0] in (0xC4, 0xC5)
                     else len(twin.encode("utf-8")) - 1) for twin, letter in TWINS.items())


# More marking bytes than this, and `_fold_twins` gives up: the caller looks for the twins in the str instead.
_FEW_MARKS = 32


def _fold_twins(folded: bytes) -> bytes | None:
    """UTF-8 `folded` with each twin replaced by its ASCII letter. Each twin is found through one byte of it by
    `bytes.find` (memchr), then checked whole: `bytes.replace` and `in` with a multi-byte needle take ~1 ns a
    byte here, and a text with a twin would pay that once per twin. None when the marking bytes are many (a
    language where they are ordinary letters': Polish ą ł ś ż, Czech č š ž, Vietnamese ê), which would cost a
    Python step each."""
    found: list[tuple[int, int, bytes]] = []  # (start, end, letter)
    steps = 0
    for seq, letter, anchor in _TWINS_UTF8:
        mark = seq[anchor:anchor + 1]
        at = folded.find(mark)
        while at != -1:
            steps += 1
            if steps > _FEW_MARKS:
                return None
            start = at - anchor
            if start >= 0 and folded.startswith(seq, start):
                found.append((start, start + len(seq), letter))
            at = folded.find(mark, at + 1)
    if not found:
        return folded
    found.sort()
    pieces: list[bytes] = []
    last = 0
    for start, end, letter in found:
        pieces += (folded[last:start], letter)
        last = end
    pieces.append(folded[last:])
    return b"".join(pieces)


@dataclass(frozen=True, slots=True)
class KeywordMatcher:
    """Counts keyword hits per specialization. `lists` is the config's `specialization_keywords` in file
    order: (specialization, its keywords); it is the whole state (the automaton is built from it on first use),
    so a matcher is plain data to store and cheap to rebuild."""

    lists: tuple[tuple[str, tuple[str, ...]], ...]
    _built: list[Any] = field(default_factory=list, init=False, repr=False, compare=False)

    def classify(self, text: str, body: str | None = None) -> tuple[str, int] | None:
        """(specialization, hits) of the specialization with most hits, a tie going to the one declared
        first; None when no keyword occurs. The text is `text`, or with a `body` the two joined by a newline
        (a task's title and body: see `counts`)."""
        built = self._built
        if not built:
            built[:] = self._build()  # one list operation: threads racing here each store a whole build
        automaton = built[0]
        if automaton is None or (body is not None and len(text) + len(body) >= _JOIN_BELOW):
            counts = self.counts(text, body)
        else:
            # `counts` and `_scan` inlined: what routing asks for a task without a deciding label, so one frame
            # here instead of three when nothing matched (most titles, many short bodies: no tally at all), two
            # with hits (`_tally`).
            if body is not None:
                text = f"{text}\n{body}"  # a copy, but short (< _JOIN_BELOW): cheaper than reading the parts apart
            # (ASCII, the common case, holds no surrogate: encoded without naming an error handler, which is slower)
            folded = text.encode() if text.isascii() else _twinless(text, text.encode("utf-8", "surrogatepass"))
            folded = automaton.translate(folded, ASCII_LOWER)
            matches = automaton.matcher.find_matches_as_indexes(folded)
            if not matches:
                return None
            found = _tally(automaton, folded, matches, [0] * len(self.lists))
            counts = found if found is not None else self.reference_counts(text)
        hits = max(counts)  # not max(..., default=0): a keyword argument makes 3.11's max ~5x slower
        return (self.lists[counts.index(hits)][0], hits) if hits else None

    def counts(self, text: str, body: str | None = None) -> list[int]:
        """Hits per specialization, in `lists` order, in `text`, or with a `body` in `f"{text}\\n{body}"`. A long
        title and body are read one after the other where no keyword holds a newline (then no hit spans the
        two, and the newline before the body is no word character, as the start of a text is not): a 20 KB
        body is not copied into a joined string first."""
        if not self._built:
            self._built[:] = self._build()  # one list operation: threads racing here each store a whole build
        automaton = self._built[0]
        if body is not None:
            if automaton is not None and automaton.split and len(text) + len(body) >= _JOIN_BELOW:
                found = self._scan(automaton, text)
                if found is not None and self._scan(automaton, body, found) is not None:
                    return found
            text = f"{text}\n{body}"
        if automaton is not None:
            found = self._scan(automaton, text)
            if found is not None:
                return found
        return self.reference_counts(text)

    def reference_counts(self, text: str) -> list[int]:
        """The same counts by the regular expression: slower, the definition."""
        if not self._built:
            self._built[:] = self._build()
        if self._built[1] is None:
            self._built[1] = reference_pattern(self.lists)
        counts = [0] * len(self.lists)
        for match in self._built[1].finditer(text):
            counts[(match.lastindex or 1) - 1] += 1
        return counts

    def _build(self) -> tuple[_Automaton | None, re.Pattern[str] | None]:
        folded, group, first_word, inner = [], [], [], []
        for index, (_, words) in enumerate(self.lists):
            for word in words:
                as_bytes = _fold(word)
                if as_bytes is None or not word:
                    return None, None  # outside the automaton's alphabet: the regex reads every text
                folded.append(as_bytes)
                group.append(index)
                first_word.append(is_word(word[0]))
                inner.append(_inner_boundary(word))
        if not folded:
            return None, None
        # Both only when a text is classified: start-up and `adws check` do not pay for them.
        try:
            import ahocorasick_rs
            import stringzilla
        except ImportError:  # adws's code run without its dependencies (a checkout): the regex, same answers
            return None, None

        matcher = ahocorasick_rs.BytesAhoCorasick(folded, matchkind=ahocorasick_rs.MatchKind.LeftmostFirst)
        split = not any(b"\n" in word for word in folded)
        return _Automaton(matcher, tuple(group), tuple(first_word), tuple(inner), split,
                          stringzilla.translate), None

    def _scan(self, automaton: _Automaton, text: str, counts: list[int] | None = None) -> list[int] | None:
        """One pass, its hits added to `counts` (a new list when None) and returned; None when the automaton
        cannot decide exactly (the caller then uses the regex)."""
        # UTF-8, then ASCII lowercase: bytes of non-ASCII characters are all >= 0x80, so they never match an
        # ASCII keyword, are left alone by ASCII_LOWER, and never split a hit. Positions are not needed.
        # (ASCII holds no surrogate: encoded without naming an error handler, which is slower; as in `classify`)
        folded = text.encode() if text.isascii() else _twinless(text, text.encode("utf-8", "surrogatepass"))
        folded = automaton.translate(folded, ASCII_LOWER)
        if counts is None:
            counts = [0] * len(self.lists)
        return _tally(automaton, folded, automaton.matcher.find_matches_as_indexes(folded), counts)


def _twinless(text: str, folded: bytes) -> bytes:
    """`folded`, the UTF-8 of non-ASCII `text`, with each twin as its ASCII letter (a letter as it is, so `\\b` is
    unchanged)."""
    # Looked for the cheap way first, by one byte each in the UTF-8 (memchr): U+0130/U+0131 and U+017F by their
    # lead bytes 0xC4/0xC5 (common only in a few languages: see _fold_twins), U+212A by its last byte 0xAA (its
    # lead 0xE2 starts every curly quote and arrow). A str search is slower in most text: str.find on UCS-2 runs
    # memchr on a character's low byte, which for these is "0", "1", DEL and "*".
    # (A byte as an int: `bytes in bytes` first tries the needle as an int and formats a TypeError, ~10x the
    # cost of the memchr itself.)
    if not (0xC4 in folded or 0xC5 in folded or 0xAA in folded):
        return folded
    twinless = _fold_twins(folded)
    if twinless is not None:
        return twinless
    # Many marking bytes: the str is searched for the twins themselves (a memchr on each one's low byte, few of
    # which such text holds), and encoded again only when it holds one.
    replaced = False
    for twin, letter in TWINS.items():
        if twin in text:
            text, replaced = text.replace(twin, letter), True
    return text.encode("utf-8", "surrogatepass") if replaced else folded


def _tally(automaton: _Automaton, folded: bytes, matches: list[tuple[int, int, int]],
           counts: list[int]) -> list[int] | None:
    """The automaton's `matches` in `folded` that are hits (a word start before them) added to `counts`, which is
    returned; None when one of them cannot be decided exactly (the caller then uses the regex)."""
    group, first_word, inner, byte_word = automaton.group, automaton.first_word, automaton.inner, _BYTE_WORD
    for index, start, _ in matches:
        # `\b` before the keyword: the character before differs in wordness from the keyword's first one. An
        # ASCII character before is looked up here (most are), anything else decoded by _word_before.
        if start:
            before = byte_word[folded[start - 1]]
            if before is None:
                before = _word_before(folded, start)
        else:
            before = False
        if before != first_word[index]:
            counts[group[index]] += 1
        elif inner[index]:
            # Not a hit, and the regex would look for one again inside it; the automaton went past.
            return None
    return counts


_ASCII_WORD = tuple(is_word(chr(code)) for code in range(128))
# A byte's wordness where the byte alone says it (ASCII); None for the bytes of other characters (see _word_before).
_BYTE_WORD: tuple[bool | None, ...] = (*_ASCII_WORD, *(None,) * 128)


def _word_before(folded: bytes, start: int) -> bool:
    """Is the character that ends just before byte `start` of UTF-8 text a word character?"""
    last = folded[start - 1]
    if last < 0x80:
        return _ASCII_WORD[last]
    lead = start - 1
    while lead > 0 and folded[lead] & 0xC0 == 0x80:  # back over continuation bytes to the character's start
        lead -= 1
    return is_word(folded[lead:start].decode("utf-8", "surrogatepass"))
