"""Issue 9, "nothing secret leaves": secrets and prompt text out of every text adws writes or prints, and each
attempt sees only its own account's credentials."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shlex
import sys
import urllib.parse
import xml.sax.saxutils
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adws import audit
from adws.cli import main
from adws.redact import (
    PROMPT_MARK,
    REDACTED,
    Scrubber,
    dumps,
    encodable,
    matcher,
    replace_in,
    secret_forms,
    secret_values,
)
from adws.result import Result
from adws.secret_forms import ENCODERS, trimmed, utf8
from tests.helpers import DATA
from tests.hostile import SECRETS, config_text, engine

# -- the scrubber ------------------------------------------------------------------------------------------


# Strings made of what JSON escapes (quote, backslash, newline, a control character), non-ASCII and a lone
# surrogate, around the secrets and prompt lines: every way a fragment's JSON spelling can differ from its own.
_PIECES = ["sk-live-aaaaaaaaaaaaaaaa", 'pa"ss\\word-1234', "line one of the prompt!!", "é", "\ud800", "\n", "\x01",
           '"', "\\", "x", "Fix the flaky test", "ü-secret-ünicode",
           # Encoded forms: base64 of user:KEY, the JSON spelling of a value with a quote and a backslash, hex.
           base64.b64encode(b"me:sk-live-aaaaaaaaaaaaaaaa").decode(), 'pa\\"ss\\\\word-1234',
           "ü-secret-ünicode".encode().hex()]
_json_text = st.lists(st.sampled_from(_PIECES), max_size=6).map("".join)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | _json_text,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(_json_text, inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@example(value={"k": ['x pa"ss\\word-1234 y']}, prompt=None, secrets=['pa"ss\\word-1234'], indent=None)
@example(value=["Fix the flaky test\nline one of the prompt!!"], prompt="Fix the flaky test\nline one of the prompt!!",
         secrets=[], indent=2)
@example(value={"\ud800": "é"}, prompt=None, secrets=[], indent=None)
@given(value=_json_value, prompt=st.sampled_from([None, "short", "Fix the flaky test\nline one of the prompt!!"]),
       secrets=st.sampled_from([[], ["sk-live-aaaaaaaaaaaaaaaa"], ['pa"ss\\word-1234', "ü-secret-ünicode"]]),
       indent=st.sampled_from([None, 2]))
def test_scrubber_dumps_is_dumps_of_deep(value: object, prompt: str | None, secrets: list[str],
                                         indent: int | None) -> None:
    scrub = Scrubber(secrets, prompt)
    assert scrub.dumps(value, indent=indent) == dumps(scrub.deep(value), indent=indent)


def test_scrubber_dumps_reshapes_a_mapping_as_deep_does() -> None:
    from types import MappingProxyType

    value = {"m": MappingProxyType({"k": "sk-live-aaaaaaaaaaaaaaaa"}), "s": {1, 2}}
    scrub = Scrubber(["sk-live-aaaaaaaaaaaaaaaa"])
    assert scrub.dumps(value) == dumps(scrub.deep(value))
    assert json.loads(scrub.dumps(value))["m"] == {"k": REDACTED}



@pytest.mark.parametrize(("text", "expected"), [
    ("key sk-live-aaaaaaaaaaaaaaaa!", "key ***!"),
    ("sk-live-aaaaaaaaaaaaaaaask-live-bbbbbbbbbbbbbbbb", "***"),  # touching secrets: one mark, nothing left
    ("--token=hunter2-hunter2", "--token=***"),
    ("nothing here", "nothing here"),
])
def test_secrets_are_replaced_wherever_they_appear(text: str, expected: str) -> None:
    assert Scrubber(["sk-live-aaaaaaaaaaaaaaaa", "sk-live-bbbbbbbbbbbbbbbb", "hunter2-hunter2"]).text(text) == expected


def test_overlapping_secrets_leave_no_character_of_either() -> None:
    assert Scrubber(["abcdefgh12", "gh12345678"]).text("xxabcdefgh12345678yy") == "xx***yy"
    # The same for any needles and mark, literal ones only (no encoded forms), non-ASCII text too.
    assert replace_in(matcher(["abcdefgh12", "gh12345678"]), "é abcdefgh12345678 ü", "#") == "é # ü"
    assert replace_in(matcher([]), "é abc", "#") == "é abc"


# -- encoded forms of a secret ------------------------------------------------------------------------------

# Every character some encoder escapes: quote, apostrophe, <, >, &, /, +, space, backslash, non-ASCII.
SPECIAL = "sk-Tést/+\"<&>' x\\42-0123"


def _base64_decodes_to(text: str, secret: str) -> bool:
    """Whether some run of base64 characters in `text`, read from any of its first 4 characters (either alphabet),
    decodes to bytes holding `secret`: a check of the base64 forms that does not use them."""
    raw = secret.encode("utf-8", "surrogateescape")
    for run in re.findall(r"[A-Za-z0-9+/_-]+", text):
        run = run.replace("-", "+").replace("_", "/")
        for offset in range(4):
            piece = run[offset:]
            if raw in base64.b64decode(piece[:len(piece) // 4 * 4]):
                return True
    return False


def _leaks(text: str, secret: str) -> list[str]:
    """The ways `secret` shows in `text`, each found by the encoder itself (not by adws's list)."""
    raw = secret.encode("utf-8", "surrogateescape")
    spelled = {
        "literal": secret, "percent": urllib.parse.quote(raw, safe=""), "quote_plus": urllib.parse.quote_plus(raw),
        "json": json.dumps(secret)[1:-1], "html": html.escape(secret), "hex": raw.hex(), "HEX": raw.hex().upper(),
    }
    found = [name for name, form in spelled.items() if form in text]
    return found + (["base64"] if _base64_decodes_to(text, secret) else [])


@pytest.mark.parametrize("printed", [
    base64.b64encode(SPECIAL.encode()).decode(),  # `echo -n $KEY | base64`
    base64.urlsafe_b64encode(SPECIAL.encode()).decode().rstrip("="),  # as in a JWT
    urllib.parse.quote(SPECIAL, safe=""),  # a URL's query
    urllib.parse.quote(SPECIAL),  # a URL's path
    urllib.parse.quote_plus(SPECIAL),  # form data
    json.dumps(SPECIAL)[1:-1],  # a JSON string, Python's
    json.dumps(SPECIAL, ensure_ascii=False)[1:-1],  # JavaScript's
    html.escape(SPECIAL),  # an HTML page
    xml.sax.saxutils.escape(SPECIAL),  # an XML document
    SPECIAL.encode().hex(),  # bytes.hex(), xxd -p
    SPECIAL.encode().hex().upper(),
    shlex.quote(SPECIAL),  # a shell command line
    SPECIAL.replace('"', '\\"'),  # a quoted argument
])
def test_each_encoding_of_a_secret_is_redacted_in_text_and_in_json(printed: str) -> None:
    scrub = Scrubber([SPECIAL])
    text = f"error: the server got {printed} and said no"
    assert scrub.text(text) == f"error: the server got {REDACTED} and said no"
    assert json.loads(scrub.dumps({"reason": text})) == {"reason": f"error: the server got {REDACTED} and said no"}


@pytest.mark.parametrize("user", ["u", "us", "use", "x-access-token"])  # the secret at each of the 3 alignments
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
@pytest.mark.parametrize("after", ["", "\n"])
def test_basic_auth_of_user_and_secret_is_redacted_at_each_alignment(user: str, encode: object,
                                                                      after: str) -> None:
    assert callable(encode)
    blob = encode(f"{user}:{SPECIAL}{after}".encode()).decode()
    shown = Scrubber([SPECIAL]).text(f"> Authorization: Basic {blob}\r\n")
    assert not _leaks(shown, SPECIAL)
    # What is left of the blob: the user's part, then at most one character at each end that also holds a few
    # bits of a neighbouring byte (and the padding).
    head, tail = shown.removeprefix("> Authorization: Basic ").removesuffix("\r\n").split(REDACTED)
    assert len(head) <= len(encode(f"{user}:".encode()).rstrip(b"=")) and blob.startswith(head)
    assert len(tail.rstrip("=")) <= 2 and blob.endswith(tail)


def test_a_long_key_through_base64_as_the_tool_wraps_it() -> None:
    key = "sk-ant-api03-" + "Ab9_" * 23 + "AA"  # 107 characters: 144 base64 characters, two lines
    for blob in (key.encode(), f"{key}\n".encode()):
        printed = base64.encodebytes(blob).decode()  # coreutils `base64`: 76 columns
        assert not _leaks(Scrubber([key]).text(f"$ echo $KEY | base64\n{printed}$ "), key)


@pytest.mark.parametrize("wrap", [
    lambda blob: base64.encodebytes(blob).decode(),  # coreutils `base64`: 76 columns, `\n`
    lambda blob: base64.encodebytes(blob).decode().replace("\n", "\r\n"),  # MIME (RFC 2045): `\r\n`
    lambda blob: "\n".join(re.findall(".{1,64}", base64.b64encode(blob).decode())) + "\n",  # `openssl base64`
])
@pytest.mark.parametrize("key", ["sk-ant-api03-" + "Zx9_Qw-7" * 12, 'pa"ss\\word-' + "Ab9/" * 20])
def test_a_wrapped_base64_key_in_json_lines_output_is_redacted(wrap: object, key: str) -> None:
    # How adws captures claude's and gemini's stream-json: the line break inside the blob is the two characters
    # `\n` (or `\r\n`) there, not a newline.
    from adws.runner import _Sink

    assert callable(wrap)
    for blob in (key.encode(), f"{key}\n".encode()):
        line = json.dumps({"type": "tool_result", "content": wrap(blob)}) + "\n"
        out = io.BytesIO()
        sink = _Sink(out, 10**9, 10**9, [key])
        sink.feed(line.encode())
        sink.finish()
        shown = json.loads(out.getvalue())["content"]
        assert REDACTED in shown and not _base64_decodes_to(shown.replace("\r\n", "").replace("\n", ""), key)
        assert json.loads(Scrubber([key]).text(line))["content"] == shown


@settings(max_examples=100, deadline=None)
@given(secret=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="*"), min_size=8,
                      max_size=70), ensure_ascii=st.booleans())
