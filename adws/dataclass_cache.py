"""adws's dataclasses, made without compiling their generated methods at every start-up.

`dataclasses.dataclass` writes each method it generates (`__init__`, `__repr__`, `__eq__`, `__hash__`, and a
frozen class's `__setattr__`/`__delattr__`) as Python source and compiles it. On Python 3.11 that is about 4 M
instructions per frozen slotted class: for the sixty-odd dataclasses `adws route` imports, a third of its
start-up. `dataclass` here is the same decorator, except that a method whose source is stored in
`adws._dataclass_code` (written by `python tools/gen_dataclass_code.py`; Python keeps its bytecode in
`__pycache__` as for any module) is made from the stored code instead of being compiled again.

The stored code is what compiling the source gives (tests/test_dataclass_cache.py compares every entry with a
fresh compile), looked up by the exact source text. A source that is not stored (another Python version, a class
changed since the table was written) is compiled as usual: a stale table costs start-up time, never behaviour.

Beyond that, a class whose recipe is stored too (`RECIPES`: what `dataclasses` made of it, found by module and
name and checked against a fingerprint of the class as written: its options, annotations, field specifiers,
bases and own dunder methods) is built here without running `dataclasses._process_class`: its methods from the
stored code, its `__dataclass_fields__` and `__dataclass_params__` made on first use. They need the
`dataclasses` module, whose import pulls in `inspect` (with `_process_class`, two fifths of `adws route`'s
start-up), so `field` and `replace` here stand in for dataclasses' own and import it only when called. What such
a class is and does is what `dataclasses` makes of it (tests/test_dataclass_cache.py builds every adws
dataclass both ways and compares them); a class the fingerprint does not match goes to `dataclasses`.
"""

from __future__ import annotations

import builtins
import sys
import threading
from collections.abc import Callable, Mapping
from itertools import chain
from types import CodeType, FunctionType
from typing import TYPE_CHECKING, Any

_LOCK = threading.RLock()
_ABSENT = object()
_RECORDING: list[list[tuple[str, str]]] = []  # tools/gen_dataclass_code.py: where sources are recorded
_RECIPES_RECORDED: list[dict[str, Any]] = []  # and where the recipes of classes are
_TABLE: dict[str, CodeType] | None = None
_FIXED: dict[str, CodeType] = {}  # source -> its code as compile() gives it (file "<string>", line 1)
_CREATE_FN = "__create_fn__"  # the function dataclasses' generated source defines and then calls


def _load() -> Any:
    try:
        from adws import _dataclass_code
    except ImportError:  # a checkout without the generated table: compile as dataclasses does
        return None
    return _dataclass_code


def _table() -> dict[str, CodeType]:
    global _TABLE
    if _TABLE is None:
        stored = _load()
        _TABLE = {} if stored is None else dict(zip(stored.SOURCES, stored.CODE, strict=True))
    return _TABLE


def as_compiled(code: CodeType) -> CodeType:
    """`code` (stored in adws._dataclass_code) as compiling its source alone gives it: in file "<string>",
    starting at line 1 (a generated method's own code starts at line 2)."""
    consts = tuple(c.replace(co_filename="<string>", co_firstlineno=2) if isinstance(c, CodeType) else c
                   for c in code.co_consts)
    return code.replace(co_filename="<string>", co_firstlineno=1, co_consts=consts)


def _fixed(source: str) -> CodeType | None:
    code = _FIXED.get(source)
    if code is None:
        stored = _table().get(source)
        if stored is not None:
            code = _FIXED[source] = as_compiled(stored)
    return code


def _exec(source: Any, globals: dict[str, Any] | None = None, locals: dict[str, Any] | None = None, /) -> None:
    """`exec` as dataclasses calls it, from stored code where `source` is stored."""
    code = None
    if _RECORDING and type(source) is str and globals is not None:
        _RECORDING[-1].append((str(globals.get("__name__")), source))
    elif type(source) is str and globals is not None and locals is not None:
        code = _fixed(source)
    if code is None:
        builtins.exec(source, globals, locals)
        return
    assert globals is not None and locals is not None
    # What executing `def __create_fn__(...): ...` in (globals, locals) does, exec's own step included.
    globals.setdefault("__builtins__", builtins.__dict__)
    locals[_CREATE_FN] = FunctionType(code, globals, _CREATE_FN)


