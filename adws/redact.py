"""What adws writes or prints is made safe here: secrets out, prompt text out, every string encodable.

Three kinds of text must never leave adws as they came in:
- secret values: every variable a config names as a key (`api_key_env`, the provider's and each account's) and
  every environment variable whose *name* looks secret (KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL, PRIVATE) with a
  value long enough to recognise (`MIN_SECRET_CHARS`). They are replaced by `***` wherever they appear: an
  agent printing `Invalid API key: sk-...` into its error must not put the key in the attempt's reason. So are
  their encoded forms (`secret_forms`, adws.secret_forms: base64 at every alignment, as in a Basic-auth header of
  `user:KEY`, percent-encoding, JSON, HTML/XML, shell quoting, hex; each also as a JSON string spells it),
  found with the values in one pass (adws.needles).
- prompt text, in what goes to the audit log when `[audit] include_prompt = false`: the prompt itself, its
  trimmed form and each of its longer lines (an agent echoing the prompt in its error, a template that
  rendered `{{ prompt | trim }}` into argv) become `<prompt>`.
- lone surrogates (`"\\ud800"` is valid JSON, but no UTF-8 encoder takes it): written as the escape `\\ud800`
  so a result, an audit line or a file name can always be encoded.

`Scrubber.deep` walks the JSON-shaped values adws prints and logs (dicts, lists, strings).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from adws.needles import Needles

__all__ = ["MIN_SECRET_CHARS", "PROMPT_MARK", "REDACTED", "SECRET_NAME", "Scrubber", "dumps", "encodable",
           "encode_text", "looks_secret", "matcher", "replace_in", "secret_forms", "secret_values"]

REDACTED = "***"
PROMPT_MARK = "<prompt>"
# Shorter values ("1", "true", "dev") would blank out ordinary words; no real key is this short.
MIN_SECRET_CHARS = 8
# Lines of the prompt at least this long are stripped on their own (an agent often quotes one line).
MIN_PROMPT_LINE_CHARS = 16
# Names that say the variable holds a credential (GITHUB_TOKEN, OPENAI_API_KEY, DB_PASSWORD, AWS_SECRET_...).
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE", re.IGNORECASE)


def encodable(text: str) -> str:
    """`text` with every lone surrogate written as a backslash escape; unchanged (same object) when clean."""
    if text.isascii():  # a flag CPython keeps on every str: no encoding needed to know
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def encode_text(text: str) -> bytes:
    """UTF-8 bytes of `text` for a file or a pipe: bytes that came in undecodable (surrogate escapes) go back
    as they were; a lone surrogate that no encoder takes is written as its backslash escape."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


# SECRET_NAME's answer per variable name: an environment's names are asked about on every run (twice), and the
# same few dozen come back each time. Bounded, in case something feeds it endless names.
_LOOKS_SECRET: dict[str, bool] = {}
_LOOKS_SECRET_MAX = 4096


def looks_secret(name: str) -> bool:
    """Whether the variable name `name` says it holds a credential (SECRET_NAME matches somewhere in it)."""
    known = _LOOKS_SECRET.get(name)
    if known is None:
        known = SECRET_NAME.search(name) is not None
        if len(_LOOKS_SECRET) < _LOOKS_SECRET_MAX:
            _LOOKS_SECRET[name] = known
    return known


def secret_values(environ: Mapping[str, str], named: Iterable[str] = ()) -> list[str]:
    """Values to redact: those of the variables in `named` (the config's key variables), then every value of
    a variable whose name looks secret. Values shorter than MIN_SECRET_CHARS are left out."""
    names = list(dict.fromkeys(named))
    names += [name for name in environ if looks_secret(name) and name not in names]
    values = (environ.get(name) or "" for name in names)
    return list(dict.fromkeys(value for value in values if len(value) >= MIN_SECRET_CHARS))