def test_every_form_is_redacted_inside_json_output(secret: str, ensure_ascii: bool) -> None:
    # Whatever a tool printed reaches adws inside a JSON string when the agent CLI writes JSON lines.
    scrub = Scrubber([secret])
    printed = [form for value in {secret, trimmed(secret)} for encode in ENCODERS.values()
               for form in encode(value, utf8(value)) if len(form) >= 8 and secret not in form]
    for form in (secret, *printed):
        spelled = json.dumps(form, ensure_ascii=ensure_ascii)[1:-1]
        shown = scrub.text(f'{{"content": "x {spelled} y"}}')
        assert REDACTED in shown and spelled not in shown, form


def test_a_long_key_through_xxd_p_is_redacted() -> None:
    # `xxd -p` writes 60 hex digits (30 bytes) a line: a longer key is never on one line there.
    key = "sk-proj-" + "Ab9_Cd8-" * 12
    for blob in (key.encode(), f"{key}\n".encode(), f"{key} and more after it".encode()):
        for digits in (blob.hex(), blob.hex().upper()):  # `xxd -p`, `xxd -p -u`
            dump = "\n".join(re.findall(".{1,60}", digits)) + "\n"
            shown = Scrubber([key]).text(f"$ echo $KEY | xxd -p\n{dump}$ ")
            assert REDACTED in shown and key.encode().hex() not in shown.replace("\n", "").lower()
            line = json.dumps({"content": dump})
            assert REDACTED in json.loads(Scrubber([key]).text(line))["content"]


