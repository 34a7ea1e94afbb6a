"""`adws report --html FILE`: one self-contained HTML page of plots from the audit log and the config.

Plots (matplotlib, rendered to inline SVG; the page loads nothing from anywhere):
1. quota use per metered account over the period, as a share of the limit, with the hard block, each reset and
   the projected exhaustion (the period's burn rate so far, extended) marked, and beneath it a table per
   account: use, alert level (as `adws quota` words it), the reset and the countdown to it, projected exhaustion;
2. attempts by outcome per tier per day;
3. cost per day, by provider;
4. where tasks fell through: first tier tried → tier that finished the task (or "failed").

A small inline script checks, once the page has loaded, that every plot has a size and drawn marks, and
writes the counts (and any script error) on `<body>` as `data-plots-expected`, `data-plots-drawn` and
`data-script-errors`: a headless browser's DOM dump shows them, which is how CI checks the page.
"""

from __future__ import annotations

import html
import io
import os
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from adws.accounts import DEFAULT_ACCOUNT, build_period
from adws.compiled import CompiledConfig, QuotaSpec
from adws.dataclass_cache import dataclass, field
from adws.insight.records import Reading, attempts_of, iter_records, record_time, tokens_of
from adws.pools import governing, subjects

OUTCOME_COLOURS = {
    "success": "#2e7d32", "rate_limited": "#f9a825", "quota_exhausted": "#ef6c00", "auth": "#6a1b9a",
    "context_overflow": "#00838f", "timeout": "#5d4037", "crashed": "#c62828", "error": "#e53935",
    "bad_output": "#ad1457", "unavailable": "#757575", "verify_failed": "#283593",
}


@dataclass(slots=True)
class _Data:
    """What one pass over the log gathers for the plots."""

    # (provider, account, model or None) -> (time, tokens, requests, cost) of each attempt with usage
    usage: dict[tuple[str, str, str | None], list[tuple[datetime, int, int, float]]] = field(
        default_factory=lambda: defaultdict(list))
    outcomes: dict[str, dict[str, Counter[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Counter)))
    cost: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    moves: Counter[str] = field(default_factory=Counter)
    tasks: int = 0
    first: datetime | None = None
    last: datetime | None = None


def _gather(path: str | os.PathLike[str], since: datetime | None, reading: Reading) -> _Data:
    data = _Data()
    for record in iter_records(path, reading):
        at = record_time(record)
        if at is None or (since is not None and at < since):
            continue
        data.tasks += 1
        data.first = at if data.first is None or at < data.first else data.first
        data.last = at if data.last is None or at > data.last else data.last
        attempts = attempts_of(record)
        for attempt in attempts:
            provider = str(attempt.get("provider") or "?")
            account = str(attempt.get("account") or DEFAULT_ACCOUNT)
            try:
                when = datetime.fromisoformat(str(attempt.get("started_at"))).astimezone(UTC)
            except ValueError:
                when = at
            day = when.date().isoformat()
            if data.first is None or when < data.first:  # a task's attempts start before its record is written
                data.first = when
            data.outcomes[provider][day][str(attempt.get("outcome") or "?")] += 1
            tokens_in, tokens_out, cost = tokens_of(attempt)
            if attempt.get("usage") is not None:
                model = attempt.get("model")
                key = (provider, account, model if isinstance(model, str) else None)
                data.usage[key].append((when, tokens_in + tokens_out, 1, cost))
            data.cost[day][provider] += cost
        if attempts:
            first, last = attempts[0].get("provider"), attempts[-1].get("provider")
            if not record.get("success"):
                data.moves[f"{first} → failed"] += 1
            elif first != last:
                data.moves[f"{first} → {last}"] += 1
    return data


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)  # names a DTD on the web: not needed inline
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)  # RDF namespaces, a date
    return text.replace("<svg ", '<svg class="plot" role="img" ', 1)


def _limit_share(quota: QuotaSpec, tokens: int, requests: int, cost: float) -> float:
    shares = [tokens / quota.tokens if quota.tokens else 0.0, requests / quota.requests if quota.requests else 0.0,
              cost / quota.cost_usd if quota.cost_usd else 0.0]
    return max(shares) * 100


def _quota_series(quota: QuotaSpec, events: list[tuple[datetime, int, int, float]], begin: datetime,
                  end: datetime) -> tuple[list[datetime], list[float], list[datetime]]:
    """(times, % of the limit used, resets within the span): cumulative within each quota period, or summed
    over the trailing window for a rolling quota."""
    period = build_period(quota)
    times, shares, resets = [begin], [0.0], []
    window = timedelta(seconds=quota.window_seconds) if quota.window_seconds else None
    current = period.start(begin)
    tokens = requests = 0
    cost = 0.0
    kept: list[tuple[datetime, int, int, float]] = []
    for event in sorted(e for e in events if begin <= e[0] <= end):
        when = event[0]
        if window is not None:
            kept = [e for e in kept if e[0] > when - window] + [event]
            share = _limit_share(quota, sum(e[1] for e in kept), sum(e[2] for e in kept), sum(e[3] for e in kept))
        else:
            start = period.start(when)
            if start != current:  # a reset passed: the count starts again
                current = start
                resets.append(start)
                times.append(start)
                shares.append(0.0)
                tokens = requests = 0
                cost = 0.0
            tokens, requests, cost = tokens + event[1], requests + event[2], cost + event[3]
            share = _limit_share(quota, tokens, requests, cost)
        times.append(when)
        shares.append(share)
    times.append(end)
    shares.append(shares[-1])
    return times, shares, resets


