"""Shared by the issue-9 tests: a config whose providers run tests/hostile_agent.py, and an Engine over it."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from adws.config.load import compile_config, parse_toml
from adws.engine import Engine
from tests.helpers import TESTS, Clock

AGENT = TESTS / "hostile_agent.py"
SECRETS = {"KEY_A": "sk-live-aaaaaaaaaaaaaaaa", "KEY_B": "sk-live-bbbbbbbbbbbbbbbb",
           "H_API_KEY": "sk-shared-hhhhhhhhhhhh", "OTHER_TOKEN": "ghp_oooooooooooooooooooo",
           "SOME_SERVICE_PASSWORD": "hunter2-hunter2"}


def config_text(mode: str, backup: str = "ok", *, include_prompt: bool = False, extra: str = "",
                run_dir: str = "runs", audit_path: str = "audit.jsonl", timeout: float = 20) -> str:
    return f"""
[routing]
chain = ["h", "backup"]
[routing.retry]
max_retries = 0
[providers.h]
command_template = ["{sys.executable}", "{AGENT}", "{mode}", "{{{{ prompt | trim }}}}"]
prompt = "arg"
output_format = "text"
api_key_env = "H_API_KEY"
timeout = {timeout}
kill_grace = 1
[[providers.h.accounts]]
name = "a"
api_key_env = "KEY_A"
[[providers.h.accounts]]
name = "b"
api_key_env = "KEY_B"
[providers.backup]
command_template = ["{sys.executable}", "{AGENT}", "{backup}", "{{{{ prompt }}}}"]
prompt = "arg"
output_format = "text"
api_key_env = "OTHER_TOKEN"
timeout = {timeout}
kill_grace = 1
[audit]
path = "{audit_path}"
include_prompt = {str(include_prompt).lower()}
[run]
dir = "{run_dir}"
{extra}
"""


def engine(tmp_path: Path, text: str, environ: Mapping[str, str] | None = None) -> Engine:
    config = compile_config(parse_toml(text), "hostile.toml", base_dir=str(tmp_path))
    env = {"PATH": "/usr/bin:/bin", "ADWS_STATE_PATH": str(tmp_path / "state.sqlite3"),
           "HOSTILE_PIDFILE": str(tmp_path / "pids"), **SECRETS, **(environ or {})}
    return Engine(config, environ=env, clock=Clock(), sleep=lambda s: None)