def _sink_output(secrets: list[str], reads: list[bytes]) -> bytes:
    from adws.runner import _Sink

    out = io.BytesIO()
    sink = _Sink(out, 10**9, 10**9, secrets)
    for read in reads:
        sink.feed(read)
    sink.finish()
    assert sink.tail_text() == out.getvalue().decode("utf-8", "replace")
    return out.getvalue()


@pytest.mark.parametrize(("secrets", "reads", "expected"), [
    # One secret the prefix of another, the longer one completed by the second read.
    (["sk-live-abcdefgh", "sk-live-abcdefgh-TAILOFSECRETB"], [b"x sk-live-abcdefgh", b"-TAILOFSECRETB y"],
     b"x *** y"),
    # Two secrets that overlap, the second completed by the second read.
    (["AAAAAAAA1111", "1111BBBBBBBB"], [b"x AAAAAAAA1111", b"BBBBBBBB y"], b"x *** y"),
    # Touching occurrences, the second arriving in pieces.
    (["sk-live-abcdefgh"], [b"x sk-live-abcdefghsk-li", b"ve-abc", b"defgh y"], b"x *** y"),
])
def test_the_sink_merges_occurrences_across_reads(secrets: list[str], reads: list[bytes], expected: bytes) -> None:
    assert _sink_output(secrets, reads) == expected
    assert _sink_output(secrets, [b"".join(reads)]) == expected


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_sink_writes_the_same_for_every_split_of_the_output(data: st.DataObject) -> None:
    # Secrets from a small alphabet that often overlap, one the other's prefix or suffix, in text made of their
    # pieces and forms, cut into reads anywhere: the sink writes what one-shot redaction of it all gives.
    first = data.draw(st.text("ab1-", min_size=8, max_size=14), label="first")
    tail = data.draw(st.text("ab1-", min_size=1, max_size=8), label="tail")
    share = data.draw(st.integers(1, len(first)), label="share")
    second = data.draw(st.sampled_from([first + tail, first[-share:] + tail, tail + first, tail * 8]),
                       label="second")
    secrets = [first, second]
    forms = [f for f in secret_forms(secrets) if len(f) < 40]
    pieces = [first, second, first[:-1], second[1:], first[:share], "x", " ", "a", "1-", *forms[:6]]
    text = "".join(data.draw(st.lists(st.sampled_from(pieces), max_size=12), label="pieces")).encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6), label="cuts"))
    reads = [text[low:high] for low, high in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    expected = matcher(secret_forms(secrets), raw=True).replace(text, REDACTED.encode())
    assert _sink_output(secrets, reads) == expected


def test_a_secret_split_across_a_log_still_goes_in_every_form(tmp_path: Path) -> None:
    from adws.runner import RunRequest, run

    secret = "sk-split-" + "z" * 40
    printed = base64.b64encode(f"user:{secret}".encode()).decode() + " " + secret.encode().hex()
    code = "import sys\nfor c in sys.argv[1]:\n    sys.stdout.write(c); sys.stdout.flush()\n"
    outcome = run(RunRequest(argv=[sys.executable, "-c", code, printed], env=dict(os.environ), cwd=tmp_path,
                             out_dir=tmp_path / "o", timeout=30, secrets=[secret]))
    written = Path(outcome.stdout_path or "").read_text()
    assert REDACTED in written and not _leaks(written, secret)
    assert outcome.stdout_tail == written


_ORDINARY = [DATA / "issues" / "corpus.jsonl", *sorted((DATA / "real").glob("*.std*"))]
# Keys of real shapes, and values made of words: neither they nor any of their forms is in ordinary text.
_KEYS = ["sk-ant-api03-" + "Qw3_rT5-yU7i" * 7 + "AA", "ghp_" + "aB3dE5gH7j" * 3 + "K9mN2p", "AKIAIOSFODNN7EXAMPLE",
         "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "correct-horse-battery-staple", "Tr0ub4dor&3-tr0ub4dor",
         'pa"ss\\word-1234']


def test_no_false_positives_on_ordinary_text() -> None:
    scrub = Scrubber(_KEYS)
    assert len(secret_forms(_KEYS)) > 5 * len(_KEYS)
    for path in _ORDINARY:
        text = path.read_text(encoding="utf-8")
        assert scrub.text(text) == encodable(text), path


def test_a_short_secret_blanks_only_itself_not_its_short_encodings() -> None:
    # "abc" as base64 is "YWJj" and at other alignments 3 characters: such forms would blank words and ids.
    scrub = Scrubber(["abc"])
    assert scrub.text("cab YWJj 616263 abcd") == "cab YWJj 616263 ***d"
    assert secret_forms(["abc"]) == ("abc",)


_KEY_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="*")  # "*": the mark itself


