from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adws.cli import main
from adws.errors import UsageError
from adws.insight import stats
from adws.insight.records import parse_since
from tests.insight.conftest import attempt, record, write_audit


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return write_audit(tmp_path / "audit.jsonl", [
        # lands on alpha at once
        record([attempt("alpha", account="one", model="a1", ms=1000, tokens=(100, 50), cost=0.5)], rule="r1"),
        # refused on alpha (a limit), then done on beta: falls through, one rejected attempt on alpha
        record([attempt("alpha", "quota_exhausted", account="two", model="a1", ms=200, tokens=(0, 0)),
                attempt("beta", model="b1", ms=3000, tokens=(1000, 500), cost=0.25)], rule="r1"),
        # fails everywhere
        record([attempt("beta", "error", model="b1", ms=5000)], rule="r2", at="2026-11-19T09:00:00+00:00"),
        # busy: nothing ran
        record([attempt("alpha", "unavailable", account="one", model="a1", ms=0, tokens=(0, 0))], rule="r2",
               at="2026-11-19T09:30:00+00:00"),
    ], torn=True)


def test_tasks_count_where_they_ended_and_attempts_where_they_ran(log: Path) -> None:
    result = stats.compute(log, by=["provider"])
    rows = {row["provider"]: row for row in result.rows()}
    assert rows["alpha"] == {
        "provider": "alpha", "tasks": 2, "success_rate": 0.5, "first_attempt_success": 0.5, "fall_through_rate": 0.0,
        "attempts_per_task": 1.0, "attempts": 3, "rejected_attempts": 1, "p50_ms": 200, "p95_ms": 1000,
        "input_tokens": 100, "output_tokens": 50, "cost_usd": 0.5}
    assert rows["beta"] == {
        "provider": "beta", "tasks": 2, "success_rate": 0.5, "first_attempt_success": 0.0, "fall_through_rate": 0.5,
        "attempts_per_task": 1.5, "attempts": 2, "rejected_attempts": 0, "p50_ms": 3000, "p95_ms": 5000,
        "input_tokens": 1100, "output_tokens": 550, "cost_usd": 0.25}
    total = result.total.to_dict()
    assert (total["tasks"], total["attempts"], total["rejected_attempts"]) == (4, 5, 1)
    assert result.reading.skipped == 1  # the torn last line


def test_group_by_several_dimensions_and_day(log: Path) -> None:
    result = stats.compute(log, by=["rule", "day"])
    keys = [(row["rule"], row["day"]) for row in result.rows()]
    assert keys == [("r1", "2026-11-18"), ("r2", "2026-11-19")]
    assert [row["tasks"] for row in result.rows()] == [2, 2]


def test_since_keeps_later_records(log: Path) -> None:
    result = stats.compute(log, since=datetime(2026, 11, 19, tzinfo=UTC))
    assert result.records == 2 and result.total.tasks == 2


@pytest.mark.parametrize(("value", "expected"), [
    ("7d", datetime(2026, 11, 11, 12, tzinfo=UTC)), ("12h", datetime(2026, 11, 18, 0, tzinfo=UTC)),
    ("2026-11-01T00:00:00Z", datetime(2026, 11, 1, tzinfo=UTC)),
])
def test_since_spans_and_times(value: str, expected: datetime) -> None:
    assert parse_since(value, datetime(2026, 11, 18, 12, tzinfo=UTC)) == expected


def test_bad_since_and_by_are_one_line_errors() -> None:
    with pytest.raises(UsageError,
                       match=r"--since: expected a span such as 7d or 12h, or an ISO 8601 time; got 'soon'"):
        parse_since("soon", datetime(2026, 11, 18, tzinfo=UTC))
    with pytest.raises(UsageError,
                       match=r"--by: unknown dimension 'tier'; choose from provider, account, rule, model, day"):
        stats.parse_by("provider,tier")
    with pytest.raises(UsageError, match=r"""--by: unknown dimension 'acount' \(did you mean "account"\?\); choose"""):
        stats.parse_by("acount")


def test_percentile_is_nearest_rank() -> None:
    assert stats.percentile(list(range(1, 101)), 95) == 95
    assert stats.percentile([5], 50) == 5
    assert stats.percentile([], 50) is None


