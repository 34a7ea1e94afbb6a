"""Human and JSON views: show-routing (rules + scenario verdicts), providers, quota."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from adws import cli
from adws.attempt import Usage
from adws.config import load_config
from adws.config.load import compile_config, parse_toml
from adws.engine import Engine
from adws.reports import (
    providers_report,
    quota_report,
    render_providers,
    render_quota,
    render_routing,
)
from adws.scenarios import routing_report, scenario_router
from adws.state import Cooldown, MemoryStore, UsageRecord
from tests.helpers import ROOT, TESTS

AT = "2026-11-18T13:00:00Z"
NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
SHOW_ROUTING = ROOT / "tools" / "show-routing.py"
SHOW_PROVIDERS = ROOT / "tools" / "show-providers.py"


def run_tool(script: Path, *args: str, cwd: Path = ROOT,
             environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ADWS_STATE_PATH", None)
    env.pop("ADWS_CONFIG", None)
    env.update(environ or {})
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


# -- show-routing ----------------------------------------------------------------------------------------


def test_routing_report_of_the_shipped_config() -> None:
    config = load_config(ROOT / "config.toml")
    report = routing_report(config, NOW)
    assert report["ok"] is True
    assert len(report["scenarios"]) == len(config.scenarios) >= 18
    assert all(s["ok"] and s["failures"] == [] for s in report["scenarios"])
    priorities = [r["priority"] for r in report["rules"]]
    assert priorities == sorted(priorities, reverse=True)
    assert report["chain"] == ["antigravity", "copilot", "cline", "opencode", "local"]
    json.dumps(report)  # JSON-ready as it is


def test_show_routing_display_of_the_shipped_config(snapshot: SnapshotAssertion) -> None:
    done = run_tool(SHOW_ROUTING, "--config", "config.toml", "--at", AT)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == snapshot


def test_show_routing_defaults_to_config_toml_in_the_working_directory() -> None:
    done = run_tool(SHOW_ROUTING, "--at", AT)
    assert done.returncode == 0
    assert done.stdout.startswith("config: config.toml\n")


@pytest.mark.parametrize("script", [SHOW_ROUTING, SHOW_PROVIDERS])
def test_tools_read_adws_config_as_adws_does(script: Path, tmp_path: Path) -> None:
    views = str(TESTS / "data" / "views.toml")  # not ./config.toml: the variable decides
    done = run_tool(script, "--json", cwd=tmp_path,
                    environ={"ADWS_CONFIG": views, "ADWS_STATE_PATH": str(tmp_path / "s.sqlite3")})
    assert (done.returncode, done.stderr) == (0, "")
    report = json.loads(done.stdout)
    names = [row["name"] for row in report] if script == SHOW_PROVIDERS else report["chain"]
    assert names == ["alpha", "beta", "gamma", "delta"]
    empty = run_tool(script, cwd=tmp_path, environ={"ADWS_CONFIG": ""})
    assert (empty.returncode, empty.stdout) == (2, "")
    assert empty.stderr == f"{script.name}: ADWS_CONFIG is set but empty: name a config file, or unset it to use " \
                           "./config.toml\n"


def test_show_routing_json() -> None:
    done = run_tool(SHOW_ROUTING, "--config", "config.toml", "--at", AT, "--json")
    assert done.returncode == 0
    report = json.loads(done.stdout)
    assert report["ok"] is True
    by_name = {s["name"]: s for s in report["scenarios"]}
    # Scenarios without their own `at` are judged at --at, in the config's timezone or as given.
    assert by_name["P0 bug uses o3-mini"]["at"] == "2026-11-18T13:00:00+00:00"
    assert by_name["low priority at night goes to OpenCode"]["at"] == "2026-11-18T23:30:00+01:00"
    assert by_name["an override label wins over every rule"]["got"] == {
        "provider": "opencode", "model": "built-in", "account": None, "rule": "override",
        "plan": ["opencode", "local"]}


FAILING = """
[routing]
default_provider = "alpha"
chain = ["alpha", "beta"]

[[routing.rules]]
name = "bugs-to-beta"
priority = 10
conditions = { labels = ["bug"] }
provider = "beta"

[providers.alpha]
command_template = ["alpha-cli"]
prompt = "stdin"
[providers.beta]
command_template = ["beta-cli"]
prompt = "stdin"

[[scenarios]]
name = "bugs go to beta"
task = { labels = ["bug"] }
expect = { provider = "beta", rule = "bugs-to-beta", plan = ["beta"] }

[[scenarios]]
name = "wrong expectation"
task = { labels = ["feature"] }
expect = { provider = "beta", rule = "bugs-to-beta" }