@settings(max_examples=200, deadline=None)
# Base64 with "+" only at the 1-byte alignment: its URL-safe form must be made from that alignment's own.
@example(secret="000000\x80\x80\U00019fbe", before="", after="", user=b"\x00", tail=b"")
@given(secret=st.text(_KEY_CHARS, min_size=8, max_size=30), before=st.text(max_size=20),
       after=st.text(max_size=20), user=st.binary(max_size=5), tail=st.binary(max_size=3))
def test_no_encoded_form_of_a_random_secret_survives(secret: str, before: str, after: str, user: bytes,
                                                     tail: bytes) -> None:
    scrub = Scrubber([secret])
    for form in secret_forms([secret]):
        assert form not in scrub.text(before + form + after)
    # Base64 of the secret among other bytes, in either alphabet, at whatever alignment `user` gives it.
    blob = user + secret.encode() + tail
    for encoded in (base64.b64encode(blob), base64.urlsafe_b64encode(blob).rstrip(b"=")):
        assert not _base64_decodes_to(scrub.text(before + encoded.decode() + after), secret)


def test_secret_values_take_key_variables_and_secret_looking_names_but_not_short_values() -> None:
    environ = {"MY_KEY_VAR": "value-of-the-key", "GITHUB_TOKEN": "ghp_xxxxxxxxxxxx", "DB_PASSWORD": "short",
               "HOME": "/root/home/dir", "EDITOR": "vim-vim-vim"}
    assert secret_values(environ, ["EDITOR"]) == ["vim-vim-vim", "value-of-the-key", "ghp_xxxxxxxxxxxx"]


