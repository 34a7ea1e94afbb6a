"""Every text the `adws` command prints, on stdout and stderr, by every command, and the names it makes (the run
directory, the task id in the state store) hold no secret adws knows: a task whose id or labels carry a key (a
mistake, or a hostile issue) is shown with *** where the key was."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from adws.cli import main
from tests.helpers import RECORDS_BESIDE

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
""" + RECORDS_BESIDE


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


# Keys kept with escapes in their variables: a PEM key with `\\n` for its line breaks (the usual .env and service
# account form), a value holding a backslash-quote. The agent (or a task) prints them with real newlines and
# quotes; JSON's escaping then writes the variable's exact text, which no value held.
PEM = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----"
QUOTED = 'sk-abc\\"def1234567890'


@pytest.mark.parametrize("command", ["route", "run", "run-many"])
def test_a_key_that_json_escaping_spells_out_is_caught_in_json_output(
        world: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    monkeypatch.setenv("GOOGLE_PRIVATE_KEY", PEM)
    monkeypatch.setenv("QUOTED_TOKEN", QUOTED)
    (world / "agent.py").write_text("import os, sys\nsys.stdin.read()\n"
                                    "print(os.environ['GOOGLE_PRIVATE_KEY'].replace('\\\\n', '\\n'))\n",
                                    encoding="utf-8")
    task = json.dumps({"id": "see " + QUOTED.replace("\\", "")})  # the quote, not its backslash
    if command == "run-many":
        tasks = world / "tasks.jsonl"
        tasks.write_text(json.dumps({"task": json.loads(task), "prompt": "Fix it."}) + "\n", encoding="utf-8")
        argv = ["run-many", "--tasks", str(tasks), "--workdir", str(world), "--quiet"]
    elif command == "run":
        argv = ["run", "--task-json", task, "--prompt-file", str(world / "prompt.txt"), "--workdir", str(world),
                "--quiet"]
    else:
        argv = ["route", "--task-json", task]
    code = main([*argv, "--config", str(world / "c.toml"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # The variables' exact text, which is what the JSON escaping writes.
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in out and QUOTED not in out, out
    assert "***" in out


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


def test_run_many_with_a_bad_config_never_prints_the_tasks_text(world: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # A tasks file with a problem that quotes a task's key, and a config with a typo: the key variable's value is
    # unknown until the config is read, so the config's problem is what is said, not the task's text.
    tasks = world / "tasks.jsonl"
    item = json.dumps({"task": {"id": SECRET}, "prompt": "x"})
    tasks.write_text(f"{item}\n{item}\n", encoding="utf-8")  # the same task twice: its key is quoted
    bad = world / "bad.toml"
    bad.write_text((world / "c.toml").read_text(encoding="utf-8").replace("timeout = 60", "timout = 60"),
                   encoding="utf-8")
    code = main(["run-many", "--config", str(bad), "--tasks", str(tasks), "--workdir", str(world)])
    out, err = capsys.readouterr()
    assert code == 2 and 'unknown key "timout"' in err
    _clean(out + err)
    code = main(["run-many", "--config", str(world / "c.toml"), "--tasks", str(tasks), "--workdir", str(world)])
    out, err = capsys.readouterr()
    assert code == 2 and "give each task once" in err and "***" in err  # with a good config: the task's, cleaned
    _clean(out + err)
