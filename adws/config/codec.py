"""The compiled config as plain JSON data and back, led by the type hints of adws.compiled's dataclasses.

Nothing in a cache file is executed: the decoder builds only the types that the dataclass fields declare
(str, int, float, bool, None, enums, tuples, frozensets, mappings, regexes from their source, and the
dataclasses themselves), checks every value against its declared type, and raises `CacheError` for anything
else. New fields in adws.compiled are followed without code here; a field whose type the codec cannot write
(a callable, an object of some other class) makes `encode` raise `CacheError`, and the caller then keeps no
cache for that config rather than a wrong one.

Compiled rule conditions are not data: they are rebuilt on load from each rule's `raw_conditions` with the
same compiler that built them (`REBUILT`), cron expressions taking their stored expansion. Compiled regexes
(Python's and RE2's) and failure patterns are written as their source and compiled again (`OPAQUE`); the
built-in failure patterns are written by position.

Format: a dataclass is a JSON object of its init fields; tuples, lists and frozensets are arrays; a mapping
is an array of [key, value] pairs (keys keep their types); a regex is [source, flags]; a union of several
non-None types is [arm index, value]. A field typed `Any` holds parsed TOML/JSON: JSON values as they are,
with tagged objects {"$": TAG, "v": ...} for tuples, datetimes, dates, times and objects with non-string keys
or a "$" key.
"""

from __future__ import annotations

import contextvars
import enum
import re
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import Any

from adws.dataclass_cache import init_fields


class CacheError(ValueError):
    """A value the codec cannot write, or data that is not a well-formed encoding of the declared type."""


# One memo per `decode` call: conditions written alike in several rules are rebuilt once and shared, as
# config/load.py shares them when it compiles (adws.conditions.compile_conditions).
_CONDITION_MEMO: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar("condition_memo",
                                                                                      default=None)


def _conditions_from_raw(fields: Mapping[str, Any]) -> Any:
    from adws import cron, userregex
    from adws.conditions import compile_conditions

    raw = fields["raw_conditions"]
    with cron.already_checked(), userregex.already_checked():  # validated when the entry was written
        conditions, errors = compile_conditions(raw, _CONDITION_MEMO.get())
    if errors:
        raise CacheError("stored rule conditions do not compile")
    return tuple(conditions)


# (dataclass name, field) -> builds the field from the other, decoded fields. Not written to the file.
REBUILT: dict[tuple[str, str], Callable[[Mapping[str, Any]], Any]] = {
    ("RuleSpec", "conditions"): _conditions_from_raw,
}

def _encode_searcher(value: Any) -> Any:
    if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
        return ["re", value.pattern, value.flags]
    from adws.userregex import UserRegex

    if type(value) is UserRegex:
        return ["re2", value.pattern, value.ignore_case]
    raise CacheError(f"cannot store a regex of type {type(value).__name__}")


def _decode_searcher(data: Any) -> Any:
    items = _list(data)
    if len(items) != 3 or type(items[1]) is not str:
        raise CacheError("bad regex")
    kind, source, option = items
    try:
        if kind == "re" and type(option) is int:
            return re.compile(source, option)
        if kind == "re2" and type(option) is bool:
            from adws.userregex import already_checked, compile_user_regex

            with already_checked():  # compiled when the entry was written: RE2 compiles it at its first search
                return compile_user_regex(source, option)
    except (re.error, ValueError, TypeError, OverflowError):
        pass
    raise CacheError("bad regex")


def _encode_pattern(value: Any) -> Any:
    from adws.classify import DEFAULT_PATTERNS, Pattern

    if type(value) is not Pattern:
        raise CacheError(f"expected a failure Pattern, got {type(value).__name__}")
    for index, builtin in enumerate(DEFAULT_PATTERNS):
        if value is builtin:  # the built-in patterns are the module's own objects: name them, do not copy them
            return ["builtin", index]
    return ["own", _encode_searcher(value.regex), value.outcome.value]


def _decode_pattern(data: Any) -> Any:
    from adws.attempt import OutcomeClass
    from adws.classify import DEFAULT_PATTERNS, Pattern

    items = _list(data)
    if len(items) == 2 and items[0] == "builtin" and type(items[1]) is int and 0 <= items[1] < len(DEFAULT_PATTERNS):
        return DEFAULT_PATTERNS[items[1]]
    if len(items) == 3 and items[0] == "own":
        try:
            return Pattern(_decode_searcher(items[1]), OutcomeClass(items[2]))
        except ValueError:
            raise CacheError("bad failure pattern") from None
    raise CacheError("bad failure pattern")


