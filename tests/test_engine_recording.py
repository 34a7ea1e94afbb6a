"""Issue 9, "nothing after the agent has run may lose the attempt": unencodable task text, a full disk under the
run directory, a state store that cannot grow. Each run still ends with its attempts in the result, the audit
log and (where it can be written) the ledger; what could not be recorded is said in `warnings`."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adws import audit
from adws.cli import main
from adws.state.base import StateStoreError
from tests.hostile import SECRETS, config_text, engine

SURROGATE = "\ud800"

# -- unencodable text from the task ------------------------------------------------------------------------

HOSTILE_TASKS: list[dict[str, Any]] = [
    {"id": f"x{SURROGATE}"},
    {"id": "T", "labels": [f"bug{SURROGATE}"]},
    {"id": "T", "title": f"t{SURROGATE}", "body": "\udfff body \udc80"},
    {"id": "T", "attrs": {"team": f"a{SURROGATE}"}},
    {"id": "\udc80\udcff", "labels": ["\ud83d", "ok"], "number": 5},
    {"id": "T", "priority": f"P1{SURROGATE}"},  # an invalid priority: its error message carries the text
]


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "c.toml").write_text(config_text("ok"), encoding="utf-8")
    (tmp_path / "p.txt").write_text("fix it", encoding="utf-8")
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    monkeypatch.setenv("HOSTILE_PIDFILE", str(tmp_path / "pids"))
    return tmp_path


@pytest.mark.parametrize("task", HOSTILE_TASKS)
@pytest.mark.parametrize("command", ["run --json", "run", "route --json", "route", "route --explain"])
def test_unencodable_task_text_never_crashes_a_command(cli_env: Path, capfd: pytest.CaptureFixture[str],
                                                       task: dict[str, Any], command: str) -> None:
    verb, *flags = command.split()
    extra = ["--prompt-file", str(cli_env / "p.txt"), "--workdir", str(cli_env)] if verb == "run" else []
    code = main([verb, "--config", str(cli_env / "c.toml"), "--task-json", json.dumps(task), *extra, *flags])
    out, err = capfd.readouterr()
    assert "Traceback" not in err
    if "priority" in task:  # bad input: one line, exit 2
        assert code == 2 and err.startswith("adws: invalid task: ") and err.count("\n") == 1
        return
    assert code == 0, err
    if "--json" in flags:
        json.loads(out)
    if verb == "run":
        [record] = audit.read(cli_env / "audit.jsonl")
        assert record["success"] is True
        with sqlite3.connect(cli_env / "state.sqlite3") as db:
            assert db.execute("SELECT count(*) FROM usage").fetchone() == (1,)


# -- a full disk -------------------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB file system (tmpfs), so a full disk is the kernel's ENOSPC and not a simulation."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the injected variants below cover the logic)")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def _file_prompt(text: str) -> str:
    return text.replace('"{{ prompt | trim }}"]\nprompt = "arg"', '"{{ prompt_file }}"]\nprompt = "file"')


def test_a_full_disk_while_writing_the_prompt_file_is_an_error_attempt(tmp_path: Path, small_fs: Path) -> None:
    text = _file_prompt(config_text("ok", run_dir=str(small_fs / "runs")))
    result = engine(tmp_path, text).run({"id": "t"}, prompt="x" * 1_000_000, workdir=tmp_path)
    first = result.attempts[0]
    assert (first.outcome, first.exit_code) == ("error", None)
    assert "No space left on device" in first.reason and "nothing ran" in first.reason
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert len(record["attempts"]) == len(result.attempts)


def test_output_that_fills_the_disk_keeps_the_successful_attempt(tmp_path: Path, small_fs: Path) -> None:
    text = config_text("big", run_dir=str(small_fs / "runs"))
    result = engine(tmp_path, text, {"HOSTILE_BYTES": "1000000"}).run({"id": "t"}, prompt="go", workdir=tmp_path)
    assert result.success and result.final_text is not None and result.final_text.startswith("xxx")
    assert result.output_file is None
    assert any("output.txt not written (No space left on device)" in w for w in result.warnings)
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert record["success"] is True and record["warnings"] == result.warnings
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM usage").fetchone() == (1,)


def test_a_state_store_that_cannot_grow_during_the_run_loses_no_attempt(tmp_path: Path, small_fs: Path,
                                                                          capsys: pytest.CaptureFixture[str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent fills the store's file system while it runs: the ledger write after it fails.
    text = config_text("fill").replace("kill_grace = 1\n[[providers.h.accounts]]",
                                       "kill_grace = 1\nmax_concurrency = 1\n[[providers.h.accounts]]")
    (tmp_path / "c.toml").write_text(text, encoding="utf-8")
    (tmp_path / "p.txt").write_text("go", encoding="utf-8")
    for name, value in {**SECRETS, "ADWS_STATE_PATH": str(small_fs / "state.sqlite3"),
                        "HOSTILE_FILL": str(small_fs / "filler")}.items():
        monkeypatch.setenv(name, value)
    code = main(["run", "--config", str(tmp_path / "c.toml"), "--task-json", '{"id": "t"}', "--prompt-file",
                 str(tmp_path / "p.txt"), "--workdir", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert code == 0 and result["success"] is True, err
    assert any("not recorded in the state store" in w and "full" in w for w in result["warnings"])
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert record["attempts"] == result["attempts"]
    # Once space is back, the slot the run held is free again (released, or its lease expires).
    (small_fs / "filler").unlink()


# -- the same faults injected (no root needed) --------------------------------------------------------------


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_injected_enospc_on_the_prompt_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("adws.manager.write_private", _enospc)
    result = engine(tmp_path, _file_prompt(config_text("ok"))).run({"id": "t"}, prompt="go", workdir=tmp_path)
    assert result.attempts[0].outcome == "error" and "No space left" in result.attempts[0].reason
    assert result.success  # the backup tier takes the prompt as an argument: no file needed


def test_injected_store_failures_after_the_run_become_warnings(tmp_path: Path) -> None:
    text = config_text("ok").replace("kill_grace = 1\n[[providers.h.accounts]]",
                                     "kill_grace = 1\nmax_concurrency = 1\n[[providers.h.accounts]]")
    eng = engine(tmp_path, text)

    def refuse(*args: object, **kwargs: object) -> None:
        raise StateStoreError("state store s: database or disk is full")

    eng.store.record_usage = refuse  # type: ignore[method-assign]
    eng.store.release_slot = refuse  # type: ignore[method-assign]
    result = eng.run({"id": "t"}, prompt="go", workdir=tmp_path)
    assert result.success
    assert len(result.warnings) == 2
    assert any("usage, cooldown and breaker not recorded in the state store" in w for w in result.warnings)
    assert any("concurrency slot on h not released" in w and "frees itself at" in w for w in result.warnings)
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert record["warnings"] == result.warnings


def test_a_store_failure_between_attempts_returns_the_result_so_far(tmp_path: Path) -> None:
    text = config_text("echo_prompt").replace("[providers.backup]\ncommand_template",
                                              "[providers.backup]\nmax_concurrency = 1\ncommand_template")
    eng = engine(tmp_path, text)

    def refuse(*args: object, **kwargs: object) -> bool:
        raise StateStoreError("state store s: database or disk is full")

    eng.store.acquire_slot = refuse  # type: ignore[method-assign]
    result = eng.run({"id": "t"}, prompt="go", workdir=tmp_path)
    # h ran and failed; the store then failed leasing backup's slot: the walk ends, nothing is lost.
    assert not result.success and [a.outcome for a in result.attempts] == ["error"]
    assert result.message == "stopped after 1 attempt(s): state store s: database or disk is full"
    assert audit.read(tmp_path / "audit.jsonl")[0]["message"] == result.message


def test_an_audit_log_that_cannot_be_written_says_what_was_lost(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "audit.jsonl").mkdir()  # cannot be opened for writing
    result = engine(tmp_path, config_text("ok")).run({"id": "t"}, prompt="go", workdir=tmp_path)
    assert result.success
    [warning] = result.warnings
    assert warning.endswith("this task's record (1 attempt(s), 1 started, succeeded) is not in the audit log")
    assert capsys.readouterr().err == f"adws: {warning}\n"


@pytest.mark.parametrize("how", ["stdin", "file", "arg"])
def test_a_prompt_with_a_lone_surrogate_never_crashes_a_run(tmp_path: Path, how: str) -> None:
    text = config_text("ok")
    if how == "stdin":
        text = text.replace(', "{{ prompt | trim }}"]\nprompt = "arg"', ']\nprompt = "stdin"')
    elif how == "file":
        text = _file_prompt(text)
    result = engine(tmp_path, text).run({"id": "t"}, prompt=f"fix {SURROGATE} now", workdir=tmp_path)
    first = result.attempts[0]
    if how == "arg":  # no program can receive it as an argument: a clear error attempt, nothing ran
        assert first.outcome == "error" and "lone surrogate" in first.reason and first.exit_code is None
    else:  # a pipe or a file takes it, written as its escape
        assert first.outcome == "success"
    assert audit.read(tmp_path / "audit.jsonl")[0]["attempts"][0]["outcome"] == first.outcome


def test_a_parser_that_fails_on_an_output_does_not_lose_the_attempt(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise IndexError("list index out of range")

    monkeypatch.setattr("adws.manager.read_output", broken)
    result = engine(tmp_path, config_text("ok")).run({"id": "t"}, prompt="go", workdir=tmp_path)
    first = result.attempts[0]
    assert first.outcome == "bad_output" and "IndexError: list index out of range" in first.reason
    assert first.usage is not None and first.usage.estimated  # what ran is booked
    assert audit.read(tmp_path / "audit.jsonl")[0]["attempts"][0]["outcome"] == "bad_output"


def test_run_many_prints_unencodable_task_text(cli_env: Path, capfd: pytest.CaptureFixture[str]) -> None:
    tasks = cli_env / "tasks.jsonl"
    # Distinct ids (run-many refuses the same task twice), each keeping its unencodable text.
    items = [{"task": {**task, "id": f"{task['id']}-{n}"}, "prompt": "go"} for n, task in enumerate(HOSTILE_TASKS[:5])]
    tasks.write_text("\n".join(json.dumps(item) for item in items), encoding="utf-8")
    code = main(["run-many", "--config", str(cli_env / "c.toml"), "--tasks", str(tasks), "--workdir", str(cli_env),
                 "--json", "--quiet"])
    out, err = capfd.readouterr()
    assert "Traceback" not in err and code == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert sorted(p["index"] for p in printed) == [0, 1, 2, 3, 4] and all(p["success"] for p in printed)



def test_a_guessed_usage_never_exceeds_what_a_store_takes(tmp_path: Path) -> None:
    # An output of 10^14 bytes at the shipped 4 characters a token guesses 2.5 * 10^13 tokens, past the 10^12
    # every store takes (check_usage refuses more on write, and the attempt that ran would go unrecorded): the
    # guess is capped there.
    from datetime import UTC, datetime

    from adws import load
    from adws.attempt import RunOutcome
    from adws.decision import Step
    from adws.state.base import MAX_COUNT, UsageRecord, check_usage

    eng = load(Path(__file__).parent.parent / "config.toml", environ={"ADWS_STATE_PATH": str(tmp_path / "s")})
    provider = next(p for p in eng.config.providers.values() if p.models)
    model = next(iter(provider.models))
    outcome = RunOutcome(argv=[], exit_code=0, signal=None, timed_out=False, duration_ms=1, stdout_path=None,
                         stderr_path=None, stdout_tail="", stderr_tail="", stdout_bytes=10**14, stderr_bytes=0,
                         truncated=False)
    step = Step(provider.name, model, None, (), {}, "")
    usage = eng.manager._estimate(step, provider, "fix it", outcome)
    assert usage.output_tokens == MAX_COUNT
    assert 0 <= usage.cost_usd <= MAX_COUNT
    check_usage(UsageRecord(provider.name, "a", datetime.now(UTC), usage))  # what a store takes
