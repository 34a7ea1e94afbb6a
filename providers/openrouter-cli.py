#!/usr/bin/env python3
"""Make OpenRouter's chat-completions API look like a non-interactive agent CLI.

adws runs agent CLIs and reads their output; an HTTP API has neither argv nor stdout. This wrapper sends
one prompt to `{base}/chat/completions` (OpenAI chat format) and writes the reply in Claude Code's
`--output-format stream-json` shape, one JSON object per line, so adws's `claude-stream-json` parser
reads it like any other provider:

    {"type":"system","subtype":"init","model":...}
    {"type":"assistant","message":{"content":[{"type":"text","text":...}]}}
    {"type":"result","subtype":"success"|"error","is_error":...,"result":...,"usage":{...},...}

On HTTP 429 a `{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":N}}` line
comes before the result, as Claude Code prints it, so adws cools the account down until the reset.

The API key is read from an environment variable (default OPENROUTER_API_KEY) and never from argv:
argv shows up in `ps`, logs and audit records. Standard library only, so it runs wherever python3 does.

Exit codes: 0 success, 1 the request failed (auth, rate limit, context, server, network, bad reply),
2 the wrapper was called wrongly (missing key, bad arguments, no prompt).
"""

from __future__ import annotations

import argparse
import email.utils
import http
import http.client
import json
import math
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar, NoReturn

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
BASE_URL_ENV = "OPENROUTER_BASE_URL"
DEFAULT_API_KEY_ENV = "OPENROUTER_API_KEY"
DEFAULT_TIMEOUT_S = 600.0
USER_AGENT = "adws-openrouter-cli/1"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

MAX_BODY_BYTES = 64 * 1024 * 1024  # a chat reply is kilobytes; this only stops a runaway server
READ_CHUNK_BYTES = 64 * 1024
SNIPPET_CHARS = 300  # how much of an unreadable body an error message quotes

# Matched against an HTTP 400's error message, code, type and metadata. OpenRouter passes the upstream
# provider's wording through (often inside metadata.raw), so several phrasings have to be recognised.
CONTEXT_PATTERN = re.compile(
    r"context[ _-]?(length|window)|maximum context|prompt is too long|too many (input )?tokens"
    r"|reduce the length",
    re.IGNORECASE,
)


class UsageError(Exception):
    """The wrapper was called wrongly (exit 2)."""


