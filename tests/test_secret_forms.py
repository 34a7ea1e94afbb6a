"""The encoded forms of a secret (adws.secret_forms): each is what a real encoder prints, and none is too short."""

from __future__ import annotations

import base64
import html
import json
import shlex
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adws.secret_forms import ENCODERS, HUGE_CHARS, encoded_forms, json_escaped, trimmed, utf8

# Every character some encoder escapes: quote, apostrophe, <, >, &, /, +, space, backslash, non-ASCII.
SPECIAL = "sk-Tést/+\"<&>' x\\42"


def _forms(secret: str, name: str) -> set[str]:
    return set(ENCODERS[name](secret, utf8(secret)))


@pytest.mark.parametrize(("name", "printed"), [
    ("percent", urllib.parse.quote(SPECIAL, safe="")),
    ("percent", urllib.parse.quote(SPECIAL)),
    ("percent", urllib.parse.quote_plus(SPECIAL)),
    ("percent", "sk-T%C3%A9st%2F%2B%22%3C%26%3E'%20x%5C42"),  # JavaScript's encodeURIComponent, written out
    ("percent", "sk-T%c3%a9st%2f%2b%22%3c%26%3e'%20x%5c42"),  # the same in lower case (PHP's rawurlencode)
    ("json", json.dumps(SPECIAL)[1:-1]),
    ("json", "sk-T\\u00E9st/+\\\"<&>' x\\\\42"),  # upper-case \u escapes (.NET's System.Text.Json)
    ("json", json.dumps(SPECIAL, ensure_ascii=False)[1:-1]),
    ("json", "sk-Tést/+\\\"\\u003c\\u0026\\u003e' x\\\\42"),  # Go's encoding/json, written out
    ("markup", html.escape(SPECIAL)),
    ("markup", html.escape(SPECIAL, quote=False)),
    ("markup", "sk-Tést/+&quot;&lt;&amp;&gt;&apos; x\\42"),  # .NET SecurityElement.Escape
    ("markup", "sk-Tést/+&#34;&lt;&amp;&gt;&#39; x\\42"),  # MarkupSafe (Jinja's |e), Go's html.EscapeString
    ("markup", "sk-Tést/+&quot;&lt;&amp;&gt;&#039; x\\42"),  # PHP's htmlspecialchars
    ("markup", html.escape(SPECIAL).replace("é", "&#233;")),  # decimal references for non-ASCII
    ("shell", shlex.quote(SPECIAL)),
    ("shell", SPECIAL.replace('"', '\\"')),
    ("hex", SPECIAL.encode().hex()),
    ("hex", SPECIAL.encode().hex().upper()),
    ("base64", base64.b64encode(SPECIAL.encode()).decode()),
    ("base64", base64.urlsafe_b64encode(SPECIAL.encode()).decode().rstrip("=")),  # as in a JWT
])
def test_each_encoder_gives_what_the_real_encoder_prints(name: str, printed: str) -> None:
    assert printed in _forms(SPECIAL, name)
    assert printed in encoded_forms(SPECIAL, 8)


@pytest.mark.parametrize("before", range(6))
@pytest.mark.parametrize("after", [b"", b"\n", b"@host", b"\x00\xff"])
def test_a_base64_core_is_in_every_blob_holding_the_secret_at_its_alignment(before: int, after: bytes) -> None:
    secret = "tok-0123456789abcdef"
    blob = bytes(range(65, 65 + before)) + secret.encode() + after
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(blob).decode()
        assert any(form in text for form in _forms(secret, "base64"))


def test_base64_as_coreutils_and_openssl_wrap_it() -> None:
    secret = "sk-ant-api03-" + "x" * 90  # 103 bytes: 140 base64 characters, two lines or three
    for width in (76, 64):
        for blob in (secret.encode(), secret.encode() + b"\n"):  # `echo -n $KEY | base64`, `echo $KEY | base64`
            printed = base64.b64encode(blob).decode()
            wrapped = "\n".join(printed[i:i + width] for i in range(0, len(printed), width))
            assert any(form in wrapped and "\n" in form for form in encoded_forms(secret, 8))