# -- field specifiers and replace, without importing dataclasses --------------------------------------------


class _Missing:
    """No default given (dataclasses.MISSING's stand-in until dataclasses is imported)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<dataclasses._MISSING_TYPE object>"


_MISSING: Any = _Missing()


class _Factory:
    """dataclasses._HAS_DEFAULT_FACTORY's stand-in: the default of a field with a default factory in `__init__`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


_HAS_DEFAULT_FACTORY: Any = _Factory()


class FieldSpec:
    """What `field(...)` was given in a class body; becomes a `dataclasses.Field` when the class is made."""

    __slots__ = ("compare", "default", "default_factory", "hash", "init", "kw_only", "metadata", "repr")

    def __init__(self, default: Any, default_factory: Any, init: bool, repr: bool, hash: bool | None,
                 compare: bool, metadata: Mapping[Any, Any] | None, kw_only: Any) -> None:
        self.default, self.default_factory, self.init, self.repr = default, default_factory, init, repr
        self.hash, self.compare, self.metadata, self.kw_only = hash, compare, metadata, kw_only

    def shape(self) -> tuple[Any, ...]:
        """What of it decides the class dataclasses makes (the default's value aside)."""
        return (self.default is not _MISSING, self.default_factory is not _MISSING, self.init, self.repr,
                self.hash, self.compare, self.metadata is not None,
                "missing" if self.kw_only is _MISSING else self.kw_only)

    def real(self) -> Any:
        """The `dataclasses.Field` that `dataclasses.field` makes of the same arguments."""
        import dataclasses

        def given(value: Any) -> Any:
            return dataclasses.MISSING if value is _MISSING else value

        return dataclasses.field(default=given(self.default), default_factory=given(self.default_factory),
                                 init=self.init, repr=self.repr, hash=self.hash, compare=self.compare,
                                 metadata=self.metadata, kw_only=given(self.kw_only))


def _frozen_instance_error(message: str) -> BaseException:
    """dataclasses.FrozenInstanceError(message): what a frozen class's `__setattr__`/`__delattr__` raise."""
    import dataclasses

    return dataclasses.FrozenInstanceError(message)


def _dataclass_getstate(self: Any) -> Any:
    import dataclasses

    return dataclasses._dataclass_getstate(self)  # type: ignore[attr-defined]


def _dataclass_setstate(self: Any, state: Any) -> None:
    import dataclasses

    dataclasses._dataclass_setstate(self, state)  # type: ignore[attr-defined]


if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
    from dataclasses import field as field
    from dataclasses import replace as replace
else:
    def field(*, default: Any = _MISSING, default_factory: Any = _MISSING, init: bool = True, repr: bool = True,
              hash: bool | None = None, compare: bool = True, metadata: Mapping[Any, Any] | None = None,
              kw_only: Any = _MISSING) -> Any:
        """`dataclasses.field`, for classes made by `dataclass` here. Raises ValueError as dataclasses does."""
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot specify both default and default_factory")
        return FieldSpec(default, default_factory, init, repr, hash, compare, metadata, kw_only)

    def replace(obj: Any, /, **changes: Any) -> Any:
        """`dataclasses.replace(obj, **changes)` (imports dataclasses on first use)."""
        import dataclasses

        return dataclasses.replace(obj, **changes)

    def dataclass(cls: type | None = None, /, **options: Any) -> Any:
        """`dataclasses.dataclass(cls, **options)`: built from its stored recipe where one matches the class,
        else by dataclasses with its generated methods made from stored code where stored."""
        if cls is None:
            return lambda inner: dataclass(inner, **options)
        with _LOCK:
            if not _RECORDING:
                recipe = _recipes().get(f"{cls.__module__}.{cls.__qualname__}")
                if recipe is not None and recipe[0] == _fingerprint(cls, options):
                    built = _build(cls, options, recipe)
                    if built is not None:
                        return built
            return _by_dataclasses(cls, options)


