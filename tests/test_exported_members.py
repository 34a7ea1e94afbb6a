"""The public surface is curated: `adws.__all__` is exactly the documented names, each importable and in the README.

Like httpx's tests/test_exported_members.py: adding a public name is a decision made here, in the README and in
`adws/__init__.py` together, never a side effect of an import.
"""

from __future__ import annotations

import re

import adws
from tests.helpers import ROOT

DOCUMENTED = {
    "AdwsError", "ArgumentError", "Attempt", "ConfigError", "Decision", "Engine", "Explanation", "ModelRouter",
    "Problem", "PromptError", "ProviderManager", "RenderError", "Result", "Skip", "Step", "Task", "TaskError",
    "WorkdirError", "load",
}


def test_all_equals_the_documented_names() -> None:
    assert set(adws.__all__) == DOCUMENTED
    assert len(adws.__all__) == len(set(adws.__all__))


def test_every_exported_name_resolves_and_is_named_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in adws.__all__:
        assert getattr(adws, name) is not None
        assert re.search(rf"\b(adws\.)?{name}\b", readme), f"{name} is exported but the README never names it"


def test_dir_lists_the_public_names_and_unknown_names_raise() -> None:
    assert set(dir(adws)) >= DOCUMENTED
    try:
        adws.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown attribute must raise AttributeError")
