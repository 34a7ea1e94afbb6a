"""Plain text (e.g. `ollama run MODEL`): nothing structured, but reset times in its last lines still count."""

from __future__ import annotations

import re
from datetime import datetime

from adws.attempt import ParsedOutput
from adws.parsers.reset import find_reset_time

_JUNK_RE = re.compile(r"[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_JUNK_SHARE = 0.3  # more than this share of undecodable/control characters is binary, not an answer
# The lines of stdout the classifier's patterns read: a text CLI prints its complaint last (Ollama prints it on
# stderr, which they read first), and the answer above it may discuss rate limits or HTTP 401s.
REPORT_LINES = 3


def parse(stdout: str, now: datetime) -> ParsedOutput:
    text = stdout.strip()
    junk = len(_JUNK_RE.findall(text)) / len(text) if text else 0.0
    notes = [f"{junk:.0%} of the output is undecodable or control characters"] if junk > _JUNK_SHARE else []
    report = "\n".join([line for line in text.splitlines() if line.strip()][-REPORT_LINES:])
    return ParsedOutput(
        final_text=text or None,
        reset_at=find_reset_time(report, now) if report else None,
        well_formed=junk <= _JUNK_SHARE,
        notes=notes,
        report_text=report,
    )
