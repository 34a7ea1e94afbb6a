"""verify (a real command through the runner), retry_count from the audit log, retry windows and waiting."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws import audit
from adws.decision import Skip
from adws.errors import RenderError
from adws.history import failed_runs
from adws.retry import BUSY_RECHECK, retry_window, wait_for_capacity
from adws.runner import run
from adws.state.base import Cooldown
from adws.verify import Verification, verify

NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
PY = sys.executable


def check(tmp_path: Path, code: str, timeout: float = 30) -> Verification:
    return verify([PY, "-c", code], {}, cwd=tmp_path, attempt_dir=tmp_path / "attempt", env=dict(os.environ),
                  timeout=timeout, runner=run, grace=0.5)


def test_verify_passes_on_exit_0_and_keeps_its_logs_beside_the_attempt(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("done", encoding="utf-8")
    result = check(tmp_path, "import pathlib; print(pathlib.Path('ok.txt').read_text())")
    assert result.passed and result.reason == "verify passed"
    assert (tmp_path / "attempt" / "verify" / "stdout.log").read_text(encoding="utf-8") == "done\n"


def test_verify_fails_with_the_exit_code_and_the_last_line_of_output(tmp_path: Path) -> None:
    result = check(tmp_path, "print('3 passed'); print('1 failed: test_login'); raise SystemExit(1)")
    assert not result.passed
    assert result.reason == f"verify `{PY} -c print('3 passed'); print('1 failed: test_login'); raise " \
        "SystemExit(1)` exited 1: 1 failed: test_login"


def test_verify_has_its_own_timeout(tmp_path: Path) -> None:
    result = check(tmp_path, "import time; time.sleep(30)", timeout=0.3)
    assert not result.passed and result.reason.endswith("timed out after 0.3 s")


def test_verify_that_cannot_start_fails(tmp_path: Path) -> None:
    result = verify(["no-such-verifier-xyz"], {}, cwd=tmp_path, attempt_dir=tmp_path / "a", env=dict(os.environ),
                    timeout=5, runner=run)
    assert not result.passed
    assert result.reason == "verify `no-such-verifier-xyz` could not start: executable not found: no-such-verifier-xyz"


def test_verify_renders_templates_and_refuses_an_empty_command(tmp_path: Path) -> None:
    result = verify([PY, "-c", "import sys; sys.exit(sys.argv[1] != '42')", "{{ task.number }}"],
                    {"task": {"number": 42}}, cwd=tmp_path, attempt_dir=tmp_path / "a", env=dict(os.environ),
                    timeout=30, runner=run)
    assert result.passed
    with pytest.raises(RenderError, match="renders to an empty command"):
        verify(["{{ '' }}"], {}, cwd=tmp_path, attempt_dir=tmp_path / "a", env={}, timeout=5, runner=run)


# -- history ------------------------------------------------------------------------------------------------


def test_failed_runs_counts_the_same_task_within_the_window(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    for hours_ago, task, success in [(200, "#7", False), (30, "#7", False), (20, "#8", False), (10, "#7", True),
                                     (5, "#7", False), (1, "#7", False)]:
        audit.append(str(log), {"at": (NOW - timedelta(hours=hours_ago)).isoformat(), "task": {"id": task},
                                "success": success})
    with log.open("a", encoding="utf-8") as fh:
        fh.write('{"torn": ')  # a crash mid-write
    assert failed_runs(log, "#7", since=NOW - timedelta(days=7)) == 3
    assert failed_runs(log, "#7", since=NOW - timedelta(hours=6)) == 2
    assert failed_runs(log, "#9", since=NOW - timedelta(days=7)) == 0
    # As at 3 hours ago: the failure of an hour ago is not counted yet.
    assert failed_runs(log, "#7", since=NOW - timedelta(days=7), until=NOW - timedelta(hours=3)) == 2
    assert failed_runs(tmp_path / "missing.jsonl", "#7", since=NOW) == 0


def test_failed_runs_reads_across_block_boundaries(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    lines = [json.dumps({"at": (NOW - timedelta(minutes=n)).isoformat(), "task": {"id": "#1"}, "success": False,
                         "pad": "x" * 997}) for n in range(300, 0, -1)]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")  # ~300 KB: several 64 KiB blocks
    assert failed_runs(log, "#1", since=NOW - timedelta(hours=10)) == 300
    assert failed_runs(log, "#1", since=NOW - timedelta(minutes=100)) == 100


# -- retry window -------------------------------------------------------------------------------------------


@dataclass
class A:
    provider: str
    outcome: str
    reason: str = ""
    account: str | None = None
    reset_at: datetime | None = None


def test_a_spent_plan_of_limits_says_when_the_earliest_tier_is_back() -> None:
    window = retry_window(
        success=False, now=NOW,
        attempts=[A("claude", "rate_limited", "usage limit", "a", reset_at=NOW + timedelta(hours=2)),
                  A("copilot", "quota_exhausted", "monthly quota")],
        skipped=[Skip("gemini", "cooling down: rate_limited", None, NOW + timedelta(minutes=90))],
        cooldowns={("copilot", "default"): Cooldown(NOW + timedelta(minutes=40), "quota_exhausted")})
    assert window.retry_at == NOW + timedelta(minutes=40) and window.retryable


def test_busy_slots_recheck_soon_or_at_the_lease_end() -> None:
    busy = [A("claude", "unavailable", "busy: max_concurrency 1 reached on claude")]
    assert retry_window(success=False, attempts=busy, skipped=[], now=NOW).retry_at == NOW + BUSY_RECHECK
    lease = NOW + timedelta(seconds=5)
    window = retry_window(success=False, attempts=busy, skipped=[], now=NOW, slots={"claude": (lease,)})
    assert window.retry_at == lease and window.retryable


def test_bad_credentials_and_missing_programs_are_permanent() -> None:
    window = retry_window(success=False, now=NOW, attempts=[A("claude", "auth", "invalid API key")],
                          skipped=[Skip("copilot", "command 'copilot' not on PATH")])
    assert window.retry_at is None and not window.retryable
    crashed = retry_window(success=False, now=NOW, attempts=[A("claude", "crashed", "exit 139")], skipped=[])
    assert crashed.retry_at is None and crashed.retryable  # worth another go, but not a matter of waiting
    assert retry_window(success=True, attempts=[], skipped=[], now=NOW).retryable is False


def test_waiting_is_bounded_by_the_deadline() -> None:
    slept: list[float] = []
    assert wait_for_capacity(NOW + timedelta(minutes=5), now=NOW, deadline=NOW + timedelta(minutes=10),
                             sleep=slept.append)
    assert not wait_for_capacity(NOW + timedelta(minutes=15), now=NOW, deadline=NOW + timedelta(minutes=10),
                                 sleep=slept.append)
    assert slept == [300.0]
