"""Issue 9, "adws only ever touches what is its own" and "files private": run directories, the audit log and
the state store under hostile file systems."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from adws import audit
from adws.config.load import compile_config, parse_toml
from adws.errors import AdwsError, ConfigError
from adws.files import MARKER, RunPruner, make_run_dir, prune_runs, spread_runs, unsafe_run_root
from tests.hostile import config_text, engine

OTHER_UID = 65534  # nobody


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the worst case: everything adws creates would be world-writable without its own modes
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_everything_adws_creates_is_private_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    text = config_text("ok").replace('"{{ prompt | trim }}"]\nprompt = "arg"',
                                     '"{{ prompt_file }}"]\nprompt = "file"')
    result = engine(tmp_path, text).run({"id": "t"}, prompt="secret customer text", workdir=tmp_path)
    assert result.success
    run_dir = Path(result.run_dir or "")
    attempt_dir = Path(result.attempts[0].stdout_path or "").parent
    for path in (tmp_path / "runs", run_dir, attempt_dir):
        assert _mode(path) == 0o700, path
    files = [attempt_dir / n for n in ("prompt.txt", "stdout.log", "stderr.log", "output.txt")]
    files += [run_dir / MARKER, tmp_path / "audit.jsonl", tmp_path / "state.sqlite3"]
    files += [p for p in tmp_path.glob("state.sqlite3-*")]  # the WAL and shared-memory files
    for path in files:
        assert _mode(path) == 0o600, path


def test_pruning_deletes_only_run_directories_adws_made(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    (root / ".ssh").mkdir(parents=True)
    (root / ".ssh" / "id_ed25519").write_text("private", encoding="utf-8")
    # Looks exactly like a run directory, but adws did not make it (no marker): it stays.
    lookalike = root / "20200101T000000-task-abcdef"
    lookalike.mkdir()
    (root / "notes.txt").write_text("keep me", encoding="utf-8")
    made = [make_run_dir(root, f"2020010{i}T000000-t-00000{i}") for i in range(1, 5)]
    for path in made:
        os.utime(path, (0, 0))  # old enough to prune
    prune_runs(root, keep=1, busy_for=60)
    assert sorted(p.name for p in root.iterdir()) == [".ssh", lookalike.name, made[-1].name, "notes.txt"]
    assert (root / ".ssh" / "id_ed25519").read_text(encoding="utf-8") == "private"


def _counting_lstat(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    looked: list[str] = []
    real_lstat = os.lstat
    monkeypatch.setattr(os, "lstat", lambda path, **kw: looked.append(str(path)) or real_lstat(path, **kw))
    return looked


def test_run_markers_are_links_to_one_file_and_each_run_keeps_its_own(tmp_path: Path, open_umask: None) -> None:
    root = tmp_path / "runs"
    first = make_run_dir(root, "20200101T000000-t-000001")
    second = make_run_dir(root, "20200102T000000-t-000002", like=first)
    third = make_run_dir(root, "20200103T000000-t-000003", like=second)
    markers = [os.lstat(path / MARKER) for path in (first, second, third)]
    assert len({m.st_ino for m in markers}) == 1 and markers[0].st_nlink == 3, "one inode, three names"
    assert all(stat.S_ISREG(m.st_mode) and stat.S_IMODE(m.st_mode) == 0o600 for m in markers)
    assert (third / MARKER).read_bytes() == (first / MARKER).read_bytes()
    for path in (first, second):
        os.utime(path, (0, 0))
    prune_runs(root, keep=1, busy_for=60)  # the runs it was linked from go; its marker stays
    assert [p.name for p in root.iterdir()] == [third.name] and os.lstat(third / MARKER).st_nlink == 1
    fourth = make_run_dir(root, "20200104T000000-t-000004", like=first)  # pruned meanwhile: written anew
    assert (fourth / MARKER).read_bytes() == (third / MARKER).read_bytes()
    assert os.lstat(fourth / MARKER).st_ino != os.lstat(third / MARKER).st_ino
    (third / MARKER).unlink()
    (third / MARKER).symlink_to(tmp_path)  # never followed: the new run gets a real marker of its own
    fifth = make_run_dir(root, "20200105T000000-t-000005", like=third)
    assert stat.S_ISREG(os.lstat(fifth / MARKER).st_mode)
    assert (fifth / MARKER).read_bytes() == (fourth / MARKER).read_bytes()


def test_an_engine_marks_each_run_with_a_link_to_its_previous_marker(tmp_path: Path) -> None:
    run = engine(tmp_path, config_text("ok"))
    dirs = [Path(run.run({"id": f"t{i}"}, prompt="go", workdir=tmp_path).run_dir or "") for i in range(3)]
    markers = [os.lstat(path / MARKER) for path in dirs]
    assert len({m.st_ino for m in markers}) == 1 and markers[0].st_nlink == 3
    assert all(stat.S_ISREG(m.st_mode) for m in markers)


def test_a_pruner_remembers_run_directories_but_checks_each_before_deleting(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    made = [make_run_dir(root, f"2020010{i}T000000-t-00000{i}") for i in range(1, 5)]
    for path in made:
        os.utime(path, (0, 0))
    pruner = RunPruner(root, keep=10, busy_for=60)
    pruner.prune()
    looked = _counting_lstat(monkeypatch)
    pruner.prune()
    assert looked == [], "a directory seen before is counted without looking for its marker again"
    (made[0] / MARKER).unlink()  # no longer adws's: still counted from memory, but never deleted
    os.utime(made[0], (0, 0))
    pruner.keep = 1
    pruner.prune()
    assert sorted(p.name for p in root.iterdir()) == [made[0].name, made[-1].name]
    looked.clear()
    pruner.prune()  # made[0] was forgotten: it is checked in full again, and not counted
    assert str(made[0] / MARKER) in looked
    assert sorted(p.name for p in root.iterdir()) == [made[0].name, made[-1].name]


def test_a_pruner_waits_on_the_oldest_busy_run_without_listing(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    made = [make_run_dir(root, f"2020010{i}T000000-t-00000{i}") for i in range(1, 5)]
    for path in made[1:]:
        os.utime(path, (0, 0))  # the oldest by name is the busy one: nothing after it may go yet
    pruner = RunPruner(root, keep=1, busy_for=60)
    pruner.prune()
    assert len(list(root.iterdir())) == 4
    listed: list[object] = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listed.append(path) or real_scandir(path))
    pruner.prune()
    assert listed == [] and len(list(root.iterdir())) == 4, "one lstat of the busy run, no listing"
    os.utime(made[0], (0, 0))  # its run ended long ago: the next call looks again and prunes
    pruner.prune()
    assert listed[0] == root  # (then rmtree lists what it removes)
    assert [p.name for p in root.iterdir()] == [made[-1].name]


def test_create_private_writes_only_where_nothing_is(tmp_path: Path, open_umask: None) -> None:
    from adws.files import create_private

    fresh = tmp_path / "fresh.txt"
    assert create_private(fresh, "answer") is True
    assert fresh.read_text(encoding="utf-8") == "answer" and _mode(fresh) == 0o600
    assert create_private(fresh, "other") is False
    assert fresh.read_text(encoding="utf-8") == "answer", "what is there stays"
    target = tmp_path / "target.txt"
    (tmp_path / "link.txt").symlink_to(target)  # dangling: never followed, never created through
    assert create_private(tmp_path / "link.txt", "x") is False
    assert not target.exists()


def test_a_marker_that_is_a_symlink_or_a_directory_does_not_count(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    for i, plant in enumerate(("link", "dir")):
        victim = root / f"2020010{i}T000000-t-00000{i}"
        victim.mkdir()
        if plant == "link":
            (victim / MARKER).symlink_to(tmp_path)
        else:
            (victim / MARKER).mkdir()
        os.utime(victim, (0, 0))
    prune_runs(root, keep=0 + 1, busy_for=0)
    assert len(list(root.iterdir())) == 2


def test_a_run_root_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AdwsError, match="is a symbolic link; adws does not follow it"):
        engine(tmp_path, config_text("ok")).run({"id": "t"}, prompt="go", workdir=tmp_path)
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory owned by another user needs root")
def test_a_run_root_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    os.chown(tmp_path / "runs", OTHER_UID, OTHER_UID)
    with pytest.raises(AdwsError, match=r"is owned by another user \(uid 65534\)"):
        engine(tmp_path, config_text("ok")).run({"id": "t"}, prompt="go", workdir=tmp_path)


def test_an_audit_path_that_is_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "victim.txt"
    target.write_text("original\n", encoding="utf-8")
    (tmp_path / "audit.jsonl").symlink_to(target)
    result = engine(tmp_path, config_text("ok")).run({"id": "t"}, prompt="go", workdir=tmp_path)
    assert result.success
    assert target.read_text(encoding="utf-8") == "original\n"
    assert any("symbolic link" in w and "not in the audit log" in w for w in result.warnings)


def test_an_audit_path_that_is_a_fifo_does_not_hang_the_run(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "audit.jsonl")
    result = engine(tmp_path, config_text("ok")).run({"id": "t"}, prompt="go", workdir=tmp_path)
    assert result.success and any("not a regular file" in w for w in result.warnings)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file owned by another user needs root")
def test_an_audit_log_owned_by_another_user_is_not_written(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").write_text("", encoding="utf-8")
    os.chown(tmp_path / "audit.jsonl", OTHER_UID, OTHER_UID)
    result = engine(tmp_path, config_text("ok")).run({"id": "t"}, prompt="go", workdir=tmp_path)
    assert any("owned by another user" in w for w in result.warnings)
    assert audit.read(tmp_path / "audit.jsonl") == []


@pytest.mark.parametrize(("path", "why"), [
    ("/", "is the filesystem root"),
    ("~", "is the home directory"),
    ("~/", "is the home directory"),
    ("~/..", "holds the home directory"),
])
def test_check_refuses_a_run_dir_that_holds_far_more_than_runs(tmp_path: Path, path: str, why: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home" / "me"))
    with pytest.raises(ConfigError) as exc:
        compile_config(parse_toml(config_text("ok", run_dir=path)), "c.toml", base_dir=str(tmp_path))
    assert f'run → dir: "{path}" {why}' in str(exc.value)


def test_an_ordinary_run_dir_passes(tmp_path: Path) -> None:
    assert unsafe_run_root(str(tmp_path / "runs"), home=str(tmp_path / "home")) is None
    assert unsafe_run_root(str(tmp_path / "home" / "project" / ".adws"), home=str(tmp_path / "home")) is None


# -- where run directories are placed (issue 10) --------------------------------------------------------------


TOPDIR = 0x00020000  # FS_TOPDIR_FL, linux/fs.h


def _flags(path: Path) -> int | None:
    """The inode flags of `path` (adws.files._get_flags), None where the file system has none to show."""
    from adws.files import _get_flags

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _get_flags(fd)
    finally:
        os.close(fd)


def _on_ext(path: Path) -> bool:
    """Whether `path` is on ext2/3/4 (statfs magic 0xEF53), asked of coreutils' stat rather than of adws's ioctls."""
    if shutil.which("stat") is None:
        return False
    done = subprocess.run(["stat", "-f", "-c", "%t", str(path)], capture_output=True, text=True, check=False)
    return done.returncode == 0 and done.stdout.strip() == "ef53"


def test_a_run_root_is_marked_as_a_top_directory_where_the_file_system_can(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    before = _flags(root)
    marked = spread_runs(root)
    after = _flags(root)
    if not marked and not _on_ext(root):  # tmpfs, XFS, btrfs: refused (or no flags at all), nothing changed
        assert after == before
        pytest.skip("this file system has no FS_TOPDIR_FL")
    # On ext2/3/4 the flags must be readable and the flag set: a wrong ioctl encoding fails here, never skips.
    assert before is not None and marked
    assert after == before | TOPDIR  # FS_TOPDIR_FL added, every other flag kept
    if shutil.which("lsattr") is not None:  # seen by e2fsprogs too, through its own ioctl encoding
        shown = subprocess.run(["lsattr", "-d", str(root)], capture_output=True, text=True, check=True).stdout
        assert "T" in shown.split()[0]
    assert spread_runs(root)  # already marked: asks once more, changes nothing
    assert _flags(root) == after


def test_a_file_system_that_refuses_the_flag_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import fcntl

    def refuse(*args: object) -> None:
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))

    before = _flags(tmp_path)
    monkeypatch.setattr("adws.files._SPREAD", set())
    with monkeypatch.context() as patch:
        patch.setattr(fcntl, "ioctl", refuse)
        assert spread_runs(tmp_path) is False
        made = make_run_dir(tmp_path / "runs", "20200101T000000-t-000001")  # the run is made all the same
    assert (made / MARKER).is_file()
    assert _flags(tmp_path) == before
    assert not (_flags(tmp_path / "runs") or 0) & TOPDIR


def test_a_root_swapped_after_its_check_is_left_unmarked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import adws.files

    root, other, moved = tmp_path / "runs", tmp_path / "other", tmp_path / "moved"
    root.mkdir()
    other.mkdir()
    check = adws.files.check_run_root

    def check_then_swap(path: Path) -> os.stat_result:
        seen = check(path)
        root.rename(moved)  # another directory takes the checked one's place before spread_runs opens it
        other.rename(root)
        return seen

    monkeypatch.setattr("adws.files._SPREAD", set())
    monkeypatch.setattr("adws.files.check_run_root", check_then_swap)
    make_run_dir(root, "20200101T000000-t-000001")  # no raise
    assert not (_flags(root) or 0) & TOPDIR  # the directory now at `root` was never checked: not marked
    assert not (_flags(moved) or 0) & TOPDIR
    assert spread_runs(moved, os.lstat(root)) is False  # another directory's identity: refused


def test_a_root_owned_by_another_user_is_left_unmarked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    seen = os.lstat(root)
    monkeypatch.setattr(os, "geteuid", lambda: seen.st_uid + 1)
    assert spread_runs(root, seen) is False
    assert not (_flags(root) or 0) & TOPDIR


def test_each_run_root_is_marked_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Path] = []
    monkeypatch.setattr("adws.files._SPREAD", set())  # roots of earlier tests may have left their inode numbers
    monkeypatch.setattr("adws.files.spread_runs", lambda root, seen: asked.append(root) or True)
    for i in range(1, 4):
        make_run_dir(tmp_path / "a", f"2020010{i}T000000-t-00000{i}")
    make_run_dir(tmp_path / "b", "20200101T000000-t-000001")
    assert asked == [tmp_path / "a", tmp_path / "b"]


def test_a_run_directory_whose_marker_cannot_be_written_is_removed(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    root = tmp_path / "runs"
    monkeypatch.setattr("adws.files.write_private", full)
    with pytest.raises(OSError, match="No space left"):
        make_run_dir(root, "20200101T000000-t-000001")
    assert list(root.iterdir()) == []  # an unmarked directory would never be pruned: none is left
