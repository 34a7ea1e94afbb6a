from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adws.cli import main
from adws.config import load_config
from adws.insight import simulate, workload

MONDAY = datetime(2026, 11, 16, tzinfo=UTC)
RULES = """
[[routing.rules]]
name = "bugs-beta"
priority = 50
conditions = { labels = ["bug"] }
provider = "beta"
"""


@pytest.fixture
def log(write_config: Callable[..., Path], tmp_path: Path) -> Path:
    """A day of recorded tasks, half of them bugs, made by the real engine (simulated agents)."""
    spec = workload.Workload(tasks_per_day=20, error_rate=0, mix=(
        (1.0, {"title": "Crash", "labels": ["bug"]}), (1.0, {"title": "Tidy up", "labels": ["chore"]})))
    config = load_config(write_config(RULES, alpha_tokens=10_000_000))
    tasks = workload.generate(spec, MONDAY, 1, random.Random(2))
    simulate.simulate(config, tasks, workload=spec, start=MONDAY, days=1, seed=2, audit_path=str(tmp_path / "a.jsonl"))
    return tmp_path / "a.jsonl"


def test_the_same_config_changes_nothing(log: Path, write_config: Callable[..., Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    same = write_config(RULES, name="same.toml", alpha_tokens=10_000_000)
    assert main(["replay", "--audit", str(log), "--config", str(same), "--fail-on-change"]) == 0
    out = capsys.readouterr().out
    assert "changed (0 rule, 0 provider, 0 model)" in out


def test_an_edited_rule_shows_what_moves(log: Path, write_config: Callable[..., Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    edited = write_config(RULES.replace('provider = "beta"', 'provider = "gamma"'), name="new.toml",
                          alpha_tokens=10_000_000)
    assert main(["replay", "--audit", str(log), "--config", str(edited), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    bugs = sum(1 for line in log.read_text().splitlines() if "bug" in json.loads(line)["task"]["labels"])
    assert data["summary"]["changed"] == data["summary"]["provider_changed"] == bugs > 0
    assert data["summary"]["rule_changed"] == 0
    assert data["summary"]["provider_moves"] == {"beta → gamma": bugs}
    change = data["changes"][0]
    assert change["before"] == {"rule": "bugs-beta", "provider": "beta", "model": "b1"}
    assert change["after"] == {"rule": "bugs-beta", "provider": "gamma", "model": "g1"}
    assert change["changed"] == ["provider", "model"]
    assert main(["replay", "--audit", str(log), "--config", str(edited), "--fail-on-change"]) == 1
    out = capsys.readouterr().out
    assert "  provider beta                         → gamma" in out
    assert f"  beta → gamma: {bugs}" in out


def test_baseline_compares_two_configs_judged_alike(log: Path, write_config: Callable[..., Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    old = write_config(RULES, name="old.toml", alpha_tokens=10_000_000)
    new = write_config("", name="new.toml", alpha_tokens=10_000_000)  # the bug rule removed
    assert main(["replay", "--audit", str(log), "--config", str(new), "--baseline", str(old), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {c["before"]["rule"] for c in data["changes"]} == {"bugs-beta"}
    assert {c["after"]["rule"] for c in data["changes"]} == {"default"}


def test_a_task_that_no_longer_routes_is_reported(tmp_path: Path, write_config: Callable[..., Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from tests.insight.conftest import attempt, record, write_audit

    log = write_audit(tmp_path / "a.jsonl", [record([attempt("alpha")], task={
        "id": "x", "labels": ["route:delta"], "retry_count": 0})])
    assert main(["replay", "--audit", str(log), "--config", str(write_config()), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["errors"] == 1
    assert 'unknown provider "delta"' in data["changes"][0]["error"]


def test_the_weeks_situation_is_laid_over_the_candidate(write_config: Callable[..., Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Tier 1 runs out mid-log: under the same config nothing moves, though a fresh-quota judgement alone
    would send every later task back to tier 1."""
    spec = workload.Workload(tasks_per_day=40, error_rate=0)
    config = write_config(alpha_tokens=60000)
    tasks = workload.generate(spec, MONDAY, 2, random.Random(5))
    simulate.simulate(load_config(config), tasks, workload=spec, start=MONDAY, days=2, seed=5,
                      audit_path=str(tmp_path / "spent.jsonl"))
    records = [json.loads(line) for line in (tmp_path / "spent.jsonl").read_text().splitlines()]
    assert any(r["decision"]["provider"] == "beta" for r in records)  # tier 1 was spent for some tasks
    assert main(["replay", "--audit", str(tmp_path / "spent.jsonl"), "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["changed"] == 0


def test_situational_skips_leave_config_reasons_to_the_candidate() -> None:
    from adws.insight.replay import situational_skips

    decision = {"skipped": [
        {"provider": "alpha", "reason": "quota 96% used (hard block at 95%)", "account": "one"},
        {"provider": "alpha", "reason": "no usable account; the first is back at 2026-11-23T00:00:00+00:00"},
        {"provider": "beta", "reason": "disabled in config"},
        {"provider": "gamma", "reason": "context too small: g1 holds 8000 tokens"},
        {"provider": "delta", "reason": "command 'delta-cli' not on PATH"},
        {"provider": "eps", "reason": "account disabled", "account": "x"},
        {"provider": "eps", "reason": "no usable account"},
    ]}
    assert situational_skips(decision) == {"alpha", "delta"}
