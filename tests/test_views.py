"""Operator views: `adws route` text (answer first), line fitting, and why a show-routing scenario failed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from syrupy.assertion import SnapshotAssertion

from adws.config import load_config
from adws.reports import render_routing, routing_report, scenario_router
from adws.views import fit, render_decision

DATA = Path(__file__).resolve().parent / "data"
AT = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)


def test_a_failing_scenario_says_which_condition_failed_and_why(snapshot: SnapshotAssertion) -> None:
    report = routing_report(load_config(DATA / "configs" / "scenarios_failing.toml"), AT)
    why = {s["name"]: s["why"] for s in report["scenarios"]}
    assert why == {
        "docs go to copilot": ["because rule \"docs\" does not match: labels: task has ['documentation'], rule "
                               "wants any of ['docs']"],
        "docs bug": ['because rule "docs" matches, but "bugs" (priority 70) comes first'],
        "bugs on copilot": ["because claude: no model declared"],
    }
    text = render_routing(report)
    assert text[text.index("scenarios:"):] == snapshot


def test_nothing_to_run_leads_with_that(snapshot: SnapshotAssertion) -> None:
    config = load_config(DATA / "configs" / "scenarios_failing.toml")
    router = scenario_router(config)
    decision = router.route({"number": 1, "labels": ["bug"]}, now=AT)
    decision.plan.clear()  # as when every tier is cooling down
    lines = render_decision(decision)
    assert lines[0] == '→ nothing can run now (rule "bugs"): every tier of the plan was skipped'
    assert "\n".join(lines) == snapshot


def test_fit_wraps_long_lines_under_their_indent_and_leaves_pipes_alone() -> None:
    line = "  [  75] multi-file-cline: no — labels: task has ['bug'], rule wants any of ['refactor', 'multi-file']"
    assert fit([line], None) == line
    wrapped = fit([line, "short"], 50).splitlines()
    assert wrapped[-1] == "short"
    assert all(len(part) <= 50 for part in wrapped)
    assert all(part.startswith("      ") for part in wrapped[1:-1])
    assert " ".join(part.strip() for part in wrapped[:-1]) == line.strip()


def test_the_plan_shows_where_verification_happens() -> None:
    from adws.config.load import compile_config, parse_toml

    text = (DATA / "configs" / "scenarios_failing.toml").read_text(encoding="utf-8").replace(
        '[providers.copilot]', 'verify = ["pytest", "-q"]\n[providers.copilot]')
    config = compile_config(parse_toml(text), "verify.toml")
    decision = scenario_router(config).route({"number": 1, "labels": ["bug"]}, now=AT)
    lines = render_decision(decision, config.providers)
    assert lines[1:5] == [
        "plan:",
        "  1. claude model=None — no model declared",
        "     then verify: pytest -q (non-zero: verify_failed)",
        "  2. copilot model=None — no model declared",
    ]
