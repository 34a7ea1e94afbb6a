"""The circuit breaker of one provider: pure transitions over its stored `BreakerState`.

States as in pybreaker (and Fowler's description of the pattern):

- closed: attempts run; each infrastructure failure (`[breaker] counts`) adds one, any other answer from the
  provider resets the count. `failure_threshold` failures in a row open it.
- open: routing skips the provider until `cooldown_seconds` after it opened.
- half_open: from then on, the first execution that reaches the provider claims the one probe (`claim_probe`)
  and the state says so; while the probe runs (at most `lease`: the provider's timeout, kill grace and a
  margin) routing skips the provider again. The probe's verdict closes it (any answer) or re-opens it (a
  failure, with a fresh cooldown). A probe that never reached a verdict (its command did not render, no
  slot was free, the run was interrupted) gives the claim back.

Routing (`blocked`, `expires`) and execution (`claim_probe`, `record`) use these functions only.

A breaker time later than the reader's `now` plus FUTURE_TOLERANCE (a host whose clock is ahead wrote it, or the
store is damaged) is not believed as it stands, nor ignored: the reader counts that state from when it first saw it
(`Sightings`, one per reader; `start`). An open state then blocks for the cooldown from that sighting, never longer
(believed, a time a year ahead would hold the provider open for a year, past any cooldown the config allows) and
never zero (ignored, a host ahead would have its opens disregarded by everyone, and a host behind, to which every
other host's time lies ahead, would probe at once, cutting everyone's cooldown short). A half-open state is a live
probe for the lease from that sighting: nobody takes it over before the lease would have run out on the reader's
own clock (ignored, a second probe ran beside the first). Every backend alike, since none of them knows the
reader's clock; only the times of this module are judged so, and the stores keep what they are given. A host
behind that opens a breaker itself still writes its own, earlier time, which the others cannot tell from an older
one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from adws.compiled import BreakerSpec, ProviderSpec
from adws.state.base import FUTURE_TOLERANCE, BreakerState, StateStore

CLOSED = BreakerState()
# A probe holds the half-open state at most this long after the provider's own timeout and kill grace: a
# coordinator killed mid-probe frees it then.
PROBE_MARGIN = timedelta(seconds=60)


def probe_lease(provider: ProviderSpec) -> timedelta:
    """How long a claimed probe keeps the breaker half-open (the longest an attempt runs, plus a margin)."""
    return timedelta(seconds=provider.timeout + provider.kill_grace) + PROBE_MARGIN


def ahead(state: BreakerState, now: datetime) -> bool:
    """True when the open or half-open breaker's time lies more than FUTURE_TOLERANCE after `now` (module
    docstring): counted from the reader's sighting (`start`), not from that time."""
    return state.state != "closed" and state.opened_at is not None and state.opened_at > now + FUTURE_TOLERANCE


def start(state: BreakerState, now: datetime, seen: datetime | None = None) -> datetime | None:
    """The time the reader counts `state`'s cooldown or probe lease from: its `opened_at`, or, for a time more than
    FUTURE_TOLERANCE after `seen` (when this reader first saw the state, `Sightings.first`; None: `now`), `seen`."""
    if state.opened_at is None:
        return None
    first = now if seen is None else seen
    return first if ahead(state, first) else state.opened_at


