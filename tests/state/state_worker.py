"""Helper process for the multi-process state store tests (tests/test_state.py) and the ledger bench.

usage: python tests/state/state_worker.py count STORE N ACCOUNT
       python tests/state/state_worker.py loop STORE
       python tests/state/state_worker.py lease STORE HOLDER SECONDS

STORE  a SQLite path, or a Redis URL followed by "#" and the key prefix (redis://127.0.0.1:6390/0#adws-test:1:)

count  print "ready", wait for a line on stdin, then open the store (so that several workers race on
       creating the schema too) and N times: record one usage row, take a cursor, bump a breaker counter.
       Prints "done" at the end.
loop   open the store and, until killed: take a cursor, bump the breaker, record a usage row — three
       separate transactions in that order, so after a kill -9 the counts may differ by at most one
       step and never in the other direction. Prints "ready" after the first round.
lease  lease provider "prov"'s one slot as HOLDER for SECONDS, print "leased" and the lease's end (epoch
       seconds), then sleep until killed: a coordinator that dies mid-run without releasing its slot.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from adws.attempt import Usage
from adws.state import BreakerState, RedisStore, SqliteStore, StateStore, UsageRecord

PROVIDER = "prov"
CURSOR = "shared"


def bump(state: BreakerState) -> BreakerState:
    return BreakerState(state=state.state, failures=state.failures + 1, opened_at=state.opened_at)


def open_location(location: str) -> StateStore:
    if "://" in location:
        url, _, prefix = location.partition("#")
        return RedisStore(url, key_prefix=prefix)
    return SqliteStore(location)


def one_round(store: StateStore, account: str) -> None:
    store.next_cursor(CURSOR)
    store.update_breaker(PROVIDER, bump)
    usage = Usage(requests=1, input_tokens=10, output_tokens=5, cost_usd=0.5)
    store.record_usage(UsageRecord(PROVIDER, account, datetime.now(UTC), usage, task_id=str(os.getpid())))


def count(path: str, n: str, account: str) -> None:
    print("ready", flush=True)
    sys.stdin.readline()
    store = open_location(path)
    for _ in range(int(n)):
        one_round(store, account)
    store.close()
    print("done", flush=True)


def loop(path: str) -> None:
    store = open_location(path)
    one_round(store, "acct")
    print("ready", flush=True)
    while True:
        one_round(store, "acct")


def lease(path: str, holder: str, seconds: str) -> None:
    store = open_location(path)
    now = datetime.now(UTC)
    until = now + timedelta(seconds=float(seconds))
    if not store.acquire_slot(PROVIDER, holder, 1, now, until):
        print("full", flush=True)
        return
    print(f"leased {until.timestamp()!r}", flush=True)
    while True:
        time.sleep(1)


MODES: dict[str, Callable[..., None]] = {"count": count, "loop": loop, "lease": lease}


def main(argv: list[str]) -> int:
    mode = MODES.get(argv[0]) if argv else None
    if mode is None:
        print(__doc__, file=sys.stderr)
        return 2
    mode(*argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
