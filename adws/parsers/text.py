"""Plain text (e.g. `ollama run MODEL`): nothing structured, but reset times in its last lines still count."""

from __future__ import annotations

import re
from datetime import datetime

from adws.attempt import ParsedOutput
from adws.parsers.reset import find_reset_time

_JUNK_RE = re.compile(r"[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_JUNK_SHARE = 0.3  # more than this share of undecodable/control characters is binary, not an answer
# The lines of stdout the classifier's patterns read: a text CLI prints its complaint at the end (Ollama prints it
# on stderr, which they read first), and the answer above it may discuss rate limits or HTTP 401s. But a complaint
# can be followed by a few lines: Copilot's `-p` stats footer (3-5 lines, copilot-cli#3544), a usage/help block
# (5+), a pretty-printed JSON error body, so the last dozen lines are read, as a terminal shows them.
REPORT_LINES = 12


def _shown(line: str) -> str:
    """A line as a terminal leaves it: what follows its last carriage return (a spinner's frames overwrite each
    other), or the line when nothing does."""
    parts = [part for part in line.split("\r") if part.strip()]
    return parts[-1] if parts else ""


def parse(stdout: str, now: datetime) -> ParsedOutput:
    text = stdout.strip()
    junk = len(_JUNK_RE.findall(text)) / len(text) if text else 0.0
    notes = [f"{junk:.0%} of the output is undecodable or control characters"] if junk > _JUNK_SHARE else []
    kept: list[str] = []  # the last REPORT_LINES non-blank lines, read from the end: a 256 KiB tail is not cleaned
    for line in reversed(text.split("\n")):
        line = _shown(line)
        if line.strip():
            kept.append(line)
            if len(kept) == REPORT_LINES:
                break
    report = "\n".join(reversed(kept))
    return ParsedOutput(
        final_text=text or None,
        reset_at=find_reset_time(report, now) if report else None,
        well_formed=junk <= _JUNK_SHARE,
        notes=notes,
        report_text=report,
    )
