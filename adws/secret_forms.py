"""How a secret looks once a program has encoded it: the strings adws.redact replaces besides the value itself.

An agent CLI (or a prompt that talks one into it) can print a key encoded rather than as it is: in an HTTP
Basic-auth header (base64 of `user:KEY`), `echo $KEY | base64`, a URL's query, a JSON document, an HTML or XML
page, a shell command, a hex dump. Each encoder here gives, for one secret, the strings such output holds
wherever the secret sits in it, so that one multi-pattern search (adws.needles) finds every one of them.

The list follows GitHub Actions' runner, whose log masker masks the same encodings of every secret it is given
(actions/runner at 258d6c8, 2026-08: src/Sdk/DTLogging/Logging/ValueEncoders.cs, registered in
src/Runner.Common/HostContext.cs; the base64 trimming in docs/adrs/0297-base64-masking-trailing-characters.md):
Base64StringEscape and its two
byte-shifted variants, JsonStringEscape, UriDataEscape, XmlDataEscape, TrimDoubleQuotes and
CommandLineArgumentEscape. What adws does differently, and why:

- base64 (`_base64`): the runner encodes the secret with its first 0, 1 or 2 bytes dropped, which keeps the last
  character and the padding, and those depend on what follows the secret in the blob (the ADR's `base64($pass\\n)`).
  Here each alignment gives its *core*: only the characters made of the secret's bits alone, which every blob
  holding the secret at that alignment contains, whatever comes before or after it. At most 4 bits of the
  secret at each end of a core share a character with a neighbouring byte and are not replaced (the ADR accepts
  up to 20). Both alphabets (standard and URL-safe), the whole value with and without padding, and the whole
  value wrapped as `base64` (coreutils, MIME: 76 columns) and `openssl base64` (64) print it, since a key longer
  than 57 bytes (coreutils) or 48 (openssl) is never on one line there, with `\n` and with MIME's `\r\n` between
  lines. A secret in the middle of a wrapped blob longer than one line is not caught.
- percent-encoding (`_percent`): `urllib.parse.quote` with nothing safe (RFC 3986; the runner's
  `Uri.EscapeDataString`), with `/` safe (its default, for paths), `quote_plus` (form data) and JavaScript's
  `encodeURIComponent` (which leaves `!'()*`). Upper-case hex digits, as all four write them, and the same in
  lower case (PHP's `rawurlencode`, hand-written encoders).
- JSON (`_json`): Python's `json.dumps` (non-ASCII as `\\uXXXX`), the same with `ensure_ascii=False` (JavaScript's
  `JSON.stringify`, serde_json), Go's `encoding/json`, which also escapes `<`, `>`, `&`, U+2028 and U+2029, and
  .NET's `System.Text.Json` (upper-case `\\u00E4`). Every other form is also searched as these spell it inside a
  JSON string (`encoded_forms`): agent CLIs that write JSON lines (claude's and gemini's stream-json) put what a
  tool printed in a JSON string, where a wrapped base64 blob's line break is the two characters `\\n`.
- HTML and XML (`_markup`): Python's `html.escape` with and without quotes (`xml.sax.saxutils.escape`), the XML
  entities of the runner's `SecurityElement.Escape` (`&apos;`, `&quot;`) and the decimal ones of MarkupSafe (Jinja's
  `|e`) and Go's `html.EscapeString` (`&#39;`, `&#34;`), PHP's `htmlspecialchars` (`&#039;`), and for a
  non-ASCII value `html.escape` with decimal references for the rest (`&#228;`).
- shell (`_shell`): the runner's CommandLineArgumentEscape (`"` as `\\"`) and `shlex.quote`, whose `'"'"'` splits a
  value holding `'` into pieces that are not the value.
- hex (`_hex`), not in the runner's list: lower and upper case, as `bytes.hex()`, `xxd -p` (`-u`) and debug
  printers write bytes, and a cheap way to ask an agent for a key that a literal match misses; for a value over 30
  bytes also as `xxd -p` wraps it at the start of its dump (60 digits a line). An 8-character value gives 16 hex
  digits (64 bits), too many to match anything by chance. Not taken: `xxd`, `hexdump -C` and `od -c` print 16
  bytes a row between an offset and the bytes as text, so the key is readable in that column whatever is
  searched for; `od -An -tx1` (bytes as ` 73 6b`) is rare enough in agent output not to pay for.
- trimmed values (`trimmed`): the runner's TrimDoubleQuotes, generalised: a value as set in a `.env` file may carry
  surrounding whitespace (a newline read with the file) or a pair of quotes, which the program that prints it does
  not. Every encoder is applied to the trimmed value too.

Not taken: the runner's ExpressionStringEscape (`'` doubled, for its own expression language, which adws does not
have) and its two PowerShell encoders (PowerShell's colouring splits a value at `&`; adws runs agents without a
shell).
"""

