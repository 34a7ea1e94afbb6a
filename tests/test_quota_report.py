"""`adws quota`: usage against limits per provider and account, alert level, cooldowns, time to reset.

The CLI runs in-process (`adws.cli.main`) on a temporary config whose state store holds recorded usage.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adws.attempt import Usage
from adws.cli import main
from adws.state import Cooldown, UsageRecord, open_store

AT = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)  # Wednesday; the weekly reset is Sunday 00:00 UTC
AT_ARG = "2026-11-18T13:00:00Z"

CONFIG = """
[routing]
chain = ["antigravity", "copilot", "cline", "opencode"]

[providers.antigravity]
command_template = ["opencode", "run"]
prompt = "stdin"
[providers.antigravity.quota]
tokens = 500000
reset = "0 0 * * 0"
timezone = "UTC"
alert_percent = [80, 95]
[[providers.antigravity.accounts]]
name = "ag-1"
[[providers.antigravity.accounts]]
name = "ag-2"
[[providers.antigravity.accounts]]
name = "ag-3"
[[providers.antigravity.accounts]]
name = "ag-4"

[providers.copilot]
command_template = ["copilot", "-p", "{{ prompt }}"]
prompt = "arg"
[providers.copilot.quota]
requests = 50
reset = "0 0 1 * *"
timezone = "UTC"

[providers.cline]
command_template = ["cline", "-y"]
prompt = "stdin"

[providers.opencode]
command_template = ["opencode", "run"]
prompt = "stdin"
[providers.opencode.quota]
tokens = 100000
window = "5h"
hard_block_percent = 100
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG, encoding="utf-8")
    state = tmp_path / "state.sqlite3"
    monkeypatch.setenv("ADWS_STATE_PATH", str(state))
    monkeypatch.setenv("ADWS_CACHE_DIR", str(tmp_path / "cache"))
    store = open_store("sqlite", str(state))

    def use(provider: str, account: str, ago: timedelta, usage: Usage) -> None:
        store.record_usage(UsageRecord(provider, account, AT - ago, usage))

    day = timedelta(days=1)
    use("antigravity", "ag-1", day, Usage(3, 90_000, 10_000))  # 20%
    use("antigravity", "ag-2", day, Usage(10, 380_000, 20_000, estimated=True))  # 80%, partly estimated
    use("antigravity", "ag-3", day, Usage(12, 470_000, 10_000))  # 96%: over the 95% hard block
    use("antigravity", "ag-4", 5 * day, Usage(1, 10_000, 0))  # last week: not counted
    use("antigravity", "ag-4", timedelta(hours=1), Usage(20, 500_000, 1_000))  # over 100%
    use("copilot", "default", 2 * day, Usage(50, 0, 0))  # all 50 monthly requests
    use("opencode", "default", timedelta(hours=6), Usage(1, 50_000, 0))  # out of the 5 h window
    use("opencode", "default", timedelta(hours=2), Usage(1, 96_000, 0))  # 96%; hard block is 100% here
    store.set_cooldown("antigravity", "ag-3", Cooldown(AT + timedelta(hours=3), "rate_limited"))
    store.set_cooldown("antigravity", "ag-1", Cooldown(AT - timedelta(minutes=1), "rate_limited"))  # over
    store.close()
    return str(path)