[[scenarios]]
name = "override to a provider that does not exist"
task = { labels = ["route:gama"] }
expect = { provider = "alpha" }
"""


def test_failing_scenarios_are_reported() -> None:
    report = routing_report(compile_config(parse_toml(FAILING), "failing.toml"), NOW)
    assert report["ok"] is False
    assert [(s["name"], s["ok"], s["failures"]) for s in report["scenarios"]] == [
        ("bugs go to beta", True, []),
        ("wrong expectation", False, ["provider: expected 'beta', got 'alpha'",
                                      "rule: expected 'bugs-to-beta', got 'default'"]),
        ("override to a provider that does not exist", False,
         ['invalid task: label "route:gama": unknown provider "gama"; providers: alpha, beta']),
    ]
    lines = render_routing(report).splitlines()
    assert lines[lines.index("scenarios: 1/3 as expected"):] == [
        "scenarios: 1/3 as expected",
        "  ok   bugs go to beta: beta via bugs-to-beta",
        "  FAIL wrong expectation: alpha via default",
        "         provider: expected 'beta', got 'alpha'",
        "         rule: expected 'bugs-to-beta', got 'default'",
        "         because rule \"bugs-to-beta\" does not match: labels: task has ['feature'], rule wants any of "
        "['bug']",
        "  FAIL override to a provider that does not exist: (error)",
        '         invalid task: label "route:gama": unknown provider "gama"; providers: alpha, beta',
    ]


def test_show_routing_exits_1_on_a_failing_scenario(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(FAILING, encoding="utf-8")
    done = run_tool(SHOW_ROUTING, "--at", AT, cwd=tmp_path)
    assert done.returncode == 1
    assert "  FAIL wrong expectation: alpha via default\n" in done.stdout
    done = run_tool(SHOW_ROUTING, "--at", AT, "--json", cwd=tmp_path)
    assert done.returncode == 1
    assert json.loads(done.stdout)["ok"] is False


def test_show_routing_exits_2_on_an_invalid_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[routing]\nenabeld = true\n[providers.a]\ncommand_template = ["a"]\nprompt = "stdin"\n',
                    encoding="utf-8")
    done = run_tool(SHOW_ROUTING, "--config", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (f'{path}: 1 problem in config\n'
                           f'  {path}:2: routing: unknown key "enabeld" (did you mean "enabled"?)\n')


def test_show_routing_at_changes_the_verdict(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("""
[routing]
timezone = "Europe/Berlin"
[[routing.rules]]
name = "nights"
conditions = { hour_range = [22, 6] }
provider = "night"
[providers.day]
command_template = ["day-cli"]
prompt = "stdin"
[providers.night]
command_template = ["night-cli"]
prompt = "stdin"
[[scenarios]]
name = "night work"
task = { title = "x" }
expect = { provider = "night" }
""", encoding="utf-8")
    assert run_tool(SHOW_ROUTING, "--at", "2026-11-18T21:30:00Z", cwd=tmp_path).returncode == 0  # 22:30 Berlin
    assert run_tool(SHOW_ROUTING, "--at", "2026-11-18T20:30:00Z", cwd=tmp_path).returncode == 1


def test_disabled_routing_is_shown() -> None:
    config = compile_config(parse_toml(FAILING.replace("[routing]\n", "[routing]\nenabled = false\n")))
    report = routing_report(config, NOW)
    assert report["routing_enabled"] is False
    lines = render_routing(report).splitlines()
    assert lines[1] == "routing: DISABLED (defaults only; rules shown)"
    assert "  FAIL bugs go to beta: alpha via default" in lines


def test_scenario_router_assumes_programs_and_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYED_API_KEY", raising=False)
    monkeypatch.delenv("K1_KEY", raising=False)
    config = compile_config(parse_toml("""
[providers.keyed]
command_template = ["/nonexistent/keyed-cli"]
prompt = "stdin"
api_key_env = "KEYED_API_KEY"
requires_api_key = true
[[providers.keyed.accounts]]
name = "k1"
api_key_env = "K1_KEY"
[[providers.keyed.accounts]]
name = "k2"
enabled = false
[providers.off]
enabled = false
command_template = ["off-cli"]
prompt = "stdin"
"""))
    decision = scenario_router(config).route({"title": "x"}, now=NOW)
    assert (decision.provider, decision.account) == ("keyed", "k1")
    # A disabled provider or account is a decision of the config, not of this machine: still skipped.
    assert [s.to_dict() for s in decision.skipped] == [
        {"provider": "keyed", "reason": "account disabled", "account": "k2"},
        {"provider": "off", "reason": "disabled in config"},
    ]


# -- providers -------------------------------------------------------------------------------------------

PROVIDERS = """
[routing]
chain = ["present", "keyed", "missing-path", "missing-command", "off"]