def _by_dataclasses(cls: type, options: Mapping[str, Any]) -> Any:
    import dataclasses

    fingerprint = _fingerprint(cls, options) if _RECORDING else None
    for name, value in list(vars(cls).items()):
        if type(value) is FieldSpec:
            setattr(cls, name, value.real())
    sources_before = len(_RECORDING[-1]) if _RECORDING else 0
    # dataclasses finds `exec` as a module global (else the builtin): set for this class only
    module = vars(dataclasses)
    previous = module.get("exec", _ABSENT)
    module["exec"] = _exec
    try:
        made: type = dataclasses.dataclass(cls, **options)
    finally:
        if previous is _ABSENT:
            module.pop("exec", None)
        else:
            module["exec"] = previous
    if _RECORDING:
        _MADE_WHILE_RECORDING.add(made)
    if _RECORDING and _RECIPES_RECORDED and fingerprint is not None:
        recipe = _recipe_of(made, [source for _, source in _RECORDING[-1][sources_before:]], fingerprint)
        if recipe is not None:
            _RECIPES_RECORDED[-1][f"{made.__module__}.{made.__qualname__}"] = recipe
    return made


def record(into: list[tuple[str, str]], recipes: dict[str, Any] | None = None) -> Callable[[], None]:
    """For tools/gen_dataclass_code.py: until the returned function is called, every source adws's dataclasses
    compile is appended to `into` as (module, source), nothing is taken from the table, and (when `recipes` is
    given) each class's recipe is stored in `recipes` under "module.qualname", with sources as text."""
    _RECORDING.append(into)
    if recipes is not None:
        _RECIPES_RECORDED.append(recipes)

    def stop() -> None:
        _RECORDING.remove(into)
        if recipes is not None:
            _RECIPES_RECORDED.remove(recipes)

    return stop


# -- recipes: a class built as dataclasses would build it ---------------------------------------------------

# The dunder names whose presence in a class body changes what dataclasses adds (or refuses).
_WATCHED = ("__init__", "__repr__", "__eq__", "__lt__", "__le__", "__gt__", "__ge__", "__setattr__", "__delattr__",
            "__match_args__", "__slots__", "__getstate__", "__setstate__", "__weakref__", "__dict__")
_OPTIONS = {"init": True, "repr": True, "eq": True, "order": False, "unsafe_hash": False, "frozen": False,
            "match_args": True, "kw_only": False, "slots": False, "weakref_slot": False}
_FIELD, _CLASSVAR, _INITVAR = "_FIELD", "_FIELD_CLASSVAR", "_FIELD_INITVAR"
# Attributes set by name (mypy and ruff would each object to one way of writing them directly).
_PARAMS, _FIELDS, _MATCH_ARGS = "__dataclass_params__", "__dataclass_fields__", "__match_args__"
_GETSTATE, _SETSTATE = "__getstate__", "__setstate__"


class _Field:
    """One field as this module keeps it: what `dataclasses.Field` holds, without the dataclasses module."""

    __slots__ = (
        "compare",
        "default",
        "default_factory",
        "hash",
        "init",
        "kind",
        "kw_only",
        "metadata",
        "name",
        "repr",
        "spec",
        "type",
    )

    def __init__(self, name: str, hint: str, kind: str, value: Any, kw_only: bool) -> None:
        spec = value if type(value) is FieldSpec else None
        self.name, self.type, self.kind, self.spec = name, hint, kind, spec
        if spec is None:
            self.default, self.default_factory = (_MISSING if value is _ABSENT else value), _MISSING
            self.init, self.repr, self.hash, self.compare, self.metadata = True, True, None, True, None
            self.kw_only = kw_only if kind != _CLASSVAR else _MISSING
        else:
            self.default, self.default_factory, self.init = spec.default, spec.default_factory, spec.init
            self.repr, self.hash, self.compare, self.metadata = spec.repr, spec.hash, spec.compare, spec.metadata
            self.kw_only = spec.kw_only if spec.kw_only is not _MISSING or kind == _CLASSVAR else kw_only

    def real(self) -> Any:
        """This field as the `dataclasses.Field` dataclasses would have made."""
        import dataclasses

        made: Any = self.spec.real() if self.spec is not None else dataclasses.field(
            default=dataclasses.MISSING if self.default is _MISSING else self.default)
        made.name, made.type = self.name, self.type
        made._field_type = getattr(dataclasses, self.kind)
        if self.kind != _CLASSVAR:
            made.kw_only = self.kw_only
        return made


