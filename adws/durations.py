"""The units of a written duration ("5h", "1h30m", "7d", "2w"): one table for every reader of one.

Read by adws.quota.parse_window (config durations, --wait, --margin) and the JSON Schema's pattern of them
(adws.config.schema), `--since` (adws.insight.records) and the delays agent CLIs announce (adws.parsers.reset).
No imports: each of those may need it without loading the others.
"""

from __future__ import annotations

__all__ = ["UNITS", "UNIT_SECONDS"]

# (suffix, seconds), longest first: the order in which parse_window reads them ("1h30m", never "30m1h").
UNITS: tuple[tuple[str, int], ...] = (("w", 7 * 86_400), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
UNIT_SECONDS: dict[str, int] = dict(UNITS)