def test_hex_as_xxd_p_wraps_it() -> None:
    secret = "sk-proj-" + "Ab9_" * 10  # 48 bytes: 96 hex digits, two lines of `xxd -p`
    for digits in (secret.encode().hex(), secret.encode().hex().upper()):  # `xxd -p`, `xxd -p -u`
        assert f"{digits[:60]}\n{digits[60:]}" in encoded_forms(secret, 8)
    assert not any("\n" in form for form in _forms("sk-proj-" + "Ab9_" * 5, "hex"))  # 28 bytes: one line


def test_every_form_has_its_json_spellings() -> None:
    secret = "sk-ant-api03-" + "x" * 90
    forms = encoded_forms(secret, 8)
    wrapped = [form for form in forms if "\n" in form]
    assert wrapped and all(json.dumps(form)[1:-1] in forms for form in wrapped)
    assert any("\r\n" in form for form in wrapped)  # MIME's line end


def test_a_huge_value_keeps_only_its_trimmed_and_json_spellings() -> None:
    secret = "-----BEGIN PRIVATE KEY-----\n" + "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n" * 200 + "-----END-----\n"
    assert len(secret) > HUGE_CHARS
    forms = encoded_forms(secret, 8)
    assert set(forms) == {secret.strip(), json.dumps(secret)[1:-1], json.dumps(secret.strip())[1:-1]}


def test_forms_equal_to_the_value_or_holding_it_are_left_out() -> None:
    # Percent, JSON and markup escapes print these characters as they are; shlex.quote puts quotes around `~`.
    secret = "ghp_abcDEF012345-_.~"
    forms = encoded_forms(secret, 8)
    assert secret not in forms
    assert not any(secret in form for form in forms)
    assert shlex.quote(secret) == f"'{secret}'"


@pytest.mark.parametrize(("secret", "expected"), [
    ('"sk-quoted-value-1"', "sk-quoted-value-1"),
    ("'sk-quoted-value-1'", "sk-quoted-value-1"),
    ("  sk-padded-value-1\n", "sk-padded-value-1"),
    ('"mismatched\'', '"mismatched\''),
    ('"', '"'),
])
def test_trimmed(secret: str, expected: str) -> None:
    assert trimmed(secret) == expected


def test_a_trimmed_value_and_its_encodings_are_forms() -> None:
    forms = encoded_forms("sk-from-a-dotenv-file\n", 8)
    assert "sk-from-a-dotenv-file" in forms
    assert base64.b64encode(b"sk-from-a-dotenv-file").decode() in forms


@given(st.text(max_size=12))
def test_no_form_is_shorter_than_the_minimum(secret: str) -> None:
    # A 3-byte value's base64 core at the 1-byte alignment is 3 characters: such forms would blank words.
    assert all(len(form) >= 8 for form in encoded_forms(secret, 8))


def test_short_values_keep_only_their_long_forms() -> None:
    assert encoded_forms("abc", 8) == []
    assert encoded_forms("tok1", 8) == ["746F6B31", "746f6b31", "dG9rMQ=="]


def test_undecodable_bytes_of_the_environment_are_encoded_as_those_bytes() -> None:
    secret = b"sk-\xff\xfe-raw-bytes".decode("utf-8", "surrogateescape")
    assert b"sk-\xff\xfe-raw-bytes".hex() in encoded_forms(secret, 8)
    assert utf8("lone \ud800") == "lone \ud800".encode("utf-8", "surrogatepass")  # not from the environment


# Any text, lone surrogates (which json.dumps passes through without ensure_ascii) and JSON's escapes included.
_ANY_TEXT = st.lists(st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr),
                               st.sampled_from('"\\/\b\f\n\r\t\x00\x7f<>&\u2028\u2029')), max_size=20).map("".join)


@given(_ANY_TEXT, st.booleans())
def test_json_escaped_spells_a_string_as_json_dumps_does(text: str, ensure_ascii: bool) -> None:
    # The one JSON string escaper (adws.redact's Scrubber.dumps checks use it too) agrees with json.dumps.
    assert json_escaped(text, ensure_ascii=ensure_ascii) == json.dumps(text, ensure_ascii=ensure_ascii)[1:-1]
