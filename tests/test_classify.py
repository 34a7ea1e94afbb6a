"""The classifier: decision order, declared patterns, limit refinement and the reasons it gives."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws.attempt import Classification, OutcomeClass, ParsedOutput, RunOutcome, Usage
from adws.classify import (
    DEFAULT_PATTERNS,
    QUOTA_HORIZON,
    Pattern,
    booked_usage,
    classify,
    compile_pattern,
    pattern_chain,
)
from adws.parsers import parse_output

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
OUTPUTS = Path(__file__).parent / "data" / "outputs"
DONE = ParsedOutput(final_text="All tests pass.", is_error=False)


def run(exit_code: int | None = 0, stdout: str = "", stderr: str = "", **fields: object) -> RunOutcome:
    outcome = RunOutcome(
        argv=["agent"],
        exit_code=exit_code,
        signal=None,
        timed_out=False,
        duration_ms=1500,
        stdout_path=None,
        stderr_path=None,
        stdout_tail=stdout,
        stderr_tail=stderr,
        stdout_bytes=len(stdout),
        stderr_bytes=len(stderr),
        truncated=False,
    )
    return dataclasses.replace(outcome, **fields)  # type: ignore[arg-type]


def verdict(
    outcome: RunOutcome, parsed: ParsedOutput = DONE, patterns: tuple[Pattern, ...] = DEFAULT_PATTERNS
) -> tuple[OutcomeClass, str, datetime | None]:
    found = classify(outcome, parsed, patterns, now=NOW)
    return found.outcome, found.reason, found.reset_at


# --- decision order ---------------------------------------------------------------------------------------


def test_spawn_error_comes_first() -> None:
    outcome = run(None, timed_out=True, spawn_error="executable not found: claude")
    assert verdict(outcome) == (OutcomeClass.UNAVAILABLE, "could not start: executable not found: claude", None)


def test_timeout_comes_before_the_signal_that_ended_it() -> None:
    outcome = run(None, timed_out=True, signal=9, duration_ms=600000)
    assert verdict(outcome) == (OutcomeClass.TIMEOUT, "timed out after 600s", None)


@pytest.mark.parametrize(
    ("exit_code", "signal", "reason"),
    [
        (None, 9, "killed by SIGKILL"),
        (-15, None, "killed by SIGTERM"),  # subprocess's way of saying it
        (None, None, "ended without an exit code"),
        (None, 200, "killed by signal 200"),
    ],
)
def test_signals_are_crashes(exit_code: int | None, signal: int | None, reason: str) -> None:
    outcome = run(exit_code, stdout="rate limit exceeded", signal=signal)
    assert verdict(outcome) == (OutcomeClass.CRASHED, reason, None)


def test_a_clean_success_is_not_read_for_patterns() -> None:
    # The answer talks about exactly what the patterns look for: it is still the answer.
    answer = "Handled HTTP 429 (rate limit) and 401 Unauthorized; prompt is too long is now an error."
    outcome = run(0, stdout=answer, stderr="warning: usage limit at 80%")
    parsed = ParsedOutput(final_text=answer, is_error=False, rate_limited=True)
    assert verdict(outcome, parsed) == (OutcomeClass.SUCCESS, "exit 0 with a final result", None)


def test_exit_0_with_is_error_and_a_limit_message_is_a_limit() -> None:
    parsed = ParsedOutput(final_text="", is_error=True, error_message="Claude AI usage limit reached|1772438400")
    assert verdict(run(0), parsed) == (
        OutcomeClass.RATE_LIMITED,
        "exit 0 but result is_error: Claude AI usage limit reached|1772438400",
        datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
    )


def test_exit_0_with_is_error_and_no_pattern_is_an_error() -> None:
    parsed = ParsedOutput(final_text="", is_error=True, error_message="Permission denied")
    assert verdict(run(0), parsed) == (OutcomeClass.ERROR, "exit 0 but result is_error: Permission denied", None)
    assert verdict(run(0), ParsedOutput(final_text="", is_error=True)) == (
        OutcomeClass.ERROR,
        "exit 0 but result is_error",
        None,
    )


def test_a_structured_rate_limit_without_a_matching_message() -> None:
    parsed = ParsedOutput(is_error=True, rate_limited=True, reset_at=NOW + timedelta(hours=2))
    assert verdict(run(1, stdout='{"type":"result"}'), parsed) == (
        OutcomeClass.RATE_LIMITED,
        "exit 1: rate-limit rejection in the output",
        NOW + timedelta(hours=2),
    )


@pytest.mark.parametrize(
    ("stdout", "parsed", "reason"),
    [
        ("", ParsedOutput(well_formed=False), "exit 0 but no output"),
        ("Segmentation fault?", ParsedOutput(well_formed=False), "exit 0 but the output is unreadable"),
        ('{"type":"system"}', ParsedOutput(), "exit 0 but no final result"),
    ],
)
def test_exit_0_without_a_readable_result_is_bad_output(stdout: str, parsed: ParsedOutput, reason: str) -> None:
    assert verdict(run(0, stdout=stdout), parsed) == (OutcomeClass.BAD_OUTPUT, reason, None)


def test_a_failing_exit_is_an_error_with_the_last_words() -> None:
    stderr = 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: boom\n\n'
    assert verdict(run(1, stderr=stderr), ParsedOutput(well_formed=False)) == (
        OutcomeClass.ERROR,
        "exit 1: RuntimeError: boom",
        None,
    )
    assert verdict(run(3), ParsedOutput(well_formed=False)) == (OutcomeClass.ERROR, "exit 3", None)
    parsed = ParsedOutput(is_error=True, error_message="model 'no-such' not found")
    assert verdict(run(1, stderr="noise"), parsed) == (OutcomeClass.ERROR, "exit 1: model 'no-such' not found", None)


def test_a_failing_exit_after_a_finished_successful_result_is_a_success_with_a_note() -> None:
    # Claude Code exits 1 after a complete run when an MCP server failed to start: the work is done.
    assert verdict(run(1, stderr="MCP server db-tools failed")) == (
        OutcomeClass.SUCCESS,
        "exit 1 after a complete, successful result (kept)",
        None,
    )


def test_a_failing_exit_with_an_answer_that_no_final_record_confirms_is_still_an_error() -> None:
    # OpenCode and plain text have no final-result record: their text alone does not prove the run finished.
    assert verdict(run(2), ParsedOutput(final_text="All tests pass.")) == (OutcomeClass.ERROR, "exit 2", None)
    declared = ParsedOutput(final_text="x", is_error=False, declared=OutcomeClass.AUTH)
    assert verdict(run(41), declared)[0] == OutcomeClass.AUTH


# --- patterns ---------------------------------------------------------------------------------------------


def test_provider_patterns_come_before_the_defaults() -> None:
    own = compile_pattern(r"model .* is not available", "unavailable")
    stderr = "Error: 429 Too Many Requests: model gpt-x is not available in your region"
    assert verdict(run(1, stderr=stderr), ParsedOutput(well_formed=False), pattern_chain([own]))[0] == (
        OutcomeClass.UNAVAILABLE
    )
    assert verdict(run(1, stderr=stderr), ParsedOutput(well_formed=False), pattern_chain())[0] == (
        OutcomeClass.RATE_LIMITED
    )


def test_source_order_decides_before_pattern_order() -> None:
    # The error message only matches the later (rate) pattern; stderr matches the earlier (auth) one. The CLI's
    # own error message says what ended the run; stderr may hold anything logged on the way (a retried 401).
    parsed = ParsedOutput(is_error=True, error_message="Too many requests")
    found = verdict(run(1, stderr="HTTP 401 from the proxy"), parsed)
    assert found == (OutcomeClass.RATE_LIMITED, "exit 1: Too many requests", None)


def test_sources_are_read_message_then_stderr_then_stdout() -> None:
    parsed = ParsedOutput(is_error=True, error_message="usage limit reached (message)")
    outcome = run(1, stdout="usage limit reached (stdout)", stderr="usage limit reached (stderr)")
    assert verdict(outcome, parsed)[1] == "exit 1: usage limit reached (message)"
    assert verdict(outcome, ParsedOutput(well_formed=False))[1] == "exit 1: usage limit reached (stderr)"


def test_a_long_matching_line_is_cut_around_the_match() -> None:
    line = '{"type":"assistant","padding":"' + "x" * 400 + '","text":"Prompt is too long"}'
    reason = verdict(run(1, stdout=f"first line\n{line}\nlast"), ParsedOutput(well_formed=False))[1]
    assert reason.startswith("exit 1: ")
    assert "Prompt is too long" in reason and len(reason) <= len("exit 1: ") + 160


def test_gemini_json_errors_on_stderr_are_read_by_patterns() -> None:
    stderr = (OUTPUTS / "gemini-error-stderr.txt").read_text()
    parsed = parse_output("gemini-json", "", NOW)
    assert verdict(run(1, stderr=stderr), parsed) == (
        OutcomeClass.QUOTA_EXHAUSTED,
        'exit 1: "message": "You have exhausted your daily quota on this model.",',
        None,
    )


@pytest.mark.parametrize(
    ("name", "fmt", "exit_code", "expected"),
    [
        ("claude-stream-success.jsonl", "claude-stream-json", 0, OutcomeClass.SUCCESS),
        ("claude-stream-usage-limit.jsonl", "claude-stream-json", 0, OutcomeClass.QUOTA_EXHAUSTED),
        ("claude-stream-org-disabled.jsonl", "claude-stream-json", 1, OutcomeClass.AUTH),
        ("claude-stream-max-turns.jsonl", "claude-stream-json", 0, OutcomeClass.ERROR),
        ("claude-json-legacy-limit.json", "claude-json", 0, OutcomeClass.RATE_LIMITED),
        ("copilot-rate-limited.jsonl", "copilot-json", 1, OutcomeClass.RATE_LIMITED),
        ("opencode-rate-limited.jsonl", "opencode-json", 1, OutcomeClass.RATE_LIMITED),
        ("gemini-stream-error.jsonl", "gemini-stream-json", 1, OutcomeClass.RATE_LIMITED),
        ("cline-auth-error.jsonl", "cline-json", 1, OutcomeClass.AUTH),
        ("cline-v1-success.jsonl", "cline-json", 0, OutcomeClass.SUCCESS),
    ],
)
def test_recorded_outputs(name: str, fmt: str, exit_code: int, expected: OutcomeClass) -> None:
    stdout = (OUTPUTS / name).read_text()
    found = classify(run(exit_code, stdout=stdout), parse_output(fmt, stdout, NOW), pattern_chain(), now=NOW)
    assert found.outcome == expected, found.reason


def test_recorded_claude_usage_limit_reason_and_reset() -> None:
    stdout = (OUTPUTS / "claude-stream-usage-limit.jsonl").read_text()
    found = classify(run(0, stdout=stdout), parse_output("claude-stream-json", stdout, NOW), pattern_chain(), now=NOW)
    # "resets 2pm (Asia/Shanghai)": the rejected event's resetsAt, 20.5 hours away, beyond the horizon.
    assert (found.reason, found.reset_at) == (
        "exit 0 but result is_error: You've hit your limit · resets 2pm (Asia/Shanghai) (HTTP 429)",
        datetime(2026, 3, 3, 6, 0, tzinfo=UTC),
    )


# --- limits and their reset -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("usage limit reached; try again in 2h", OutcomeClass.RATE_LIMITED),
        ("usage limit reached; try again in 7h", OutcomeClass.QUOTA_EXHAUSTED),  # beyond the horizon
        ("usage limit reached", OutcomeClass.RATE_LIMITED),  # no reset: the pattern's class stands
        ("monthly quota exceeded; try again in 10 minutes", OutcomeClass.RATE_LIMITED),  # back soon
        ("monthly quota exceeded", OutcomeClass.QUOTA_EXHAUSTED),
    ],
)
def test_distance_to_the_reset_decides_rate_or_quota(message: str, expected: OutcomeClass) -> None:
    assert verdict(run(1, stderr=message), ParsedOutput(well_formed=False))[0] == expected


def test_the_horizon_is_six_hours() -> None:
    assert timedelta(hours=6) == QUOTA_HORIZON
    at = ParsedOutput(is_error=True, rate_limited=True, reset_at=NOW + QUOTA_HORIZON)
    assert verdict(run(1), at)[0] == OutcomeClass.RATE_LIMITED
    beyond = dataclasses.replace(at, reset_at=NOW + QUOTA_HORIZON + timedelta(seconds=1))
    assert verdict(run(1), beyond)[0] == OutcomeClass.QUOTA_EXHAUSTED


def test_reset_sources_in_order() -> None:
    parsed = ParsedOutput(is_error=True, error_message="usage limit reached")
    outcome = run(1, stdout="try again in 3h", stderr="try again in 2h")
    assert verdict(outcome, parsed)[2] == NOW + timedelta(hours=2)  # the message has none: stderr's
    assert verdict(run(1, stdout="try again in 3h"), parsed)[2] == NOW + timedelta(hours=3)
    structured = dataclasses.replace(parsed, reset_at=NOW + timedelta(hours=1))
    assert verdict(outcome, structured)[2] == NOW + timedelta(hours=1)  # the parser's own wins


def test_no_reset_for_other_classes() -> None:
    parsed = ParsedOutput(is_error=True, error_message="Invalid API key", reset_at=NOW + timedelta(hours=1))
    assert verdict(run(1, stderr="try again in 1h"), parsed) == (OutcomeClass.AUTH, "exit 1: Invalid API key", None)


def test_naive_now_is_utc() -> None:
    parsed = ParsedOutput(is_error=True, error_message="rate limit; try again in 1h")
    found = classify(run(1), parsed, DEFAULT_PATTERNS, now=NOW.replace(tzinfo=None))
    assert found.reset_at == NOW + timedelta(hours=1)


# --- the default patterns ---------------------------------------------------------------------------------

CONTEXT = OutcomeClass.CONTEXT_OVERFLOW

MESSAGES = [
    ("Claude AI usage limit reached|1755615600", OutcomeClass.RATE_LIMITED),
    ("You've hit your limit · resets 7pm (Asia/Kuala_Lumpur)", OutcomeClass.RATE_LIMITED),
    ("You've hit your weekly limit · resets Oct 9, 3pm", OutcomeClass.QUOTA_EXHAUSTED),
    ('Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"..."}}', OutcomeClass.RATE_LIMITED),
    ("API Error (429 Too Many Requests)", OutcomeClass.RATE_LIMITED),
    ('{"statusCode":429}', OutcomeClass.RATE_LIMITED),
    ("This request would exceed your account's rate limit. Please try again later.", OutcomeClass.RATE_LIMITED),
    ("Resource has been exhausted (e.g. check quota). RESOURCE_EXHAUSTED", OutcomeClass.RATE_LIMITED),
    ("You have exhausted your capacity on this model.", OutcomeClass.RATE_LIMITED),
    ("You exceeded your current quota, please check your plan and billing details.", OutcomeClass.QUOTA_EXHAUSTED),
    ("You have exhausted your daily quota on this model.", OutcomeClass.QUOTA_EXHAUSTED),
    ("Quota exceeded for quota metric 'Requests' and limit 'Requests per day'", OutcomeClass.QUOTA_EXHAUSTED),
    ("insufficient_quota", OutcomeClass.QUOTA_EXHAUSTED),
    ("Credit balance is too low", OutcomeClass.QUOTA_EXHAUSTED),
    ("Invalid API key · Please run /login", OutcomeClass.AUTH),
    ('{"type":"authentication_error","message":"invalid x-api-key"}', OutcomeClass.AUTH),
    ("API key not valid. Please pass a valid API key.", OutcomeClass.AUTH),
    ("Not logged in · Please run /login", OutcomeClass.AUTH),
    ('Unauthorized: {"error":{"message":"User not found.","code":401}}', OutcomeClass.AUTH),
    ("failed with status 403 in 341ms", OutcomeClass.AUTH),
    ("Prompt is too long", OutcomeClass.CONTEXT_OVERFLOW),
    ("This model's maximum context length is 128000 tokens.", OutcomeClass.CONTEXT_OVERFLOW),
    ('{"code":"context_length_exceeded"}', OutcomeClass.CONTEXT_OVERFLOW),
    ("The input token count (1200000) exceeds the maximum number of tokens allowed", OutcomeClass.CONTEXT_OVERFLOW),
    ("input exceeds the model's context window", OutcomeClass.CONTEXT_OVERFLOW),
    # Real wordings of each kind, as the CLIs and the servers behind them print them.
    ("Missing API key · Run /login", OutcomeClass.AUTH),  # anthropics/claude-code#6893
    ("OAuth token has expired. Please obtain a new token or refresh your existing token.", OutcomeClass.AUTH),
    ("API Key not found. Please pass a valid API key.", OutcomeClass.AUTH),  # google-gemini/gemini-cli#5895
    ("Please set an Auth method in your settings.json", OutcomeClass.AUTH),  # gemini-cli validateNonInterActiveAuth
    ("Request had invalid authentication credentials. Expected OAuth 2 access token", OutcomeClass.AUTH),
    ("Error: No authentication information found.", OutcomeClass.AUTH),  # github/copilot-cli#3746
    (
        "Your access token could not be refreshed because your refresh token has expired. Please log out and "
        "sign in again.",  # openai/codex codex-rs/core/src/error.rs RefreshTokenFailed
        OutcomeClass.AUTH,
    ),
    ("Error: No Cline account found. Please sign in to continue.", OutcomeClass.AUTH),
    ("Your session has expired. Please log in again.", OutcomeClass.AUTH),
    ("The GitHub token is invalid or has expired.", OutcomeClass.AUTH),
    ("You must be logged in to use this model", OutcomeClass.AUTH),
    ("401 invalid access token", OutcomeClass.AUTH),
    ("5-hour limit reached", OutcomeClass.RATE_LIMITED),  # Claude Code's status line ("… ∙ resets 2am")
    ("You have reached your 5-hour Clinepass limit. The limit resets in 5h", OutcomeClass.RATE_LIMITED),
    ("You've hit your session limit", OutcomeClass.RATE_LIMITED),
    ("You've hit your usage limit. Try again later.", OutcomeClass.RATE_LIMITED),  # codex UsageLimitReachedError
    ("Daily free limit reached on model deepseek/deepseek-v4-flash", OutcomeClass.QUOTA_EXHAUSTED),
    ("Monthly usage limit reached. Resets in 10 days.", OutcomeClass.QUOTA_EXHAUSTED),  # anomalyco/opencode#40747
    ("You have no quota", OutcomeClass.QUOTA_EXHAUSTED),  # github/copilot-cli#3431
    ("Insufficient Balance", OutcomeClass.QUOTA_EXHAUSTED),  # DeepSeek's 402 through OpenCode or Cline
    ("You have exceeded your premium request allowance.", OutcomeClass.QUOTA_EXHAUSTED),
    ("Quota exceeded. Check your plan and billing details.", OutcomeClass.QUOTA_EXHAUSTED),  # codex QuotaExceeded
    # Local runners' context errors: vLLM (v0 and v1), sglang, llama.cpp server, Ollama, LM Studio.
    ("This model's maximum context length is 4096 tokens. However, you requested 5000", OutcomeClass.CONTEXT_OVERFLOW),
    ("The decoder prompt (length 12324) is longer than the maximum model length of 8192.", CONTEXT),
    ("The input (150000 tokens) is longer than the model's context length (128000 tokens).", CONTEXT),
    ("Requested token count exceeds the model's maximum context length of 32768", OutcomeClass.CONTEXT_OVERFLOW),
    ("the request exceeds the available context size, try increasing it", OutcomeClass.CONTEXT_OVERFLOW),
    ('{"type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":8192}', OutcomeClass.CONTEXT_OVERFLOW),
    ("input length exceeds the context length", OutcomeClass.CONTEXT_OVERFLOW),  # Ollama, truncate=false
    ("tokens to keep from the initial prompt is greater than the context length", OutcomeClass.CONTEXT_OVERFLOW),
    ("input length and `max_tokens` exceed context limit: 181000 + 32000 > 200000", OutcomeClass.CONTEXT_OVERFLOW),
    ("Codex ran out of room in the model's context window.", OutcomeClass.CONTEXT_OVERFLOW),
]


@pytest.mark.parametrize(("message", "expected"), MESSAGES, ids=[m for m, _ in MESSAGES])
def test_default_patterns(message: str, expected: OutcomeClass) -> None:
    assert verdict(run(1, stderr=message), ParsedOutput(well_formed=False))[0] == expected


@pytest.mark.parametrize(
    "stderr",
    [
        '{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"}}',  # a heartbeat, not a limit
        '{"duration_ms":429,"num_turns":401}',  # numbers that are not statuses
        "Processed 401 files and 429 lines",
        "RuntimeError: limit must be positive",
        "ValueError: the time limit reached zero",  # "limit reached" only as its own words
        "warning: token refresh scheduled",
        "SyntaxError: invalid token",  # Python's tokenizer, not a credential
    ],
)
def test_default_patterns_leave_lookalikes_alone(stderr: str) -> None:
    assert verdict(run(1, stderr=stderr), ParsedOutput(well_formed=False))[0] == OutcomeClass.ERROR


def test_the_built_in_patterns_are_what_compile_pattern_makes_of_them() -> None:
    """DEFAULT_PATTERNS compile at their first search (start-up time): each must still be a valid pattern that
    compile_pattern accepts, and search as it does, before and after a pickle round trip."""
    import pickle

    texts = ["", "Error: prompt is too long", "HTTP 429 Too Many Requests", "Invalid API key", "all good"]
    for pattern in DEFAULT_PATTERNS:
        strict = compile_pattern(pattern.regex.pattern, pattern.outcome.value)  # ValueError if not
        assert strict.outcome is pattern.outcome
        for text in texts:
            found, expected = pattern.regex.search(text), strict.regex.search(text)
            assert (found is None) == (expected is None)
            if found is not None and expected is not None:
                assert (found.start(), found.end()) == (expected.start(), expected.end())
        restored = pickle.loads(pickle.dumps(pattern))
        assert (restored.regex.pattern, restored.outcome) == (strict.regex.pattern, strict.outcome)


def test_pattern_chain() -> None:
    own = compile_pattern("boom", "crashed")
    assert pattern_chain([own]) == (own, *DEFAULT_PATTERNS)
    assert pattern_chain() == DEFAULT_PATTERNS


# --- compile_pattern --------------------------------------------------------------------------------------


def test_compile_pattern() -> None:
    pattern = compile_pattern(r"Model \w+ not found", "unavailable")
    assert pattern.outcome is OutcomeClass.UNAVAILABLE
    assert pattern.regex.search("model gpt4 not found") is not None  # case-insensitive
    assert compile_pattern(r"(?-i:ERR42)", "error").regex.search("err42") is None


@pytest.mark.parametrize(
    ("regex", "outcome", "message"),
    [
        (
            "usage limit",
            "rate_limit",
            'unknown outcome class "rate_limit" (did you mean "rate_limited"?); expected one of: auth, '
            "bad_output, context_overflow, crashed, error, quota_exhausted, rate_limited, success, timeout, "
            "unavailable, verify_failed",
        ),
        (
            "x",
            "nope",
            'unknown outcome class "nope"; expected one of: auth, bad_output, context_overflow, crashed, error, '
            "quota_exhausted, rate_limited, success, timeout, unavailable, verify_failed",
        ),
        (
            "usage (limit",
            "rate_limited",
            "invalid regex 'usage (limit': missing ), unterminated subpattern at position 6",
        ),
        ("", "error", "regex '' matches empty text, so it would match every output"),
        ("(oops)?", "error", "regex '(oops)?' matches empty text, so it would match every output"),
    ],
)
def test_compile_pattern_refuses(regex: str, outcome: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        compile_pattern(regex, outcome)
    assert str(caught.value) == message


# --- structured signals and what an attempt books ---------------------------------------------------------


def test_a_declared_class_comes_before_the_patterns() -> None:
    # Claude's terminal_reason says the account's limit refused the compaction: the text says "too long".
    parsed = ParsedOutput(
        final_text="", is_error=True, error_message="Prompt is too long · compaction failed: session limit",
        declared=OutcomeClass.RATE_LIMITED,
    )
    assert verdict(run(1), parsed)[0] == OutcomeClass.RATE_LIMITED


def test_a_declared_quota_keeps_its_class_and_drops_a_near_retry_hint() -> None:
    parsed = ParsedOutput(well_formed=False, declared=OutcomeClass.QUOTA_EXHAUSTED)
    outcome = run(1, stderr="TerminalQuotaError: You exceeded your current quota. Please retry in 34.89668959s.")
    assert verdict(outcome, parsed)[::2] == (OutcomeClass.QUOTA_EXHAUSTED, None)
    # A far reset still counts, and a declared rate limit still turns into a quota when its reset is far.
    far = run(1, stderr="try again in 58 hours")
    assert verdict(far, dataclasses.replace(parsed, declared=OutcomeClass.RATE_LIMITED))[::2] == (
        OutcomeClass.QUOTA_EXHAUSTED,
        NOW + timedelta(hours=58),
    )


def test_an_idle_timeout_is_a_timeout_that_says_so() -> None:
    outcome = run(None, timed_out=True, idle_timed_out=True, idle_ms=30_000, signal=15)
    assert verdict(outcome) == (OutcomeClass.TIMEOUT, "no output for 30s (idle_timeout)", None)


ESTIMATE = Usage(requests=1, input_tokens=500, output_tokens=20, cost_usd=0.01, estimated=True)


def booked(outcome: OutcomeClass, parsed: ParsedOutput) -> Usage:
    return booked_usage(Classification(outcome, "r"), parsed, lambda: ESTIMATE)


def test_reported_usage_is_booked_as_reported_with_the_reported_requests() -> None:
    reported = Usage(input_tokens=18900, output_tokens=80)
    assert booked(OutcomeClass.SUCCESS, ParsedOutput(usage=reported, requests=2)) == Usage(2, 18900, 80)
    assert booked(OutcomeClass.SUCCESS, ParsedOutput(usage=reported)) == Usage(1, 18900, 80)


def test_a_rejected_call_books_nothing_unless_the_cli_reports_it() -> None:
    for rejected in (OutcomeClass.RATE_LIMITED, OutcomeClass.QUOTA_EXHAUSTED, OutcomeClass.AUTH):
        assert booked(rejected, ParsedOutput()) == Usage(requests=0, estimated=True)
        assert booked(rejected, ParsedOutput(usage=Usage())) == Usage(requests=0)  # reported zeros
        worked = Usage(input_tokens=9_414_100, output_tokens=91_000, cost_usd=13.8)  # limit hit after the work
        assert booked(rejected, ParsedOutput(usage=worked)) == worked


def test_without_reported_figures_the_estimate_is_booked_and_marked() -> None:
    assert booked(OutcomeClass.SUCCESS, ParsedOutput()) == ESTIMATE
    assert booked(OutcomeClass.CONTEXT_OVERFLOW, ParsedOutput(requests=0)) == dataclasses.replace(ESTIMATE, requests=0)


# --- the agent's transcript never decides the class ----------------------------------------------------------


def read(fmt: str, stdout: str, exit_code: int, stderr: str = "", total: int | None = None) -> Classification:
    """Parse and classify as the manager does; `total`: how many bytes stdout had when only its tail was kept."""
    from adws.parsers import read_output

    outcome = run(exit_code, stdout=stdout, stderr=stderr, stdout_bytes=total or len(stdout.encode()))
    return classify(outcome, read_output(fmt, outcome, NOW), pattern_chain(), now=NOW)


def jsonl(*records: object) -> str:
    import json

    return "".join(json.dumps(record) + "\n" for record in records)


CLAUDE_TOOL_RESULT = {"type": "user", "message": {"role": "user", "content": [
    {"type": "tool_result", "tool_use_id": "t", "content": "HTTP 401 Unauthorized: Invalid API key; prompt is too long"}
]}}


@pytest.mark.parametrize(
    ("fmt", "transcript", "error"),
    [
        ("claude-stream-json", CLAUDE_TOOL_RESULT,
         {"type": "result", "subtype": "error_during_execution", "is_error": True}),
        ("claude-stream-json", {"type": "assistant", "message": {"id": "m", "content": [
            {"type": "text", "text": "The client now refreshes the token on 401 Unauthorized."}]}},
         {"type": "result", "subtype": "success", "is_error": True, "result": "API Error: 500 Internal server error"}),
        ("gemini-stream-json",
         {"type": "message", "role": "user", "content": "Retry on HTTP 429, refresh the token on 401 Unauthorized."},
         {"type": "result", "status": "error", "error": {"type": "unknown", "message": "[API Error: 500]"}}),
        ("copilot-json", {"type": "user.message", "data": {"content": "Handle 401 Unauthorized and 429."}},
         {"type": "session.error", "data": {"errorType": "query", "message": "Last error: CAPIError: 503"}}),
        ("opencode-json", {"type": "tool_use", "part": {"type": "tool", "state": {"output": "Invalid API key"}}},
         {"type": "error", "error": {"name": "UnknownError", "data": {"message": "socket hang up"}}}),
        ("codex-json", {"type": "item.completed", "item": {"id": "i", "type": "command_execution",
                                                           "aggregated_output": "context_length_exceeded"}},
         {"type": "turn.failed", "error": {"message": "stream disconnected"}}),
        ("cline-json", {"type": "say", "say": "text", "text": "Your API key is invalid, said the test."},
         {"type": "say", "say": "error", "text": "Connection reset"}),
    ],
)
def test_the_agents_transcript_and_the_echoed_prompt_never_decide_the_class(
    fmt: str, transcript: object, error: object
) -> None:
    found = read(fmt, jsonl(transcript, error), 1)
    assert found.outcome is OutcomeClass.ERROR, found.reason


def test_a_line_the_cli_printed_beside_its_records_is_still_read() -> None:
    # A plain-text complaint on stdout next to the JSON records is the CLI's, not the agent's.
    stdout = "Invalid API key · Please run /login\n" + jsonl(
        {"type": "result", "subtype": "success", "is_error": True, "result": ""})
    assert read("claude-stream-json", stdout, 1).outcome is OutcomeClass.AUTH


def test_the_cut_head_of_a_kept_tail_is_part_of_a_record_not_a_line_beside() -> None:
    # The runner kept only the end: what is left of the first line is the end of a tool result.
    stdout = 'Unauthorized","is_error":false}]}}\n' + jsonl(
        {"type": "result", "subtype": "success", "is_error": True, "result": "API Error: 500"})
    assert read("claude-stream-json", stdout, 1, total=10_000_000).outcome is OutcomeClass.ERROR
    assert read("claude-stream-json", stdout, 1).outcome is OutcomeClass.AUTH  # not cut: the CLI printed it


def test_a_structured_429_outranks_a_pattern_of_another_class() -> None:
    # The status says "a limit"; the text may say which limit, never "login" or "context".
    parsed = ParsedOutput(is_error=True, error_message="Unauthorized client (HTTP 429)", rate_limited=True)
    assert verdict(run(1), parsed)[0] is OutcomeClass.RATE_LIMITED
    parsed = ParsedOutput(is_error=True, error_message="You exceeded your current quota (HTTP 429)", rate_limited=True)
    assert verdict(run(1), parsed)[0] is OutcomeClass.QUOTA_EXHAUSTED


def test_plain_text_is_read_in_its_last_lines_only() -> None:
    from adws.parsers.text import REPORT_LINES

    # The answer's mention of 401 lies above the last REPORT_LINES lines: not read.
    answer = ("The client now retries on HTTP 429 and re-authenticates on 401 Unauthorized.\n"
              + "detail\n" * REPORT_LINES)
    assert read("text", answer + "Error: model 'x' not found\n", 1).outcome is OutcomeClass.ERROR
    assert read("text", answer + "Error: 401 Unauthorized\n", 1).outcome is OutcomeClass.AUTH
