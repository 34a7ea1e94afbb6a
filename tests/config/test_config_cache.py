"""The compiled-config cache: used when nothing changed, never when the file did; data that is verified or
ignored, never executed, never a traceback."""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import pytest

from adws.compiled import CompiledConfig
from adws.config import _key, cache_dir, load_config, read_entry, write_entry
from adws.config.codec import CacheError, decode, encode
from adws.config.load import compile_config, parse_toml
from adws.errors import ConfigError
from tests.helpers import ROOT


def _copy_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text((ROOT / "config.toml").read_text())
    return path


def _entries() -> list[Path]:
    return list(cache_dir().glob("config-*.json"))


def test_second_load_comes_from_the_cache_and_routes_the_same(tmp_path: Path) -> None:
    path = _copy_config(tmp_path)
    first = load_config(path)
    cached = _entries()
    assert len(cached) == 1
    second = load_config(path)
    assert second is not first
    assert encode(second, CompiledConfig) == encode(first, CompiledConfig)
    assert [r.name for r in second.rules] == [r.name for r in first.rules]
    # The rebuilt conditions decide as the validated ones do.
    from datetime import datetime

    from adws.engine import Engine

    one, two = Engine(first, environ={}), Engine(second, environ={})
    for scenario in first.scenarios:
        now = datetime.fromisoformat(scenario.at) if scenario.at else datetime(2026, 11, 18, 13, 0).astimezone()
        task = dict(scenario.task)
        assert one.router.route(task, now=now).to_dict() == two.router.route(task, now=now).to_dict()


