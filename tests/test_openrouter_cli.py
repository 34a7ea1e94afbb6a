"""providers/openrouter-cli.py against a local fake of the OpenRouter chat-completions API.

Most tests run the script as a subprocess, exactly as adws would, and read stdout line by line as JSON.
A few call its `run()` in-process with an injected clock so that reset times can be asserted exactly.
"""

from __future__ import annotations

import email.utils
import importlib.util
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "providers" / "openrouter-cli.py"
KEY = "sk-or-v1-0123456789abcdef-test-secret"
FIXED_NOW = 1_800_000_000.0

Responder = Callable[[BaseHTTPRequestHandler], None]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openrouter_cli", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["openrouter_cli"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


cli = _load_script()


# ---------------------------------------------------------------------------------------------------------
# The fake API


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeApi:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    respond: Responder | None = None
    release: threading.Event = field(default_factory=threading.Event)  # ends a stalled handler


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        api = self.server.api
        api.requests.append(Recorded("POST", self.path, dict(self.headers.items()), body))
        assert api.respond is not None, "test forgot to set api.respond"
        api.respond(self)

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeApi


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = _Server(("127.0.0.1", 0), _Handler)
    fake = FakeApi(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.api = fake
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def send_json(status: int, body: Any, headers: dict[str, str] | None = None) -> Responder:
    return send_raw(status, json.dumps(body).encode(), "application/json", headers)


def send_raw(status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> Responder:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def completion(text: str = "Hello from the model.", usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "gen-123",
        "object": "chat.completion",
        "created": 1_711_234_567,
        "model": "anthropic/claude-sonnet-4",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


OPENROUTER_USAGE = {
    "prompt_tokens": 194,
    "completion_tokens": 2,
    "total_tokens": 196,
    "cost": 0.95,
    "cost_details": {"upstream_inference_cost": 19},
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}


def error_body(code: int | str, message: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if metadata is not None:
        error["metadata"] = metadata
    return {"error": error}


# ---------------------------------------------------------------------------------------------------------
# Running the script


@dataclass
class Run:
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    @property
    def result(self) -> dict[str, Any]:
        assert self.events[-1]["type"] == "result"
        return self.events[-1]


def _env(key: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    # No proxies (a proxy would swallow 127.0.0.1) and no inherited key or base URL.
    drop = {"OPENROUTER_API_KEY", "OPENROUTER_BASE_URL"}
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k not in drop}
    if key is not None:
        env["OPENROUTER_API_KEY"] = key
    env.update(extra or {})
    return env


def run_cli(
    api: FakeApi | None,
    *args: str,
    key: str | None = KEY,
    stdin: bytes = b"Say hello.",
    env: dict[str, str] | None = None,
) -> Run:
    base = ["--base-url", api.url] if api is not None else []
    argv = [sys.executable, str(SCRIPT), *base, *args]
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=_env(key, env), timeout=60, check=False)
    stdout = proc.stdout.decode("utf-8")
    events = [json.loads(line) for line in stdout.splitlines()]  # every line must be one JSON object
    return Run(argv, proc.returncode, stdout, proc.stderr.decode("utf-8"), events)


def stable(event: dict[str, Any]) -> dict[str, Any]:
    """The event without the fields that change from run to run (checked for type instead)."""
    event = dict(event)
    assert isinstance(event.pop("session_id"), str)
    for name in ("duration_ms", "duration_api_ms"):
        if name in event:
            value = event.pop(name)
            assert isinstance(value, int) and value >= 0
    if event.get("type") == "system":
        assert event.pop("cwd") == os.getcwd()
    return event


def init_event(model: str = "anthropic/claude-sonnet-4") -> dict[str, Any]:
    return {"type": "system", "subtype": "init", "model": model, "tools": [], "mcp_servers": []}


def error_result(message: str, status: int | None = None) -> dict[str, Any]:
    event = {"type": "result", "subtype": "error", "is_error": True, "result": message, "num_turns": 1}
    if status is not None:
        event["api_error_status"] = status
    return event


def assert_failed(run: Run, message: str, code: int = 1, status: int | None = None) -> None:
    assert run.code == code
    assert [stable(e) for e in run.events] == [init_event(), error_result(message, status)]
    assert run.stderr == f"openrouter-cli: error: {message}\n"


MODEL = ("--model", "anthropic/claude-sonnet-4")


# ---------------------------------------------------------------------------------------------------------
# Success


def test_success_reports_text_usage_and_cost(api: FakeApi) -> None:
    api.respond = send_json(200, completion(usage=OPENROUTER_USAGE))
    run = run_cli(api, *MODEL, "--system", "Be brief.", "--max-tokens", "256", stdin=b"Say hello.")

    assert run.code == 0
    assert run.stderr == ""
    assert [stable(e) for e in run.events] == [
        init_event(),
        {
            "type": "assistant",
            "message": {
                "id": "gen-123",
                "type": "message",
                "role": "assistant",
                "model": "anthropic/claude-sonnet-4",
                "content": [{"type": "text", "text": "Hello from the model."}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 194, "output_tokens": 2},
            },
        },
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": "Hello from the model.",
            "num_turns": 1,
            "usage": {"input_tokens": 194, "output_tokens": 2},
            "total_cost_usd": 0.95,
        },
    ]
    assert len({e["session_id"] for e in run.events}) == 1


def test_request_is_openai_chat_format_with_bearer_key(api: FakeApi) -> None:
    api.respond = send_json(200, completion(usage=OPENROUTER_USAGE))
    run_cli(api, *MODEL, "--system", "Be brief.", "--max-tokens", "256", stdin=b"Say hello.")

    [request] = api.requests
    assert request.method == "POST"
    assert request.path == "/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == {
        "model": "anthropic/claude-sonnet-4",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
        "stream": False,
        "max_tokens": 256,
    }


def test_without_system_or_max_tokens_only_the_user_message_is_sent(api: FakeApi) -> None:
    api.respond = send_json(200, completion())
    run_cli(api, *MODEL, stdin=b"Just this.")
    assert api.requests[0].body == {
        "model": "anthropic/claude-sonnet-4",
        "messages": [{"role": "user", "content": "Just this."}],
        "stream": False,
    }


def test_usage_and_cost_are_absent_when_the_api_does_not_report_them(api: FakeApi) -> None:
    api.respond = send_json(200, completion())
    run = run_cli(api, *MODEL)
    assert run.code == 0
    assert stable(run.result) == {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Hello from the model.",
        "num_turns": 1,
    }
    assert "usage" not in run.events[1]["message"]


def test_usage_without_cost_has_no_total_cost(api: FakeApi) -> None:
    api.respond = send_json(200, completion(usage={"prompt_tokens": 10, "completion_tokens": 5}))
    run = run_cli(api, *MODEL)
    assert run.result["usage"] == {"input_tokens": 10, "output_tokens": 5}
    assert "total_cost_usd" not in run.result


def test_content_parts_are_joined_and_length_maps_to_max_tokens(api: FakeApi) -> None:
    body = completion()
    body["choices"][0] = {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        "finish_reason": "length",
    }
    api.respond = send_json(200, body)
    run = run_cli(api, *MODEL)
    assert run.code == 0
    assert run.events[1]["message"]["content"] == [{"type": "text", "text": "ab"}]
    assert run.events[1]["message"]["stop_reason"] == "max_tokens"
    assert run.result["result"] == "ab"


def test_base_url_comes_from_the_environment_when_not_given(api: FakeApi) -> None:
    api.respond = send_json(200, completion())
    run = run_cli(None, *MODEL, env={"OPENROUTER_BASE_URL": api.url + "/"})
    assert run.code == 0
    assert api.requests[0].path == "/chat/completions"


def test_api_key_env_names_another_variable(api: FakeApi) -> None:
    api.respond = send_json(200, completion())
    run = run_cli(
        api, *MODEL, "--api-key-env", "OTHER_ROUTER_KEY", key=None, env={"OTHER_ROUTER_KEY": "sk-other"}
    )
    assert run.code == 0
    assert api.requests[0].headers["Authorization"] == "Bearer sk-other"


# ---------------------------------------------------------------------------------------------------------
# Where the prompt comes from


def test_prompt_from_stdin(api: FakeApi) -> None:
    api.respond = send_json(200, completion())
    run_cli(api, *MODEL, stdin="Prompt on stdin — ünïcode.".encode())
    assert api.requests[0].body["messages"] == [{"role": "user", "content": "Prompt on stdin — ünïcode."}]


def test_prompt_from_argument_wins_over_stdin(api: FakeApi) -> None:
    api.respond = send_json(200, completion())
    run_cli(api, *MODEL, "Prompt as argument", stdin=b"ignored stdin")
    assert api.requests[0].body["messages"] == [{"role": "user", "content": "Prompt as argument"}]


def test_prompt_argument_dash_means_stdin(api: FakeApi) -> None:
    api.respond = send_json(200, completion())
    run_cli(api, *MODEL, "-", stdin=b"from stdin")
    assert api.requests[0].body["messages"] == [{"role": "user", "content": "from stdin"}]


def test_prompt_from_file_wins_over_argument_and_stdin(api: FakeApi, tmp_path: Path) -> None:
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text("# Task\n\nPrompt from a file; {{ 7*7 }} stays literal.\n", encoding="utf-8")
    api.respond = send_json(200, completion())
    run_cli(api, *MODEL, "--prompt-file", str(prompt_file), "argument", stdin=b"stdin")
    assert api.requests[0].body["messages"] == [
        {"role": "user", "content": "# Task\n\nPrompt from a file; {{ 7*7 }} stays literal.\n"}
    ]


def test_unreadable_prompt_file_is_a_usage_error(api: FakeApi, tmp_path: Path) -> None:
    missing = tmp_path / "nope.md"
    run = run_cli(api, *MODEL, "--prompt-file", str(missing))
    assert_failed(run, f"cannot read --prompt-file {missing}: No such file or directory", code=2)
    assert api.requests == []


def test_empty_prompt_is_a_usage_error(api: FakeApi) -> None:
    run = run_cli(api, *MODEL, stdin=b"  \n")
    assert_failed(run, "the prompt is empty (read from stdin)", code=2)
    assert api.requests == []


# ---------------------------------------------------------------------------------------------------------
# The key


def test_missing_key(api: FakeApi) -> None:
    run = run_cli(api, *MODEL, key=None)
    assert_failed(run, "OPENROUTER_API_KEY is not set", code=2)
    assert api.requests == []


def test_empty_key_counts_as_missing(api: FakeApi) -> None:
    run = run_cli(api, *MODEL, key="")
    assert_failed(run, "OPENROUTER_API_KEY is not set", code=2)


def test_missing_key_names_the_configured_variable(api: FakeApi) -> None:
    run = run_cli(api, *MODEL, "--api-key-env", "ACCOUNT_3_KEY")
    assert_failed(run, "ACCOUNT_3_KEY is not set", code=2)


def test_key_given_as_argument_is_refused_without_echoing_it(api: FakeApi) -> None:
    run = run_cli(api, *MODEL, "--api-key", "sk-or-v1-pasted-secret")
    assert run.code == 2
    assert [stable(e) for e in run.events] == [
        error_result(
            "bad arguments: the API key is never accepted as an argument: "
            "set the environment variable OPENROUTER_API_KEY instead"
        )
    ]
    assert "pasted-secret" not in run.stdout + run.stderr
    assert api.requests == []


def test_unknown_option_is_named_but_its_value_is_not_echoed(api: FakeApi) -> None:
    run = run_cli(api, *MODEL, "--token=sk-or-v1-pasted-secret")
    assert run.code == 2
    assert run.result["result"] == "bad arguments: unrecognized arguments: --token"
    assert "pasted-secret" not in run.stdout + run.stderr


@pytest.mark.parametrize(
    "responder",
    [
        send_json(200, completion(usage=OPENROUTER_USAGE)),
        # A server that echoes the key back must not make the wrapper print it.
        send_json(401, error_body(401, f"No auth credentials found for key {KEY}")),
        send_json(200, completion(text=f"your key is {KEY}")),
        send_raw(500, f"<html>debug: Authorization: Bearer {KEY}</html>".encode(), "text/html"),
    ],
    ids=["success", "401-echo", "answer-echo", "500-echo"],
)
def test_key_never_appears_in_argv_stdout_or_stderr(api: FakeApi, responder: Responder) -> None:
    api.respond = responder
    run = run_cli(api, *MODEL)
    assert KEY not in " ".join(run.argv)
    assert KEY not in run.stdout
    assert KEY not in run.stderr
    assert api.requests[0].headers["Authorization"] == f"Bearer {KEY}"  # it was sent, only never shown


def test_echoed_key_is_replaced_by_a_marker(api: FakeApi) -> None:
    api.respond = send_json(401, error_body(401, f"No auth credentials found for key {KEY}"))
    run = run_cli(api, *MODEL)
    assert run.result["result"] == (
        "invalid API key (HTTP 401): the key in OPENROUTER_API_KEY was rejected: "
        "No auth credentials found for key [REDACTED]"
    )


# ---------------------------------------------------------------------------------------------------------
# HTTP errors


def test_401_is_an_invalid_key(api: FakeApi) -> None:
    api.respond = send_json(401, error_body(401, "User not found."))
    run = run_cli(api, *MODEL)
    assert_failed(
        run,
        "invalid API key (HTTP 401): the key in OPENROUTER_API_KEY was rejected: User not found.",
        status=401,
    )


def test_403_is_an_invalid_key(api: FakeApi) -> None:
    api.respond = send_json(403, error_body(403, "Key disabled"))
    run = run_cli(api, *MODEL, "--api-key-env", "ACCOUNT_2_KEY", key=None, env={"ACCOUNT_2_KEY": KEY})
    assert_failed(
        run, "invalid API key (HTTP 403): the key in ACCOUNT_2_KEY was rejected: Key disabled", status=403
    )


def test_402_is_insufficient_credits(api: FakeApi) -> None:
    api.respond = send_json(
        402, error_body(402, "Insufficient credits. Add more using https://x.invalid/credits")
    )
    run = run_cli(api, *MODEL)
    assert_failed(
        run,
        "insufficient credits (HTTP 402): Insufficient credits. Add more using https://x.invalid/credits",
        status=402,
    )


def test_400_context_length_openai_wording(api: FakeApi) -> None:
    message = (
        "This model's maximum context length is 8192 tokens. However, you requested 8977 tokens "
        "(8977 in your prompt; 0 for the completion). Please reduce your prompt; or completion length."
    )
    api.respond = send_json(400, error_body(400, message))
    run = run_cli(api, *MODEL)
    assert_failed(run, f"context length exceeded (HTTP 400): {message}", status=400)


def test_400_context_length_from_the_upstream_provider_raw_error(api: FakeApi) -> None:
    raw = json.dumps({"error": {"code": "context_length_exceeded", "message": "Input too large"}})
    api.respond = send_json(
        400, error_body(400, "Provider returned error", {"raw": raw, "provider_name": "OpenAI"})
    )
    run = run_cli(api, *MODEL)
    assert_failed(
        run,
        "context length exceeded (HTTP 400): Provider returned error (OpenAI: "
        '{"error": {"code": "context_length_exceeded", "message": "Input too large"}})',
        status=400,
    )


def test_400_other_is_a_bad_request(api: FakeApi) -> None:
    api.respond = send_json(400, error_body(400, "anthropic/claude-x is not a valid model ID"))
    run = run_cli(api, *MODEL)
    assert_failed(run, "bad request (HTTP 400): anthropic/claude-x is not a valid model ID", status=400)


def test_500_with_json_error(api: FakeApi) -> None:
    api.respond = send_json(500, error_body(500, "Internal Server Error"))
    run = run_cli(api, *MODEL)
    assert_failed(run, "server error (HTTP 500): Internal Server Error", status=500)


def test_502_with_an_html_body_quotes_the_text(api: FakeApi) -> None:
    api.respond = send_raw(502, b"<html>\n  <h1>Bad gateway</h1>\n</html>", "text/html")
    run = run_cli(api, *MODEL)
    assert_failed(run, "server error (HTTP 502): <html> <h1>Bad gateway</h1> </html>", status=502)


def test_503_with_an_empty_body_uses_the_status_phrase(api: FakeApi) -> None:
    api.respond = send_raw(503, b"", "text/plain")
    run = run_cli(api, *MODEL)
    assert_failed(run, "server error (HTTP 503): Service Unavailable", status=503)


def test_error_reported_inside_a_200_reply(api: FakeApi) -> None:
    # OpenRouter: once the model has started, errors come back as HTTP 200 with an error body.
    api.respond = send_json(200, error_body(502, "Upstream model crashed mid-answer"))
    run = run_cli(api, *MODEL)
    assert_failed(run, "server error (HTTP 502): Upstream model crashed mid-answer", status=502)


def test_finish_reason_error_is_an_error(api: FakeApi) -> None:
    body = completion(text="partial")
    body["choices"][0]["finish_reason"] = "error"
    api.respond = send_json(200, body)
    run = run_cli(api, *MODEL)
    assert run.code == 1
    assert run.result["is_error"] is True
    assert run.result["result"].startswith("the model stopped with an error: {")


def test_redirect_is_not_followed(api: FakeApi) -> None:
    api.respond = send_raw(302, b"", "text/plain", {"Location": "http://127.0.0.1:9/elsewhere"})
    run = run_cli(api, *MODEL)
    assert_failed(
        run,
        "unexpected redirect (HTTP 302) to http://127.0.0.1:9/elsewhere: not followed, "
        "so the API key goes nowhere else; check --base-url",
        status=302,
    )
    assert len(api.requests) == 1


# ---------------------------------------------------------------------------------------------------------
# Rate limits


def test_429_with_retry_after_seconds(api: FakeApi) -> None:
    api.respond = send_json(
        429, error_body(429, "Rate limit exceeded: free-models-per-minute"), {"Retry-After": "30"}
    )
    before = time.time()
    run = run_cli(api, *MODEL)
    after = time.time()

    assert run.code == 1
    assert run.types() == ["system", "rate_limit_event", "result"]
    event = stable(run.events[1])
    resets_at = event["rate_limit_info"]["resetsAt"]
    assert event == {
        "type": "rate_limit_event",
        "rate_limit_info": {"status": "rejected", "resetsAt": resets_at},
    }
    assert int(before) + 30 <= resets_at <= int(after) + 31
    assert stable(run.result) == error_result(
        "rate limit exceeded (HTTP 429): Rate limit exceeded: free-models-per-minute; "
        f"resets at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(resets_at))}",
        status=429,
    )


def test_429_with_retry_after_http_date(api: FakeApi) -> None:
    reset = int(time.time()) + 3600
    api.respond = send_json(
        429,
        error_body(429, "Rate limit exceeded"),
        {"Retry-After": email.utils.formatdate(reset, usegmt=True)},
    )
    run = run_cli(api, *MODEL)
    assert run.code == 1
    assert [stable(e) for e in run.events] == [
        init_event(),
        {"type": "rate_limit_event", "rate_limit_info": {"status": "rejected", "resetsAt": reset}},
        error_result(
            "rate limit exceeded (HTTP 429): Rate limit exceeded; "
            f"resets at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(reset))}",
            status=429,
        ),
    ]


def test_429_with_x_ratelimit_reset_in_epoch_ms(api: FakeApi) -> None:
    api.respond = send_json(
        429, error_body(429, "Rate limit exceeded"), {"X-RateLimit-Reset": "1741305600000"}
    )
    run = run_cli(api, *MODEL)
    assert run.events[1]["rate_limit_info"] == {"status": "rejected", "resetsAt": 1741305600}
    assert (
        run.result["result"]
        == "rate limit exceeded (HTTP 429): Rate limit exceeded; resets at 2025-03-07T00:00:00Z"
    )


def test_429_with_the_reset_only_in_error_metadata(api: FakeApi) -> None:
    # OpenRouter's free-model daily limit: the headers are repeated inside error.metadata.headers.
    metadata = {
        "headers": {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1741305600000",
        }
    }
    api.respond = send_json(429, error_body(429, "Rate limit exceeded: free-models-per-day", metadata))
    run = run_cli(api, *MODEL)
    assert run.events[1]["rate_limit_info"] == {"status": "rejected", "resetsAt": 1741305600}


def test_429_without_any_reset_still_announces_the_rejection(api: FakeApi) -> None:
    api.respond = send_json(429, error_body("429", "Rate limit exceeded"))
    run = run_cli(api, *MODEL)
    assert run.code == 1
    assert [stable(e) for e in run.events] == [
        init_event(),
        {"type": "rate_limit_event", "rate_limit_info": {"status": "rejected"}},
        error_result("rate limit exceeded (HTTP 429): Rate limit exceeded", status=429),
    ]


def test_429_inside_a_200_reply_is_a_rate_limit(api: FakeApi) -> None:
    api.respond = send_json(200, error_body("429", "Rate limit exceeded upstream"), {"Retry-After": "5"})
    run = run_cli(api, *MODEL)
    assert run.types() == ["system", "rate_limit_event", "result"]
    assert run.result["result"].startswith(
        "rate limit exceeded (HTTP 429): Rate limit exceeded upstream; resets at "
    )


def test_429_reset_is_exact_with_an_injected_clock(api: FakeApi) -> None:
    api.respond = send_json(429, error_body(429, "Rate limit exceeded"), {"Retry-After": "120"})
    out, err = io.BytesIO(), io.BytesIO()
    code = cli.run(
        ["--base-url", api.url, *MODEL],
        {"OPENROUTER_API_KEY": KEY},
        io.BytesIO(b"hello"),
        out,
        err,
        clock=lambda: FIXED_NOW,
        monotonic=lambda: 50.0,
    )
    events = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert code == 1
    assert events[1]["rate_limit_info"] == {"status": "rejected", "resetsAt": 1_800_000_120}
    assert (
        events[2]["result"]
        == "rate limit exceeded (HTTP 429): Rate limit exceeded; resets at 2027-01-15T08:02:00Z"
    )
    assert events[2]["duration_ms"] == 0  # the injected monotonic clock never moved


# ---------------------------------------------------------------------------------------------------------
# Broken transports and bodies


def test_server_closes_the_connection_without_a_reply(api: FakeApi) -> None:
    def hang_up(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True  # returning without writing: the socket closes with no response

    api.respond = hang_up
    run = run_cli(api, *MODEL)
    assert_failed(
        run, f"the server closed the connection without sending a response ({api.url}/chat/completions)"
    )


def test_server_closes_the_connection_mid_body(api: FakeApi) -> None:
    def cut_short(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b'{"id": "gen-1", "choi')
        handler.close_connection = True

    api.respond = cut_short
    run = run_cli(api, *MODEL)
    assert_failed(
        run, f"the server closed the connection before the response was complete ({api.url}/chat/completions)"
    )


def test_server_that_stalls_past_the_timeout(api: FakeApi) -> None:
    def stall(handler: BaseHTTPRequestHandler) -> None:
        api.release.wait(30)  # released when the test ends

    api.respond = stall
    run = run_cli(api, *MODEL, "--timeout", "0.5")
    assert_failed(run, "request timed out after 0.5 s")


def test_connection_refused(api: FakeApi) -> None:
    run = run_cli(None, *MODEL, "--base-url", "http://127.0.0.1:9")
    assert_failed(run, "cannot connect to http://127.0.0.1:9/chat/completions: connection refused")


def test_non_json_body(api: FakeApi) -> None:
    api.respond = send_raw(200, b"<html>oops</html>", "text/html; charset=utf-8")
    run = run_cli(api, *MODEL)
    assert_failed(
        run, "response is not a JSON object (HTTP 200, text/html; charset=utf-8): <html>oops</html>"
    )


def test_json_without_choices(api: FakeApi) -> None:
    api.respond = send_json(200, {"id": "gen-1", "choices": []})
    run = run_cli(api, *MODEL)
    assert_failed(
        run, 'unexpected response: no choices[0].message in the JSON body: {"id": "gen-1", "choices": []}'
    )


# ---------------------------------------------------------------------------------------------------------
# Bad invocations


def test_missing_model_is_a_usage_error(api: FakeApi) -> None:
    run = run_cli(api)
    assert run.code == 2
    assert [stable(e) for e in run.events] == [
        error_result("bad arguments: the following arguments are required: --model")
    ]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--timeout", "0"),
            "bad arguments: argument --timeout: must be a positive number of seconds, got '0'",
        ),
        (("--max-tokens", "ten"), "bad arguments: argument --max-tokens: not an integer: 'ten'"),
        (
            ("--base-url", "ftp://example.invalid"),
            "bad arguments: --base-url must start with http:// or https://, got 'ftp://example.invalid'",
        ),
    ],
)
def test_bad_option_values(args: tuple[str, ...], message: str) -> None:
    run = run_cli(None, *MODEL, *args)
    assert run.code == 2
    assert run.result["result"] == message


