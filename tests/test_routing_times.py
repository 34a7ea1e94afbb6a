"""The times adws routes at: the years adws.arguments.FIRST_YEAR to LAST_YEAR, refused outside at every boundary
(now= of the API, --at, a scenario's `at`, simulate's span), and every time inside computes without overflow."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adws.arguments import FIRST_YEAR, LAST_YEAR
from adws.cli import main
from adws.config import load_config
from adws.engine import Engine
from adws.errors import ArgumentError
from adws.events import Event
from tests.helpers import ROOT, fake_env

OUTSIDE = "is outside the times adws routes at (the years 1971 to 2998: state stores keep 1970 to 3000)"

# Quotas reset by every kind of cron period near the range's ends: weekly, yearly, a leap day (8 years apart
# around 2100), a day-of-month-or-weekday form croniter itself matches.
CONFIG = """
[routing]
chain = ["alpha", "beta", "gamma", "delta"]
timezone = "Pacific/Kiritimati"
[routing.intake]
retry_count = "history"
{providers}
[[routing.rules]]
name = "nightly"
conditions = {{ schedule = "0-59 0-5 * * *" }}
provider = "beta"
{scenarios}
"""

PROVIDER = """
[providers.{name}]
command_template = ["{name}-cli", "{{{{ model }}}}"]
prompt = "stdin"
output_format = "claude-json"
[providers.{name}.models.m]
context_window = 200000
[providers.{name}.quota]
tokens = 500000
reset = "{reset}"
timezone = "America/Adak"
"""

RESETS = {"alpha": "0 0 * * 0", "beta": "@yearly", "gamma": "0 0 29 2 *", "delta": "0 0 L * *"}


def _config(tmp_path: Path, scenarios: str = "") -> Path:
    providers = "".join(PROVIDER.format(name=name, reset=reset) for name, reset in RESETS.items())
    path = tmp_path / "times.toml"
    path.write_text(CONFIG.format(providers=providers, scenarios=scenarios) +
                    f'[audit]\npath = "{tmp_path / "audit.jsonl"}"\n[state]\npath = "{tmp_path / "s.sqlite3"}"\n',
                    encoding="utf-8")
    return path


EDGES = [datetime(FIRST_YEAR, 1, 1, tzinfo=UTC), datetime(FIRST_YEAR, 1, 1),
         datetime(LAST_YEAR, 12, 31, 23, 59, 59, tzinfo=ZoneInfo("Pacific/Kiritimati")),
         datetime(LAST_YEAR, 12, 31, 23, 59, 59), datetime(LAST_YEAR, 12, 31, 23, 59, 59, tzinfo=UTC)]
BEYOND = [datetime.max.replace(tzinfo=UTC), datetime.min, datetime.min.replace(tzinfo=UTC),
          datetime(FIRST_YEAR - 1, 12, 31, 23, 59, tzinfo=UTC), datetime(LAST_YEAR + 1, 1, 1),
          datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)]


@pytest.mark.parametrize("now", EDGES)
def test_every_kind_of_period_computes_at_the_ends_of_the_range(tmp_path: Path, now: datetime) -> None:
    engine = Engine(load_config(_config(tmp_path)), environ=fake_env(tmp_path), which=lambda name: f"/x/{name}")
    try:
        decision = engine.route({"title": "x"}, now=now)
        assert decision.plan  # every tier's quota period known: nothing refused
        engine.explain({"title": "x"}, now=now)
    finally:
        engine.close()


@pytest.mark.parametrize("now", BEYOND)
def test_a_time_outside_the_range_is_an_argument_error(tmp_path: Path, now: datetime) -> None:
    engine = Engine(load_config(_config(tmp_path)), environ=fake_env(tmp_path), which=lambda name: f"/x/{name}")
    events: list[Event] = []
    try:
        for call in (lambda: engine.route({"title": "x"}, now=now), lambda: engine.explain({"title": "x"}, now=now),
                     lambda: engine.router.prepare({"title": "x"}, now=now),
                     lambda: engine.run({"title": "x"}, prompt="p", workdir=tmp_path, now=now,
                                        on_event=events.append)):
            with pytest.raises(ArgumentError) as caught:
                call()
            assert str(caught.value) == f"now: {now.isoformat()} {OUTSIDE}"
        assert events == []
    finally:
        engine.close()


@pytest.mark.parametrize("command", ["route", "providers", "quota"])
@pytest.mark.parametrize("at", ["9999-12-31T23:59:59", "0001-01-01T00:00:00", "1970-12-31T23:59:59Z"])
def test_at_outside_the_range_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
                                          at: str) -> None:
    args = [command, "--config", str(_config(tmp_path)), "--at", at]
    if command == "route":
        args += ["--task-json", "{}"]
    assert main(args) == 2
    shown = at.replace("Z", "+00:00")
    assert capsys.readouterr().err == f"adws: --at: {shown} {OUTSIDE}\n"


@pytest.mark.parametrize("at", ["2998-12-31T23:59:59", "1971-01-01T00:00:00Z"])
def test_at_inside_the_range_routes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str], at: str) -> None:
    config = str(_config(tmp_path))
    assert main(["route", "--config", config, "--at", at, "--task-json", "{}", "--assume-available"]) == 0
    assert main(["quota", "--config", config, "--at", at]) == 0
    assert main(["providers", "--config", config, "--at", at]) == 0


SCENARIOS = """
[[scenarios]]
name = "far"
at = {at}
task = {{ title = "x" }}
expect = {{ provider = "alpha" }}
"""


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2999-06-01T00:00:00Z"])
def test_a_scenario_at_outside_the_range_is_a_config_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             at: str) -> None:
    """Refused where the config is checked, with its place, in the same words and range as `--at` and `now=`."""
    config = _config(tmp_path, SCENARIOS.format(at=at))
    assert main(["check", str(config)]) == 1
    err = capsys.readouterr().err
    assert f'scenarios[0] (name="far") → at: {at.replace("Z", "+00:00")} {OUTSIDE}' in err
    assert main(["lint", "--config", str(config)]) in (1, 2)  # the config's problem, no crash
    assert "Traceback" not in capsys.readouterr().err
    shown = subprocess.run([sys.executable, str(ROOT / "tools" / "show-routing.py"), "--config", str(config)],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode != 0 and "Traceback" not in shown.stderr and OUTSIDE in " ".join(shown.stderr.split())


def test_simulate_refuses_a_span_outside_the_range(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADWS_CACHE_DIR", str(tmp_path / "cache"))
    config = str(_config(tmp_path))
    assert main(["simulate", "--config", config, "--start", "9999-12-31T00:00"]) == 2
    assert capsys.readouterr().err == f"adws: --start: 9999-12-31T00:00:00 {OUTSIDE}\n"
    assert main(["simulate", "--config", config, "--start", "2998-12-28T00:00", "--days", "4"]) == 2
    assert capsys.readouterr().err == (
        "adws: --start: the simulated span 2998-12-28T00:00:00+00:00 to 2999-01-01T00:00:00+00:00 leaves the times "
        "adws routes at (the years 1971 to 2998)\n")
    assert main(["simulate", "--config", config, "--start", "2998-12-28T00:00", "--days", "2"]) == 0


def test_the_routers_hot_path_checks_the_range_too(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    engine = make_engine(fake_env(tmp_path))
    late = datetime(LAST_YEAR, 12, 31, 12, tzinfo=UTC)
    assert engine.route({"title": "x"}, now=late).now == late
    with pytest.raises(ArgumentError):
        engine.route({"title": "x"}, now=late + timedelta(days=1))