def test_cli_table_and_json(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--audit", str(log), "--by", "provider,account"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["provider", "account", "tasks", "ok", "1st", "fell", "att/task",
                                           "rejected", "p50", "p95", "tokens", "cost", "$"]
    assert "(4 task record(s); 1 unreadable line(s) skipped)" in out
    assert main(["stats", "--audit", str(log), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["by"] == ["provider"] and data["total"]["tasks"] == 4 and data["unreadable_lines"] == 1


def test_cli_missing_log_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--audit", str(tmp_path / "nope.jsonl")]) == 2
    missing = tmp_path / "nope.jsonl"
    assert capsys.readouterr().err == f"adws: cannot read the audit log {missing}: No such file or directory\n"


def test_a_fresh_deployment_without_an_audit_log_has_zero_tasks(
        write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing has run yet, so the config's log does not exist: zero tasks and a note, not an error.
    config = write_config()
    log = tmp_path / "audit.jsonl"
    assert not log.exists()
    assert main(["stats", "--config", str(config), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["total"]["tasks"] == 0
    assert captured.err == f"adws: no audit log at {log} yet (nothing has run): 0 tasks\n"
    assert main(["stats", "--config", str(config)]) == 0
    assert "(0 task record(s))" in capsys.readouterr().out
    html = tmp_path / "r.html"
    assert main(["report", "--config", str(config), "--html", str(html)]) == 0
    assert html.exists() and capsys.readouterr().out.startswith(f"{html}: ")
    assert not log.exists()  # reading created nothing


# -- Prometheus text exposition, checked line by line -----------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_SAMPLE = re.compile(rf"^({_NAME})(\{{{_NAME}={_LABEL_VALUE}(?:,{_NAME}={_LABEL_VALUE})*\}})? (\S+)$")
_HELP = re.compile(rf"^# HELP ({_NAME}) \S.*$")
_TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|summary|histogram|untyped)$")


def check_exposition(text: str) -> dict[str, list[tuple[str, str]]]:
    """Validate the text format strictly; return samples per family."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    families: dict[str, list[tuple[str, str]]] = {}
    types: dict[str, str] = {}
    current = None
    seen_series: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP"):
            match = _HELP.match(line)
            assert match, line
            name = match.group(1)
            assert name not in families, f"family {name} appears twice"
            families[name], current = [], name
            continue
        if line.startswith("# TYPE"):
            match = _TYPE.match(line)
            assert match and match.group(1) == current, line
            types[current] = match.group(2)
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        assert current is not None and current in types, f"sample before HELP/TYPE: {line}"
        suffixes = ("", "_sum", "_count") if types[current] == "summary" else ("",)
        assert name in {current + s for s in suffixes}, f"{name} inside family {current}"
        float(value)  # a Go ParseFloat-compatible number
        assert line.rsplit(" ", 1)[0] not in seen_series, f"duplicate series {line}"
        seen_series.add(line.rsplit(" ", 1)[0])
        families[current].append((name + (labels or ""), value))
    return families


def test_prometheus_exposition_is_valid(log: Path) -> None:
    text = stats.render_prometheus(stats.compute(log, by=["provider", "account"]))
    families = check_exposition(text)
    assert dict(families["adws_tasks"]) == {'adws_tasks{provider="alpha",account="one"}': "2",
                                            'adws_tasks{provider="alpha",account="two"}': "0",
                                            'adws_tasks{provider="beta",account="-"}': "2"}
    durations = dict(families["adws_attempt_duration_seconds"])
    assert durations['adws_attempt_duration_seconds{provider="beta",account="-",quantile="0.95"}'] == "5.0"
    assert durations['adws_attempt_duration_seconds_count{provider="beta",account="-"}'] == "2"
    assert durations['adws_attempt_duration_seconds_sum{provider="beta",account="-"}'] == "8.0"
    tokens = dict(families["adws_tokens"])
    assert tokens['adws_tokens{provider="beta",account="-",direction="input"}'] == "1100"
    # a ratio with no task in the group is left out, not written as NaN
    assert not any("account=\"two\"" in k for k, _ in families["adws_task_success_ratio"])


def test_prometheus_escapes_label_values(tmp_path: Path) -> None:
    log = write_audit(tmp_path / "a.jsonl", [record([attempt("alpha")], rule='say "hi"\\now\nthen')])
    text = stats.render_prometheus(stats.compute(log, by=["rule"]))
    check_exposition(text)
    assert 'adws_tasks{rule="say \\"hi\\"\\\\now\\nthen"} 1' in text.splitlines()


def test_cli_prometheus(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--audit", str(log), "--format", "prometheus"]) == 0
    check_exposition(capsys.readouterr().out)


def test_the_ledger_is_shown_beside_the_log(write_config: Callable[..., Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from adws.attempt import Usage
    from adws.engine import load
    from adws.state import UsageRecord

    config = write_config()
    write_audit(tmp_path / "audit.jsonl", [record([attempt("alpha", account="one")])])  # the config's [audit] path
    engine = load(config)
    engine.store.record_usage(UsageRecord("alpha", "one", datetime(2026, 11, 18, 10, tzinfo=UTC),
                                          Usage(1, 100, 50, 0.5)))
    engine.store.record_usage(UsageRecord("beta", "default", datetime(2026, 11, 18, 11, tzinfo=UTC),
                                          Usage(1, 7, 3, 0.0, estimated=True)))  # no audit record carries this
    engine.close()
    assert main(["stats", "--config", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ledger"] == [
        {"provider": "alpha", "account": "one", "requests": 1, "input_tokens": 100, "output_tokens": 50,
         "cost_usd": 0.5, "estimated": False},
        {"provider": "beta", "account": "default", "requests": 1, "input_tokens": 7, "output_tokens": 3,
         "cost_usd": 0.0, "estimated": True}]
    assert main(["stats", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-3:] == ["ledger (state store, same window):",
                        "  alpha/one                         1 req            150 tok $     0.50",
                        "  beta/default                      1 req             10 tok $     0.00 (includes estimates)"]
    assert main(["stats", "--config", str(config), "--format", "prometheus"]) == 0
    families = check_exposition(capsys.readouterr().out)
    assert dict(families["adws_ledger_tokens"])['adws_ledger_tokens{provider="beta",account="default",'
                                                'direction="input"}'] == "7"
    # Given only a log, stats does not guess which store it belongs to.
    assert main(["stats", "--audit", str(tmp_path / "audit.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ledger"] is None


def test_hostile_audit_lines_are_skipped_not_fatal(log: Path) -> None:
    with open(log, "a", encoding="utf-8") as fh:  # a 5000-digit integer (a ValueError) and 100,000 levels of nesting
        fh.write("\n" + '{"at": "2026-11-19T09:00:00+00:00", "n": ' + "9" * 5000 + "}\n")
        fh.write("[" * 100_000 + "]" * 100_000 + "\n")
    result = stats.compute(log, by=["provider"])
    assert result.total.to_dict()["tasks"] == 4
    assert result.reading.skipped == 3  # the torn line and the two hostile ones
