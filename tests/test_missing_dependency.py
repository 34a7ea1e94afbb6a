"""adws's code on a Python where one of its dependencies is not installed (a checkout run outside its virtualenv, an
editable install older than a dependency): one line naming the package, never a traceback."""

from __future__ import annotations

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