def test_the_warm_load_and_route_import_neither_pydantic_nor_jinja2_nor_croniter(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = _copy_config(tmp_path)
    load_config(path)
    # Also routing every scenario of the shipped config (which has a `schedule` rule): the cron expansions
    # come from the cache, so croniter is not needed either.
    code = ("import sys; from adws.config import load_config; from adws.engine import Engine; "
            "c = load_config(sys.argv[1]); e = Engine(c, environ={'ADWS_STATE_PATH': '/nonexistent/s'}); "
            "[e.router.route(dict(s.task)) for s in c.scenarios]; "
            "print(sorted(m for m in ('pydantic', 'jinja2', 'croniter') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                          env={**os.environ, "ADWS_CACHE_DIR": str(cache_dir())})
    assert done.stdout.strip() == "[]"


def test_an_edited_file_is_validated_again(tmp_path: Path) -> None:
    path = _copy_config(tmp_path)
    load_config(path)
    path.write_text(path.read_text().replace('[routing]\nenabled = true', '[routing]\nenabeld = true'))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert 'routing: unknown key "enabeld" (did you mean "enabled"?)' in caught.value.render()


def test_an_edit_landing_during_validation_is_never_cached_as_the_old_config(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import adws.config.load as load

    path = _copy_config(tmp_path)
    validate = load.load_file

    def edited_meanwhile(where: Path, data: bytes | None = None) -> CompiledConfig:
        config = validate(where, data)
        path.write_text(path.read_text().replace('[routing]\nenabled = true', '[routing]\nenabeld = true'))
        return config

    monkeypatch.setattr(load, "load_file", edited_meanwhile)
    load_config(path)  # validated the bytes before the edit, and cached them under their own key
    monkeypatch.setattr(load, "load_file", validate)
    with pytest.raises(ConfigError) as caught:  # the edited bytes have no entry: they are validated
        load_config(path)
    assert 'routing: unknown key "enabeld"' in caught.value.render()


def test_a_corrupt_cache_file_is_ignored(tmp_path: Path) -> None:
    path = _copy_config(tmp_path)
    load_config(path)
    for entry in _entries():
        entry.write_bytes(b"not a cache entry")
    assert load_config(path).default_provider == "antigravity"


def test_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADWS_CONFIG_CACHE", "off")
    load_config(_copy_config(tmp_path))
    assert not _entries()


def test_a_planted_pickle_is_never_executed(tmp_path: Path) -> None:
    path = _copy_config(tmp_path)
    load_config(path)
    marker = tmp_path / "pwned"

    class Plant:
        def __reduce__(self) -> tuple[object, ...]:
            return (Path.write_text, (marker, "ran"))

    for entry in _entries():
        entry.write_bytes(pickle.dumps(Plant()))
    assert load_config(path).default_provider == "antigravity"
    assert not marker.exists()


def _same(found: CompiledConfig | None, config: CompiledConfig) -> bool:
    """The same config as data (compiled conditions are rebuilt objects: compared through their source)."""
    return found is not None and encode(found, CompiledConfig) == encode(config, CompiledConfig)


def _one_entry(tmp_path: Path) -> tuple[Path, CompiledConfig, str, Path]:
    path = _copy_config(tmp_path)
    config = load_config(path)
    [entry] = _entries()
    return path, config, _key(path.resolve(), path.read_bytes()), entry


def test_a_directory_others_can_write_is_neither_read_nor_fed(tmp_path: Path) -> None:
    path, config, key, entry = _one_entry(tmp_path)
    assert _same(read_entry(key), config)
    cache_dir().chmod(0o777)
    try:
        assert read_entry(key) is None
        entry.unlink()
        assert _same(load_config(path), config)
        assert not _entries()  # nothing written where another user could swap it
    finally:
        cache_dir().chmod(0o700)


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_an_entry_others_can_write_is_ignored(tmp_path: Path, mode: int) -> None:
    _, config, key, entry = _one_entry(tmp_path)
    entry.chmod(mode)
    assert read_entry(key) is None
    entry.chmod(0o600)
    assert _same(read_entry(key), config)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_an_entry_owned_by_another_user_is_ignored(tmp_path: Path) -> None:
    _, config, key, entry = _one_entry(tmp_path)
    os.chown(entry, 4242, -1)
    assert read_entry(key) is None
    os.chown(entry, os.geteuid(), -1)
    assert _same(read_entry(key), config)
    os.chown(cache_dir(), 4242, -1)
    try:
        assert read_entry(key) is None
    finally:
        os.chown(cache_dir(), os.geteuid(), -1)


def test_a_symlinked_entry_is_not_followed(tmp_path: Path) -> None:
    _, _, key, entry = _one_entry(tmp_path)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(entry.read_bytes())
    entry.unlink()
    entry.symlink_to(elsewhere)
    assert read_entry(key) is None


def test_an_entry_under_another_key_is_ignored(tmp_path: Path) -> None:
    _, config, key, entry = _one_entry(tmp_path)
    other = "0" * 64
    (cache_dir() / f"config-{other[:40]}.json").write_bytes(entry.read_bytes())
    assert read_entry(other) is None
    assert _same(read_entry(key), config)


def _mutate(blob: bytes, rng: random.Random) -> bytes:
    data = bytearray(blob)
    kind = rng.randrange(6)
    if kind == 0:  # truncated
        return bytes(data[:rng.randrange(len(data))])
    if kind == 1:  # flipped bits
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 2:  # bytes inserted
        at = rng.randrange(len(data))
        return bytes(data[:at] + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16))) + data[at:])
    if kind == 3:  # a span deleted
        at = rng.randrange(len(data))
        return bytes(data[:at] + data[at + rng.randint(1, 64):])
    if kind == 4:  # a byte overwritten with a JSON-significant one
        data[rng.randrange(len(data))] = rng.choice(b'{}[]",:0n\n\\')
        return bytes(data)
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))  # garbage


def test_fuzz_corrupted_entries_are_ignored_and_the_config_is_right(tmp_path: Path) -> None:
    path, config, key, entry = _one_entry(tmp_path)
    original = entry.read_bytes()
    rng = random.Random(9)
    ignored = 0
    for _ in range(300):
        broken = _mutate(original, rng)
        entry.write_bytes(broken)
        found = read_entry(key)  # must not raise
        if broken != original:
            assert found is None
            ignored += 1
    assert ignored >= 290
    entry.write_bytes(_mutate(original, rng))
    assert _same(load_config(path), config)  # validated again, and stored afresh
    assert _same(read_entry(key), config)


