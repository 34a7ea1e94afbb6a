"""adws: a declarative, TOML-driven router for coding-agent CLIs.

    engine = adws.load("config.toml")
    decision = engine.route(task)                      # pure: where it would run, and why
    result = engine.run(task, prompt=..., workdir=...)  # runs it, falling through the chain
"""

from __future__ import annotations

from adws.decision import Decision, Skip, Step
from adws.engine import Engine, load
from adws.errors import AdwsError, ConfigError, Problem, RenderError, TaskError
from adws.manager import Attempt, ProviderManager, Result
from adws.router import Explanation, ModelRouter
from adws.task import Task

__version__ = "0.1.0"
__all__ = [
    "AdwsError", "Attempt", "ConfigError", "Decision", "Engine", "Explanation", "ModelRouter", "Problem",
    "ProviderManager", "RenderError", "Result", "Skip", "Step", "Task", "TaskError", "load",
]