# ---------------------------------------------------------------------------------------------------------
# Pure helpers, with an injected clock


@pytest.mark.parametrize(
    ("headers", "metadata", "expected"),
    [
        ({"retry-after": "30"}, {}, 1_800_000_030),
        ({"retry-after": "0.2"}, {}, 1_800_000_001),  # rounded up: never earlier than announced
        ({"retry-after": "Fri, 15 Jan 2027 08:10:00 GMT"}, {}, 1_800_000_600),
        ({"x-ratelimit-reset": "1741305600000"}, {}, 1_741_305_600),
        ({"x-ratelimit-reset": "1741305600"}, {}, 1_741_305_600),  # seconds are accepted too
        ({}, {"headers": {"X-RateLimit-Reset": "1741305600000"}}, 1_741_305_600),
        ({"retry-after": "60", "x-ratelimit-reset": "1741305600000"}, {}, 1_800_000_060),  # Retry-After first
        ({"retry-after": "soon"}, {}, None),
        ({}, {}, None),
    ],
)
def test_reset_epoch(headers: dict[str, str], metadata: dict[str, Any], expected: int | None) -> None:
    assert cli.reset_epoch(headers, metadata, FIXED_NOW) == expected


def test_every_status_handler_is_reachable_from_the_registry() -> None:
    ctx = cli.Context("OPENROUTER_API_KEY", "http://127.0.0.1:1/chat/completions", FIXED_NOW)
    messages = {
        status: cli.failure_for(cli.ApiError(status, "detail", "detail", {}), ctx).message
        for status in (301, 400, 401, 402, 403, 404, 408, 413, 429, 500, 503)
    }
    assert messages == {
        301: "unexpected redirect (HTTP 301) to (no Location header): not followed, "
        "so the API key goes nowhere else; check --base-url",
        400: "bad request (HTTP 400): detail",
        401: "invalid API key (HTTP 401): the key in OPENROUTER_API_KEY was rejected: detail",
        402: "insufficient credits (HTTP 402): detail",
        403: "invalid API key (HTTP 403): the key in OPENROUTER_API_KEY was rejected: detail",
        404: "HTTP 404 from http://127.0.0.1:1/chat/completions: detail",
        408: "request timed out on the server (HTTP 408): detail",
        413: "bad request (HTTP 413): detail",
        429: "rate limit exceeded (HTTP 429): detail",
        500: "server error (HTTP 500): detail",
        503: "server error (HTTP 503): detail",
    }


