"""The corpus of real agent-CLI outputs (tests/data/real, convention in its README.md) is the parsers' oracle.

Every sample NAME (NAME.stdout.*, NAME.stderr.txt, NAME.exit, NAME.expect) goes through the same path an attempt
takes in the manager — `read_output`, `classify` with the default patterns, `booked_usage` — with now = T0, the
reference time the samples were written at, and must give the class, reset time, usage and request count its
.expect states. A new real output someone reports is one new file group here, with its provenance.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws.attempt import OutcomeClass, RunOutcome, Usage
from adws.classify import booked_usage, classify, pattern_chain
from adws.parsers import PARSERS, find_reset_time, read_output
from tests.helpers import DATA, FAKES

REAL = DATA / "real"
T0 = datetime.fromisoformat(
    re.search(r"\bT0 = (\S+)", (REAL / "README.md").read_text(encoding="utf-8")).group(1)  # type: ignore[union-attr]
)
RESET_TOLERANCE = timedelta(minutes=2)  # as the corpus README allows
# What the manager would estimate; a sample whose .expect says "estimated" must get this, marked estimated.
ESTIMATE = Usage(requests=1, input_tokens=123, output_tokens=45, estimated=True)
FORMAT_BY_PREFIX = (
    ("claude-stream", "claude-stream-json"),
    ("claude", "claude-json"),
    ("gemini-stream", "gemini-stream-json"),
    ("gemini", "gemini-json"),
    ("copilot", "copilot-json"),
    ("opencode", "opencode-json"),
    ("cline", "cline-json"),
    ("codex", "codex-json"),
    ("ollama", "text"),
)


@dataclass
class Expect:
    outcome: OutcomeClass
    output_format: str
    reset_at: datetime | None
    usage: tuple[int, int, float] | str | None  # (input, output, cost) as reported, "estimated", or unchecked
    requests: int | None
    sources: list[str]
    host_tz: str  # the zone of the machine the CLI ran on (what a CLI printing local time printed in)


def read_expect(name: str) -> Expect:
    lines = (REAL / f"{name}.expect").read_text(encoding="utf-8").splitlines()
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), []).append(value.strip())
    fmt = fields.get("output_format", [""])[0].split()[0] if "output_format" in fields else ""
    if not fmt:
        fmt = next(f for prefix, f in FORMAT_BY_PREFIX if name.startswith(prefix))
    usage: tuple[int, int, float] | str | None = None
    if "usage" in fields:
        text = fields["usage"][0]
        if text.startswith("estimated"):
            usage = "estimated"
        else:
            numbers = dict(re.findall(r"(\w+)=([-\d.eE+]+)", text))
            usage = (int(numbers["input_tokens"]), int(numbers["output_tokens"]), float(numbers["cost_usd"]))
    return Expect(
        outcome=OutcomeClass(lines[0].strip()),
        output_format=fmt,
        reset_at=datetime.fromisoformat(fields["reset_at"][0].split()[0]) if "reset_at" in fields else None,
        usage=usage,
        requests=int(fields["requests"][0].split()[0]) if "requests" in fields else None,
        sources=fields.get("source", []),
        host_tz=fields.get("host_tz", ["UTC"])[0],
    )


def outcome_of(name: str) -> RunOutcome:
    """What the runner would have observed: a `hang` sample is one the runner ended at its timeout."""
    stdout_files = sorted(REAL.glob(f"{name}.stdout.*"))
    stdout = stdout_files[0].read_text(encoding="utf-8") if stdout_files else ""
    stderr_file = REAL / f"{name}.stderr.txt"
    stderr = stderr_file.read_text(encoding="utf-8") if stderr_file.exists() else ""
    exit_text = (REAL / f"{name}.exit").read_text().strip()
    hang = exit_text == "hang"
    return RunOutcome(
        argv=[name], exit_code=None if hang else int(exit_text), signal=15 if hang else None, timed_out=hang,
        duration_ms=3000, stdout_path=None, stderr_path=None, stdout_tail=stdout, stderr_tail=stderr,
        stdout_bytes=len(stdout), stderr_bytes=len(stderr), truncated=False,
    )


SAMPLES = sorted(path.name[: -len(".expect")] for path in REAL.glob("*.expect"))


def test_the_corpus_is_there_and_every_sample_says_where_it_comes_from() -> None:
    assert len(SAMPLES) >= 40
    for name in SAMPLES:
        expect = read_expect(name)
        assert expect.sources, f"{name}.expect names no source"
        assert expect.output_format in PARSERS, name
        assert (REAL / f"{name}.exit").exists(), name


@pytest.mark.parametrize("name", SAMPLES)
def test_a_real_output_is_classified_as_its_expect_says(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expect = read_expect(name)
    monkeypatch.setenv("TZ", expect.host_tz)  # adws.parsers.reset.host_zone reads it
    outcome = outcome_of(name)
    parsed = read_output(expect.output_format, outcome, T0)
    verdict = classify(outcome, parsed, pattern_chain(), now=T0)
    assert verdict.outcome == expect.outcome, verdict.reason
    if expect.reset_at is not None:
        assert verdict.reset_at is not None, f"no reset found ({verdict.reason})"
        assert abs(verdict.reset_at - expect.reset_at) <= RESET_TOLERANCE, verdict.reset_at
    booked = booked_usage(verdict, parsed, lambda: ESTIMATE)
    if expect.usage == "estimated":
        assert booked.estimated, booked
    elif expect.usage is not None:
        assert not booked.estimated, booked
        assert (booked.input_tokens, booked.output_tokens) == expect.usage[:2]
        assert booked.cost_usd == pytest.approx(expect.usage[2], rel=1e-5, abs=1e-6)
    if expect.requests is not None:
        assert booked.requests == expect.requests


def test_a_call_turned_away_books_nothing_unless_the_cli_reports_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SAMPLES:
        expect = read_expect(name)
        monkeypatch.setenv("TZ", expect.host_tz)
        if expect.outcome not in (OutcomeClass.RATE_LIMITED, OutcomeClass.QUOTA_EXHAUSTED, OutcomeClass.AUTH):
            continue
        outcome = outcome_of(name)
        parsed = read_output(expect.output_format, outcome, T0)
        booked = booked_usage(classify(outcome, parsed, pattern_chain(), now=T0), parsed, lambda: ESTIMATE)
        if parsed.usage is None or parsed.usage.total_tokens == 0:
            assert (booked.requests, booked.total_tokens, booked.cost_usd) == (0, 0, 0.0), name


PROBES = [json.loads(line) for line in (REAL / "reset-probes.jsonl").read_text(encoding="utf-8").splitlines() if line]


@pytest.mark.parametrize("probe", PROBES, ids=[p["text"][:40] for p in PROBES])
def test_a_real_reset_announcement_is_read(probe: dict[str, str | None]) -> None:
    now = datetime.fromisoformat(str(probe["now"]).replace("Z", "+00:00"))
    found = find_reset_time(str(probe["text"]), now)
    if probe["expected_reset_at"] is None:
        assert found is None
    else:
        expected = datetime.fromisoformat(str(probe["expected_reset_at"]).replace("Z", "+00:00"))
        assert found is not None
        assert abs(found - expected) <= timedelta(seconds=2)
        assert found.tzinfo == UTC


# --- end to end: the fake CLI replays a corpus sample through `adws run` ------------------------------------

FAKE_BIN = FAKES / "bin"
CONFIG = """\
[routing]
chain = ["p"]
default_provider = "p"

