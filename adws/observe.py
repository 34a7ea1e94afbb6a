"""Usage adws did not see: observations of an account's real usage, and how they meet the ledger.

adws only counts the usage that passed through itself; the same account used by hand, or by another tool, spends
quota adws never hears of. Two sources tell it:

- Claude Code's `rate_limit_event` with `status = "allowed_warning"` carries the account's `utilization`
  (0-1) of a window (`rateLimitType`, e.g. "seven_day") and its `resetsAt` (epoch seconds): the parser hands it to
  `from_claude_rate_limit`, and the attempt records it against the quota subject (account or pool) it ran on.
- A declared `usage_command` per provider or account: an argv template whose standard output is JSON, one entry
  per window: `{"<window>": {"used": 120000, "limit": 500000, "reset": "2026-12-06T00:00:00Z"}, ...}`
  (`reset` as ISO 8601 with an offset or epoch seconds; `limit` optional when the declared quota has one). A
  window is the name of one of the quota's pools, or `quota` for the account's own limits. `adws quota --sync`
  runs it, and so does a run at most every `usage_sync_interval` before routing — never `route()`.

Merging: an observation holds while its reset is ahead (or, without one, within the period it was taken in).
Where it says more is used than the ledger does, it wins; both figures are kept, so `adws quota` and explain show
them side by side ("ledger 41%, observed 63% (usage_command 12m ago)").
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from adws.dataclass_cache import dataclass
from adws.redact import encodable
from adws.state.base import Observation as Observation  # re-exported: readings are made here

UNMETERED = "quota"  # the window name of an account's own limits (a pooled quota names its pools instead)
MAX_OUTPUT = 64 * 1024  # a usage command prints a few lines of JSON: more is a mistake, not data


class UsageCommandError(ValueError):
    """A usage command's output could not be read; the message names what was wrong."""


@dataclass(frozen=True, slots=True)
class Merged:
    """The percent used that routing goes by, with both figures behind it."""

    percent: float
    ledger_percent: float
    observation: Observation | None  # the one in force, whether or not it won

    @property
    def observed_wins(self) -> bool:
        return self.observation is not None and self.observation.percent > self.ledger_percent

    def describe(self, now: datetime) -> str:
        """"ledger 41.0%, observed 63.0% (usage_command 12m ago): observed counts"."""
        text = f"ledger {self.ledger_percent:.1f}%"
        obs = self.observation
        if obs is None:
            return text
        age = int(max((now - obs.at).total_seconds(), 0) // 60)
        text += f", observed {obs.percent:.1f}% ({obs.source} {age}m ago)"
        return text + (": observed counts" if self.observed_wins else ": ledger counts")


def merge(ledger_percent: float, observation: Observation | None, now: datetime,
          period_start: datetime | None) -> Merged:
    """The higher of the ledger's percent and an observation still in force."""
    if observation is not None and not observation.in_force(now, period_start):
        observation = None
    percent = ledger_percent
    if observation is not None and observation.percent > ledger_percent:
        percent = observation.percent
    return Merged(percent, ledger_percent, observation)


# -- Claude Code's rate_limit_event ------------------------------------------------------------------------------


def _epoch(value: object) -> datetime | None:
    """Epoch seconds (a number, not a bool, in a plausible range) as an aware datetime; None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e11:
        return datetime.fromtimestamp(value, UTC)
    return None


def from_claude_rate_limit(info: Mapping[str, Any]) -> tuple[float, datetime | None, str] | None:
    """(percent, reset, window) from a `rate_limit_info` whose status is `allowed_warning` with a numeric
    `utilization` (0-1), else None. The caller knows the provider and subject the attempt ran on."""
    if info.get("status") != "allowed_warning":
        return None
    utilization = info.get("utilization")
    if isinstance(utilization, bool) or not isinstance(utilization, int | float):
        return None
    if not math.isfinite(utilization) or not 0 <= utilization <= 10:
        return None
    resets = info.get("resetsAt")
    reset_at = _epoch(resets)
    window = info.get("rateLimitType")
    # The name comes from the agent's JSON, where "\ud800" is valid: made encodable, since it goes into the
    # observation's source, which a store has to write.
    return utilization * 100.0, reset_at, encodable(window) if isinstance(window, str) and window else "unknown"


# -- usage_command output ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowReading:
    window: str
    used: float
    limit: float | None
    reset_at: datetime | None


def parse_usage_output(text: str) -> list[WindowReading]:
    """Read a usage command's JSON (see the module docstring); UsageCommandError names the first problem."""
    if len(text) > MAX_OUTPUT:
        raise UsageCommandError(f"output is {len(text):,} characters; a usage command prints a small JSON object")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageCommandError(f"output is not JSON ({exc.args[0] if exc.args else exc})") from None
    if not isinstance(data, dict) or not data:
        raise UsageCommandError('output must be a JSON object of windows, e.g. {"quota": {"used": 1200, '
                                '"limit": 500000, "reset": "2026-12-06T00:00:00Z"}}')
    readings = []
    for name, entry in data.items():
        window = encodable(name)  # a JSON key may hold a lone surrogate; the name is stored with the reading
        if not isinstance(entry, dict):
            raise UsageCommandError(f'window "{window}": expected an object with used, limit, reset')
        unknown = sorted(set(entry) - {"used", "limit", "reset"})
        if unknown:
            raise UsageCommandError(f'window "{window}": unknown key "{unknown[0]}"; keys: used, limit, reset')
        used = _number(entry.get("used"), window, "used", required=True)
        limit = _number(entry.get("limit"), window, "limit", required=False)
        if limit is not None and limit <= 0:
            raise UsageCommandError(f'window "{window}": limit must be > 0, got {limit:g}')
        readings.append(WindowReading(window, used or 0.0, limit, _reset(entry.get("reset"), window)))
    return readings


def _number(value: Any, window: str, key: str, *, required: bool) -> float | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise UsageCommandError(f'window "{window}": {key} must be a number >= 0, got {json.dumps(value)}')
    return float(value)


def _reset(value: Any, window: str) -> datetime | None:
    if value is None:
        return None
    at = _epoch(value)
    if at is not None:
        return at
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    raise UsageCommandError(f'window "{window}": reset must be ISO 8601 with an offset or epoch seconds, '
                            f"got {json.dumps(value)}")