[providers.present]
description = "Points at a program that exists."
command_template = ["/bin/true", "--model", "{{ model }}"]
prompt = "stdin"
output_format = "claude-stream-json"
account_strategy = "round_robin"
[providers.present.models.m-large]
context_window = 1000000
latency_ms = 900
[providers.present.models.m-small]
context_window = 8000
[[providers.present.accounts]]
name = "p1"
[[providers.present.accounts]]
name = "p2"
enabled = false

[providers.keyed]
command_template = ["/bin/true"]
prompt = "stdin"
api_key_env = "ADWS_TEST_SURELY_UNSET_KEY"
requires_api_key = true

[providers.missing-path]
command_template = ["/nonexistent/bin/agent", "{{ prompt_file }}"]
prompt = "stdin"

[providers.missing-command]
command_template = ["adws-test-no-such-agent-cli", "{{ prompt }}"]
prompt = "arg"

[providers.off]
enabled = false
command_template = ["/bin/true"]
prompt = "stdin"

[providers.outside]
command_template = ["/bin/true"]
prompt = "stdin"

[state]
backend = "memory"
"""


@pytest.fixture
def providers_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ADWS_TEST_SURELY_UNSET_KEY", raising=False)
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    path = tmp_path / "providers.toml"
    path.write_text(PROVIDERS, encoding="utf-8")
    return path


def test_adws_providers_text(providers_config: Path, capsys: pytest.CaptureFixture[str],
                             snapshot: SnapshotAssertion) -> None:
    assert Path("/bin/true").is_file()
    assert cli.main(["providers", "--config", str(providers_config)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == snapshot


def test_adws_providers_json(providers_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["providers", "--config", str(providers_config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["tier"], r["status"], r["reason"]) for r in rows] == [
        ("present", 1, "available", None),
        ("keyed", 2, "unavailable", "API-key variable ADWS_TEST_SURELY_UNSET_KEY is not set"),
        ("missing-path", 3, "unavailable", "executable /nonexistent/bin/agent not found or not executable"),
        ("missing-command", 4, "unavailable", "command 'adws-test-no-such-agent-cli' not on PATH"),
        ("off", 5, "unavailable", "disabled in config"),
        ("outside", None, "available", None),
    ]
    assert rows[0]["models"] == {"m-large": {"context_window": 1000000, "latency_ms": 900},
                                 "m-small": {"context_window": 8000, "latency_ms": None}}
    assert rows[0]["accounts"] == [{"name": "p1", "enabled": True}, {"name": "p2", "enabled": False}]


def test_show_providers_tool(providers_config: Path) -> None:
    done = run_tool(SHOW_PROVIDERS, "--config", str(providers_config))
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == "present (tier 1): available"
    assert "keyed (tier 2): UNAVAILABLE: API-key variable ADWS_TEST_SURELY_UNSET_KEY is not set" in done.stdout
    done = run_tool(SHOW_PROVIDERS, "--config", str(providers_config), "--json")
    assert [row["name"] for row in json.loads(done.stdout)] == [
        "present", "keyed", "missing-path", "missing-command", "off", "outside"]


def test_an_open_circuit_shows_in_the_providers_report(providers_config: Path) -> None:
    store = MemoryStore(None)
    engine = Engine(load_config(providers_config), store=store, environ={})
    store.update_breaker("present", lambda state: type(state)("open", 3, NOW - timedelta(minutes=1)))
    rows = providers_report(engine, NOW)
    assert rows[0]["status"] == "unavailable"
    assert rows[0]["reason"] == ("circuit open after 3 infrastructure failures; "
                                 "probed again at 2026-11-18T13:09:00+00:00")
    # People read the time to the minute, in the routing timezone.
    assert render_providers(rows, UTC, NOW).splitlines()[0] == (
        "present (tier 1): UNAVAILABLE: circuit open after 3 infrastructure failures; probed again at 13:09 UTC")


# -- quota -----------------------------------------------------------------------------------------------


def test_quota_report(snapshot: SnapshotAssertion) -> None:
    config = load_config(ROOT / "config.toml")
    store = MemoryStore(None)
    engine = Engine(config, store=store, environ={})
    monday = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
    store.record_usage(UsageRecord("antigravity", "ag-1", monday, Usage(requests=3, input_tokens=300000,
                                                                        output_tokens=120000)))
    store.record_usage(UsageRecord("antigravity", "ag-2", monday, Usage(requests=1, input_tokens=1000,
                                                                        output_tokens=500, estimated=True)))
    store.record_usage(UsageRecord("copilot", "default", monday, Usage(requests=41)))
    # Last week's usage does not count this week.
    store.record_usage(UsageRecord("antigravity", "ag-3", monday - timedelta(days=7), Usage(requests=1,
                                                                                          input_tokens=499000)))
    store.set_cooldown("antigravity", "ag-4", Cooldown(NOW + timedelta(hours=2), "rate limited"))
    rows = quota_report(engine, NOW)
    by_who = {(r["provider"], r["account"]): r for r in rows}
    assert by_who[("antigravity", "ag-1")]["percent"] == 84.0
    assert by_who[("antigravity", "ag-1")]["alert"] == ">= 80%"
    assert by_who[("antigravity", "ag-1")]["resets_at"] == "2026-11-22T00:00:00+00:00"
    assert by_who[("antigravity", "ag-1")]["resets_in"] == "3d 11h00m"
    assert by_who[("antigravity", "ag-2")]["estimated"] is True
    assert by_who[("antigravity", "ag-3")]["percent"] == 0.0
    assert by_who[("antigravity", "ag-4")]["cooldown_until"] == "2026-11-18T15:00:00+00:00"
    assert by_who[("copilot", "default")]["percent"] == 82.0
    assert by_who[("copilot", "default")]["resets_at"] == "2026-12-01T00:00:00+00:00"
    assert by_who[("cline", "default")]["limits"] is None
    assert render_quota(rows) == snapshot


def test_a_scenario_with_an_empty_plan_says_so() -> None:
    config = compile_config(parse_toml("""