def _json_mutations(value: object, rng: random.Random) -> object:
    """A structurally altered copy of decoded JSON: wrong types, missing or extra keys, odd values."""
    if isinstance(value, dict):
        out = {k: _json_mutations(v, rng) if rng.random() < 0.3 else v for k, v in value.items()}
        if out and rng.random() < 0.1:
            out.pop(rng.choice(list(out)))
        if rng.random() < 0.05:
            out["$"] = rng.choice(["tuple", "datetime", "nope", 3])
        return out
    if isinstance(value, list):
        out_list = [_json_mutations(v, rng) if rng.random() < 0.3 else v for v in value]
        if out_list and rng.random() < 0.1:
            out_list.pop()
        return out_list
    if rng.random() < 0.2:
        return rng.choice([None, True, 0, -1, 1.5, float("inf"), "", "x" * 3, [], {}, [[1]], {"$": "date", "v": "?"},
                           10**400, "\ud800"])
    return value


def test_fuzz_resealed_structural_damage_never_raises(tmp_path: Path) -> None:
    """Even a damaged entry whose checksum was recomputed (only its owner could do that) is decoded against
    the declared types: the result is a CompiledConfig or nothing, never an exception."""
    from adws.config import _FORMAT, _seal

    _, _, key, entry = _one_entry(tmp_path)
    _header, _, payload = entry.read_bytes().partition(b"\n")
    data = json.loads(payload)
    rng = random.Random(11)
    decoded = 0
    for _ in range(200):
        mutated = json.dumps(_json_mutations(data, rng)).encode("utf-8", "surrogatepass")
        seal = json.dumps({"format": _FORMAT, "key": key, "sha256": _seal(key, mutated)}).encode()
        entry.write_bytes(seal + b"\n" + mutated)
        found = read_entry(key)
        assert found is None or isinstance(found, CompiledConfig)
        decoded += found is not None
    assert decoded < 200


def test_deep_nesting_in_an_entry_is_ignored(tmp_path: Path) -> None:
    from adws.config import _FORMAT, _seal

    _, _, key, entry = _one_entry(tmp_path)
    payload = b"[" * 100_000 + b"]" * 100_000
    seal = json.dumps({"format": _FORMAT, "key": key, "sha256": _seal(key, payload)}).encode()
    entry.write_bytes(seal + b"\n" + payload)
    assert read_entry(key) is None