def quota_json(capsys: pytest.CaptureFixture[str], config: str, at: str = AT_ARG) -> list[dict[str, Any]]:
    assert main(["quota", "--config", config, "--at", at, "--json"]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return rows


def test_quota_text(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quota", "--config", config, "--at", AT_ARG]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    # Every column labelled; times to the minute in the routing timezone (UTC here), the countdown beside them.
    assert captured.out == "\n".join([
        "provider/account            used / limit  % used  alert             next reset            "
        "                cooling down",
        "antigravity/ag-1   100,000 tok / 500,000   20.0%  -                 "
        "Sun 22 Nov 00:00 UTC (in 3d 11h00m)   -",
        "antigravity/ag-2  400,000 tok / 500,000~   80.0%  >= 80%            "
        "Sun 22 Nov 00:00 UTC (in 3d 11h00m)   -",
        "antigravity/ag-3   480,000 tok / 500,000   96.0%  blocked (>= 95%)  "
        "Sun 22 Nov 00:00 UTC (in 3d 11h00m)   until 16:00 UTC (rate_limited)",
        "antigravity/ag-4   501,000 tok / 500,000  100.2%  exhausted         "
        "Sun 22 Nov 00:00 UTC (in 3d 11h00m)   -",
        "copilot                      50 / 50 req  100.0%  exhausted         "
        "2026-12-01 00:00 UTC (in 12d 11h00m)  -",
        "cline                              0 tok       -  -                 "
        "no quota (last 7 days)                -",
        "opencode            96,000 tok / 100,000   96.0%  >= 95%            16:00 UTC (in 3h00m)  "
        "                -",
        "(~ = includes estimated usage; an alert is announced by the provider or computed from usage)",
        "",
        "burn rate over the current period:",
        "  antigravity/ag-1: burning 1,176 tokens/h; lasts until the reset (capacity back in 3d 11h00m)",
        "  antigravity/ag-2: burning 4,706 tokens/h; exhausted in 21h15m (capacity back in 3d 11h00m)",
        "  antigravity/ag-3: burning 5,647 tokens/h; exhausted in 3h32m (capacity back in 3d 11h00m)",
        "  antigravity/ag-4: burning 5,894 tokens/h; exhausted (capacity back in 3d 11h00m)",
        "  copilot: burning 0.1 requests/h; exhausted (capacity back in 12d 11h00m)",
        "  opencode: burning 19,200 tokens/h; exhausted in 0h12m (capacity back in 3h00m)",
        # The tier as a whole: 1,481,000 of 2,000,000 tokens in 3.5 days of the week.
        "  tier antigravity (4 accounts, 74.1% used): burning 17,424 tokens/h; exhausted in 1d 5h47m "
        "(capacity back in 3d 11h00m)",
        "",
    ])


def test_quota_json_rows(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = quota_json(capsys, config)
    assert [(r["provider"], r["account"]) for r in rows] == [
        ("antigravity", "ag-1"), ("antigravity", "ag-2"), ("antigravity", "ag-3"), ("antigravity", "ag-4"),
        ("copilot", "default"), ("cline", "default"), ("opencode", "default"),
    ]
    by = {(r["provider"], r["account"]): r for r in rows}
    assert by[("antigravity", "ag-3")] == {
        "provider": "antigravity", "account": "ag-3", "since": "2026-11-15T00:00:00+00:00", "requests": 12,
        "input_tokens": 470_000, "output_tokens": 10_000, "cost_usd": 0.0, "estimated": False,
        "limits": {"tokens": 500_000, "requests": None, "cost_usd": None},
        "percent": 96.0, "alert": "blocked (>= 95%)",
        "resets_at": "2026-11-22T00:00:00+00:00", "resets_in": "3d 11h00m",
        "cooldown_until": "2026-11-18T16:00:00+00:00", "cooldown_reason": "rate_limited", "pool": None,
        "alert_source": "computed",  # the rate limit it announced is less than the block adws computed
        "ledger_percent": 96.0, "observed": None,
        # 480,000 tokens in the 85 h since Sunday: 5,647/h, so the last 20,000 last 3h32m.
        "burn": {"dimension": "tokens", "per_hour": 5647.059, "exhausts_at": "2026-11-18T16:32:30+00:00",
                 "exhausts_in": "3h32m", "exhausts_before_reset": True,
                 "text": "burning 5,647 tokens/h; exhausted in 3h32m (capacity back in 3d 11h00m)"},
    }
    # Alert levels: none below 80%, then 80, 95 (where that is not already the hard block), exhausted.
    assert [(r["account"] if r["provider"] == "antigravity" else r["provider"], r["percent"], r["alert"])
            for r in rows] == [
        ("ag-1", 20.0, None), ("ag-2", 80.0, ">= 80%"), ("ag-3", 96.0, "blocked (>= 95%)"),
        ("ag-4", 100.2, "exhausted"), ("copilot", 100.0, "exhausted"), ("cline", None, None),
        ("opencode", 96.0, ">= 95%"),
    ]
    assert by[("antigravity", "ag-2")]["estimated"] is True
    assert by[("antigravity", "ag-1")]["cooldown_until"] is None  # ended a minute before --at
    assert by[("copilot", "default")]["limits"] == {"tokens": None, "requests": 50, "cost_usd": None}
    assert (by[("copilot", "default")]["resets_at"], by[("copilot", "default")]["resets_in"]) == (
        "2026-12-01T00:00:00+00:00", "12d 11h00m")
    # A rolling window resets when its oldest record (11:00) leaves the five hours.
    assert (by[("opencode", "default")]["resets_at"], by[("opencode", "default")]["resets_in"]) == (
        "2026-11-18T16:00:00+00:00", "3h00m")
    assert by[("cline", "default")]["limits"] is None and by[("cline", "default")]["resets_at"] is None


def test_quota_after_the_weekly_reset(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = quota_json(capsys, config, at="2026-11-22T00:01:00Z")
    antigravity = [r for r in rows if r["provider"] == "antigravity"]
    assert [(r["percent"], r["alert"], r["resets_in"]) for r in antigravity] == [(0.0, None, "6d 23h59m")] * 4
    assert all(r["requests"] == 0 and r["cooldown_until"] is None for r in antigravity)
    copilot = next(r for r in rows if r["provider"] == "copilot")
    assert (copilot["percent"], copilot["resets_in"]) == (100.0, "8d 23h59m")  # the month goes on


def test_quota_bad_at_is_a_usage_error(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quota", "--config", config, "--at", "yesterday"]) == 2
    assert capsys.readouterr().err == "adws: --at: not an ISO 8601 time: 'yesterday'\n"


def test_quota_at_without_offset_is_read_in_the_routing_timezone(
        config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert quota_json(capsys, config, at="2026-11-18T13:00:00") == quota_json(capsys, config)


def test_usage_without_a_quota_is_shown_and_later_usage_is_not_counted(
        config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store("sqlite", str(tmp_path / "state.sqlite3"))
    store.record_usage(UsageRecord("cline", "default", AT - timedelta(days=2), Usage(5, 1_000, 500)))
    store.record_usage(UsageRecord("cline", "default", AT - timedelta(days=9), Usage(7, 1, 1)))  # over a week ago
    store.record_usage(UsageRecord("antigravity", "ag-1", AT + timedelta(hours=1), Usage(9, 9, 9)))  # after --at
    store.close()
    by = {(r["provider"], r["account"]): r for r in quota_json(capsys, config)}
    assert (by[("cline", "default")]["requests"], by[("cline", "default")]["since"]) == (
        5, "2026-11-11T13:00:00+00:00")
    assert by[("antigravity", "ag-1")]["requests"] == 3


def test_quota_creates_no_state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "fresh.sqlite3"))
    rows = quota_json(capsys, str(path))
    assert all(r["requests"] == 0 for r in rows)
    assert not (tmp_path / "fresh.sqlite3").exists()


def test_render_quota_shows_every_limited_dimension_and_an_empty_rolling_window() -> None:
    from adws.reports import render_quota

    row = {"provider": "p", "account": "a", "requests": 3, "input_tokens": 100, "output_tokens": 20,
           "estimated": False, "percent": 6.0, "alert": None, "resets_at": None, "resets_in": None,
           "cooldown_until": None,
           "limits": {"tokens": 2000, "requests": 50, "cost_usd": None}}
    assert render_quota([row]).splitlines()[1] == \
        "p/a               120 tok / 2,000, 3 / 50 req    6.0%  -      nothing to reset  -"


def test_quota_times_are_to_the_minute_in_the_routing_timezone() -> None:
    from zoneinfo import ZoneInfo

    from adws.reports import render_quota

    row = {"provider": "p", "account": "a", "requests": 0, "input_tokens": 0, "output_tokens": 0,
           "estimated": False, "percent": 0.0, "alert": None, "resets_in": "3d 11h00m",
           "resets_at": "2026-11-22T00:00:00+00:00", "cooldown_until": "2026-11-18T15:30:45+00:00",
           "cooldown_reason": "rate_limited", "limits": {"tokens": 2000, "requests": None, "cost_usd": None}}
    head, line = render_quota([row], None, ZoneInfo("Europe/Berlin"), AT).splitlines()[:2]
    assert [label.strip() for label in head.split("  ") if label.strip()] == [
        "provider/account", "used / limit", "% used", "alert", "next reset", "cooling down"]
    assert line.endswith("Sun 22 Nov 01:00 CET (in 3d 11h00m)  until 16:30 CET (rate_limited)")


POOLED = """
[providers.antigravity]
command_template = ["opencode", "run", "-m", "{{ model }}"]
prompt = "stdin"
[providers.antigravity.models."claude-sonnet-4.6"]
context_window = 200000
[providers.antigravity.models."gemini-3-pro"]
context_window = 1000000
[providers.antigravity.quota.pools.claude]
models = ["claude-*"]
tokens = 300000
reset = "0 0 * * 0"
[providers.antigravity.quota.pools.gemini]
models = ["gemini-*"]
tokens = 100000
window = "5h"
[[providers.antigravity.accounts]]
name = "ag-1"
[[providers.antigravity.accounts]]
name = "ag-2"
"""


def test_quota_shows_each_pool_with_its_own_limits_and_reset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(POOLED, encoding="utf-8")
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    store = open_store("sqlite", str(tmp_path / "state.sqlite3"))
    store.record_usage(UsageRecord("antigravity", "ag-1/claude", AT - timedelta(days=1), Usage(2, 150_000, 0)))
    store.record_usage(UsageRecord("antigravity", "ag-1/gemini", AT - timedelta(hours=1), Usage(1, 99_000, 0)))
    store.set_cooldown("antigravity", "ag-1/gemini", Cooldown(AT + timedelta(hours=4), "rate_limited"))
    store.close()
    rows = quota_json(capsys, str(path))
    assert [(r["account"], r["pool"], r["percent"], r["alert"], r["resets_in"], r["cooldown_until"])
            for r in rows] == [
        ("ag-1", "claude", 50.0, None, "3d 11h00m", None),
        ("ag-1", "gemini", 99.0, "blocked (>= 95%)", "4h00m", "2026-11-18T17:00:00+00:00"),
        ("ag-2", "claude", 0.0, None, "3d 11h00m", None),
        ("ag-2", "gemini", 0.0, None, None, None),
    ]
    assert main(["quota", "--config", str(path), "--at", AT_ARG]) == 0
    text = capsys.readouterr().out
    line = next(line for line in text.splitlines() if line.startswith("antigravity/ag-1/gemini"))
    assert line.endswith("  until 17:00 UTC (rate_limited)")
    assert "99,000 tok / 100,000   99.0%  blocked (>= 95%)" in line and "17:00 UTC (in 4h00m)" in line
    assert "  tier antigravity/claude (2 accounts, 25.0% used): burning 1,765 tokens/h; lasts until the reset" \
        in text


SYNCED = """
[providers.antigravity]
command_template = ["opencode", "run"]
prompt = "stdin"
usage_command = ["{{ config_dir }}/usage.py", "{{ account }}"]
[providers.antigravity.quota]
tokens = 500000
reset = "0 0 * * 0"
[[providers.antigravity.accounts]]
name = "ag-1"
[[providers.antigravity.accounts]]
name = "ag-2"
[[providers.antigravity.accounts]]
name = "ag-3"
usage_command = ["{{ config_dir }}/missing-usage-tool"]
"""


def test_quota_sync_records_observations_and_shows_both_figures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    (tmp_path / "config.toml").write_text(SYNCED, encoding="utf-8")
    script = tmp_path / "usage.py"
    # The account's real usage as its own tool reports it: ag-1 was used outside adws, ag-2 was not.
    script.write_text(f"#!{sys.executable}\nimport json, sys\nused = {{'ag-1': 315000, 'ag-2': 0}}[sys.argv[1]]\n"
                      'print(json.dumps({"quota": {"used": used, "reset": "2026-11-22T00:00:00Z"}}))\n',
                      encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    store = open_store("sqlite", str(tmp_path / "state.sqlite3"))
    store.record_usage(UsageRecord("antigravity", "ag-1", AT - timedelta(days=1), Usage(2, 100_000, 0)))  # 20%
    store.record_usage(UsageRecord("antigravity", "ag-2", AT - timedelta(days=1), Usage(2, 200_000, 0)))  # 40%
    store.close()
    assert main(["quota", "--config", str(tmp_path / "config.toml"), "--at", AT_ARG, "--sync", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"adws: antigravity/ag-3: usage_command {tmp_path}/missing-usage-tool: executable not "
                            f"found: {tmp_path}/missing-usage-tool\n")
    rows = {r["account"]: r for r in json.loads(captured.out)}
    assert (rows["ag-1"]["percent"], rows["ag-1"]["ledger_percent"], rows["ag-1"]["alert"]) == (63.0, 20.0, None)
    assert rows["ag-1"]["observed"] == {
        "percent": 63.0, "source": "usage_command", "at": "2026-11-18T13:00:00+00:00",
        "reset_at": "2026-11-22T00:00:00+00:00", "counts": True,
        "text": "ledger 20.0%, observed 63.0% (usage_command 0m ago): observed counts"}
    # Lower than the ledger: shown, but the ledger counts.
    assert (rows["ag-2"]["percent"], rows["ag-2"]["observed"]["counts"]) == (40.0, False)
    assert rows["ag-3"]["observed"] is None
    # Without --sync, the recorded observation is still shown; nothing runs.
    script.unlink()
    assert main(["quota", "--config", str(tmp_path / "config.toml"), "--at", AT_ARG]) == 0
    # The observed column, beside the ledger's figure.
    assert "  ledger 20.0%, observed 63.0% (usage_command 0m ago): observed counts\n" in capsys.readouterr().out
