"""Shared fixtures: paths to test data, the shipped config, and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.redis_server import redis_prefix, redis_url  # noqa: F401 - fixtures for the Redis state tests

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
FAKES_BIN = TESTS / "fakes" / "bin"


WEDNESDAY = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)  # no night or weekend rule applies in the shipped config


class Clock:
    """An injectable clock that tests move by hand (`clock.now = ...`)."""

    def __init__(self, start: datetime = WEDNESDAY) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def shipped_config_path() -> Path:
    return ROOT / "config.toml"


@pytest.fixture
def fixed_now() -> datetime:
    # A Wednesday afternoon: no night or weekend rule applies in the shipped config.
    return datetime(2026, 11, 18, 13, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _private_config_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never read or write the user's real cache of compiled configs.
    monkeypatch.setenv("ADWS_CACHE_DIR", str(tmp_path_factory.mktemp("adws-cache")))
    # Human output folds to COLUMNS when set: tests that need a width set it themselves.
    monkeypatch.delenv("COLUMNS", raising=False)