CONFIGS = [ROOT / "config.toml", ROOT / "tests" / "data" / "configs" / "legacy.toml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_compiled_field_round_trips(path: Path) -> None:
    config = compile_config(parse_toml(path.read_text()), str(path), str(path.parent))
    data = json.loads(json.dumps(encode(config, CompiledConfig)))
    assert encode(decode(data, CompiledConfig), CompiledConfig) == data


def test_toml_values_of_every_kind_round_trip(tmp_path: Path) -> None:
    text = (ROOT / "config.toml").read_text() + """
[[scenarios]]
name = "odd values"
at = 2026-11-22T10:00:00Z
task = { title = "x", attrs = { "$" = 1 } }
expect = { provider = "antigravity" }

[[providers.cline.failure_patterns]]
regex = "out of (cheese|memory)"
outcome = "crashed"
"""
    path = tmp_path / "config.toml"
    path.write_text(text)
    config = compile_config(parse_toml(text), str(path), str(tmp_path))
    # TOML's own kinds: no task holds them (a task is JSON data, adws.task), the raw table can.
    import dataclasses

    odd = parse_toml("due = 2026-12-05\nat = 10:30:00\nwhen = 2026-12-05T10:00:00+02:00\nn = inf\n")
    config = dataclasses.replace(config, raw={**config.raw, "odd": odd})
    data = json.loads(json.dumps(encode(config, CompiledConfig)))
    back = decode(data, CompiledConfig)
    assert encode(back, CompiledConfig) == data
    # The config's own failure pattern (RE2) comes back compiled and first; the built-in ones are the same objects.
    own, *builtin = back.providers["cline"].failure_patterns
    assert own.regex.search("Fatal: OUT OF MEMORY") is not None and own.outcome == "crashed"
    assert builtin == list(config.providers["cline"].failure_patterns[1:])
    assert all(a is b for a, b in zip(builtin, config.providers["cline"].failure_patterns[1:], strict=True))


def test_a_value_the_format_cannot_hold_is_not_cached(tmp_path: Path) -> None:
    import dataclasses

    _, config, _, _ = _one_entry(tmp_path)
    odd = dataclasses.replace(config, raw={"x": object()})
    with pytest.raises(CacheError):
        encode(odd, CompiledConfig)
    assert write_entry("f" * 64, odd) is False
    assert not (cache_dir() / f"config-{'f' * 40}.json").exists()


def test_cron_expansions_from_the_cache_match_as_croniter_does(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from adws.cron import CronMatcher, already_checked, expansions

    exprs = ["*/15 9-17 * * 1-5", "0 22-2 * * *", "0 0 1 * 0-6", "* * 1-31 * *", "0 0 L * *", "30 6 * * 7"]
    fresh = [CronMatcher(e) for e in exprs]
    stored = json.loads(json.dumps(expansions()))
    with already_checked(stored):
        cached = [CronMatcher(e) for e in exprs]
    moment = datetime(2026, 2, 23, 0, 0, tzinfo=UTC)
    for _ in range(2000):
        moment += timedelta(minutes=97)
        assert [m.matches(moment) for m in cached] == [m.matches(moment) for m in fresh]
    with already_checked({"0 0 1 * 0-6": [False, "junk", None, None, None, None]}):
        damaged = CronMatcher("0 0 1 * 0-6")  # a damaged expansion: parsed afresh on first use
    assert damaged.matches(datetime(2026, 3, 1, 0, 0)) == fresh[2].matches(datetime(2026, 3, 1, 0, 0))


@pytest.mark.parametrize("command", [["check"], ["route", "--task-json", '{"title": "x", "labels": ["bug"]}',
                                                  "--json"]], ids=["check", "route"])
def test_warm_cli_commands_import_neither_pydantic_nor_jinja2(tmp_path: Path, command: list[str]) -> None:
    """As `python -X importtime -m adws ...` shows it, with the compiled config cached by a first run."""
    import subprocess
    import sys

    path = _copy_config(tmp_path)
    args = [*command[:1], *(["--config", str(path)] if command[0] == "route" else [str(path)]), *command[1:]]
    env = {**os.environ, "ADWS_CACHE_DIR": str(cache_dir()), "ADWS_STATE_PATH": str(tmp_path / "none" / "s")}
    subprocess.run([sys.executable, "-m", "adws", *args], env=env, capture_output=True, check=False)
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "adws", *args], env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "adws.config" in imported
    assert not {"pydantic", "jinja2", "croniter"} & imported
    # Loaded only when used: the Redis backend (a SQLite config here), hashlib/OpenSSL (credential fingerprints
    # after a rejected key), the audit log (runs write it, routing does not).
    assert not {"redis", "adws.state.redis_store", "hashlib", "adws.audit"} & imported


@pytest.mark.parametrize("command", [["check"], ["route", "--task-json", '{"number": 7, "title": "Null pointer in '
                                                  'parser", "labels": ["bug"]}', "--json"]], ids=["check", "route"])
def test_warm_cli_commands_with_every_agent_installed_stay_lean(tmp_path: Path, command: list[str]) -> None:
    """Issue 10's start-up rule, on the path `adws route` takes on a coordinator (every agent CLI installed, so
    accounts are ranked and quota periods computed): no pydantic or jinja2, no run machinery, no RE2 (the
    shipped config's regex condition is not searched for this task), and no croniter (the weekly and monthly
    quota periods around the routing time were stored in the cache when the file was validated)."""
    import subprocess
    import sys

    from tests.helpers import FAKES_BIN

    path = _copy_config(tmp_path)
    args = [*command[:1], *(["--config", str(path)] if command[0] == "route" else [str(path)]), *command[1:]]
    env = {**os.environ, "ADWS_CACHE_DIR": str(cache_dir()), "ADWS_STATE_PATH": str(tmp_path / "none" / "s"),
           "PATH": f"{FAKES_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    first = subprocess.run([sys.executable, "-m", "adws", *args], env=env, capture_output=True, text=True,
                           check=False)
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "adws", *args], env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == first.returncode == 0, done.stderr[-2000:]
    if command[0] == "route":
        assert json.loads(done.stdout)["plan"], done.stdout  # a full plan: accounts were ranked
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "adws.config" in imported and "adws.config.load" not in imported  # the cache was used
    heavy = {"pydantic", "jinja2", "re2", "logging", "adws.manager", "adws.runner", "adws.parsers", "adws.result",
             "adws.events", "adws.interrupts", "adws.templates", "adws.reports", "adws.views"}
    if command[0] == "check":
        # check judges the config's own scenarios (routing them as route does), and one of the shipped config's
        # exercises its regex condition: RE2 is searched (about 2 ms to import), nothing else joins.
        heavy.discard("re2")
    assert not heavy & imported
    assert "croniter" not in imported