def _quota_figure(plt: Any, config: CompiledConfig, data: _Data, begin: datetime, as_of: datetime) -> list[str]:
    """One plot per metered provider, each followed by a table: use, alert level, countdown to the reset and
    the projected exhaustion per account as of `as_of`."""
    from adws.quota import alert_level as _alert  # the wording of `adws quota`
    from adws.quota import countdown as _span

    figures = []
    for name, provider in config.providers.items():
        accounts = [(a.name, a.quota or provider.quota) for a in provider.accounts] or [(DEFAULT_ACCOUNT,
                                                                                          provider.quota)]
        # One line per metered subject: the account itself, or each pool of its quota (adws.pools.subjects).
        metered = [(acc, subject, governed, q) for acc, q in accounts
                   for subject, _, governed in subjects(q, acc) if governed is not None and governed.limited]
        if not metered:
            continue
        fig, ax = plt.subplots(figsize=(9, 3.6))
        marks: set[datetime] = set()
        hard = metered[0][2].hard_block_percent
        rows = []
        for account, subject, quota, declared in metered:
            period = build_period(quota)
            events = [e for (p, acc, model), found in data.usage.items() if p == name and acc == account
                      and governing(declared, account, model).subject == subject for e in found]
            times, shares, resets = _quota_series(quota, events, begin, as_of)
            reset = period.next_reset(as_of)
            marks.update(resets)
            if reset is not None:
                marks.add(reset)
            line = ax.step(times, shares, where="post", label=subject, linewidth=1.4)[0]
            start = resets[-1] if resets else max(period.start(as_of), begin)
            elapsed = (as_of - start).total_seconds()
            exhaustion = None
            if 0 < shares[-1] < 100 and elapsed > 0:
                # Projected exhaustion: this period's burn rate so far, extended until the limit.
                at = as_of + timedelta(seconds=(100 - shares[-1]) / (shares[-1] / elapsed))
                if reset is None or at < reset:
                    exhaustion = at
                    ax.plot([as_of, at], [shares[-1], 100], linestyle=":", color=line.get_color(), linewidth=1)
                    ax.plot([at], [100], marker="x", color=line.get_color(), markersize=8)
            rows.append((subject, shares[-1], _alert(shares[-1], quota.alert_percent, quota.hard_block_percent),
                         reset, exhaustion))
        ax.axhline(hard, color="#c62828", linestyle="--", linewidth=1, label=f"hard block {hard:g}%")
        for reset in sorted(marks):
            ax.axvline(reset, color="#1565c0", linestyle="-.", linewidth=1)
            ax.annotate(f"reset {reset:%a %d %b %H:%M}", (reset, 102), fontsize=8, color="#1565c0", ha="right")
        ax.set_ylim(0, 110)
        ax.set_ylabel("% of quota used")
        ax.set_title(f"{name}: quota use per account (x = projected exhaustion)")
        ax.legend(fontsize=7, ncol=5, loc="upper left")
        fig.autofmt_xdate()
        table = ["<table><tr><th>account</th><th>used</th><th>alert</th><th>reset</th><th>resets in</th>"
                 "<th>projected exhaustion</th></tr>"]
        for account, share, alert, reset, exhaustion in rows:
            table.append(
                f"<tr><td>{html.escape(account)}</td><td>{share:.1f}%</td><td>{html.escape(alert or '')}</td>"
                f"<td>{f'{reset:%Y-%m-%d %H:%M} UTC' if reset else 'rolling window'}</td>"
                f"<td>{_span(reset - as_of) if reset else '-'}</td>"
                f"<td>{f'{exhaustion:%Y-%m-%d %H:%M} UTC' if exhaustion else '-'}</td></tr>")
        table.append("</table>")
        figures.append(_svg(fig) + "".join(table))
        plt.close(fig)
    return figures