@pytest.mark.parametrize("shown", [
    "  Fix the login bug on the admin page.\n",  # the prompt itself
    "Fix the login bug on the admin page.",  # trimmed by a template or by the agent
    "could not: Fix the login bug on the admin page. (sorry)",  # echoed inside an error
])
def test_prompt_text_becomes_a_mark(shown: str) -> None:
    scrub = Scrubber(prompt="  Fix the login bug on the admin page.\n")
    assert "login bug" not in scrub.text(shown)
    assert PROMPT_MARK in scrub.text(shown)


def test_a_quoted_line_of_a_long_prompt_is_stripped_too() -> None:
    prompt = "Context: the service is called billing.\nFix the rounding error in invoice totals.\nThanks"
    scrub = Scrubber(prompt=prompt)
    assert scrub.text("error: Fix the rounding error in invoice totals. is ambiguous") == \
        f"error: {PROMPT_MARK} is ambiguous"


def test_a_short_prompt_is_only_replaced_whole() -> None:
    scrub = Scrubber(prompt="p")
    assert (scrub.text("p"), scrub.text("python")) == (PROMPT_MARK, "python")


@pytest.mark.parametrize("text", ["x\ud800", "\udfff", "a\udc80b", "\ud83d"])
def test_lone_surrogates_become_encodable_escapes(text: str) -> None:
    clean = encodable(text)
    clean.encode("utf-8")
    assert "\\u" in clean or "\\x" in clean
    assert json.loads(dumps({"id": text})) == {"id": text}  # JSON keeps it exactly, as an escape


# -- end to end: what adws records and prints ----------------------------------------------------------------


def _all_text(tmp_path: Path) -> str:
    """Everything adws wrote under tmp_path (audit, run logs, output files), as one text."""
    chunks = []
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "state.sqlite3" and "pids" not in path.name:
            chunks.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(chunks)


def test_a_key_the_agent_prints_is_redacted_from_reason_audit_result_and_logs(tmp_path: Path) -> None:
    eng = engine(tmp_path, config_text("echo_secret", "echo_secret"))
    result = eng.run({"id": "t"}, prompt="Fix it please", workdir=tmp_path)
    assert [a.outcome for a in result.attempts] == ["auth", "auth", "auth"]
    assert all(REDACTED in a.reason for a in result.attempts)
    written = _all_text(tmp_path) + json.dumps(result.to_dict())
    for value in SECRETS.values():
        assert value not in written
    assert REDACTED in (tmp_path / "runs").joinpath(Path(result.attempts[0].stderr_path or "")).read_text()


def test_a_key_the_agent_prints_encoded_is_redacted_from_reason_audit_result_and_logs(tmp_path: Path) -> None:
    password = 'pa"ss<&>/word 42'  # a value every encoder spells differently
    eng = engine(tmp_path, config_text("encode_secret", "encode_secret"), environ={"DB_PASSWORD": password})
    result = eng.run({"id": "t"}, prompt="Fix it please", workdir=tmp_path)
    assert [a.outcome for a in result.attempts] == ["auth", "auth", "auth"]
    written = _all_text(tmp_path) + json.dumps(result.to_dict())
    assert "Authorization: Basic" in written and REDACTED in written
    for value in [*SECRETS.values(), password]:
        assert not _leaks(written, value), value
        assert not _leaks(written.replace("\\n", "\n"), value), value  # the audit's JSON, with its lines