[providers.p]
command_template = ["opencode", "run", "--format", "json"]
prompt = "stdin"
output_format = {fmt}
timeout = {timeout}
kill_grace = 1
{extra}

[state]
backend = "memory"

[audit]
path = "audit.jsonl"

[run]
dir = "runs"
"""


def adws_run(tmp_path: Path, sample: str, fmt: str, timeout: float = 60, extra: str = "") -> dict[str, object]:
    (tmp_path / "config.toml").write_text(
        CONFIG.format(fmt=json.dumps(fmt), timeout=timeout, extra=extra), encoding="utf-8"
    )
    (tmp_path / "prompt.md").write_text("Fix the parser.\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_", "ADWS_"))}
    env.update(PATH=f"{FAKE_BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp_path), FAKE_SCENARIO="replay",
               FAKE_REPLAY=str(REAL / sample))
    done = subprocess.run(
        [sys.executable, "-m", "adws", "run", "--config", "config.toml", "--task-json", '{"title":"t"}',
         "--prompt-file", "prompt.md", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    attempts = json.loads(done.stdout)["attempts"]
    assert isinstance(attempts, list)
    return dict(attempts[0])


@pytest.mark.parametrize(
    "name",
    [
        "claude-stream-success-exit1",
        "copilot-quota-402",
        "gemini-json-no-auth-method",
        "cline2-success-no-token-figures",
    ],
)
def test_a_replayed_real_output_gets_its_class_and_booking_end_to_end(name: str, tmp_path: Path) -> None:
    expect = read_expect(name)
    attempt = adws_run(tmp_path, name, expect.output_format)
    assert attempt["outcome"] == expect.outcome.value, attempt["reason"]
    usage = attempt["usage"]
    assert isinstance(usage, dict)
    if expect.usage == "estimated":
        assert usage["estimated"] is True
    if expect.requests is not None:
        assert usage["requests"] == expect.requests


def test_an_agent_silent_past_its_idle_timeout_ends_as_a_timeout(tmp_path: Path) -> None:
    # OpenCode sleeping through a month-long retry-after (opencode-go-monthly-limit-hang): nothing on stdout or
    # stderr; the idle timeout ends it long before the wall-clock timeout would.
    sample = "opencode-go-monthly-limit-hang"
    attempt = adws_run(tmp_path, sample, "opencode-json", timeout=300, extra="idle_timeout = 1")
    assert attempt["outcome"] == "timeout"
    assert "idle_timeout" in str(attempt["reason"])