class _Built:
    """What this module knows of a class it built: its fields (inherited ones first) and its options."""

    __slots__ = ("fields", "options")

    def __init__(self, fields: dict[str, _Field], options: dict[str, Any]) -> None:
        self.fields, self.options = fields, options


_BUILT: dict[type, _Built] = {}
_MADE_WHILE_RECORDING: set[type] = set()  # classes dataclasses made while recording: bases a recipe may name
_RECIPES: dict[str, Any] | None = None


def _recipes() -> dict[str, Any]:
    global _RECIPES
    if _RECIPES is None:
        stored = _load()
        # Only the Python that wrote them: what dataclasses makes of a class (its `_DataclassParams`, 3.13's
        # `__replace__`) changes between versions, and a class built for another would not be a dataclass there.
        same = stored is not None and getattr(stored, "PYTHON", None) == tuple(sys.version_info[:2])
        _RECIPES = getattr(stored, "RECIPES", {}) if same else {}
    return _RECIPES


_BY_INDEX: dict[int, CodeType] = {}


def _code_at(index: int) -> CodeType:
    """The stored code of source number `index`, as compiling the source gives it."""
    code = _BY_INDEX.get(index)
    if code is None:
        code = _BY_INDEX[index] = as_compiled(_load().CODE[index])
    return code