class Sightings:
    """When one reader (a process, an engine: its routing and its executions) first saw each provider's breaker
    state, so a time ahead of its clock is counted from then (`start`), the same for every decision it makes. One
    state per provider is kept: a new state replaces the provider's entry. Safe from several threads."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[BreakerState, datetime]] = {}
        self._lock = threading.Lock()

    def first(self, provider: str, state: BreakerState, now: datetime) -> datetime:
        """When this reader first saw `provider`'s breaker in `state`: `now` the first time (and after another
        state was seen since). A decision made as at an earlier time (`route(now=...)`, `--at`, a clock stepped
        back) is answered with its own `now` and moves no sighting: one kept earlier than the real first sighting
        would count a cooldown from the past, and later decisions on the real clock would probe at once."""
        with self._lock:
            held = self._seen.get(provider)
            if held is not None and held[0] == state:
                return held[1] if held[1] <= now else now
            self._seen[provider] = (state, now)
            return now


def _seen(sightings: Sightings | None, provider: str, state: BreakerState, now: datetime) -> datetime | None:
    return None if sightings is None or state.opened_at is None else sightings.first(provider, state, now)


def blocked(state: BreakerState, now: datetime, cooldown: timedelta, lease: timedelta,
            seen: datetime | None = None) -> str | None:
    """Why routing must skip the provider at `now`, or None. `seen`: when this reader first saw `state` (`start`)."""
    since = start(state, now, seen)
    if since is None:
        return None
    if state.state == "open" and now < since + cooldown:
        return (f"circuit open after {state.failures} infrastructure failures; "
                f"probed again at {(since + cooldown).isoformat()}")
    if state.state == "half_open" and now < since + lease:
        return f"circuit half-open: a probe is running since {since.isoformat()}"
    return None


def expires(state: BreakerState, now: datetime, cooldown: timedelta, lease: timedelta,
            seen: datetime | None = None) -> datetime | None:
    """When `blocked` stops blocking, if it blocks at `now` (for snapshot expiry); `seen` as for `blocked`."""
    since = start(state, now, seen)
    if since is None:
        return None
    end = since + (cooldown if state.state == "open" else lease if state.state == "half_open" else timedelta(0))
    return end if end > now else None


def probe(state: BreakerState, now: datetime, cooldown: timedelta, lease: timedelta,
          seen: datetime | None = None) -> BreakerState:
    """The state after an execution asks to reach the provider at `now` (`seen` as for `blocked`).

    Open past its cooldown, or half-open with a probe whose lease ran out: half-open, probed from `now`. Otherwise
    unchanged (closed; open within its cooldown, which only a plan made before it opened reaches; half-open with a
    live probe, also one whose time lies ahead).
    """
    since = start(state, now, seen)
    if since is None:
        return state
    if (state.state == "open" and now >= since + cooldown) or (state.state == "half_open" and now >= since + lease):
        return BreakerState("half_open", state.failures, now)
    return state


def after_attempt(state: BreakerState, failed: bool, now: datetime, threshold: int) -> BreakerState:
    """The state after an attempt's verdict: `failed` when its outcome counts as an infrastructure failure."""
    if not failed:
        return CLOSED  # any answer from the provider itself shows the infrastructure works
    failures = state.failures + 1
    if state.state != "closed" or failures >= threshold:
        return BreakerState("open", failures, now)  # a failed probe re-opens it
    return BreakerState("closed", failures, None)


# -- against the store -----------------------------------------------------------------------------------


def claim_probe(store: StateStore, provider: str, now: datetime, cooldown: timedelta,
                lease: timedelta, sightings: Sightings | None = None) -> tuple[bool, BreakerState]:
    """Try to become the one probe of an open breaker: (claimed, the state before). `sightings`: the reader's
    (`Sightings`), so a time ahead is counted as its routing counts it.

    The single place where the probe is claimed. `update_breaker` is an atomic read-modify-write on every
    backend, so one claim wins even across processes sharing the store.
    """
    before: list[BreakerState] = []

    def claim(state: BreakerState) -> BreakerState:
        before[:] = [state]
        return probe(state, now, cooldown, lease, _seen(sightings, provider, state, now))

    after = store.update_breaker(provider, claim)
    prior = before[-1] if before else after
    return after.state == "half_open" and after.opened_at == now and prior != after, prior


@contextmanager
def admission(store: StateStore, provider: ProviderSpec, now: datetime, cooldown: timedelta,
              sightings: Sightings | None = None) -> Iterator[bool]:
    """Hold the provider's probe, if its breaker needs one, for the block; yields False when another
    execution holds it (the provider must not be reached). A claim whose probe reached no verdict in the block
    is given back on the way out, whatever the block raised. `sightings`: the reader's (`claim_probe`)."""
    lease = probe_lease(provider)
    state = store.get_breaker(provider.name)
    if state.opened_at is None:  # closed: nothing to claim (the common case costs one read)
        yield True
        return
    claimed, before = claim_probe(store, provider.name, now, cooldown, lease, sightings)
    if not claimed:
        # Half-open: another execution is probing. Open within its cooldown: the plan was made before it
        # opened; it runs, as any attempt already under way would.
        yield before.state != "half_open"
        return
    try:
        yield True
    finally:
        def give_back(state: BreakerState) -> BreakerState:
            return before if state == BreakerState("half_open", before.failures, now) else state

        store.update_breaker(provider.name, give_back)


def record(store: StateStore, provider: str, failed: bool, now: datetime, spec: BreakerSpec) -> None:
    """Apply an attempt's verdict; a closed breaker with no failures to forget costs one read."""
    if not failed and store.get_breaker(provider) == CLOSED:
        return
    store.update_breaker(provider, lambda state: after_attempt(state, failed, now, spec.failure_threshold))
