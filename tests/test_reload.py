"""Hot reload: real edits of a config file seen by a long-running engine, between tasks, at most one stat per
interval; a broken edit keeps the last valid config (degraded, logged once) and strict mode refuses runs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

import adws
from adws.errors import AdwsError, ConfigError
from adws.reload import ConfigWatcher
from tests.helpers import fake_env

CONFIG = """
[routing]
chain = ["first", "second"]
[providers.first]
command_template = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
prompt = "stdin"
output_format = "claude-stream-json"
[providers.second]
command_template = ["copilot", "-p", "{{ prompt }}", "--output-format", "json"]
prompt = "arg"
output_format = "copilot-json"
[audit]
path = "audit.jsonl"
[state]
path = "state.sqlite3"
"""


def write(path: Path, text: str) -> None:
    """Replace the file the way editors do (a new inode), so the edit is seen whatever the mtime granularity."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ADWS_STATE_PATH", raising=False)
    path = tmp_path / "config.toml"
    write(path, CONFIG)
    return path


def engine_for(path: Path, **options: Any) -> adws.Engine:
    return adws.load(path, reload=True, reload_interval=0, which=lambda name: f"/bin/{name}", environ={},
                     **options)


def test_an_edit_is_used_by_the_next_task(config_path: Path) -> None:
    engine = engine_for(config_path)
    assert engine.route({"title": "t"}).provider == "first"
    write(config_path, CONFIG.replace('chain = ["first", "second"]', 'chain = ["second", "first"]'))
    assert engine.route({"title": "t"}).provider == "second"
    assert engine.config_status.ok
    engine.close()


def test_a_broken_edit_keeps_the_last_valid_config_logs_once_and_clears_when_fixed(
    config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_for(config_path)
    write(config_path, CONFIG.replace('chain = ["first", "second"]', 'chain = ["first", "nowhere"]'))
    with caplog.at_level(logging.WARNING, logger="adws"):
        for _ in range(3):
            assert engine.route({"title": "t"}).provider == "first"
            write(config_path, CONFIG.replace('chain = ["first", "second"]', 'chain = ["first", "nowhere"]'))
    status = engine.config_status
    assert status.state == "degraded" and not status.ok
    assert status.source == str(config_path)
    assert status.problems == ('routing → chain[1]: unknown provider "nowhere"; providers: first, second',)
    assert [r.getMessage() for r in caplog.records] == [  # once, though the broken file was seen three times
        f"keeping the last valid config; {config_path}: 1 problem in config\n"
        f'  {config_path}:3: routing → chain[1]: unknown provider "nowhere"; providers: first, second']
    assert engine.route({"title": "t"}).plan[1].provider == "second"  # still the last valid chain

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="adws"):
        write(config_path, CONFIG.replace('chain = ["first", "second"]', 'chain = ["second"]'))
        assert engine.route({"title": "t"}).provider == "second"
    assert engine.config_status.ok and engine.config_status.problems == ()
    assert [r.getMessage() for r in caplog.records] == [f"{config_path}: loads again; the edit is in use"]
    engine.close()


def test_strict_mode_refuses_new_runs_while_degraded(config_path: Path, tmp_path: Path) -> None:
    engine = engine_for(config_path, strict=True)
    write(config_path, "[routing\n")
    with pytest.raises(ConfigError) as exc:
        engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert str(exc.value).splitlines()[:2] == [
        f"{config_path}: 2 problems in config",
        "  refusing new runs (strict mode): the edited config does not load; the problems follow",
    ]
    assert engine.route({"title": "t"}).provider == "first"  # routing still answers from the last valid config
    assert not (tmp_path / "audit.jsonl").exists()
    engine.close()


def test_a_run_in_flight_keeps_the_config_it_started_with(config_path: Path, tmp_path: Path) -> None:
    env = fake_env(tmp_path, claude="error_result_exit0", copilot="success")
    engine = adws.load(config_path, reload=True, reload_interval=0, environ=env)
    real_runner = engine.manager.runner

    def editing_runner(*args: Any, **kwargs: Any) -> Any:
        # While the first attempt runs, the file changes so that the next tier would no longer exist.
        write(config_path, CONFIG.replace('chain = ["first", "second"]', 'chain = ["first"]'))
        engine.reload()
        return real_runner(*args, **kwargs)

    engine.manager.runner = editing_runner
    result = engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert [a.provider for a in result.attempts] == ["first", "second"]  # the plan it started with
    assert result.success
    assert engine.config.chain == ("first",)  # the edit is in use for the next task
    assert engine.route({"title": "t"}).plan[-1].provider == "first"
    engine.close()


def test_the_state_store_cannot_change_under_a_running_engine(config_path: Path) -> None:
    engine = engine_for(config_path)
    write(config_path, CONFIG.replace('path = "state.sqlite3"', 'path = "other.sqlite3"'))
    status = engine.reload()
    assert status.problems == ("state: the state store cannot change while the engine runs; restart the "
                               "coordinator to use the new [state]",)
    engine.close()


def test_reload_needs_a_file(shipped_config_path: Path) -> None:
    from adws.config import load_config

    engine = adws.Engine(load_config(shipped_config_path), environ={"ADWS_STATE_PATH": ":memory:"})
    with pytest.raises(AdwsError) as exc:
        engine.reload()
    assert str(exc.value) == ("this engine was built from a compiled config, not a file: nothing to reload "
                              "(use adws.load(path))")
    engine.close()


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_watcher_stats_at_most_once_per_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    write(path, "a")
    ticks = Ticks()
    watcher = ConfigWatcher(str(path), 2.0, ticks)
    stats: list[str] = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: (stats.append(str(p)), real_stat(p, *a, **k))[1])
    assert not watcher.changed()
    write(path, "b")
    ticks.now = 1.9
    assert not watcher.changed()  # inside the interval: not even a stat
    ticks.now = 2.0
    assert watcher.changed()
    assert not watcher.changed(force=True)  # seen once
    assert stats == [str(path)] * 3  # at 0, at 2.0 and the forced look: none at 1.9
    path.unlink()
    assert watcher.changed(force=True)  # a deleted file is a change too (and fails to load)
    with pytest.raises(ValueError):
        ConfigWatcher(str(path), -1)
