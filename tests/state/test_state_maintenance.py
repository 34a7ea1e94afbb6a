"""`adws state export|import|compact`: moving one host's SQLite state into Redis, and keeping stores bounded."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws.attempt import Usage
from adws.cli import main
from adws.state import BreakerState, Cooldown, RedisStore, SqliteStore, UsageRecord
from adws.state.maintenance import retention_cutoff

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


def fill(store: SqliteStore, now: datetime) -> None:
    store.record_usage(UsageRecord("claude", "a", now - timedelta(hours=1), Usage(input_tokens=5, cost_usd=0.5),
                                   "sonnet", "issue-7"))
    store.record_usage(UsageRecord("claude", "b", now, Usage(output_tokens=3, estimated=True)))
    store.set_cooldown("claude", "a", Cooldown(now + timedelta(hours=2), "rate_limited"))
    store.set_cooldown("claude", "b", Cooldown(now - timedelta(hours=2), "over"))  # ended: not exported
    for _ in range(3):
        store.next_cursor("round_robin:claude")
    store.set_sticky("sticky:claude:7", "b")
    store.update_breaker("claude", lambda s: BreakerState("open", 3, now))


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
    assert main(["state", "export", str(dump), "--config", str(source), *at]) == 0
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["adws-state", "usage", "usage", "cooldown", "cursor", "sticky",
                                                "breaker"]
    assert lines[1] == {"kind": "usage", "provider": "claude", "account": "a",
                        "at": (now - timedelta(hours=1)).isoformat(),
                        "requests": 1, "input_tokens": 5, "output_tokens": 0, "cost_usd": 0.5, "estimated": False,
                        "model": "sonnet", "task_id": "issue-7"}

    (tmp_path / "new").mkdir()
    target = write_config(tmp_path / "new", f'[state]\nbackend = "redis"\nurl = "{redis_url}"\n'
                                            f'key_prefix = "{redis_prefix}"\n')
    capsys.readouterr()
    assert main(["state", "import", str(dump), "--config", str(target)]) == 0
    assert capsys.readouterr().err == (f"imported 2 usage, 1 cooldown, 1 cursor, 1 sticky, 1 breaker into "
                                       f"{redis_url}\n")
    # A second import of the same file adds no usage (the rest is overwritten with the same values).
    assert main(["state", "import", str(dump), "--config", str(target)]) == 0
    assert capsys.readouterr().err == (f"imported 0 usage, 1 cooldown, 1 cursor, 1 sticky, 1 breaker into "
                                       f"{redis_url}; 2 usage rows were already there (not added again)\n")
    with RedisStore(redis_url, key_prefix=redis_prefix) as new, \
            SqliteStore(str(tmp_path / "old" / "state.sqlite3")) as old:
        assert list(new.usage_records()) == list(old.usage_records())
        assert new.cooldowns(now) == old.cooldowns(now)
        assert new.cursors() == old.cursors() == {"round_robin:claude": 3}
        assert new.sticky_choices() == old.sticky_choices()
        assert new.breakers() == old.breakers()
    # The round trip is exact: exporting the Redis store gives the same lines.
    assert main(["state", "export", "--config", str(target), *at]) == 0
    assert capsys.readouterr().out == dump.read_text()


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
                                        "breaker",
        header + '{"kind": "cooldown", "provider": "p", "account": "a", "until": "2026-01-01T00:00", "reason": "x"}\n':
            f"{dump}:2: until '2026-01-01T00:00' has no timezone",
        header + "[1]\n": f"{dump}:2: expected a JSON object",
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


def test_importing_the_same_file_twice_adds_its_usage_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    (tmp_path / "old").mkdir()
    source = write_config(tmp_path / "old", "")
    at = NOW.replace(microsecond=123457)
    with SqliteStore(str(tmp_path / "old" / ".adws" / "state.sqlite3")) as old:
        fill(old, at)
        # Two identical attempts in one microsecond are two rows, and stay two.
        for _ in range(2):
            old.record_usage(UsageRecord("claude", "a", at, Usage(input_tokens=7)))
    dump = tmp_path / "state.jsonl"
    assert main(["state", "export", str(dump), "--config", str(source), "--at", NOW.isoformat()]) == 0
    target = write_config(tmp_path, "")
    assert main(["state", "import", str(dump), "--config", str(target)]) == 0
    assert capsys.readouterr().err.startswith("imported 4 usage, ")
    assert main(["state", "import", str(dump), "--config", str(target)]) == 0
    assert capsys.readouterr().err.endswith("; 4 usage rows were already there (not added again)\n")
    with SqliteStore(str(tmp_path / ".adws" / "state.sqlite3")) as new, \
            SqliteStore(str(tmp_path / "old" / ".adws" / "state.sqlite3")) as old:
        assert list(new.usage_records()) == list(old.usage_records())
    # A file with one more row adds that row only.
    extra = dict(json.loads(dump.read_text().splitlines()[1]), at=(at + timedelta(seconds=1)).isoformat())
    dump.write_text(dump.read_text() + json.dumps(extra) + "\n")
    assert main(["state", "import", str(dump), "--config", str(target)]) == 0
    assert capsys.readouterr().err.startswith("imported 1 usage, ")


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
