"""A fake agent that stays running until the test lets it finish (tests/test_concurrency.py).

usage: python gate_agent.py [PROMPT...]   with GATE_DIR in the environment

Writes GATE_DIR/started-<pid> as soon as it runs, then waits until GATE_DIR/open exists and prints a plain
text answer (output_format "text"), exit 0. A test can therefore hold a provider's slot exactly as long as
it needs, without sleeping for a guessed time. Gives up after 30 s (exit 3) so a broken test never leaves
it behind.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

GIVE_UP_S = 30.0
POLL_S = 0.01


def main() -> int:
    gate = Path(os.environ["GATE_DIR"])
    (gate / f"started-{os.getpid()}").touch()
    deadline = time.monotonic() + GIVE_UP_S
    while not (gate / "open").exists():
        if time.monotonic() > deadline:
            print("gate never opened", file=sys.stderr)
            return 3
        time.sleep(POLL_S)
    print(f"gated answer from {os.environ.get('ADWS_PROVIDER', '?')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
