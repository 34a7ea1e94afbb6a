"""Every view of one prepared moment tells the same story: providers, quota, route, route --explain, check.

The state (tests/data/views.toml explains it): a cooldown, an exhausted account, an account over its hard
block, an open circuit, a busy provider, and one tier that can run. Each view is snapshotted as text (at a fixed
terminal width) and as JSON, and `providers --json` is checked against route() itself: a provider is shown
available iff some task's plan can use it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from syrupy.assertion import SnapshotAssertion

from adws import cli
from adws.attempt import Usage
from adws.config import load_config
from adws.engine import Engine
from adws.reports import providers_report, render_routing
from adws.scenarios import routing_report, scenario_router
from adws.state import Cooldown, MemoryStore, UsageRecord, open_store
from adws.state.base import BreakerState
from adws.views import fit, minute, render_decision, times_in
from tests.helpers import TESTS

CONFIG = TESTS / "data" / "views.toml"
AT = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
AT_ARG = "2026-11-18T13:00:00Z"
BUG = json.dumps({"number": 7, "title": "Null pointer in parser", "labels": ["bug"]})
DOCS = json.dumps({"number": 8, "title": "Explain the views", "labels": ["documentation"]})
PLAIN = json.dumps({"number": 9, "title": "Tidy imports"})


def prepare(path: Path) -> None:
    """The moment every view is asked about: see tests/data/views.toml."""
    store = open_store("sqlite", str(path))
    store.set_cooldown("alpha", "a1", Cooldown(AT + timedelta(hours=2), "rate_limited"))
    store.set_cooldown("alpha", "a2", Cooldown(datetime(2026, 11, 22, tzinfo=UTC), "quota_exhausted"))
    store.record_usage(UsageRecord("alpha", "a3", AT - timedelta(days=1), Usage(4, 90_000, 6_000)))
    store.record_usage(UsageRecord("alpha", "a1", AT - timedelta(days=1), Usage(2, 30_000, 2_000)))
    store.update_breaker("beta", lambda state: BreakerState("open", 3, AT - timedelta(minutes=2)))
    assert store.acquire_slot("gamma", "run-1", 1, AT - timedelta(minutes=5), AT + timedelta(minutes=25))
    store.record_usage(UsageRecord("delta", "d1", AT - timedelta(days=2), Usage(10, 0, 0)))
    store.close()


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state.sqlite3"
    monkeypatch.setenv("ADWS_STATE_PATH", str(path))
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("ADWS_CONFIG", raising=False)
    prepare(path)
    return path


def adws(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    assert err == ""
    return code, out


VIEWS: dict[str, tuple[list[str], int]] = {
    "providers": (["providers", "--config", str(CONFIG), "--at", AT_ARG], 0),
    "quota": (["quota", "--config", str(CONFIG), "--at", AT_ARG], 0),
    "route-bug": (["route", "--config", str(CONFIG), "--at", AT_ARG, "--task-json", BUG], 0),
    "route-docs": (["route", "--config", str(CONFIG), "--at", AT_ARG, "--task-json", DOCS], 0),
    "route-bug-explain": (["route", "--config", str(CONFIG), "--at", AT_ARG, "--task-json", BUG, "--explain"], 0),
}


@pytest.mark.parametrize("view", list(VIEWS))
def test_view_text(view: str, state: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    args, code = VIEWS[view]
    got, out = adws(capsys, *args)
    assert got == code
    assert all(len(line) <= 100 for line in out.splitlines())  # fits COLUMNS
    assert out == snapshot


@pytest.mark.parametrize("view", list(VIEWS))
def test_view_json(view: str, state: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    args, code = VIEWS[view]
    got, out = adws(capsys, *args, "--json")
    assert got == code
    assert json.loads(out) == snapshot


def test_check_view(state: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    code, out = adws(capsys, "check", str(CONFIG))
    assert (code, out.replace(str(CONFIG), "tests/data/views.toml")) == (0, snapshot)


def test_an_empty_plan_says_when_the_first_tier_is_back(state: Path, capsys: pytest.CaptureFixture[str],
                                                        snapshot: SnapshotAssertion) -> None:
    # delta, the only tier that can run, is out of the plan of a rule without fall-through.
    (state.parent / "nofall.toml").write_text(
        CONFIG.read_text(encoding="utf-8").replace('provider = "beta"\n', 'provider = "beta"\nfallback = false\n'),
        encoding="utf-8")
    code, out = adws(capsys, "route", "--config", str(state.parent / "nofall.toml"), "--at", AT_ARG,
                     "--task-json", BUG)
    assert code == 1
    assert out.splitlines()[0] == '→ nothing can run now (rule "bugs-to-beta"): beta is back first, at 14:08 CET'
    assert out == snapshot


# -- the views agree with each other and with route() -----------------------------------------------------


def the_same_moment(state: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    views = {}
    for name in ("providers", "quota", "route-bug"):
        views[name] = json.loads(adws(capsys, *VIEWS[name][0], "--json")[1])
    return views


def test_providers_and_route_give_the_same_reasons(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    views = the_same_moment(state, capsys)
    providers = {row["name"]: row for row in views["providers"]}
    decision = views["route-bug"]
    # Each tier's line in the decision is among the provider's own reasons, with the same fields.
    for skip in decision["skipped"]:
        assert skip in providers[skip["provider"]]["skipped"], skip
    assert [row["name"] for row in views["providers"] if row["status"] == "available"] == \
        [step["provider"] for step in decision["plan"]] == ["delta"]
    # The quota view shows the same accounts out: a limit the provider announced is an alert too.
    quota = {(r["provider"], r["account"]): r for r in views["quota"]}
    assert (quota[("alpha", "a2")]["alert"], quota[("alpha", "a2")]["alert_source"]) == ("exhausted", "announced")
    assert (quota[("alpha", "a1")]["alert"], quota[("alpha", "a1")]["alert_source"]) == ("rate limited", "announced")
    assert quota[("alpha", "a1")]["cooldown_until"] == providers["alpha"]["until"] == "2026-11-18T15:00:00+00:00"
    assert (quota[("alpha", "a3")]["alert"], quota[("alpha", "a3")]["alert_source"]) == \
        ("blocked (>= 95%)", "computed")
    for (provider, account), row in quota.items():  # every account out in the providers view has its alert
        if any(s.get("account") == account for s in providers[provider]["skipped"] if "cooling" in s["reason"]
               or "quota" in s["reason"]):
            assert row["alert"] is not None, (provider, account)


MOMENTS = {
    "prepared": AT,
    "breaker-probe-due": AT + timedelta(minutes=9),  # beta's cooldown is over: one probe may go
    "slot-lease-over": AT + timedelta(minutes=31),  # gamma's holder never released: its lease ran out
    "a1-back": AT + timedelta(hours=2, seconds=1),
    "next-week": datetime(2026, 11, 23, 9, 0, tzinfo=UTC),  # every period reset, every cooldown over
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_available_iff_route_can_plan_it_for_some_task(moment: str, state: Path) -> None:
    now = MOMENTS[moment]
    engine = Engine(load_config(CONFIG), environ={"PATH": "/bin:/usr/bin", "ADWS_STATE_PATH": str(state)})
    try:
        available_iff_plannable(engine, now)
    finally:
        engine.close()


def test_the_tier_says_when_it_comes_back(state: Path) -> None:
    engine = Engine(load_config(CONFIG), environ={"PATH": "/bin:/usr/bin", "ADWS_STATE_PATH": str(state)})
    rows = {row["name"]: row for row in providers_report(engine, AT)}
    assert {name: (row["status"], row["until"]) for name, row in rows.items()} == {
        "alpha": ("unavailable", "2026-11-18T15:00:00+00:00"),  # a1's cooldown ends first (a3 waits for Sunday)
        "beta": ("unavailable", "2026-11-18T13:08:00+00:00"),  # the breaker's probe is due
        "gamma": ("unavailable", "2026-11-18T13:25:00+00:00"),  # the held slot's lease ends
        "delta": ("available", None),
    }
    assert rows["alpha"]["skipped"] == [
        {"provider": "alpha", "reason": "cooling down: rate_limited", "account": "a1",
         "until": "2026-11-18T15:00:00+00:00"},
        {"provider": "alpha", "reason": "cooling down: quota_exhausted", "account": "a2",
         "until": "2026-11-22T00:00:00+00:00"},
        {"provider": "alpha", "reason": "quota 96% used (hard block at 95%)", "account": "a3",
         "until": "2026-11-22T00:00:00+00:00"},
    ]
    assert rows["delta"]["skipped"] == [{"provider": "delta", "reason": "account disabled", "account": "d2"}]
    engine.close()


def available_iff_plannable(engine: Engine, now: datetime) -> None:
    """For every provider: `providers --json` says available iff route() plans it first for the task sent to
    it (the smallest task, by override), and an unavailable provider is in no plan of any task tried."""
    rows = {row["name"]: row for row in providers_report(engine, now)}
    names = list(engine.config.providers)
    tasks = [{"title": "x", "labels": [f"route:{name}"]} for name in names] + \
        [dict(s.task) for s in engine.config.scenarios] + [{"title": "docs", "labels": ["documentation"]}]
    planned = {step.provider for task in tasks for step in engine.route(task, now=now).plan}
    for name in names:
        witness = engine.route({"title": "x", "labels": [f"route:{name}"]}, now=now)
        can = bool(witness.plan) and witness.plan[0].provider == name
        assert (rows[name]["status"] == "available") is can, (name, rows[name])
        assert (name in planned) is can, name
        if not can:  # the tier's reason in the view is the one route gives for it
            assert rows[name]["reason"] in [s.reason for s in witness.skipped if s.provider == name]


ACCOUNTS = [("alpha", "a1"), ("alpha", "a2"), ("alpha", "a3"), ("delta", "d1"), ("delta", "d2"),
            ("beta", "default"), ("gamma", "default")]
OFFSETS = st.integers(min_value=-3 * 3600, max_value=3 * 3600).map(lambda s: timedelta(seconds=s))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cooldowns=st.dictionaries(st.sampled_from(ACCOUNTS), st.tuples(OFFSETS, st.sampled_from(
           ["rate_limited", "quota_exhausted", "auth"]))),
       usage=st.dictionaries(st.sampled_from(ACCOUNTS), st.integers(min_value=0, max_value=120_000)),
       breakers=st.dictionaries(st.sampled_from(["alpha", "beta", "gamma", "delta"]),
                                st.tuples(st.sampled_from(["open", "half_open"]), OFFSETS)),
       slots=st.dictionaries(st.sampled_from(["gamma"]), OFFSETS),
       later=OFFSETS)
def test_available_iff_plannable_in_any_state(cooldowns: dict[tuple[str, str], tuple[timedelta, str]],
                                              usage: dict[tuple[str, str], int],
                                              breakers: dict[str, tuple[str, timedelta]],
                                              slots: dict[str, timedelta], later: timedelta) -> None:
    store = MemoryStore(None)
    for (provider, account), (offset, reason) in cooldowns.items():
        store.set_cooldown(provider, account, Cooldown(AT + offset, reason))
    for (provider, account), tokens in usage.items():
        store.record_usage(UsageRecord(provider, account, AT - timedelta(hours=1), Usage(1, tokens, 0)))
    for provider, (kind, offset) in breakers.items():
        store.update_breaker(provider, lambda _, kind=kind, offset=offset: BreakerState(kind, 3, AT + offset))
    for provider, offset in slots.items():
        store.acquire_slot(provider, "run-1", 1, AT - timedelta(hours=4), AT + offset)
    engine = Engine(load_config(CONFIG), store=store, environ={"PATH": "/bin:/usr/bin"})
    available_iff_plannable(engine, AT + later)


# -- rendering helpers ------------------------------------------------------------------------------------


def test_times_are_shown_to_the_minute_in_the_routing_timezone() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    assert minute(datetime(2026, 11, 18, 13, 8, 59, tzinfo=UTC), berlin) == "2026-11-18 14:08 CET"
    assert minute(datetime(2026, 11, 18, 13, 8, tzinfo=UTC), berlin, AT) == "14:08 CET"
    assert minute(datetime(2026, 11, 22, tzinfo=UTC), berlin, AT) == "Sun 22 Nov 01:00 CET"
    assert minute(datetime(2026, 12, 1, tzinfo=UTC), berlin, AT) == "2026-12-01 01:00 CET"
    assert times_in("probed again at 2026-11-18T13:09:00+00:00; back", berlin, AT) == "probed again at 14:09 CET; back"


def test_long_lines_fold_under_their_own_indent() -> None:
    text = "head\n  alpha/a1: " + "word " * 30
    folded = fit(text.splitlines(), 40).splitlines()
    assert folded[0] == "head"
    assert all(len(line) <= 40 for line in folded)
    assert folded[1].startswith("  alpha/a1: word") and all(line.startswith("      ") for line in folded[2:])
    assert fit(text.splitlines(), None) == text


# -- show-routing: a failing scenario says why --------------------------------------------------------------

WHY = """
[routing]
default_provider = "alpha"
chain = ["alpha", "beta", "gamma"]
[[routing.rules]]
name = "critical-to-gamma"
priority = 90
conditions = { priority = "critical" }
provider = "gamma"
[[routing.rules]]
name = "bugs-to-beta"
priority = 50
conditions = { labels = ["bug"] }
provider = "beta"
[providers.alpha]
command_template = ["alpha-cli"]
prompt = "stdin"
[providers.beta]
enabled = false
command_template = ["beta-cli"]
prompt = "stdin"
[providers.gamma]
command_template = ["gamma-cli"]
prompt = "stdin"
[[scenarios]]
name = "a critical bug"
task = { labels = ["bug"], priority = "critical" }
expect = { rule = "bugs-to-beta" }
[[scenarios]]
name = "a bug"
task = { labels = ["bug"] }
expect = { provider = "beta" }
[[scenarios]]
name = "anything"
task = { title = "x" }
expect = { provider = "gamma" }
"""


def test_a_failing_scenario_says_why_for_each_cause() -> None:
    from adws.config.load import compile_config, parse_toml

    report = routing_report(compile_config(parse_toml(WHY), "why.toml"), AT)
    assert {s["name"]: s["why"] for s in report["scenarios"]} == {
        "a critical bug": ['because rule "bugs-to-beta" matches, but "critical-to-gamma" (priority 90) comes first'],
        "a bug": ["because beta was skipped: disabled in config"],
        "anything": ["because gamma is tier 2 of the plan of the defaults, after alpha"],
    }
    lines = render_routing(report).splitlines()
    assert lines[lines.index("scenarios: 0/3 as expected"):][:4] == [
        "scenarios: 0/3 as expected",
        "  FAIL a critical bug: gamma via critical-to-gamma",
        "         rule: expected 'bugs-to-beta', got 'critical-to-gamma'",
        '         because rule "bugs-to-beta" matches, but "critical-to-gamma" (priority 90) comes first',
    ]


# -- the decision view, show-routing's verdicts, fitting (from the operator's-terminal work) ------------

DATA = Path(__file__).resolve().parent / "data"


def test_a_failing_scenario_says_which_condition_failed_and_why(snapshot: SnapshotAssertion) -> None:
    report = routing_report(load_config(DATA / "configs" / "scenarios_failing.toml"), AT)
    why = {s["name"]: s["why"] for s in report["scenarios"]}
    assert why == {
        "docs go to copilot": ["because rule \"docs\" does not match: labels: task has ['documentation'], rule "
                               "wants any of ['docs']"],
        "docs bug": ['because rule "docs" matches, but "bugs" (priority 70) comes first'],
        "bugs on copilot": ['because copilot is tier 2 of the plan of rule "bugs", after claude'],
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


def test_fit_wraps_a_long_line_under_its_indent_and_leaves_a_short_one() -> None:
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


# -- availability with fit and pools (adws.standing) ----------------------------------------------------------

FIT_AND_POOLS = """
[routing]
default_provider = "fit"
chain = ["fit", "pooled", "spare"]
[providers.fit]
command_template = ["/bin/true"]
prompt = "stdin"
need = { tokens = 30000 }
[providers.fit.models.f]
context_window = 100000
[providers.fit.quota]
tokens = 100000
reset = "0 0 * * 0"
timezone = "UTC"
hard_block_percent = 100
[[providers.fit.accounts]]
name = "f1"
[providers.pooled]
command_template = ["/bin/true", "{{ model }}"]
prompt = "stdin"
[providers.pooled.models.claude-x]
context_window = 200000
[providers.pooled.models.gemini-y]
context_window = 100000
[providers.pooled.quota.pools.claude]
models = ["claude-*"]
tokens = 100000
reset = "0 0 * * 0"
timezone = "UTC"
[providers.pooled.quota.pools.gemini]
models = ["gemini-*"]
tokens = 100000
reset = "0 0 * * 0"
timezone = "UTC"
[[providers.pooled.accounts]]
name = "p1"
[providers.spare]
command_template = ["/bin/true"]
prompt = "stdin"
[state]
backend = "memory"
"""


def test_a_declared_need_and_quota_pools_count_for_availability(tmp_path: Path) -> None:
    from adws.config.load import compile_config, parse_toml

    store = MemoryStore(None)
    # fit/f1 has 20,000 tokens left: under its hard block, but short of the 30,000 every task is expected to need.
    store.record_usage(UsageRecord("fit", "f1", AT - timedelta(hours=1), Usage(1, 80_000, 0)))
    # pooled/p1: the claude pool is spent, the gemini pool is not: a task on gemini-y can still run there.
    store.record_usage(UsageRecord("pooled", "p1/claude", AT - timedelta(hours=1), Usage(1, 100_000, 0)))
    engine = Engine(compile_config(parse_toml(FIT_AND_POOLS), "fit.toml", base_dir=str(tmp_path)), store=store,
                    environ={"PATH": "/bin:/usr/bin"})
    rows = {row["name"]: row for row in providers_report(engine, AT)}
    assert (rows["fit"]["status"], rows["pooled"]["status"], rows["spare"]["status"]) == \
        ("unavailable", "available", "available")
    assert rows["fit"]["skipped"] == [{"provider": "fit", "account": "f1", "until": "2026-11-22T00:00:00+00:00",
                                       "reason": "20,000 tokens left < ~30,000 expected (fixed figure)"}]
    # route agrees: no task reaches fit; a task sent to the gemini model of pooled runs there.
    assert "fit" not in [step.provider for step in engine.route({"title": "x", "labels": ["route:fit"]},
                                                                  now=AT).plan]
    gemini = engine.route({"title": "x", "labels": ["route:pooled/gemini-y"]}, now=AT)
    assert (gemini.plan[0].provider, gemini.plan[0].model) == ("pooled", "gemini-y")


def test_run_shows_times_as_route_does(state: Path, capsys: pytest.CaptureFixture[str],
                                       snapshot: SnapshotAssertion) -> None:
    # Nothing can run: alpha (no usable account) is the only tier of a rule without fall-through. Every time
    # `adws run` prints is to the minute in the routing timezone, as `adws route` prints it.
    (state.parent / "alpha.toml").write_text(
        CONFIG.read_text(encoding="utf-8").replace('provider = "beta"\n', 'provider = "alpha"\nfallback = false\n'),
        encoding="utf-8")
    (state.parent / "prompt.md").write_text("Fix it.\n", encoding="utf-8")
    code, out = adws(capsys, "run", "--config", str(state.parent / "alpha.toml"), "--at", AT_ARG, "--quiet",
                     "--task-json", BUG, "--prompt-file", str(state.parent / "prompt.md"),
                     "--workdir", str(state.parent))
    assert code == 1
    assert "+00:00" not in out and "decision.skipped" not in out
    # When it can run again is judged on the wall clock, not --at (a run given --at runs now: adws.engine), and
    # shown as of it: a time of today, without the date that a time judged against --at's day would carry.
    again = [line for line in out.splitlines() if line.startswith("can run again from ")]
    assert len(again) == 1 and re.fullmatch(r"can run again from \d\d:\d\d CE[S]?T \(adws run --wait\)",
                                            again[0]), again
    kept = [line for line in out.splitlines() if line not in again and not line.startswith("run directory: ")]
    assert kept == snapshot


def test_count_says_one_in_the_singular() -> None:
    from adws.errors import count

    assert [count(n, "rule") for n in (0, 1, 2)] == ["0 rules", "1 rule", "2 rules"]


def test_an_empty_plan_of_missing_programs_says_how_to_try_adws_anyway(tmp_path: Path) -> None:
    # A first try on a fresh machine: no agent CLI at all. The line says what to do instead of leaving the
    # person with four "not on PATH" lines; a plan emptied for any other reason does not get it.
    config = load_config(TESTS.parent / "config.toml")
    engine = Engine(config, environ={"PATH": str(tmp_path), "ADWS_STATE_PATH": str(tmp_path / "s.sqlite3")})
    lines = render_decision(engine.route({"title": "x", "labels": ["bug"]}))
    assert lines[0].startswith("→ nothing can run now")
    assert "`adws route --assume-available` shows the decision" in lines[1]
    assert "PATH=tests/fakes/bin:$PATH" in lines[1]
    fakes = Engine(config, environ={"PATH": str(TESTS / "fakes" / "bin"), "ADWS_STATE_PATH": str(tmp_path / "s2")})
    assert not any("--assume-available" in line for line in render_decision(fakes.route({"title": "x"})))
