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
"""

from __future__ import annotations

import builtins
import dataclasses
import threading
from collections.abc import Callable
from types import CodeType, FunctionType
from typing import TYPE_CHECKING, Any

_LOCK = threading.RLock()
_ABSENT = object()
_RECORDING: list[list[tuple[str, str]]] = []  # tools/gen_dataclass_code.py: where sources are recorded
_TABLE: dict[str, CodeType] | None = None
_FIXED: dict[str, CodeType] = {}  # source -> its code as compile() gives it (file "<string>", line 1)
_CREATE_FN = "__create_fn__"  # the function dataclasses' generated source defines and then calls


def _table() -> dict[str, CodeType]:
    global _TABLE
    if _TABLE is None:
        try:
            from adws import _dataclass_code
        except ImportError:  # a checkout without the generated table: compile as dataclasses does
            _TABLE = {}
        else:
            _TABLE = dict(zip(_dataclass_code.SOURCES, _dataclass_code.CODE, strict=True))
    return _TABLE


def as_compiled(code: CodeType) -> CodeType:
    """`code` (stored in adws._dataclass_code) as compiling its source alone gives it: in file "<string>",
    starting at line 1 (a generated method's own code starts at line 2)."""
    consts = tuple(c.replace(co_filename="<string>", co_firstlineno=2) if isinstance(c, CodeType) else c
                   for c in code.co_consts)
    return code.replace(co_filename="<string>", co_firstlineno=1, co_consts=consts)


def _exec(source: Any, globals: dict[str, Any] | None = None, locals: dict[str, Any] | None = None, /) -> None:
    """`exec` as dataclasses calls it, from stored code where `source` is stored."""
    code = None
    if _RECORDING and type(source) is str and globals is not None:
        _RECORDING[-1].append((str(globals.get("__name__")), source))
    elif type(source) is str and globals is not None and locals is not None:
        code = _FIXED.get(source)
        if code is None:
            stored = _table().get(source)
            if stored is not None:
                code = _FIXED[source] = as_compiled(stored)
    if code is None:
        builtins.exec(source, globals, locals)
        return
    assert globals is not None and locals is not None
    # What executing `def __create_fn__(...): ...` in (globals, locals) does, exec's own step included.
    globals.setdefault("__builtins__", builtins.__dict__)
    locals[_CREATE_FN] = FunctionType(code, globals, _CREATE_FN)


if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
else:
    def dataclass(cls: type | None = None, /, **options: Any) -> Any:
        """`dataclasses.dataclass(cls, **options)`, its generated methods made from stored code where stored."""
        if cls is None:
            return lambda inner: dataclass(inner, **options)
        with _LOCK:  # dataclasses finds `exec` as a module global (else the builtin): set for this class only
            module = vars(dataclasses)
            previous = module.get("exec", _ABSENT)
            module["exec"] = _exec
            try:
                return dataclasses.dataclass(cls, **options)
            finally:
                if previous is _ABSENT:
                    module.pop("exec", None)
                else:
                    module["exec"] = previous


def record(into: list[tuple[str, str]]) -> Callable[[], None]:
    """For tools/gen_dataclass_code.py: until the returned function is called, every source adws's dataclasses
    compile is appended to `into` as (module, source), and nothing is taken from the table."""
    _RECORDING.append(into)

    def stop() -> None:
        _RECORDING.remove(into)

    return stop
