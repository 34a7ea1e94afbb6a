"""`adws` argument handling shared by every command."""

from __future__ import annotations

import pytest

from adws import __version__
from adws.cli import main
from tests.conftest import ROOT

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
])
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, "--config", CONFIG]) == 2
    assert capsys.readouterr().err == message


def test_dir_lists_the_public_names() -> None:
    import adws

    assert {"load", "Engine", "Task", "ModelRouter", "ProviderManager"} <= set(dir(adws))