def _fingerprint(cls: type, options: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What decides the class dataclasses makes of `cls` with `options` (None: not one this module builds)."""
    if type(cls) is not type:
        return None
    own = cls.__dict__
    annotations = own.get("__annotations__", {})
    shapes: list[Any] = []
    for name, hint in annotations.items():
        if type(hint) is not str:
            return None
        value = own.get(name, _ABSENT)
        if value is _ABSENT:
            shapes.append(None)
        elif type(value) is FieldSpec:
            shapes.append(value.shape())
        elif type(value).__name__ == "Field" and type(value).__module__ == "dataclasses":
            return None
        else:
            if type(value).__hash__ is None:  # a mutable default: dataclasses says what is wrong
                return None
            shapes.append("=")
    if any(type(value) is FieldSpec and name not in annotations for name, value in own.items()):
        return None
    bases = cls.__mro__[1:-1]
    for base in bases:
        if base not in _BUILT and base not in _MADE_WHILE_RECORDING and (
                "__dataclass_fields__" in base.__dict__ or "__slots__" in base.__dict__):
            return None
    hash_kind = "absent" if "__hash__" not in own else "none" if own["__hash__"] is None else "set"
    return (tuple(sorted(options.items())), tuple(annotations.items()), tuple(shapes),
            tuple(f"{b.__module__}.{b.__qualname__}" for b in bases), tuple(n for n in _WATCHED if n in own),
            hash_kind, bool(own.get("__doc__")), hasattr(cls, "__post_init__"))


def _recipe_of(made: type, sources: list[str], fingerprint: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The recipe of `made` (a class dataclasses just made, from `sources`): (fingerprint, the kind of each own
    annotation, the methods dataclasses set as (name, source or None for "set to None", repr wrapper?))."""
    own = made.__dict__
    fields = own["__dataclass_fields__"]
    annotations = own.get("__annotations__", {})
    if any(name not in fields for name in annotations):  # a KW_ONLY marker: left to dataclasses
        return None
    kinds = tuple(fields[name]._field_type.name for name in annotations)
    by_name: dict[str, str] = {}
    for source in sources:
        by_name[source.split("\n", 2)[1].split("(", 1)[0].removeprefix(" def ")] = source
    methods: list[tuple[str, str | None, bool]] = []
    for name, value in made.__dict__.items():
        inner = getattr(value, "__wrapped__", value)
        code = getattr(inner, "__code__", None)
        if code is not None and code.co_filename == "<string>" and name in by_name:
            methods.append((name, by_name[name], inner is not value))
        elif name == "__hash__" and value is None and fingerprint[5] != "none":
            methods.append((name, None, False))
    return (fingerprint, kinds, tuple(methods))


def _recursive_repr(user_function: Callable[[Any], str]) -> Callable[[Any], str]:
    """dataclasses._recursive_repr: a repr that shows "..." for an object met again inside its own repr."""
    import functools
    from _thread import get_ident

    repr_running: set[tuple[int, int]] = set()

    @functools.wraps(user_function)
    def wrapper(self: Any) -> str:
        key = id(self), get_ident()
        if key in repr_running:
            return "..."
        repr_running.add(key)
        try:
            result = user_function(self)
        finally:
            repr_running.discard(key)
        return result
    return wrapper


class _Lazy:
    """`__dataclass_fields__` / `__dataclass_params__` of a built class, made (importing dataclasses) on first
    use and then put in the class in place of this descriptor."""

    __slots__ = ("make", "name", "value")

    def __init__(self, name: str, make: Callable[[], Any]) -> None:
        self.name, self.make, self.value = name, make, _ABSENT

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        with _LOCK:
            if self.value is _ABSENT:
                self.value = self.make()
            for klass in (owner or type(obj)).__mro__:
                if klass.__dict__.get(self.name) is self:
                    type.__setattr__(klass, self.name, self.value)
        return self.value


def _get_slots(cls: type) -> tuple[str, ...]:
    slots = cls.__dict__.get("__slots__")
    if slots is None:
        return ()
    return (slots,) if isinstance(slots, str) else tuple(slots)


def _build(cls: type, options: Mapping[str, Any], recipe: tuple[Any, ...]) -> type | None:
    """`cls` made into the dataclass `recipe` describes, as dataclasses._process_class makes it; None for a class
    dataclasses would refuse (it then says why)."""
    _, kinds, methods = recipe
    codes = [_code_at(index) if index >= 0 else None for _, index, _ in methods]
    opts = {**_OPTIONS, **options}
    own = cls.__dict__
    fields: dict[str, _Field] = {}
    frozen_bases = []
    for base in cls.__mro__[-1:0:-1]:
        known = _BUILT.get(base)
        if known is not None:
            fields.update(known.fields)
            frozen_bases.append(known.options["frozen"])
    if frozen_bases and any(frozen_bases) != opts["frozen"]:
        return None  # dataclasses refuses it, in its words
    mine = [_Field(name, hint, kind, own.get(name, _ABSENT), opts["kw_only"])
            for (name, hint), kind in zip(own.get("__annotations__", {}).items(), kinds, strict=True)]
    if any(f.kind != _FIELD and f.default_factory is not _MISSING for f in mine):
        return None
    module = sys.modules.get(cls.__module__)
    namespace = module.__dict__ if module is not None else {}
    cls_ref = [cls]  # the class made last (with slots, a new one): where __dataclass_fields__ is read from
    setattr(cls, _PARAMS, _Lazy(_PARAMS, lambda: _params(opts)))
    for f in mine:
        fields[f.name] = f
        if f.spec is not None:
            if f.default is _MISSING:
                delattr(cls, f.name)
            else:
                setattr(cls, f.name, f.default)
    setattr(cls, _FIELDS, _Lazy(_FIELDS, lambda: _real_fields(cls_ref[0], mine)))
    arguments = {"MISSING": _MISSING, "_HAS_DEFAULT_FACTORY": _HAS_DEFAULT_FACTORY,
                 "__dataclass_builtins_object__": object, "_return_type": None, "cls": cls,
                 "FrozenInstanceError": _frozen_instance_error}
    for f in fields.values():
        arguments[f"_type_{f.name}"] = f.type
        arguments[f"_dflt_{f.name}"] = f.default_factory if f.default_factory is not _MISSING else f.default
    namespace.setdefault("__builtins__", builtins.__dict__)
    for (name, _, wrap), code in zip(methods, codes, strict=True):
        if code is None:
            setattr(cls, name, None)
            continue
        create = FunctionType(code, namespace, _CREATE_FN)
        method = create(*[arguments[arg] for arg in code.co_varnames[:code.co_argcount]])
        if wrap:
            method = _recursive_repr(method)
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        setattr(cls, name, method)
    init_fields = [f for f in fields.values() if f.kind != _CLASSVAR]
    if not cls.__doc__:
        cls.__doc__ = cls.__name__ + _signature_text(cls, init_fields)
    if opts["match_args"] and "__match_args__" not in own:
        setattr(cls, _MATCH_ARGS, tuple(f.name for f in init_fields if f.init and not f.kw_only))
    if opts["slots"]:
        cls = _with_slots(cls, [f.name for f in fields.values() if f.kind == _FIELD], opts)
        cls_ref[0] = cls
    _BUILT[cls] = _Built(fields, opts)
    return cls


def _with_slots(cls: type, field_names: list[str], opts: Mapping[str, Any]) -> type:
    """dataclasses._add_slots: the class made again with `__slots__` (the only way to give it slots)."""
    cls_dict = dict(cls.__dict__)
    inherited = set(chain.from_iterable(map(_get_slots, cls.__mro__[1:-1])))
    cls_dict["__slots__"] = tuple(name for name in chain(field_names, ("__weakref__",) if opts["weakref_slot"] else ())
                                  if name not in inherited)
    for name in field_names:
        cls_dict.pop(name, None)
    cls_dict.pop("__dict__", None)
    cls_dict.pop("__weakref__", None)
    qualname = getattr(cls, "__qualname__", None)
    made = type(cls)(cls.__name__, cls.__bases__, cls_dict)
    if qualname is not None:
        made.__qualname__ = qualname
    if opts["frozen"]:
        if "__getstate__" not in cls_dict:
            setattr(made, _GETSTATE, _dataclass_getstate)
        if "__setstate__" not in cls_dict:
            setattr(made, _SETSTATE, _dataclass_setstate)
    return made


def _signature_text(cls: type, init_fields: list[_Field]) -> str:
    """`str(inspect.signature(cls))` without ' -> None', as dataclasses writes a class's missing docstring: the
    generated `__init__`'s parameters (annotations are strings here, shown by repr)."""
    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, "__code__", None) is None or init.__code__.co_filename != "<string>":
        import inspect  # an __init__ of the class's own: ask inspect, as dataclasses does

        try:
            return str(inspect.signature(cls)).replace(" -> None", "")
        except (TypeError, ValueError):
            return ""

    def parameter(f: _Field) -> str:
        text = f"{f.name}: {f.type!r}"
        if f.default_factory is not _MISSING:
            return f"{text} = <factory>"
        return text if f.default is _MISSING else f"{text} = {f.default!r}"

    taken = [f for f in init_fields if f.init]
    parts = [parameter(f) for f in taken if not f.kw_only]
    keyword = [parameter(f) for f in taken if f.kw_only]
    if keyword:
        parts += ["*", *keyword]
    return f"({', '.join(parts)}) -> None".replace(" -> None", "")


