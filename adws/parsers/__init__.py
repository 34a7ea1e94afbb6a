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
"""

from __future__ import annotations

from datetime import datetime

from adws.attempt import ParsedOutput
from adws.parsers import claude, cline, copilot, gemini, opencode, text
from adws.parsers._base import Parser
from adws.parsers.reset import find_reset_time

__all__ = ["PARSERS", "Parser", "find_reset_time", "parse_output"]

PARSERS: dict[str, Parser] = {
    "claude-stream-json": claude.parse,
    "claude-json": claude.parse,  # one result object, or (with --verbose) an array of stream messages
    "copilot-json": copilot.parse,
    "opencode-json": opencode.parse,
    "gemini-json": gemini.parse_json,
    "gemini-stream-json": gemini.parse_stream,
    "cline-json": cline.parse,
    "text": text.parse,
}


def parse_output(fmt: str, stdout: str, now: datetime) -> ParsedOutput:
    """Parse `stdout` as output format `fmt` (a key of PARSERS; config validation guarantees it)."""
    parser = PARSERS.get(fmt)
    if parser is None:
        raise ValueError(f"unknown output format {fmt!r}; expected one of: {', '.join(sorted(PARSERS))}")
    return parser(stdout, now)
