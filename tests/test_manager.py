"""ProviderManager end to end: fake agent CLIs on PATH, the shipped chain, every way a run can fail."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adws import audit
from adws.engine import Engine
from adws.state import open_store
from tests.helpers import CLAUDE_CONFIG, NOW, ROOT, Clock, claude_engine, fake_env


def invocations(tmp_path: Path) -> list[dict[str, Any]]:
    return audit.read(tmp_path / "agents.jsonl")


def outcomes(result: Any) -> list[tuple[str, str | None, str]]:
    return [(a.provider, a.account, a.outcome) for a in result.attempts]


def test_one_task_falls_through_all_five_tiers(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    env = fake_env(
        tmp_path,
        opencode_ag_1="error_result_exit0", opencode_ag_2="quota_exhausted", opencode="limit_reset",
        copilot="auth", cline="context", ollama="success",
    )
    # The opencode tier itself (no account) crashes by signal; the Antigravity accounts use their own scenario.
    for n in range(3, 9):
        env[f"FAKE_SCENARIO_OPENCODE_AG_{n}"] = "limit_reset"
    env["FAKE_SCENARIO_OPENCODE"] = "signal"
    sleeps: list[float] = []
    engine = make_engine(env, sleeps=sleeps)
    result = engine.run({"number": 7, "title": "Say hello"}, prompt="Say hello", workdir=tmp_path)

    assert result.success, result.message
    got = outcomes(result)
    assert got[:2] == [("antigravity", "ag-1", "rate_limited"), ("antigravity", "ag-2", "quota_exhausted")]
    assert got[2:8] == [("antigravity", f"ag-{n}", "rate_limited") for n in range(3, 9)]
    assert got[8:] == [
        ("copilot", None, "auth"),
        ("cline", None, "context_overflow"),
        ("opencode", None, "crashed"),
        ("opencode", None, "crashed"),  # `crashed` is retried once (routing.retry.max_retries = 1)
        ("local", None, "success"),
    ]
    assert [a.action for a in result.attempts][-5:] == ["next_tier", "next_tier", "retry", "next_tier", "stop"]
    assert sleeps == [5.0]  # the one retry's backoff, through the injected sleeper
    assert result.provider == "local" and result.model == "qwen2.5-coder:7b"
    assert result.final_text

    # The next decision skips every cooling Antigravity account and says when the first comes back.
    decision = engine.route({"number": 8, "title": "Another"}, now=NOW + timedelta(minutes=1))
    # Copilot's credentials were rejected: it cools down too (issue 8 item 7), so cline is first.
    assert decision.provider == "cline"
    reasons = {(s.provider, s.account): s.reason for s in decision.skipped}
    assert reasons[("copilot", None)].startswith("cooling down: auth")
    assert reasons[("antigravity", "ag-1")].startswith("cooling down: rate_limited")
    assert reasons[("antigravity", "ag-2")].startswith("cooling down: quota_exhausted")
    tier_skip = [s for s in decision.skipped if s.provider == "antigravity" and s.account is None]
    assert tier_skip and tier_skip[0].reason.startswith("no usable account; the first is back at ")
    # Cooldowns end at the announced reset, never after the weekly quota reset (Sunday 00:00 UTC).
    sunday = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    for skip in decision.skipped:
        if skip.until is not None:
            assert NOW < skip.until <= sunday


def test_exit_zero_with_error_result_is_a_failure(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(fake_env(tmp_path, opencode="error_result_exit0", copilot="success"))
    result = engine.run({"title": "x"}, prompt="x", workdir=tmp_path)
    first = result.attempts[0]
    assert first.exit_code == 0 and first.outcome == "rate_limited"
    assert result.success and result.provider == "copilot"




def test_claude_rate_limit_event_cools_account_until_announced_reset(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    env = fake_env(tmp_path, claude_a="error_result_exit0", claude_b="success")
    engine = claude_engine(make_engine, env)
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert outcomes(result) == [("claude", "a", "rate_limited"), ("claude", "b", "success")]
    assert result.attempts[0].reset_at is not None
    cooldowns = engine.store.cooldowns(NOW)
    assert cooldowns[("claude", "a")].until == result.attempts[0].reset_at
    # The key reached the child through the provider's variable, never through argv or the audit log.
    calls = invocations(tmp_path)
    assert all("sk-secret" not in " ".join(c["argv"]) for c in calls)
    log = (tmp_path / "audit.jsonl").read_text()
    assert "sk-secret" not in log and '"prompt"' not in log
    record = audit.read(tmp_path / "audit.jsonl")[-1]
    assert [a["outcome"] for a in record["attempts"]] == ["rate_limited", "success"]
    assert record["decision"]["provider"] == "claude"
    # Usage the output reported is recorded as reported, not estimated.
    assert result.attempts[1].usage is not None and not result.attempts[1].usage.estimated


def test_hang_is_killed_with_its_children_and_classified_timeout(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="hang", copilot="success"), timeout=1)
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert [a.outcome for a in result.attempts] == ["timeout", "success"]
    assert result.attempts[0].action == "next_tier"


def test_crash_retries_with_bounded_backoff_then_next_tier(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    sleeps: list[float] = []
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="signal", copilot="success"), sleeps=sleeps)
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    # The second crash opened the breaker (threshold 2): no retry runs into an open circuit (issue 9).
    assert [a.outcome for a in result.attempts] == ["crashed", "crashed", "success"]
    assert [a.action for a in result.attempts] == ["retry", "next_tier", "stop"]
    assert sleeps == [1.0]
    decision = engine.route({"title": "t"})
    assert decision.provider == "backup"
    assert decision.skipped[0].provider == "claude"
    assert decision.skipped[0].reason.startswith("circuit open after 2 infrastructure failures; probed again at ")


def test_retry_backoff_is_bounded(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    sleeps: list[float] = []
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="signal", copilot="success"), sleeps=sleeps,
                           threshold=5)
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert [a.outcome for a in result.attempts] == ["crashed", "crashed", "crashed", "success"]
    assert sleeps == [1.0, 2.0]  # 1 s, then 3 s capped at max_backoff_seconds = 2


def test_breaker_probes_again_after_cooldown(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    clock = Clock()
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="signal", copilot="success"), clock=clock)
    engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert engine.route({"title": "t"}).provider == "backup"
    clock.now = NOW + timedelta(minutes=11)
    assert engine.route({"title": "t"}).provider == "claude"  # half-open: one probe allowed
    engine.manager.environ = {**engine.manager.environ, "FAKE_SCENARIO_CLAUDE": "success"}
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert result.success and result.provider == "claude"
    assert engine.store.get_breaker("claude").state == "closed"


@pytest.mark.parametrize(("scenario", "expected"), [
    ("garbage", "bad_output"),
    ("lie_exit0", "bad_output"),
    ("crash", "error"),
    ("auth", "auth"),
    ("context", "context_overflow"),
])
def test_each_failure_is_classified(tmp_path: Path, make_engine: Callable[..., Engine], scenario: str,
                                    expected: str) -> None:
    engine = claude_engine(make_engine, fake_env(tmp_path, claude=scenario, copilot="success"))
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert result.attempts[0].outcome == expected
    assert result.success and result.provider == "backup"


def test_megabytes_of_output_are_capped_and_still_succeed(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    text = CLAUDE_CONFIG + "[run]\noutput_cap_bytes = 1048576\n"
    env = {**fake_env(tmp_path, claude="flood"), "KEY_A": "k" * 10, "KEY_B": "k" * 10}
    engine = make_engine(env, text.replace("TIMEOUT", "60"))
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert result.success, result.message
    assert result.attempts[0].stdout_path is not None
    assert Path(result.attempts[0].stdout_path).stat().st_size == 1048576


def test_task_text_is_data_in_argv(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="auth", copilot="success"))
    hostile = "{{ 7*7 }} ; rm -rf ~ $(whoami)"
    result = engine.run({"title": hostile}, prompt=hostile, workdir=tmp_path)
    assert result.success
    copilot_call = next(c for c in invocations(tmp_path) if c["prog"] == "copilot")
    assert hostile in copilot_call["argv"]
    assert copilot_call["prompt"] == hostile


def test_prompt_too_long_for_an_argument_is_a_clear_error(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="auth"))
    result = engine.run({"title": "t"}, prompt="x" * 200_000, workdir=tmp_path)
    last = result.attempts[-1]
    assert last.provider == "backup" and last.outcome == "error"
    assert last.reason == (
        "an argument of 200000 bytes is over Linux's 128 KiB limit for one argument; set prompt = \"stdin\" "
        "or \"file\" for provider backup (and use {{ prompt_file }} instead of {{ prompt }})")
    assert not result.success
    assert not [c for c in invocations(tmp_path) if c["prog"] == "copilot"]  # never started


def test_missing_executable_is_unavailable_not_a_traceback(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    text = CLAUDE_CONFIG.replace('command_template = ["copilot"', 'executable = "/bin/true"\ncommand_template = '
                                 '["/nonexistent/copilot"').replace("TIMEOUT", "30")
    engine = make_engine({**fake_env(tmp_path, claude="auth"), "KEY_A": "x" * 9, "KEY_B": "y" * 9}, text)
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert result.attempts[-1].outcome == "unavailable"
    assert result.attempts[-1].reason == "could not start: executable not found: /nonexistent/copilot"
    assert result.message.startswith("plan spent after 3 attempt(s)")


def test_stop_action_ends_the_walk(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    text = CLAUDE_CONFIG.replace("[routing.retry]", '[routing.actions]\nauth = "stop"\n[routing.retry]')
    engine = make_engine({**fake_env(tmp_path, claude="auth"), "KEY_A": "x" * 9, "KEY_B": "y" * 9},
                         text.replace("TIMEOUT", "30"))
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert len(result.attempts) == 1 and not result.success
    assert result.message.startswith("stopped after auth on claude")


def test_usage_is_recorded_and_estimated_when_not_reported(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(fake_env(tmp_path, opencode="success"))
    result = engine.run({"title": "t"}, prompt="p" * 4000, workdir=tmp_path)
    assert result.success
    store = open_store("sqlite", str(tmp_path / "state.sqlite3"))
    totals = store.usage_totals({"antigravity": NOW - timedelta(days=1)})
    store.close()
    account = result.attempts[0].account
    assert account is not None
    assert totals[("antigravity", account)].requests == 1
    # The usage counts in the next decision. The shipped strategy, best_fit, packs the next task onto the account
    # just used (the least left over after it); least_used would move on to an unused one.
    step = engine.route({"title": "t"}).plan[0]
    assert step.account == account
    ranking = engine.accounts.rank(engine.config.providers["antigravity"], None, engine.clock(), model=step.model,
                                   need=step.need)
    assert ranking.first_percent is not None and ranking.first_percent > 0


def test_audit_is_one_json_line_per_task_without_prompt(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(fake_env(tmp_path, opencode="success"))
    for n in range(3):
        engine.run({"number": n, "title": "t"}, prompt="SECRET PROMPT TEXT", workdir=tmp_path)
    lines = (tmp_path / ".adws" / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert all("SECRET PROMPT TEXT" not in line for line in lines)
    assert [json.loads(line)["task"]["number"] for line in lines] == [0, 1, 2]


def test_prompt_text_is_written_to_disk_only_when_a_template_names_the_file(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="success"))  # claude takes stdin
    result = engine.run({"title": "t"}, prompt="PRIVATE PROMPT", workdir=tmp_path)
    assert result.success and result.run_dir is not None
    assert not list(Path(result.run_dir).rglob("prompt.txt"))
    file_config = CLAUDE_CONFIG.replace('prompt = "stdin"', 'prompt = "file"').replace(
        '"--model", "{{ model }}"]', '"--model", "{{ model }}", "{{ prompt_file }}"]').replace("TIMEOUT", "30")
    engine = make_engine({**fake_env(tmp_path, claude="success"), "KEY_A": "x" * 9, "KEY_B": "y" * 9}, file_config)
    result = engine.run({"title": "t"}, prompt="PRIVATE PROMPT", workdir=tmp_path)
    assert result.success and result.run_dir is not None
    [written] = list(Path(result.run_dir).rglob("prompt.txt"))
    assert written.read_text() == "PRIVATE PROMPT"
    assert invocations(tmp_path)[-1]["prompt_source"] == "file"


def test_a_rules_account_goes_first_and_the_others_stay_behind_it(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    text = (ROOT / "config.toml").read_text().replace(
        'name = "code-sonnet"\npriority = 30', 'name = "code-sonnet"\npriority = 30\naccount = "ag-5"')
    engine = make_engine(fake_env(tmp_path, opencode_ag_5="limit_reset", opencode="success"), text)
    decision = engine.route({"title": "Null pointer", "labels": ["bug"]})
    assert decision.rule == "code-sonnet" and decision.account == "ag-5"
    assert decision.plan[0].accounts[0] == "ag-5" and len(decision.plan[0].accounts) == 8
    result = engine.run({"title": "Null pointer", "labels": ["bug"]}, prompt="p", workdir=tmp_path)
    assert [(a.account, a.outcome) for a in result.attempts] == [("ag-5", "rate_limited"), ("ag-1", "success")]


def test_a_missing_workdir_or_an_empty_prompt_is_refused_before_any_attempt(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    from adws.errors import MissingWorkdirError, PromptError, TaskError, WorkdirError

    engine = make_engine(fake_env(tmp_path, opencode="success"))
    # Each error names what is wrong (the workdir, the prompt), not the task; both are still TaskErrors, as run()
    # raised before they had classes of their own.
    with pytest.raises(MissingWorkdirError) as missing:
        engine.run({"title": "t"}, prompt="p", workdir=tmp_path / "nope")
    assert str(missing.value) == f"workdir: {tmp_path / 'nope'} is not a directory"
    assert isinstance(missing.value, WorkdirError) and isinstance(missing.value, TaskError)
    with pytest.raises(PromptError) as empty:
        engine.run({"title": "t"}, prompt="  \n", workdir=tmp_path)
    assert str(empty.value) == "prompt: empty; an agent given no prompt would only guess"
    assert isinstance(empty.value, TaskError)
    assert not invocations(tmp_path)
    assert engine.store.breakers() == {}


def test_the_prompt_is_not_recorded_in_the_command(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="auth", copilot="success"))
    result = engine.run({"title": "t"}, prompt="Fix the login bug in auth.py", workdir=tmp_path)
    assert result.attempts[-1].command == ["copilot", "-p", "<prompt>", "--output-format", "json"]
    assert "Fix the login bug" not in (tmp_path / "audit.jsonl").read_text()


def test_accounts_with_their_own_keys_run_when_the_providers_key_is_unset(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    text = CLAUDE_CONFIG.replace('api_key_env = "ANTHROPIC_API_KEY"',
                                 'api_key_env = "ANTHROPIC_API_KEY"\nrequires_api_key = true')
    env = {**fake_env(tmp_path, claude="success"), "KEY_B": "sk-secret-bbbbbbbb"}
    engine = make_engine(env, text.replace("TIMEOUT", "30"))
    decision = engine.route({"title": "t"})
    assert decision.provider == "claude" and decision.plan[0].accounts == ("b",)
    assert [(s.account, s.reason) for s in decision.skipped] == [("a", "credentials missing: KEY_A is not set")]


def test_gemini_json_error_on_stderr_is_read(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    text = """
[routing]
chain = ["gemini", "backup"]
[providers.gemini]
command_template = ["gemini", "-p", "{{ prompt }}", "--output-format", "json"]
prompt = "arg"
output_format = "gemini-json"
[providers.backup]
command_template = ["copilot", "-p", "{{ prompt }}", "--output-format", "json"]
prompt = "arg"
output_format = "copilot-json"
"""
    engine = make_engine(fake_env(tmp_path, gemini="limit_reset", copilot="success"), text)
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    first = result.attempts[0]
    assert first.outcome in ("rate_limited", "quota_exhausted") and first.reset_at is not None
    assert "(HTTP 429)" in first.reason  # the parser's reading of the JSON error, not only a regex over stderr
    assert result.success


def test_a_nul_byte_in_the_prompt_is_an_error_not_an_infrastructure_failure(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="auth", copilot="success"))
    for _ in range(3):
        result = engine.run({"title": "t"}, prompt="fix\x00this", workdir=tmp_path)
        assert result.attempts[-1].provider == "backup" and result.attempts[-1].outcome == "error"
        assert result.attempts[-1].reason.startswith("the command or its environment holds a NUL byte")
    assert engine.store.get_breaker("backup").failures == 0
    # Only claude's accounts, whose credentials were rejected, are out; the backup tier's breaker is closed.
    skipped = engine.route({"title": "t"}).skipped
    assert all(s.provider == "claude" and "auth" in s.reason for s in skipped if s.account is not None)
    assert not [s for s in skipped if s.provider == "backup"]


def test_override_label_tolerates_spaces_and_model_case(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(fake_env(tmp_path))
    decision = engine.route({"title": "t", "labels": [" Route:Copilot/Haiku-4.5 "]})
    assert (decision.rule, decision.provider, decision.model) == ("override", "copilot", "haiku-4.5")


def test_setting_the_providers_key_between_decisions_frees_accounts_without_their_own(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    text = CLAUDE_CONFIG.replace('api_key_env = "ANTHROPIC_API_KEY"',
                                 'api_key_env = "ANTHROPIC_API_KEY"\nrequires_api_key = true').replace(
        'name = "b"\napi_key_env = "KEY_B"', 'name = "b"').replace("TIMEOUT", "30")
    env = {**fake_env(tmp_path), "KEY_A": "sk-secret-aaaaaaaa"}
    engine = make_engine(env, text)
    assert engine.route({"title": "t"}).plan[0].accounts == ("a",)
    env["ANTHROPIC_API_KEY"] = "sk-secret-provider"
    assert engine.route({"title": "t"}).plan[0].accounts == ("a", "b")


def test_each_account_is_named_to_the_child_and_the_implicit_one_is_default(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = claude_engine(make_engine, fake_env(tmp_path, claude_a="auth", claude_b="auth", copilot="success"))
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert outcomes(result) == [("claude", "a", "auth"), ("claude", "b", "auth"), ("backup", None, "success")]
    # The account a child runs under is in ADWS_ACCOUNT; a provider without accounts runs as "default", the
    # name its usage is kept under (plans and results do not show it).
    assert [c["account"] for c in invocations(tmp_path)] == ["a", "b", "default"]
    assert ("backup", "default") in engine.store.usage_totals({"backup": NOW - timedelta(days=1)})


def test_an_interrupted_run_is_audited_with_the_attempts_so_far(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="auth", copilot="success"))
    real = engine.manager.runner
    calls: list[str] = []

    def interrupted_on_the_second(request: Any) -> Any:
        calls.append(request.argv[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(request)

    engine.manager.runner = interrupted_on_the_second
    with pytest.raises(KeyboardInterrupt):
        engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    record = audit.read(tmp_path / "audit.jsonl")[-1]
    assert (record["success"], record["message"]) == (
        False, "interrupted by SIGINT after 1 attempt(s); the agent's processes were stopped")
    assert [(a["provider"], a["account"], a["outcome"]) for a in record["attempts"]] == [("claude", "a", "auth")]