# Types whose values are compiled programs rather than data, by "module.QualName" of the type hint: each is
# written as the source it was compiled from and compiled again on load.
OPAQUE: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "adws.userregex.Searcher": (_encode_searcher, _decode_searcher),
    "adws.classify.Pattern": (_encode_pattern, _decode_pattern),
}


def _opaque(hint: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]] | None:
    name = f"{getattr(hint, '__module__', '')}.{getattr(hint, '__qualname__', '')}"
    return OPAQUE.get(name)


_HINTS: dict[type, dict[str, Any]] = {}


def _fields(cls: type) -> list[tuple[str, Any, bool]]:
    """(name, resolved type hint, rebuilt?) of each init field of a dataclass."""
    hints = _HINTS.get(cls)
    if hints is None:
        try:
            # include_extras: no adws dataclass field is Annotated (one that were would be refused below, and
            # its config kept uncached), and stripping Annotated from every hint is half of the call's cost.
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception as exc:  # a hint naming something only imported for type checking
            raise CacheError(f"cannot resolve the type hints of {cls.__name__}: {exc}") from None
        _HINTS[cls] = hints
    names = init_fields(cls)
    assert names is not None  # only asked of dataclasses
    return [(name, hints[name], (cls.__name__, name) in REBUILT) for name in names]