def test_the_first_route_after_an_edit_needs_no_croniter_and_routes_as_a_warm_one(tmp_path: Path) -> None:
    """The route that validates an edited file takes the quota periods the new cache entry stores (those around
    noon today, remembered from the last validation), as the warm routes after it will: no croniter, the same
    answer as a warm route and as one without the cache."""
    import subprocess
    import sys
    from datetime import UTC, datetime

    from tests.helpers import FAKES_BIN

    path = _copy_config(tmp_path)
    at = datetime.now(UTC).replace(microsecond=0).isoformat()  # within the stored periods
    args = ["route", "--config", str(path), "--task-json", '{"number": 7, "title": "Null pointer in parser", '
            '"labels": ["bug"]}', "--at", at, "--json"]
    env = {**os.environ, "ADWS_CACHE_DIR": str(cache_dir()), "ADWS_STATE_PATH": str(tmp_path / "none" / "s"),
           "PATH": f"{FAKES_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def route(*options: str, **extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, *options, "-m", "adws", *args], env={**env, **extra},
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    route()  # the first validation: the checks and periods are remembered
    path.write_text(path.read_text() + "\n# an edit\n")
    edited = route("-X", "importtime")
    imported = {line.rsplit("|", 1)[-1].strip() for line in edited.stderr.splitlines() if "|" in line}
    assert "adws.config.load" in imported  # validated
    assert not {"croniter", "jinja2", "re2"} & imported
    assert json.loads(edited.stdout)["plan"], edited.stdout  # a full plan: quota periods were asked
    assert edited.stdout == route().stdout == route(ADWS_CONFIG_CACHE="off").stdout


def test_rules_decoded_from_the_cache_share_conditions_written_alike() -> None:
    # As compile_config shares them (tests/test_conditions.py): the warm path keeps the same memory saving.
    rules = "".join(f'[[routing.rules]]\nname = "r{i}"\nprovider = "p"\nconditions = {{ labels = ["bug"], '
                    f'attrs.team = "t{i % 2}" }}\n' for i in range(4))
    compiled = compile_config(parse_toml('[routing]\ndefault_provider = "p"\n' + rules +
                                         '[providers.p]\ncommand_template = ["p", "{{ prompt_file }}"]\n'))
    config = decode(encode(compiled, CompiledConfig), CompiledConfig)
    assert len({id(rule.conditions[0]) for rule in config.rules}) == 1
    assert len({id(rule.conditions[1]) for rule in config.rules}) == 2
    again = decode(encode(compiled, CompiledConfig), CompiledConfig)  # one memo per decode, none kept after it
    assert again.rules[0].conditions[0] is not config.rules[0].conditions[0]


def test_the_code_stamp_names_every_source_file_by_its_path_in_the_package() -> None:
    from adws import config as config_module

    root = Path(config_module.__file__).resolve().parent.parent
    names = [line.rsplit(":", 2)[0] for line in config_module._code_stamp().splitlines()]
    expected = sorted(os.path.relpath(os.path.join(d, f), root) for d, dirs, files in os.walk(root)
                      for f in files if f.endswith(".py") and "__pycache__" not in d)
    assert names == expected and "config/__init__.py" in names
