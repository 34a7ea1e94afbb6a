"""Output parsers: recorded real-shaped outputs, truncated tails, reset times, and arbitrary input."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adws.attempt import OutcomeClass, ParsedOutput, RunOutcome, Usage
from adws.parsers import PARSERS, find_reset_time, parse_output, read_output
from adws.parsers._base import Acc, typed_parser
from adws.runner import RunRequest
from tests.helpers import DATA

OUTPUTS = DATA / "outputs"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # a Monday


def parsed(name: str, fmt: str) -> ParsedOutput:
    return parse_output(fmt, (OUTPUTS / name).read_text(), NOW)


def outcome(stdout: str, exit_code: int = 0, stderr: str = "", total: int | None = None) -> RunOutcome:
    """What the runner saw: `stdout` is the tail it kept of `total` bytes (all of them by default)."""
    written = len(stdout.encode()) if total is None else total
    return RunOutcome(["cli"], exit_code, None, False, 10, None, None, stdout, stderr, written, len(stderr), False)


ORG_DISABLED = (
    "Your organization has disabled Claude subscription access for Claude Code · "
    "Use an Anthropic API key instead, or ask your admin to enable access"
)
COPILOT_RATE = (
    "Sorry, you've hit a rate limit that restricts the number of Copilot model requests you can make "
    "within a specific time period. Please try again in 27 minutes."
)
CLINE_UNAUTHORIZED = (
    "Unauthorized: Please make sure you're using the latest version of Cline and re-authenticate your Cline account."
)

RECORDED = [
    (
        "claude-stream-success.jsonl",
        "claude-stream-json",
        ParsedOutput(
            final_text="Fixed: `parse` no longer drops the last line.",
            is_error=False,
            usage=Usage(input_tokens=10 + 1920 + 29800, output_tokens=74, cost_usd=0.0421),
        ),
    ),
    (
        "claude-stream-usage-limit.jsonl",
        "claude-stream-json",
        ParsedOutput(
            final_text="You've hit your limit · resets 2pm (Asia/Shanghai)",
            is_error=True,
            error_message="You've hit your limit · resets 2pm (Asia/Shanghai) (HTTP 429)",
            usage=Usage(),
            reset_at=datetime(2026, 3, 3, 6, 0, tzinfo=UTC),  # resetsAt of the rejected event
            rate_limited=True,
            declared=OutcomeClass.RATE_LIMITED,  # the synthetic turn's `error: "rate_limit"`
        ),
    ),
    (
        "claude-stream-org-disabled.jsonl",
        "claude-stream-json",
        ParsedOutput(
            final_text=ORG_DISABLED,
            is_error=True,
            error_message=f"{ORG_DISABLED} (HTTP 403)",
            usage=Usage(input_tokens=3100 + 250000 + 9000000, output_tokens=88000, cost_usd=12.5),
        ),
    ),
    (
        "claude-stream-max-turns.jsonl",
        "claude-stream-json",
        ParsedOutput(
            final_text="",
            is_error=True,
            error_message="error_max_turns",
            usage=Usage(input_tokens=100, output_tokens=900, cost_usd=0.3),
            declared=OutcomeClass.ERROR,  # the turn limit, by its subtype (no terminal_reason before 2.1)
        ),
    ),
    (
        "claude-json-success.json",
        "claude-json",
        ParsedOutput(
            final_text="The capital of France is Paris.",
            is_error=False,
            usage=Usage(input_tokens=12003, output_tokens=9, cost_usd=0.0032),
        ),
    ),
    (
        "claude-json-legacy-limit.json",
        "claude-json",
        ParsedOutput(
            final_text="Claude AI usage limit reached|1755615600",
            is_error=True,
            error_message="Claude AI usage limit reached|1755615600",
            usage=Usage(),
            reset_at=datetime(2025, 8, 19, 15, 0, tzinfo=UTC),
        ),
    ),
    (
        "claude-json-verbose.json",
        "claude-json",
        ParsedOutput(
            final_text="All green.", is_error=False, usage=Usage(input_tokens=5, output_tokens=3, cost_usd=0.001)
        ),
    ),
    (
        "copilot-success.jsonl",
        "copilot-json",
        ParsedOutput(
            final_text="The last line is kept now; tests pass.",
            is_error=False,
            usage=Usage(input_tokens=9000 + 9400, output_tokens=30 + 12),
            requests=1,  # result.usage.premiumRequests
        ),
    ),
    (
        "copilot-rate-limited.jsonl",
        "copilot-json",
        ParsedOutput(
            final_text="",
            is_error=True,
            error_message=f"{COPILOT_RATE} (HTTP 429)",
            reset_at=NOW + timedelta(minutes=27),
            rate_limited=True,
            declared=OutcomeClass.RATE_LIMITED,  # errorType "rate_limit"
            requests=0,
        ),
    ),
    (
        "opencode-success.jsonl",
        "opencode-json",
        ParsedOutput(
            final_text="All three tests pass.",
            usage=Usage(input_tokens=20100 + 540 + 20100, output_tokens=95 + 7 + 3, cost_usd=0.002 + 0.0011),
        ),
    ),
    (
        "opencode-rate-limited.jsonl",
        "opencode-json",
        ParsedOutput(
            is_error=True,
            error_message="Rate limit exceeded. Retry-After: 120 (HTTP 429)",
            reset_at=NOW + timedelta(seconds=120),
            rate_limited=True,
        ),
    ),
    (
        "gemini-success.json",
        "gemini-json",
        ParsedOutput(
            final_text="The parser now keeps the last line.",
            is_error=False,
            usage=Usage(input_tokens=24900, output_tokens=31 + 144),
        ),
    ),
    (
        "gemini-error-stderr.txt",
        "gemini-json",
        ParsedOutput(
            is_error=True,
            error_message="You have exhausted your daily quota on this model. (HTTP 429)",
            rate_limited=True,
        ),
    ),
    (
        "gemini-stream-success.jsonl",
        "gemini-stream-json",
        ParsedOutput(
            final_text="Fixed the parser.", is_error=False, usage=Usage(input_tokens=12800, output_tokens=200)
        ),
    ),
    (
        "gemini-stream-error.jsonl",
        "gemini-stream-json",
        ParsedOutput(
            final_text="",
            is_error=True,
            error_message="[API Error: You have exhausted your capacity on this model. "
            "Your quota will reset after 1h12m5s.]",
            usage=Usage(),
            reset_at=NOW + timedelta(hours=1, minutes=12, seconds=5),
            notes=["Loop detected, stopping execution"],  # kept for the result: a success it stopped is an error
        ),
    ),
    (
        "cline-success.jsonl",
        "cline-json",
        ParsedOutput(
            final_text="Tests pass.", is_error=False, usage=Usage(input_tokens=93000, output_tokens=5, cost_usd=0.021)
        ),
    ),
    (
        "cline-auth-error.jsonl",
        "cline-json",
        ParsedOutput(final_text="Unauthorized: …", is_error=True, error_message=CLINE_UNAUTHORIZED, usage=Usage()),
    ),
    (
        "cline-v1-success.jsonl",
        "cline-json",
        ParsedOutput(
            final_text="Fixed the off-by-one in parse().",
            is_error=False,
            usage=Usage(input_tokens=1200 + 300 + 5000 + 300 + 5300, output_tokens=100, cost_usd=0.012 + 0.003),
        ),
    ),
    (
        "ollama-success.txt",
        "text",
        ParsedOutput(final_text="Here is the fix:\n\n```python\ndef parse(lines):\n    return lines\n```"),
    ),
]


@pytest.mark.parametrize(("name", "fmt", "expected"), RECORDED, ids=[r[0] for r in RECORDED])
def test_recorded_output(name: str, fmt: str, expected: ParsedOutput) -> None:
    # report_text (what the patterns may read of stdout) has tests of its own below.
    assert dataclasses.replace(parsed(name, fmt), report_text=None) == expected


def test_every_recorded_output_is_tested() -> None:
    recorded = {path.name for path in OUTPUTS.iterdir() if path.name != "README.md"}
    assert recorded == {name for name, _, _ in RECORDED}


JSONL = [(name, fmt) for name, fmt, _ in RECORDED if name.endswith(".jsonl")]


@pytest.mark.parametrize(("name", "fmt"), JSONL, ids=[name for name, _ in JSONL])
def test_a_tail_that_starts_mid_line_parses_the_same(name: str, fmt: str) -> None:
    text = (OUTPUTS / name).read_text()
    first_line = text.index("\n")
    tail = text[first_line // 2 :]
    # read_output knows the runner kept only the end (more bytes came than the tail holds): what is left of the
    # first line is part of a record, not a line the CLI printed beside its records.
    assert read_output(fmt, outcome(tail, total=len(text.encode())), NOW) == read_output(fmt, outcome(text), NOW)


def test_a_tail_without_the_result_has_no_final_text() -> None:
    lines = (OUTPUTS / "claude-stream-success.jsonl").read_text().splitlines()
    result = parse_output("claude-stream-json", "\n".join(lines[:-1]), NOW)
    assert (result.final_text, result.is_error, result.well_formed) == (None, None, True)
    # Per-message usage still adds up (each message id once) when the run's total is missing.
    assert result.usage == Usage(input_tokens=4 + 1800 + 14000 + 6 + 120 + 15800, output_tokens=60 + 14)


def test_json_formats_without_any_record_are_not_well_formed() -> None:
    for fmt in PARSERS:
        if fmt == "text":
            continue
        result = parse_output(fmt, "Error: something went wrong\nnot json at all\n", NOW)
        assert (result.well_formed, result.final_text) == (False, None), fmt


def test_records_of_other_formats_are_not_recognised() -> None:
    claude = (OUTPUTS / "claude-stream-success.jsonl").read_text()
    assert parse_output("copilot-json", claude, NOW).well_formed is False
    assert parse_output("opencode-json", claude, NOW).well_formed is False


def test_claude_heartbeats_are_not_rejections() -> None:
    line = {"type": "rate_limit_event", "rate_limit_info": {"status": "allowed_warning", "resetsAt": 1772517600}}
    result = parse_output("claude-stream-json", json.dumps(line), NOW)
    assert (result.rate_limited, result.reset_at, result.notes) == (False, None, ["rate limit status allowed_warning"])


def test_claude_overage_rejection_while_using_overage_is_a_rejection() -> None:
    info = {"status": "allowed", "overageStatus": "rejected", "isUsingOverage": True, "resetsAt": 1772517600}
    result = parse_output("claude-stream-json", json.dumps({"type": "rate_limit_event", "rate_limit_info": info}), NOW)
    assert (result.rate_limited, result.reset_at) == (True, datetime(2026, 3, 3, 6, 0, tzinfo=UTC))


def test_copilot_sub_agent_messages_are_not_the_answer() -> None:
    lines = [
        {"type": "assistant.message", "data": {"messageId": "a", "content": "main answer"}},
        {"type": "assistant.message", "agentId": "sub-1", "data": {"messageId": "b", "content": "sub-agent"}},
        {"type": "result", "exitCode": 0},
    ]
    result = parse_output("copilot-json", "\n".join(json.dumps(line) for line in lines), NOW)
    assert result.final_text == "main answer"


def test_copilot_shutdown_metrics_are_the_total() -> None:
    lines = [
        {"type": "assistant.usage", "data": {"model": "m", "inputTokens": 10, "outputTokens": 1}},
        {
            "type": "session.shutdown",
            "data": {"modelMetrics": {"m": {"usage": {"inputTokens": 70, "outputTokens": 7}}}},
        },
        {"type": "assistant.usage", "data": {"model": "m", "inputTokens": 10, "outputTokens": 1}},
    ]
    result = parse_output("copilot-json", "\n".join(json.dumps(line) for line in lines), NOW)
    assert result.usage == Usage(input_tokens=70, output_tokens=7)


def test_a_record_a_handler_cannot_read_is_skipped_with_a_note() -> None:
    def strict(record: dict[str, Any], acc: Acc) -> None:
        acc.final_text = record["text"].upper()  # a KeyError or AttributeError on an unforeseen shape

    parse = typed_parser({"answer": strict}, needs={"answer": frozenset({"text"})})
    result = parse('{"type":"answer","text":["not","a","string"]}\n{"type":"answer","text":"fine"}', NOW)
    assert (result.final_text, result.notes) == ("FINE", ["skipped a malformed 'answer' record"])
    assert parse('{"type":"answer","words":"no text key"}', NOW).well_formed is False


def test_text_that_is_mostly_undecodable_is_not_well_formed() -> None:
    junk = (bytes(range(0x80, 0x100)) * 4).decode("utf-8", errors="replace")
    result = parse_output("text", junk, NOW)
    assert (result.well_formed, result.notes) == (False, ["100% of the output is undecodable or control characters"])
    assert parse_output("text", "déjà vu — ça marche ✓", NOW).well_formed is True


def test_text_finds_reset_times() -> None:
    result = parse_output("text", "Error: 429 Too Many Requests\nPlease try again in 15 minutes.\n", NOW)
    assert result.reset_at == NOW + timedelta(minutes=15)
    assert parse_output("text", "  \n", NOW).final_text is None


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        parse_output("claude-stream", "", NOW)
    assert str(caught.value) == (
        "unknown output format 'claude-stream'; expected one of: claude-json, claude-stream-json, cline-json, "
        "codex-json, copilot-json, gemini-json, gemini-stream-json, opencode-json, text"
    )


# --- find_reset_time --------------------------------------------------------------------------------------

KST = ZoneInfo("Asia/Seoul")
RESET_TEXTS = [
    ("Claude AI usage limit reached|1772517600", datetime(2026, 3, 3, 6, 0, tzinfo=UTC)),
    ('{"status":"rejected","resetsAt":1772517600,"rateLimitType":"five_hour"}', datetime(2026, 3, 3, 6, tzinfo=UTC)),
    ('{"overageResetsAt":1772517600}', None),  # another window's reset, not this one
    ('{"resets_at": 1772517600000}', datetime(2026, 3, 3, 6, 0, tzinfo=UTC)),  # milliseconds
    ("HTTP/1.1 429\nRetry-After: 120\n", NOW + timedelta(seconds=120)),
    ("retry-after: Mon, 02 Mar 2026 10:00:00 GMT", datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),
    ("Please try again in 2h 30m.", NOW + timedelta(hours=2, minutes=30)),
    ("Please try again in 16h2m29.76s.", NOW + timedelta(hours=16, minutes=2, seconds=29.76)),
    ("Retrying in 2892 seconds… (attempt 1/10)", NOW + timedelta(seconds=2892)),
    ("Your quota will reset after 2h13m34s.", NOW + timedelta(hours=2, minutes=13, seconds=34)),
    ("Please retry in 43.2s.", NOW + timedelta(seconds=43.2)),
    ("try again in 1 hour and 5 minutes", NOW + timedelta(hours=1, minutes=5)),
    ("Retrying after 6173ms...", None),  # a client back-off, not a reset
    ("You will regain access on 2026-04-01 at 00:00 UTC.", datetime(2026, 4, 1, tzinfo=UTC)),
    ("Your quota resets on 2026-03-05T09:30:00Z.", datetime(2026, 3, 5, 9, 30, tzinfo=UTC)),
    ("limit resets on 2026-03-05T09:30:00+02:00", datetime(2026, 3, 5, 7, 30, tzinfo=UTC)),
    ('{"timestamp":"2026-03-02T09:31:00.000Z","message":"done"}', None),  # a date, but no reset
    ("You've hit your limit · resets 4pm (Asia/Seoul)", datetime(2026, 3, 3, 16, tzinfo=KST)),  # 4pm passed
    ("You've hit your limit · resets 8pm (Asia/Seoul)", datetime(2026, 3, 2, 20, tzinfo=KST)),
    ("You've hit your limit - resets Feb 7, 11am (Asia/Seoul)", datetime(2027, 2, 7, 11, tzinfo=KST)),
    ("You've hit your limit · resets Apr 23 at 4pm (America/Recife)", datetime(2026, 4, 23, 19, tzinfo=UTC)),
    ("Your limit will reset at 5pm (Europe/Warsaw).", datetime(2026, 3, 2, 16, tzinfo=UTC)),
    ("usage limit reached, resets at 3pm (UTC)", datetime(2026, 3, 2, 15, tzinfo=UTC)),
    ("usage limit reached, resets at 15:00 UTC", datetime(2026, 3, 2, 15, tzinfo=UTC)),
    ("resets 12am (UTC)", datetime(2026, 3, 3, 0, tzinfo=UTC)),
    ("resets at 9am", datetime(2026, 3, 3, 9, tzinfo=UTC)),  # no zone: now's zone
    ("resets 5 accounts", None),
    ("resets 13pm (UTC)", None),
    ("resets 4pm (Mars/Olympus_Mons)", None),  # an unknown zone is not guessed at
    ("try again in 5s. Later: try again in 1h.", NOW + timedelta(hours=1)),  # the last announcement
    ("try again in 9999999 days", None),  # too far to be a reset
    ("The answer is 42.", None),
]


@pytest.mark.parametrize(("text", "expected"), RESET_TEXTS, ids=[t for t, _ in RESET_TEXTS])
def test_find_reset_time(text: str, expected: datetime | None) -> None:
    found = find_reset_time(text, NOW)
    assert found == expected
    assert found is None or found.tzinfo is UTC


def test_find_reset_time_takes_naive_now_as_utc() -> None:
    assert find_reset_time("try again in 10m", NOW.replace(tzinfo=None)) == NOW + timedelta(minutes=10)


def test_clock_times_keep_the_wall_clock_across_dst() -> None:
    before_switch = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)  # Warsaw moves to summer time on the 29th
    found = find_reset_time("resets 5pm (Europe/Warsaw)", before_switch)
    assert found == datetime(2026, 3, 29, 17, tzinfo=ZoneInfo("Europe/Warsaw"))


# --- arbitrary input --------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
TYPES = [
    "system", "assistant", "user", "result", "rate_limit_event", "assistant.message", "assistant.usage",
    "session.error", "session.shutdown", "text", "step_finish", "error", "message", "init", "say", "ask",
    "agent_event", "run_result", "run_aborted",
]  # fmt: skip
KEYS = [
    "type", "message", "content", "usage", "result", "is_error", "error", "errors", "data", "part", "event",
    "tokens", "stats", "models", "response", "rate_limit_info", "status", "resetsAt", "text", "say", "ask",
    "finishReason", "exitCode", "statusCode", "code", "api_error_status", "total_cost_usd", "role",
    "severity", "subtype", "agentId", "reason", "errorType", "modelMetrics", "messageId",
]  # fmt: skip
RECORDS = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)}, optional={key: JSON_VALUES for key in KEYS if key != "type"}
) | st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=6)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_no_parser_raises_on_arbitrary_text(text: str) -> None:
    for fmt, parser in PARSERS.items():
        result = parser(text, NOW)
        assert isinstance(result, ParsedOutput), fmt


@settings(max_examples=150, deadline=None)
@given(data=st.binary())
def test_no_parser_raises_on_undecodable_bytes(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    for parser in PARSERS.values():
        parser(text, NOW)


@settings(max_examples=300, deadline=None)
@given(records=st.lists(RECORDS, max_size=6), cut=st.integers(min_value=0, max_value=40))
def test_no_parser_raises_on_odd_json_records(records: list[dict[str, object]], cut: int) -> None:
    text = "\n".join(json.dumps(record) for record in records)
    for fmt, parser in PARSERS.items():
        for tail in (text, text[cut:], json.dumps(records)):
            result = parser(tail, NOW)
            if result.usage is not None:
                assert result.usage.input_tokens >= 0 and result.usage.output_tokens >= 0, fmt


RESET_WORDS = st.sampled_from([
    "resets ", "reset at ", "try again in ", "retry after ", "Retry-After: ", "limit reached|", "resetsAt\":",
    "regain access on ", "pm", "am", " (", ")", "UTC", "Asia/Seoul", "Nope/Zone", "America", "Feb ", "31",
    "2026-02-30", "T25:99", "h", "m", "s", "d", ":", "9" * 12, "0", "12", "99999", ".", " ",
])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(RESET_WORDS | st.text(max_size=4), max_size=16))
def test_find_reset_time_never_raises(parts: list[str]) -> None:
    found = find_reset_time("".join(parts), NOW)
    assert found is None or (found.tzinfo is UTC and abs(found - NOW) <= timedelta(days=400))


# --- Codex CLI (`codex exec --json`) --------------------------------------------------------------------------

CODEX_OK = "\n".join(
    json.dumps(event)
    for event in (
        {"type": "thread.started", "thread_id": "t-1"},
        {"type": "turn.started"},
        {"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": "Looking."}},
        {"type": "item.completed", "item": {"id": "item_1", "type": "error", "message": "model rerouted"}},
        {"type": "error", "message": "Reconnecting... 1/5"},
        {"type": "item.completed", "item": {"id": "item_2", "type": "agent_message", "text": "Fixed."}},
        {"type": "turn.completed", "usage": {"input_tokens": 900, "cached_input_tokens": 800, "output_tokens": 7}},
    )
)


def test_codex_success_is_the_last_agent_message_with_the_turn_usage() -> None:
    parsed = parse_output("codex-json", CODEX_OK, NOW)
    assert (parsed.final_text, parsed.is_error) == ("Fixed.", False)
    assert parsed.usage == Usage(input_tokens=900, output_tokens=7)
    assert parsed.error_message == "Reconnecting... 1/5"  # kept for patterns, but the turn completed


def test_codex_failed_turn_is_an_error_with_its_message() -> None:
    text = "\n".join(
        json.dumps(event)
        for event in (
            {"type": "thread.started", "thread_id": "t-1"},
            {"type": "error", "message": "stream disconnected"},
            {"type": "turn.failed", "error": {"message": "You've hit your usage limit. Try again at 3:28 PM."}},
        )
    )
    parsed = parse_output("codex-json", text, NOW)
    assert (parsed.final_text, parsed.is_error, parsed.usage) == (None, True, None)
    assert parsed.error_message == "You've hit your usage limit. Try again at 3:28 PM."
    assert parsed.reset_at == datetime(2026, 3, 2, 15, 28, tzinfo=UTC)


def test_other_formats_are_not_read_as_codex() -> None:
    assert not parse_output("codex-json", (OUTPUTS / "claude-stream-success.jsonl").read_text(), NOW).well_formed


# --- structured signals -----------------------------------------------------------------------------------


def test_gemini_error_code_is_an_exit_code_for_fatal_errors_and_a_status_otherwise() -> None:
    text = '{"error": {"type": "Error", "message": "Please set an Auth method", "code": 41}}'
    fatal = parse_output("gemini-json", text, NOW)
    assert (fatal.declared, fatal.error_message) == (OutcomeClass.AUTH, "Please set an Auth method")
    api = parse_output("gemini-json", '{"error": {"type": "Error", "message": "Too many", "code": 429}}', NOW)
    assert (api.declared, api.error_message, api.rate_limited) == (None, "Too many (HTTP 429)", True)


def test_copilot_fractional_premium_requests_round_up() -> None:
    text = '{"type":"result","exitCode":0,"usage":{"premiumRequests":0.33}}'
    assert parse_output("copilot-json", text, NOW).requests == 1


def test_cline2_request_without_figures_reports_no_usage() -> None:
    text = '{"type":"say","say":"api_req_started","text":"{\\"request\\":\\"<task>x</task>\\"}"}'
    assert parse_output("cline-json", text, NOW).usage is None


def test_read_output_applies_exit_codes_and_stderr_error_names() -> None:
    def outcome(code: int, stdout: str = "", stderr: str = "") -> RunOutcome:
        sizes = (len(stdout), len(stderr))
        return RunOutcome(["gemini"], code, None, False, 10, None, None, stdout, stderr, *sizes, False)

    assert read_output("gemini-json", outcome(52), NOW).declared == OutcomeClass.UNAVAILABLE
    assert read_output("claude-json", outcome(52), NOW).declared is None  # exit codes are per format
    dump = "Error when talking to Gemini API ... TerminalQuotaError: You exceeded your current quota"
    assert read_output("gemini-stream-json", outcome(1, stderr=dump), NOW).declared == OutcomeClass.QUOTA_EXHAUSTED
    # Text on stderr that carries a reset is a report, never the answer.
    parsed = read_output("text", outcome(0, stderr="Error: rate limit, retry-after: 30"), NOW)
    assert parsed.final_text is None


def test_a_figure_beyond_what_import_takes_is_not_reported() -> None:
    """What a parser takes as an attempt's figure is at most what `adws state import` accepts in a usage row, so
    every recorded run exports and imports again; above it (and negative, NaN, a bool) the figure is 0."""
    from adws.parsers._base import MAX_FIGURE, number
    from adws.state.maintenance import MAX_COUNT

    assert MAX_FIGURE == MAX_COUNT
    assert (number(MAX_COUNT), number(MAX_COUNT + 1), number(-1), number(float("nan")), number(True)) == \
        (float(MAX_COUNT), 0.0, 0.0, 0.0, 0.0)


# --- a kept tail that starts mid-document ---------------------------------------------------------------------

TAIL_BYTES: int = next(f.default for f in dataclasses.fields(RunRequest) if f.name == "tail_bytes")  # type: ignore[assignment]
# ^ what the runner keeps of each stream


def big_claude_verbose() -> str:
    """`claude -p --output-format json --verbose` as Claude Code prints it: the whole transcript as ONE compact
    line (open-horizon-labs/superego#20: the response is one JSON value at line 1 column 1), here with a 360 KB
    Read result, so the runner's tail starts in the middle of the array. Records from claude-json-verbose.json."""
    records = json.loads((OUTPUTS / "claude-json-verbose.json").read_text())
    big = {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_big", "content": "x = 1  # 401 Unauthorized\n" * 14000}]}}
    return json.dumps([records[0], big, *records[1:]], separators=(",", ":")) + "\n"


def test_a_tail_that_starts_mid_array_still_yields_the_final_result() -> None:
    text = big_claude_verbose()
    tail = text.encode()[-TAIL_BYTES:].decode()
    assert len(text) > TAIL_BYTES and tail[:1] not in "{["
    whole = read_output("claude-json", outcome(text), NOW)
    cut = read_output("claude-json", outcome(tail, total=len(text.encode())), NOW)
    assert cut.final_text == whole.final_text and cut.final_text
    assert (cut.usage, cut.is_error, cut.well_formed) == (whole.usage, False, True)
    assert cut.report_text == ""  # the cut transcript is no text printed beside the records


def test_a_pretty_printed_object_cut_inside_its_answer_keeps_its_later_members() -> None:
    # Gemini's JSON mode (one pretty-printed object): cut inside `response`, the stats and the error that follow
    # it are still read.
    document = json.dumps({"session_id": "s", "response": "a, b: {c}\n" * 50, "stats": {"models": {"gemini-2.5-pro": {
        "tokens": {"prompt": 900, "candidates": 40, "thoughts": 2}}}}, "error": {"type": "Error", "message": "Boom",
        "code": 500}}, indent=2)
    tail = document[len(document) // 2:]
    result = parse_output("gemini-json", tail, NOW)
    assert (result.usage, result.is_error, result.error_message) == (
        Usage(input_tokens=900, output_tokens=42), True, "Boom (HTTP 500)")


def test_recovering_a_cut_document_is_bounded() -> None:
    import time

    from adws.parsers._base import cut_document

    nasty = '{"a":[' + ",".join(['{"b":[1,2,{"c":"d,e"}]}'] * 12000) + "]}]"  # ~280 KB, no top-level element
    started = time.perf_counter()
    cut_document(nasty[-TAIL_BYTES:])
    assert time.perf_counter() - started < 2.0


# --- local clock times ------------------------------------------------------------------------------------------


def test_a_clock_time_without_a_zone_is_read_in_the_zone_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from adws.parsers.reset import host_zone

    now = datetime(2026, 11, 30, 21, 43, 15, tzinfo=UTC)  # 13:43 in Los Angeles
    text = "You've hit your usage limit. Try again at 3:28 PM."
    assert find_reset_time(text, now) == datetime(2026, 12, 1, 15, 28, tzinfo=UTC)  # no zone given: UTC
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    assert find_reset_time(text, now, zone=host_zone()) == datetime(2026, 11, 30, 23, 28, tzinfo=UTC)
    assert find_reset_time("resets 4pm (Asia/Seoul)", now, zone=host_zone()) == datetime(2026, 12, 1, 7, tzinfo=UTC)
    dated = "try again at Dec 4th, 2026 3:28 PM."
    assert find_reset_time(dated, now, zone=host_zone()) == datetime(2026, 12, 4, 23, 28, tzinfo=UTC)


@pytest.mark.parametrize(("tz", "hours"), [
    ("JST-9", 9), ("EST+5", -5), ("UTC0", 0), ("Foo/Bar", None), ("/usr/share/zoneinfo/Asia/Tokyo", 9),
    ("/nonexistent/zone", None), ("CET-1CEST,M3.5.0,M10.5.0/3", None),
])
def test_the_hosts_zone_never_fails_whatever_tz_holds(monkeypatch: pytest.MonkeyPatch, tz: str,
                                                      hours: int | None) -> None:
    """A POSIX rule, an unknown name or a zone file's path in TZ: the zone it names where Python can read one,
    else the C library's reading of TZ (its offset now); never an error (which made every codex-json run
    bad_output)."""
    import time

    from adws.parsers.reset import host_zone

    monkeypatch.setenv("TZ", tz)
    time.tzset()  # the C library's reading follows TZ
    try:
        zone = host_zone()
        offset = datetime(2026, 1, 15, 12, tzinfo=UTC).astimezone(zone).utcoffset()
        assert offset is not None
        if hours is not None:
            assert offset == timedelta(hours=hours)
        codex = json.dumps({"type": "turn.completed", "usage": {"input_tokens": 1, "output_tokens": 1}})
        assert not parse_output("codex-json", codex, NOW).is_error
    finally:
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()


def test_codex_reads_its_reset_in_the_hosts_zone_and_others_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # 06:43 on Dec 1 at NOW_T0
    now = datetime(2026, 11, 30, 21, 43, 15, tzinfo=UTC)
    message = "You've hit your usage limit. Try again at 8:28 AM."
    codex = json.dumps({"type": "turn.failed", "error": {"message": message}})
    assert parse_output("codex-json", codex, now).reset_at == datetime(2026, 11, 30, 23, 28, tzinfo=UTC)
    claude = json.dumps({"type": "result", "subtype": "success", "is_error": True, "result": message})
    assert parse_output("claude-json", claude, now).reset_at == datetime(2026, 12, 1, 8, 28, tzinfo=UTC)


@pytest.mark.parametrize(("stdout", "outcome"), [
    # copilot -p: the error, its request id, then the stats footer on stdout (copilot-cli#3544)
    ("✗ Sorry, you've hit a rate limit that restricts the number of Copilot model requests you can make within a "
     "specific time period. Please try again in 2 hours.\n(Request ID: 1234:5678)\n\nChanges   +0 -0\n"
     "Requests  1 Premium (1m 2s)\nTokens    ↑ 29.9k (11.0k cached) • ↓ 512\n", "rate_limited"),
    # a spinner's frames after the error, each overwriting the last with a carriage return
    ("Error: 429 Too Many Requests: rate limit exceeded\n⠋ cleaning up\r⠙ cleaning up\r⠸ cleaning up", "rate_limited"),
    # a pretty-printed JSON error body: the message is the fourth line from the end
    ('{\n  "error": {\n    "code": 400,\n    "message": "API key not valid. Please pass a valid API key.",\n'
     '    "status": "INVALID_ARGUMENT"\n  }\n}\n', "auth"),
    # a usage block after the complaint
    ("Error: No authentication information found.\n\nUsage: copilot [options]\n  -p, --prompt <text>\n"
     "  --model <model>\n  -h, --help  display help\n", "auth"),
])
def test_plain_text_reads_an_error_followed_by_a_few_lines(stdout: str, outcome: str) -> None:
    from adws.attempt import RunOutcome
    from adws.classify import classify, pattern_chain
    from adws.parsers import read_output

    run = RunOutcome(argv=["x"], exit_code=1, signal=None, timed_out=False, duration_ms=1000, stdout_path=None,
                     stderr_path=None, stdout_tail=stdout, stderr_tail="", stdout_bytes=len(stdout.encode()),
                     stderr_bytes=0, truncated=False)
    verdict = classify(run, read_output("text", run, NOW), pattern_chain(), now=NOW)
    assert verdict.outcome.value == outcome, verdict.reason


@pytest.mark.parametrize(("fmt", "records", "outcome"), [
    # Cline 2.x: a non-fatal tool-parameter error first (sayAndCreateMissingParamError), then the API's 429
    ("cline-json", [{"type": "say", "say": "error", "text": "Cline tried to use write_to_file for 'src/a.py' without "
                     "value for required parameter 'content'. Retrying..."},
                    {"type": "ask", "ask": "api_req_failed", "text": "429 You exceeded your current quota, please "
                     "check your plan and billing details."}], "quota_exhausted"),
    ("copilot-json", [{"type": "session.error", "data": {"errorType": "query", "message": "Execution failed: fetch "
                       "failed"}},
                      {"type": "session.error", "data": {"errorType": "query", "message": "Sorry, you've hit a rate "
                       "limit that restricts the number of Copilot model requests you can make within a specific "
                       "time period. Please try again in 2 hours."}}], "rate_limited"),
])
def test_every_error_record_is_read_not_only_the_first(fmt: str, records: list[dict[str, object]],
                                                       outcome: str) -> None:
    from adws.attempt import RunOutcome
    from adws.classify import classify, pattern_chain
    from adws.parsers import read_output

    stdout = "\n".join(json.dumps(record) for record in records)
    run = RunOutcome(argv=["x"], exit_code=1, signal=None, timed_out=False, duration_ms=1000, stdout_path=None,
                     stderr_path=None, stdout_tail=stdout, stderr_tail="", stdout_bytes=len(stdout.encode()),
                     stderr_bytes=0, truncated=False)
    verdict = classify(run, read_output(fmt, run, NOW), pattern_chain(), now=NOW)
    assert verdict.outcome.value == outcome, verdict.reason
