"""adws: a declarative, TOML-driven router for coding-agent CLIs.

    engine = adws.load("config.toml")
    decision = engine.route(task)                          # pure: where it would run, and why
    result = engine.run(task, prompt=text, workdir=path)   # runs it, falling through the chain

Names are imported on first use (PEP 562) so that `adws route` does not pay for the runner, the parsers or
pydantic when it does not need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AdwsError": "adws.errors", "ArgumentError": "adws.errors", "ConfigError": "adws.errors",
    "Problem": "adws.errors", "PromptError": "adws.errors", "RenderError": "adws.errors", "TaskError": "adws.errors",
    "WorkdirError": "adws.errors",
    "Decision": "adws.decision", "Skip": "adws.decision", "Step": "adws.decision",
    "Engine": "adws.engine", "load": "adws.engine",
    "Attempt": "adws.result", "ProviderManager": "adws.manager", "Result": "adws.result",
    "Explanation": "adws.router", "ModelRouter": "adws.router",
    "Task": "adws.task",
}
__all__ = [
    "AdwsError", "ArgumentError", "Attempt", "ConfigError", "Decision", "Engine", "Explanation", "ModelRouter",
    "Problem", "PromptError", "ProviderManager", "RenderError", "Result", "Skip", "Step", "Task", "TaskError",
    "WorkdirError", "load",
]

if TYPE_CHECKING:
    from adws.decision import Decision, Skip, Step
    from adws.engine import Engine, load
    from adws.errors import (
        AdwsError,
        ArgumentError,
        ConfigError,
        Problem,
        PromptError,
        RenderError,
        TaskError,
        WorkdirError,
    )
    from adws.manager import ProviderManager
    from adws.result import Attempt, Result
    from adws.router import Explanation, ModelRouter
    from adws.task import Task


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'adws' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
