"""Fixtures for the insight commands: a small config with two metered tiers, written to a file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

SMALL = """
[routing]
default_provider = "alpha"
chain = ["alpha", "beta", "gamma"]
timezone = "UTC"

{rules}

[providers.alpha]
command_template = ["alpha-cli", "--model", "{{{{ model }}}}"]
prompt = "stdin"
output_format = "claude-json"
[providers.alpha.quota]
tokens = {alpha_tokens}
reset = "0 0 * * 1"
timezone = "UTC"
hard_block_percent = {hard}
[providers.alpha.models.a1]
context_window = 200000
latency_ms = 500
cost_per_1k_tokens = 0.01
[[providers.alpha.accounts]]
name = "one"
[[providers.alpha.accounts]]
name = "two"

[providers.beta]
command_template = ["beta-cli", "{{{{ model }}}}"]
prompt = "stdin"
output_format = "cline-json"
[providers.beta.models.b1]
context_window = 200000
latency_ms = 200

[providers.gamma]
command_template = ["gamma-cli"]
prompt = "stdin"
output_format = "text"
[providers.gamma.models.g1]
context_window = 200000

[audit]
path = "audit.jsonl"

{extra}
"""


def small_config_text(rules: str = "", *, alpha_tokens: int = 1_000_000, hard: float = 95, extra: str = "") -> str:
    return SMALL.format(rules=rules, alpha_tokens=alpha_tokens, hard=hard, extra=extra)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(rules: str = "", *, name: str = "config.toml", **kw: Any) -> Path:
        path = tmp_path / name
        path.write_text(small_config_text(rules, **kw), encoding="utf-8")
        return path
    return write


def write_audit(path: Path, records: Iterable[Mapping[str, Any]], *, torn: bool = False) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
        if torn:
            fh.write('{"at": "2026-11-18T10:00:00+00:00", "task"')  # a crash mid-write
    return path


def attempt(provider: str, outcome: str = "success", *, account: str | None = None, model: str | None = None,
            ms: int = 1000, tokens: tuple[int, int] = (100, 50), cost: float = 0.0,
            at: str = "2026-11-18T10:00:00+00:00") -> dict[str, Any]:
    return {"provider": provider, "model": model, "account": account, "outcome": outcome, "reason": outcome,
            "exit_code": 0 if outcome == "success" else 1, "signal": None, "duration_ms": ms,
            "usage": {"requests": 1, "input_tokens": tokens[0], "output_tokens": tokens[1], "cost_usd": cost,
                      "estimated": False},
            "command": [], "started_at": at, "action": "stop", "reset_at": None}


def record(attempts: list[dict[str, Any]], *, at: str = "2026-11-18T10:00:00+00:00", rule: str = "default",
           task: Mapping[str, Any] | None = None) -> dict[str, Any]:
    first = attempts[0] if attempts else {}
    return {"at": at, "task": dict(task or {"id": "t", "number": None, "labels": [], "retry_count": 0}),
            "success": bool(attempts) and attempts[-1]["outcome"] == "success", "message": "",
            "decision": {"provider": first.get("provider"), "model": first.get("model"), "account": None,
                         "rule": rule, "reasons": [], "plan": [], "skipped": [], "at": at,
                         "task": {"id": "t", "priority": "normal", "specialization": "general",
                                  "context_tokens": 10, "context_estimated": True}},
            "attempts": attempts}
