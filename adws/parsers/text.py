"""Plain text (e.g. `ollama run MODEL`): nothing structured, but reset times still count."""

from __future__ import annotations

import re
from datetime import datetime

from adws.attempt import ParsedOutput
from adws.parsers.reset import find_reset_time

_JUNK_RE = re.compile(r"[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_JUNK_SHARE = 0.3  # more than this share of undecodable/control characters is binary, not an answer


def parse(stdout: str, now: datetime) -> ParsedOutput:
    text = stdout.strip()
    junk = len(_JUNK_RE.findall(text)) / len(text) if text else 0.0
    notes = [f"{junk:.0%} of the output is undecodable or control characters"] if junk > _JUNK_SHARE else []
    return ParsedOutput(
        final_text=text or None,
        reset_at=find_reset_time(stdout, now),
        well_formed=junk <= _JUNK_SHARE,
        notes=notes,
    )