from __future__ import annotations

import base64
import html
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from json.encoder import encode_basestring, encode_basestring_ascii
from types import MappingProxyType
from urllib.parse import quote, quote_plus

__all__ = ["ENCODERS", "HUGE_CHARS", "encoded_forms", "json_escaped", "trimmed", "utf8"]

# Values longer than this (characters) are searched for as they are, trimmed and JSON-escaped only (see
# `encoded_forms`): a key is at most a few hundred characters, a PEM private key 1.7-3.3 K.
HUGE_CHARS = 4096

# Characters at the start of each alignment's base64 that also hold bits of the byte(s) before the secret: with
# 1 byte before it, the secret starts at bit 8 and the first character wholly its own is the 3rd (bits 12-17);
# with 2, at bit 16 and the 4th (bits 18-23).
_BASE64_LEAD = (0, 2, 3)
# Columns at which tools wrap base64: coreutils `base64` and MIME (Python's base64.encodebytes), `openssl base64`.
_BASE64_WIDTHS = (76, 64)
# Line ends between them: coreutils and openssl write `\n`, MIME (RFC 2045, Python's email package) `\r\n`.
_BASE64_LINE_ENDS = ("\n", "\r\n")
# Hex digits per line of `xxd -p` (30 bytes).
_XXD_WIDTH = 60


