"""When nothing can run now, say when it can: a failed result's `retry_at` and `retryable`, and `--wait`.

`retryable` is True when at least one tier of the plan failed for a temporary reason: a limit, a quota, a
cooldown, an open circuit, busy slots, or a failure that may not repeat (timeout, crash, unreadable output, a
failed verification). Bad credentials, a prompt too large for the model, a missing program or a config error
are permanent: waiting does not mend them.

`retry_at` is the earliest moment any tier has capacity again, where that is known: a skip's `until` (cooldown,
quota reset, circuit half-open), an attempt's announced reset or the cooldown recorded for it, or, for busy
slots, the soonest lease end but no later than BUSY_RECHECK from now (slots are usually freed long before their
lease runs out).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from adws.attempt import OutcomeClass
from adws.dataclass_cache import dataclass

if TYPE_CHECKING:
    from adws.decision import Skip
    from adws.state.base import Cooldown

__all__ = ["BUSY_RECHECK", "TEMPORARY", "RetryWindow", "retry_window", "wait_for_capacity"]

BUSY_RECHECK = timedelta(seconds=30)
BUSY_PREFIX = "busy:"  # the reason of an attempt that found every max_concurrency slot taken

# Outcome class -> does waiting (or simply trying again) have a chance? The registry every caller consults.
TEMPORARY: Mapping[str, bool] = {
    OutcomeClass.SUCCESS: False,
    OutcomeClass.RATE_LIMITED: True,
    OutcomeClass.QUOTA_EXHAUSTED: True,
    OutcomeClass.AUTH: False,
    OutcomeClass.CONTEXT_OVERFLOW: False,
    OutcomeClass.TIMEOUT: True,
    OutcomeClass.CRASHED: True,
    OutcomeClass.ERROR: True,
    OutcomeClass.BAD_OUTPUT: True,
    OutcomeClass.UNAVAILABLE: False,  # a missing program; a busy provider is recognised by its reason
    "verify_failed": True,
}
CAPACITY = frozenset({OutcomeClass.RATE_LIMITED, OutcomeClass.QUOTA_EXHAUSTED})


class AttemptLike(Protocol):
    provider: str
    account: str | None
    outcome: str
    reason: str
    reset_at: datetime | None


@dataclass(frozen=True, slots=True)
class RetryWindow:
    retry_at: datetime | None
    retryable: bool


def retry_window(*, success: bool, attempts: Sequence[AttemptLike], skipped: Sequence[Skip],
                 now: datetime, cooldowns: Mapping[tuple[str, str], Cooldown] | None = None,
                 slots: Mapping[str, tuple[datetime, ...]] | None = None,
                 default_account: str = "default") -> RetryWindow:
    """The retry window of one run (see the module doc). `cooldowns` and `slots` are the store's, read at `now`."""
    if success:
        return RetryWindow(None, False)
    times: list[datetime] = []
    retryable = False
    def busy_until(provider: str) -> datetime:
        ends = [end for end in (slots or {}).get(provider, ()) if end > now]
        return min([*ends, now + BUSY_RECHECK])

    for skip in skipped:
        if skip.reason.startswith(BUSY_PREFIX):  # every slot taken when routing looked
            retryable = True
            times.append(busy_until(skip.provider))
        elif skip.until is not None:  # a cooldown, a quota period, an open circuit: temporary, and when is known
            retryable = True
            times.append(skip.until)
    for attempt in attempts:
        if attempt.reason.startswith(BUSY_PREFIX):  # every slot taken when the attempt was to start
            retryable = True
            times.append(busy_until(attempt.provider))
            continue
        if not TEMPORARY.get(attempt.outcome, False):
            continue
        retryable = True
        if attempt.outcome in CAPACITY:
            cooldown = (cooldowns or {}).get((attempt.provider, attempt.account or default_account))
            known = [t for t in (attempt.reset_at, cooldown.until if cooldown else None) if t is not None]
            if known:
                times.append(min(known))
    future = [t for t in times if t > now]
    return RetryWindow(min(future) if future else (now if times else None), retryable)


def wait_for_capacity(retry_at: datetime, *, now: datetime, deadline: datetime | None,
                      sleep: Callable[[float], None]) -> bool:
    """Sleep until `retry_at` if that is before `deadline` (None: no bound). False (no sleep) when it is not."""
    if deadline is not None and retry_at > deadline:
        return False
    seconds = (retry_at - now).total_seconds()
    if seconds > 0:
        sleep(seconds)
    return True
