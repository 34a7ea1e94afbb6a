"""adws.needles: every occurrence of every needle, overlaps merged, whatever the number of needles."""

from __future__ import annotations

import random
import tracemalloc
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adws import needles as needles_module
from adws.needles import Needles


def _naive(data: bytes, needles: list[bytes]) -> list[tuple[int, int]]:
    """Every occurrence by bytes.find, sorted, overlapping or touching ones merged: what Needles must find."""
    found = sorted((start, start + len(n)) for n in needles if n
                   for start in range(len(data)) if data.startswith(n, start))
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=60) | st.text(alphabet="abc", max_size=60).map(str.encode),
       needles=st.lists(st.text(alphabet="abc", max_size=25).map(str.encode), max_size=6))
def test_spans_are_every_occurrence_merged(data: bytes, needles: list[bytes]) -> None:
    # Small alphabets and long needles: occurrences overlap, share prefixes of the 20 bytes searched first, and
    # one needle hides inside another.
    assert Needles(needles).spans(data) == _naive(data, needles)


@pytest.mark.parametrize("count", [1, 64, 65, 200, 1100])  # 1100: past 16 automata of 64, one
def test_any_number_of_needles(count: int) -> None:
    rng = random.Random(count)
    needles = [rng.randbytes(rng.randint(8, 120)) for _ in range(count)]
    data = b"".join(rng.randbytes(50) + needles[rng.randrange(count)] for _ in range(30))
    data += needles[0][:-1] + b"|" + needles[-1] + needles[0]  # a near miss, then two touching
    assert Needles(needles).spans(data) == _naive(data, needles)


def test_a_prefix_without_its_needle_is_no_occurrence() -> None:
    needle = b"sk-ant-api03-" + b"k" * 40
    other = b"sk-ant-api03-" + b"k" * 8 + b"j" * 32  # same vendor, same first 20 bytes, another key
    found = Needles([needle])
    assert found.spans(b"x " + other + b" y") == []
    text = b"x " + other
    assert found.replace(text, b"***") is text  # the same object: a prefix hit without its needle changes nothing
    assert not found.found_in(other)
    assert found.found_in(b"x" + needle)


def test_overlapping_needles_leave_nothing_of_either() -> None:
    found = Needles([b"abcdefgh12", b"gh12345678"])
    assert found.replace(b"xxabcdefgh12345678yy", b"***") == b"xx***yy"


def test_replace_returns_the_same_bytes_when_nothing_occurs() -> None:
    data = b"nothing to see"
    assert Needles([b"secret-value"]).replace(data, b"***") is data
    assert Needles([]).replace(data, b"***") is data and not Needles([b""])


@settings(max_examples=200, deadline=None)
@given(data=st.text(alphabet="abc", max_size=80).map(str.encode),
       needles=st.lists(st.text(alphabet="abc", min_size=1, max_size=25).map(str.encode), max_size=6),
       chunk=st.integers(1, 30), window=st.integers(1, 30))
def test_chunks_and_windows_find_the_same_spans(data: bytes, needles: list[bytes], chunk: int,
                                                window: int) -> None:
    # Long texts are searched a chunk (step 1) and a window (step 2) at a time: occurrences across their edges.
    with patch.object(needles_module, "_CHUNK", chunk), patch.object(needles_module, "_WINDOW", window):
        assert Needles(needles).spans(data) == _naive(data, needles)


def test_memory_stays_bounded_with_a_periodic_needle() -> None:
    # 200 KB of `a` holds 200,000 overlapping occurrences of `aaaaaaaa`: listed at once, about 50 MiB.
    found = Needles([b"aaaaaaaa"])
    tracemalloc.start()
    try:
        assert found.replace(b"x" + b"a" * 200_000 + b"y", b"***") == b"x***y"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
