"""What every JSON output parser shares: reading records from a noisy tail, and the accumulator they fill."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, tzinfo
from typing import Any

from adws.attempt import OutcomeClass, ParsedOutput, Usage
from adws.dataclass_cache import dataclass, field
from adws.parsers.reset import find_reset_time

Parser = Callable[[str, datetime], ParsedOutput]
Record = dict[str, Any]

MAX_MESSAGE = 2000  # error messages are for reasons and patterns, not for storing whole transcripts
_MAX_OBJECT_STARTS = 32  # bounds the work on a large text full of lines that open an object


def loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested input
        return None


def _dicts(value: Any) -> list[Record]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):  # `claude --output-format json --verbose` prints an array of messages
        return [item for item in value if isinstance(item, dict)]
    return []


def json_records(text: str, rest: list[str] | None = None) -> Iterator[Record]:
    """Every JSON object in `text`: the whole text, else one per line (JSONL), else pretty-printed ones, else
    the last complete records of a document whose head was cut off (`cut_document`: the runner keeps only the
    tail of a long output, and `claude --output-format json --verbose` prints its whole transcript as one line).

    `rest`, when given, receives the lines that are no part of any JSON value: what the CLI printed beside its
    records (an npm warning, a plain-text error), as opposed to the records, which carry the agent's transcript.
    A line that opens like a record (`{"`, `[{`, `["`) but does not parse is a record cut short, not text beside.
    """
    stripped = text.strip()
    whole = _dicts(loads(stripped)) if stripped[:1] in ("{", "[") else []
    if whole:
        yield from whole
        return
    found = False
    stray: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line[:1] in ("{", "["):
            value = loads(line)
            if value is not None or line == "null":
                records = _dicts(value)
                found = found or bool(records)
                yield from records
                continue
            if line[:2] in _RECORD_OPENINGS:
                continue
        if line:
            stray.append(line)
    if found:
        if rest is not None:
            rest.extend(stray)
        return
    pretty = list(_pretty_objects(text, rest))
    if pretty:
        yield from pretty
        return
    cut = cut_document(stripped)
    if cut:
        yield from cut
    elif rest is not None:
        rest.extend(stray)


_RECORD_OPENINGS = frozenset({'{"', "[{", '["', "{}", "[]"})


def _pretty_objects(text: str, rest: list[str] | None) -> Iterator[Record]:
    # A pretty-printed object (Gemini's JSON) opens with "{" at the start of a line, maybe after noise.
    decoder = json.JSONDecoder()
    resume = 0
    outside: list[str] = []
    found = False
    for attempt, match in enumerate(re.finditer(r"^[ \t]*\{", text, re.MULTILINE)):
        if attempt >= _MAX_OBJECT_STARTS:
            break
        start = match.end() - 1
        if start < resume:
            continue
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            continue
        records = _dicts(value)
        if records:
            found = True
            outside.append(text[resume:start])
            resume = end
            yield from records
    if found and rest is not None:
        outside.append(text[resume:])
        rest.extend(line.strip() for chunk in outside for line in chunk.splitlines()
                    if line.strip() and not _JSON_SYNTAX.match(line.strip()))


# A line of pretty-printed JSON (what is left of a document cut at the head of a tail), not a line of text.
_JSON_SYNTAX = re.compile(r'["{}\[\],]|-?\d|(?:true|false|null)\b')


_MAX_CUT_TRIES = 512  # separators tried, from the end back, when recovering the records of a cut document
_WS = " \t\r\n"


def cut_document(text: str) -> list[Record]:
    """The complete top-level records at the end of one JSON document whose head is missing: `text` ends with
    the document's closing `]` (an array of records: the elements after the cut) or `}` (one object: its
    members after the cut, as one record). Tries at most _MAX_CUT_TRIES separators, each read in place (no
    copies of the text); [] when none is found. A separator is a top-level one exactly when the element after
    it parses as one JSON value ending at the next top-level separator (or the closing bracket)."""
    if text[-1:] not in ("]", "}"):
        return []
    in_object = text[-1] == "}"
    decoder = json.JSONDecoder()
    items: list[tuple[Any, Any]] = []
    boundary = len(text) - 1  # where the item found next must end: the closer, then the separator before it
    pos = boundary
    for _ in range(_MAX_CUT_TRIES):
        comma = text.rfind(",", 0, pos)
        item = _item_at(decoder, text, comma + 1, in_object)
        if item is not None and item[2] == boundary:
            items.append(item[:2])
            boundary = comma
        if comma < 0:
            break
        pos = comma
    items.reverse()
    if in_object:
        return [dict(items)] if items else []
    return [value for _, value in items if isinstance(value, dict)]


def _item_at(decoder: json.JSONDecoder, text: str, start: int, in_object: bool) -> tuple[Any, Any, int] | None:
    """(key, value, index after the item and its trailing whitespace) of the array element or object member
    starting at `start` (after whitespace), or None when none does."""
    try:
        index = _skip_ws(text, start)
        key = None
        if in_object:
            key, index = decoder.raw_decode(text, index)
            index = _skip_ws(text, index)
            if not isinstance(key, str) or text[index : index + 1] != ":":
                return None
            index = _skip_ws(text, index + 1)
        value, index = decoder.raw_decode(text, index)
    except (ValueError, RecursionError):
        return None
    return key, value, _skip_ws(text, index)


def _skip_ws(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WS:
        index += 1
    return index


def obj(value: Any) -> Record:
    return value if isinstance(value, dict) else {}


def string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# The largest figure one attempt may report (tokens, cost): the bound `adws state import` puts on a usage row
# (adws.state.maintenance.MAX_COUNT; tests/parsers check they agree), so what a run records always exports and
# imports again. Far beyond any real attempt; a larger figure is taken as not reported.
MAX_FIGURE = 10**12


def number(value: Any) -> float:
    """A finite number from 0 to MAX_FIGURE, else 0 (not reported): token counts and costs from untrusted JSON."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) and 0 <= number <= MAX_FIGURE else 0.0