def secret_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every string that gives one of `secrets` away: each value (whatever its length), then its encoded forms of
    at least MIN_SECRET_CHARS characters (adws.secret_forms.encoded_forms); all of them longest first, without
    repeats.
    Made once per set of values (a few hundred µs for ten keys) and kept (see `_Memo`)."""
    key = frozenset(s for s in secrets if s)
    if not key:
        return ()  # no secrets (a run without any): the encoders' modules stay unloaded
    found = _FORMS.get(key)
    if found is None:
        forms = _secret_forms(key)
        found = _FORMS.put(key, forms, sum(map(len, forms)))  # what is kept: the forms, 40-65x the values
    return found


def _secret_forms(secrets: frozenset[str]) -> tuple[str, ...]:
    # Imported with the first secrets: start-up and routing do not load the encoders' modules (html, shlex...).
    from adws.secret_forms import encoded_forms

    forms = dict.fromkeys(secrets)
    for secret in sorted(secrets):
        forms.update(dict.fromkeys(encoded_forms(secret, MIN_SECRET_CHARS)))
    return tuple(sorted(forms, key=lambda form: (-len(form), form)))


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class _Memo(Generic[_K, _V]):
    """The values last used, up to `entries` of them and `chars` in all, each weighing what its caller says
    (the characters or bytes of its strings; a value heavier than `chars` is not kept). What these memos keep
    grows with the strings: the automata of `Needles` take about 30 bytes per byte of needle (two secrets of
    128 KB: 55 MB), so a count alone (an lru_cache of 64) would let a few sets of key files hold gigabytes.
    Thread-safe."""

    def __init__(self, entries: int, chars: int) -> None:
        self._entries = entries
        self._chars = chars
        self._items: OrderedDict[_K, tuple[_V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: _K, value: _V, weight: int) -> _V:
        """Keep `value` for `key` (evicting the least recently used) and return it."""
        with self._lock:
            if weight > self._chars or key in self._items:
                return value
            self._items[key] = (value, weight)
            self._weight += weight
            while len(self._items) > self._entries or self._weight > self._chars:
                self._weight -= self._items.popitem(last=False)[1][1]
        return value


# Characters of forms, or bytes of needles, kept in each memo (the entry counts below bound them first for
# ordinary keys: ten keys' forms are about 40 K characters). 4 Mi holds the needles of about seven 128 KB key
# files (a value over 4096 characters is searched in 4 spellings, about 535 KB for such a file), whose automata
# take about 120 MB; a heavier set is made again on each use, not kept.
_MEMO_CHARS = 4 << 20
_FORMS: _Memo[frozenset[str], tuple[str, ...]] = _Memo(32, _MEMO_CHARS)
_MATCHERS: _Memo[tuple[tuple[str, ...], bool], Needles] = _Memo(64, _MEMO_CHARS)
_NEEDLES: _Memo[tuple[bytes, ...], Needles] = _Memo(64, _MEMO_CHARS)


def matcher(needles: Iterable[str], *, raw: bool = False) -> Needles:
    """The `Needles` of `needles` (made once per set and kept, see `_Memo`): for `replace_in` on str, or with
    `raw` for bytes as a program wrote them (a surrogate escape in a needle is the undecodable byte it stands
    for)."""
    key = (tuple(dict.fromkeys(n for n in needles if n)), raw)
    found = _MATCHERS.get(key)
    if found is None:
        # By bytes: the raw, text and JSON-escaped spellings of ASCII forms are the same bytes, and share automata.
        encoded = _encoded(key[0], raw=raw)
        weight = sum(map(len, encoded))
        found = _NEEDLES.get(encoded)  # `is None`, not `or`: an empty Needles is falsy (__bool__) but kept
        if found is None:
            found = _NEEDLES.put(encoded, _new_needles(encoded), weight)
        _MATCHERS.put(key, found, weight)
    return found


def _new_needles(needles: tuple[bytes, ...]) -> Needles:
    # Imported with the first text to search: start-up and routing do not load it (nor its automata's package).
    from adws.needles import Needles

    return Needles(needles)


def _encoded(strings: Iterable[str], *, raw: bool = False) -> tuple[bytes, ...]:
    """`strings` as `replace_in` searches for them (UTF-8, lone surrogates as their 3-byte forms), or with `raw`
    as a program writes them (adws.secret_forms.utf8)."""
    if raw:
        from adws.secret_forms import utf8

        return tuple(utf8(s) for s in strings)
    return tuple(s.encode("utf-8", "surrogatepass") for s in strings)


def _escaped_matcher(forms: tuple[str, ...]) -> Needles:
    """The `Needles` of `forms` as JSON spells them inside a string (for `Scrubber.dumps`)."""
    return matcher(_json_escaped(forms))


def replace_in(needles: Needles, text: str, mark: str) -> str:
    """`text` with every occurrence of every needle (from `matcher`, not `raw`) replaced by `mark`; overlapping or
    touching occurrences become one mark, so no character of any needle survives. `text` itself when none occurs.

    The search runs on the UTF-8 of `text` (lone surrogates as their 3-byte forms, as in the needles), where a
    needle can only match whole characters: the bytes replaced and decoded back are the text replaced."""
    if not needles or not text:
        return text
    # (ASCII holds no surrogate: encoded without naming an error handler, which is faster.)
    data = text.encode() if text.isascii() else text.encode("utf-8", "surrogatepass")
    out = needles.replace(data, mark.encode("utf-8", "surrogatepass"))
    return text if out is data else out.decode("utf-8", "surrogatepass")


class _NotPlain(Exception):
    """A value `Scrubber.deep` would reshape before JSON sees it (a mapping that is not a dict)."""


def _plain_default(value: Any) -> str:
    """`dumps`'s `default=str`, refusing what `Scrubber.deep` would turn into a dict first."""
    if isinstance(value, Mapping):
        raise _NotPlain
    return str(value)