# ---------------------------------------------------------------------------------------------------------
# What adws's claude-stream-json parser makes of the output


def _parse_claude(stdout: str) -> Any:
    claude = pytest.importorskip("adws.parsers.claude")
    return claude.parse(stdout, datetime.fromtimestamp(FIXED_NOW, tz=UTC))


def test_adws_parser_reads_a_success(api: FakeApi) -> None:
    api.respond = send_json(200, completion(usage=OPENROUTER_USAGE))
    parsed = _parse_claude(run_cli(api, *MODEL).stdout)
    assert parsed.final_text == "Hello from the model."
    assert parsed.is_error is False
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens, parsed.usage.cost_usd) == (194, 2, 0.95)
    assert parsed.usage.estimated is False
    assert parsed.rate_limited is False


def test_adws_parser_reads_a_rate_limit_with_its_reset(api: FakeApi) -> None:
    api.respond = send_json(
        429, error_body(429, "Rate limit exceeded"), {"X-RateLimit-Reset": "1741305600000"}
    )
    parsed = _parse_claude(run_cli(api, *MODEL).stdout)
    assert parsed.is_error is True
    assert parsed.rate_limited is True
    assert parsed.reset_at == datetime(2025, 3, 7, tzinfo=UTC)
    assert parsed.error_message == (
        "rate limit exceeded (HTTP 429): Rate limit exceeded; resets at 2025-03-07T00:00:00Z"
    )


def test_adws_parser_reads_an_auth_failure(api: FakeApi) -> None:
    api.respond = send_json(401, error_body(401, "User not found."))
    parsed = _parse_claude(run_cli(api, *MODEL).stdout)
    assert parsed.is_error is True
    assert parsed.usage is None  # nothing reported: adws estimates and marks it so
    assert parsed.error_message == (
        "invalid API key (HTTP 401): the key in OPENROUTER_API_KEY was rejected: User not found."
    )


def test_key_with_surrounding_whitespace_is_trimmed(api: FakeApi) -> None:
    api.respond = send_json(200, completion())
    run = run_cli(api, *MODEL, key=f"  {KEY}\n")
    assert run.code == 0
    assert api.requests[0].headers["Authorization"] == f"Bearer {KEY}"
