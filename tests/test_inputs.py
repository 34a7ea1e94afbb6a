"""Every file or stream adws reads is read within a bound (adws.inputs): a name given by mistake (`/dev/zero`) is
refused in one line (exit 2) naming the file and the bound, never read until memory runs out; `-` with standard
input closed (`<&-`) is one line too."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from adws.cli import main
from adws.inputs import TooLarge, bounded_lines, read_bounded
from tests.helpers import RECORDS_BESIDE

CONFIG = """
[routing]
chain = ["a"]
[providers.a]
command_template = ["true"]
prompt = "stdin"
output_format = "text"
""" + RECORDS_BESIDE


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("ADWS_CONFIG", raising=False)
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    (tmp_path / "c.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "p.txt").write_text("Fix it.\n", encoding="utf-8")
    (tmp_path / "pz.jsonl").write_text(json.dumps({"task": {"id": "a"}, "prompt_file": "/dev/zero"}) + "\n",
                                       encoding="utf-8")
    (tmp_path / "t.json").write_text("[]", encoding="utf-8")
    return str(tmp_path / "c.toml")


def test_read_bounded_refuses_more_than_its_bound(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 10)
    assert read_bounded(tmp_path / "f", 10, "a thing") == b"x" * 10
    with pytest.raises(TooLarge) as caught:
        read_bounded(tmp_path / "f", 9, "a thing")
    assert str(caught.value) == f"{tmp_path / 'f'}: more than 9 bytes, the most a thing may hold"
    assert list(bounded_lines(io.StringIO("ab\ncd\n"), "s", "a line", 3)) == ["ab\n", "cd\n"]
    with pytest.raises(TooLarge, match="line 2 is more than 3 bytes"):
        list(bounded_lines(io.StringIO("ab\ncdef\n"), "s", "a line", 3))


ZERO_INPUTS = [
    ("route", "--task-json", "@/dev/zero"),
    ("route", "--github-issue", "/dev/zero"),
    ("run", "--task-json", "{}", "--prompt-file", "/dev/zero"),
    ("route", "--task-json", "{}", "--prompt-file", "/dev/zero"),
    ("run-many", "--tasks", "/dev/zero"),
    ("run-many", "--tasks", "T/t.json", "--prompt-template", "/dev/zero"),
    ("run-many", "--tasks", "T/pz.jsonl"),
    ("state", "import", "/dev/zero"),
    ("replay", "--audit", "/dev/zero"),
    ("stats", "--audit", "/dev/zero"),
    ("simulate", "--issues", "/dev/zero"),
    ("simulate", "--workload", "/dev/zero"),
]


@pytest.mark.parametrize("argv", ZERO_INPUTS, ids=" ".join)
def test_an_endless_input_is_refused_in_one_line(cfg: str, capsys: pytest.CaptureFixture[str],
                                                  argv: tuple[str, ...]) -> None:
    here = str(Path(cfg).parent)
    code = main([a.replace("T/", here + "/") for a in argv] + ["--config", cfg])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "/dev/zero" in err and "the most" in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv", [("check", "/dev/zero"), ("route", "--config", "/dev/zero", "--task-json", "{}")])
def test_an_endless_config_is_refused(cfg: str, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2 and "more than 4 MiB, the most a config file may hold" in err, err


@pytest.mark.parametrize("argv", [("route", "--task-json", "-"), ("run", "--task-json", "{}", "--prompt-file", "-"),
                                  ("run-many", "--tasks", "-"), ("state", "import", "-")], ids=" ".join)
def test_stdin_closed_is_one_line(cfg: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                  argv: tuple[str, ...]) -> None:
    monkeypatch.setattr(sys, "stdin", None)  # what Python gives for `<&-`
    code = main([*argv, "--config", cfg])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "standard input is closed" in err and len(err.strip().splitlines()) <= 2, err


@pytest.mark.parametrize("name", ["missing.toml", "."])
def test_check_of_a_config_that_cannot_be_read_exits_2(cfg: str, name: str, capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    # README: check exits 0 valid, 1 invalid, 2 for bad usage; a file that cannot be read is not judged invalid.
    assert main(["check", str(tmp_path / name)]) == 2
    assert main(["lint", str(tmp_path / name)]) == 2
    (tmp_path / "bad.toml").write_text("[routing\n", encoding="utf-8")
    assert main(["check", str(tmp_path / "bad.toml")]) == 1  # read, and invalid
    capsys.readouterr()
