"""What many tests share: paths to the repository and its test data, a settable clock, fake-agent environments
and the Claude-backed test config. Plain values and functions; the fixtures that use them are in conftest.py."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adws.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
FAKES = TESTS / "fakes"
FAKES_BIN = FAKES / "bin"

WEDNESDAY = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)  # no night or weekend rule applies in the shipped config
NOW = WEDNESDAY


def config_problems(text: str, source: str = "<string>") -> list[str]:
    """The problems, as shown, that compiling the config `text` reports (it must report some)."""
    import pytest

    from adws.config.load import compile_config, parse_toml
    from adws.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        compile_config(parse_toml(text), source)
    return [str(problem) for problem in info.value.problems]


class Clock:
    """An injectable clock that tests move by hand (`clock.now = ...`)."""

    def __init__(self, start: datetime = WEDNESDAY) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def fake_env(tmp_path: Path, **scenarios: str) -> dict[str, str]:
    env = {
        "PATH": f"{FAKES_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path / "home"),
        "ADWS_STATE_PATH": str(tmp_path / "state.sqlite3"),
        "FAKE_AGENT_LOG": str(tmp_path / "agents.jsonl"),
        "FAKE_NOW": str(int(NOW.timestamp())),
    }
    env.update({f"FAKE_SCENARIO_{k.upper()}": v for k, v in scenarios.items()})
    return env


CLAUDE_CONFIG = """
[routing]
chain = ["claude", "backup"]
[routing.retry]
max_retries = 2
backoff_seconds = 1
backoff_factor = 3
max_backoff_seconds = 2
[routing.circuit_breaker]
failure_threshold = 2
cooldown = "10m"
[providers.claude]
command_template = ["claude", "-p", "--output-format", "stream-json", "--verbose", "--model", "{{ model }}"]
prompt = "stdin"
output_format = "claude-stream-json"
timeout = TIMEOUT
kill_grace = 0.5
api_key_env = "ANTHROPIC_API_KEY"
[providers.claude.models.sonnet]
context_window = 200000
[[providers.claude.accounts]]
name = "a"
api_key_env = "KEY_A"
[[providers.claude.accounts]]
name = "b"
api_key_env = "KEY_B"
[providers.backup]
command_template = ["copilot", "-p", "{{ prompt }}", "--output-format", "json"]
prompt = "arg"
output_format = "copilot-json"
[audit]
path = "audit.jsonl"
"""


def claude_engine(make_engine: Callable[..., Engine], env: dict[str, str], timeout: float = 30,
                  threshold: int = 2, **kw: Any) -> Engine:
    env = {**env, "KEY_A": "sk-secret-aaaaaaaa", "KEY_B": "sk-secret-bbbbbbbb"}
    config = CLAUDE_CONFIG.replace("TIMEOUT", str(timeout)).replace("failure_threshold = 2",
                                                                    f"failure_threshold = {threshold}")
    return make_engine(env, config, **kw)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (exists and is not a zombie), read from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# The tail of a test config whose audit log, run directories and state store lie beside it (in the test's tmp_path).
RECORDS_BESIDE = """[audit]
path = "audit.jsonl"
[run]
dir = "runs"
[state]
path = "state.sqlite3"
"""
