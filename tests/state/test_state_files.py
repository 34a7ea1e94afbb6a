"""The SQLite store's files: a symbolic link planted at the store's path (or at its -wal, -shm or -journal) is refused,
never followed; a file of another user is refused; a file others may read is made private; and a fault in a -wal or
-shm names that file, never calling the store itself damaged (whose advice, moving it aside, would lose it)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from adws.cli import main
from adws.state import SqliteStore, StateStoreError
from tests.hostile import SECRETS, config_text


def _store(path: Path) -> None:
    with SqliteStore(str(path)) as store:
        store.next_cursor("k")


def _open(path: Path) -> str:
    """The one-line error opening and using the store at `path` gives."""
    with pytest.raises(StateStoreError) as exc, SqliteStore(str(path)) as store:
        store.next_cursor("k")
        store.peek_cursor("k")
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_a_dangling_link_at_the_path_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    victim = tmp_path / "victims" / "newfile"
    victim.parent.mkdir()
    path = tmp_path / "state.sqlite3"
    path.symlink_to(victim)
    message = _open(path)
    assert message == (f"state store {path} is a symbolic link, which adws does not follow: point [state] path / "
                       "ADWS_STATE_PATH at the file it links to, or remove the link (adws then starts a new store)")
    assert not victim.exists() and not list(victim.parent.iterdir())


def test_a_link_to_a_real_store_is_refused_and_the_store_is_untouched(tmp_path: Path) -> None:
    real = tmp_path / "real.sqlite3"
    _store(real)
    before = real.read_bytes()
    path = tmp_path / "state.sqlite3"
    path.symlink_to(real)
    assert "is a symbolic link, which adws does not follow" in _open(path)
    assert real.read_bytes() == before


def test_adws_run_does_not_follow_a_link_planted_at_the_state_path(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victims" / "newfile"
    victim.parent.mkdir()
    state = tmp_path / "w" / "state.sqlite3"
    state.parent.mkdir()
    state.symlink_to(victim)
    (tmp_path / "c.toml").write_text(config_text("ok"), encoding="utf-8")
    (tmp_path / "p.txt").write_text("go", encoding="utf-8")
    for name, value in {**SECRETS, "ADWS_STATE_PATH": str(state)}.items():
        monkeypatch.setenv(name, value)
    for command in (["route"], ["run", "--prompt-file", str(tmp_path / "p.txt"), "--workdir", str(tmp_path)]):
        code = main([*command, "--config", str(tmp_path / "c.toml"), "--task-json", json.dumps({"id": "t"})])
        out, err = capfd.readouterr()
        assert code == 0 and "Traceback" not in out + err
        if command[0] == "run":  # the agent ran; what it would have booked is refused by name, in one line
            assert "is a symbolic link, which adws does not follow" in out
        assert not victim.exists()  # routing reads an absent store as empty; the run's write follows no link


SIDE = {"-wal": "write-ahead log", "-shm": "shared-memory index", "-journal": "rollback journal"}


@pytest.mark.parametrize("suffix", list(SIDE))
@pytest.mark.parametrize("kind", ["directory", "link"])
def test_a_bad_side_file_is_named_and_the_store_kept(tmp_path: Path, suffix: str, kind: str) -> None:
    path = tmp_path / "state.sqlite3"
    _store(path)
    side = Path(f"{path}{suffix}")
    side.unlink(missing_ok=True)
    if kind == "directory":
        side.mkdir()
    else:
        side.symlink_to(tmp_path / "elsewhere")
    message = _open(path)
    what = "is a directory, not a file" if kind == "directory" else "is a symbolic link, which adws does not follow"
    assert message == (f"state store {path}: its {SIDE[suffix]} {side} {what}; the store itself is not at fault: "
                       f"move {side} aside and SQLite makes a new one")
    assert "damaged" not in message and "read-only" not in message
    assert not (tmp_path / "elsewhere").exists()
    if kind == "directory":
        side.rmdir()
    else:
        side.unlink()
    with SqliteStore(str(path)) as store:  # the advice followed: the store is whole
        assert store.peek_cursor("k") == 1


def test_files_others_may_read_are_made_private(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    _store(path)
    wal = Path(f"{path}-wal")
    wal.write_bytes(b"")
    for file in (path, wal):
        file.chmod(0o644)
    with SqliteStore(str(path)) as store:
        assert store.peek_cursor("k") == 1
    for file in (path, wal):
        if file.exists():
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_store_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    _store(path)
    os.chown(path, 65534, 65534)
    assert _open(path) == (f"state store {path} is owned by another user (uid 65534): point [state] path / "
                           "ADWS_STATE_PATH at a file of your own")
    os.chown(path, 0, 0)
    wal = Path(f"{path}-wal")
    wal.write_bytes(b"")
    os.chown(wal, 65534, 65534)
    message = _open(path)
    assert f"its write-ahead log {wal} is owned by another user (uid 65534)" in message
    assert "stop every adws using the store first" in message
