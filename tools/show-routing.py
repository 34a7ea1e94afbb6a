#!/usr/bin/env python3
"""Show routing: on/off, default, rules in priority order, and every scenario with its verdict.

Exit 0 when every scenario's expectation holds, 1 when one fails, 2 when the config is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from adws.config import load_config
from adws.errors import ConfigError
from adws.reports import render_routing, routing_report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="config.toml", help="config file (default: ./config.toml)")
    parser.add_argument("--at", help="time for scenarios without their own `at` (ISO 8601; default: now)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    at = datetime.fromisoformat(args.at.replace("Z", "+00:00")) if args.at else datetime.now(UTC)
    report = routing_report(config, at)
    print(json.dumps(report, indent=2, default=str) if args.json else render_routing(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