class Failure(Exception):
    """The request did not produce an answer. `message` becomes the result's text."""

    def __init__(
        self,
        message: str,
        exit_code: int = EXIT_FAILED,
        resets_at: int | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.resets_at = resets_at
        self.rate_limited = rate_limited
        self.status: int | None = None  # the HTTP status the API answered with, when it answered


# ---------------------------------------------------------------------------------------------------------
# Arguments and prompt


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print usage and exit 2 with nothing on stdout; adws wants a result line instead.
        raise UsageError(message)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: otherwise `--api-key sk-...` would silently mean `--api-key-env sk-...`.
    parser = _Parser(
        prog="openrouter-cli.py",
        allow_abbrev=False,
        description="Send one prompt to an OpenAI-compatible chat API (OpenRouter by default) and print "
        "the answer as Claude Code stream-json lines.",
        epilog=f"The API key is read from the environment variable named by --api-key-env "
        f"(default {DEFAULT_API_KEY_ENV}); it is never accepted as an argument.",
    )
    parser.add_argument("prompt", nargs="?", help="the prompt ('-' or absent: read stdin)")
    parser.add_argument("--model", required=True, help="model id, e.g. anthropic/claude-sonnet-4")
    parser.add_argument("--prompt-file", help="read the prompt from this file (wins over the argument)")
    parser.add_argument("--system", help="optional system message")
    parser.add_argument("--base-url", help=f"API base (default ${BASE_URL_ENV} or {DEFAULT_BASE_URL})")
    parser.add_argument(
        "--api-key-env",
        default=DEFAULT_API_KEY_ENV,
        metavar="NAME",
        help=f"environment variable holding the key (default {DEFAULT_API_KEY_ENV})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"total time allowed for the request (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--max-tokens", type=_positive_int, help="cap on the answer's length in tokens")
    # Present only to refuse it with a clear message instead of "unrecognized arguments: <the key>".
    parser.add_argument("--api-key", nargs="?", const="", dest="api_key_argument", help=argparse.SUPPRESS)
    return parser


@dataclass(frozen=True, slots=True)
class Options:
    model: str
    prompt_source: str  # "file", "argument" or "stdin"
    prompt_file: str | None
    prompt_argument: str | None
    system: str | None
    base_url: str
    api_key_env: str
    timeout: float
    max_tokens: int | None


def parse_options(argv: Sequence[str], env: Mapping[str, str]) -> Options:
    parser = build_parser()
    args, extras = parser.parse_known_args(list(argv))
    if extras:
        # Name unknown options but never echo their values: one of them may be a pasted secret.
        names = sorted({a.split("=", 1)[0] for a in extras if a.startswith("-")})
        shown = ", ".join(names) if names else f"{len(extras)} extra positional argument(s)"
        raise UsageError(f"unrecognized arguments: {shown}")
    if args.api_key_argument is not None:
        raise UsageError(
            f"the API key is never accepted as an argument: set the environment variable "
            f"{args.api_key_env} instead"
        )
    base_url = (args.base_url or env.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url must start with http:// or https://, got {base_url!r}")
    if not args.model.strip():
        raise UsageError("--model must not be empty")
    if args.prompt_file is not None:
        source = "file"
    elif args.prompt is not None and args.prompt != "-":
        source = "argument"
    else:
        source = "stdin"
    return Options(
        model=args.model,
        prompt_source=source,
        prompt_file=args.prompt_file,
        prompt_argument=args.prompt,
        system=args.system,
        base_url=base_url,
        api_key_env=args.api_key_env,
        timeout=args.timeout,
        max_tokens=args.max_tokens,
    )


def read_prompt(options: Options, stdin: IO[bytes]) -> str:
    """The prompt from --prompt-file, else the positional argument, else stdin."""
    if options.prompt_source == "file":
        assert options.prompt_file is not None
        try:
            with open(options.prompt_file, "rb") as handle:
                text = handle.read().decode("utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(
                f"cannot read --prompt-file {options.prompt_file}: {exc.strerror or exc}"
            ) from None
    elif options.prompt_source == "argument":
        assert options.prompt_argument is not None
        text = options.prompt_argument
    else:
        if stdin.isatty():  # reading would hang waiting for a human
            raise UsageError("no prompt: give --prompt-file PATH, a prompt argument, or pipe it on stdin")
        text = stdin.read().decode("utf-8", errors="replace")
    if not text.strip():
        raise UsageError(f"the prompt is empty (read from {options.prompt_source})")
    return text


# ---------------------------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would forward the Authorization header to wherever a redirect points; refuse instead.
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Any, newurl: str
    ) -> None:
        return None


def _read_capped(stream: IO[bytes], headers: dict[str, str]) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Failure(f"response larger than {MAX_BODY_BYTES} bytes; refusing to read it")
        chunks.append(chunk)
    body = b"".join(chunks)
    # http.client reports a body cut short by Content-Length only when asked to read all of it at once.
    declared = headers.get("content-length", "").strip()
    if declared.isdigit() and len(body) < int(declared):
        raise http.client.IncompleteRead(body, int(declared) - len(body))
    return body


def _fetch(request: urllib.request.Request, timeout: float) -> HttpReply:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            headers = _lower(response.headers.items())
            return HttpReply(response.status, headers, _read_capped(response, headers))
    except urllib.error.HTTPError as err:  # a status >= 300: still a reply worth reading
        headers = _lower(err.headers.items() if err.headers else [])
        body = _read_capped(err, headers) if err.fp is not None else b""
        return HttpReply(err.code, headers, body)


def _lower(items: Any) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in items}


def send(request: urllib.request.Request, timeout: float) -> HttpReply:
    """POST with a total deadline (socket timeouts alone reset on every byte a slow server trickles)."""
    box: list[HttpReply | BaseException] = []

    def work() -> None:
        try:
            box.append(_fetch(request, timeout))
        except BaseException as exc:  # handed to the main thread, which turns it into a message
            box.append(exc)

    # Daemon: a request still hanging at the deadline must not keep the process alive.
    worker = threading.Thread(target=work, name="openrouter-request", daemon=True)
    worker.start()
    worker.join(timeout)
    if not box:
        raise Failure(f"request timed out after {timeout:g} s")
    outcome = box[0]
    if isinstance(outcome, HttpReply):
        return outcome
    if isinstance(outcome, Failure):
        raise outcome
    raise Failure(describe_transport_error(outcome, request.full_url, timeout))


# Most specific first: RemoteDisconnected is a ConnectionResetError, every one of these is an OSError.
_TRANSPORT_MESSAGES: list[tuple[type[BaseException], Callable[[BaseException, str, float], str]]] = [
    (TimeoutError, lambda e, url, t: f"request timed out after {t:g} s"),
    (
        http.client.RemoteDisconnected,
        lambda e, url, t: f"the server closed the connection without sending a response ({url})",
    ),
    (
        http.client.IncompleteRead,
        lambda e, url, t: f"the server closed the connection before the response was complete ({url})",
    ),
    (ConnectionRefusedError, lambda e, url, t: f"cannot connect to {url}: connection refused"),
    (ConnectionResetError, lambda e, url, t: f"the connection to {url} was reset by the server"),
    (socket.gaierror, lambda e, url, t: f"cannot resolve the host of {url}: {e}"),
    (http.client.HTTPException, lambda e, url, t: f"invalid HTTP response from {url}: {e!r}"),
    (OSError, lambda e, url, t: f"network error talking to {url}: {e}"),
]


def describe_transport_error(exc: BaseException, url: str, timeout: float) -> str:
    """A one-line message for an exception raised while sending the request or reading the reply."""
    if isinstance(exc, urllib.error.URLError):  # connect-time errors arrive wrapped
        if isinstance(exc.reason, BaseException):
            exc = exc.reason
        else:
            return f"cannot send the request to {url}: {exc.reason}"
    for kind, describe in _TRANSPORT_MESSAGES:
        if isinstance(exc, kind):
            return describe(exc, url, timeout)
    return f"request to {url} failed: {type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------------------
# Reading replies


def snippet(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", errors="replace").split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "…"


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error the API reported, with everything the status handlers need."""

    status: int
    detail: str  # human message, from the JSON error when there is one
    haystack: str  # message + code + type + metadata, for pattern checks
    headers: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)


def api_error(status: int, headers: dict[str, str], body: bytes) -> ApiError:
    data = _json_object(body)
    error = data.get("error") if data is not None else None
    if isinstance(error, dict):
        message = str(error.get("message") or "").strip()
        metadata = _dict(error.get("metadata"))
        raw = metadata.get("raw")
        if raw:  # "Provider returned error": the useful words are the upstream provider's
            provider = metadata.get("provider_name") or "provider"
            raw_text = raw if isinstance(raw, str) else json.dumps(raw)
            message = f"{message} ({provider}: {snippet(raw_text.encode())})".strip()
        haystack = " ".join(
            [message, str(error.get("code", "")), str(error.get("type", "")), json.dumps(metadata)]
        )
        return ApiError(status, message or _phrase(status), haystack, headers, metadata)
    if isinstance(error, str) and error.strip():
        return ApiError(status, error.strip(), error, headers)
    text = snippet(body)
    return ApiError(status, text or _phrase(status), text, headers)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "no error message"


def reset_epoch(headers: Mapping[str, str], metadata: Mapping[str, Any], now: float) -> int | None:
    """When a rate limit lifts, as epoch seconds: Retry-After (seconds or HTTP date), else X-RateLimit-Reset.

    OpenRouter sends X-RateLimit-Reset in epoch milliseconds, sometimes only inside error.metadata.headers.
    """
    retry_after = headers.get("retry-after", "").strip()
    if retry_after:
        try:
            return math.ceil(now + max(0.0, float(retry_after)))
        except ValueError:
            pass
        try:
            return int(email.utils.parsedate_to_datetime(retry_after).timestamp())
        except (TypeError, ValueError, IndexError):
            pass
    meta_headers = metadata.get("headers")
    candidates = [headers.get("x-ratelimit-reset")]
    if isinstance(meta_headers, dict):
        candidates += [str(v) for k, v in meta_headers.items() if str(k).lower() == "x-ratelimit-reset"]
    for value in candidates:
        try:
            number = float(str(value).strip())
        except ValueError:
            continue
        # Epoch milliseconds are 13 digits today; seconds are 10. Accept either.
        return math.ceil(number / 1000) if number > 1e11 else math.ceil(number)
    return None


def _utc(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


StatusHandler = Callable[[ApiError, "Context"], Failure]


@dataclass(frozen=True, slots=True)
class Context:
    api_key_env: str
    url: str
    now: float


def _bad_request(err: ApiError, ctx: Context) -> Failure:
    if CONTEXT_PATTERN.search(err.haystack):
        return Failure(f"context length exceeded (HTTP {err.status}): {err.detail}")
    return Failure(f"bad request (HTTP {err.status}): {err.detail}")


def _auth(err: ApiError, ctx: Context) -> Failure:
    return Failure(
        f"invalid API key (HTTP {err.status}): the key in {ctx.api_key_env} was rejected: {err.detail}"
    )


def _credits(err: ApiError, ctx: Context) -> Failure:
    return Failure(f"insufficient credits (HTTP {err.status}): {err.detail}")


def _server_timeout(err: ApiError, ctx: Context) -> Failure:
    return Failure(f"request timed out on the server (HTTP {err.status}): {err.detail}")


def _rate_limited(err: ApiError, ctx: Context) -> Failure:
    resets_at = reset_epoch(err.headers, err.metadata, ctx.now)
    when = f"; resets at {_utc(resets_at)}" if resets_at is not None else ""
    return Failure(
        f"rate limit exceeded (HTTP {err.status}): {err.detail}{when}", resets_at=resets_at, rate_limited=True
    )


def _server_error(err: ApiError, ctx: Context) -> Failure:
    return Failure(f"server error (HTTP {err.status}): {err.detail}")


def _redirect(err: ApiError, ctx: Context) -> Failure:
    location = err.headers.get("location", "(no Location header)")
    return Failure(
        f"unexpected redirect (HTTP {err.status}) to {location}: not followed, so the API key "
        f"goes nowhere else; check --base-url"
    )


def _other(err: ApiError, ctx: Context) -> Failure:
    return Failure(f"HTTP {err.status} from {ctx.url}: {err.detail}")


STATUS_HANDLERS: dict[int, StatusHandler] = {
    400: _bad_request,
    413: _bad_request,  # a body too large for the server is the same problem as too many tokens
    401: _auth,
    403: _auth,
    402: _credits,
    408: _server_timeout,
    429: _rate_limited,
}
RANGE_HANDLERS: dict[int, StatusHandler] = {3: _redirect, 5: _server_error}  # keyed by status // 100


def failure_for(err: ApiError, ctx: Context) -> Failure:
    handler = STATUS_HANDLERS.get(err.status) or RANGE_HANDLERS.get(err.status // 100, _other)
    failure = handler(err, ctx)
    failure.status = err.status
    return failure


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    response_id: str | None
    model: str | None
    finish_reason: str | None
    input_tokens: int | None  # None: the API did not report usage
    output_tokens: int | None
    cost_usd: float | None  # None: the API did not report a cost


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _status_code(value: Any) -> int | None:
    """error.code as an int: OpenRouter sends 429, other gateways "429"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.strip().isdigit() else None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some providers answer with content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def interpret(reply: HttpReply, ctx: Context) -> Answer:
    """Turn the HTTP reply into an answer, or raise the Failure that describes it."""
    if reply.status >= 300:
        raise failure_for(api_error(reply.status, reply.headers, reply.body), ctx)
    data = _json_object(reply.body)
    if data is None:
        kind = reply.headers.get("content-type", "no Content-Type")
        raise Failure(
            f"response is not a JSON object (HTTP {reply.status}, {kind}): "
            f"{snippet(reply.body) or '(empty body)'}"
        )
    if data.get("error"):
        # OpenRouter reports errors that happen after the model started as HTTP 200 with an error body.
        err = api_error(reply.status, reply.headers, reply.body)
        code = _status_code(data["error"].get("code")) if isinstance(data["error"], dict) else None
        if code is not None and 300 <= code <= 599:
            raise failure_for(ApiError(code, err.detail, err.haystack, err.headers, err.metadata), ctx)
        raise Failure(f"the API reported an error: {err.detail}")
    choices = data.get("choices")
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    message = first.get("message") if first is not None else None
    if not isinstance(message, dict):
        raise Failure(f"unexpected response: no choices[0].message in the JSON body: {snippet(reply.body)}")
    finish_reason = first.get("finish_reason") if first is not None else None
    if finish_reason == "error":
        raise Failure(f"the model stopped with an error: {snippet(reply.body)}")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    cost = _number(usage.get("cost")) if usage is not None else None
    return Answer(
        text=_text_of(message.get("content")),
        response_id=data.get("id") if isinstance(data.get("id"), str) else None,
        model=data.get("model") if isinstance(data.get("model"), str) else None,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        input_tokens=_count(usage.get("prompt_tokens")) if usage is not None else None,
        output_tokens=_count(usage.get("completion_tokens")) if usage is not None else None,
        cost_usd=cost,
    )


# ---------------------------------------------------------------------------------------------------------
# Output


class Emitter:
    """Writes Claude Code stream-json lines, scrubbing the API key from everything it writes."""

    # Claude's stop reasons, for the OpenAI finish reasons that have one.
    STOP_REASONS: ClassVar[dict[str, str]] = {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
    }

    def __init__(self, out: IO[bytes], err: IO[bytes], monotonic: Callable[[], float]) -> None:
        self.out = out
        self.err = err
        self.monotonic = monotonic
        self.started = monotonic()
        self.session_id = str(uuid.uuid4())
        self.secrets: list[str] = []

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            # Also its JSON-escaped spelling, in case the key holds characters json.dumps escapes.
            for spelling in {secret, json.dumps(secret)[1:-1]}:
                text = text.replace(spelling, "[REDACTED]")
        return text

    def line(self, event: dict[str, Any]) -> None:
        text = self.scrub(json.dumps(event, ensure_ascii=False, separators=(",", ":")))
        self.out.write(text.encode("utf-8") + b"\n")
        self.out.flush()

    def init(self, model: str) -> None:
        self.line(
            {
                "type": "system",
                "subtype": "init",
                "session_id": self.session_id,
                "model": model,
                "cwd": os.getcwd(),
                "tools": [],
                "mcp_servers": [],
            }
        )

    def assistant(self, answer: Answer, model: str) -> None:
        message: dict[str, Any] = {
            "id": answer.response_id or f"msg_{self.session_id}",
            "type": "message",
            "role": "assistant",
            "model": answer.model or model,
            "content": [{"type": "text", "text": answer.text}],
            "stop_reason": self.STOP_REASONS.get(answer.finish_reason or "", answer.finish_reason),
        }
        usage = _usage(answer)
        if usage is not None:
            message["usage"] = usage
        self.line({"type": "assistant", "message": message, "session_id": self.session_id})

    def rate_limit(self, resets_at: int | None) -> None:
        info: dict[str, Any] = {"status": "rejected"}
        if resets_at is not None:
            info["resetsAt"] = resets_at
        self.line({"type": "rate_limit_event", "rate_limit_info": info, "session_id": self.session_id})

    def result(
        self,
        text: str,
        is_error: bool,
        answer: Answer | None = None,
        api_ms: int | None = None,
        api_error_status: int | None = None,
    ) -> None:
        event: dict[str, Any] = {
            "type": "result",
            "subtype": "error" if is_error else "success",
            "is_error": is_error,
            "result": text,
            "duration_ms": int((self.monotonic() - self.started) * 1000),
            "duration_api_ms": api_ms if api_ms is not None else 0,
            "num_turns": 1,
            "session_id": self.session_id,
        }
        usage = _usage(answer) if answer is not None else None
        if usage is not None:  # absent rather than zero when the API did not say: adws then estimates
            event["usage"] = usage
        if answer is not None and answer.cost_usd is not None:
            event["total_cost_usd"] = answer.cost_usd
        if api_error_status is not None:  # Claude Code's field for the status of a failed API call
            event["api_error_status"] = api_error_status
        self.line(event)
        if is_error:
            self.err.write(self.scrub(f"openrouter-cli: error: {text}\n").encode("utf-8"))
            self.err.flush()


def _usage(answer: Answer) -> dict[str, int] | None:
    if answer.input_tokens is None and answer.output_tokens is None:
        return None
    return {"input_tokens": answer.input_tokens or 0, "output_tokens": answer.output_tokens or 0}


# ---------------------------------------------------------------------------------------------------------
# Main


def build_request(options: Options, prompt: str, api_key: str) -> urllib.request.Request:
    messages = [{"role": "system", "content": options.system}] if options.system else []
    messages.append({"role": "user", "content": prompt})
    payload: dict[str, Any] = {"model": options.model, "messages": messages, "stream": False}
    if options.max_tokens is not None:
        payload["max_tokens"] = options.max_tokens
    return urllib.request.Request(
        f"{options.base_url}/chat/completions",
        data=json.dumps(payload).encode("utf-8"),
        method="POST",
        headers={
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        },
    )


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    stdin: IO[bytes],
    out: IO[bytes],
    err: IO[bytes],
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """The whole program, with its world injected. Returns the exit code."""
    emit = Emitter(out, err, monotonic)
    try:
        return _run(emit, argv, env, stdin, clock, monotonic)
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except Exception as exc:  # a bug here must still end as a result line, never as a traceback
        emit.result(f"internal error in openrouter-cli: {type(exc).__name__}: {exc}", is_error=True)
        return EXIT_FAILED


def _run(
    emit: Emitter,
    argv: Sequence[str],
    env: Mapping[str, str],
    stdin: IO[bytes],
    clock: Callable[[], float],
    monotonic: Callable[[], float],
) -> int:
    try:
        options = parse_options(argv, env)
    except UsageError as exc:
        emit.result(f"bad arguments: {exc}", is_error=True)
        return EXIT_USAGE
    # Stripped: a key pasted with a trailing newline would make an invalid header (whose error quotes it).
    api_key = env.get(options.api_key_env, "").strip()
    if len(api_key) >= 4:  # shorter "keys" are not secrets worth mangling every output for
        emit.secrets.append(api_key)
    emit.init(options.model)
    try:
        prompt = read_prompt(options, stdin)  # read stdin first so a parent writing it never sees EPIPE
    except UsageError as exc:
        prompt_problem: str | None = str(exc)
    else:
        prompt_problem = None
    if not api_key:
        emit.result(f"{options.api_key_env} is not set", is_error=True)
        return EXIT_USAGE
    if prompt_problem is not None:
        emit.result(prompt_problem, is_error=True)
        return EXIT_USAGE
    request = build_request(options, prompt, api_key)
    api_started = monotonic()
    try:
        reply = send(request, options.timeout)
        api_ms = int((monotonic() - api_started) * 1000)
        answer = interpret(reply, Context(options.api_key_env, request.full_url, now=clock()))
    except Failure as failure:
        if failure.rate_limited:
            emit.rate_limit(failure.resets_at)
        api_ms = int((monotonic() - api_started) * 1000)
        emit.result(failure.message, is_error=True, api_ms=api_ms, api_error_status=failure.status)
        return failure.exit_code
    emit.assistant(answer, options.model)
    emit.result(answer.text, is_error=False, answer=answer, api_ms=api_ms)
    return EXIT_OK


def main() -> int:
    try:
        return run(sys.argv[1:], os.environ, sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # whoever reads stdout went away; nothing left to tell
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
