#!/usr/bin/env python3
"""A stand-in for the agent CLIs adws drives: claude, copilot, cline, opencode, gemini, codex, ollama.

No real agent CLI exists on the build machines, so tests run these instead. `tests/fakes/bin/<prog>` execs
`fake_agent.py <prog> ARGS...`; put that directory first on PATH. Each program prints in its real CLI's own
output format (chosen from its arguments the way the real CLI does) and behaves as the scenario says:

  FAKE_SCENARIO_<PROG>_<ACCOUNT>   account from $ADWS_ACCOUNT, uppercased, non-alphanumerics as "_"
  FAKE_SCENARIO_<PROG>             e.g. FAKE_SCENARIO_CLAUDE
  FAKE_SCENARIO                    for every program
  (default)                        success

Scenarios: success, error_result_exit0, limit_reset, quota_exhausted, auth, context, hang, signal, flood,
garbage, lie_exit0, crash, replay (see SCENARIOS). Event shapes and exit codes follow the real CLIs (the corpus in
tests/data/real); `replay` prints a corpus sample verbatim: FAKE_REPLAY names it (a path without its suffixes,
e.g. tests/data/real/claude-stream-success-exit1), and the fake exits with the sample's code (or hangs). FAKE_NOW (epoch seconds) fixes the clock that announced reset
times are computed from. With FAKE_AGENT_LOG set, each invocation appends one JSON line to that file: prog,
argv, cwd, prompt, prompt_source (arg | file | stdin | none), account, provider, scenario, pid.

Standalone on purpose (standard library only, no adws import): it stands for a foreign program.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

SCENARIOS = (
    "success",  # final text and usage
    "error_result_exit0",  # a rate-limit error object in the program's format, yet exit 0
    "limit_reset",  # usage-limit message with a reset a couple of hours away, exit 1
    "quota_exhausted",  # weekly/monthly quota gone, reset days away, exit 1
    "auth",  # bad credentials, exit 1
    "context",  # prompt too long for the model, exit 1
    "hang",  # ignores SIGTERM/SIGINT, spawns a child that does too, sleeps forever
    "signal",  # kills itself with SIGKILL
    "flood",  # writes ~5 MB, then succeeds
    "garbage",  # binary, invalid UTF-8, exit 0
    "lie_exit0",  # exit 0 without any result
    "crash",  # Python traceback on stderr, exit 1
    "replay",  # a real output from the corpus, byte for byte, with its exit code (FAKE_REPLAY)
)
FLOOD_BYTES = 5 * 1024 * 1024
SESSION = "fake-session-0001"

# Options that take a value, per program, so that the prompt can be told from option values.
VALUE_OPTIONS = {
    "claude": {"--output-format", "--input-format", "--model", "--max-turns", "--permission-mode",
               "--allowedTools", "--allowed-tools", "--disallowedTools", "--append-system-prompt",
               "--system-prompt", "--resume", "-r", "--settings", "--add-dir", "--mcp-config",
               "--fallback-model", "--session-id"},
    "copilot": {"--model", "--output-format", "--log-level", "--add-dir", "--allow-tool", "--deny-tool",
                "--resume", "--agent", "--config-dir"},
    "gemini": {"-m", "--model", "-o", "--output-format", "--approval-mode", "--include-directories"},
    "opencode": {"-m", "--model", "--format", "-s", "--session", "--agent", "--dir", "--title", "--variant",
                 "--port", "-f", "--file"},
    "cline": {"-m", "--model", "--mode", "-F", "--output-format", "--config", "--cwd", "--auto-approve",
              "-t", "--timeout"},
    "ollama": {"--format", "--keepalive", "--think"},
    "codex": {"-m", "--model", "-s", "--sandbox", "-C", "--cd", "-c", "--config", "-p", "--profile",
              "--output-last-message", "-o", "--color"},
}
PROMPT_OPTIONS = {"copilot": {"-p", "--prompt"}, "gemini": {"-p", "--prompt"}}
FILE_OPTIONS = {"opencode": {"-f", "--file"}}


# --- invocation -------------------------------------------------------------------------------------------


def scenario_for(prog: str, env: dict[str, str]) -> str:
    account = re.sub(r"[^A-Za-z0-9]", "_", env.get("ADWS_ACCOUNT", "")).upper()
    keys = [f"FAKE_SCENARIO_{prog.upper()}_{account}"] if account else []
    keys += [f"FAKE_SCENARIO_{prog.upper()}", "FAKE_SCENARIO"]
    return next((env[key] for key in keys if env.get(key)), "success")


def option_value(args: list[str], *names: str) -> str | None:
    for index, arg in enumerate(args):
        for name in names:
            if arg == name and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def positionals(prog: str, args: list[str]) -> list[str]:
    takes_value = VALUE_OPTIONS[prog] | PROMPT_OPTIONS.get(prog, set())
    found, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in takes_value:
            skip = True
        elif not arg.startswith("-") or arg == "-":
            found.append(arg)
    if prog in {"opencode", "ollama"} and found[:1] == ["run"]:
        found = found[1:]
    if prog == "codex" and found[:1] == ["exec"]:
        found = found[1:]
    if prog == "ollama":
        found = found[1:]  # the model
    return found


def read_file_prompt(path: str) -> str | None:
    path = path[1:] if path.startswith("@") else path
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def read_stdin() -> str | None:
    """Stdin when something was piped in; a terminal, or a pipe nobody writes to, is not a prompt."""
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return None
        ready, _, _ = select.select([sys.stdin], [], [], 1.0)
        if not ready:
            return None
        data = sys.stdin.buffer.read()
    except (OSError, ValueError):
        return None
    return data.decode("utf-8", errors="replace") if data else None


def find_prompt(prog: str, args: list[str]) -> tuple[str | None, str]:
    """The prompt and how it came: an argument, a file (named by an option, `@path` or a path), or stdin."""
    file_arg = option_value(args, *FILE_OPTIONS.get(prog, ()))
    if file_arg is not None and (text := read_file_prompt(file_arg)) is not None:
        return text, "file"
    value = option_value(args, *PROMPT_OPTIONS.get(prog, ()))
    candidates = ([value] if value else []) + positionals(prog, args)
    for candidate in candidates:
        looks_like_path = candidate.startswith("@") or os.sep in candidate
        if looks_like_path and os.path.isfile(candidate.lstrip("@")):
            text = read_file_prompt(candidate)
            if text is not None:
                return text, "file"
    if candidates:
        return " ".join(candidates), "arg"
    piped = read_stdin()
    return (piped, "stdin") if piped is not None else (None, "none")


def log_invocation(prog: str, args: list[str], prompt: str | None, source: str, scenario: str) -> None:
    path = os.environ.get("FAKE_AGENT_LOG")
    if not path:
        return
    entry = {
        "prog": prog, "argv": [prog, *args], "cwd": os.getcwd(), "prompt": prompt, "prompt_source": source,
        "account": os.environ.get("ADWS_ACCOUNT"), "provider": os.environ.get("ADWS_PROVIDER"),
        "scenario": scenario, "pid": os.getpid(),
    }
    line = (json.dumps(entry) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)  # one write on an O_APPEND file: lines of concurrent fakes do not interleave
    finally:
        os.close(fd)


# --- output formats ---------------------------------------------------------------------------------------


def clock() -> datetime:
    fixed = os.environ.get("FAKE_NOW")
    return datetime.fromtimestamp(float(fixed), UTC) if fixed else datetime.now(UTC)


def hour_12(moment: datetime) -> str:
    return moment.strftime("%I%p").lstrip("0").lower()  # "4pm"


class Failure:
    """What went wrong, with the reset moments a limit message can quote."""

    def __init__(self, kind: str, now: datetime) -> None:
        self.kind = kind  # rate | quota | auth | context
        # A rate limit lifts at the next full hour at least two hours out: quoted as "4pm" it stays near.
        near = (now + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
        self.reset = near if kind == "rate" else now + timedelta(days=3)
        self.epoch = int(self.reset.timestamp())
        self.iso = self.reset.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.seconds = int((self.reset - now).total_seconds())
        self.status = {"rate": 429, "quota": 429, "auth": 401, "context": 400}[kind]

    def words(self, prog: str, scenario: str) -> str:
        messages = {
            "claude": {
                "rate": f"You've hit your limit · resets {hour_12(self.reset)} (UTC)",
                "quota": f"You've hit your weekly limit · resets {self.reset:%b} {self.reset.day}, "
                f"{hour_12(self.reset)} (UTC)",
                "auth": "Invalid API key · Please run /login",
                "context": "Prompt is too long",
            },
            "copilot": {
                "rate": "Sorry, you've hit a rate limit that restricts the number of Copilot model requests "
                f"you can make within a specific time period. Please try again in {self.seconds // 60} minutes.",
                "quota": "You have no quota",  # github/copilot-cli#3431: a 402 that announces no reset
                "auth": "No authentication information found.",  # github/copilot-cli#3746
                "context": "prompt token count of 300000 exceeds the limit of 264000",
            },
            "gemini": {
                "rate": "You have exhausted your capacity on this model. Your quota will reset after "
                f"{self.seconds // 3600}h{self.seconds % 3600 // 60}m0s.",
                # TerminalQuotaError (a daily or zero limit): Google's text, no reset announced.
                "quota": "You exceeded your current quota, please check your plan and billing details.",
                "auth": "Please set an Auth method in your settings.json or specify one of the following "
                "environment variables before running: GEMINI_API_KEY, GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_GCA",
                "context": "The input token count (1200000) exceeds the maximum number of tokens allowed "
                "(1048576).",
            },
            "opencode": {
                "rate": f"Rate limit exceeded. Please try again in {self.seconds // 60} minutes.",
                # OpenAI's insufficient_quota 429, which OpenCode does not retry (anomalyco/opencode message-v2.ts)
                "quota": "You exceeded your current quota, please check your plan and billing details.",
                "auth": "invalid x-api-key",
                "context": "prompt is too long: 212000 tokens > 200000 maximum",
            },
            "cline": {
                # cline/cline apps/cli/src/utils/cline-pass-errors.ts and sdk llms errors.test.ts
                "rate": f"Error: You have reached your 5-hour Clinepass limit. The limit resets in "
                f"{max(1, self.seconds // 3600)}h, please try again later.",
                "quota": "Error: Error 429: Daily free limit reached on model deepseek/deepseek-v4-flash. Try again in "
                "23h 59m",
                "auth": "Unauthorized: Please make sure you're using the latest version of Cline and "
                "re-authenticate your Cline account.",
                "context": "The conversation exceeds the model's context window. Compact the conversation, start a new "
                "session, or switch to a model with a larger context window. (provider reported: prompt is too "
                "long: 212000 tokens > 200000 maximum)",
            },
            "codex": {  # openai/codex codex-rs/core/src/error.rs
                "rate": "You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing), visit "
                "https://chatgpt.com/codex/settings/usage to purchase more credits or try again at "
                f"{self.reset:%-I:%M %p}.",
                # A weekly limit: the reset is days away, so codex prints it with its date.
                "quota": "You've hit your usage limit. To get more access now, send a request to your admin or "
                f"try again at {self.reset:%b} {self.reset.day}th, {self.reset:%Y} {self.reset:%-I:%M %p}.",
                "auth": "Your access token could not be refreshed because your refresh token has expired. Please "
                "log out and sign in again.",
                "context": "Codex ran out of room in the model's context window. Start a new conversation or "
                "clear earlier history before retrying.",
            },
            "ollama": {
                # ollama's StatusError for its cloud models' limits (continuedev/continue#11444): no reset announced
                "rate": "Error: 429 Too Many Requests: you (user) have reached your session usage limit, upgrade "
                "for higher limits: https://ollama.com/upgrade",
                "quota": "Error: 429 Too Many Requests: you (user) have reached your weekly usage limit, upgrade "
                "for higher limits: https://ollama.com/upgrade",
                "auth": "Error: unauthorized: please run 'ollama signin'",
                "context": "",  # never printed: see Ollama.failure
            },
        }
        if prog == "claude" and scenario == "error_result_exit0":
            return f"Claude AI usage limit reached|{self.epoch}"  # the older, machine-readable wording
        return messages[prog][self.kind]


def emit(line: object) -> None:
    # Compact and unescaped, as the real CLIs print it.
    text = line if isinstance(line, str) else json.dumps(line, separators=(",", ":"), ensure_ascii=False)
    sys.stdout.write(text)
    sys.stdout.write("\n")


class Program:
    """One CLI in one output mode. Subclasses print what the real one prints."""

    def __init__(self, prog: str, args: list[str], prompt: str) -> None:
        self.prog, self.args, self.prompt = prog, args, prompt
        self.model = option_value(args, "--model", "-m") or "fake-model"

    def answer(self) -> str:
        return f"Done: {self.prog} handled a {len(self.prompt)}-character prompt."

    def start(self) -> None:
        """Lines a run prints before any work (nothing, in plain text)."""

    def progress(self, index: int, filler: str) -> None:
        emit(f"step {index}: {filler}")

    def success(self) -> None:
        emit(self.answer())

    def failure(self, failure: Failure, message: str, exit_code: int) -> int:
        sys.stderr.write(message + "\n")
        return exit_code


class ClaudeStream(Program):
    def start(self) -> None:
        emit({"type": "system", "subtype": "init", "session_id": SESSION, "cwd": os.getcwd(),
              "model": self.model, "tools": ["Bash", "Edit", "Read"], "permissionMode": "default",
              "apiKeySource": "none"})

    def progress(self, index: int, filler: str) -> None:
        emit({"type": "assistant", "session_id": SESSION, "message": {
            "id": f"msg_{index:06d}", "type": "message", "role": "assistant", "model": self.model,
            "content": [{"type": "text", "text": filler}],
            "usage": {"input_tokens": 10, "output_tokens": 20}}})

    def result(self, **fields: object) -> None:
        emit({"type": "result", "subtype": "success", "duration_ms": 1234, "num_turns": 1,
              "session_id": SESSION, **fields})

    def success(self) -> None:
        self.progress(999999, self.answer())
        emit({"type": "rate_limit_event", "rate_limit_info": {"status": "allowed", "resetsAt": 1893456000,
              "rateLimitType": "five_hour", "isUsingOverage": False}})
        self.result(is_error=False, result=self.answer(), total_cost_usd=0.0123,
                    usage={"input_tokens": 12, "cache_creation_input_tokens": 300,
                           "cache_read_input_tokens": 4000, "output_tokens": 56})

    def failure(self, failure: Failure, message: str, exit_code: int) -> int:
        if failure.kind in {"rate", "quota"}:
            window = "five_hour" if failure.kind == "rate" else "seven_day"
            emit({"type": "rate_limit_event", "rate_limit_info": {"status": "rejected",
                  "resetsAt": failure.epoch, "rateLimitType": window, "isUsingOverage": False}})
        error = {"rate": "rate_limit", "quota": "rate_limit", "auth": "authentication_failed",
                 "context": "invalid_request"}[failure.kind]
        emit({"type": "assistant", "session_id": SESSION, "error": error, "message": {
            "id": "msg_synthetic", "model": "<synthetic>", "role": "assistant",
            "content": [{"type": "text", "text": message}]}})
        reason = "prompt_too_long" if failure.kind == "context" else "api_error"
        self.result(is_error=True, result=message, api_error_status=failure.status, terminal_reason=reason,
                    total_cost_usd=0, usage={"input_tokens": 0, "output_tokens": 0})
        return exit_code


class ClaudeJson(ClaudeStream):
    """`--output-format json`: only the final result object."""

    def start(self) -> None:
        pass

    def progress(self, index: int, filler: str) -> None:
        emit(f"[debug] {filler}")  # noise that is not JSON: the parser must skip it

    def success(self) -> None:
        self.result(is_error=False, result=self.answer(), total_cost_usd=0.0123,
                    usage={"input_tokens": 12, "cache_read_input_tokens": 4000, "output_tokens": 56})

    def failure(self, failure: Failure, message: str, exit_code: int) -> int:
        self.result(is_error=True, result=message, api_error_status=failure.status, total_cost_usd=0)
        return exit_code


class Copilot(Program):
    counter = 0

    def event(self, kind: str, data: dict[str, object], **extra: object) -> None:
        Copilot.counter += 1
        emit({"type": kind, "data": data, "id": f"evt-{Copilot.counter}",
              "timestamp": "2026-01-01T00:00:00.000Z", "parentId": None, **extra})

    def start(self) -> None:
        self.event("assistant.turn_start", {"turnId": "0"})

    def progress(self, index: int, filler: str) -> None:
        self.event("assistant.message_delta", {"messageId": "m-1", "deltaContent": filler}, ephemeral=True)

    def success(self) -> None:
        self.event("assistant.message", {"messageId": "m-1", "content": self.answer(), "toolRequests": [],
                                         "outputTokens": 42})
        self.event("assistant.usage", {"model": self.model, "inputTokens": 5000, "outputTokens": 42,
                                       "cacheReadTokens": 4000}, ephemeral=True)
        self.event("assistant.turn_end", {"turnId": "0"})
        emit({"type": "result", "exitCode": 0, "usage": {"premiumRequests": 1, "totalApiDurationMs": 900,
              "sessionDurationMs": 1500}})

    def failure(self, failure: Failure, message: str, exit_code: int) -> int:
        if failure.kind == "auth":  # checked before the event stream opens: plain text on stderr
            sys.stderr.write(f"Error: {message}\n")
            return exit_code
        # errorType/errorCode as github/copilot-sdk's ErrorData names them; a rejected call costs no request.
        kind, code, status = {"rate": ("rate_limit", "user_global_rate_limited", 429),
                              "quota": ("quota", "quota_exceeded", 402),
                              "context": ("context_limit", "model_max_prompt_tokens_exceeded", 400)}[failure.kind]
        self.event("session.error", {"errorType": kind, "message": message, "errorCode": code, "statusCode": status})
        emit({"type": "result", "exitCode": exit_code, "usage": {"premiumRequests": 0}})
        return exit_code


class GeminiJson(Program):
    def progress(self, index: int, filler: str) -> None:
        sys.stdout.write(f"tool output {index}: {filler}\n")

    def stats(self) -> dict[str, object]:
        return {"models": {self.model: {"api": {"totalRequests": 1, "totalErrors": 0, "totalLatencyMs": 800},
                "tokens": {"input": 1000, "prompt": 5000, "candidates": 40, "total": 5052, "cached": 4000,
                           "thoughts": 12, "tool": 0}}},
                "tools": {"totalCalls": 0, "totalSuccess": 0, "totalFail": 0}}

    def success(self) -> None:
        emit(json.dumps({"session_id": SESSION, "response": self.answer(), "stats": self.stats()}, indent=2))

    def failure(self, failure: Failure, message: str, exit_code: int) -> int:
        kind = {"rate": "RetryableQuotaError", "quota": "TerminalQuotaError", "auth": "Error",
                "context": "Error"}[failure.kind]
        code = 41 if failure.kind == "auth" else failure.status  # FatalAuthenticationError's exit code
        error = json.dumps({"session_id": SESSION, "error": {"type": kind, "message": message,
                            "code": code}}, indent=2)
        if exit_code == 0:  # the "exit 0 anyway" case: the error object where a result would be
            emit(error)
            return 0
        # The real CLI prints a JSON-mode failure on stderr and exits with the error's status (a shell sees
        # 429 as 173, 400 as 144); a missing login is FatalAuthenticationError, exit 41.
        sys.stderr.write(error + "\n")
        return 41 if failure.kind == "auth" else failure.status & 255


class GeminiStream(Program):
    def event(self, kind: str, **fields: object) -> None:
        emit({"type": kind, "timestamp": "2026-01-01T00:00:00.000Z", **fields})

    def start(self) -> None:
        self.event("init", session_id=SESSION, model=self.model)

    def progress(self, index: int, filler: str) -> None:
        self.event("tool_result", tool_id=f"t{index}", status="success", output=filler)

    def success(self) -> None:
        self.event("message", role="assistant", content=self.answer(), delta=True)
        self.event("result", status="success", stats={"total_tokens": 5052, "input_tokens": 5000,
                   "output_tokens": 52, "cached": 4000, "input": 1000, "duration_ms": 900, "tool_calls": 0})

    def failure(self, failure: Failure, message: str, exit_code: int) -> int:
        self.event("error", severity="error", message=message)
        self.event("result", status="error", error={"type": "ApiError", "message": message},
                   stats={"total_tokens": 0, "input_tokens": 0, "output_tokens": 0, "cached": 0, "input": 0,
                          "duration_ms": 100, "tool_calls": 0})
        return exit_code


class OpenCode(Program):
    def event(self, kind: str, **fields: object) -> None:
        emit({"type": kind, "timestamp": 1767036059338, "sessionID": "ses_fake", **fields})

    def start(self) -> None:
        self.event("step_start", part={"id": "prt_1", "messageID": "msg_1", "sessionID": "ses_fake",
                                       "type": "step-start"})

    def progress(self, index: int, filler: str) -> None:
        self.event("tool_use", part={"id": f"prt_t{index}", "messageID": "msg_1", "type": "tool",
                   "tool": "bash", "state": {"status": "completed", "output": filler}})

    def success(self) -> None:
        self.event("text", part={"id": "prt_2", "messageID": "msg_2", "type": "text", "text": self.answer()})
        self.event("step_finish", part={"id": "prt_3", "messageID": "msg_2", "type": "step-finish",
                   "reason": "stop", "cost": 0.004,
                   "tokens": {"input": 1000, "output": 40, "reasoning": 2, "cache": {"read": 4000, "write": 0}}})

    def failure(self, failure: Failure, message: str, exit_code: int) -> int:
        name = "ProviderAuthError" if failure.kind == "auth" else "APIError"
        self.event("error", error={"name": name, "data": {"message": message, "statusCode": failure.status,
                                                          "isRetryable": failure.kind == "rate"}})
        return exit_code


class Cline(Program):
    def event(self, kind: str, **fields: object) -> None:
        emit({"ts": "2026-01-01T00:00:00.000Z", "type": kind, **fields})

    def start(self) -> None:
        self.event("hook_event", hookEventName="agent_start", agentId="agent_1", taskId="conv_1")

    def progress(self, index: int, filler: str) -> None:
        self.event("agent_event", event={"type": "content_start", "contentType": "text", "text": filler})

    def success(self) -> None:
        self.event("agent_event", event={"type": "usage", "inputTokens": 1000, "outputTokens": 40, "cost": 0.01})
        self.event("agent_event", event={"type": "done", "reason": "completed", "text": self.answer()})
        self.event("run_result", finishReason="completed", text=self.answer(), usage={
            "inputTokens": 1000, "outputTokens": 40, "cacheReadTokens": 4000, "cacheWriteTokens": 0,
            "totalCost": 0.01})

    def failure(self, failure: Failure, message: str, exit_code: int) -> int:
        event: dict[str, object] = {"type": "error", "error": {"name": "Error", "message": message},
                                    "recoverable": False, "iteration": 1}
        if failure.kind == "context":
            event["errorClass"] = "context_window_exceeded"
        self.event("agent_event", event=event)
        self.event("run_result", finishReason="error", text=message, usage={"inputTokens": 0, "outputTokens": 0})
        sys.stderr.write(json.dumps({"ts": "2026-01-01T00:00:00.300Z", "type": "error", "message": message}) + "\n")
        return exit_code


class ClineLegacy(Program):
    """Cline 1.x `--output-format json`: say/ask messages."""

    def progress(self, index: int, filler: str) -> None:
        emit({"type": "say", "say": "text", "text": filler, "partial": True})

    def success(self) -> None:
        usage = {"request": "...", "tokensIn": 1000, "tokensOut": 40, "cacheReads": 4000, "cacheWrites": 0,
                 "cost": 0.01}
        emit({"type": "say", "say": "api_req_started", "text": json.dumps(usage)})
        emit({"type": "say", "say": "completion_result", "text": self.answer(), "partial": False})

    def failure(self, failure: Failure, message: str, exit_code: int) -> int:
        emit({"type": "ask", "ask": "api_req_failed", "text": message})
        return exit_code


class Codex(Program):
    """`codex exec --json`: ThreadEvents as openai/codex codex-rs/exec/src/exec_events.rs defines them."""

    def start(self) -> None:
        emit({"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"})
        emit({"type": "turn.started"})

    def progress(self, index: int, filler: str) -> None:
        emit({"type": "item.completed", "item": {"id": f"item_{index}", "type": "reasoning", "text": filler}})

    def success(self) -> None:
        emit({"type": "item.completed", "item": {"id": "item_99", "type": "agent_message", "text": self.answer()}})
        emit({"type": "turn.completed", "usage": {"input_tokens": 5000, "cached_input_tokens": 4000,
                                                  "output_tokens": 42}})

    def failure(self, failure: Failure, message: str, exit_code: int) -> int:
        emit({"type": "error", "message": message})
        emit({"type": "turn.failed", "error": {"message": message}})
        return 1  # codex exec exits 1 after a failed turn, whatever the cause


class Ollama(Program):
    def failure(self, failure: Failure, message: str, exit_code: int) -> int:
        if failure.kind == "context":  # `ollama run` truncates an over-long prompt silently and answers
            self.success()  # (ollama/ollama#8099: the warning is only in the server's log)
            return 0
        sys.stderr.write(message + "\n")  # ollama has no error object: the message goes to stderr
        return exit_code


def program_for(prog: str, args: list[str], prompt: str) -> Program:
    fmt = option_value(args, "--output-format", "-o", "--format", "-F")
    if prog == "claude":
        kind = {"stream-json": ClaudeStream, "json": ClaudeJson}.get(fmt or "", Program)
    elif prog == "copilot":
        kind = Copilot if fmt == "json" else Program
    elif prog == "gemini":
        kind = {"json": GeminiJson, "stream-json": GeminiStream}.get(fmt or "", Program)
    elif prog == "opencode":
        kind = OpenCode if fmt == "json" else Program
    elif prog == "cline":
        kind = Cline if "--json" in args else ClineLegacy if fmt == "json" else Program
    elif prog == "codex":
        kind = Codex if "--json" in args else Program
    else:
        kind = Ollama
    return kind(prog, args, prompt)


# --- scenarios --------------------------------------------------------------------------------------------

FAILURES = {"error_result_exit0": ("rate", 0), "limit_reset": ("rate", 1), "quota_exhausted": ("quota", 1),
            "auth": ("auth", 1), "context": ("context", 1)}


def hang() -> None:
    """Ignore the polite signals, leave a child behind that ignores them too, and never finish."""
    for polite in (signal.SIGTERM, signal.SIGINT):
        signal.signal(polite, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "time.sleep(10**6)\n")])
    sys.stderr.write(f"fake agent: working (child pid {child.pid})\n")
    sys.stderr.flush()
    emit("thinking...")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


def flood(program: Program) -> None:
    filler = "lorem ipsum dolor sit amet " * 40  # ~1 KB per line
    written, index = 0, 0
    program.start()
    while written < FLOOD_BYTES:
        program.progress(index, filler)
        written += len(filler) + 64
        index += 1
    program.success()


def garbage() -> None:
    chunk = bytes(range(0x80, 0x100)) + b"\xff\xfe\x00\xc3\x28\xa0\xa1\xe2\x28\xa1"
    sys.stdout.flush()
    sys.stdout.buffer.write(chunk * 32)
    sys.stdout.buffer.flush()


def replay(sample: str) -> int:
    """Print a corpus sample as its CLI printed it and exit with its code; `hang` never exits."""
    outputs = [f"{sample}.stdout.{ext}" for ext in ("jsonl", "json", "txt")]
    for path in outputs:
        if os.path.exists(path):
            with open(path, "rb") as out:
                sys.stdout.buffer.write(out.read())
    sys.stdout.flush()
    if os.path.exists(f"{sample}.stderr.txt"):
        with open(f"{sample}.stderr.txt", "rb") as err:
            sys.stderr.buffer.write(err.read())
    sys.stderr.flush()
    with open(f"{sample}.exit") as code_file:
        code = code_file.read().strip()
    if code == "hang":
        while True:
            time.sleep(3600)
    return int(code)


def run(prog: str, args: list[str]) -> int:
    scenario = scenario_for(prog, dict(os.environ))
    prompt, source = find_prompt(prog, args)
    log_invocation(prog, args, prompt, source, scenario)
    if scenario not in SCENARIOS:
        sys.stderr.write(f"fake_agent: unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}\n")
        return 2
    if scenario == "replay":
        return replay(os.environ["FAKE_REPLAY"])
    program = program_for(prog, args, prompt or "")
    if scenario == "success":
        program.start()
        program.success()
    elif scenario in FAILURES:
        kind, exit_code = FAILURES[scenario]
        failure = Failure(kind, clock())
        program.start()
        return program.failure(failure, failure.words(prog, scenario), exit_code)
    elif scenario == "hang":
        hang()
    elif scenario == "signal":
        program.start()
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    elif scenario == "flood":
        flood(program)
    elif scenario == "garbage":
        garbage()
    elif scenario == "lie_exit0":
        program.start()  # the opening lines, then nothing: no answer, no error, exit 0
    elif scenario == "crash":
        program.start()
        sys.stdout.flush()
        raise RuntimeError(f"fake {prog} crashed: unexpected state in the session loop")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.stderr.write("usage: fake_agent.py PROG [ARGS...]\n")
        sys.exit(2)
    sys.exit(run(sys.argv[1], sys.argv[2:]))
