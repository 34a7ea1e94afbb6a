"""The fake agent CLIs against the parsers and the classifier.

The table below is what the rest of the project relies on: for every fake program, in every output mode the
shipped config uses, each scenario's output goes through the matching parser and `classify` and must come out
as the expected class. Runner and engine tests pick scenarios by these names.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws.attempt import OutcomeClass, RunOutcome
from adws.classify import classify, pattern_chain
from adws.parsers import parse_output, read_output

FAKES = Path(__file__).parent / "fakes"
BIN = FAKES / "bin"
TAIL_BYTES = 64 * 1024  # what a runner keeps of a long output: the parsers only ever see this much
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # the fakes' clock (FAKE_NOW) and the classifier's


@dataclass(frozen=True)
class Mode:
    """One program in one output mode: how to call it and which parser reads it."""

    prog: str
    args: tuple[str, ...]
    fmt: str
    stdin: str | None = None

    def __str__(self) -> str:
        return self.fmt if self.prog in self.fmt else f"{self.prog}-{self.fmt}"


PROMPT = "Fix issue #42: the parser drops the last line"
MODES = (
    Mode("claude", ("-p", PROMPT, "--output-format", "stream-json", "--verbose"), "claude-stream-json"),
    Mode("claude", ("-p", PROMPT, "--output-format", "json"), "claude-json"),
    Mode("copilot", ("-p", PROMPT, "--model", "raptor-mini", "--output-format", "json"), "copilot-json"),
    Mode("gemini", ("-p", PROMPT, "--output-format", "json"), "gemini-json"),
    Mode("gemini", ("-p", PROMPT, "--output-format", "stream-json"), "gemini-stream-json"),
    Mode("opencode", ("run", "-m", "opencode/big", "--format", "json", PROMPT), "opencode-json"),
    Mode("cline", ("-y", "--json", PROMPT), "cline-json"),
    Mode("cline", ("-y", "--output-format", "json", PROMPT), "cline-json"),  # the 1.x vocabulary
    Mode("codex", ("exec", "--json", "--skip-git-repo-check", PROMPT), "codex-json"),
    Mode("ollama", ("run", "qwen2.5-coder"), "text", stdin=PROMPT),
)
EXPECTED = {
    "success": OutcomeClass.SUCCESS,
    "error_result_exit0": OutcomeClass.RATE_LIMITED,
    "limit_reset": OutcomeClass.RATE_LIMITED,
    "quota_exhausted": OutcomeClass.QUOTA_EXHAUSTED,
    "auth": OutcomeClass.AUTH,
    "context": OutcomeClass.CONTEXT_OVERFLOW,
    "hang": OutcomeClass.TIMEOUT,
    "signal": OutcomeClass.CRASHED,
    "flood": OutcomeClass.SUCCESS,
    "garbage": OutcomeClass.BAD_OUTPUT,
    "lie_exit0": OutcomeClass.BAD_OUTPUT,
    "crash": OutcomeClass.ERROR,
}


# Where the real CLI does not do what the scenario's name says, the fake does what the CLI does.
REAL_EXCEPTIONS = {("ollama", "context"): OutcomeClass.SUCCESS}  # silent truncation (ollama/ollama#8099)
# Limits whose real wording announces no reset (the corpus in tests/data/real has them all).
NO_RESET_ANNOUNCED = {
    ("copilot", "quota_exhausted"),  # 402 "You have no quota"
    ("gemini", "quota_exhausted"),  # TerminalQuotaError
    ("opencode", "quota_exhausted"),  # insufficient_quota
    ("ollama", "limit_reset"),  # "reached your session usage limit, upgrade for higher limits"
    ("ollama", "quota_exhausted"),
    ("ollama", "error_result_exit0"),
}


def fake_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_", "ADWS_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["FAKE_NOW"] = str(NOW.timestamp())
    env["FAKE_AGENT_LOG"] = str(tmp_path / "calls.jsonl")
    env.update(extra)
    return env


def tail(data: bytes) -> str:
    return data[-TAIL_BYTES:].decode("utf-8", errors="replace")


def run_fake(mode: Mode, env: dict[str, str], cwd: Path, timeout: float = 60) -> RunOutcome:
    """Run a fake the way the runner does (own process group, tails kept) and report what it saw."""
    argv = [mode.prog, *mode.args]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if mode.stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(mode.stdin.encode() if mode.stdin else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the hang scenario leaves a child behind
        stdout, stderr = proc.communicate()
    code = proc.returncode
    return RunOutcome(
        argv=argv,
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        timed_out=timed_out,
        duration_ms=int((time.monotonic() - started) * 1000),
        stdout_path=None,
        stderr_path=None,
        stdout_tail=tail(stdout),
        stderr_tail=tail(stderr),
        stdout_bytes=len(stdout),
        stderr_bytes=len(stderr),
        truncated=False,
    )


@pytest.mark.parametrize("scenario", list(EXPECTED))
@pytest.mark.parametrize("mode", MODES, ids=str)
def test_scenario_classifies_as_expected(mode: Mode, scenario: str, tmp_path: Path) -> None:
    # The hang scenario never ends by itself: a short timeout stands in for the runner's.
    timeout = 2.0 if scenario == "hang" else 60.0
    outcome = run_fake(mode, fake_env(tmp_path, FAKE_SCENARIO=scenario), tmp_path, timeout)
    parsed = read_output(mode.fmt, outcome, NOW)  # as the manager reads it: stderr and exit codes too
    verdict = classify(outcome, parsed, pattern_chain(), now=NOW)
    assert verdict.outcome == REAL_EXCEPTIONS.get((mode.prog, scenario), EXPECTED[scenario]), verdict.reason
    if verdict.outcome in {OutcomeClass.RATE_LIMITED, OutcomeClass.QUOTA_EXHAUSTED}:
        if (mode.prog, scenario) in NO_RESET_ANNOUNCED:
            assert verdict.reset_at is None
        else:
            assert verdict.reset_at is not None and verdict.reset_at > NOW
    answer = f"Done: {mode.prog} handled a {len(PROMPT)}-character prompt."
    if scenario == "success" or (scenario == "flood" and mode.fmt != "text"):
        assert parsed.final_text == answer
    if scenario == "flood" and mode.fmt == "text":  # plain text: the answer is all that was printed
        assert parsed.final_text is not None and parsed.final_text.endswith(answer)


@pytest.mark.parametrize("mode", [m for m in MODES if m.fmt != "text"], ids=str)
def test_success_reports_usage(mode: Mode, tmp_path: Path) -> None:
    outcome = run_fake(mode, fake_env(tmp_path), tmp_path)
    parsed = parse_output(mode.fmt, outcome.stdout_tail, NOW)
    assert parsed.usage is not None and parsed.usage.input_tokens > 0 and parsed.usage.output_tokens > 0


def test_flood_writes_about_five_megabytes(tmp_path: Path) -> None:
    outcome = run_fake(MODES[0], fake_env(tmp_path, FAKE_SCENARIO="flood"), tmp_path)
    assert outcome.stdout_bytes > 5_000_000


def calls(tmp_path: Path) -> list[dict[str, object]]:
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_log_records_each_invocation(tmp_path: Path) -> None:
    env = fake_env(tmp_path, ADWS_ACCOUNT="work-2", ADWS_PROVIDER="antigravity")
    run_fake(MODES[0], env, tmp_path)
    run_fake(MODES[-1], env, tmp_path)
    first, second = calls(tmp_path)
    assert first == {
        "prog": "claude",
        "argv": ["claude", *MODES[0].args],
        "cwd": str(tmp_path),
        "prompt": PROMPT,
        "prompt_source": "arg",
        "account": "work-2",
        "provider": "antigravity",
        "scenario": "success",
        "pid": first["pid"],
    }
    assert (second["prog"], second["prompt"], second["prompt_source"]) == ("ollama", PROMPT, "stdin")


def test_prompt_from_a_file(tmp_path: Path) -> None:
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text("Prompt from a file\nwith two lines\n")
    for args in (
        ("run", "--format", "json", "--file", str(prompt_file)),  # an option naming the file
        ("run", "--format", "json", str(prompt_file)),  # a positional path
    ):
        run_fake(Mode("opencode", args, "opencode-json"), fake_env(tmp_path), tmp_path)
    gemini = Mode("gemini", ("-p", f"@{prompt_file}", "-o", "json"), "gemini-json")
    run_fake(gemini, fake_env(tmp_path), tmp_path)
    logged = calls(tmp_path)
    assert [(c["prompt"], c["prompt_source"]) for c in logged] == [("Prompt from a file\nwith two lines\n", "file")] * 3


def test_no_prompt_at_all(tmp_path: Path) -> None:
    run_fake(Mode("ollama", ("run", "qwen2.5-coder"), "text"), fake_env(tmp_path), tmp_path)
    assert [(c["prompt"], c["prompt_source"]) for c in calls(tmp_path)] == [(None, "none")]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "success"),
        ({"FAKE_SCENARIO": "auth"}, "auth"),
        ({"FAKE_SCENARIO": "auth", "FAKE_SCENARIO_CLAUDE": "context"}, "context"),
        ({"FAKE_SCENARIO_COPILOT": "context"}, "success"),  # another program's setting
        (
            {
                "FAKE_SCENARIO_CLAUDE": "context",
                "FAKE_SCENARIO_CLAUDE_AG_ACCT_3": "limit_reset",
                "ADWS_ACCOUNT": "ag.acct-3",
            },
            "limit_reset",
        ),
        ({"FAKE_SCENARIO_CLAUDE_AG_ACCT_3": "limit_reset", "ADWS_ACCOUNT": "ag-acct-4"}, "success"),
    ],
)
def test_scenario_selection(env: dict[str, str], expected: str, tmp_path: Path) -> None:
    run_fake(MODES[1], fake_env(tmp_path, **env), tmp_path)
    assert [c["scenario"] for c in calls(tmp_path)] == [expected]


def test_unknown_scenario_is_refused(tmp_path: Path) -> None:
    outcome = run_fake(MODES[1], fake_env(tmp_path, FAKE_SCENARIO="sucess"), tmp_path)
    assert outcome.exit_code == 2
    assert outcome.stderr_tail.startswith("fake_agent: unknown scenario 'sucess'; expected one of success,")


def test_hang_ignores_sigterm_in_parent_and_child(tmp_path: Path) -> None:
    env = fake_env(tmp_path, FAKE_SCENARIO="hang")
    proc = subprocess.Popen(
        ["claude", "-p", PROMPT],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        announced = proc.stderr.readline().decode()  # written once the child is running
        child = int(announced.rsplit("child pid ", 1)[1].rstrip(")\n"))
        os.killpg(proc.pid, signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGINT)
        # Polite signals are ignored: both are still there to be asked again.
        assert proc.poll() is None
        os.kill(child, 0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def test_garbage_is_not_utf8(tmp_path: Path) -> None:
    env = fake_env(tmp_path, FAKE_SCENARIO="garbage")
    done = subprocess.run(["claude", "-p", "x"], env=env, capture_output=True, check=False)
    assert done.returncode == 0
    with pytest.raises(UnicodeDecodeError):
        done.stdout.decode("utf-8")


def test_limit_scenarios_announce_resets_from_the_fake_clock(tmp_path: Path) -> None:
    outcome = run_fake(MODES[0], fake_env(tmp_path, FAKE_SCENARIO="limit_reset"), tmp_path)
    parsed = parse_output("claude-stream-json", outcome.stdout_tail, NOW)
    assert parsed.reset_at == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    outcome = run_fake(MODES[0], fake_env(tmp_path, FAKE_SCENARIO="quota_exhausted"), tmp_path)
    parsed = parse_output("claude-stream-json", outcome.stdout_tail, NOW)
    assert parsed.reset_at == NOW + timedelta(days=3)


def test_executables_are_shell_wrappers_of_the_one_fake() -> None:
    for prog in ("claude", "copilot", "cline", "opencode", "gemini", "ollama"):
        script = BIN / prog
        assert os.access(script, os.X_OK)
        # python3 from PATH, or $FAKE_AGENT_PYTHON
        assert script.read_text().splitlines()[-1].endswith(f'/../fake_agent.py" {prog} "$@"')