def _params(opts: Mapping[str, Any]) -> Any:
    import dataclasses

    return dataclasses._DataclassParams(opts["init"], opts["repr"], opts["eq"], opts["order"],  # type: ignore[attr-defined]
                                        opts["unsafe_hash"], opts["frozen"])


def _real_fields(cls: type, mine: list[_Field]) -> dict[str, Any]:
    """The class's `__dataclass_fields__` as dataclasses makes it: the bases' own Field objects, then its own."""
    fields: dict[str, Any] = {}
    for base in cls.__mro__[-1:0:-1]:
        if base in _BUILT:
            fields.update(base.__dataclass_fields__)  # type: ignore[attr-defined]
    for f in mine:
        fields[f.name] = f.real()
    return fields


def init_fields(cls: type) -> list[str] | None:
    """The names of the `__init__` fields of dataclass `cls`, in order (None when `cls` is not a dataclass);
    for a class built here, without importing dataclasses."""
    built = _BUILT.get(cls)
    if built is not None:
        return [f.name for f in built.fields.values() if f.kind == _FIELD and f.init]
    dataclasses = sys.modules.get("dataclasses")  # not imported: no class can be a dataclass but ours
    if dataclasses is None or not dataclasses.is_dataclass(cls):
        return None
    return [f.name for f in dataclasses.fields(cls) if f.init]
