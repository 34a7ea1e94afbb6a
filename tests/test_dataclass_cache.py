"""adws.dataclass_cache: dataclasses whose generated methods come from stored code, exactly as compiled."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from types import CodeType

import pytest

from adws import _dataclass_code, dataclass_cache
from adws.dataclass_cache import as_compiled, dataclass
from tests.helpers import ROOT


def _compiled(source: str) -> CodeType:
    """What `dataclasses` gets from `exec(source)`: the code of the `__create_fn__` it defines (compiled without
    this module's `from __future__ import annotations`, as dataclasses.py has none)."""
    found = [c for c in compile(source, "<string>", "exec", dont_inherit=True).co_consts if isinstance(c, CodeType)]
    assert len(found) == 1
    return found[0]


def _same(one: CodeType, other: CodeType) -> bool:
    fields = ("co_code", "co_consts", "co_names", "co_varnames", "co_freevars", "co_cellvars", "co_flags",
              "co_argcount", "co_kwonlyargcount", "co_posonlyargcount", "co_filename", "co_name", "co_qualname",
              "co_firstlineno", "co_linetable", "co_exceptiontable")
    for name in fields:
        mine, theirs = getattr(one, name, None), getattr(other, name, None)
        if name == "co_consts":
            if len(mine) != len(theirs) or not all(
                    _same(a, b) if isinstance(a, CodeType) and isinstance(b, CodeType) else a == b
                    for a, b in zip(mine, theirs, strict=True)):
                return False
        elif mine != theirs:
            return False
    return True


def test_every_stored_method_is_what_compiling_its_source_gives() -> None:
    assert len(_dataclass_code.SOURCES) == len(_dataclass_code.CODE) > 0
    for source, code in zip(_dataclass_code.SOURCES, _dataclass_code.CODE, strict=True):
        assert _same(as_compiled(code), _compiled(source)), source


def test_adws_dataclasses_get_their_methods_from_the_table() -> None:
    from adws.compiled import ModelSpec

    # The very code object made from the table (not an equal one compiled afresh).
    init = ModelSpec.__init__.__code__
    assert any(init is const for code in dataclass_cache._FIXED.values() for const in code.co_consts)
    spec = ModelSpec("m", 1000, None, 0.5, {"code": 3}, {})
    assert spec == ModelSpec("m", 1000, None, 0.5, {"code": 3}, {}) and spec.score("code", {}) == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.id = "other"  # type: ignore[misc]
    assert repr(spec).startswith("ModelSpec(id='m', context_window=1000")
    assert "exec" not in vars(dataclasses)  # dataclasses is left as it was found


def test_a_class_whose_source_is_not_stored_is_compiled_as_dataclasses_would() -> None:
    @dataclass(frozen=True, slots=True, order=True)
    class Unstored:
        a_field_no_table_has: int
        other: tuple[str, ...] = ()
        made: list[int] = dataclasses.field(default_factory=list, compare=False)

    @dataclasses.dataclass(frozen=True, slots=True, order=True)
    class Reference:
        a_field_no_table_has: int
        other: tuple[str, ...] = ()
        made: list[int] = dataclasses.field(default_factory=list, compare=False)

    one, two = Unstored(1, ("x",)), Unstored(1, ("x",), [5])
    assert one == two and hash(one) == hash(two) and one < Unstored(2)
    assert repr(one) == repr(Reference(1, ("x",))).replace("Reference", "Unstored")
    assert [f.name for f in dataclasses.fields(Unstored)] == [f.name for f in dataclasses.fields(Reference)]
    assert Unstored.__init__.__code__.co_filename == "<string>"
    assert "exec" not in vars(dataclasses)


def test_the_table_is_current() -> None:
    """Fails after a dataclass in adws changed: run `python tools/gen_dataclass_code.py` (the table is only a
    start-up cost: a stale one never changes behaviour, the tests above show)."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_dataclass_code.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