def test_the_prompt_stays_out_of_the_audit_log_through_a_template_and_an_echo(tmp_path: Path) -> None:
    # h renders {{ prompt | trim }} into argv; backup prints the prompt into its error.
    eng = engine(tmp_path, config_text("echo_prompt", "echo_prompt"))
    prompt = "   Customer 4711 reports: refund not applied to invoice 99.   \n"
    result = eng.run({"id": "t"}, prompt=prompt, workdir=tmp_path)
    [record] = audit.read(tmp_path / "audit.jsonl")
    text = json.dumps(record)
    assert "Customer 4711" not in text and "refund" not in text
    assert all(a["command"][-1] == PROMPT_MARK for a in record["attempts"])
    assert all(PROMPT_MARK in a["reason"] for a in record["attempts"])
    assert "refund" not in json.dumps(result.to_dict()["attempts"])


def test_include_prompt_keeps_the_prompt_but_not_the_secrets(tmp_path: Path) -> None:
    eng = engine(tmp_path, config_text("ok", include_prompt=True))
    prompt = f"Use key {SECRETS['KEY_A']} to fix it"
    eng.run({"id": "t"}, prompt=prompt, workdir=tmp_path)
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert record["prompt"] == "Use key *** to fix it"


@pytest.mark.parametrize(("disabled", "own", "foreign"), [
    (None, "KEY_A", ["KEY_B", "OTHER_TOKEN"]),
    ("a", "KEY_B", ["KEY_A", "OTHER_TOKEN"]),
])
def test_each_attempt_gets_only_its_own_accounts_credentials(tmp_path: Path, disabled: str | None, own: str,
                                                              foreign: list[str]) -> None:
    text = config_text("env")
    if disabled:
        text = text.replace(f'name = "{disabled}"', f'name = "{disabled}"\nenabled = false')
    result = engine(tmp_path, text).run({"id": "t"}, prompt="go", workdir=tmp_path)
    assert result.success
    child = _child_env(result)
    assert child[own] == SECRETS[own]
    assert child["H_API_KEY"] == SECRETS[own]  # the account's key goes where the CLI looks for it
    for name in foreign:
        assert name not in child
    assert child["SOME_SERVICE_PASSWORD"] == SECRETS["SOME_SERVICE_PASSWORD"]  # not a config key: untouched


def _child_env(result: Result) -> dict[str, str]:
    printed = json.loads(Path(result.attempts[-1].stdout_path or "").read_text())
    return {name: value[::-1] for name, value in printed.items()}


def test_another_providers_attempt_sees_none_of_the_first_providers_keys(tmp_path: Path) -> None:
    eng = engine(tmp_path, config_text("echo_prompt", backup="env"))
    result = eng.run({"id": "t"}, prompt="go on then", workdir=tmp_path)
    assert result.success and result.provider == "backup"
    child = _child_env(result)
    assert child["OTHER_TOKEN"] == SECRETS["OTHER_TOKEN"]
    assert not {"KEY_A", "KEY_B", "H_API_KEY"} & set(child)


def test_cli_json_and_human_output_are_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c.toml").write_text(config_text("echo_secret", "echo_secret"), encoding="utf-8")
    (tmp_path / "p.txt").write_text("do it", encoding="utf-8")
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    for flag in (["--json"], []):
        # A fresh store each time: the first run's auth failures cool the accounts until their keys change.
        monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / f"state{len(flag)}.sqlite3"))
        code = main(["run", "--config", str(tmp_path / "c.toml"), "--task-json", '{"id": "x"}', "--prompt-file",
                     str(tmp_path / "p.txt"), "--workdir", str(tmp_path), *flag])
        out, err = capsys.readouterr()
        assert code == 1
        assert REDACTED in out
        for value in SECRETS.values():
            assert value not in out + err


def test_the_agents_own_env_table_secret_is_redacted(tmp_path: Path) -> None:
    extra = '[providers.backup.env]\nSERVICE_TOKEN = "tok-{{ provider }}-0123456789"\n'
    text = config_text("echo_prompt", "echo_secret", extra=extra)
    eng = engine(tmp_path, text)
    result = eng.run({"id": "t"}, prompt="go on then", workdir=tmp_path)
    assert "tok-backup-0123456789" not in json.dumps(result.to_dict()) + _all_text(tmp_path)


