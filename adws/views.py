"""Human output for an operator at a terminal: the answer first, the detail on request, lines that fit.

`render_decision` leads with the decision (where it runs, by which rule; or that nothing can run and when the
first tier is back), then the plan, what was skipped and why; `render_rules` is the rule table that `--explain`
adds. `fit` wraps every line to the terminal's width, continuation lines indented under their text, so nothing
runs off the right edge and nothing is cut; `table` labels every column and moves the last ones under each row
when the table is wider than the terminal. Times are shown to the minute in the routing timezone (`minute`,
`times_in`); JSON output never comes through here and keeps exact ISO 8601 times.
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from adws.compiled import ProviderSpec
    from adws.decision import Decision, Skip
    from adws.router import Explanation

__all__ = ["fit", "minute", "render_decision", "render_rules", "skip_line", "table", "terminal_width", "times_in"]


def terminal_width(stream: IO[str]) -> int | None:
    """The terminal's columns when `stream` is one, else None: a pipe gets whole lines. `COLUMNS`, when set,
    is the width whatever the stream (a script or a test that wants folded output sets it)."""
    if os.environ.get("COLUMNS", "").isdigit():
        return max(int(os.environ["COLUMNS"]), 20)
    if not getattr(stream, "isatty", lambda: False)():
        return None
    return shutil.get_terminal_size().columns


def fit(lines: Iterable[str], width: int | None) -> str:
    """Join `lines`, each wrapped to `width` columns (None: as they are) with its continuation indented."""
    if width is None:
        return "\n".join(lines)
    out: list[str] = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip(" ")) + 4)
        out.extend(textwrap.wrap(line, width=max(width, len(indent) + 20), subsequent_indent=indent,
                                 break_on_hyphens=False) or [line])
    return "\n".join(out)


def render_decision(decision: Decision, providers: Mapping[str, ProviderSpec] | None = None) -> list[str]:
    """`→ claude sonnet (account work), rule "code-sonnet"` then plan, skipped and reasons.

    With `providers`, each plan step also says where its work is verified (the rule's or provider's `verify`).
    """
    d = decision
    zone = d.now.tzinfo
    assert zone is not None  # decisions are made at aware times
    by = {"rule": f'rule "{d.rule}"', "default": "no rule matched: the default", "override": "an override",
          "disabled": "routing disabled: the default"}.get(d.via, d.rule)
    if d.plan:
        first = d.plan[0]
        where = first.provider + (f" {first.model}" if first.model else "") + \
            (f" (account {first.account})" if first.account else "")
        lines = [f"→ {where}, {by}"]
    else:
        back = back_first(d)
        when = f"{back.provider} is back first, at {minute(back.until, zone, d.now)}" \
            if back is not None and back.until is not None else "every tier of the plan was skipped"
        lines = [f"→ nothing can run now ({by}): {when}", *none_installed(d.skipped)]
    if d.plan:
        from adws.verify import declared

        lines.append("plan:")
        for i, step in enumerate(d.plan, 1):
            account = f" account={step.account}" if step.account else ""
            need = f"; {step.need.describe()}" if step.need is not None else ""  # the fit test's figure
            lines.append(f"  {i}. {step.provider} model={step.model}{account} — {step.model_reason}{need}")
            checked = declared(d, providers[step.provider]) if providers and step.provider in providers else ()
            if checked:
                lines.append(f"     then verify: {' '.join(checked)} (non-zero: verify_failed)")
    if d.scores:  # tiers ordered by_score or cheapest: every component of every tier's score
        lines.append(f"tier scores (plan ordered {d.order.replace('_', ' ')}):")
        for score in d.scores:
            lines += [f"  {score.describe()}", f"    {'; '.join(score.notes)}"]
    if d.skipped:
        lines.append("skipped:")
        lines += [f"  {skip_line(skip, zone, d.now)}" for skip in d.skipped]
    lines.append(f"why (task {d.view.task_id or '(no id)'} at {minute(d.view.local_now, zone)}):")
    lines += [f"  {reason}" for reason in d.reasons]
    return lines


def none_installed(skipped: Sequence[Skip]) -> list[str]:
    """A line for a person when every tier was skipped because its program is not installed (a fresh machine, a
    first try): how to see the decision anyway and where fake agents are; else no line."""
    from adws.availability import not_installed

    if not skipped or not all(not_installed(skip.reason) for skip in skipped):
        return []
    return ["  no agent CLI of this config is installed here: `adws route --assume-available` shows the decision "
            "as if all were, and a clone of adws has fake agents to try runs with (PATH=tests/fakes/bin:$PATH)"]


def render_rules(explanation: Explanation) -> list[str]:
    """Every rule in priority order: matched, or the first condition that failed (task value, rule value)."""
    d = explanation.decision
    if d.via == "override":
        lines = ["rules (the override decided: shown, not applied):"]
    elif explanation.routing_enabled:
        lines = ["rules (highest priority first):"]
    else:
        lines = ["rules (routing disabled: shown, not applied):"]
    for t in explanation.traces:
        head = f"  [{t.rule.priority:>4}] {t.rule.name}: "
        if t.status == "failed":
            lines.append(f"{head}no — {t.condition}: task has {t.actual}, rule wants {t.expected}")
        elif t.status == "matched":
            lines.append(f"{head}MATCH" + (" (first match wins)" if d.matched is t.rule else ""))
        else:
            lines.append(head + t.status)
    return lines


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


# -- times ------------------------------------------------------------------------------------------------


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


def back_first(decision: Decision) -> Skip | None:
    """The tier-level skip that ends first: when something of an empty plan can run again (None: no tier
    comes back by itself, e.g. none is installed)."""
    timed = [skip for skip in decision.skipped if skip.account is None and skip.until is not None]
    return min(timed, key=lambda skip: skip.until or decision.now, default=None)
