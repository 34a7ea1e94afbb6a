"""What adws creates is private whatever the umask (README "Under abuse"): `state export FILE` and `report --html
FILE` are 0600, and every directory it creates on the way to a run directory, the audit log or the state store
(the default `.adws/`) is 0700, not only the last one."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adws.cli import main
from adws.files import make_private_dirs

CONFIG = """
[routing]
chain = ["a"]
[routing.retry]
max_retries = 0
[providers.a]
command_template = ["PYTHON", "-c", "import sys; sys.stdin.read(); print('done')"]
prompt = "stdin"
output_format = "text"
[audit]
path = "deep/er/audit.jsonl"
[run]
dir = "runs/a/b"
[state]
path = "st/x/state.sqlite3"
"""


@pytest.fixture
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_make_private_dirs_makes_every_missing_directory_0700(tmp_path: Path, umask022: None) -> None:
    (tmp_path / "there").mkdir(mode=0o755)
    make_private_dirs(tmp_path / "there" / "a" / "b" / "c")
    assert _mode(tmp_path / "there") == 0o755  # what was there is left alone
    for path in (tmp_path / "there" / "a", tmp_path / "there" / "a" / "b", tmp_path / "there" / "a" / "b" / "c"):
        assert _mode(path) == 0o700, path
    make_private_dirs(tmp_path / "there" / "a")  # there already: nothing to do
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(OSError):
        make_private_dirs(tmp_path / "file" / "x")


def test_files_and_directories_the_cli_creates_are_private(tmp_path: Path, umask022: None,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADWS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ADWS_CONFIG", raising=False)
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    (tmp_path / "c.toml").write_text(CONFIG.replace("PYTHON", sys.executable), encoding="utf-8")
    (tmp_path / "p.txt").write_text("Fix it.\n", encoding="utf-8")
    assert main(["run", "--config", "c.toml", "--task-json", json.dumps({"id": "t1"}), "--prompt-file", "p.txt",
                 "--quiet"]) == 0, capsys.readouterr().err
    for directory in ("deep", "deep/er", "runs", "runs/a", "runs/a/b", "st", "st/x"):
        assert _mode(tmp_path / directory) == 0o700, directory
    assert main(["state", "export", "--config", "c.toml", "out.jsonl"]) == 0
    assert _mode(tmp_path / "out.jsonl") == 0o600
    assert main(["report", "--config", "c.toml", "--html", "r.html"]) == 0, capsys.readouterr().err
    assert _mode(tmp_path / "r.html") == 0o600
