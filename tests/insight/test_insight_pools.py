"""simulate and report on a quota split into pools with no limits of its own: README's own example."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adws.accounts import build_period
from adws.cli import main
from adws.config import load_config
from adws.state.maintenance import quota_period_starts
from tests.helpers import ROOT
from tests.insight.conftest import attempt, record, write_audit


def _readme_pools() -> str:
    """The toml block README.md shows for `[providers.NAME.quota.pools.P]`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("```toml\n", text.index("`[providers.NAME.quota.pools.P]` splits")) + len("```toml\n")
    return text[start:text.index("```", start)]


@pytest.fixture
def pools_config(tmp_path: Path) -> Path:
    block = _readme_pools()
    assert "[providers.antigravity.quota]" in block and "tokens" not in block.split("[providers.antigravity.quota.")[0]
    path = tmp_path / "pools.toml"
    path.write_text(f"""
[routing]
default_provider = "antigravity"
chain = ["antigravity"]
timezone = "UTC"

[providers.antigravity]
command_template = ["opencode", "run", "-m", "{{{{ model }}}}", "--format", "json"]
prompt = "stdin"
output_format = "opencode-json"
[providers.antigravity.models.claude-sonnet]
context_window = 200000
[providers.antigravity.models.gemini-pro]
context_window = 1000000
[[providers.antigravity.accounts]]
name = "a1"

{block}
[audit]
path = "{tmp_path / 'audit.jsonl'}"
""", encoding="utf-8")
    return path


def test_a_pooled_quota_without_limits_of_its_own_has_a_period_that_counts_nothing(pools_config: Path) -> None:
    config = load_config(pools_config)
    quota = config.providers["antigravity"].quota
    assert quota is not None and not quota.limited and quota.reset is None and quota.window_seconds is None
    now = datetime(2026, 11, 18, 12, tzinfo=UTC)
    period = build_period(quota)
    assert (period.start(now), period.next_reset(now)) == (now, None)
    # Retention keeps what every pool's period still reaches: the weekly pool's start (Sunday), not just now.
    assert min(quota_period_starts(config, now)) == datetime(2026, 11, 15, tzinfo=UTC)


def test_simulate_meters_each_pool(pools_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    monkeypatch.setenv("ADWS_CACHE_DIR", str(tmp_path / "cache"))
    week = tmp_path / "week.jsonl"
    assert main(["simulate", "--config", str(pools_config), "--days", "2", "--seed", "1",
                 "--start", "2026-11-16T00:00:00Z", "--audit-out", str(week), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # Every task goes to claude-sonnet (the first model): its pool's 300,000 tokens a week run out, and the
    # provider refuses until the pool's reset, Sunday 00:00.
    assert result["succeeded"] > 0
    claude = result["accounts"]["antigravity/a1"]
    assert claude["capacity_returns"] == "2026-11-22T00:00:00+00:00"
    assert main(["report", "--config", str(pools_config), "--audit", str(week), "--html", str(tmp_path / "r.html")]) \
        == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'r.html'}: 4 plots, ")


def test_report_shows_each_pool_with_its_own_use_and_reset(pools_config: Path, tmp_path: Path) -> None:
    from adws.insight.report import build_html

    log = write_audit(tmp_path / "a.jsonl", [
        record([attempt("antigravity", account="a1", model="claude-sonnet", tokens=(100000, 50000),
                        at="2026-11-18T09:00:00+00:00")], at="2026-11-18T10:00:00+00:00"),
        record([attempt("antigravity", account="a1", model="gemini-pro", tokens=(40000, 10000),
                        at="2026-11-18T11:00:00+00:00")], at="2026-11-18T12:00:00+00:00"),
    ])
    page = build_html(load_config(pools_config), log)
    rows = re.findall(r"<tr><td>([\w/]+)</td><td>([\d.]+%)</td><td>[^<]*</td><td>([^<]*)</td>", page)
    assert rows == [("a1/claude", "50.0%", "2026-11-22 00:00 UTC"), ("a1/gemini", "10.0%", "rolling window")]
