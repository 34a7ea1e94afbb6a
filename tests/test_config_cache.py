"""The compiled-config cache: used when nothing changed, never when the file did."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from adws.config import cache_dir, load_config
from adws.errors import ConfigError
from tests.conftest import ROOT


def test_second_load_comes_from_the_cache_and_routes_the_same(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text((ROOT / "config.toml").read_text())
    first = load_config(path)
    cached = list(cache_dir().glob("config-*.pickle"))
    assert len(cached) == 1
    second = load_config(path)
    assert second is not first
    assert [r.name for r in second.rules] == [r.name for r in first.rules]
    assert pickle.loads(cached[0].read_bytes()).chain == first.chain


def test_an_edited_file_is_validated_again(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text((ROOT / "config.toml").read_text())
    load_config(path)
    path.write_text(path.read_text().replace('[routing]\nenabled = true', '[routing]\nenabeld = true'))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert 'routing: unknown key "enabeld" (did you mean "enabled"?)' in caught.value.render()


def test_a_corrupt_cache_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text((ROOT / "config.toml").read_text())
    load_config(path)
    for entry in cache_dir().glob("config-*.pickle"):
        entry.write_bytes(b"not a pickle")
    assert load_config(path).default_provider == "antigravity"


def test_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADWS_CONFIG_CACHE", "off")
    path = tmp_path / "config.toml"
    path.write_text((ROOT / "config.toml").read_text())
    load_config(path)
    assert not list(cache_dir().glob("config-*.pickle"))
