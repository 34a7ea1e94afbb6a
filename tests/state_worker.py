"""Helper process for the multi-process state store tests (tests/test_state.py) and the ledger bench.

usage: python tests/state_worker.py count PATH N ACCOUNT
       python tests/state_worker.py loop PATH

count  print "ready", wait for a line on stdin, then open the store (so that several workers race on
       creating the schema too) and N times: record one usage row, take a cursor, bump a breaker counter.
       Prints "done" at the end.
loop   open the store and, until killed: take a cursor, bump the breaker, record a usage row — three
       separate transactions in that order, so after a kill -9 the counts may differ by at most one
       step and never in the other direction. Prints "ready" after the first round.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from adws.attempt import Usage
from adws.state import BreakerState, SqliteStore, UsageRecord

PROVIDER = "prov"
CURSOR = "shared"


def bump(state: BreakerState) -> BreakerState:
    return BreakerState(state=state.state, failures=state.failures + 1, opened_at=state.opened_at)


def one_round(store: SqliteStore, account: str) -> None:
    store.next_cursor(CURSOR)
    store.update_breaker(PROVIDER, bump)
    usage = Usage(requests=1, input_tokens=10, output_tokens=5, cost_usd=0.5)
    store.record_usage(UsageRecord(PROVIDER, account, datetime.now(UTC), usage, task_id=str(os.getpid())))


def count(path: str, n: str, account: str) -> None:
    print("ready", flush=True)
    sys.stdin.readline()
    with SqliteStore(path) as store:
        for _ in range(int(n)):
            one_round(store, account)
    print("done", flush=True)


def loop(path: str) -> None:
    with SqliteStore(path) as store:
        one_round(store, "acct")
        print("ready", flush=True)
        while True:
            one_round(store, "acct")


MODES: dict[str, Callable[..., None]] = {"count": count, "loop": loop}


def main(argv: list[str]) -> int:
    mode = MODES.get(argv[0]) if argv else None
    if mode is None:
        print(__doc__, file=sys.stderr)
        return 2
    mode(*argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
