"""The one-pass keyword classifier gives exactly the answers of the regex it replaced.

`old_counts` is the classifier as it was before adws/keywords.py (one IGNORECASE regex with a group per
specialization, read with finditer); every test compares against it.
"""

from __future__ import annotations

import json
import re
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adws import keywords
from adws.config import load_config
from adws.keywords import TWINS, KeywordMatcher, is_word
from tests.helpers import ROOT

CORPUS = ROOT / "tests" / "data" / "issues" / "corpus.jsonl"


def old_counts(lists: tuple[tuple[str, tuple[str, ...]], ...], text: str) -> list[int]:
    """The implementation this module replaced, verbatim in effect (config/load.py + intake.py before)."""
    sources = [r"\b(?:" + "|".join(re.escape(w) for w in words) + r")" for _, words in lists]
    pattern = re.compile("|".join(f"({source})" for source in sources), re.IGNORECASE)
    counts = [0] * len(lists)
    for match in pattern.finditer(text):
        counts[(match.lastindex or 1) - 1] += 1
    return counts


def corpus() -> list[dict[str, object]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def _all_chars() -> str:
    return "".join(map(chr, range(sys.maxunicode + 1)))


def test_the_twins_table_is_what_re_ignorecase_does_on_this_python() -> None:
    everything = _all_chars()
    twins: dict[str, str] = {}
    for code in range(128):
        char = chr(code)
        for found in re.findall(re.escape(char), everything, re.IGNORECASE):
            if not found.isascii():
                twins[found] = char.lower()
    assert twins == TWINS
    # Lowercasing keeps every other character's length and never makes a non-twin ASCII.
    assert [c for c in everything if len(c.lower()) != 1] == ["\u0130"]
    assert all(c in TWINS for c in everything if not c.isascii() and c.lower().isascii())


def test_is_word_is_re_word() -> None:
    everything = _all_chars()
    assert set(re.findall(r"\w", everything)) == {c for c in everything if is_word(c)}


@pytest.mark.parametrize("backend", ["serial", "all"])
def test_the_lowering_table_is_bytes_lower(backend: str) -> None:
    """StringZilla's translate with ASCII_LOWER is bytes.lower, on every byte value, at every length around the
    SIMD widths (16-64-byte blocks and their tails), with the scalar backend and with what this CPU offers."""
    import stringzilla

    everything = stringzilla.__capabilities__
    every_byte = bytes(range(256))
    texts = [b""] + [(every_byte * 4)[start:start + size] for size in range(1, 300) for start in (0, 65, 200)]
    texts.append(every_byte * 100)
    try:
        if backend == "serial":
            stringzilla.reset_capabilities(["serial"])
        wrong = [text for text in texts if stringzilla.translate(text, keywords.ASCII_LOWER) != text.lower()]
    finally:
        stringzilla.reset_capabilities(list(everything))
    assert wrong == []


def test_the_shipped_config_over_the_issue_corpus() -> None:
    intake = load_config(ROOT / "config.toml").intake
    assert intake.keywords is not None
    matcher, lists = intake.keywords, intake.keywords.lists
    issues = corpus()
    assert len(issues) >= 50
    assert max(len(str(i["body"]).encode()) for i in issues) >= 20_000
    hits = 0
    for issue in issues:
        text = f"{issue['title']}\n{issue['body']}"
        expected = old_counts(lists, text)
        assert matcher.counts(text) == expected, issue["number"]
        assert matcher.reference_counts(text) == expected
        hits += sum(expected)
    assert hits > 50  # the corpus exercises the classifier, not only its empty case


def test_the_corpus_is_read_by_the_automaton_not_the_fallback() -> None:
    matcher = load_config(ROOT / "config.toml").intake.keywords
    assert matcher is not None
    matcher.counts("warm up")
    automaton = matcher._built[0]
    assert automaton is not None
    for issue in corpus():
        assert matcher._scan(automaton, f"{issue['title']}\n{issue['body']}") is not None


@pytest.mark.parametrize("missing", ["ahocorasick_rs", "stringzilla"])
def test_without_its_matcher_packages_the_classifier_reads_by_the_regex(monkeypatch: pytest.MonkeyPatch,
                                                                         missing: str) -> None:
    """adws's code run on a Python without its dependencies (tools/show-routing.py from a checkout): the same
    answers, by the regex, rather than ModuleNotFoundError."""
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` raises ImportError
    matcher = KeywordMatcher(load_config(ROOT / "config.toml").intake.keywords.lists)  # type: ignore[union-attr]
    issues = corpus()[:10]
    for issue in issues:
        text = f"{issue['title']}\n{issue['body']}"
        expected = old_counts(matcher.lists, text)
        assert matcher.counts(text) == expected, issue["number"]
        best = max(expected)
        assert matcher.classify(str(issue["title"]), str(issue["body"])) == (
            (matcher.lists[expected.index(best)][0], best) if best else None)
    assert matcher._built[0] is None


LISTS = (("architecture", ("architecture", "system design", "design doc", "rfc")),
         ("reasoning", ("root cause", "investigate", "prove", "analyse", "analyze")),
         ("docs", ("documentation", "readme", "docstring", "changelog")),
         ("code", ("implement", "refactor", "fix", "unit test", "endpoint")))


@pytest.mark.parametrize("text", [
    "", "fix", "FIX", "prefix", "hotfix fix", "Fix-it", "_fix", "1fix", "éfix", "é fix", "—fix", "fixfix",
    "system design doc", "system designdoc", "xroot cause", "xroot causes fix", "design document",
    "ana\u017fyse", "ANALY\u017fE", "\u212aernel fix", "\u0130nvestigate", "\u0131nvestigate", "İİ fix",
    "root\u00a0cause", "ro\u0301ot cause", "\ud800fix", "fix\ud800", "a\u0301fix", "😀fix 😀 readme",
    "Σ fix ς", "ﬁx", "ǅfix", "x" * 500 + " fix",
])
def test_edge_cases_agree(text: str) -> None:
    assert KeywordMatcher(LISTS).counts(text) == old_counts(LISTS, text)


def test_configs_outside_the_automaton_alphabet_use_the_regex() -> None:
    lists = (("docs", ("café", "readme")), ("code", ("fix?", "c++", ".net")))
    matcher = KeywordMatcher(lists)
    for text in ("Café readme", "fix? c++ .net asp.net", "CAFÉ fix"):
        assert matcher.counts(text) == old_counts(lists, text)
    assert matcher._built[0] is None


def test_punctuation_keywords_agree() -> None:
    lists = (("code", ("c++", "-x", "node.js", "e-mail", "a b")), ("docs", ("++", "mail")))
    matcher = KeywordMatcher(lists)
    for text in ("c++ and c++c++", "x-x -x", "node.jsnode.js", "e-mail email e-mail-e-mail", "a b a  b",
                 "++c++", "mail e-mail"):
        assert matcher.counts(text) == old_counts(lists, text), text


_TRICKY = "fixrootcausedesignsytemdocanalysereadme _-.+?\n\t" + "".join(TWINS) + "ÉéΣσςﬁ\u0301😀\u00a0K"
_WORD_ALPHABET = "abcdefirstuxyz _-+.\u017f\u212a\u0130\u0131é"


@settings(max_examples=400, deadline=None)
@given(
    lists=st.lists(
        st.lists(st.text(alphabet=_WORD_ALPHABET, min_size=1, max_size=6).filter(lambda w: w.strip()),
                 min_size=1, max_size=4),
        min_size=1, max_size=4),
    text=st.text(alphabet=_TRICKY + _WORD_ALPHABET, max_size=200),
)
def test_random_keywords_and_text_agree(lists: list[list[str]], text: str) -> None:
    config = tuple((f"s{i}", tuple(w.strip() for w in words)) for i, words in enumerate(lists))
    assert KeywordMatcher(config).counts(text) == old_counts(config, text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from(corpus()))
def test_any_text_spliced_into_real_issues_agrees(noise: str, issue: dict[str, object]) -> None:
    body = str(issue["body"])
    cut = len(noise) % (len(body) + 1)
    text = f"{issue['title']}\n{body[:cut]}{noise}{body[cut:]}"
    assert KeywordMatcher(LISTS).counts(text) == old_counts(LISTS, text)



@pytest.fixture(params=["joined", "apart"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each title-and-body test twice: as short texts are read (joined) and as long ones are (one by one)."""
    if request.param == "apart":
        monkeypatch.setattr(keywords, "_JOIN_BELOW", 0)
    return str(request.param)


def test_title_and_body_read_apart_give_the_joined_texts_counts(reading: str) -> None:
    intake = load_config(ROOT / "config.toml").intake
    assert intake.keywords is not None
    matcher, lists = intake.keywords, intake.keywords.lists
    for issue in corpus():
        title, body = str(issue["title"]), str(issue["body"])
        assert matcher.counts(title, body) == old_counts(lists, f"{title}\n{body}"), issue["number"]
        assert matcher.classify(title, body) == matcher.classify(f"{title}\n{body}")
    assert matcher._built[0] is not None and matcher._built[0].split  # no keyword holds a newline: read apart


@pytest.mark.parametrize(("title", "body"), [
    ("", ""), ("fix", ""), ("", "fix"), ("pre", "fix"), ("root", "cause"), ("system", "design doc"), ("fix\n", "fix"),
    ("😀", "fix 😀readme"), ("x\u212a", "\u212aernel fix"), ("éfix", "é fix"), ("ana\u017f", "yse"),
])
def test_parts_edge_cases_agree(title: str, body: str, reading: str) -> None:
    assert KeywordMatcher(LISTS).counts(title, body) == old_counts(LISTS, f"{title}\n{body}")


def test_a_keyword_with_a_newline_reads_the_parts_joined(reading: str) -> None:
    lists = (("code", ("fix\nit", "fix")), ("docs", ("it",)))
    matcher = KeywordMatcher(lists)
    for title, body in (("fix", "it"), ("fix", "it fix"), ("a fix", "fix\nit")):
        assert matcher.counts(title, body) == old_counts(lists, f"{title}\n{body}")
    assert matcher.counts("fix", "it") == [1, 0]


@pytest.mark.parametrize("text", [
    # Latin Extended-A letters share the lead byte 0xC4/0xC5 with the twins; ê, ª and ™ share a byte with K.
    "ĀāĂćčĞğ İnvestigate ıfix", "ąćęłńśźż fix ſ ana\u017fyse", "ê fix ª ™ \u212aernel ℃ fix", "\u0130" * 50 + "fix",
    "Ğfix İfix", "ćİ", "fix\u212a", "\u212a\u212a fix \u017f\u017f", "ĦĐ design doc \u0131\u0131 rfc",
    "😀 \U0001f64f\u0130nvestigate \u212a", "\ud800\u0130fix",
    # Many bytes that mark a twin (Polish, Vietnamese text): the twins are replaced by whole sequences instead.
    "Zażółć gęślą jaźń, napraw błąd ſ \u0130nvestigate \u212aernel fix " * 40,
    "Tiếng Việt: sửa lỗi ê ê ê fix \u212a " * 40, "\u0131fix " * 40,
])
def test_twins_among_their_byte_neighbours_agree(text: str) -> None:
    assert KeywordMatcher(LISTS).counts(text) == old_counts(LISTS, text)
    twins = (("s", ("ik", "si", "ks", "fix")),)
    assert KeywordMatcher(twins).counts(text) == old_counts(twins, text)


_NEIGHBOURS = "ĀāćčĞğłńśŁŅſ\u0130\u0131\u212aêª™℃→’😀 fixkisn\n"


@settings(max_examples=300, deadline=None)
@given(
    lists=st.lists(
        st.lists(st.text(alphabet=_WORD_ALPHABET + "\n", min_size=1, max_size=6).filter(lambda w: w.strip()),
                 min_size=1, max_size=4),
        min_size=1, max_size=4),
    title=st.text(alphabet=_TRICKY + _NEIGHBOURS, max_size=60),
    body=st.text(alphabet=_TRICKY + _WORD_ALPHABET + _NEIGHBOURS, max_size=200),
)
def test_random_parts_agree_with_the_joined_text(lists: list[list[str]], title: str, body: str) -> None:
    config = tuple((f"s{i}", tuple(w.strip(" ") for w in words)) for i, words in enumerate(lists))
    expected = old_counts(config, f"{title}\n{body}")
    assert KeywordMatcher(config).counts(title, body) == expected
    join_below, keywords._JOIN_BELOW = keywords._JOIN_BELOW, 0  # read apart (not a fixture: hypothesis)
    try:
        assert KeywordMatcher(config).counts(title, body) == expected
    finally:
        keywords._JOIN_BELOW = join_below


@pytest.mark.parametrize(("title", "body"), [
    ("xroot causes fix", None), ("xroot", "causes fix fix"), ("Fix the README", "readme, docs, fix"), ("nothing", ""),
    ("", None), ("ana\u017fyse", "root cause \u212aernel"), ("system design", "design doc rfc"),
])
def test_classify_is_the_most_hits_first_declared(title: str, body: str | None) -> None:
    matcher = KeywordMatcher(LISTS)
    counts = old_counts(LISTS, title if body is None else f"{title}\n{body}")
    best = max(counts)
    expected = (LISTS[counts.index(best)][0], best) if best else None
    assert matcher.counts(title, body) == counts  # the general reading (which builds the automaton)
    assert matcher.classify(title, body) == expected  # classify's own reading of short texts


def _keyword_lists(alphabet: str) -> st.SearchStrategy[list[list[str]]]:
    return st.lists(st.lists(st.text(alphabet=alphabet, min_size=1, max_size=6).filter(lambda w: w.strip()),
                             min_size=1, max_size=4), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    # Keywords with é go to the regex alone: half the lists are ASCII (with the twins), which the automaton reads.
    lists=st.one_of(_keyword_lists(_WORD_ALPHABET), _keyword_lists(_WORD_ALPHABET.replace("é", ""))),
    title=st.text(alphabet=_TRICKY + _NEIGHBOURS + "\ud800", max_size=60),
    body=st.one_of(st.none(), st.text(alphabet=_TRICKY + _WORD_ALPHABET + _NEIGHBOURS + "\udfff", max_size=200)),
)
def test_classify_reads_what_the_regex_reads(lists: list[list[str]], title: str, body: str | None) -> None:
    # classify reads short texts on its own inlined path (not through counts): the same answers, twins and lone
    # surrogates (the non-ASCII encoding's error handler) and all.
    config = tuple((f"s{i}", tuple(w.strip() for w in words)) for i, words in enumerate(lists))
    counts = old_counts(config, title if body is None else f"{title}\n{body}")
    best = max(counts)
    expected = (config[counts.index(best)][0], best) if best else None
    assert KeywordMatcher(config).classify(title, body) == expected  # the first call builds, then reads inline
