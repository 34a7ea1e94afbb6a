"""Human output: times to the minute in the routing timezone, lines that fit the terminal.

JSON output never goes through here: it keeps exact ISO 8601 times and whole lines.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
from collections.abc import Collection, Sequence
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, TextIO

from adws.decision import Decision, Skip

if TYPE_CHECKING:
    from adws.router import Explanation


def width(stream: TextIO | None = None) -> int | None:
    """Columns to fit human output into: `COLUMNS` when set (tests set it), else the terminal's width when
    `stream` (default stdout) is a terminal; None off a terminal, where lines stay whole for grep and files."""
    stream = stream if stream is not None else sys.stdout
    if os.environ.get("COLUMNS", "").isdigit():
        return max(int(os.environ["COLUMNS"]), 20)
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):  # a replaced or closed stream
        return None
    return max(shutil.get_terminal_size().columns, 20)


def fit(text: str, columns: int | None) -> str:
    """Each line of `text` folded to `columns`: at spaces where it can, continuation lines indented four
    places past the line's own indent, so a wrapped item still reads as one. None: unchanged."""
    if columns is None:
        return text
    out: list[str] = []
    for line in text.splitlines():
        if len(line) <= columns:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip(" ")))
        more = indent + "    "
        if len(more) >= columns - 10:  # a deep indent leaves too little room: fold flush instead
            more = ""
        out.extend(textwrap.wrap(line, columns, initial_indent="", subsequent_indent=more,
                                 drop_whitespace=True, break_on_hyphens=False) or [""])
    return "\n".join(out)


def minute(moment: datetime, zone: tzinfo, now: datetime | None = None) -> str:
    """`moment` to the minute in `zone`, with the zone's abbreviation: "14:09 CET" on `now`'s day,
    "Sun 22 Nov 01:00 CET" within a week of it, else "2026-12-01 01:00 CET". Seconds are cut, not rounded:
    a time shown is never later than the real one."""
    local = moment.astimezone(zone)
    clock = local.strftime("%H:%M %Z")
    if now is None:
        return local.strftime("%Y-%m-%d ") + clock
    today = now.astimezone(zone).date()
    if local.date() == today:
        return clock
    if abs((local.date() - today).days) < 7:
        return local.strftime("%a %d %b ") + clock
    return local.strftime("%Y-%m-%d ") + clock


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = (),
          columns: int | None = None, empty: str = "-") -> list[str]:
    """Rows under labelled columns, each as wide as its widest cell; columns in `right` (indexes) are
    right-aligned (figures). Wider than `columns`, the last columns leave the table: each row is followed by
    one indented `label: value` line per moved column that has a value (not `empty`)."""
    keep = len(headers)
    while keep > 1 and columns is not None and _width(headers, rows, keep) > columns:
        keep -= 1
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers[:keep])]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells[:keep], widths, strict=True))).rstrip()

    out = [line(headers)]
    for row in rows:
        out.append(line(row))
        out += [f"    {headers[i]}: {row[i]}" for i in range(keep, len(headers)) if row[i] != empty]
    return out


def _width(headers: Sequence[str], rows: Sequence[Sequence[str]], keep: int) -> int:
    return sum(max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers[:keep])) + 2 * (keep - 1)


# -- times inside reasons ---------------------------------------------------------------------------------

# Reasons are shared with JSON, where a time is exact ISO 8601; shown to a person it is cut to the minute.
_ISO = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})")


def times_in(text: str, zone: tzinfo, now: datetime | None = None) -> str:
    """`text` with every ISO 8601 time in it written to the minute in `zone` (see `minute`)."""
    def local(match: re.Match[str]) -> str:
        return minute(datetime.fromisoformat(match.group(0).replace("Z", "+00:00")), zone, now)

    return _ISO.sub(local, text)


def skip_line(skip: Skip, zone: tzinfo, now: datetime) -> str:
    """One skipped candidate: `who: why`, and when it is back unless the reason says so already."""
    who = skip.provider + (f"/{skip.account}" if skip.account else "")
    line = f"{who}: {skip.reason}"
    if skip.until is not None and skip.until.isoformat() not in skip.reason:
        line += f" (back at {skip.until.isoformat()})"
    return times_in(line, zone, now)


# -- a decision, and its explanation ----------------------------------------------------------------------


def back_first(decision: Decision) -> Skip | None:
    """The tier-level skip that ends first: when something of an empty plan can run again (None: no tier
    comes back by itself, e.g. none is installed)."""
    timed = [skip for skip in decision.skipped if skip.account is None and skip.until is not None]
    return min(timed, key=lambda skip: skip.until or decision.now, default=None)


def decision(d: Decision) -> list[str]:
    """The answer first (where the task runs, or that nothing can and until when), then why, the rest of the
    plan and what was skipped. Times to the minute in the routing timezone (the decision's own)."""
    zone = d.now.tzinfo
    assert zone is not None  # decisions are made at aware times
    via = f'rule "{d.rule}"' if d.via == "rule" else {"override": "override", "disabled": "routing disabled",
                                                     "default": "default"}.get(d.via, d.via)
    if d.plan:
        first = d.plan[0]
        answer = f"route: {first.provider}" + (f" / {first.model}" if first.model else "") + \
            (f", account {first.account}" if first.account else "") + f"  ({via})"
    else:
        back = back_first(d)
        answer = f"route: nothing can run now ({via})"
        if back is not None and back.until is not None:
            answer += f"; {back.provider} is back first, at {back.until.isoformat()}"
        elif d.skipped:
            answer += "; no tier comes back by itself"
    lines = [times_in(answer, zone, d.now)]
    task = d.view.task_id or "(no id)"
    lines.append(f"  task {task} at {minute(d.now, zone)}")
    lines += [f"  {reason}" for reason in d.reasons]
    if d.plan:
        lines.append("plan:")
        for i, step in enumerate(d.plan, 1):
            target = step.provider + (f" / {step.model}" if step.model else "")
            accounts = f" (accounts {', '.join(step.accounts)})" if len(step.accounts) > 1 else \
                (f" (account {step.account})" if step.account else "")
            lines.append(f"  {i}. {target}{accounts} — {step.model_reason}")
    if d.skipped:
        lines.append("skipped:")
        lines += [f"  {skip_line(skip, zone, d.now)}" for skip in d.skipped]
    return lines


def explanation(e: Explanation) -> list[str]:
    """The decision, then every rule with why it did or did not match (`adws route --explain`)."""
    d = e.decision
    lines = decision(d)
    if d.via == "override":
        lines.append("rules (the override decided: shown, not applied):")
    elif e.routing_enabled:
        lines.append("rules (highest priority first):")
    else:
        lines.append("rules (routing disabled: shown, not applied):")
    for t in e.traces:
        head = f"  [{t.rule.priority:>4}] {t.rule.name}: "
        if t.status == "failed":
            lines.append(f"{head}no — {t.condition}: task has {t.actual}, rule wants {t.expected}")
        elif t.status == "matched":
            lines.append(f"{head}MATCH" + (" (first match wins)" if d.matched is t.rule else ""))
        else:
            lines.append(head + t.status)
    return lines
