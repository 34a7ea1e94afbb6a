"""Fixtures every test module may use. Shared plain helpers live in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from adws.config.load import compile_config, parse_toml, read_toml
from adws.engine import Engine
from tests.helpers import ROOT, WEDNESDAY, Clock
from tests.redis_server import redis_prefix, redis_url  # noqa: F401 - fixtures for the Redis state tests


@pytest.fixture
def shipped_config_path() -> Path:
    return ROOT / "config.toml"


@pytest.fixture
def fixed_now() -> datetime:
    return WEDNESDAY


@pytest.fixture(autouse=True)
def _private_config_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never read or write the user's real cache of compiled configs.
    monkeypatch.setenv("ADWS_CACHE_DIR", str(tmp_path_factory.mktemp("adws-cache")))
    # Human output folds to COLUMNS when set: tests that need a width set it themselves.
    monkeypatch.delenv("COLUMNS", raising=False)
    # A reset clock Codex prints is read in the host's zone (adws.parsers.reset.host_zone): tests that expect a
    # reading give the zone they mean, and the others read UTC on any host.
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(env: dict[str, str], text: str | None = None, clock: Clock | None = None,
             sleeps: list[float] | None = None) -> Engine:
        raw = parse_toml(text) if text is not None else read_toml(ROOT / "config.toml")
        config = compile_config(raw, "test-config", base_dir=str(tmp_path))
        engine = Engine(config, environ=env, clock=clock or Clock(),
                        sleep=(sleeps.append if sleeps is not None else lambda s: None))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