_SCALARS = frozenset({int, float, bool})  # what `Scrubber.deep` returns unchanged without further tests


class Scrubber:
    """Redacts known secrets (with their encoded forms, see `secret_forms`) and (optionally) prompt text from
    strings and JSON-shaped values.

    `secrets`: literal values (see `secret_values`). `prompt`: the task's prompt, or None to keep prompt text.
    What is searched for is made on first use: for the secrets once per set of values in the process (kept by
    `matcher`), for the prompt once per scrubber (a prompt is seen by one run).
    """

    __slots__ = ("_escaped", "_found", "_prompt", "_prompt_escaped", "_prompt_found", "_secrets")

    def __init__(self, secrets: Iterable[str] = (), prompt: str | None = None) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        fragments: list[str] = []
        if prompt:
            fragments = [prompt, prompt.strip()]
            fragments += [line.strip() for line in prompt.splitlines()
                          if len(line.strip()) >= MIN_PROMPT_LINE_CHARS]
        self._prompt = sorted({f for f in fragments if f}, key=len, reverse=True)
        # Made on first use: the secrets' forms, the prompt's fragments, and each as JSON spells them (see dumps).
        self._found: Needles | None = None
        self._escaped: Needles | None = None
        self._prompt_found: Needles | None = None
        self._prompt_escaped: Needles | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret values redacted, longest first."""
        return tuple(self._secrets)

    def with_secrets(self, more: Iterable[str]) -> Scrubber:
        """A scrubber that also redacts `more` (an attempt's own rendered secrets)."""
        extra = [s for s in more if s and s not in self._secrets]
        if not extra:
            return self
        out = Scrubber(self._secrets + extra)
        out._prompt, out._prompt_found, out._prompt_escaped = self._prompt, self._prompt_found, self._prompt_escaped
        return out

    def _secret_needles(self) -> Needles:
        if self._found is None:
            self._found = matcher(secret_forms(self._secrets))
        return self._found

    def _prompt_needles(self) -> Needles:
        if self._prompt_found is None:
            # Not kept by `matcher`: a prompt (maybe long) is seen by one run.
            self._prompt_found = _new_needles(_encoded(self._prompt))
        return self._prompt_found

    def text(self, value: str) -> str:
        """`value` with secrets and their encoded forms as ***, prompt text as <prompt> (when set), lone
        surrogates escaped."""
        if self._secrets:
            value = replace_in(self._secret_needles(), value, REDACTED)
        if self._prompt:
            # A short prompt is only replaced whole.
            value = replace_in(self._prompt_needles(), value, PROMPT_MARK) \
                if len(self._prompt[0]) >= MIN_SECRET_CHARS else (PROMPT_MARK if value in self._prompt else value)
        return encodable(value)

    def dumps(self, value: Any, *, indent: int | None = None) -> str:
        """`dumps(self.deep(value), indent=indent)`, the same text, without walking `value` when nothing in it
        needs cleaning: an audit record has a few hundred strings, and searching each costs more than one search
        of the JSON text.

        The shortcut is exact. JSON escapes a string character by character, so a needle (a secret's form or a
        prompt fragment) occurring in a string of `value` occurs, escaped the same way, in the JSON text; when no
        escaped needle does, `text` would change no string, and the two texts agree. It is not taken for text
        holding a lone surrogate (`text` escapes those in the string itself) nor for a mapping that is not a dict
        (`deep` makes it a dict, JSON would print its `str`)."""
        try:
            text = json.dumps(value, ensure_ascii=False, default=_plain_default, indent=indent, allow_nan=False)
            data = text.encode("utf-8")
        except (_NotPlain, UnicodeEncodeError):
            try:
                return dumps(self.deep(value), indent=indent)
            except RecursionError:  # a container that holds itself: deep() follows it round
                return dumps(self.deep(json_data(value)), indent=indent)
        except (TypeError, ValueError, RecursionError):  # not JSON data: see json_data
            return dumps(self.deep(json_data(value)), indent=indent)
        if self._secrets:
            if self._escaped is None:
                self._escaped = _escaped_matcher(secret_forms(self._secrets))
            if self._escaped.found_in(data):
                return dumps(self.deep(value), indent=indent)
        if self._prompt:
            if self._prompt_escaped is None:
                self._prompt_escaped = _new_needles(_encoded(_json_escaped(self._prompt)))
            if self._prompt_escaped.found_in(data):
                return dumps(self.deep(value), indent=indent)
        return text

    def deep(self, value: Any) -> Any:
        """`value` with `text` applied to every string in it (dict keys too); other values unchanged."""
        # The shapes of JSON first, by exact type (an audit record is a few hundred of them; the isinstance test
        # against the Mapping ABC is slow); subclasses and other mappings and sequences take the general path.
        kind = type(value)
        if kind is str:
            return self.text(value)
        text, deep = self.text, self.deep
        if kind is dict:  # string values cleaned here: one call fewer for most of a record's leaves
            return {text(k) if isinstance(k, str) else k: text(v) if type(v) is str else deep(v)
                    for k, v in value.items()}
        if kind is list:
            return [text(v) if type(v) is str else deep(v) for v in value]
        if value is None or kind in _SCALARS:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.deep(k) if isinstance(k, str) else k: self.deep(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.deep(v) for v in value]
        return value


def _json_escaped(strings: Iterable[str]) -> list[str]:
    """Each of `strings` as it is spelled inside a JSON string by `dumps` (its first try, ensure_ascii=False)."""
    from adws.secret_forms import json_escaped

    return [json_escaped(string) for string in strings]


def dumps(data: Any, *, indent: int | None = None) -> str:
    """JSON text that any UTF-8 writer accepts: non-ASCII kept readable, a lone surrogate as its \\u escape
    (valid JSON that reads back to the same string). Never fails and never writes NaN or Infinity: data that is
    not JSON data is written as `json_data` makes it (an audit record is written after the agent ran, and
    must not be lost to a value in it)."""
    try:
        text = json.dumps(data, ensure_ascii=False, default=str, indent=indent, allow_nan=False)
    except (TypeError, ValueError, RecursionError):  # a key that is not a string, NaN, a cycle, a huge int ...
        data = json_data(data)
        text = json.dumps(data, ensure_ascii=False, default=str, indent=indent, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, ensure_ascii=True, default=str, indent=indent, allow_nan=False)
    return text


JSON_DEPTH_MOST = 200  # json_data writes what lies deeper as a marker string


def json_data(value: Any, _depth: int = 0, _open: frozenset[int] = frozenset()) -> Any:
    """`value` as JSON data that `json.dumps(..., allow_nan=False)` writes without failing: mappings as dicts
    with string keys (a key that is not a string, None, a bool or a number by its `str`), tuples as lists, a
    non-finite float as its name ("nan", "inf", "-inf"), an integer too long to print as "<integer of N bits>",
    a container met again inside itself as "<cycle>", what lies deeper than JSON_DEPTH_MOST as "<too deep>",
    anything else by its `str` (as `dumps`'s default); strings, finite numbers, booleans and None as they are."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            int.__repr__(value)
        except ValueError:  # past sys.get_int_max_str_digits()
            return f"<integer of {value.bit_length()} bits>"
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(float(value))
    if isinstance(value, (Mapping, list, tuple)):
        if _depth >= JSON_DEPTH_MOST:
            return "<too deep>"
        if id(value) in _open:
            return "<cycle>"
        inside = _open | {id(value)}
        if isinstance(value, Mapping):
            return {_json_key(k): json_data(v, _depth + 1, inside) for k, v in value.items()}
        return [json_data(v, _depth + 1, inside) for v in value]
    return _str(value)


def _json_key(key: Any) -> str:
    """A mapping's key as JSON writes it: a string as it is, anything else as text (`json_data`'s rules)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return json.dumps(key)  # "null", "true", "false": as json.dumps writes such a key
    if isinstance(key, (int, float)):
        shown = json_data(key)  # a number as JSON writes it, or json_data's text for it
        return shown if isinstance(shown, str) else json.dumps(shown)
    return _str(key)


def _str(value: Any) -> str:
    """str(value), or its type's name when even that fails."""
    try:
        return str(value)
    except Exception:  # any object's __str__ may raise: the record must still be written
        return f"<{type(value).__name__}>"
