"""`adws state import` checks the whole file before it writes anything: times a store can keep (and not from the
future), text UTF-8 can encode, figures whose totals cannot overflow, a header that is really version 1; and what
its summary says was kept is what the store kept."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adws.cli import main
from adws.state import STORES, MemoryStore, SqliteStore, base, redis_store
from adws.state.base import BreakerState, Cooldown, Observation, RunRecord
from adws.state.maintenance import StateImportError, export_lines, import_lines
from tests.state.test_state import open_backend
from tests.state.test_state_maintenance import NOW, fill, write_config

HEADER = {"kind": "adws-state", "version": 1, "exported_at": NOW.isoformat()}
AT = (NOW - timedelta(minutes=1)).isoformat()
# One good line of each kind, in the order an export writes them.
GOOD: dict[str, dict[str, Any]] = {
    "usage": {"kind": "usage", "provider": "claude", "account": "a", "at": AT, "requests": 1, "input_tokens": 5,
              "output_tokens": 3, "cost_usd": 0.5, "estimated": False, "model": "sonnet", "task_id": "issue-7"},
    "cooldown": {"kind": "cooldown", "provider": "claude", "account": "a",
                 "until": (NOW + timedelta(hours=1)).isoformat(), "reason": "rate_limited"},
    "cursor": {"kind": "cursor", "key": "round_robin:claude", "value": 3},
    "sticky": {"kind": "sticky", "key": "sticky:claude:7", "value": "b"},
    "breaker": {"kind": "breaker", "provider": "claude", "state": "open", "failures": 3, "opened_at": AT},
    "observation": {"kind": "observation", "provider": "claude", "subject": "a", "at": AT, "percent": 100.0,
                    "source": "usage_command", "used": 10.0, "limit": 10.0,
                    "reset_at": (NOW + timedelta(hours=1)).isoformat()},
    "run": {"kind": "run", "provider": "claude", "specialization": "general", "at": AT, "tokens": 1200},
}
# The year 9999 in its zone is the year 10000 in UTC, the year 1 in its zone the year 0: no datetime holds either,
# so a store that kept one could not read it back (SQLite said "damaged", Redis raised on every command).
YEAR_10000 = "9999-12-31T23:59:59-01:00"
YEAR_0 = "0001-01-01T00:00:00+01:00"


def check(*lines: dict[str, Any], header: dict[str, Any] = HEADER, now: datetime | None = None) -> list[str]:
    """The bad lines `import_lines` lists for a file of `header` and `lines` (into an empty memory store)."""
    text = [json.dumps(header), *(json.dumps(line) for line in lines)]
    with MemoryStore() as store, pytest.raises(StateImportError) as exc:
        import_lines(store, text, "f", ["claude"], now)
    return [line.removeprefix("f:") for line in str(exc.value).splitlines() if not line.startswith("f: ")]


def test_every_time_field_must_be_one_a_store_can_keep() -> None:
    outside = "is outside the times a store keeps (1970-01-01T00:00:00+00:00 to 3000-01-01T00:00:00+00:00)"
    cases = [("usage", "at", YEAR_0), ("cooldown", "until", YEAR_10000), ("breaker", "opened_at", YEAR_0),
             ("observation", "at", YEAR_0), ("observation", "reset_at", YEAR_10000), ("run", "at", YEAR_0),
             ("cooldown", "until", "1969-12-31T23:59:59+00:00")]
    assert check(*({**GOOD[kind], field: value} for kind, field, value in cases)) == [
        f"{n}: {field}: '{value}' {outside}" for n, (_, field, value) in enumerate(cases, start=2)]
    assert check(header={**HEADER, "exported_at": YEAR_10000}) == [f"1: exported_at: '{YEAR_10000}' {outside}"]
    # The bounds themselves are kept (a store writes a later announced reset as the latest time it keeps).
    lines = [json.dumps(HEADER), json.dumps({**GOOD["cooldown"], "until": "3000-01-01T00:00:00+00:00"})]
    with MemoryStore() as store:
        assert import_lines(store, lines, "f", ["claude"])["cooldown"] == 1


def test_a_time_something_happened_may_not_be_later_than_the_export() -> None:
    # A reading from the future stays "the newest" until its time comes: the store would take no other one, and a
    # usage_command whose latest reading lies ahead never looks due. Five minutes are allowed for clocks out of step.
    late = (NOW + timedelta(minutes=6)).isoformat()
    cases = [("usage", "at"), ("breaker", "opened_at"), ("observation", "at"), ("run", "at")]
    tail = (f"is later than the file's exported_at ({NOW.isoformat()}) by more than 5 minutes: written by a host "
            "whose clock was ahead? (correct or drop the line)")
    assert check(*({**GOOD[kind], field: late} for kind, field in cases), {**GOOD["run"], "at": "2999-01-01T00:00Z"}) \
        == [*(f"{n}: {field}: '{late}' {tail}" for n, (_, field) in enumerate(cases, start=2)),
            f"6: at: '2999-01-01T00:00Z' {tail}"]
    soon = (NOW + timedelta(minutes=4)).isoformat()
    lines = [json.dumps(HEADER), *(json.dumps({**GOOD[kind], field: soon}) for kind, field in cases)]
    with MemoryStore() as store:
        counts = import_lines(store, lines, "f", ["claude"])
        assert [counts[kind] for kind, _ in cases] == [1, 1, 1, 1]
    # Without exported_at the import's own time is the limit; an exported_at after it is refused.
    undated = {"kind": "adws-state", "version": 1}
    assert check(GOOD["run"], {**GOOD["run"], "at": late}, header=undated, now=NOW) == [
        f"3: at: '{late}' is later than now ({NOW.isoformat()}) by more than 5 minutes: written by a host whose "
        "clock was ahead? (correct or drop the line)"]
    assert check(GOOD["run"], header={**HEADER, "exported_at": late}, now=NOW) == [
        f"1: exported_at: '{late}' is later than now ({NOW.isoformat()}) by more than 5 minutes: written by a host "
        "whose clock was ahead? (correct or drop the line)"]


STRING_FIELDS = [("usage", "provider"), ("usage", "account"), ("usage", "model"), ("usage", "task_id"),
                 ("cooldown", "provider"), ("cooldown", "account"), ("cooldown", "reason"), ("cursor", "key"),
                 ("sticky", "key"), ("sticky", "value"), ("breaker", "provider"), ("observation", "provider"),
                 ("observation", "subject"), ("observation", "source"), ("run", "provider"),
                 ("run", "specialization")]


def test_every_string_field_must_be_text_utf8_can_encode() -> None:
    # JSON may escape a lone surrogate ("\ud800"); neither SQLite nor redis-py can encode it, so it used to fail
    # halfway through the import, after the usage rows were committed.
    assert check(*({**GOOD[kind], field: "x\ud800"} for kind, field in STRING_FIELDS)) == [
        f"{n}: {field}: 'x\\ud800' is not valid text (it holds a lone surrogate)"
        for n, (_, field) in enumerate(STRING_FIELDS, start=2)]


def test_figures_are_bounded_so_totals_cannot_overflow() -> None:
    # Two rows of 2**63 - 1 tokens used to import, then SQLite's sum overflowed ("damaged") and Redis's went absurd;
    # a cursor of 2**63 - 1 made Redis's next_cursor fail.
    big = 9223372036854775807
    assert check({**GOOD["usage"], "input_tokens": big}, {**GOOD["usage"], "requests": 10**12 + 1},
                 {**GOOD["cursor"], "value": big}, {**GOOD["breaker"], "failures": big},
                 {**GOOD["run"], "tokens": 10**12 + 1}, {**GOOD["usage"], "cost_usd": 1e13}) == [
        f"2: input_tokens: {big} is too large (at most 1,000,000,000,000)",
        "3: requests: 1000000000001 is too large (at most 1,000,000,000,000)",
        f"4: value: {big} is too large (at most 1,000,000,000,000)",
        f"5: failures: {big} is too large (at most 1,000,000,000,000)",
        "6: tokens: 1000000000001 is too large (at most 1,000,000,000,000)",
        "7: cost_usd: 10000000000000.0 is too large (at most 1,000,000,000,000)"]
    lines = [json.dumps(HEADER), json.dumps({**GOOD["usage"], "input_tokens": 10**12})]
    with MemoryStore() as store:
        assert import_lines(store, lines, "f", ["claude"])["usage"] == 1


def test_a_header_whose_version_is_true_is_not_version_1() -> None:
    message = '1: expected the header {"kind": "adws-state", "version": 1} (a file written by adws state export)'
    assert check(GOOD["sticky"], header={**HEADER, "version": True}) == [message]
    assert check(GOOD["sticky"], header={**HEADER, "version": 1.0}) == [message]


# A last line that the check before the fix let through, each breaking the import halfway or the store afterwards.
BAD_LAST = {
    "sticky not encodable": {**GOOD["sticky"], "value": "\ud800"},
    "observation not encodable": {**GOOD["observation"], "source": "\udfff"},
    "usage not encodable": {**GOOD["usage"], "task_id": "\ud83d"},
    "cooldown past the year 9999 in UTC": {**GOOD["cooldown"], "until": YEAR_10000},
    "observation before the year 1 in UTC": {**GOOD["observation"], "at": YEAR_0},
    "cursor at the end of 64 bits": {**GOOD["cursor"], "value": 2**63 - 1},
    "run from the future": {**GOOD["run"], "at": "2999-01-01T00:00:00+00:00"},
}


@pytest.mark.parametrize("bad", list(BAD_LAST))
@pytest.mark.parametrize("backend", sorted(STORES))
def test_a_bad_last_line_changes_nothing_on_any_backend(
    backend: str, bad: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with open_backend(backend, request, tmp_path) as store, MemoryStore() as source:
        # A store holding some state already, and a file with every kind that it does not hold yet.
        store.set_sticky("sticky:claude:1", "a")
        store.record_run("claude", "general", NOW - timedelta(hours=2), 10)
        fill(source, NOW)
        lines = [*export_lines(source, NOW), json.dumps(BAD_LAST[bad])]
        before = list(export_lines(store, NOW))
        with pytest.raises(StateImportError) as exc:
            import_lines(store, lines, "f", ["claude"], NOW)
        assert str(exc.value).startswith(f"f:{len(lines)}: ")
        assert list(export_lines(store, NOW)) == before


def summary(lines: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path, config: str = "") -> str:
    """What `adws state import` says on stderr about a file of `lines`, into the store `config` names."""
    dump = tmp_path / "state.jsonl"
    dump.write_text("\n".join(lines) + "\n")
    assert main(["state", "import", str(dump), "--config", str(write_config(tmp_path, config))]) == 0
    return capsys.readouterr().err


def test_the_summary_counts_the_observations_the_store_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    path = tmp_path / ".adws" / "state.sqlite3"
    with SqliteStore(str(path)) as store:
        store.record_observation(Observation("claude", "a", NOW, 20.0, "usage_command"))
    older = {**GOOD["observation"], "at": (NOW - timedelta(hours=1)).isoformat()}
    newer = {**GOOD["observation"], "subject": "b"}
    err = summary([json.dumps(HEADER), json.dumps(older), json.dumps(newer)], capsys, tmp_path)
    assert err == (f"imported 0 usage, 0 cooldown, 0 cursor, 0 sticky, 0 breaker, 1 observation, 0 run into {path}; "
                   "1 observations were older than the store's own (not kept)\n")


def test_the_summary_counts_the_runs_of_the_store_that_newer_imported_ones_pushed_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.delenv("ADWS_STATE_URL", raising=False)
    monkeypatch.setattr(base, "RUNS_KEPT", 3)
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    with redis_store.RedisStore(url, key_prefix=prefix) as store:
        for minutes in (50, 40):
            store.record_run("claude", "general", NOW - timedelta(minutes=minutes), minutes)
        runs = [{**GOOD["run"], "at": (NOW - timedelta(minutes=m)).isoformat(), "tokens": m} for m in (30, 20, 10, 5)]
        err = summary([json.dumps(HEADER), *map(json.dumps, runs)], capsys, tmp_path,
                      f'[state]\nbackend = "redis"\nurl = "{url}"\nkey_prefix = "{prefix}"\n')
        assert err == ("imported 0 usage, 0 cooldown, 0 cursor, 0 sticky, 0 breaker, 0 observation, 3 run into "
                       f"{url}; 3 runs were not kept (1 of the file's, 2 the store held: the store keeps only the "
                       "newest runs of each provider and specialization)\n")
        assert store.recent_runs("claude", "general", 10) == [5, 10, 20]
        assert [r for r in store.recorded_runs()] == [
            RunRecord("claude", "general", NOW - timedelta(minutes=m), m) for m in (20, 10, 5)]


def test_the_good_lines_the_checks_start_from_import() -> None:
    # Each check above changes one field of these: were one of them bad already, those checks would prove nothing.
    with MemoryStore() as store:
        counts = import_lines(store, [json.dumps(HEADER), *map(json.dumps, GOOD.values())], "f", ["claude"], NOW)
        assert [counts[kind] for kind in GOOD] == [1] * len(GOOD)
        assert store.cooldowns(NOW) == {("claude", "a"): Cooldown(NOW + timedelta(hours=1), "rate_limited")}
        assert store.breakers() == {"claude": BreakerState("open", 3, NOW - timedelta(minutes=1))}


def test_an_optional_text_of_another_type_is_named() -> None:
    assert check({**GOOD["usage"], "model": 5}) == ["2: model: expected a string or null, got 5"]


def test_past_fifty_bad_lines_the_rest_are_counted() -> None:
    listed = check(*[{**GOOD["run"], "tokens": -1}] * 51)
    assert len(listed) == 51 and listed[-1] == "... and 1 more bad lines"
    assert [line.split(":", 1)[0] for line in listed[:50]] == [str(n) for n in range(2, 52)]


def test_a_deeply_nested_line_or_header_is_one_bad_line() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert check({"kind": "usage", "requests": "x"}, header=HEADER)  # the helper works; now raw text:
    with MemoryStore() as store, pytest.raises(StateImportError) as exc:
        import_lines(store, [json.dumps(HEADER), deep, json.dumps(GOOD["cursor"])], "f", ["claude"], NOW)
    assert str(exc.value) == "f:2: nested too deeply"
    with MemoryStore() as store, pytest.raises(StateImportError) as exc:
        import_lines(store, [deep], "f", ["claude"], NOW)
    assert str(exc.value) == "f:1: nested too deeply"
    deep_value = json.dumps({**GOOD["usage"], "model": "M"}).replace('"M"', "[" * 900 + "]" * 900)
    with MemoryStore() as store, pytest.raises(StateImportError) as exc:
        import_lines(store, [json.dumps(HEADER), deep_value], "f", ["claude"], NOW)
    assert str(exc.value).startswith("f:2: ")
