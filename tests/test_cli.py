"""`adws` argument handling shared by every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adws
from adws import __version__
from adws.cli import main
from tests.helpers import ROOT

CONFIG = str(ROOT / "config.toml")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"adws {__version__}\n"


@pytest.mark.parametrize(("args", "message"), [
    (["route", "--task-json", "{}", "--github-issue", "x.json"],
     "adws: give the task once: --task-json or --github-issue, not both\n"),
    (["run", "--task-json", "-", "--prompt-file", "-"],
     "adws: standard input can carry the task or the prompt, not both\n"),
    (["route", "--task-json", "{}", "--at", "tomorrow"], "adws: --at: not an ISO 8601 time: 'tomorrow'\n"),
    (["simulate", "--start", "monday"], "adws: --start: not an ISO 8601 time: 'monday'\n"),  # the option given
])
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, "--config", CONFIG]) == 2
    assert capsys.readouterr().err == message


def test_an_empty_adws_config_is_an_error(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ADWS_CONFIG", "")  # a mistake (ADWS_CONFIG=$UNSET), not a request for ./config.toml
    assert main(["check"]) == 2
    assert capsys.readouterr().err == \
        "adws: ADWS_CONFIG is set but empty: name a config file, or unset it to use ./config.toml\n"
    assert main(["check", CONFIG]) == 0  # a config named on the command line needs no variable


@pytest.mark.parametrize("cache", ["on", "off"])
def test_an_empty_adws_cache_dir_is_an_error(cache: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # Taken as unset, it would read and write ~/.cache/adws, the directory it was set to keep adws away from.
    monkeypatch.setenv("ADWS_CACHE_DIR", "")
    monkeypatch.setenv("ADWS_CONFIG_CACHE", cache)  # refused either way, as ADWS_STATE_PATH="" under Redis is
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    message = ("ADWS_CACHE_DIR is set but empty: name a directory for adws's cache, or unset it to use "
               "~/.cache/adws (ADWS_CONFIG_CACHE=off turns the cache off)")
    assert main(["check", CONFIG]) == 2
    assert capsys.readouterr().err == f"adws: {message}\n"
    with pytest.raises(adws.AdwsError) as caught:
        adws.load(CONFIG)
    assert str(caught.value) == message
    assert not (tmp_path / "xdg").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--wait", "-5"], "--wait: expected a duration of 0 or more, got '-5' (e.g. 600, 30m, 2h)"),
    (["run", "--wait=-1h"], '--wait: invalid duration "-1h": expected numbers with units w, d, h, m, s in that order, '
                            'e.g. "5h", "30m", "7d", "1h30m"; or seconds (e.g. 600)'),
    (["run", "--wait", "9999999999d"], '--wait: invalid duration "9999999999d": must be at most 3660d; or seconds '
                                       "(e.g. 600)"),
    (["run", "--wait", "nan"], "--wait: expected a duration of 0 or more, got 'nan' (e.g. 600, 30m, 2h)"),
    (["run-many", "--tasks", "-", "--wait", "-5"],
     "--wait: expected a duration of 0 or more, got '-5' (e.g. 600, 30m, 2h)"),
    (["state", "compact", "foo"], "state compact takes no FILE (got 'foo'): it rolls up the configured store"),
    (["state", "export", "--margin", "3d"], "--margin: only `adws state compact` takes it, not export"),
    (["state", "import", "x.jsonl", "--margin", "3d"], "--margin: only `adws state compact` takes it, not import"),
    (["state", "import", "--at", "2026-11-18T13:00:00Z"],
     "--at: `adws state import` takes no time (it copies the file's rows as they are)"),
    (["lint", "--typical-tokens", "0"], "--typical-tokens: expected a positive number of tokens, got 0"),
    (["lint", "--typical-tokens", "-20"], "--typical-tokens: expected a positive number of tokens, got -20"),
])
def test_arguments_a_command_cannot_use_are_refused(args: list[str], message: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    monkeypatch.setenv("ADWS_CACHE_DIR", str(tmp_path / "cache"))
    prompt = tmp_path / "prompt.md"
    prompt.write_text("Fix it.\n", encoding="utf-8")
    if args[0] == "run":
        args = [*args, "--task-json", "{}", "--prompt-file", str(prompt), "--workdir", str(tmp_path)]
    assert main([*args, "--config", CONFIG]) == 2
    assert capsys.readouterr().err == f"adws: {message}\n"
    assert not (tmp_path / "state.sqlite3").exists()


def test_simulate_refuses_workload_arrivals_with_tasks_from_elsewhere(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADWS_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "issues.json").write_text('[{"number": 1, "title": "Fix it", "labels": ["bug"]}]', encoding="utf-8")
    arrivals = tmp_path / "arrivals.toml"
    arrivals.write_text("[workload]\ntasks_per_day = 10\nerror_rate = 0\n", encoding="utf-8")
    assert main(["simulate", "--config", CONFIG, "--issues", str(tmp_path / "issues.json"),
                 "--workload", str(arrivals)]) == 2
    assert capsys.readouterr().err == (
        f"adws: {arrivals}: workload.tasks_per_day cannot apply with --issues: the tasks and their times come "
        "from there (the workload's size, error_rate and unseen_use do apply); remove workload.tasks_per_day, or "
        "leave --issues out to generate the tasks\n")
    sizes = tmp_path / "sizes.toml"  # what does apply to tasks from an issue list is taken
    sizes.write_text("[workload]\nerror_rate = 0\n[workload.size]\ninput = { median = 1000, p90 = 2000 }\n",
                     encoding="utf-8")
    assert main(["simulate", "--config", CONFIG, "--issues", str(tmp_path / "issues.json"), "--workload",
                 str(sizes), "--json"]) == 0
    assert '"tasks": 1' in capsys.readouterr().out


def test_dir_lists_the_public_names() -> None:
    import adws

    assert {"load", "Engine", "Task", "ModelRouter", "ProviderManager"} <= set(dir(adws))


def test_unreadable_inputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "prompt.md"
    bad.write_bytes(b"fix \xff it")
    assert main(["run", "--config", CONFIG, "--task-json", "{}", "--prompt-file", str(bad)]) == 2
    assert capsys.readouterr().err == "adws: prompt is not UTF-8 text: invalid start byte at byte 4\n"
    deep = "[" * 100_000 + "]" * 100_000
    assert main(["route", "--config", CONFIG, "--task-json", deep]) == 2
    assert capsys.readouterr().err == "adws: invalid task: task JSON is nested too deeply\n"
    huge = '{"id": "t", "number": ' + "9" * 5000 + "}"  # beyond Python's integer-digit limit: a ValueError
    assert main(["route", "--config", CONFIG, "--task-json", huge]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adws: invalid task: task is not valid JSON: Exceeds the limit (4300 digits)")
    assert err.count("\n") == 1


def test_an_unwritable_audit_log_does_not_lose_a_finished_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import os

    from tests.helpers import FAKES_BIN

    (tmp_path / "audit.jsonl").mkdir()  # a directory where the log file should be
    config = tmp_path / "config.toml"
    config.write_text('[providers.c]\ncommand_template = ["copilot", "-p", "{{ prompt }}", "--output-format", '
                      '"json"]\nprompt = "arg"\noutput_format = "copilot-json"\n[audit]\npath = "audit.jsonl"\n')
    (tmp_path / "p.md").write_text("Fix it")
    monkeypatch.setenv("PATH", f"{FAKES_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    code = main(["run", "--config", str(config), "--task-json", "{}", "--prompt-file", str(tmp_path / "p.md"),
                 "--workdir", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["success"] is True
    assert err.startswith(f"adws: cannot write the audit log {tmp_path / 'audit.jsonl'}: ")


# `adws route` parses its plain forms without argparse: whenever it does, it must give what argparse gives.
_ROUTE_TOKENS = st.sampled_from(["--config", "--task-json", "--github-issue", "--at", "--prompt-file", "--json",
                                 "--explain", "--assume-available", "--conf", "--json=1", "--at=x", "--config=",
                                 "-", "--", "-h", "x.toml", '{"title": "t"}', "-5", "", "route", "--bogus",
                                 "--task-json=-", "=", "--at=2026-11-18T13:00:00Z"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_ROUTE_TOKENS, max_size=7))
def test_route_arguments_parse_as_argparse_parses_them(tokens: list[str]) -> None:
    from adws.cli import _parser, _route_args

    argv = ["route", *tokens]
    fast = _route_args(argv)
    if fast is None:
        return
    assert vars(fast) == vars(_parser(argv).parse_args(argv))


@pytest.mark.parametrize("argv", [
    ["route", "--config", "c.toml", "--task-json", '{"title": "t"}', "--at", "2026-11-18T13:00:00Z", "--json"],
    ["route", "--task-json=-", "--explain", "--assume-available", "--prompt-file", "p.md", "--github-issue", "i"],
    ["route"],
])
def test_plain_route_arguments_need_no_argparse(argv: list[str]) -> None:
    from adws.cli import _parser, _route_args

    fast = _route_args(argv)
    assert fast is not None and vars(fast) == vars(_parser(argv).parse_args(argv))


@pytest.mark.parametrize("argv", [["route", "-h"], ["route", "--conf", "x"], ["route", "--json", "--json"],
                                  ["route", "--at"], ["route", "--at", "-1"], ["route", "--json=yes"], ["check"]])
def test_other_arguments_go_to_argparse(argv: list[str]) -> None:
    from adws.cli import _route_args

    assert _route_args(argv) is None


def test_warm_route_imports_no_argparse(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys, io, contextlib\nfrom adws.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main(['route', '--config', {str(ROOT / 'config.toml')!r}, '--task-json', '{{\"title\": \"t\"}}',"
            " '--json'])\nprint('argparse' in sys.modules)")
    env = {**__import__("os").environ, "ADWS_STATE_PATH": str(tmp_path / "none" / "s.sqlite3"),
           "ADWS_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    assert done.stdout.strip().splitlines()[-1] == "False"