def _outcome_figure(plt: Any, chain: Sequence[str], data: _Data) -> str | None:
    """Attempts by outcome per tier per day; tiers in `chain` order, then any other tier the log names."""
    tiers = [t for t in [*chain, *sorted(set(data.outcomes) - set(chain))] if t in data.outcomes]
    if not tiers:
        return None
    days = sorted({d for t in tiers for d in data.outcomes[t]})
    fig, axes = plt.subplots(len(tiers), 1, figsize=(9, 1.9 * len(tiers) + 0.6), sharex=True, squeeze=False)
    for ax, tier in zip(axes[:, 0], tiers, strict=True):
        bottom = [0] * len(days)
        outcomes = sorted({o for d in data.outcomes[tier].values() for o in d})
        for outcome in outcomes:
            values = [data.outcomes[tier][d][outcome] for d in days]
            ax.bar(days, values, bottom=bottom, label=outcome, color=OUTCOME_COLOURS.get(outcome, "#9e9e9e"))
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_ylabel(tier, rotation=0, ha="right")
        ax.legend(fontsize=7, loc="upper right")
    axes[0, 0].set_title("attempts by outcome per tier per day")
    fig.autofmt_xdate()
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _cost_figure(plt: Any, data: _Data) -> str | None:
    days = sorted(data.cost)
    if not days:
        return None
    providers = sorted({p for d in days for p in data.cost[d]})
    fig, ax = plt.subplots(figsize=(9, 3))
    bottom = [0.0] * len(days)
    for provider in providers:
        values = [data.cost[d][provider] for d in days]
        ax.bar(days, values, bottom=bottom, label=provider)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("US$")
    ax.set_title(f"cost per day (total ${sum(bottom):,.2f})")
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _fall_figure(plt: Any, data: _Data) -> str:
    fig, ax = plt.subplots(figsize=(9, max(1.6, 0.35 * len(data.moves) + 1)))
    moves = sorted(data.moves.items(), key=lambda kv: (kv[1], kv[0]))
    if moves:
        ax.barh([m for m, _ in moves], [c for _, c in moves], color="#6d4c41")
        ax.set_xlabel("tasks")
    else:
        ax.barh(["no task fell through"], [0])
    ax.set_title(f"where tasks fell through ({sum(data.moves.values())} of {data.tasks} tasks)")
    svg = _svg(fig)
    plt.close(fig)
    return svg


_CHECK_SCRIPT = """
window.addEventListener("error", function (e) {
  var b = document.body; b.dataset.scriptErrors = String(Number(b.dataset.scriptErrors || "0") + 1);
});
window.addEventListener("load", function () {
  var plots = document.querySelectorAll("svg.plot"), drawn = 0;
  plots.forEach(function (svg) {
    var box = svg.getBoundingClientRect();
    var marks = svg.querySelectorAll("path, rect, line, use, polyline").length;
    if (box.width > 0 && box.height > 0 && marks > 0) { drawn += 1; }
  });
  document.body.dataset.plotsExpected = String(plots.length);
  document.body.dataset.plotsDrawn = String(drawn);
});
"""


def build_html(config: CompiledConfig | None, audit_path: str | os.PathLike[str], *, since: datetime | None = None,
               as_of: datetime | None = None) -> str:
    """The page. `as_of` (default: the last record's time) is the end of the plotted period.

    Without a `config` the page has every plot the log alone gives; the quota plots need the config's quotas,
    and the page says so where they would be."""
    import matplotlib

    matplotlib.use("Agg")  # no display; chosen before pyplot is imported
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable
    matplotlib.rcParams["svg.hashsalt"] = "adws"  # stable element ids: the same log gives the same page

    reading = Reading()
    data = _gather(audit_path, since, reading)
    end = as_of or data.last or datetime.now(UTC)
    quota = _quota_figure(plt, config, data, since or data.first or end, end) if config is not None else None
    sections: list[tuple[str, list[str] | None]] = [
        ("Quota use per account", quota),
        ("Attempts by outcome", [s for s in [_outcome_figure(plt, config.chain if config else (), data)] if s]),
        ("Cost per day", [s for s in [_cost_figure(plt, data)] if s]),
        ("Fall-through", [_fall_figure(plt, data)]),
    ]
    span = (f"{data.first:%Y-%m-%d %H:%M} – {data.last:%Y-%m-%d %H:%M} UTC" if data.first and data.last
            else "no records")
    source = f"config {html.escape(config.source)}" if config is not None else "no config"
    body = [f"<h1>adws report</h1><p>{data.tasks} task(s), {span}; {source}; audit log "
            f"{html.escape(os.fspath(audit_path))}" + (f"; {reading.skipped} unreadable line(s) skipped"
                                                        if reading.skipped else "") + "</p>"]
    for title, figures in sections:
        body.append(f"<section><h2>{html.escape(title)}</h2>")
        if figures is None:  # a plot that needs the config, and there is none
            body.append("<p>no config given: quotas are declared there (adws report --config FILE)</p>")
        elif figures:
            body.extend(f"<figure>{svg}</figure>" for svg in figures)
        else:
            body.append("<p>nothing recorded</p>")
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>adws report</title>"
            "<style>body{font-family:sans-serif;max-width:980px;margin:1em auto;color:#222}"
            "figure{margin:0 0 1.5em 0}svg.plot{max-width:100%;height:auto}"
            "table{border-collapse:collapse;font-size:85%}td,th{padding:2px 8px;border-bottom:1px solid #ddd;"
            "text-align:left}</style>"
            f"<script>{_CHECK_SCRIPT}</script></head><body>" + "\n".join(body) + "</body></html>\n")


def write(path: str | os.PathLike[str], page: str) -> None:
    """Write `page` as the file `path`, private (0600: the page shows task titles and usage), whole or not at all
    (adws.files.replace_private). Raises OSError."""
    from adws.files import replace_private

    replace_private(path, [page])


def summary(page: str) -> Mapping[str, int]:
    return {"plots": page.count('<svg class="plot"'), "bytes": len(page.encode())}