def _split(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    origin = typing.get_origin(hint)
    if origin is typing.Union or isinstance(hint, types.UnionType):
        return typing.Union, typing.get_args(hint)
    return origin, typing.get_args(hint)


_SCALARS: tuple[type, ...] = (str, int, float, bool)


def encode(value: Any, hint: Any) -> Any:
    """`value` (of type `hint`) as JSON-ready data. CacheError for what the format cannot hold."""
    return _encoder(hint)(value)


_ENCODERS: dict[Any, Callable[[Any], Any]] = {}


def _encoder(hint: Any) -> Callable[[Any], Any]:
    """A function writing values of type `hint`, built once per hint (as `_decoder` is): the per-value work is
    a type check, not a walk through the hint."""
    return _built_once(_ENCODERS, hint, _build_encoder)


def _built_once(built: dict[Any, Callable[[Any], Any]], hint: Any,
                build: Callable[[Any], Callable[[Any], Any]]) -> Callable[[Any], Any]:
    """`build(hint)`, kept in `built` (an unhashable hint is built each time). While it is built, a placeholder
    stands in, so that a dataclass referring to itself finds its own function; a build that fails leaves none."""
    try:
        return built[hint]
    except KeyError:
        pass
    except TypeError:  # an unhashable hint
        return build(hint)
    built[hint] = lambda value: built[hint](value)
    try:
        made = build(hint)
    except BaseException:
        del built[hint]  # not a placeholder that would call itself forever
        raise
    built[hint] = made
    return made


def _build_encoder(hint: Any) -> Callable[[Any], Any]:
    if hint is Any:
        return lambda value: _encode_any(value, 0)
    opaque = _opaque(hint)
    if opaque is not None:
        return opaque[0]
    if hint is type(None):
        def none(value: Any) -> None:
            if value is not None:
                raise CacheError(f"expected None, got {type(value).__name__}")
        return none
    origin, args = _split(hint)
    if origin is typing.Union:
        nullable = type(None) in args
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:
            inner = _encoder(arms[0])
            return lambda value: None if value is None and nullable else inner(value)
        writers = [(i, arm, _encoder(arm)) for i, arm in enumerate(arms)]

        def union(value: Any) -> Any:
            if value is None and nullable:
                return None
            for i, arm, write in writers:
                if _is_instance(value, arm):
                    return [i, write(value)]
            raise CacheError(f"{type(value).__name__} is none of {hint}")
        return union
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        def member(value: Any) -> Any:
            if not isinstance(value, hint):
                raise CacheError(f"expected {hint.__name__}, got {type(value).__name__}")
            return value.value
        return member
    if hint in _SCALARS:
        def scalar(value: Any) -> Any:
            if type(value) is not hint and not (hint is float and type(value) is int):
                raise CacheError(f"expected {hint.__name__}, got {type(value).__name__}")
            return value
        return scalar
    if hint is re.Pattern or origin is re.Pattern:
        def pattern(value: Any) -> Any:
            if not isinstance(value, re.Pattern) or not isinstance(value.pattern, str):
                raise CacheError("expected a compiled regex")
            return [value.pattern, value.flags]
        return pattern
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _encoder(args[0])

            def variadic(value: Any) -> Any:
                if not isinstance(value, tuple):
                    raise CacheError(f"expected a tuple, got {type(value).__name__}")
                return [item(v) for v in value]
            return variadic
        writers_ = [_encoder(a) for a in args]

        def fixed(value: Any) -> Any:
            if not isinstance(value, tuple):
                raise CacheError(f"expected a tuple, got {type(value).__name__}")
            if len(writers_) != len(value):
                raise CacheError(f"expected a tuple of {len(writers_)}, got {len(value)}")
            return [write(v) for v, write in zip(value, writers_, strict=True)]
        return fixed
    if origin is frozenset:
        element = _encoder(args[0])

        def members(value: Any) -> Any:
            if not isinstance(value, frozenset):
                raise CacheError(f"expected a frozenset, got {type(value).__name__}")
            return sorted((element(v) for v in value), key=repr)
        return members
    if origin in (Mapping, dict, typing.Mapping):
        write_key, write_value = _encoder(args[0]), _encoder(args[1])

        def mapping(value: Any) -> Any:
            if not isinstance(value, Mapping):
                raise CacheError(f"expected a mapping, got {type(value).__name__}")
            return [[write_key(k), write_value(v)] for k, v in value.items()]
        return mapping
    if isinstance(hint, type) and init_fields(hint) is not None:
        stored = [(name, _encoder(field_hint)) for name, field_hint, rebuilt in _fields(hint) if not rebuilt]
        cls = hint

        def instance(value: Any) -> Any:
            if type(value) is not cls:
                raise CacheError(f"expected {cls.__name__}, got {type(value).__name__}")
            return {name: write(getattr(value, name)) for name, write in stored}
        return instance

    def unknown(value: Any) -> Any:
        raise CacheError(f"cannot store a value of type {hint}")
    return unknown


def _is_instance(value: Any, hint: Any) -> bool:
    origin, _ = _split(hint)
    target = origin or hint
    if target is Mapping or target is typing.Mapping:
        return isinstance(value, Mapping)
    return isinstance(target, type) and isinstance(value, target) and not (target is int and type(value) is bool)


_MAX_DEPTH = 200


def _encode_any(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise CacheError("nested too deeply")
    if value is None or type(value) in _SCALARS:
        return value
    if isinstance(value, list):
        return [_encode_any(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return {"$": "tuple", "v": [_encode_any(v, depth + 1) for v in value]}
    if isinstance(value, datetime):  # before date: a datetime is a date
        return {"$": "datetime", "v": value.isoformat()}
    if isinstance(value, date):
        return {"$": "date", "v": value.isoformat()}
    if isinstance(value, time):
        return {"$": "time", "v": value.isoformat()}
    if type(value) is dict:
        if all(type(k) is str for k in value) and "$" not in value:
            return {k: _encode_any(v, depth + 1) for k, v in value.items()}
        return {"$": "dict", "v": [[_encode_any(k, depth + 1), _encode_any(v, depth + 1)] for k, v in value.items()]}
    raise CacheError(f"cannot store a value of type {type(value).__name__}")


def decode(data: Any, hint: Any) -> Any:
    """The value of type `hint` that `encode` wrote as `data`. CacheError for anything else."""
    token = _CONDITION_MEMO.set({})
    try:
        return _decoder(hint)(data)
    finally:
        _CONDITION_MEMO.reset(token)


_DECODERS: dict[Any, Callable[[Any], Any]] = {}


def _decoder(hint: Any) -> Callable[[Any], Any]:
    """A function reading data of type `hint`, built once per hint: the per-value work is a type check."""
    return _built_once(_DECODERS, hint, _build_decoder)


def _build_decoder(hint: Any) -> Callable[[Any], Any]:
    if hint is Any:
        return lambda data: _decode_any(data, 0)
    opaque = _opaque(hint)
    if opaque is not None:
        return opaque[1]
    if hint is type(None):
        def none(data: Any) -> None:
            if data is not None:
                raise CacheError("expected null")
        return none
    origin, args = _split(hint)
    if origin is typing.Union:
        arms = [a for a in args if a is not type(None)]
        nullable = type(None) in args
        if len(arms) == 1:
            inner = _decoder(arms[0])
            return lambda data: None if data is None and nullable else inner(data)
        readers = [_decoder(a) for a in arms]

        def union(data: Any) -> Any:
            if data is None and nullable:
                return None
            index, payload = _pair(data)
            if type(index) is not int or not 0 <= index < len(readers):
                raise CacheError("bad union arm")
            return readers[index](payload)
        return union
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = {member.value: member for member in hint}

        def member(data: Any) -> Any:
            try:
                return members[data]
            except (KeyError, TypeError):
                raise CacheError(f"not a {hint.__name__}: {data!r}") from None
        return member
    if hint in _SCALARS:
        def scalar(data: Any) -> Any:
            if type(data) is not hint and not (hint is float and type(data) is int):
                raise CacheError(f"expected {hint.__name__}")
            return data
        return scalar
    if hint is re.Pattern or origin is re.Pattern:
        def pattern(data: Any) -> Any:
            source, flags = _pair(data)
            if type(source) is not str or type(flags) is not int:
                raise CacheError("bad regex")
            try:
                return re.compile(source, flags)
            except (re.error, ValueError, TypeError, OverflowError):
                raise CacheError("bad regex") from None
        return pattern
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _decoder(args[0])
            return lambda data: tuple([item(v) for v in _list(data)])
        readers = [_decoder(a) for a in args]

        def fixed(data: Any) -> tuple[Any, ...]:
            items = _list(data)
            if len(items) != len(readers):
                raise CacheError("tuple of the wrong length")
            return tuple([read(v) for read, v in zip(readers, items, strict=True)])
        return fixed
    if origin is frozenset:
        item = _decoder(args[0])
        return lambda data: frozenset([item(v) for v in _list(data)])
    if origin in (Mapping, dict, typing.Mapping):
        read_key, read_value = _decoder(args[0]), _decoder(args[1])

        def mapping(data: Any) -> dict[Any, Any]:
            out = {}
            for entry in _list(data):
                key, value = _pair(entry)
                out[_hashable(read_key(key))] = read_value(value)
            return out
        return mapping
    if isinstance(hint, type) and init_fields(hint) is not None:
        fields = _fields(hint)
        stored = [(name, _decoder(field_hint)) for name, field_hint, rebuilt in fields if not rebuilt]
        names = sorted(name for name, _ in stored)
        rebuilt = [(name, REBUILT[(hint.__name__, name)]) for name, _, is_rebuilt in fields if is_rebuilt]
        cls = hint

        def instance(data: Any) -> Any:
            if type(data) is not dict or len(data) != len(names) or sorted(data) != names:
                raise CacheError(f"{cls.__name__}: not the fields it has")
            values = {name: read(data[name]) for name, read in stored}
            for name, build in rebuilt:
                values[name] = build(values)
            return cls(**values)
        return instance
    raise CacheError(f"cannot read a value of type {hint}")


def _list(data: Any) -> list[Any]:
    if type(data) is not list:
        raise CacheError("expected an array")
    return data


def _pair(data: Any) -> tuple[Any, Any]:
    items = _list(data)
    if len(items) != 2:
        raise CacheError("expected a pair")
    return items[0], items[1]


_TAGS: dict[str, Callable[[Any, int], Any]] = {
    "tuple": lambda v, depth: tuple(_decode_any(x, depth + 1) for x in _list(v)),
    "datetime": lambda v, depth: datetime.fromisoformat(_str(v)),
    "date": lambda v, depth: date.fromisoformat(_str(v)),
    "time": lambda v, depth: time.fromisoformat(_str(v)),
    "dict": lambda v, depth: {_hashable(_decode_any(k, depth + 1)): _decode_any(x, depth + 1)
                              for k, x in (_pair(item) for item in _list(v))},
}


def _str(value: Any) -> str:
    if type(value) is not str:
        raise CacheError("expected a string")
    return value


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        raise CacheError("unhashable key") from None
    return value


def _decode_any(data: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise CacheError("nested too deeply")
    if data is None or type(data) in _SCALARS:
        return data
    if type(data) is list:
        return [_decode_any(v, depth + 1) for v in data]
    if type(data) is dict:
        if "$" in data:
            tag = data["$"]
            if set(data) != {"$", "v"} or type(tag) is not str or tag not in _TAGS:
                raise CacheError("bad tagged value")
            try:
                return _TAGS[tag](data["v"], depth)
            except ValueError as exc:  # a date that does not parse
                raise CacheError(str(exc)) from None
        return {k: _decode_any(v, depth + 1) for k, v in data.items()}
    raise CacheError("unexpected JSON value")
