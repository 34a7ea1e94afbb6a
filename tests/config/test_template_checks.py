"""Remembered template checks (adws.config.verdicts): an edit that leaves a Jinja template as it was validates
without jinja2, with the same answers; a changed template or changed variables are checked afresh; a damaged
or foreign file is ignored. And the `adws` command's one validation without pydantic's plugin scan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from adws.compiled import CompiledConfig
from adws.config import cache_dir, load_config, skip_pydantic_plugin_scan
from adws.config.codec import encode
from adws.config.load import compile_config, parse_toml
from adws.errors import ConfigError
from tests.helpers import ROOT

_TEMPLATE = "{% if thinking_budget %}--variant={{ 'high' if thinking_budget >= 24000"


def _copy_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text((ROOT / "config.toml").read_text())
    assert _TEMPLATE in path.read_text()  # the shipped config has a template only Jinja can check
    return path


def _checks_file() -> Path:
    return cache_dir() / "template-checks.json"


def _validated_in_a_child(path: Path, watched: tuple[str, ...] = ("croniter", "jinja2", "pydantic")
                          ) -> tuple[list[str], str]:
    """(which of `watched` a fresh process imported, the compiled config as JSON) after load_config."""
    code = ("import json, sys; from adws.config import load_config; from adws.compiled import CompiledConfig; "
            "from adws.config.codec import encode; c = load_config(sys.argv[1]); "
            "print(json.dumps([sorted(m for m in sys.argv[2:] if m in sys.modules), "
            "encode(c, CompiledConfig)]))")
    done = subprocess.run([sys.executable, "-c", code, str(path), *watched], capture_output=True, text=True,
                          check=True,
                          env={**os.environ, "ADWS_CACHE_DIR": str(cache_dir())})
    modules, config = json.loads(done.stdout)
    return modules, json.dumps(config)


def _uncached(path: Path) -> str:
    return json.dumps(encode(compile_config(parse_toml(path.read_text()), str(path), str(path.parent)),
                             CompiledConfig))


def test_an_edit_elsewhere_validates_without_jinja_and_compiles_the_same(tmp_path: Path) -> None:
    path = _copy_config(tmp_path)
    modules, _ = _validated_in_a_child(path)
    assert modules == ["croniter", "jinja2", "pydantic"]  # first validation: Jinja and croniter check
    assert _checks_file().exists()
    path.write_text(path.read_text().replace("timeout = 3600", "timeout = 3000", 1))
    modules, config = _validated_in_a_child(path)
    assert modules == ["pydantic"]  # validated again, the answers on templates and cron remembered
    assert config == _uncached(path)


def test_an_edit_elsewhere_validates_without_re2_and_compiles_the_same(tmp_path: Path) -> None:
    path = _copy_config(tmp_path)
    assert 'regex = "^acme/infra-"' in path.read_text()  # a regex condition: RE2 checks it
    modules, _ = _validated_in_a_child(path, ("re2",))
    assert modules == ["re2"]
    path.write_text(path.read_text().replace("timeout = 3600", "timeout = 3000", 1))
    modules, config = _validated_in_a_child(path, ("re2",))
    assert modules == []  # RE2's verdict remembered; the regex compiles at its first search
    assert config == _uncached(path)


def test_a_remembered_regex_matches_as_a_checked_one(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from adws.engine import Engine

    now = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
    path = _copy_config(tmp_path)
    load_config(path)
    path.write_text(path.read_text() + "\n# an edit\n")
    remembered, fresh = load_config(path), compile_config(parse_toml(path.read_text()), str(path), str(path.parent))
    for repo, rule in (("acme/infra-live", "infra-repos-sonnet"), ("acme/web", None)):
        task = {"title": "x", "labels": [], "attrs": {"repo": repo, "team": "infra"}}
        routes = [Engine(c, environ={"ADWS_STATE_PATH": "/nonexistent/s"}).router.route(task, now=now).to_dict()
                  for c in (remembered, fresh)]
        assert routes[0] == routes[1]
        assert (routes[0]["rule"] == "infra-repos-sonnet") == (rule is not None)


def test_a_regex_is_asked_with_its_options() -> None:
    from adws import userregex

    asked: dict[str, str | None] = {}

    def memo(question: str, compute: Any) -> str | None:
        if question not in asked:
            asked[question] = compute()
        return asked[question]

    with userregex.remembering(memo):
        userregex.compile_user_regex("x*")
        with pytest.raises(ValueError, match="matches empty text") as refused:
            userregex.compile_user_regex("x*", allow_empty=False)
        with pytest.raises(ValueError, match="matches empty text") as again:  # the remembered refusal
            userregex.compile_user_regex("x*", allow_empty=False)
        assert userregex.compile_user_regex("X", True).search("x") is not None
    assert str(again.value) == str(refused.value)
    assert list(asked.values()) == [None, str(refused.value), None]


def test_a_changed_regex_is_checked_afresh(tmp_path: Path) -> None:
    refused = _edit_refused_as_fresh(tmp_path, 'regex = "^acme/infra-"', 'regex = "^acme/(?=infra-)"')
    assert 'bad regex "^acme/(?=infra-)"' in refused.render()


def _edit_refused_as_fresh(tmp_path: Path, old: str, new: str) -> ConfigError:
    """Validate the shipped config (answers remembered), replace `old` by `new` in it, and validate again: the
    edit is refused with exactly the problems a validation without remembered answers gives; returns the error."""
    path = _copy_config(tmp_path)
    load_config(path)
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(ConfigError) as remembered:
        load_config(path)
    with pytest.raises(ConfigError) as fresh:
        compile_config(parse_toml(path.read_text()), str(path), str(path.parent))
    assert [p.message for p in remembered.value.problems] == [p.message for p in fresh.value.problems]
    return remembered.value


def test_a_changed_cron_expression_is_checked_afresh(tmp_path: Path) -> None:
    refused = _edit_refused_as_fresh(tmp_path, 'schedule = ["* * * * 6,0"]', 'schedule = ["* * * * 6,9"]')
    assert "day-of-week" in refused.render()


def test_quota_periods_are_those_of_noon_today(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from adws.config import _entry, _key
    from adws.quota import stored_bounds

    def noon() -> datetime:
        return datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)

    path = _copy_config(tmp_path)
    before = noon()
    load_config(path)
    path.write_text(path.read_text() + "\n# an edit\n")
    load_config(path)  # the periods remembered
    after = noon()  # the same day, unless the test ran across midnight
    blob = _entry(_key(path.resolve(), path.read_bytes())).read_bytes()
    stored = json.loads(blob.partition(b"\n")[2])["quota_bounds"]
    resets = [(expr, zone) for expr, zone, _ in stored]
    assert stored and stored in (stored_bounds(resets, before), stored_bounds(resets, after))


def test_changed_rule_variables_are_rendered_afresh(tmp_path: Path) -> None:
    # A string where the template compares numbers: every sample render of that rule now fails.
    refused = _edit_refused_as_fresh(tmp_path, "vars = { thinking_budget = 32000 }",
                                     'vars = { thinking_budget = "32000" }')
    assert "cannot be rendered" in refused.render()


def test_a_changed_template_is_checked_afresh(tmp_path: Path) -> None:
    refused = _edit_refused_as_fresh(tmp_path, _TEMPLATE, _TEMPLATE.replace("thinking_budget >=", "thinking_budgit >="))
    assert 'uses unknown variable "thinking_budgit"' in refused.render()


def _reseal(data: dict[str, Any]) -> None:
    """Write `data` as the remembered checks, with a valid seal (what only the user themselves could do)."""
    from adws.config import write_sealed
    from adws.config.verdicts import _FORMAT, _NAME

    assert write_sealed(_checks_file(), _NAME, _FORMAT, json.dumps(data).encode())


def _remembered() -> dict[str, Any]:
    blob = _checks_file().read_bytes()
    data = json.loads(blob.partition(b"\n")[2])
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("damage", ["bytes", "shape", "null", "mode"])
def test_a_damaged_or_foreign_file_is_ignored(tmp_path: Path, damage: str) -> None:
    path = _copy_config(tmp_path)
    load_config(path)
    answers = _remembered()
    assert answers and None in answers.values()
    if damage == "bytes":  # the seal no longer matches
        _checks_file().write_bytes(_checks_file().read_bytes().replace(b"null", b"\"x\"", 1))
    elif damage == "shape":  # sealed, but answers that are no answer: a number, a list of numbers
        _reseal({key: [1] if isinstance(value, list) else 7 for key, value in answers.items()})
    elif damage == "null":  # sealed nulls where only a template check or render may answer null: a cron
        # expansion, quota periods, the variables a template reads (a null cron answer refused the config as "None")
        _reseal({key: None if isinstance(value, list) else value for key, value in answers.items()})
    else:  # writable by others: never read
        _checks_file().chmod(0o666)
    path.write_text(path.read_text() + "\n# an edit\n")
    assert _uncached(path) == json.dumps(encode(load_config(path), CompiledConfig))
    if damage == "mode":
        _checks_file().chmod(0o600)
    assert _remembered() == answers  # computed again, and written back as they are


def test_a_remembered_problem_is_reported_as_when_it_was_found(tmp_path: Path) -> None:
    path = _copy_config(tmp_path)
    load_config(path)
    # Every answer replaced by a problem, sealed as the user's own: the answers are what the file says, so this
    # shows they are used (and that a problem comes back word for word).
    answers = _remembered()
    _reseal({key: "template problem, remembered" if not isinstance(value, list) else value
             for key, value in answers.items()})
    path.write_text(path.read_text() + "\n# an edit\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "template problem, remembered" in caught.value.render()


def _plugin_switch_seen(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """PYDANTIC_DISABLE_PLUGINS as each validation (`load_file`) from now on sees it, in order; unset now."""
    import adws.config.load

    seen: list[str | None] = []
    load_file = adws.config.load.load_file

    def recording(path: Any, data: Any = None) -> CompiledConfig:
        seen.append(os.environ.get("PYDANTIC_DISABLE_PLUGINS"))
        return load_file(path, data)

    monkeypatch.setattr(adws.config.load, "load_file", recording)
    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    return seen


def test_the_cli_validates_once_without_the_plugin_scan_and_leaks_nothing(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _plugin_switch_seen(monkeypatch)
    path = _copy_config(tmp_path)
    skip_pydantic_plugin_scan()
    load_config(path)
    path.write_text(path.read_text() + "\n# an edit\n")
    load_config(path)  # a reload: scans as usual
    assert seen == ["__all__", None]
    assert "PYDANTIC_DISABLE_PLUGINS" not in os.environ

    # With another thread running (an agent could be started meanwhile), the variable is never set.
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        skip_pydantic_plugin_scan()
        path.write_text(path.read_text() + "\n# another edit\n")
        load_config(path)
    finally:
        stop.set()
        other.join()
    assert seen[-1] is None
    assert "PYDANTIC_DISABLE_PLUGINS" not in os.environ


def test_an_encoder_that_cannot_be_built_fails_alike_every_time() -> None:
    # A dataclass whose hints do not resolve: refused with CacheError each time, never by a placeholder that
    # calls itself (the encoders and decoders are built once per hint and remembered).
    from dataclasses import dataclass

    from adws.config.codec import CacheError, decode

    @dataclass
    class Unresolvable:
        field: NotDefinedAnywhere  # type: ignore[name-defined]  # noqa: F821

    for _ in range(2):
        with pytest.raises(CacheError):
            encode(Unresolvable(1), Unresolvable)
        with pytest.raises(CacheError):
            decode({"field": 1}, Unresolvable)


def test_answers_found_by_a_failed_validation_are_kept(tmp_path: Path) -> None:
    # A config being fixed fails validation again and again: what Jinja said of its templates holds meanwhile.
    path = _copy_config(tmp_path)
    path.write_text(path.read_text() + "\n[no_such_table]\nx = 1\n")
    with pytest.raises(ConfigError, match="no_such_table"):
        load_config(path)
    assert _checks_file().exists() and None in _remembered().values()


def test_the_cli_validation_does_not_import_the_plugin_loader(tmp_path: Path) -> None:
    """Its validators are built as pydantic builds them without plugins, without importing pydantic's plugin
    loader (and importlib.metadata with it). Fails when pydantic's private names this relies on changed
    (adws.config._validators_without_plugins then leaves them alone, and validation costs the import again)."""
    path = _copy_config(tmp_path)
    code = ("import json, sys; from adws.config import load_config, skip_pydantic_plugin_scan; "
            "from adws.compiled import CompiledConfig; from adws.config.codec import encode; "
            "skip_pydantic_plugin_scan(); c = load_config(sys.argv[1]); "
            "print(json.dumps([sorted(m for m in ('pydantic', 'pydantic.plugin._loader', 'importlib.metadata') "
            "if m in sys.modules), encode(c, CompiledConfig)]))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                          env={**os.environ, "ADWS_CACHE_DIR": str(cache_dir())})
    modules, config = json.loads(done.stdout)
    assert modules == ["pydantic"]
    assert json.dumps(config) == _uncached(path)


def test_validators_built_without_the_plugin_loader_are_pydantics_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in returns what pydantic's create_schema_validator returns when no plugin is installed: a
    SchemaValidator that validates, and refuses, alike."""
    from pydantic import BaseModel, ConfigDict, Field, ValidationError
    from pydantic.plugin._schema_validator import create_schema_validator
    from pydantic_core import SchemaValidator

    from adws.config import _validators_without_plugins

    class Probe(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid", defer_build=True)
        n: int = Field(ge=1)

    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # Loaded by earlier validations in this process, the loader would make the stand-in stand aside.
    monkeypatch.delitem(sys.modules, "pydantic.plugin._loader", raising=False)
    from pydantic._internal import _model_construction

    with _validators_without_plugins():
        assert _model_construction.create_schema_validator is not create_schema_validator  # the stand-in is in
        assert Probe.model_validate({"n": 2}).n == 2
    assert _model_construction.create_schema_validator is create_schema_validator
    built = Probe.__pydantic_validator__
    # (The model's core schema holds its config: strict, extra="forbid".)
    own = create_schema_validator(Probe.__pydantic_core_schema__, Probe, __name__, "Probe", "BaseModel")
    assert type(built) is SchemaValidator and type(own) is SchemaValidator
    for bad in ({"n": 0}, {"n": "2"}, {"n": 2, "m": 1}):
        with pytest.raises(ValidationError) as ours:
            built.validate_python(bad)
        with pytest.raises(ValidationError) as theirs:
            own.validate_python(bad)
        assert ours.value.errors() == theirs.value.errors()


def test_a_plugin_scan_request_lapses_when_the_first_load_is_cached(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import adws.config

    seen = _plugin_switch_seen(monkeypatch)
    path = _copy_config(tmp_path)
    load_config(path)  # now cached
    skip_pydantic_plugin_scan()
    load_config(path)  # the first load of "the command": a cache hit, nothing validated
    assert not adws.config._SKIP_PLUGIN_SCAN
    path.write_text(path.read_text() + "\n# an edit\n")
    load_config(path)  # a later reload validates with the scan
    assert seen == [None, None]


def test_an_interrupted_validation_writes_no_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Answers are kept after a failed validation, but not after an interruption (Ctrl-C, a stop signal): the
    # process is being told to stop, not to write.
    import adws.config.load

    def interrupted(*_: Any, **__: Any) -> CompiledConfig:
        from adws.config.load import check_template

        check_template(_TEMPLATE + " }}{% endif %}", ["thinking_budget"])  # an answer is computed, then:
        raise KeyboardInterrupt

    monkeypatch.setattr(adws.config.load, "load_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_config(_copy_config(tmp_path))
    assert not _checks_file().exists()


def test_the_validator_stand_in_stands_aside_for_a_function_it_does_not_know(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where pydantic's create_schema_validator is not the function the stand-in was written for (another
    version's parameters, or someone else's replacement), nothing is swapped: pydantic's path is kept."""
    from pydantic._internal import _model_construction
    from pydantic.plugin import _schema_validator

    from adws.config import _validators_without_plugins

    monkeypatch.delitem(sys.modules, "pydantic.plugin._loader", raising=False)

    def other(schema: Any, config: Any = None) -> Any:  # another version's signature
        raise AssertionError("not called here")

    for module in (_model_construction, _schema_validator):
        monkeypatch.setattr(module, "create_schema_validator", other)
    with _validators_without_plugins():
        assert _model_construction.create_schema_validator is other
    assert _model_construction.create_schema_validator is other
    replacement = object()  # someone else's stand-in: not the function pydantic.plugin defines
    monkeypatch.setattr(_model_construction, "create_schema_validator", replacement)
    with _validators_without_plugins():
        assert _model_construction.create_schema_validator is replacement
