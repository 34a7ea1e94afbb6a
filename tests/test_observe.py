"""Observations of real usage: usage_command output, Claude's allowed_warning, merging with the ledger."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws.config.load import compile_config, parse_toml
from adws.observe import (
    UNMETERED,
    Observation,
    UsageCommandError,
    WindowReading,
    from_claude_rate_limit,
    merge,
    parse_usage_output,
)
from adws.state import MemoryStore
from adws.usage_sync import readings_to_observations, sync_account, sync_usage

NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
SUNDAY = datetime(2026, 11, 15, tzinfo=UTC)
NEXT_SUNDAY = datetime(2026, 11, 22, tzinfo=UTC)


def test_usage_output_is_read_per_window() -> None:
    text = json.dumps({"claude": {"used": 120000, "limit": 300000, "reset": "2026-11-22T00:00:00Z"},
                       "gemini": {"used": 5, "reset": 1795305600}})
    assert parse_usage_output(text) == [
        WindowReading("claude", 120000.0, 300000.0, NEXT_SUNDAY),
        WindowReading("gemini", 5.0, None, datetime.fromtimestamp(1795305600, UTC))]


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "output is not JSON (Expecting value: line 1 column 1 (char 0))"),
    ("[]", 'output must be a JSON object of windows, e.g. {"quota": {"used": 1200, "limit": 500000, '
           '"reset": "2026-12-06T00:00:00Z"}}'),
    ('{"quota": 5}', 'window "quota": expected an object with used, limit, reset'),
    ('{"quota": {"usd": 5}}', 'window "quota": unknown key "usd"; keys: used, limit, reset'),
    ('{"quota": {"used": -1}}', 'window "quota": used must be a number >= 0, got -1'),
    ('{"quota": {"used": "5"}}', 'window "quota": used must be a number >= 0, got "5"'),
    ('{"quota": {"used": 5, "limit": 0}}', 'window "quota": limit must be > 0, got 0'),
    ('{"quota": {"used": 5, "reset": "tomorrow"}}',
     'window "quota": reset must be ISO 8601 with an offset or epoch seconds, got "tomorrow"'),
    ('{"quota": {"used": 5, "reset": "2026-11-22T00:00:00"}}',
     'window "quota": reset must be ISO 8601 with an offset or epoch seconds, got "2026-11-22T00:00:00"'),
])
def test_unreadable_usage_output_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UsageCommandError) as exc:
        parse_usage_output(text)
    assert str(exc.value) == message


def test_an_observation_higher_than_the_ledger_wins_and_both_are_shown() -> None:
    obs = Observation("antigravity", "ag-03", NOW - timedelta(minutes=12), 63.0, "usage_command",
                      reset_at=NEXT_SUNDAY)
    merged = merge(41.0, obs, NOW, SUNDAY)
    assert (merged.percent, merged.observed_wins) == (63.0, True)
    assert merged.describe(NOW) == "ledger 41.0%, observed 63.0% (usage_command 12m ago): observed counts"
    lower = merge(80.0, obs, NOW, SUNDAY)
    assert (lower.percent, lower.describe(NOW)) == (
        80.0, "ledger 80.0%, observed 63.0% (usage_command 12m ago): ledger counts")


def test_an_observation_stops_counting_at_its_reset_or_with_its_period() -> None:
    obs = Observation("a", "x", NOW, 90.0, "usage_command", reset_at=NOW + timedelta(hours=1))
    assert merge(10.0, obs, NOW + timedelta(hours=1), SUNDAY).percent == 10.0
    undated = Observation("a", "x", SUNDAY - timedelta(hours=1), 90.0, "usage_command")
    assert merge(10.0, undated, NOW, SUNDAY).observation is None  # taken in the previous period
    assert merge(10.0, None, NOW, SUNDAY).describe(NOW) == "ledger 10.0%"


def test_claude_allowed_warning_with_utilization_is_an_observation() -> None:
    info = {"status": "allowed_warning", "utilization": 0.82, "resetsAt": 1795305600, "rateLimitType": "seven_day"}
    assert from_claude_rate_limit(info) == (pytest.approx(82.0), datetime.fromtimestamp(1795305600, UTC),
                                            "seven_day")
    assert from_claude_rate_limit({**info, "status": "allowed"}) is None
    assert from_claude_rate_limit({**info, "utilization": "high"}) is None
    assert from_claude_rate_limit({"status": "allowed_warning", "utilization": 0.5}) == (50.0, None, "unknown")


POOLED = """
[providers.ag]
command_template = ["ag", "{{ model }}"]
prompt = "stdin"
usage_command = ["{{ config_dir }}/usage.py", "{{ account }}"]
[providers.ag.models."claude-sonnet-4.6"]
context_window = 200000
[providers.ag.quota]
tokens = 1000000
reset = "0 0 * * 0"
[providers.ag.quota.pools.claude]
models = ["claude-*"]
tokens = 300000
reset = "0 0 * * 0"
[[providers.ag.accounts]]
name = "ag-01"
env = { AG_HOME = "/data/{{ account }}" }
"""


def test_windows_map_to_pools_and_limits_default_to_the_declared_ones() -> None:
    quota = compile_config(parse_toml(POOLED)).providers["ag"].quota
    readings = [WindowReading("claude", 150000.0, None, NEXT_SUNDAY), WindowReading("quota", 10.0, 40.0, None)]
    claude, own = readings_to_observations("ag", "ag-01", quota, readings, NOW)
    assert (claude.subject, claude.percent, claude.limit) == ("ag-01/claude", 50.0, 300000.0)
    assert (own.subject, own.percent) == ("ag-01", 25.0)
    with pytest.raises(UsageCommandError) as exc:
        readings_to_observations("ag", "ag-01", quota, [WindowReading("claud", 1.0, None, None)], NOW)
    assert str(exc.value) == ('window "claud" is not a pool of this quota (did you mean "claude"?); '
                              "windows: quota, claude")


def write_command(tmp_path: Path, body: str) -> None:
    script = tmp_path / "usage.py"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys\n{body}\n", encoding="utf-8")
    script.chmod(0o755)


def test_sync_runs_the_command_with_the_account_environment(tmp_path: Path) -> None:
    write_command(tmp_path, 'print(json.dumps({"claude": {"used": 30000, "reset": "2026-11-22T00:00:00Z"}, '
                            '"quota": {"used": len(os.environ["AG_HOME"]) + 1000 * len(sys.argv)}}))')
    config = compile_config(parse_toml(POOLED), base_dir=str(tmp_path))
    provider = config.providers["ag"]
    result = sync_account(provider, provider.accounts[0], config_dir=str(tmp_path), now=NOW, environ={"PATH": "/bin"})
    assert result.error is None
    claude, own = result.observations
    assert (claude.subject, claude.percent, claude.reset_at) == ("ag-01/claude", 10.0, NEXT_SUNDAY)
    assert (own.subject, own.used) == ("ag-01", 2000.0 + len("/data/ag-01"))


@pytest.mark.parametrize(("body", "error"), [
    ("sys.exit(3)", "exit 3"),
    ('print("nope", file=sys.stderr); sys.exit(1)', "exit 1: nope"),
    ('print("{")', "output is not JSON"),
])
def test_a_failing_sync_is_one_line_never_an_exception(tmp_path: Path, body: str, error: str) -> None:
    write_command(tmp_path, body)
    config = compile_config(parse_toml(POOLED), base_dir=str(tmp_path))
    provider = config.providers["ag"]
    result = sync_account(provider, provider.accounts[0], config_dir=str(tmp_path), now=NOW, environ={"PATH": "/bin"})
    assert result.observations == ()
    assert result.error is not None and error in result.error and "\n" not in result.error
    assert result.error.startswith(f"usage_command {tmp_path}/usage.py ag-01: ")


def test_sync_without_a_command_or_with_a_missing_one(tmp_path: Path) -> None:
    config = compile_config(parse_toml(POOLED), base_dir=str(tmp_path))
    provider = config.providers["ag"]
    missing = sync_account(provider, provider.accounts[0], config_dir=str(tmp_path), now=NOW, environ={})
    assert missing.error is not None and "usage.py" in missing.error
    bare = compile_config(parse_toml(POOLED.replace('usage_command = ["{{ config_dir }}/usage.py", "{{ account }}"]\n',
                                                    ""))).providers["ag"]
    assert sync_account(bare, bare.accounts[0], config_dir=".", now=NOW, environ={}).error == \
        "no usage_command declared"


def test_the_claude_parser_hands_allowed_warning_over_as_a_usage_reading() -> None:
    from adws.parsers import parse_output

    lines = [
        {"type": "rate_limit_event", "rate_limit_info": {"status": "allowed_warning", "utilization": 0.9,
                                                          "resetsAt": 1795305600, "rateLimitType": "seven_day"}},
        {"type": "rate_limit_event", "rate_limit_info": {"status": "allowed", "resetsAt": 1795305600}},
        {"type": "result", "subtype": "success", "is_error": False, "result": "done",
         "usage": {"input_tokens": 10, "output_tokens": 5}},
    ]
    parsed = parse_output("claude-stream-json", "\n".join(json.dumps(line) for line in lines), NOW)
    assert (parsed.final_text, parsed.rate_limited) == ("done", False)  # a warning is not a rejection
    assert parsed.usage_readings == [("seven_day", pytest.approx(90.0), datetime.fromtimestamp(1795305600, UTC))]


def test_a_usage_command_that_does_not_answer_in_time_is_one_line(tmp_path: Path) -> None:
    from dataclasses import replace

    from tests.world import outcome

    config = compile_config(parse_toml(POOLED), base_dir=str(tmp_path))
    provider = config.providers["ag"]
    result = sync_account(provider, provider.accounts[0], config_dir=str(tmp_path), now=NOW, environ={},
                          runner=lambda request: replace(outcome(request, "", -9), timed_out=True))
    assert result.observations == ()
    assert result.error == f"usage_command {tmp_path}/usage.py ag-01: no answer within 60 s"


def test_a_reading_without_a_limit_needs_a_declared_one() -> None:
    with pytest.raises(UsageCommandError) as exc:
        readings_to_observations("ag", "ag-01", None, [WindowReading(UNMETERED, 5.0, None, None)], NOW)
    assert str(exc.value) == f'window "{UNMETERED}": no limit given and none declared to compare with'


def test_a_reading_from_a_clock_ahead_does_not_keep_the_sync_from_being_due(tmp_path: Path) -> None:
    write_command(tmp_path, 'print(json.dumps({"quota": {"used": 10}}))')
    text = POOLED.replace('usage_command = [', 'usage_sync_interval = "10m"\nusage_command = [')
    providers = compile_config(parse_toml(text), base_dir=str(tmp_path)).providers
    with MemoryStore() as store:
        def due() -> bool:
            return bool(sync_usage(providers, store, config_dir=str(tmp_path), now=NOW, environ={"PATH": "/bin"},
                                   due_only=True))

        store.record_observation(Observation("ag", "ag-01", NOW - timedelta(minutes=5), 1.0, "usage_command"))
        assert not due()  # synced 5 minutes ago: not due for another 5
        # A host whose clock ran a day ahead recorded a reading: counted as the latest sync, it made the sync wait a
        # day (a year ahead: a year) on every host.
        store.record_observation(Observation("ag", "ag-01", NOW + timedelta(days=1), 1.0, "usage_command"))
        assert due()


def test_window_names_from_agent_json_are_storable(tmp_path: Path) -> None:
    """A lone surrogate is valid JSON ("\\ud800"); a window named with one, from Claude's rate_limit_info or a
    usage command, still gives an observation a SQLite store can write (it used to raise UnicodeEncodeError in
    the middle of recording an attempt)."""
    from adws.state.sqlite import SqliteStore

    info = json.loads('{"status": "allowed_warning", "utilization": 0.5, "rateLimitType": "seven\\ud800day"}')
    reading = from_claude_rate_limit(info)
    assert reading is not None
    window = reading[2]
    [usage] = parse_usage_output('{"q\\udc80": {"used": 1, "limit": 10}}')
    store = SqliteStore(tmp_path / "state.sqlite3")
    try:
        for name in (window, usage.window):
            name.encode("utf-8")
            store.record_observation(Observation("ag", "ag-01", NOW, 50.0, f"ag output ({name})"))
        assert [o.source for o in store.observations().values()] == [f"ag output ({usage.window})"]
    finally:
        store.close()
