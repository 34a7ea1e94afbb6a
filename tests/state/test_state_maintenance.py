"""`adws state export|import|compact`: moving one host's SQLite state into Redis, and keeping stores bounded."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws.attempt import Usage
from adws.cli import main
from adws.config.load import compile_config, parse_toml
from adws.decision import Decision
from adws.engine import Engine
from adws.state import (
    STORES,
    BreakerState,
    Cooldown,
    MemoryStore,
    RedisStore,
    SqliteStore,
    StateStore,
    UsageRecord,
    base,
    redis_store,
)
from adws.state.base import Observation
from adws.state.maintenance import export_lines, import_lines, retention_cutoff
from tests.helpers import ROOT, Clock
from tests.state.test_state import open_backend
from tests.test_spend_routing import BASE, TASK

NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)

CONFIG = """
[routing]
chain = ["claude"]
[providers.claude]
command_template = ["claude", "-p"]
prompt = "stdin"
[providers.claude.quota]
tokens = 1000
window = "5h"
[[providers.claude.accounts]]
name = "a"
[[providers.claude.accounts]]
name = "b"
[providers.claude.accounts.quota]
tokens = 10
reset = "0 0 * * 0"
"""


def write_config(tmp_path: Path, state: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG + state)
    return path


def fill(store: StateStore, now: datetime) -> None:
    store.record_usage(UsageRecord("claude", "a", now - timedelta(hours=1), Usage(input_tokens=5, cost_usd=0.5),
                                   "sonnet", "issue-7"))
    store.record_usage(UsageRecord("claude", "b", now, Usage(output_tokens=3, estimated=True)))
    store.set_cooldown("claude", "a", Cooldown(now + timedelta(hours=2), "rate_limited"))
    store.set_cooldown("claude", "b", Cooldown(now - timedelta(hours=2), "over"))  # ended: not exported
    for _ in range(3):
        store.next_cursor("round_robin:claude")
    store.set_sticky("sticky:claude:7", "b")
    store.update_breaker("claude", lambda s: BreakerState("open", 3, now))
    store.record_observation(Observation("claude", "a", now - timedelta(minutes=5), 100.0,
                                         "claude output (five_hour)", reset_at=now + timedelta(hours=1)))
    store.record_observation(Observation("claude", "b", now - timedelta(hours=1), 12.5, "usage_command", 1.25, 10.0))
    for minutes, tokens in ((30, 1200), (20, 800)):
        store.record_run("claude", "general", now - timedelta(minutes=minutes), tokens)


def test_sqlite_state_moves_into_redis(
    tmp_path: Path, redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    monkeypatch.delenv("ADWS_STATE_URL", raising=False)
    # The wall clock's time: Redis lets a cooldown key expire when the cooldown ends by the wall clock.
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    (tmp_path / "old").mkdir()
    source = write_config(tmp_path / "old", '[state]\npath = "state.sqlite3"\n')
    with SqliteStore(str(tmp_path / "old" / "state.sqlite3")) as old:
        fill(old, now)
    dump = tmp_path / "state.jsonl"
    at = ["--at", now.isoformat()]
    capsys.readouterr()
    assert main(["state", "export", str(dump), "--config", str(source), *at]) == 0
    # Said as the import says it (a silent export left a person unsure it had done anything).
    assert capsys.readouterr().err == (f"exported 2 usage, 1 cooldown, 1 cursor, 1 sticky, 1 breaker, 2 observation, "
                                       f"2 run from {tmp_path / 'old' / 'state.sqlite3'} to {dump}\n")
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["adws-state", "usage", "usage", "cooldown", "cursor", "sticky",
                                                "breaker", "observation", "observation", "run", "run"]
    assert lines[1] == {"kind": "usage", "provider": "claude", "account": "a",
                        "at": (now - timedelta(hours=1)).isoformat(),
                        "requests": 1, "input_tokens": 5, "output_tokens": 0, "cost_usd": 0.5, "estimated": False,
                        "model": "sonnet", "task_id": "issue-7"}
    assert lines[7] == {"kind": "observation", "provider": "claude", "subject": "a",
                        "at": (now - timedelta(minutes=5)).isoformat(), "percent": 100.0,
                        "source": "claude output (five_hour)", "used": None, "limit": None,
                        "reset_at": (now + timedelta(hours=1)).isoformat()}
    assert lines[9] == {"kind": "run", "provider": "claude", "specialization": "general",
                        "at": (now - timedelta(minutes=30)).isoformat(), "tokens": 1200}

    (tmp_path / "new").mkdir()
    target = write_config(tmp_path / "new", f'[state]\nbackend = "redis"\nurl = "{redis_url}"\n'
                                            f'key_prefix = "{redis_prefix}"\n')
    capsys.readouterr()
    assert main(["state", "import", str(dump), "--config", str(target)]) == 0
    assert capsys.readouterr().err == (f"imported 2 usage, 1 cooldown, 1 cursor, 1 sticky, 1 breaker, "
                                       f"2 observation, 2 run into {redis_url}\n")
    # A second import of the same file adds no usage and no run (the rest is overwritten with the same values).
    assert main(["state", "import", str(dump), "--config", str(target)]) == 0
    assert capsys.readouterr().err == (f"imported 0 usage, 1 cooldown, 1 cursor, 1 sticky, 1 breaker, "
                                       f"2 observation, 0 run into {redis_url}; 2 usage rows and 2 runs were "
                                       "already there (not added again)\n")
    with RedisStore(redis_url, key_prefix=redis_prefix) as new, \
            SqliteStore(str(tmp_path / "old" / "state.sqlite3")) as old:
        assert list(new.usage_records()) == list(old.usage_records())
        assert new.cooldowns(now) == old.cooldowns(now)
        assert new.cursors() == old.cursors() == {"round_robin:claude": 3}
        assert new.sticky_choices() == old.sticky_choices()
        assert new.breakers() == old.breakers()
        assert new.observations() == old.observations()
        assert list(new.recorded_runs()) == list(old.recorded_runs())
        assert new.recent_runs("claude", "general", 5) == [800, 1200]
    # The round trip is exact: exporting the Redis store gives the same lines.
    assert main(["state", "export", "--config", str(target), *at]) == 0
    out, err = capsys.readouterr()
    assert out == dump.read_text()  # the counts go to stderr: an export on stdout stays a clean file
    assert err.startswith("exported 2 usage, ") and err.endswith(" to <stdout>\n")


def test_import_refuses_a_bad_file_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    config = write_config(tmp_path, "")
    dump = tmp_path / "bad.jsonl"
    header = '{"kind": "adws-state", "version": 1}\n'
    good = '{"kind": "sticky", "key": "k", "value": "v"}\n'
    cases = {
        good: f"{dump}:1: expected the header {{\"kind\": \"adws-state\", \"version\": 1}} (a file written by adws "
              "state export)",
        header + good + '{"kind": "usage", "provider": "p"}\n': f"{dump}:3: missing field 'requests'",
        header + '{"kind": "lease"}\n': f"{dump}:2: unknown kind 'lease'; known: usage, cooldown, cursor, sticky, "
                                        "breaker, observation, run",
        header + '{"kind": "cooldown", "provider": "p", "account": "a", "until": "2026-01-01T00:00", "reason": "x"}\n':
            f"{dump}:2: until '2026-01-01T00:00' has no timezone",
        header + "[1]\n": f"{dump}:2: expected a JSON object",
        header + '{"kind": ["run"]}\n': f"{dump}:2: unknown kind ['run']; known: usage, cooldown, cursor, sticky, "
                                       "breaker, observation, run",
        "": f"{dump}: empty, not a file written by adws state export",
    }
    for text, message in cases.items():
        dump.write_text(text)
        assert main(["state", "import", str(dump), "--config", str(config)]) == 2
        assert capsys.readouterr().err == f"adws: {message}\n"
    with SqliteStore(str(tmp_path / ".adws" / "state.sqlite3")) as store:
        assert store.sticky_choices() == {}  # the good line before the bad one was not applied
    assert main(["state", "import", str(tmp_path / "missing.jsonl"), "--config", str(config)]) == 2
    assert capsys.readouterr().err == f"adws: cannot read {tmp_path / 'missing.jsonl'}: No such file or directory\n"


def test_import_lists_every_bad_line_and_checks_values(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    config = write_config(tmp_path, "")
    dump = tmp_path / "bad.jsonl"
    row = {"kind": "usage", "provider": "claude", "account": "a", "at": "2026-11-18T12:00:00+00:00", "requests": 1,
           "input_tokens": 5, "output_tokens": 3, "cost_usd": 0.5, "estimated": False, "model": None,
           "task_id": None}
    bad = [{"provider": "claud"}, {"input_tokens": -5}, {"at": "yesterday"}, {"requests": True},
           {"cost_usd": -0.1}, {"estimated": "no"}, {"output_tokens": 2.5}, {"account": ""}]
    lines = ['{"kind": "adws-state", "version": 1}', json.dumps(row), "not json",
             *(json.dumps({**row, **change}) for change in bad),
             '{"kind": "cooldown", "provider": "nope", "account": "a", "until": "2026-11-18T14:00:00+00:00", '
             '"reason": "x"}',
             '{"kind": "breaker", "provider": "claude", "state": "ajar", "failures": 1, "opened_at": null}',
             '{"kind": "cursor", "key": "k", "value": -1}']
    dump.write_text("\n".join(lines) + "\n")
    assert main(["state", "import", str(dump), "--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"adws: {dump}: 12 bad lines, nothing imported:",
        f"{dump}:3: not JSON (Expecting value at column 1)",
        f'{dump}:4: unknown provider "claud" (did you mean "claude"?); the config\'s providers: claude (add it to '
        "the config, or drop its lines)",
        f"{dump}:5: input_tokens: expected a whole number >= 0, got -5",
        f"{dump}:6: at: expected an ISO 8601 time, got 'yesterday'",
        f"{dump}:7: requests: expected a whole number >= 0, got True",
        f"{dump}:8: cost_usd: expected a number >= 0, got -0.1",
        f"{dump}:9: estimated: expected true or false, got 'no'",
        f"{dump}:10: output_tokens: expected a whole number >= 0, got 2.5",
        f"{dump}:11: account: expected a non-empty string, got ''",
        f'{dump}:12: unknown provider "nope"; the config\'s providers: claude (add it to the config, or drop its '
        "lines)",
        f"{dump}:13: state: expected one of closed, open, half_open, got 'ajar'",
        f"{dump}:14: value: expected a whole number >= 0, got -1",
    ]
    with SqliteStore(str(tmp_path / ".adws" / "state.sqlite3")) as store:
        assert list(store.usage_records()) == []  # the good line 2 was not applied either


def test_import_checks_observation_and_run_lines_as_strictly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    config = write_config(tmp_path, "")
    dump = tmp_path / "bad.jsonl"
    observation = {"kind": "observation", "provider": "claude", "subject": "a/claude",
                   "at": "2026-11-18T12:00:00+00:00", "percent": 100.0, "source": "usage_command", "used": 10.0,
                   "limit": 10.0, "reset_at": "2026-11-18T14:00:00+00:00"}
    run = {"kind": "run", "provider": "claude", "specialization": "general", "at": "2026-11-18T12:00:00+00:00",
           "tokens": 1200}
    usage = {"kind": "usage", "provider": "claude", "account": "a", "at": "2026-11-18T12:00:00+00:00", "requests": 1,
             "input_tokens": 5, "output_tokens": 3, "cost_usd": 0.5, "estimated": False}
    bad = [
        (observation, {"provider": "claud"}), (observation, {"provider": 7}), (observation, {"subject": ""}),
        (observation, {"at": "2026-11-18T12:00:00"}), (observation, {"percent": -1}),
        (observation, {"percent": "95"}), (observation, {"percent": math.inf}), (observation, {"source": None}),
        (observation, {"used": -0.5}), (observation, {"limit": 0}), (observation, {"reset_at": 1763474400}),
        (observation, {"used": True}),
        (run, {"provider": "nope"}), (run, {"provider": ["claude"]}), (run, {"specialization": 3}),
        (run, {"at": "2026-11-18"}), (run, {"tokens": -1}), (run, {"tokens": 1.5}), (run, {"tokens": True}),
        (run, {"tokens": 2**63}), (run, {"tokens": None}),
        # Numbers past what a float or SQLite holds: a line error, not a traceback or a half-done import.
        (usage, {"cost_usd": 10**400}), (usage, {"input_tokens": 2**64}),
    ]
    lines = ['{"kind": "adws-state", "version": 1}', json.dumps(observation), json.dumps(run),
             *(json.dumps({**line, **change}) for line, change in bad),
             json.dumps({k: v for k, v in run.items() if k != "at"})]
    dump.write_text("\n".join(lines) + "\n")
    assert main(["state", "import", str(dump), "--config", str(config)]) == 2
    unknown = "; the config's providers: claude (add it to the config, or drop its lines)"
    assert capsys.readouterr().err.splitlines() == [
        f"adws: {dump}: 24 bad lines, nothing imported:",
        f'{dump}:4: unknown provider "claud" (did you mean "claude"?){unknown}',
        f"{dump}:5: provider: expected a non-empty string, got 7",
        f"{dump}:6: subject: expected a non-empty string, got ''",
        f"{dump}:7: at '2026-11-18T12:00:00' has no timezone",
        f"{dump}:8: percent: expected a number >= 0, got -1",
        f"{dump}:9: percent: expected a number >= 0, got '95'",
        f"{dump}:10: percent: expected a number >= 0, got inf",
        f"{dump}:11: source: expected a non-empty string, got None",
        f"{dump}:12: used: expected a number >= 0, got -0.5",
        f"{dump}:13: limit: expected a number > 0, got 0",
        f"{dump}:14: reset_at: expected an ISO 8601 time, got 1763474400",
        f"{dump}:15: used: expected a number >= 0, got True",
        f'{dump}:16: unknown provider "nope"{unknown}',
        f"{dump}:17: provider: expected a non-empty string, got ['claude']",
        f"{dump}:18: specialization: expected a non-empty string, got 3",
        f"{dump}:19: at '2026-11-18' has no timezone",
        f"{dump}:20: tokens: expected a whole number >= 0, got -1",
        f"{dump}:21: tokens: expected a whole number >= 0, got 1.5",
        f"{dump}:22: tokens: expected a whole number >= 0, got True",
        f"{dump}:23: tokens: 9223372036854775808 is too large (at most 1,000,000,000,000)",
        f"{dump}:24: tokens: expected a whole number >= 0, got None",
        f"{dump}:25: cost_usd: expected a number >= 0, got {'1' + '0' * 59}... (401 characters)",
        f"{dump}:26: input_tokens: 18446744073709551616 is too large (at most 1,000,000,000,000)",
        f"{dump}:27: missing field 'at'",
    ]
    with SqliteStore(str(tmp_path / ".adws" / "state.sqlite3")) as store:
        assert store.observations() == {} and list(store.recorded_runs()) == []  # the good lines 2, 3 neither


def test_importing_the_same_file_twice_adds_its_usage_and_runs_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    (tmp_path / "old").mkdir()
    source = write_config(tmp_path / "old", "")
    at = NOW.replace(microsecond=123457)
    with SqliteStore(str(tmp_path / "old" / ".adws" / "state.sqlite3")) as old:
        fill(old, at)
        # Two identical attempts (or runs) in one microsecond are two rows, and stay two.
        for _ in range(2):
            old.record_usage(UsageRecord("claude", "a", at, Usage(input_tokens=7)))
            old.record_run("claude", "general", at, 500)
    dump = tmp_path / "state.jsonl"
    assert main(["state", "export", str(dump), "--config", str(source), "--at", NOW.isoformat()]) == 0
    assert capsys.readouterr().err.startswith("exported 4 usage, ")
    target = write_config(tmp_path, "")
    path = tmp_path / ".adws" / "state.sqlite3"
    assert main(["state", "import", str(dump), "--config", str(target)]) == 0
    assert capsys.readouterr().err == (f"imported 4 usage, 1 cooldown, 1 cursor, 1 sticky, 1 breaker, 2 observation, "
                                       f"4 run into {path}\n")
    assert main(["state", "import", str(dump), "--config", str(target)]) == 0
    assert capsys.readouterr().err == (f"imported 0 usage, 1 cooldown, 1 cursor, 1 sticky, 1 breaker, 2 observation, "
                                       f"0 run into {path}; 4 usage rows and 4 runs were already there (not added "
                                       "again)\n")
    with SqliteStore(str(path)) as new, SqliteStore(str(tmp_path / "old" / ".adws" / "state.sqlite3")) as old:
        assert list(new.usage_records()) == list(old.usage_records())
        assert list(new.recorded_runs()) == list(old.recorded_runs())
        assert new.recent_runs("claude", "general", 10) == [500, 500, 800, 1200]  # the median learned is the same
        assert new.observations() == old.observations()
    # A file with one more row and one more run adds those only.
    lines = dump.read_text().splitlines()
    extra = dict(json.loads(lines[1]), at=(at + timedelta(seconds=1)).isoformat())
    run = dict(json.loads(lines[-1]), at=(at + timedelta(seconds=1)).isoformat())
    dump.write_text(dump.read_text() + json.dumps(extra) + "\n" + json.dumps(run) + "\n")
    assert main(["state", "import", str(dump), "--config", str(target)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("imported 1 usage, ") and ", 1 run into " in err


def test_import_into_redis_says_how_many_runs_its_cap_did_not_keep(
    tmp_path: Path, redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADWS_STATE_URL", raising=False)
    monkeypatch.setattr(base, "RUNS_KEPT", 3)
    monkeypatch.setattr(redis_store, "IMPORT_BATCH", 2)
    dump = tmp_path / "state.jsonl"
    runs = [{"kind": "run", "provider": "claude", "specialization": "general",
             "at": (NOW - timedelta(minutes=minutes)).isoformat(), "tokens": minutes} for minutes in range(5)]
    dump.write_text('{"kind": "adws-state", "version": 1}\n' + "".join(json.dumps(run) + "\n" for run in runs))
    config = write_config(tmp_path, f'[state]\nbackend = "redis"\nurl = "{redis_url}"\nkey_prefix = "{redis_prefix}"\n')
    nothing_else = "imported 0 usage, 0 cooldown, 0 cursor, 0 sticky, 0 breaker, 0 observation"
    not_kept = ("2 runs were not kept (2 of the file's: the store keeps only the newest runs of each provider and "
                "specialization)")
    assert main(["state", "import", str(dump), "--config", str(config)]) == 0
    assert capsys.readouterr().err == f"{nothing_else}, 3 run into {redis_url}; {not_kept}\n"
    assert main(["state", "import", str(dump), "--config", str(config)]) == 0
    assert capsys.readouterr().err == (f"{nothing_else}, 0 run into {redis_url}; 3 runs were already there (not "
                                       f"added again); {not_kept}\n")
    with RedisStore(redis_url, key_prefix=redis_prefix) as store:
        assert store.recent_runs("claude", "general", 10) == [0, 1, 2]  # the newest three


def test_import_keeps_the_newest_observation_of_each_subject() -> None:
    def dump(*observations: Observation) -> list[str]:
        with MemoryStore() as source:
            for observation in observations:
                source.record_observation(observation)
            return list(export_lines(source, NOW))

    older = Observation("claude", "a", NOW - timedelta(hours=2), 100.0, "claude output (five_hour)",
                        reset_at=NOW + timedelta(hours=1))
    newer = Observation("claude", "a", NOW - timedelta(minutes=1), 40.0, "usage_command", 4.0, 10.0)
    with MemoryStore() as store:
        store.record_observation(newer)
        counts = import_lines(store, dump(older), "old.jsonl", ["claude"])
        assert (counts["observation"], counts["older observation"]) == (0, 1)  # what was kept, not lines read
        assert store.observations() == {("claude", "a"): newer}  # the store's own reading is the later one
        latest = replace(newer, at=NOW, percent=55.0)
        import_lines(store, dump(latest), "new.jsonl", ["claude"])
        assert store.observations() == {("claude", "a"): latest}
        import_lines(store, dump(latest), "new.jsonl", ["claude"])  # again: nothing changes
        assert store.observations() == {("claude", "a"): latest}


def test_an_export_from_before_observations_and_runs_still_imports() -> None:
    # adws wrote format version 1 without these two kinds: such a file imports as it did, carrying neither.
    lines = ['{"kind": "adws-state", "version": 1, "exported_at": "2026-11-18T13:00:00+00:00"}',
             '{"kind": "sticky", "key": "sticky:claude:7", "value": "b"}',
             '{"kind": "breaker", "provider": "claude", "state": "closed", "failures": 0, "opened_at": null}']
    with MemoryStore() as store:
        counts = import_lines(store, lines, "old.jsonl", ["claude"])
        assert (counts["sticky"], counts["breaker"], counts["observation"], counts["run"]) == (1, 1, 0, 0)
        assert store.observations() == {} and list(store.recorded_runs()) == []


LEARNING = "need = { tokens = 30000, learned_runs = 5, min_runs = 3 }"


def learning_engine(tmp_path: Path, store: StateStore) -> Engine:
    """An engine over `store` whose need for a general task is learned from the last 5 runs (test_spend_routing's
    config: provider ag, accounts a1 and a2, weekly pools of 100,000 tokens)."""
    text = BASE.replace("STRATEGY", "least_used").replace("EXTRA", LEARNING).replace("RUNS", str(tmp_path / "runs"))
    return Engine(compile_config(parse_toml(text), base_dir=str(tmp_path)), store=store, clock=Clock(NOW),
                  environ={"PATH": "/bin"}, which=lambda name: "/bin/" + name)


def seen_by_routing(decision: Decision) -> tuple[object, ...]:
    need = decision.plan[0].need
    return (decision.provider, decision.account, need.describe() if need else None,
            [(s.provider, s.account, s.reason) for s in decision.skipped])


@pytest.mark.parametrize(("source", "target"), [(a, b) for a in sorted(STORES) for b in sorted(STORES) if a != b])
def test_learned_needs_and_observed_exhaustion_survive_a_move_between_backends(
    source: str, target: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    (tmp_path / source).mkdir()
    (tmp_path / target).mkdir()
    old, new = open_backend(source, request, tmp_path / source), open_backend(target, request, tmp_path / target)
    with old, new:
        for hours, tokens in ((3, 12_000), (2, 18_000), (1, 40_000)):
            old.record_run("ag", "general", NOW - timedelta(hours=hours), tokens)
        old.record_run("ag", "code", NOW - timedelta(hours=1), 99)
        # Claude Code said a1's week is used up until Friday; a usage command read a2 at 20 %.
        old.record_observation(Observation("ag", "a1/claude", NOW - timedelta(minutes=10), 100.0,
                                           "ag output (seven_day)", reset_at=NOW + timedelta(days=2)))
        old.record_observation(Observation("ag", "a2/claude", NOW - timedelta(hours=1), 20.0, "usage_command",
                                           20_000.0, 100_000.0, NOW + timedelta(days=4)))
        before = seen_by_routing(learning_engine(tmp_path / source, old).route(TASK, now=NOW))
        assert before == ("ag", "a2", "~18,000 expected (median of 3 general runs)", [
            ("ag", "a1", "quota (claude pool) 100% used (hard block at 100%) [ledger 0.0%, observed 100.0% "
                         "(ag output (seven_day) 10m ago): observed counts]")])

        counts = import_lines(new, export_lines(old, NOW), "state.jsonl", ["ag", "cheap", "free"])
        assert (counts["observation"], counts["run"]) == (2, 4)
        assert seen_by_routing(learning_engine(tmp_path / target, new).route(TASK, now=NOW)) == before
        assert new.observations() == old.observations()
        assert list(new.recorded_runs()) == list(old.recorded_runs())


def test_export_without_a_store_says_so_and_creates_none(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    config = write_config(tmp_path, "")
    assert main(["state", "export", "--config", str(config)]) == 2
    path = tmp_path / ".adws" / "state.sqlite3"
    assert capsys.readouterr().err == f"adws: no state store at {path} yet: nothing to export\n"
    assert not path.exists()


def test_compact_without_a_store_has_nothing_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    config = write_config(tmp_path, "")
    path = tmp_path / ".adws" / "state.sqlite3"
    assert main(["state", "compact", "--config", str(config)]) == 0  # a fresh deployment: nothing to roll up
    assert capsys.readouterr().err == f"adws: no state store at {path} yet: nothing to compact\n"
    assert not path.exists()


def test_export_into_a_closed_pipe_ends_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `adws state export | head -1`: the reader leaves after one line; no "cannot write" message.
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    config = write_config(tmp_path, "")
    with SqliteStore(str(tmp_path / ".adws" / "state.sqlite3")) as store:
        for n in range(5000):
            store.record_usage(UsageRecord("claude", "a", NOW - timedelta(seconds=n), Usage(input_tokens=n)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADWS_")}
    done = subprocess.run(f"{shlex.quote(sys.executable)} -m adws state export --config {shlex.quote(str(config))}"
                          " | head -1", shell=True, capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(done.stdout)["kind"] == "adws-state"
    assert done.stderr == ""


_FSIZE_EXPORT = """
import resource, sys
from adws.cli import main
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
sys.exit(main(sys.argv[1:]))
"""


def test_an_export_that_cannot_be_written_whole_leaves_no_file(tmp_path: Path) -> None:
    # A file size limit (the kernel's EFBIG after a partial write), as a full disk: the old file stays as it was,
    # and no short file (nor a temporary one) is left for an import to take as the whole state.
    config = write_config(tmp_path, "")
    with SqliteStore(str(tmp_path / ".adws" / "state.sqlite3")) as store:
        for n in range(5000):  # about 1 MB of JSON Lines
            store.record_usage(UsageRecord("claude", "a", NOW - timedelta(seconds=n), Usage(input_tokens=n)))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ADWS_")}, "PYTHONPATH": str(ROOT)}
    dump = tmp_path / "out" / "state.jsonl"
    dump.parent.mkdir()
    for before in (None, "the previous export\n"):
        if before is not None:
            dump.write_text(before)
        done = subprocess.run([sys.executable, "-c", _FSIZE_EXPORT, "state", "export", str(dump), "--config",
                               str(config)], capture_output=True, text=True, env=env, timeout=120, check=False)
        assert (done.returncode, done.stderr) == (2, f"adws: cannot write {dump}: File too large\n")
        assert [p.name for p in dump.parent.iterdir()] == ([] if before is None else [dump.name])
        assert before is None or dump.read_text() == before


def test_export_writes_a_private_file_and_takes_file_and_options_in_any_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    config = str(write_config(tmp_path, ""))
    with SqliteStore(str(tmp_path / ".adws" / "state.sqlite3")) as store:
        fill(store, NOW)
    at = NOW.isoformat()
    orders = [["state", "export", "--config", config, "a.jsonl"], ["state", "export", "b.jsonl", "--config", config],
              ["state", "--config", config, "export", "--at", at, "c.jsonl"],
              ["state", "export", "--at", at, "--config", config, "d.jsonl"]]
    monkeypatch.chdir(tmp_path)
    for argv in orders:
        assert main(argv) == 0, capsys.readouterr().err
        written = tmp_path / next(arg for arg in argv if arg.endswith(".jsonl"))
        assert written.stat().st_mode & 0o777 == 0o600
        assert json.loads(written.read_text().splitlines()[0])["kind"] == "adws-state"
    with pytest.raises(SystemExit):  # a second FILE, an unknown option: still refused
        main(["state", "export", "--config", config, "e.jsonl", "f.jsonl"])
    assert "unrecognized arguments: e.jsonl f.jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["state", "export", "--config", config, "--bogus", "e.jsonl"])
    assert "unrecognized arguments: --bogus e.jsonl" in capsys.readouterr().err
    assert main(["state", "export", "--config", config, os.devnull]) == 0  # not a regular file: written, not replaced
    assert Path(os.devnull).is_char_device()
    assert main(["state", "compact", "--config", config, "g.jsonl"]) == 2  # what compact does not read: refused
    assert "state compact takes no FILE" in capsys.readouterr().err


def test_compact_rolls_up_what_no_quota_period_reaches(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    config = write_config(tmp_path, "")
    path = tmp_path / ".adws" / "state.sqlite3"
    # The longest period in effect on Wednesday 2026-11-18 13:00 is account b's week, from Sunday 00:00.
    sunday = datetime(2026, 11, 15, tzinfo=UTC)
    with SqliteStore(str(path)) as store:
        for days in (1, 2, 3):  # before the week, minus the margin of one day: rolled up
            for minutes in (0, 1):
                store.record_usage(UsageRecord("claude", "b", sunday - timedelta(days=days, minutes=-minutes),
                                               Usage(input_tokens=1)))
        store.record_usage(UsageRecord("claude", "b", sunday - timedelta(hours=1), Usage(input_tokens=1)))
        store.record_usage(UsageRecord("claude", "b", sunday - timedelta(minutes=59), Usage(input_tokens=1)))
    assert main(["state", "compact", "--config", str(config), "--margin", "1d", "--at", NOW.isoformat()]) == 0
    cutoff = sunday - timedelta(days=1)
    # A time for a person: to the minute in the routing timezone (UTC here), as every view shows times.
    assert capsys.readouterr().err == f"rolled up 2 usage rows older than {cutoff:%Y-%m-%d %H:%M} UTC in {path}\n"
    with SqliteStore(str(path)) as store:
        assert len(list(store.usage_records())) == 6
    assert main(["state", "compact", "--config", str(config), "--margin", "soon"]) == 2
    assert capsys.readouterr().err.startswith('adws: --margin: invalid window "soon"')


def test_retention_cutoff_is_the_oldest_period_start_minus_the_margin() -> None:
    starts = [NOW - timedelta(hours=5), NOW - timedelta(days=3)]
    assert retention_cutoff(starts, NOW, timedelta(days=7)) == NOW - timedelta(days=10)
    assert retention_cutoff([], NOW, timedelta(days=7)) == NOW - timedelta(days=7)