def integer(value: Any) -> int:
    return int(number(value))


def text_of(content: Any) -> str:
    """Text of a message `content`: a string, or a list of blocks/strings, or a block with `text`."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return string(content.get("text")) or ""
    if isinstance(content, list):
        parts = [item if isinstance(item, str) else string(obj(item).get("text")) or "" for item in content]
        return "".join(parts)
    return ""


def with_status(message: str | None, status: int) -> str | None:
    """Keep an HTTP status next to its message so declared patterns (`status 429`) can see it."""
    if not status or (message and str(status) in message):
        return message
    return f"{message} (HTTP {status})" if message else f"HTTP {status}"


# ---------------------------------------------------------------------------------------------------------
# The accumulator every JSON parser fills
# ---------------------------------------------------------------------------------------------------------


# Error records' messages kept beside error_message (each at most MAX_MESSAGE): a run that logged more is bounded.
_OTHER_ERRORS = 16


@dataclass
class Acc:
    now: datetime
    recognised: int = 0
    final_text: str | None = None
    is_error: bool | None = None
    error_message: str | None = None
    rate_limited: bool = False
    reset_at: datetime | None = None
    notes: list[str] = field(default_factory=list)
    usage_readings: list[tuple[str, float, datetime | None]] = field(default_factory=list)  # ParsedOutput's
    # Usage: per-call figures add up unless a record reported the run's total, which then wins.
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    usage_seen: bool = False
    usage_is_total: bool = False
    per_message: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Assistant text by message id; the answer is the text of the last message that had any.
    texts: dict[str, list[str]] = field(default_factory=dict)
    last_text_key: str = ""
    declared: OutcomeClass | None = None  # what a structured field of the output says happened
    requests: int | None = None  # requests the CLI reports having used
    beside: list[str] = field(default_factory=list)  # stdout lines outside the records (json_records' rest)
    # The messages of the CLI's other error records (error_message keeps the first, or the one that replaced it):
    # a non-fatal error before the one that ended the run (Cline's "Retrying..." before its 429) must not hide it.
    other_errors: list[str] = field(default_factory=list)
    zone: tzinfo | None = None  # the zone of a reset time written without one (find_reset_time); None: UTC

    def declare(self, outcome: OutcomeClass | None) -> None:
        """Record the class a structured field names; the first one stands (later ones are consequences)."""
        if outcome is not None and self.declared is None:
            self.declared = outcome

    def add_usage(self, input_tokens: int, output_tokens: int, cost_usd: float = 0.0) -> None:
        if self.usage_is_total:
            return
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost_usd += cost_usd
        self.usage_seen = True

    def total_usage(self, input_tokens: int, output_tokens: int, cost_usd: float = 0.0) -> None:
        self.input_tokens, self.output_tokens, self.cost_usd = input_tokens, output_tokens, cost_usd
        self.usage_seen = self.usage_is_total = True

    def fail(self, message: str | None, *, replace: bool = False) -> None:
        """The run failed; `message` becomes error_message when there is none yet (or with `replace`), and is kept
        among `other_errors` otherwise (at most _OTHER_ERRORS), so the classifier reads every error record."""
        self.is_error = True
        if not message:
            return
        message = message[:MAX_MESSAGE]
        if replace or not self.error_message:
            message, self.error_message = self.error_message, message
        if message and message != self.error_message and len(self.other_errors) < _OTHER_ERRORS:
            self.other_errors.append(message)

    def add_text(self, key: str, text: str) -> None:
        if text:
            self.texts.setdefault(key, []).append(text)
            self.last_text_key = key

    def answer(self) -> str:
        return "".join(self.texts.get(self.last_text_key, []))

    def result(self) -> ParsedOutput:
        if not self.usage_is_total and self.per_message:
            for input_tokens, output_tokens in self.per_message.values():
                self.add_usage(input_tokens, output_tokens)
        usage = None
        if self.usage_seen:
            usage = Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens, cost_usd=self.cost_usd)
        reset_at = self.reset_at
        if reset_at is None and self.error_message:
            reset_at = find_reset_time(self.error_message, self.now, zone=self.zone)
        return ParsedOutput(
            final_text=self.final_text,
            is_error=self.is_error,
            error_message=self.error_message,
            usage=usage,
            reset_at=reset_at,
            rate_limited=self.rate_limited,
            well_formed=self.recognised > 0,
            notes=self.notes,
            usage_readings=self.usage_readings,
            declared=self.declared,
            requests=self.requests,
            report_text="\n".join(self.beside + self.other_errors) if self.recognised else None,
        )


Handler = Callable[[Record, Acc], None]


def typed_parser(
    handlers: Mapping[str, Handler],
    *,
    needs: Mapping[str, frozenset[str]] | None = None,
    other: Callable[[str], bool] = lambda _: False,
    zone: Callable[[], tzinfo] | None = None,
) -> Parser:
    """A parser for a JSONL format whose records carry a `type`: one handler per type, `other` for the
    types that belong to the format but need no handling. Formats share type names ("result", "error"),
    so `needs` names the keys at least one of which a record of that type must have to be this format's:
    Claude's output read with the Copilot parser must come out unrecognised, not as an empty success.
    `zone` gives the zone the CLI writes a reset time without a zone in (default UTC)."""
    shapes = needs or {}

    def parse(stdout: str, now: datetime) -> ParsedOutput:
        acc = Acc(now, zone=zone() if zone is not None else None)
        for record in json_records(stdout, acc.beside):
            kind = string(record.get("type")) or ""
            handler = handlers.get(kind)
            if kind in shapes and not shapes[kind] & record.keys():
                continue
            if handler is None:
                if other(kind):
                    acc.recognised += 1
                continue
            acc.recognised += 1
            try:
                handler(record, acc)
            except Exception:  # a record of a shape nobody foresaw must not lose the rest of the output
                acc.notes.append(f"skipped a malformed {kind!r} record")
        return acc.result()

    return parse
