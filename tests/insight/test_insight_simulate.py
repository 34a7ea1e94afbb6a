from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws import audit
from adws.config import load_config
from adws.errors import UsageError
from adws.insight import simulate, workload
from adws.insight.simulate import EMITTERS
from adws.parsers import PARSERS, parse_output
from tests.helpers import ROOT

MONDAY = datetime(2026, 11, 16, tzinfo=UTC)


def write_workload(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


WORKLOAD = """
[workload]
tasks_per_day = 40
weekend_factor = 1
error_rate = 0

[workload.size]
input = { median = 8000, p90 = 12000 }
output = { median = 2000, p90 = 3000 }

[[workload.mix]]
weight = 3
task = { title = "Fix it", labels = ["bug"] }
[[workload.mix]]
weight = 1
task = { title = "Write docs", labels = ["docs"] }
"""


def run(config: Path, tmp_path: Path, *, days: int = 3, seed: int = 1, text: str = WORKLOAD,
        audit_out: Path | None = None) -> simulate.Simulation:
    spec = workload.load_workload(write_workload(tmp_path / "w.toml", text))
    tasks = workload.generate(spec, MONDAY, days, random.Random(seed))
    return simulate.simulate(load_config(config), tasks, workload=spec, start=MONDAY, days=days, seed=seed,
                             audit_path=str(audit_out) if audit_out else None)


def test_emitters_cover_every_output_format_and_parse_back() -> None:
    assert set(EMITTERS) == set(PARSERS)
    for fmt, emit in EMITTERS.items():
        parsed = parse_output(fmt, emit("done", 1200, 340, 0.5), MONDAY)
        assert parsed.final_text == "done" and not parsed.is_error, fmt
        if fmt != "text":  # plain text reports no usage: adws estimates it
            assert parsed.usage is not None and (parsed.usage.input_tokens, parsed.usage.output_tokens) == (1200, 340)


def test_the_same_seed_gives_the_same_week(write_config: Callable[..., Path], tmp_path: Path) -> None:
    config = write_config()
    first = run(config, tmp_path, seed=7).to_dict()
    again = run(config, tmp_path, seed=7).to_dict()
    other = run(config, tmp_path, seed=8).to_dict()
    assert first == again
    assert first != other


def test_spent_accounts_are_refused_with_the_true_reset_and_cool_down_until_it(
        write_config: Callable[..., Path], tmp_path: Path) -> None:
    # 100K tokens per account per week; people use a fifth of it outside adws, so the provider refuses while
    # adws's ledger still shows room.
    config = write_config(alpha_tokens=100000, hard=100)
    sim = run(config, tmp_path, days=3, audit_out=tmp_path / "audit.jsonl",
              text=WORKLOAD.replace("error_rate = 0", "error_rate = 0\nunseen_use = 0.2"))
    data = sim.to_dict()
    next_monday = "2026-11-23T00:00:00+00:00"
    for name in ("alpha/one", "alpha/two"):
        account = data["accounts"][name]
        assert account["rejected_at"] is not None and account["capacity_returns"] == next_monday
    assert data["tiers"]["alpha"]["capacity_returns"] == next_monday
    # Each account is refused once: then adws cools it down until the announced reset and stops trying it.
    assert data["rejected_attempts"] == {"alpha/one": 1, "alpha/two": 1}
    records = audit.read(tmp_path / "audit.jsonl")
    refused = [a for r in records for a in r["attempts"] if a["outcome"] in ("quota_exhausted", "rate_limited")]
    assert [a["reset_at"] for a in refused] == [next_monday, next_monday]
    assert all(a["outcome"] == "quota_exhausted" for a in refused)  # a reset days away is a spent quota
    # After tier 1 is spent, tasks land on tier 2.
    assert data["landed"]["alpha"] > 0 and data["landed"]["beta"] > 0
    assert data["succeeded"] == data["tasks"]
    # Tier 1 really did run out: what adws's tasks took is close to their share (2 accounts x 80K).
    used = sum(a["usage"]["input_tokens"] + a["usage"]["output_tokens"] for r in records for a in r["attempts"]
               if a["provider"] == "alpha" and a["outcome"] == "success")
    assert 160000 <= used < 160000 + 2 * 20000


def test_a_hard_block_below_100_keeps_the_provider_from_refusing(write_config: Callable[..., Path],
                                                                 tmp_path: Path) -> None:
    sim = run(write_config(alpha_tokens=100000, hard=80), tmp_path, days=3).to_dict()
    assert sim["rejected_attempts"] == {}
    assert sim["accounts"]["alpha/one"]["blocked_at"] is not None
    assert sim["below_tier1_with_room"]["tier 1 at adws's hard block"] >= 1


def test_a_rule_below_tier_1_is_counted_when_tier_1_had_room(write_config: Callable[..., Path],
                                                              tmp_path: Path) -> None:
    rules = '[[routing.rules]]\nname = "docs-beta"\nconditions = { labels = ["docs"] }\nprovider = "beta"\n'
    sim = run(write_config(rules, alpha_tokens=10_000_000), tmp_path, days=2).to_dict()
    below = sim["below_tier1_with_room"]
    assert below["rule docs-beta"] == below["total"] > 0


def test_issue_queue_from_gh(write_config: Callable[..., Path], tmp_path: Path) -> None:
    issues = tmp_path / "issues.json"
    issues.write_text(json.dumps([
        {"number": 5, "title": "Crash on start", "body": "", "labels": [{"name": "bug"}]},
        {"number": 6, "title": "Docs", "body": "update", "labels": []},
    ]))
    tasks = workload.from_issues(str(issues), workload.Workload(), random.Random(1), MONDAY)
    assert [(t.key, t.at) for t in tasks] == [("#5", MONDAY), ("#6", MONDAY + timedelta(minutes=1))]
    assert tasks[0].task["labels"] == ["bug"]
    sim = simulate.simulate(load_config(write_config()), tasks, workload=workload.Workload(), start=MONDAY,
                            days=1, seed=1)
    assert sim.tasks == 2


def test_tasks_from_an_audit_log(write_config: Callable[..., Path], tmp_path: Path) -> None:
    config = write_config()
    run(config, tmp_path, days=1, audit_out=tmp_path / "first.jsonl")
    tasks = workload.from_audit(str(tmp_path / "first.jsonl"), workload.Workload(), random.Random(1),
                                MONDAY + timedelta(days=7), 1)
    assert tasks and tasks[0].at == MONDAY + timedelta(days=7)
    recorded = audit.read(tmp_path / "first.jsonl")
    assert len(tasks) == len(recorded)
    ok = next(a for a in recorded[0]["attempts"] if a["outcome"] == "success")
    assert tasks[0].input_tokens == ok["usage"]["input_tokens"]


@pytest.mark.parametrize(("text", "message"), [
    ("[workload]\ntasks_per_dya = 3\n", "workload.tasks_per_dya: unknown key (did you mean \"tasks_per_day\"?)"),
    ("[workload]\nerror_rate = 2\n", "workload.error_rate: expected a number within 0-1, got 2"),
    ("[workload.size]\ninput = { median = 10, p90 = 5 }\n", "workload.size.input.p90: must be at least the median"),
    ("[workload]\nhours = [20, 8]\n", "workload.hours: expected [start, end] with 0 <= start < end <= 24"),
    ("[[workload.mix]]\ntask = { labels = \"bug\" }\n",
     "workload.mix[0].task: invalid task: labels: expected an array, got a string"),
])
def test_workload_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        workload.load_workload(write_workload(tmp_path / "w.toml", text))
    assert message in str(info.value)


def test_cli_simulate_json_and_audit_out(write_config: Callable[..., Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from adws.cli import main

    config = write_config()
    args = ["simulate", "--config", str(config), "--days", "2", "--seed", "3", "--start", "2026-11-16T00:00:00Z",
            "--workload", write_workload(tmp_path / "w.toml", WORKLOAD), "--audit-out", str(tmp_path / "sim.jsonl")]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["days"] == 2 and data["seed"] == 3 and data["start"] == "2026-11-16T00:00:00+00:00"
    assert len(audit.read(tmp_path / "sim.jsonl")) == data["tasks"]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("simulated 2 day(s) from 2026-11-16T00:00:00+00:00 (seed 3):")


def test_arrivals_keep_to_utc_hours_and_never_precede_the_start() -> None:
    spec = workload.Workload(tasks_per_day=200, hours=(8, 20))
    noon = MONDAY + timedelta(hours=12)
    tasks = workload.generate(spec, noon, 2, random.Random(3))
    assert tasks and all(t.at >= noon and 8 <= t.at.hour < 20 for t in tasks)
    assert [t.at for t in tasks] == sorted(t.at for t in tasks)
    assert {t.at.date() for t in tasks} == {MONDAY.date(), (MONDAY + timedelta(days=1)).date()}


def test_days_and_tasks_are_bounded_with_a_clear_message(
        write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from adws.cli import main

    config = str(write_config())
    for days in ("100000", "0", str(simulate.MAX_DAYS + 1)):
        assert main(["simulate", "--config", config, "--days", days]) == 2
        assert capsys.readouterr().err == (f"adws: --days: expected 1 to {simulate.MAX_DAYS} (a year), "
                                           f"got {days}\n")
    busy = tmp_path / "busy.toml"
    busy.write_text("[workload]\ntasks_per_day = 1000000\n", encoding="utf-8")
    assert main(["simulate", "--config", config, "--days", "2", "--workload", str(busy)]) == 2
    assert capsys.readouterr().err == ("adws: the workload gives about 2,000,000 tasks (tasks_per_day 1e+06 x 2 "
                                       f"days); one run simulates at most {simulate.MAX_TASKS:,}: lower --days or "
                                       "tasks_per_day\n")


def _readme_block(after: str) -> str:
    """The first fenced block of README.md after the line that holds `after`, its fences dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("```\n", text.index(after)) + len("```\n")
    return text[start:text.index("```", start)]


def _shown_as(block: str) -> re.Pattern[str]:
    """The README's block as a pattern of the whole output: a line "  ..." stands for one or more left-out lines."""
    parts = [r"(?:[^\n]*\n)+" if line == "  ..." else re.escape(line) + r"\n"
             for line in block.rstrip("\n").split("\n")]
    return re.compile("".join(parts))


def test_the_readme_week_is_what_the_shipped_config_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """README "A week with adws" and the `adws stats` example show this very run of the shipped config (the
    README's commands, with the start and window it was run with written out), so they cannot go stale."""
    from adws.cli import main

    monkeypatch.setenv("ADWS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    week = tmp_path / "week.jsonl"
    assert main(["simulate", "--config", str(ROOT / "config.toml"), "--days", "7", "--seed", "1",
                 "--start", "2026-11-30T00:00:00Z", "--audit-out", str(week)]) == 0
    shown = capsys.readouterr().out.replace(str(week), "week.jsonl")
    assert _shown_as(_readme_block("simulate says:")).fullmatch(shown.split("audit log:")[0]), shown
    assert main(["stats", "--audit", str(week), "--since", "2026-11-30T00:00:00Z"]) == 0
    table = capsys.readouterr().out.replace(" since 2026-11-30T00:00:00+00:00", "")  # the README leaves --since out
    assert _readme_block("#### `adws stats").split("\n", 1)[1] == table, table


@pytest.mark.parametrize(("text", "message"), [
    ("[workload]\n[[workload.mix]]\ntask = " + "{a=" * 500 + "1" + "}" * 500 + "\n",
     "nested too deeply: a workload needs at most 32 levels of tables and arrays"),
    ("[workload]\n[[workload.mix]]\ntask = " + "{a=" * 40 + "1" + "}" * 40 + "\n",
     "nested 44 levels deep under workload.mix.0.task: a workload needs at most 32 levels"),
])
def test_a_deeply_nested_workload_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        workload.load_workload(write_workload(tmp_path / "w.toml", text))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("[" * 100_000 + "]" * 100_000, "the JSON is nested too deeply"),
    ('[{"number": 1, "title": "t", "labels": ' + "[" * 40 + "]" * 40 + "}]",
     "[0]: nested 41 levels deep: a task needs at most 32 levels"),
])
def test_a_deeply_nested_issue_list_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    issues = tmp_path / "issues.json"
    issues.write_text(text)
    with pytest.raises(UsageError) as info:
        workload.from_issues(str(issues), workload.Workload(), random.Random(1), MONDAY)
    assert message in str(info.value) and "\n" not in str(info.value)
