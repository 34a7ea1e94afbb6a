"""Every text the `adws` command prints, on stdout and stderr, by every command, and the names it makes (the run
directory, the task id in the state store) hold no secret adws knows: a task whose id or labels carry a key (a
mistake, or a hostile issue) is shown with *** where the key was."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from adws.cli import main

SECRET = "sk-supersecretvalue1234567890"  # the config's key variable: its name does not look secret
OTHER = "tok-anothersecret0987654321"  # a variable whose name looks secret (GITHUB_TOKEN)

CONFIG = """
[routing]
chain = ["myprov"]
[routing.retry]
max_retries = 0
[providers.myprov]
command_template = ["PYTHON", "AGENT"]
prompt = "stdin"
output_format = "text"
api_key_env = "MYPROV_AUTH"
timeout = 60
[audit]
path = "audit.jsonl"
[run]
dir = "runs"
[state]
path = "state.sqlite3"
"""


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MYPROV_AUTH", SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", OTHER)
    monkeypatch.setenv("ADWS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ADWS_CONFIG", raising=False)
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    (tmp_path / "agent.py").write_text("import sys\nsys.stdin.read()\nprint('done')\n", encoding="utf-8")
    (tmp_path / "prompt.txt").write_text("Fix it.\n", encoding="utf-8")
    (tmp_path / "c.toml").write_text(CONFIG.replace("PYTHON", sys.executable)
                                     .replace("AGENT", str(tmp_path / "agent.py")), encoding="utf-8")
    return tmp_path


def _task(**more: object) -> str:
    return json.dumps({"id": f"{SECRET}-{OTHER}", "title": f"t {SECRET}", "labels": [SECRET, OTHER], **more})


def _clean(text: str) -> None:
    assert "supersecret" not in text and "anothersecret" not in text, text


@pytest.mark.parametrize("extra", [(), ("--json",), ("--explain",), ("--json", "--explain")])
def test_route_never_prints_a_secret(world: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]) -> None:
    code = main(["route", "--config", str(world / "c.toml"), "--task-json", _task(), *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    _clean(out + err)
    assert "***" in out


@pytest.mark.parametrize("extra", [(), ("--json",)])
def test_run_prints_no_secret_and_names_nothing_after_one(world: Path, capsys: pytest.CaptureFixture[str],
                                                         extra: tuple[str, ...],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # progress lines too, with --json
    code = main(["run", "--config", str(world / "c.toml"), "--task-json", _task(), "--prompt-file",
                 str(world / "prompt.txt"), "--workdir", str(world), *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "started" in err  # the progress lines were printed, cleaned
    _clean(out + err)
    for path in world.rglob("*"):  # the run directory's name, the state store's task id, the audit log
        _clean(str(path))
        if path.is_file() and path.name not in ("c.toml",):
            _clean(path.read_bytes().decode("utf-8", "replace"))


def test_run_many_progress_and_input_errors_print_no_secret(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = world / "tasks.jsonl"
    tasks.write_text(json.dumps({"task": json.loads(_task()), "prompt": "Fix it."}) + "\n", encoding="utf-8")
    code = main(["run-many", "--config", str(world / "c.toml"), "--tasks", str(tasks), "--workdir", str(world)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "started" in err
    _clean(out + err)
    tasks.write_text(json.dumps({"task": json.loads(_task()), "prompt": "x", "workdir": f"/nonexist/{SECRET}"})
                     + "\n", encoding="utf-8")
    code = main(["run-many", "--config", str(world / "c.toml"), "--tasks", str(tasks)])
    out, err = capsys.readouterr()
    assert code == 2 and "not a directory" in err
    _clean(out + err)


def test_errors_of_any_command_print_no_secret(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before any config is read: the secret-looking names of the environment.
    assert main(["check", str(world / f"{OTHER}.toml")]) == 2  # missing: unreadable, a usage error
    assert main(["stats", "--audit", str(world / f"{OTHER}.jsonl")]) == 2
    out, err = capsys.readouterr()
    assert "***" in err
    _clean(out + err)


@pytest.mark.parametrize("command", ["route", "run"])
def test_json_output_is_cleaned_once(world: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                     command: str) -> None:
    # Cleaned value by value as it is made; the output stream does not search the whole document again.
    from adws.redact import Scrubber

    searched: list[str] = []
    text = Scrubber.text

    def counted(self: Scrubber, value: str) -> str:
        searched.append(value)
        return text(self, value)

    monkeypatch.setattr(Scrubber, "text", counted)
    more = ["--prompt-file", str(world / "prompt.txt"), "--workdir", str(world), "--quiet"] if command == "run" else []
    code = main([command, "--config", str(world / "c.toml"), "--task-json", _task(), "--json", *more])
    out, err = capsys.readouterr()
    assert code == 0, err
    _clean(out + err)
    assert "***" in out
    assert out.rstrip("\n") not in searched and out not in searched


def test_the_task_key_is_cleaned_once_per_run(world: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The run directory's name and every attempt's usage row take the key cleaned when the run began.
    from adws.manager import ProviderManager

    shown: list[str | None] = []
    key_shown = ProviderManager._key_shown

    def counted(self: ProviderManager, task: object) -> str | None:
        shown.append(key_shown(self, task))  # type: ignore[arg-type]
        return shown[-1]

    monkeypatch.setattr(ProviderManager, "_key_shown", counted)
    code = main(["run", "--config", str(world / "c.toml"), "--task-json", _task(), "--prompt-file",
                 str(world / "prompt.txt"), "--workdir", str(world), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert len(shown) == 1 and shown[0] is not None and "***" in shown[0]
