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
    made = (*dataclass_cache._FIXED.values(), *dataclass_cache._BY_INDEX.values())
    assert any(init is const for code in made for const in code.co_consts)
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


# Runs in a fresh interpreter: every adws module is executed again with `dataclass` replaced by a twin maker that
# builds each class from its recipe and, from an identical copy, by dataclasses itself, and compares the two.
_BOTH_WAYS = r'''
import importlib, pkgutil, sys, types
sys.path.insert(0, sys.argv[1])
from adws import dataclass_cache as dc
import adws

def same_code(a, b):
    return (a.co_code, a.co_names, a.co_varnames, a.co_filename, a.co_name, a.co_firstlineno) == \
        (b.co_code, b.co_names, b.co_varnames, b.co_filename, b.co_name, b.co_firstlineno) and all(
        same_code(x, y) if isinstance(x, types.CodeType) else x == y for x, y in zip(a.co_consts, b.co_consts))

def same_value(key, a, b):
    if isinstance(a, types.FunctionType) and isinstance(b, types.FunctionType):
        if key in ("__getstate__", "__setstate__"):  # a stand-in that calls dataclasses' own
            return a.__name__ == b.__name__
        wa, wb = getattr(a, "__wrapped__", None), getattr(b, "__wrapped__", None)
        if (wa is None) != (wb is None):
            return False
        if wa is not None and not (same_code(wa.__code__, wb.__code__) and wa.__qualname__ == wb.__qualname__):
            return False
        # repr: a default factory's marker is a stand-in, shown alike ("<factory>")
        return (a.__qualname__, a.__name__, repr(a.__defaults__), a.__kwdefaults__, a.__module__) == \
            (b.__qualname__, b.__name__, repr(b.__defaults__), b.__kwdefaults__, b.__module__) and \
            (wa is not None or same_code(a.__code__, b.__code__))
    if key == "__dataclass_fields__":
        attrs = ("name", "type", "default", "default_factory", "init", "repr", "hash", "compare", "metadata",
                 "kw_only", "_field_type")
        return list(a) == list(b) and all(
            tuple(getattr(a[n], x) for x in attrs) == tuple(getattr(b[n], x) for x in attrs) for n in a)
    if key == "__dataclass_params__":
        return repr(a) == repr(b)
    if isinstance(a, types.MethodType):
        return isinstance(b, types.MethodType) and a.__func__ is b.__func__
    if type(a).__name__ in ("member_descriptor", "getset_descriptor"):
        return type(a) is type(b) and a.__name__ == b.__name__
    return a == b

problems, checked = [], []

def twins(cls=None, /, **options):
    if cls is None:
        return lambda inner: twins(inner, **options)
    namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    namespace["__qualname__"] = cls.__qualname__
    copy = type(cls)(cls.__name__, cls.__bases__, namespace)
    key = f"{cls.__module__}.{cls.__qualname__}"
    recipe = dc._recipes().get(key)
    if recipe is None or recipe[0] != dc._fingerprint(cls, options):
        problems.append(f"{key}: no recipe matches")
        return dc._by_dataclasses(cls, options)
    fast = dc._build(cls, options, recipe)
    real = dc._by_dataclasses(copy, options)
    for k in sorted(set(vars(fast)) | set(vars(real))):
        if k not in vars(fast) or k not in vars(real):
            problems.append(f"{key}: {k} only in one")
        elif k in ("__dict__", "__weakref__"):  # each class's own descriptor
            if type(vars(fast)[k]) is not type(vars(real)[k]):
                problems.append(f"{key}: {k} differs")
        elif not same_value(k, getattr(fast, k), getattr(real, k)):  # getattr: makes the lazy attributes
            problems.append(f"{key}: {k} differs: {getattr(fast, k)!r} vs {getattr(real, k)!r}")
    if fast.__qualname__ != real.__qualname__ or [b.__name__ for b in fast.__mro__] != [
            b.__name__ for b in real.__mro__]:
        problems.append(f"{key}: name or bases differ")
    checked.append(key)
    return fast

dc.dataclass = twins
for info in pkgutil.walk_packages(adws.__path__, "adws."):
    if info.name in ("adws.__main__", "adws._dataclass_code", "adws.dataclass_cache"):
        continue
    module = importlib.import_module(info.name)
    source = importlib.util.find_spec(info.name).loader.get_source(info.name)
    exec(compile(source, module.__file__, "exec"), {"__name__": info.name, "__file__": module.__file__,
                                                     "__package__": module.__package__})
print(len(checked))
print("\n".join(problems))
'''


def test_every_adws_dataclass_built_from_its_recipe_is_what_dataclasses_builds() -> None:
    done = subprocess.run([sys.executable, "-c", _BOTH_WAYS, str(ROOT)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    count, *problems = [line for line in done.stdout.splitlines() if line]
    assert int(count) >= len(_dataclass_code.RECIPES) > 80
    assert problems == []


def test_route_imports_no_dataclasses_module() -> None:
    """The classes `adws route` needs are built from their recipes: neither dataclasses nor inspect is imported
    (with them, a tenth of its start-up)."""
    code = "import sys, adws.cli, adws.engine; print('dataclasses' in sys.modules, 'inspect' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.split() == ["False", "False"]


def test_recipes_of_another_python_are_not_used() -> None:
    """The recipes hold what this Python's dataclasses made; under another version every class goes to
    dataclasses (a class built for 3.11 would break dataclasses' own code on 3.13), and behaves the same."""
    code = ("import sys, adws._dataclass_code as stored; stored.PYTHON = (3, 0)\n"
            "from adws import dataclass_cache\n"
            "import dataclasses\n"
            "from adws.attempt import Usage\n"
            "assert dataclass_cache._recipes() == {}\n"
            "assert Usage not in dataclass_cache._BUILT\n"
            "assert type(Usage.__dict__['__dataclass_params__']) is dataclasses._DataclassParams\n"
            "@dataclasses.dataclass(frozen=True)\n"
            "class Mine(Usage):\n"
            "    extra: int = 0\n"
            "print(Mine(requests=2, extra=1).requests, dataclasses.replace(Usage(), requests=3).requests)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "3"]
    assert tuple(sys.version_info[:2]) == _dataclass_code.PYTHON  # type: ignore[attr-defined]


def test_built_classes_act_as_dataclasses() -> None:
    from adws.attempt import Usage
    from adws.errors import Problem

    usage = Usage(requests=1, input_tokens=2)
    assert dataclasses.is_dataclass(usage) and [f.name for f in dataclasses.fields(Usage)][:2] == [
        "requests", "input_tokens"]
    assert dataclasses.replace(usage, requests=5).requests == 5 == dataclass_cache.replace(usage, requests=5).requests
    assert dataclasses.asdict(usage)["input_tokens"] == 2
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'requests'"):
        usage.requests = 3  # type: ignore[misc]
    problem = Problem("here", "wrong")
    assert problem.at_line(3).line == 3 and problem == Problem("here", "wrong", line=9)  # line: compare=False
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(usage)) == usage == copy.deepcopy(usage)
    with pytest.raises(ValueError, match="cannot specify both default and default_factory"):
        dataclass_cache.field(default=1, default_factory=list)
