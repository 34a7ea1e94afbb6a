"""adws's code on a Python where one of its dependencies is not installed (a checkout run outside its virtualenv, an
editable install older than a dependency): one line naming the package, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from adws.cli import main
from adws.errors import DEPENDENCY_MODULES, missing_dependency
from tests.helpers import ROOT


def test_every_declared_dependency_has_its_module() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["redis"]]
    names = {re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower() for requirement in declared}
    assert names == set(DEPENDENCY_MODULES.values())


def test_only_adws_dependencies_are_named() -> None:
    assert missing_dependency(ModuleNotFoundError("No module named 'nope'", name="nope")) is None
    assert missing_dependency(ImportError("cannot import name 'x' from 'jinja2'", name="jinja2")) is None  # a bug
    line = missing_dependency(ModuleNotFoundError("No module named 're2'", name="re2"))
    assert line is not None and line.startswith(f"the package 'google-re2' (module re2) is not installed for "
                                                f"{sys.executable}: install adws with its dependencies again")


def test_adws_says_which_package_is_missing(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "re2", None)  # `import re2` raises ModuleNotFoundError
    monkeypatch.setenv("ADWS_CONFIG_CACHE", "off")  # the config is validated, so re2 is imported
    assert main(["check", str(ROOT / "config.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adws: the package 'google-re2' (module re2) is not installed for ") and err.count("\n") == 1


def test_the_maintainer_tools_say_it_too(tmp_path: Path) -> None:
    # A Python where `import re2` fails: a sitecustomize that blocks it, as a missing package would.
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['re2'] = None\n", encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(block), "ADWS_CONFIG_CACHE": "off", "HOME": str(tmp_path)}
    for tool in ("show-routing.py", "show-providers.py"):
        done = subprocess.run([sys.executable, str(ROOT / "tools" / tool), "--config", str(ROOT / "config.toml")],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"{tool}: the package 'google-re2' (module re2) is not installed for ")
        assert "Traceback" not in done.stderr


def test_every_missing_dependency_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Python with pydantic and jinja2 only (a system python3): one install mends all, so all are named.
    monkeypatch.setitem(sys.modules, "croniter", None)
    monkeypatch.setitem(sys.modules, "stringzilla", None)
    monkeypatch.setitem(sys.modules, "redis", None)  # an extra: not named unless it is the one imported
    line = missing_dependency(ModuleNotFoundError("No module named 're2'", name="re2"))
    assert line is not None and line.startswith(
        f"the packages 'google-re2', 'croniter', 'stringzilla' are not installed for {sys.executable}: install adws")


def test_a_tool_without_its_dependencies_runs_again_under_the_checkouts_virtualenv(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # `tools/show-routing.py` run by its `python3` shebang with the README's .venv not activated.
    from adws import cli

    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    monkeypatch.setenv(cli.TOOL_VENV_ENV, "")  # unset as far as adws can tell; restored after the test
    real = cli.checkout_venv
    monkeypatch.setattr(cli, "checkout_venv", lambda: real(str(tmp_path)))  # the checkout: tmp_path
    monkeypatch.setattr(sys, "argv", ["tools/show-routing.py", "--json"])
    ran: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        ran.append([path, *argv])
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", execv)

    def body() -> int:
        raise ModuleNotFoundError("No module named 're2'", name="re2")

    with pytest.raises(SystemExit):
        cli.tool_main(body)
    assert ran == [[str(venv_python), str(venv_python), "tools/show-routing.py", "--json"]]
    assert os.environ[cli.TOOL_VENV_ENV] == "1"
    # Run again there and still without it: one line, no third run.
    assert cli.tool_main(body) == 2
    assert capsys.readouterr().err.startswith("show-routing.py: the package 'google-re2' (module re2) is not installed")
    assert len(ran) == 1


def test_no_virtualenv_or_its_own_is_not_run_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adws import cli

    monkeypatch.setenv(cli.TOOL_VENV_ENV, "")  # unset as far as adws can tell; restored after the test
    assert cli.checkout_venv(str(tmp_path)) is None  # no .venv
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))  # running in it already
    assert cli.checkout_venv(str(tmp_path)) is None
