"""Finding the reset time an agent CLI announced, in whatever words or numbers it used."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from adws.durations import UNIT_SECONDS

# Further than this from `now` is noise (an id, a version, a date in the answer), not an announced reset.
_MAX_DISTANCE = timedelta(days=400)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# Milliseconds first: "ms" must not be read as minutes.
_UNIT = r"(?:milliseconds?|msecs?|ms|days?|hours?|hrs?|minutes?|mins?|seconds?|secs?|d|h|m|s)(?![a-z])"
_NUMBER = r"\d{1,9}(?:\.\d{1,15})?"  # Google's retry delays carry nanoseconds: "retry in 34.89668959s"

# "Claude AI usage limit reached|1755615600" (older Claude) and "resetsAt": 1774447200 (JSON that leaked
# into a text stream). The look-behind keeps "overageResetsAt" (a different window) out.
_EPOCH_RE = re.compile(
    r"limit reached\|(?P<pipe>\d{9,13})(?!\d)|(?<![a-z])resets_?at\"?\s*[:=]\s*\"?(?P<key>\d{9,13})(?!\d)",
    re.IGNORECASE,
)
_RETRY_AFTER_RE = re.compile(
    rf"retry-after\"?\s*[:=]\s*\"?(?:(?P<secs>{_NUMBER})(?![\d.])"
    r"|(?P<date>[a-z]{3}, \d{1,2} [a-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT))"
    # Google's RetryInfo ("retryDelay": "34.896s") and Gemini CLI's retryDelayMs.
    rf"|retry_?delay\"?\s*[:=]\s*\"?(?P<delay>{_NUMBER})s\b|retry_?delay_?ms\"?\s*[:=]\s*\"?(?P<ms>{_NUMBER})(?![\d.])",
    re.IGNORECASE,
)
# "try again in 2h 30m", "Retrying in 2892 seconds", "Your quota will reset after 2h13m34s", "Please retry in
# 900ms" (Google's RetryInfo as Gemini CLI prints it).
# Also Copilot's "Please wait 587 hours 33 minutes before trying again".
_RELATIVE_RE = re.compile(
    r"(?:(?:(?P<ing>trying\s+again|retrying)|try\s+again|retry|resets?|available\s+again)\s+(?:in|after)"
    r"|please\s+wait)\s+"
    rf"(?P<dur>(?:{_NUMBER}\s*{_UNIT}[\s,]*(?:and\s+)?){{1,4}})",
    re.IGNORECASE,
)
_DURATION_PART_RE = re.compile(rf"({_NUMBER})\s*({_UNIT})", re.IGNORECASE)
# "You will regain access on 2026-04-01 at 00:00 UTC", "quota resets on 2026-05-01T00:00:00Z".
_ISO_RE = re.compile(
    r"(?:reset|retry|try again|available|regain(?:ed)? access|until)[^\n\d]{0,40}?"
    r"(?P<date>\d{4}-\d{2}-\d{2})(?:(?:[T ]|\s+at\s+)(?P<time>\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?))?"
    r"\s*(?P<tz>Z|UTC|GMT|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
# "resets 4pm (Asia/Kuala_Lumpur)", "resets Feb 7, 11am (Asia/Seoul)", "will reset at 5pm (Europe/Warsaw)",
# Codex's "try again at 3:28 PM" and "try again at Aug 8th, 2026 12:30 PM" (the host's local time: `zone`).
_CLOCK_RE = re.compile(
    r"(?:resets?|try\s+again)\s+(?:at\s+|on\s+)?"
    rf"(?:(?P<mon>{'|'.join(_MONTHS)})[a-z]*\.?\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+"
    r"(?:(?P<year>\d{4}),?\s+)?(?:at\s+)?)?"
    r"(?P<h>\d{1,2})(?::(?P<mi>\d{2}))?\s*(?P<ap>[ap]\.?m\.?)?(?![\w:])"
    r"\s*(?:\((?P<tz>[a-z][a-z0-9_+\-/]{0,40})\)|(?P<tz2>UTC|GMT)\b)?",
    re.IGNORECASE,
)

# Z.ai (GLM Coding Plan) error 1308, "Usage limit reached for 5 hour. Your limit will reset at 2026-09-09 05:38:28"
# (and its Chinese wording "您的限额将在 2026-08-25 07:41:44 重置"): a date and time in Beijing time with no zone
# (hugalafutro/model-hotel#955, from a live 429 body; NousResearch/hermes-agent#103038, Z.AI's error-code page).
# It starts where the ISO form's match does, and comes after it in _RESET_FORMS, so it wins the tie.
_ZAI_RE = re.compile(
    r"(?:(?<=your limit will )reset at |限额将在\s*)(?P<date>\d{4}-\d{2}-\d{2}) (?P<time>\d{2}:\d{2}:\d{2})"
    r"(?!\.?\d|\s*(?:Z|UTC|GMT|[+-]\d))",
    re.IGNORECASE,
)
_ZAI_ZONE = "Asia/Shanghai"


def find_reset_time(text: str, now: datetime, *, zone: tzinfo | None = None) -> datetime | None:
    """The reset time `text` announces, as an aware UTC datetime, or None.

    Understands epoch seconds (`limit reached|1755615600`, `"resetsAt": 1755615600`), `Retry-After: 120`,
    relative delays (`try again in 2h 30m`, `reset after 2h13m34s`), ISO dates (`regain access on
    2026-04-01 at 00:00 UTC`) and clock times (`resets 4pm (Asia/Seoul)`, `resets Feb 7, 11am`). A clock
    time already past today means tomorrow. `now` (naive means UTC) anchors relative and clock forms.
    `zone` is the zone a clock time or date written without one is in: the one the CLI prints them in
    (`host_zone()` for a CLI that prints the machine's local time); None means `now`'s zone (UTC).
    When several are announced, the last one in the text wins: it is the most recent announcement.
    """
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    if zone is not None:
        now = now.astimezone(zone)
    best: tuple[int, datetime] | None = None
    for regex, resolve in _RESET_FORMS:
        for match in regex.finditer(text):
            try:
                found = resolve(match, now)
            except (ValueError, OverflowError, OSError, KeyError):
                continue  # a near miss (31 February, an unknown zone): keep looking
            if found is None or abs(found - now) > _MAX_DISTANCE:
                continue
            if best is None or match.start() >= best[0]:
                best = (match.start(), found.astimezone(UTC))
    return best[1] if best else None


def host_zone() -> tzinfo:
    """The time zone of the machine adws runs on (see `_host_zone`), read once per value of `TZ`: a Codex parse asks
    for it every time, and reading /etc/localtime costs about 0.1 ms."""
    return _host_zone(os.environ.get("TZ"))


@functools.lru_cache(maxsize=8)
def _host_zone(tz: str | None) -> tzinfo:
    """The time zone of the machine adws runs on, daylight saving included: `TZ` when it names a zone, else
    /etc/localtime, else the current UTC offset. A CLI that formats a time in its local zone (Codex) runs on
    this machine, so this is the zone it printed in."""
    name = (tz or "").lstrip(":")
    # A zone file by path (glibc reads "TZ=/usr/share/zoneinfo/Europe/Berlin" so), else /etc/localtime when TZ is
    # unset or empty. ZoneInfo refuses an absolute path as a key, hence the file itself.
    path = name if name.startswith("/") else None if name else "/etc/localtime"
    try:
        if path is not None:
            with open(path, "rb") as file:
                return ZoneInfo.from_file(file, key=path)
        return ZoneInfo(name)
    # An unknown key (ZoneInfoNotFoundError is a KeyError), a POSIX rule such as "JST-9" or
    # "CET-1CEST,M3.5.0,M10.5.0/3", a file that is missing or not a zone file: the C library's reading of TZ, its
    # offset now (daylight saving changes within a reset's few hours are not followed then).
    except (ValueError, OSError, KeyError):
        return datetime.now().astimezone().tzinfo or UTC


def from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value / 1000 if value > 10**11 else value, UTC)


def _resolve_epoch(match: re.Match[str], now: datetime) -> datetime | None:
    return from_epoch(int(match["pipe"] or match["key"]))


def _resolve_retry_after(match: re.Match[str], now: datetime) -> datetime | None:
    if match["date"]:
        from email.utils import parsedate_to_datetime  # email and socket: only for an HTTP date, not at import

        return parsedate_to_datetime(match["date"])
    if match["ms"]:
        return now + timedelta(milliseconds=float(match["ms"]))
    return now + timedelta(seconds=float(match["secs"] or match["delay"]))


def _unit_seconds(unit: str) -> float:
    unit = unit.lower()
    if unit.startswith("ms") or unit.startswith("milli"):
        return 0.001
    return UNIT_SECONDS[unit[0]]


def _resolve_relative(match: re.Match[str], now: datetime) -> datetime | None:
    parts = [(float(amount), _unit_seconds(unit)) for amount, unit in _DURATION_PART_RE.findall(match["dur"])]
    if match["ing"] and any(unit < 1 for _, unit in parts):
        return None  # "Retrying after 6173ms...": a client's own back-off step, not a reset the server announced
    return now + timedelta(seconds=sum(amount * unit for amount, unit in parts))


def _zone(name: str | None, default: tzinfo) -> tzinfo:
    if not name:
        return default
    if name.upper() in {"UTC", "GMT", "Z"}:
        return UTC
    if re.fullmatch(r"[+-]\d{2}:?\d{2}", name):
        return datetime.strptime(name.replace(":", ""), "%z").tzinfo or UTC
    return ZoneInfo(name)


def _resolve_iso(match: re.Match[str], now: datetime) -> datetime | None:
    stamp = f"{match['date']}T{match['time'] or '00:00'}"
    naive = datetime.fromisoformat(stamp)
    return naive.replace(tzinfo=_zone(match["tz"], now.tzinfo or UTC))


def _resolve_clock(match: re.Match[str], now: datetime) -> datetime | None:
    if not (match["ap"] or match["mi"]):
        return None  # "resets 5 accounts" is not a time
    hour, minute = int(match["h"]), int(match["mi"] or 0)
    if match["ap"]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match["ap"].lower().startswith("p") else 0)
    zone = _zone(match["tz"] or match["tz2"], now.tzinfo or UTC)
    local_now = now.astimezone(zone)
    if match["mon"]:
        month = _MONTHS.index(match["mon"][:3].lower()) + 1
        if match["year"]:
            return datetime(int(match["year"]), month, int(match["day"]), hour, minute, tzinfo=zone)
        found = datetime(local_now.year, month, int(match["day"]), hour, minute, tzinfo=zone)
        # A date well behind us is next year's ("resets Jan 2" said on December 30th).
        return found.replace(year=found.year + 1) if found < local_now - timedelta(days=1) else found
    found = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    # Same wall-clock time tomorrow (naive arithmetic on purpose: "4pm" stays 4pm across DST).
    return found + timedelta(days=1) if found <= local_now else found


def _resolve_zai(match: re.Match[str], now: datetime) -> datetime | None:
    return datetime.fromisoformat(f"{match['date']}T{match['time']}").replace(tzinfo=ZoneInfo(_ZAI_ZONE))


_RESET_FORMS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], datetime], datetime | None]], ...] = (
    (_EPOCH_RE, _resolve_epoch),
    (_RETRY_AFTER_RE, _resolve_retry_after),
    (_RELATIVE_RE, _resolve_relative),
    (_ISO_RE, _resolve_iso),
    (_CLOCK_RE, _resolve_clock),
    (_ZAI_RE, _resolve_zai),
)
