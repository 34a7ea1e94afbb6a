#!/usr/bin/env python3
"""Show routing: on/off, default, rules in priority order, and every scenario with its verdict.

Exit 0 when every scenario's expectation holds, 1 when one fails, 2 when the config or --at is invalid.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from adws.cli import CONFIG_HELP, config_path, parse_at, tool_main
from adws.config import load_config
from adws.errors import AdwsError, ConfigError
from adws.reports import render_routing
from adws.scenarios import routing_report
from adws.views import fit, terminal_width


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("--at", help="time for scenarios without their own `at` (ISO 8601; without an offset, in "
                                      "the routing timezone, as `adws check --at`; default: now)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    try:
        config = load_config(config_path(args.config))  # --config, else $ADWS_CONFIG, else ./config.toml
        at = parse_at(args.at, config.timezone)  # a bad --at: UsageError, an AdwsError (exit 2, not "scenario failed")
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except AdwsError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    report = routing_report(config, at or datetime.now(UTC))
    text = render_routing(report).splitlines()
    print(json.dumps(report, indent=2, default=str) if args.json else fit(text, terminal_width(sys.stdout)))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly, as other command-line tools do
    sys.exit(tool_main(main))
