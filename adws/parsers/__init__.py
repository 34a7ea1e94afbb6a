"""Output parsers: what each agent CLI's stdout says about an attempt, keyed by the config's `output_format`.

`PARSERS` is the registry (one module per CLI family beside this file); config validation takes the allowed
`output_format` values from its keys. Every parser is a plain function `(stdout, now) -> ParsedOutput` and
keeps these promises:

- It never raises, whatever the text (property-tested): the runner hands over whatever the child wrote.
- The text may be only the TAIL of a long output, so it can start mid-line: lines that do not parse are
  skipped. `well_formed` is False only when a JSON format yields no recognisable record at all.
- `final_text` is None exactly when the format's final-result record was not seen (Claude `result`,
  Copilot `result`, Gemini `response`/`result`, Cline `completion_result`/`run_result`, OpenCode text;
  for `text`, an empty output). The classifier reads "exit 0 and no final result" as bad output.
- Cache tokens count as input tokens: cached or not, they fill the context and count against quotas.
- `rate_limited` comes from structured signals only (a rejected rate-limit event, an HTTP 429 status).
  Limit *messages* are matched by the classifier's declared patterns, where maintainers can extend them.
- `reset_at` comes from a structured field where the format has one, else from `find_reset_time` over the
  error message (never over the agent's answer, which may talk about anything).
- `report_text` is what of stdout the classifier's patterns may read: for a JSON format the lines beside its
  records (never the records, which carry the agent's transcript and may echo the prompt) and the messages of
  its error records after the first (the first is `error_message`), for plain text its last lines; None means
  all of stdout (a JSON format none of whose records was read).
- `declared` is the class a structured field names (an error type, a terminal reason, a fatal exit code):
  the classifier reads it before any pattern over text. `requests` is the request count the CLI reports.

`EXIT_CLASSES` holds, per format, the exit codes that by themselves say what happened (Gemini CLI's fatal
errors); `read_output` applies them and the stderr fallback, and is what the manager calls.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import datetime

from adws.attempt import OutcomeClass, ParsedOutput, RunOutcome
from adws.parsers import claude, cline, codex, copilot, gemini, opencode, text
from adws.parsers._base import Parser
from adws.parsers.reset import find_reset_time

__all__ = ["EXIT_CLASSES", "PARSERS", "Parser", "find_reset_time", "parse_output", "read_output"]

PARSERS: dict[str, Parser] = {
    "claude-stream-json": claude.parse,
    "claude-json": claude.parse,  # one result object, or (with --verbose) an array of stream messages
    "copilot-json": copilot.parse,
    "opencode-json": opencode.parse,
    "gemini-json": gemini.parse_json,
    "gemini-stream-json": gemini.parse_stream,
    "cline-json": cline.parse,
    "codex-json": codex.parse,
    "text": text.parse,
}

EXIT_CLASSES: dict[str, Mapping[int, OutcomeClass]] = {
    "gemini-json": gemini.FATAL_EXIT_CLASSES,
    "gemini-stream-json": gemini.FATAL_EXIT_CLASSES,
}
# Error class names a CLI prints on stderr as its own verdict, per format; matched as whole words, the last one
# printed wins (it is the one that ended the run).
STDERR_ERROR_NAMES: dict[str, Mapping[str, OutcomeClass]] = {
    "gemini-json": gemini.STDERR_ERROR_NAMES,
    "gemini-stream-json": gemini.STDERR_ERROR_NAMES,
}
_NAME_REGEXES = {
    fmt: re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b") for fmt, names in STDERR_ERROR_NAMES.items()
}


def parse_output(fmt: str, stdout: str, now: datetime) -> ParsedOutput:
    """Parse `stdout` as output format `fmt` (a key of PARSERS; config validation guarantees it)."""
    parser = PARSERS.get(fmt)
    if parser is None:
        raise ValueError(f"unknown output format {fmt!r}; expected one of: {', '.join(sorted(PARSERS))}")
    return parser(stdout, now)


def read_output(fmt: str, outcome: RunOutcome, now: datetime) -> ParsedOutput:
    """What an attempt's output says, as format `fmt` reads it: stdout first; stderr when stdout holds no
    result and no error but stderr does (Gemini's JSON mode prints its error object there); then, when no
    field of the output already named a class, the exit codes the format declares (`EXIT_CLASSES`) and the
    error class names it prints on stderr (`STDERR_ERROR_NAMES`). Never raises."""
    parsed = parse_output(fmt, outcome.stdout_tail, now)
    if parsed.final_text is None and not parsed.is_error and outcome.stderr_tail.strip():
        on_stderr = parse_output(fmt, outcome.stderr_tail, now)
        if on_stderr.is_error or on_stderr.rate_limited or on_stderr.reset_at is not None or on_stderr.declared:
            # stderr reports; it never holds the answer
            parsed = dataclasses.replace(on_stderr, final_text=None, report_text=parsed.report_text)
    if parsed.report_text and _cut(outcome):  # the tail's first line is what is left of a longer one
        head = outcome.stdout_tail.lstrip().partition("\n")[0].strip()
        if head and parsed.report_text.startswith(head):
            parsed.report_text = parsed.report_text[len(head):].lstrip("\n")
    by_exit = EXIT_CLASSES.get(fmt, {})
    if parsed.declared is None and outcome.exit_code is not None and outcome.exit_code in by_exit:
        parsed.declared = by_exit[outcome.exit_code]
    names = _NAME_REGEXES.get(fmt)
    if names is not None and parsed.declared is None and not (parsed.is_error is False and outcome.exit_code == 0):
        found = [match.group() for match in names.finditer(outcome.stderr_tail)]
        if found:
            parsed.declared = STDERR_ERROR_NAMES[fmt][found[-1]]
    return parsed


def _cut(outcome: RunOutcome) -> bool:
    """Whether the runner kept only the end of stdout (it wrote more than its tail holds)."""
    return outcome.stdout_bytes > len(outcome.stdout_tail.encode("utf-8", "replace"))
