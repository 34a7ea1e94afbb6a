"""Human output of `adws route` for an operator at a terminal: the answer first, the detail on request.

`render_decision` leads with the decision (where it runs, by which rule), then the plan, what was skipped and
why; `render_rules` is the rule table that `--explain` adds. `fit` wraps every line to the terminal's width,
continuation lines indented under their text, so nothing runs off the right edge and nothing is cut.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterable, Mapping
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from adws.compiled import ProviderSpec
    from adws.decision import Decision
    from adws.router import Explanation

__all__ = ["fit", "render_decision", "render_rules", "terminal_width"]


def terminal_width(stream: IO[str]) -> int | None:
    """The terminal's columns when `stream` is one (COLUMNS overrides), else None: a pipe gets whole lines."""
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
    by = {"rule": f'rule "{d.rule}"', "default": "no rule matched: the default", "override": "an override",
          "disabled": "routing disabled: the default"}.get(d.via, d.rule)
    if d.plan:
        first = d.plan[0]
        where = first.provider + (f" {first.model}" if first.model else "") + \
            (f" (account {first.account})" if first.account else "")
        lines = [f"→ {where}, {by}"]
    else:
        lines = [f"→ nothing can run now ({by}): every tier of the plan was skipped"]
    if d.plan:
        from adws.verify import declared

        lines.append("plan:")
        for i, step in enumerate(d.plan, 1):
            account = f" account={step.account}" if step.account else ""
            lines.append(f"  {i}. {step.provider} model={step.model}{account} — {step.model_reason}")
            checked = declared(d, providers[step.provider]) if providers and step.provider in providers else ()
            if checked:
                lines.append(f"     then verify: {' '.join(checked)} (non-zero: verify_failed)")
    if d.skipped:
        lines.append("skipped:")
        for skip in d.skipped:
            who = skip.provider + (f"/{skip.account}" if skip.account else "")
            shown = skip.until.isoformat(timespec="minutes") if skip.until else ""
            until = f" (until {shown})" if shown and shown not in skip.reason else ""
            lines.append(f"  {who}: {skip.reason}{until}")
    lines.append(f"why (task {d.view.task_id or '(no id)'} at {d.view.local_now.isoformat(timespec='minutes')}):")
    lines += [f"  {reason}" for reason in d.reasons]
    return lines


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
