"""`adws run` stopped by SIGTERM: the agent's whole process group goes too, and the audit log keeps the task."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from adws import audit
from tests.helpers import FAKES_BIN, ROOT

CONFIG = """
[routing]
chain = ["claude"]
[providers.claude]
command_template = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
prompt = "stdin"
output_format = "claude-stream-json"
timeout = 60
kill_grace = 1
max_concurrency = 1
[audit]
path = "audit.jsonl"
"""


def _live_members(pgid: int) -> list[int]:
    """Processes of the group that are still running (zombies awaiting a reaper do not count)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def _group_alive(pgid: int) -> bool:
    deadline = time.monotonic() + 5
    while _live_members(pgid):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_stops_the_agent_group_releases_the_slot_and_keeps_the_audit_record(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "prompt.md").write_text("Fix it", encoding="utf-8")
    env = {
        **os.environ, "PATH": f"{FAKES_BIN}{os.pathsep}{os.environ['PATH']}", "FAKE_SCENARIO": "hang",
        "FAKE_AGENT_LOG": str(tmp_path / "agents.jsonl"), "ADWS_STATE_PATH": str(tmp_path / "state.sqlite3"),
        "ADWS_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "adws", "run", "--config", str(tmp_path / "config.toml"), "--task-json",
         '{"number": 5, "title": "t"}', "--prompt-file", str(tmp_path / "prompt.md"), "--workdir", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 20
    while not audit.read(tmp_path / "agents.jsonl"):
        assert time.monotonic() < deadline, "the fake agent never started"
        time.sleep(0.05)
    agent_pid = audit.read(tmp_path / "agents.jsonl")[0]["pid"]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    # The attempt was announced as it started; then the interruption, as the last line.
    assert err.splitlines()[0].endswith("#5 attempt 1 tier 1 claude: started")
    assert err.splitlines()[-1] == "adws: interrupted by SIGTERM; the agent's processes were stopped"
    assert not _group_alive(agent_pid)
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert (record["success"], record["message"]) == (
        False, "interrupted by SIGTERM after 1 attempt(s); the agent's processes were stopped")
    assert record["task"]["number"] == 5
    # The concurrency slot was released: the next decision can use the provider at once.
    routed = subprocess.run(
        [sys.executable, "-m", "adws", "route", "--config", str(tmp_path / "config.toml"), "--task-json", "{}",
         "--json"], env=env, capture_output=True, text=True, timeout=30)
    assert json.loads(routed.stdout)["provider"] == "claude", routed.stderr