[[routing.rules]]
name = "to-off"
provider = "off"
fallback = false
[providers.on]
command_template = ["on-cli"]
prompt = "stdin"
[providers.off]
enabled = false
command_template = ["off-cli"]
prompt = "stdin"
[[scenarios]]
name = "goes nowhere"
task = { title = "x" }
expect = { provider = "off" }
"""))
    report = routing_report(config, NOW)
    assert report["scenarios"][0]["failures"] == ["provider: expected 'off', got None"]
    assert "  FAIL goes nowhere: nothing usable via to-off" in render_routing(report).splitlines()


def test_show_routing_refuses_a_bad_at() -> None:
    done = run_tool(SHOW_ROUTING, "--at", "yesterday")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == "show-routing.py: --at: not an ISO 8601 time: 'yesterday'"


def test_show_routing_reads_an_at_without_offset_in_the_routing_timezone() -> None:
    """As `adws check --at` does: 09:00 without an offset is 09:00 in config.toml's routing timezone."""
    done = run_tool(SHOW_ROUTING, "--at", "2026-11-18T09:00", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scenarios"][0]["at"] == "2026-11-18T09:00:00+01:00"  # first: no `at` of its own


def test_a_failing_scenario_says_why_for_each_kind_of_rule_miss() -> None:
    """scenarios._why_not, one scenario per way an expected rule or provider can be missed."""
    config = compile_config(parse_toml("""
[routing]
chain = ["claude", "copilot"]
[[routing.rules]]
name = "bugs"
conditions = { labels = ["bug"] }
provider = "claude"
fallback = false
[[routing.rules]]
name = "off"
enabled = false
conditions = { labels = ["docs"] }
provider = "copilot"
[providers.claude]
command_template = ["claude", "-p"]
prompt = "stdin"
[providers.copilot]
command_template = ["copilot", "-p", "{{ prompt }}"]
prompt = "arg"
[[scenarios]]
name = "wants the defaults"
task = { labels = ["bug"] }
expect = { rule = "default" }
[[scenarios]]
name = "wants an override"
task = { labels = ["bug"] }
expect = { rule = "override" }
[[scenarios]]
name = "wants a disabled rule"
task = { labels = ["docs"] }
expect = { rule = "off" }
[[scenarios]]
name = "wants the rule an override beats"
task = { labels = ["bug", "route:copilot"] }
expect = { rule = "bugs" }
[[scenarios]]
name = "wants a provider the plan lacks"
task = { labels = ["bug"] }
expect = { provider = "copilot" }
"""))
    why = {s["name"]: s["why"] for s in routing_report(config, NOW)["scenarios"]}
    assert why == {
        "wants the defaults": ['because rule "bugs" matches first, so the defaults were not used'],
        "wants an override": ["because no override label or attribute on the task"],
        "wants a disabled rule": ['because rule "off" is disabled'],
        "wants the rule an override beats": ['because rule "bugs" matches, but the label "route:copilot" override '
                                             'decides'],
        "wants a provider the plan lacks": ['because copilot is not a tier of the plan of rule "bugs"'],
    }
