"""Issue 9: damaged or foreign state files give one line saying what is wrong and what to do, on every command,
never a raw sqlite3 traceback. Hand-made cases first, then a fuzz over many corrupted copies of a real store."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws.attempt import Usage
from adws.cli import main
from adws.state import SqliteStore, StateStoreError
from adws.state.base import Cooldown, Observation, UsageRecord
from adws.state.sqlite import SCHEMA_VERSION
from tests.hostile import SECRETS, config_text

NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
ADVICE = "move the file aside (adws starts a new one) or point [state] path / ADWS_STATE_PATH at another file"


def _good_store(path: Path) -> None:
    with SqliteStore(str(path)) as store:
        for i in range(200):  # enough rows for several pages, so corruption lands inside data and indexes
            store.record_usage(UsageRecord("h", "a", NOW - timedelta(minutes=i), Usage(1, 100 + i, 50), "m", f"t{i}"))
        store.set_cooldown("h", "b", Cooldown(NOW + timedelta(hours=1), "rate_limited"))
        store.update_breaker("h", lambda state: state)
        store.next_cursor("rr:h")
        store.set_sticky("sticky:h:t", "a")
        store.acquire_slot("h", "x", 2, NOW, NOW + timedelta(minutes=5))
        store.reserve("h", "a", "x", 1_000, NOW, NOW + timedelta(minutes=5))
        store.record_observation(Observation("h", "a", NOW, 40.0, "test"))
        store.record_run("h", "general", NOW, 1_000)
    # Fold the WAL into the main file, so the bytes we damage are the whole database.
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode = DELETE")


def _exercise(path: Path) -> None:
    """Everything commands do with a store: opening, each read and each write."""
    with SqliteStore(str(path)) as store:
        store.usage_totals({"h": NOW - timedelta(days=1)})
        store.oldest_usage("h", "a", NOW - timedelta(days=1))
        store.cooldowns(NOW)
        store.peek_cursor("rr:h")
        store.get_sticky("sticky:h:t")
        store.get_breaker("h")
        store.breakers()
        store.active_slots(NOW)
        store.version()
        store.record_usage(UsageRecord("h", "a", NOW, Usage(1, 1, 1)))
        store.next_cursor("rr:h")
        store.update_breaker("h", lambda state: state)
        store.acquire_slot("h", "y", 2, NOW, NOW + timedelta(minutes=1))
        store.release_slot("h", "y")
        store.reservations(NOW)
        store.observations()
        store.recent_runs("h", "general", 5)
        list(store.recorded_runs())  # what adws state export reads


def _sql(statements: list[str]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        _good_store(path)
        with sqlite3.connect(path) as db:
            for statement in statements:
                db.execute(statement)
    return damage


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "not a database": (_bytes(b"hello, I am a text file\n" * 100), "file is not a database"),
    "a directory": (lambda path: path.mkdir(), "cannot be opened (a directory"),
    "newer adws": (_sql([f"PRAGMA user_version = {SCHEMA_VERSION + 1}"]), "upgrade adws"),
    "right version, missing table": (_sql(["DROP TABLE breakers"]), "table breakers is missing"),
    "right version, wrong columns": (_sql(["ALTER TABLE sticky RENAME COLUMN value TO val"]),
                                     "table sticky has columns key, val; expected key, value"),
    "right version, extra column": (_sql(["ALTER TABLE cursors ADD COLUMN x"]), "table cursors has columns"),
    "another program's database": (_sql(["PRAGMA user_version = 0", "CREATE TABLE accounts (x)"]),
                                   "a database of another program"),
    "negative version": (_sql(["PRAGMA user_version = -3"]), "schema version -3"),
    "wrong value types": (_sql(["UPDATE breakers SET state = 'melted'"]), "holds a value this adws cannot read"),
    "text where numbers go": (_sql(["UPDATE usage SET at = 'yesterday'"]), "holds a value this adws cannot read"),
    "text in a reservation": (_sql(["UPDATE reservations SET tokens = 'many'"]), "holds a value this adws cannot read"),
    "text in an observation": (_sql(["UPDATE observations SET at = 'noon'"]), "holds a value this adws cannot read"),
    "text in a run": (_sql(["UPDATE runs SET tokens = 'lots'"]), "holds a value this adws cannot read"),
    # export reads it
    "text in a run's time": (_sql(["UPDATE runs SET at = 'noon'"]), "holds a value this adws cannot read"),
    "right version, no runs table": (_sql(["DROP TABLE runs"]), "table runs is missing"),
    "truncated": (lambda path: (_good_store(path), path.write_bytes(path.read_bytes()[:5000]))[0],
                  "damaged or not an adws state store"),
    "header only": (lambda path: (_good_store(path), path.write_bytes(path.read_bytes()[:100]))[0],
                    "damaged or not an adws state store"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_store_is_one_clear_error(tmp_path: Path, case: str) -> None:
    damage, expected = CASES[case]
    path = tmp_path / "state.sqlite3"
    damage(path)
    with pytest.raises(StateStoreError) as exc:
        _exercise(path)
    message = str(exc.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_a_zero_byte_file_is_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"")
    _exercise(path)  # SQLite treats it as a new database: adws makes its schema there


@pytest.mark.parametrize("command", ["route", "run", "quota", "providers"])
@pytest.mark.parametrize("case", ["not a database", "right version, missing table", "newer adws", "a directory"])
def test_every_command_says_it_in_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch, command: str, case: str) -> None:
    CASES[case][0](tmp_path / "state.sqlite3")
    (tmp_path / "c.toml").write_text(config_text("ok"), encoding="utf-8")
    (tmp_path / "p.txt").write_text("go", encoding="utf-8")
    for name, value in {**SECRETS, "ADWS_STATE_PATH": str(tmp_path / "state.sqlite3")}.items():
        monkeypatch.setenv(name, value)
    args = [command, "--config", str(tmp_path / "c.toml")]
    if command in ("route", "run"):
        args += ["--task-json", json.dumps({"id": "t"})]
    if command == "run":
        args += ["--prompt-file", str(tmp_path / "p.txt"), "--workdir", str(tmp_path)]
    code = main(args)
    out, err = capfd.readouterr()
    assert code == 2, out
    assert err.startswith("adws: state store ") and err.count("\n") == 1 and "Traceback" not in err


FUZZ_FILES = 300


def test_fuzz_many_corrupted_stores_never_raise_anything_but_the_one_error(tmp_path: Path) -> None:
    """Random byte changes, zeroed pages and truncations of a real store: every file either still works or
    gives StateStoreError. Seeded, so a failure is reproducible."""
    pristine_path = tmp_path / "pristine.sqlite3"
    _good_store(pristine_path)
    pristine = pristine_path.read_bytes()
    page = 4096
    rng = random.Random(9)
    outcomes = {"works": 0, "refused": 0}
    for i in range(FUZZ_FILES):
        data = bytearray(pristine)
        kind = i % 4
        if kind == 0:  # scattered byte flips
            for _ in range(rng.randint(1, 40)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:  # a whole page zeroed or filled with noise
            start = rng.randrange(len(data) // page) * page
            data[start:start + page] = bytes(page) if rng.random() < 0.5 else rng.randbytes(page)
        elif kind == 2:  # truncated anywhere
            del data[rng.randrange(1, len(data)):]
        else:  # the header's fields
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(100)] = rng.randrange(256)
        path = tmp_path / f"fuzz-{i}.sqlite3"
        path.write_bytes(bytes(data))
        try:
            _exercise(path)
            outcomes["works"] += 1
        except StateStoreError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
        path.unlink()
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert sum(outcomes.values()) == FUZZ_FILES and outcomes["refused"] > 0


def test_the_schema_check_is_safe_from_many_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run-many opens stores from its workers at once: the schema table is built once per process, safely."""
    from concurrent.futures import ThreadPoolExecutor

    from adws.state import sqlite as sqlite_module

    path = tmp_path / "state.sqlite3"
    SqliteStore(str(path)).close()
    for _ in range(5):
        monkeypatch.setattr(sqlite_module, "_expected_columns", None)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: SqliteStore(str(path)).close(), range(16)))