def test_a_short_key_value_is_a_placeholder_left_alone_like_any_short_value(tmp_path: Path) -> None:
    # OPENAI_API_KEY=ollama for a local server: blanking it would blank every "ollama" the agent prints.
    eng = engine(tmp_path, config_text("echo_secret", "echo_secret"), {"KEY_A": "ollama"})
    result = eng.run({"id": "t"}, prompt="Fix it please", workdir=tmp_path)
    first = result.attempts[0]
    assert first.account == "a" and first.reason == "exit 1: Invalid API key: ollama"
    assert "Invalid API key: ollama" in (tmp_path / "runs").joinpath(Path(first.stderr_path or "")).read_text()


def test_redaction_survives_a_secret_split_across_reads(tmp_path: Path) -> None:
    from adws.runner import RunRequest, run

    secret = "sk-split-" + "z" * 40
    code = ("import sys,time\nfor c in sys.argv[1]:\n    sys.stdout.write(c); sys.stdout.flush()\n")
    outcome = run(RunRequest(argv=[sys.executable, "-c", code, secret], env=dict(os.environ), cwd=tmp_path,
                             out_dir=tmp_path / "o", timeout=30, secrets=[secret]))
    assert Path(outcome.stdout_path or "").read_text() == REDACTED
    assert outcome.stdout_tail == REDACTED and not outcome.truncated


def test_an_answer_holding_a_key_is_redacted_in_the_result_and_output_file(tmp_path: Path) -> None:
    prompt = "Summarise the incident report for the on-call channel"
    result = engine(tmp_path, config_text("leak")).run({"id": "t"}, prompt=prompt, workdir=tmp_path)
    assert result.success and result.final_text is not None
    assert result.final_text.startswith("done; the key was ***; you asked: Summarise the incident")  # prompt kept
    assert Path(result.output_file or "").read_text(encoding="utf-8") == result.final_text
    assert SECRETS["KEY_A"] not in _all_text(tmp_path)


def test_the_secret_name_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from adws import redact

    monkeypatch.setattr(redact, "_LOOKS_SECRET", {})
    monkeypatch.setattr(redact, "_LOOKS_SECRET_MAX", 4)
    names = [f"VAR_{i}" for i in range(10)] + ["MY_TOKEN"]
    assert [redact.looks_secret(name) for name in names] == [False] * 10 + [True]
    assert len(redact._LOOKS_SECRET) == 4  # answered past the bound, not kept


def test_the_memos_keep_sets_of_secrets_by_their_size_not_only_their_number() -> None:
    # The automata of a set grow with its bytes (about 30 per byte of needle): a set of key files is made again
    # rather than kept, a set of keys is kept.
    keys = ["sk-kept-" + "k" * 40, "sk-kept-" + "j" * 40]
    assert matcher(keys) is matcher(keys) and secret_forms(keys) is secret_forms(keys)
    files = [f"-----BEGIN KEY {n}-----\n" + "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n" * 40_000 for n in range(4)]
    assert matcher(files) is not matcher(files)
    assert secret_forms(files) is not secret_forms(files)


def test_a_memo_evicts_the_least_recently_used_by_count_and_by_weight() -> None:
    from adws.redact import _Memo

    memo: _Memo[str, int] = _Memo(3, 100)
    for key in "abc":
        memo.put(key, ord(key), 10)
    assert memo.get("a") == ord("a")
    memo.put("d", 4, 10)  # a fourth: "b", the least recently used, goes
    assert [memo.get(key) for key in "abcd"] == [ord("a"), None, ord("c"), 4]
    memo.put("e", 5, 85)  # 30 + 85 > 100: the oldest go until it fits
    assert [memo.get(key) for key in "acde"] == [None, None, 4, 5]
    assert memo.put("f", 6, 101) == 6 and memo.get("f") is None  # heavier than the whole memo: not kept
    # A key already held is not weighed twice: putting it again leaves room for the others.
    again: _Memo[str, int] = _Memo(3, 30)
    again.put("a", 1, 10)
    again.put("a", 1, 10)
    again.put("b", 2, 10)
    again.put("c", 3, 10)
    assert [again.get(key) for key in "abc"] == [1, 2, 3]


def test_no_secrets_load_no_encoders() -> None:
    """A run without secrets asks for the forms of none: the encoders' modules (html, shlex, adws.secret_forms)
    stay unloaded, as for start-up and routing."""
    import subprocess
    import sys

    code = ("import sys; from adws.redact import secret_forms; assert secret_forms(()) == (); "
            "print('adws.secret_forms' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
