#!/usr/bin/env python3
"""Show each provider's status (available, or why not), models and accounts."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from adws.cli import CONFIG_HELP, config_path, tool_main
from adws.engine import load
from adws.errors import AdwsError, ConfigError
from adws.reports import providers_report, render_providers
from adws.views import fit, terminal_width


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    try:
        engine = load(config_path(args.config))  # --config, else $ADWS_CONFIG, else ./config.toml
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except AdwsError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    now = engine.clock()
    rows = providers_report(engine, now)
    text = render_providers(rows, engine.router.tz, now).splitlines()
    print(json.dumps(rows, indent=2) if args.json else fit(text, terminal_width(sys.stdout)))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly, as other command-line tools do
    sys.exit(tool_main(main))