def utf8(text: str) -> bytes:
    """`text` as UTF-8: a byte that came undecodable from the environment (a surrogate escape) is that byte again,
    what the program printing the value writes; any other lone surrogate as its 3-byte form, never an error."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _base64(text: str, raw: bytes) -> Iterator[str]:
    whole = base64.b64encode(raw).decode("ascii")
    forms = [whole, whole.rstrip("=")]
    for shift, lead in enumerate(_BASE64_LEAD):
        # The secret after `shift` bytes: the characters between the lead and the last one that takes only its
        # bits (the one after takes bits of whatever follows it).
        encoded = base64.b64encode(bytes(shift) + raw).decode("ascii")
        forms.append(encoded[lead:8 * (shift + len(raw)) // 6])
    yield from forms
    yield from (form.replace("+", "-").replace("/", "_") for form in forms)  # the same when they hold neither
    for width in _BASE64_WIDTHS:
        # The value at the start of the blob (as `echo $KEY | base64` prints it), also followed by more.
        for form in (whole, forms[2]):
            yield from _wrapped(form, width, _BASE64_LINE_ENDS)


def _wrapped(form: str, width: int, ends: tuple[str, ...]) -> Iterator[str]:
    """`form` cut into lines of `width` characters joined by each of `ends`; nothing when it fits on one line."""
    if len(form) > width:
        lines = [form[i:i + width] for i in range(0, len(form), width)]
        yield from (end.join(lines) for end in ends)


# What no percent-encoder escapes (RFC 3986's unreserved characters): most keys are made of nothing else.
_UNRESERVED = re.compile(rb"[A-Za-z0-9_.~-]*")


_PERCENT_HEX = re.compile("%[0-9A-F]{2}")


def _percent(text: str, raw: bytes) -> Iterator[str]:
    if _UNRESERVED.fullmatch(raw):
        return
    for escaped in (quote(raw, safe=""), quote(raw, safe="/"), quote_plus(raw, safe=""),
                    quote(raw, safe="!'()*")):  # the last: JavaScript's encodeURIComponent
        yield escaped
        yield _PERCENT_HEX.sub(lambda m: m[0].lower(), escaped)  # PHP's rawurlencode and others: `%2f`


_GO_JSON_CHARS = re.compile("[<>&\u2028\u2029]")
_GO_JSON = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})
# What some JSON encoder writes other than as it is: `"`, `\`, control characters, Go's `<>&`, anything not ASCII.
_JSON_CHARS = re.compile("[^ !#-%'-;=?-\\[\\]-\x7f]")  # (as one negated set: 3 times faster than two)
_U_ESCAPE = re.compile(r"\\u[0-9a-f]{4}")


def json_escaped(text: str, *, ensure_ascii: bool = False) -> str:
    """`text` as `json.dumps(text, ensure_ascii=ensure_ascii)` spells it between its quotes (a lone surrogate
    kept as it is without `ensure_ascii`, as json.dumps keeps it). json.dumps's own string encoders, called
    directly: json.dumps with ensure_ascii=False makes an encoder object per call, three times the cost."""
    return (encode_basestring_ascii if ensure_ascii else encode_basestring)(text)[1:-1]


def _json(text: str, raw: bytes = b"") -> Iterator[str]:
    if not _JSON_CHARS.search(text):
        return  # every encoder writes it as it is
    ascii_ = json_escaped(text, ensure_ascii=True)
    yield ascii_
    unicode = ascii_
    if "\\u" in ascii_:  # (else `ensure_ascii` escaped nothing: the same text without it)
        yield _U_ESCAPE.sub(lambda m: m[0].upper().replace("\\U", "\\u"), ascii_)  # .NET's System.Text.Json: \u00E4
        unicode = json_escaped(text)
        yield unicode
    if _GO_JSON_CHARS.search(unicode):
        yield unicode.translate(_GO_JSON)


_MARKUP_CHARS = re.compile("[&<>\"']")
_MARKUP = (
    str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}),  # SecurityElement.Escape
    str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"}),  # MarkupSafe, Go
    str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#039;"}),  # PHP's htmlspecialchars
)


def _markup(text: str, raw: bytes) -> Iterator[str]:
    if text.isascii() and not _MARKUP_CHARS.search(text):
        return  # every escape spells it as it is (the translate tables cost more than this test)
    escaped = html.escape(text)
    yield escaped
    yield html.escape(text, quote=False)
    for table in _MARKUP:
        yield text.translate(table)
    if not text.isascii():
        # Decimal references for the rest (`&#228;`): what an encoder limited to ASCII writes (Python's
        # xmlcharrefreplace, PHP's mb_encode_numericentity, .NET's HtmlEncode of some ranges).
        yield "".join(char if char < "\x80" else f"&#{ord(char)};" for char in escaped)


def _shell(text: str, raw: bytes) -> Iterator[str]:
    yield text.replace('"', '\\"')
    yield shlex.quote(text)


def _hex(text: str, raw: bytes) -> Iterator[str]:
    for digits in (raw.hex(), raw.hex().upper()):
        yield digits
        yield from _wrapped(digits, _XXD_WIDTH, ("\n",))  # `xxd -p` (`-u`: upper case) of a value it starts


# Encoder name -> the spellings of one value: (value, its UTF-8 as `utf8` gives it) -> strings (any may equal the
# value, be too short, or repeat another: `encoded_forms` sorts that out). Adding an encoding is adding an entry.
ENCODERS: Mapping[str, Callable[[str, bytes], Iterator[str]]] = MappingProxyType({
    "base64": _base64,
    "percent": _percent,
    "json": _json,
    "markup": _markup,
    "shell": _shell,
    "hex": _hex,
})


def trimmed(secret: str) -> str:
    """`secret` without surrounding whitespace, then without one pair of surrounding quotes (`"` or `'`)."""
    value = secret.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def encoded_forms(secret: str, min_chars: int) -> list[str]:
    """The strings besides `secret` itself that give it away: its trimmed value and every encoding of `ENCODERS`
    of the value and of the trimmed value, then each of those (and the value) as a JSON string spells it
    (`_json`: how an agent CLI's JSON-lines output holds whatever a tool printed), longest first, without
    repeats.

    A value longer than `HUGE_CHARS` (a whole key file: a PEM, a service account's JSON) keeps only the trimmed
    value and the JSON spellings: each encoding of it would be as long again, and the automata that search for
    them grow with their bytes. Left out: forms shorter than `min_chars` (they would match ordinary words: a
    base64 core of a 3-byte value is 3 characters), forms equal to the value, and forms holding the value or its
    trimmed value (replacing those already hides every character of the secret). Errors: none (any str, lone
    surrogates included)."""
    core = trimmed(secret)
    kept = [secret] + ([core] if core != secret and len(core) >= min_chars else [])
    found: dict[str, None] = dict.fromkeys(kept[1:])
    encoders = ENCODERS.values() if len(secret) <= HUGE_CHARS else ()
    for value in dict.fromkeys((secret, core)):
        if not value:
            continue
        raw = utf8(value)
        for encoder in encoders:
            found.update(dict.fromkeys(encoder(value, raw)))
    # JSON spellings of every form so far (of `json`'s own too: JSON output quoting a JSON document).
    for form in [secret, *found]:
        if _JSON_CHARS.search(form):  # (most forms are base64 or hex: tested here, not in a generator's call)
            found.update(dict.fromkeys(_json(form)))
    trim = len(kept) > 1  # the trimmed value is a form, and forms holding it are left out
    forms = [form for form in found if len(form) >= min_chars and secret not in form
             and (not trim or form == core or core not in form)]
    forms.sort(key=lambda form: (-len(form), form))
    return forms
